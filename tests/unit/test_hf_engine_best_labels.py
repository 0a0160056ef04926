"""The transformers engine's best-labels answer: each token's best label and its probability,
exactly those of its full probability rows, and the same entities after decoding."""

from __future__ import annotations

import asyncio

import numpy as np

from worker.bundled_model import TINY_NER_PATH
from worker.engine.hf import TransformersEngine
from worker.text.decode import EntityDecoder
from worker.text.scores import BestLabels
from worker.text.tokenize import DocumentTokenizer, EncodedText

TEXTS = ["Anna Kowalska met Pierre Dubois at Siemens in Berlin.", "The committee met on Tuesday.",
         "Satya Nadella flew to Tokyo with " + "officials from Microsoft and Sony " * 30]


async def _scores(best_labels: bool, windows: list[list[int]]) -> list:
    engine = TransformersEngine(str(TINY_NER_PATH), device="cpu", micro_batch_tokens=512, best_labels=best_labels)
    await engine.start()
    try:
        return await engine.classify(windows)
    finally:
        await engine.close()


def test_best_labels_are_the_argmax_of_the_full_rows_and_decode_alike() -> None:
    tokenizer = DocumentTokenizer.from_pretrained(str(TINY_NER_PATH), stride=16)
    documents = [doc for doc in tokenizer.encode(TEXTS) if isinstance(doc, EncodedText)]
    windows = [window for doc in documents for window in doc.windows]
    assert len(windows) > len(documents)  # a long document in several windows, of several lengths
    full = asyncio.run(_scores(False, windows))
    best = asyncio.run(_scores(True, windows))
    for rows, answer in zip(full, best, strict=True):
        assert isinstance(answer, BestLabels) and answer.classes.dtype == np.uint8
        assert answer.classes.tolist() == rows.argmax(axis=1).tolist()
        assert np.allclose(answer.scores, rows.max(axis=1), rtol=0, atol=1e-6)
    decoder = EntityDecoder({0: "O", 1: "B-PER", 2: "I-PER", 3: "B-ORG", 4: "I-ORG", 5: "B-LOC", 6: "I-LOC",
                             7: "B-MISC", 8: "I-MISC"})
    expected = decoder.decode_batch(documents, full)
    assert any(expected)
    assert [[(e["label"], e["start"], e["end"]) for e in doc] for doc in decoder.decode_batch(documents, best)] == [
        [(e["label"], e["start"], e["end"]) for e in doc] for doc in expected]
