"""``ner-worker annotate``: a file (or stdin) of documents in, annotated JSONL out, resumable."""
