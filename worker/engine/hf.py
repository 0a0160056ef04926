"""The transformers engine: the CPU default, also usable on a GPU.

Windows are sorted by length and padded per batch so that padding stays small; the model runs
in one dedicated thread (torch releases the GIL), so Kafka I/O, tokenization and decoding of
other batches go on meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from worker.engine.base import BestLabels, EngineError, ScoreKind, WindowScores, read_model_facts
from worker.settings import Settings
from worker.text.aggregate import BEST_ONLY_STRATEGIES

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class TransformersEngine:
    scores: ScoreKind = "probabilities"

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto", max_length: int = 0,
                 micro_batch_tokens: int = 8192, revision: str = "", best_labels: bool = False) -> None:
        """``best_labels``: answer each token's best label and its probability only (computed on
        the model's device), for the aggregations that need no more."""
        self._model_path = model
        self._revision = revision or None  # of a hub id; None: the default branch
        self._device_choice = device
        self._dtype_choice = dtype
        facts = read_model_facts(model, max_length, revision=revision)
        self.id2label: dict[int, str] = facts.id2label
        self.name = facts.name
        self.max_length = facts.max_length
        self._micro_batch_tokens = micro_batch_tokens
        self._best_labels = best_labels
        self._model: Any = None
        self._torch: Any = None
        self._pad_id = facts.pad_token_id
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-engine")
        self._ready = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersEngine:
        return cls(settings.model, device=settings.device, dtype=settings.dtype, max_length=settings.max_length,
                   micro_batch_tokens=settings.max_batch_tokens, revision=settings.model_revision,
                   best_labels=settings.aggregation in BEST_ONLY_STRATEGIES)

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForTokenClassification

        device = self._device_choice
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float32
        if self._dtype_choice in _DTYPES:
            dtype = getattr(torch, _DTYPES[self._dtype_choice])
        elif device == "cuda":
            dtype = torch.bfloat16
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a progress bar per start-up clutters the logs
        model = AutoModelForTokenClassification.from_pretrained(self._model_path, dtype=dtype,
                                                                revision=self._revision)
        self._model = model.to(device).eval()
        self._torch = torch
        self._device = device
        self._ready.set()

    def ready(self) -> bool:
        return self._ready.is_set()

    async def classify(self, windows: Sequence[Sequence[int]]) -> list[WindowScores]:
        if not self._ready.is_set():
            raise EngineError("the transformers engine is not started")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._classify, windows)
        except EngineError:
            raise
        except Exception as exc:  # a model failure must surface as an engine error, never a lost batch
            raise EngineError(f"transformers engine failed: {exc}") from exc

    def _classify(self, windows: Sequence[Sequence[int]]) -> list[WindowScores]:
        torch = self._torch
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        results: list[WindowScores | None] = [None] * len(windows)
        start = 0
        while start < len(order):
            # Grow the micro-batch while its padded size stays within the token budget.
            end = start + 1
            while end < len(order) and len(windows[order[end]]) * (end - start + 1) <= self._micro_batch_tokens:
                end += 1
            chunk = order[start:end]
            width = len(windows[chunk[-1]])
            ids = np.full((len(chunk), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, index in enumerate(chunk):
                window = windows[index]
                ids[row, : len(window)] = window
                mask[row, : len(window)] = 1
            with torch.inference_mode():
                logits = self._model(
                    input_ids=torch.from_numpy(ids).to(self._device),
                    attention_mask=torch.from_numpy(mask).to(self._device),
                ).logits
                probabilities = torch.softmax(logits.float(), dim=-1)
                if self._best_labels:  # on the device: 5 bytes per token leave it instead of 4 per label
                    best, classes = probabilities.max(dim=-1)
                    narrow = torch.uint8 if len(self.id2label) <= 256 else torch.int32
                    best_scores, best_classes = best.cpu().numpy(), classes.to(narrow).cpu().numpy()
                else:
                    rows = probabilities.cpu().numpy()
            for row, index in enumerate(chunk):
                length = len(windows[index])
                if self._best_labels:
                    results[index] = BestLabels(best_classes[row, :length], best_scores[row, :length])
                else:
                    results[index] = np.ascontiguousarray(rows[row, :length], dtype=np.float32)
            start = end
        return [r for r in results if r is not None]

    async def close(self) -> None:
        self._ready.clear()
        self._model = None
        self._executor.shutdown(wait=False, cancel_futures=True)
