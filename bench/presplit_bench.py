"""Pre-split input's CPU cost against the same documents given as text, side by side in one run.

With the shipped model's tokenizer and labels, for batches of ~150-token news-like documents:
``DocumentTokenizer.encode`` of the texts and of the same documents split on spaces, given as
words (``*_encode``), next to the tokenizer's own ``encode_batch`` call for each (``*_floor``:
the Rust tokenizer's pre-tokenized input costs more by itself); and both encoded and decoded
with the ``first`` strategy, which reads every token's offsets and, for words, the word ids
(``*_encode_decode``).

Scores are random but fixed, the same for both inputs where they have the same tokens. Best of
``--repeat`` runs, pinned to one core with the tokenizer's own threads off.

    .venv/bin/python bench/presplit_bench.py
Writes bench/results/presplit_bench.json.
"""

from __future__ import annotations

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # before the tokenizer is first used

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from worker.text.decode import EntityDecoder  # noqa: E402
from worker.text.tokenize import DocumentTokenizer, EncodedText  # noqa: E402

MODEL = ROOT / "worker" / "bundled_model" / "tiny-ner"
_SENTENCE = ("Angela Merkel met Emmanuel Macron in Paris on Tuesday to discuss the future of Airbus and "
             "Siemens while Satya Nadella said Microsoft will open a new office in Berlin next spring .")
WORDS = _SENTENCE.split(" ")


def best_of(repeat: int, call: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "presplit_bench.json")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from transformers import AutoConfig, AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(MODEL))
    id2label = AutoConfig.from_pretrained(str(MODEL)).id2label
    rng = random.Random(0)
    word_lists = [tuple(rng.choice(WORDS) for _ in range(100)) for _ in range(args.docs)]
    texts = [" ".join(words) for words in word_lists]
    batches = [slice(start, start + args.batch) for start in range(0, args.docs, args.batch)]
    after = DocumentTokenizer(hf, max_length=512, stride=32, max_document_tokens=65536)
    decoder = EntityDecoder(id2label, aggregation="first")
    scores_rng = np.random.default_rng(0)

    def scores_for(documents: list[EncodedText]) -> list[np.ndarray]:
        return [scores_rng.random((len(window), len(id2label)), dtype=np.float32)
                for doc in documents for window in doc.windows]

    encoded_text = [doc for part in batches for doc in after.encode(texts[part]) if isinstance(doc, EncodedText)]
    encoded_words = [doc for part in batches for doc in after.encode(word_lists[part])
                     if isinstance(doc, EncodedText)]
    text_scores = scores_for(encoded_text)
    same_tokens = [a.ids == b.ids for a, b in zip(encoded_text, encoded_words, strict=True)]
    words_scores = text_scores if all(same_tokens) else scores_for(encoded_words)

    def decode_all(documents: list[EncodedText], scores: list[np.ndarray]) -> None:
        position = 0
        for part in batches:
            docs = documents[part]
            count = sum(len(doc.windows) for doc in docs)
            decoder.decode_batch(docs, scores[position : position + count])
            position += count

    backend = hf.backend_tokenizer
    runs = {
        "text_encode_batch_floor": lambda: [backend.encode_batch(texts[part], add_special_tokens=False)
                                            for part in batches],
        "words_encode_batch_floor": lambda: [backend.encode_batch([list(w) for w in word_lists[part]],
                                                                  is_pretokenized=True, add_special_tokens=False)
                                             for part in batches],
        "text_encode": lambda: [after.encode(texts[part]) for part in batches],
        "words_encode": lambda: [after.encode(word_lists[part]) for part in batches],
        "text_encode_decode": lambda: decode_all(
            [d for part in batches for d in after.encode(texts[part]) if isinstance(d, EncodedText)], text_scores),
        "words_encode_decode": lambda: decode_all(
            [d for part in batches for d in after.encode(word_lists[part]) if isinstance(d, EncodedText)],
            words_scores),
    }
    results: dict[str, float] = {name: float("inf") for name in runs}
    for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits every column alike
        for name, call in runs.items():
            results[name] = min(results[name], best_of(1, call))
    per_doc = {name: round(seconds / args.docs * 1e6, 1) for name, seconds in results.items()}
    report = {"us_per_doc": per_doc, "docs": args.docs, "batch": args.batch, "tokens_per_doc":
              round(sum(doc.num_tokens for doc in encoded_text) / len(encoded_text), 1),
              "same_tokens_for_words_and_text": sum(same_tokens) / len(same_tokens)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
