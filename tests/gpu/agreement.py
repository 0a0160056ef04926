"""What the GPU tests share: whether they can run, and entities through one engine."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

from worker.text.decode import EntityDecoder
from worker.text.tokenize import DocumentTokenizer, EncodedText

Span = tuple[int, str, int, int]


def gpu_with_vllm() -> bool:
    if importlib.util.find_spec("vllm") is None or importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def annotate_with(engine: Any, model_dir: Path, texts: list[str]) -> tuple[list[list[Any]], list[Any]]:
    """Entities of every text, and the raw window scores, through one engine."""

    async def run() -> tuple[list[list[Any]], list[Any]]:
        await engine.start()
        try:
            tokenizer = DocumentTokenizer.from_pretrained(str(model_dir), max_length=engine.max_length, stride=32)
            decoder = EntityDecoder(engine.id2label, aggregation="simple", scores=engine.scores)
            encoded = [e for e in tokenizer.encode(texts) if isinstance(e, EncodedText)]
            windows = [w for e in encoded for w in e.windows]
            # Several batches at once, as the worker sends them.
            parts = await asyncio.gather(*(engine.classify(windows[i : i + 40]) for i in range(0, len(windows), 40)))
            scores = [s for part in parts for s in part]
            entities, position = [], 0
            for doc in encoded:
                entities.append(decoder.decode(doc, scores[position : position + len(doc.windows)]))
                position += len(doc.windows)
            return entities, scores
        finally:
            await engine.close()

    return asyncio.run(run())


def spans(entities: list[list[Any]]) -> set[Span]:
    return {(i, e["label"], e["start"], e["end"]) for i, doc in enumerate(entities) for e in doc}
