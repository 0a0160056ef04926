"""Tokenize + decode cost per document: the worker's text path against the transformers pipeline.

Both sides get the same documents (about 128, 512 and 4,096 tokens) and the same per-token
scores; the model itself is not run. Measured:

* ours: ``DocumentTokenizer.encode`` on the whole batch, then ``EntityDecoder.decode`` per document;
* pipeline: ``TokenClassificationPipeline.preprocess`` (tokenization, windows) and ``postprocess``
  (softmax, aggregation, stride merge) per document, as its ``__call__`` chains them.

Windows of 128 tokens (the shipped model) and 512 (BERT-base), stride 32. Best of ``--repeat``
runs. Writes bench/results/decode_bench.json.

    .venv/bin/python bench/decode_bench.py            # about two minutes on two cores
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DOC_TOKENS = (128, 512, 4096)
DOCS = {128: 200, 512: 60, 4096: 8}
STRATEGIES = ("none", "simple", "first", "average", "max")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, nargs="+", default=[128, 512], help="max_length values")
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of documents")
    parser.add_argument("--parallel-tokenizer", action="store_true",
                        help="let the Rust tokenizer use all cores for a batch (default: one core, like the pipeline)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decode_bench.json")
    args = parser.parse_args()
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.parallel_tokenizer else "false"

    import torch

    torch.set_num_threads(1)
    tokenizer, words = _tokenizer()
    rows = []
    for max_length in args.windows:
        tokenizer.model_max_length = max_length
        pipe = _pipeline(tokenizer)
        for doc_tokens in DOC_TOKENS:
            texts = _texts(words, doc_tokens, max(2, int(DOCS[doc_tokens] * args.scale)))
            for strategy in STRATEGIES:
                if strategy == "none" and doc_tokens >= max_length:
                    continue  # the pipeline refuses stride without aggregation (it would truncate)
                row = _measure(pipe, tokenizer, texts, strategy, max_length, args.stride, args.repeat)
                print(_line(row), flush=True)
                rows.append(row)
    result = {
        "benchmark": "decode",
        "what": "microseconds per document for tokenize + decode (ours) vs the transformers pipeline's "
                "preprocess + postprocess, on the same documents and scores; the model is not run",
        "environment": _environment(),
        "settings": {"stride": args.stride, "repeat": args.repeat, "windows": args.windows,
                     "tokenizer": "BERT-style WordPiece, 30522 tokens, lowercase (bench/_models.py)",
                     "tokenizers_parallelism": args.parallel_tokenizer, "torch_threads": 1,
                     "scores": "logits, 85 % of tokens confidently O", "command": " ".join(sys.argv)},
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def _tokenizer() -> tuple[Any, list[str]]:
    from transformers import AutoTokenizer

    from bench._models import build_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="decode-bench-"))
    words = build_tokenizer(folder, vocab_size=30522, model_max_length=512)
    return AutoTokenizer.from_pretrained(str(folder)), words


def _pipeline(tokenizer: Any) -> Any:
    from transformers import BertConfig, BertForTokenClassification, pipeline

    from bench._models import LABELS

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=16, max_position_embeddings=512, id2label=dict(enumerate(LABELS)),
                        label2id={label: i for i, label in enumerate(LABELS)})
    model = BertForTokenClassification(config).eval()  # only its config is used; scores are given
    return pipeline("token-classification", model=model, tokenizer=tokenizer, device="cpu")


def _texts(words: list[str], doc_tokens: int, count: int) -> list[str]:
    from bench._models import make_texts

    return make_texts(words, count, tokens=(doc_tokens, doc_tokens), seed=doc_tokens)


def _scores(windows: list[list[int]], seed: int) -> list[Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    result = []
    for window in windows:
        logits = rng.normal(0.0, 1.0, (len(window), 9)).astype(np.float32)
        labels = np.where(rng.random(len(window)) < 0.85, 0, rng.integers(1, 9, len(window)))
        logits[np.arange(len(window)), labels] += 6.0
        result.append(logits)
    return result


def _measure(pipe: Any, tokenizer: Any, texts: list[str], strategy: str, max_length: int, stride: int,
             repeat: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from worker.text.decode import EntityDecoder
    from worker.text.tokenize import DocumentTokenizer, EncodedText

    documents = DocumentTokenizer(tokenizer, max_length=max_length, stride=stride, max_document_tokens=1_000_000)
    decoder = EntityDecoder(pipe.model.config.id2label, aggregation=strategy, scores="logits")  # type: ignore[arg-type]
    encoded = [doc for doc in documents.encode(texts) if isinstance(doc, EncodedText)]
    scores = [_scores(doc.windows, seed) for seed, doc in enumerate(encoded)]
    use_stride = None if strategy == "none" else stride
    pre, _, post = pipe._sanitize_parameters(aggregation_strategy=strategy, stride=use_stride)

    def pipeline_outputs(text: str, doc_scores: list[Any]) -> list[dict[str, Any]]:
        outputs = []
        for chunk, logits in zip(pipe.preprocess(text, **pre), doc_scores, strict=True):
            width = chunk["input_ids"].shape[1]
            padded = np.zeros((width, logits.shape[1]), np.float32)
            padded[: len(logits)] = logits
            outputs.append({"logits": torch.from_numpy(padded)[None], "input_ids": chunk["input_ids"],
                            "special_tokens_mask": chunk["special_tokens_mask"],
                            "offset_mapping": chunk["offset_mapping"], "sentence": chunk["sentence"],
                            "is_last": chunk["is_last"]})
        return outputs

    ours_tokenize, ours_decode, their_pre, their_post = [], [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        fresh = documents.encode(texts)
        ours_tokenize.append(time.perf_counter() - started)
        started = time.perf_counter()
        for doc, doc_scores in zip(fresh, scores, strict=True):
            decoder.decode(doc, doc_scores)  # type: ignore[arg-type]
        ours_decode.append(time.perf_counter() - started)

        started = time.perf_counter()
        chunked = [pipeline_outputs(text, doc_scores) for text, doc_scores in zip(texts, scores, strict=True)]
        their_pre.append(time.perf_counter() - started)
        started = time.perf_counter()
        for outputs in chunked:
            pipe.postprocess(outputs, **post)
        their_post.append(time.perf_counter() - started)

    per_doc = 1e6 / len(texts)
    ours = {"tokenize_us": min(ours_tokenize) * per_doc, "decode_us": min(ours_decode) * per_doc}
    ours["total_us"] = ours["tokenize_us"] + ours["decode_us"]
    theirs = {"preprocess_us": min(their_pre) * per_doc, "postprocess_us": min(their_post) * per_doc}
    theirs["total_us"] = theirs["preprocess_us"] + theirs["postprocess_us"]
    return {
        "max_length": max_length, "doc_tokens": round(sum(d.num_tokens for d in encoded) / len(encoded)),
        "windows_per_doc": round(sum(len(d.windows) for d in encoded) / len(encoded), 2),
        "strategy": strategy, "docs": len(texts),
        "ours": {k: round(v, 1) for k, v in ours.items()},
        "pipeline": {k: round(v, 1) for k, v in theirs.items()},
        "speedup": round(theirs["total_us"] / ours["total_us"], 1),
        "decode_speedup": round(theirs["postprocess_us"] / ours["decode_us"], 1),
    }


def _line(row: dict[str, Any]) -> str:
    return (f"window {row['max_length']:>3} doc {row['doc_tokens']:>4} tok {row['strategy']:<7} "
            f"ours {row['ours']['total_us']:>9.1f} us/doc (tokenize {row['ours']['tokenize_us']:.1f}, "
            f"decode {row['ours']['decode_us']:.1f})  pipeline {row['pipeline']['total_us']:>9.1f} us/doc  "
            f"x{row['speedup']}")


def _environment() -> dict[str, Any]:
    versions = {}
    for name in ("numpy", "tokenizers", "transformers", "torch"):
        versions[name] = importlib.metadata.version(name)
    cpu = platform.processor()
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cpu": cpu,
            "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}


if __name__ == "__main__":
    main()
