"""The text path as it was before batch decoding (issue 14), pinned so that the CPU-cost benchmark
can measure old and new side by side in one run. Not used by the worker."""
