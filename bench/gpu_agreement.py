"""Which engine is right on a GPU? Each engine against a float64 reference on the CPU.

The GPU test compares the vLLM engine with the transformers engine directly, which says that they
differ but not which one is off. Here both run in float32 (and bfloat16) on the same windows of
the same corpus as the test, and each is compared with the same model in float64 on the CPU
(eager attention, no reduced-precision matmuls): the largest and mean probability difference,
the share of tokens whose best label differs, and the share of entity spans that differ.
The vLLM engine is run once per attention backend, so a backend that rounds (Triton's ``tl.dot``
takes float32 inputs as TF32 unless told otherwise) shows up as the one far from the reference.

``--texts heldout`` runs the model card's held-out text (of the kind the model was trained
for) instead of the parity corpus, and adds the two engines' agreement with each other per
dtype (what the GPU test asserts). Each row also says how close the reference's two best labels
were on the tokens whose best label flipped (rounding flips only near-ties).

Needs a CUDA GPU and vLLM; without a GPU it runs the transformers rows on the CPU:
    python bench/gpu_agreement.py --out bench/results/gpu_agreement.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.parity.corpus import corpus
from worker.bundled_model import TINY_NER_PATH
from worker.text.decode import EntityDecoder
from worker.text.tokenize import DocumentTokenizer, EncodedText


def reference_scores(model_dir: str, windows: list[list[int]]) -> list[np.ndarray]:
    """Float64 probabilities on the CPU, one window at a time (no padding at all)."""
    import torch
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(model_dir, dtype=torch.float64,
                                                            attn_implementation="eager").eval()
    out = []
    with torch.inference_mode():
        for window in windows:
            logits = model(input_ids=torch.tensor([window])).logits[0]
            out.append(torch.softmax(logits, dim=-1).numpy())
    return out


async def engine_scores(engine: Any, windows: list[list[int]]) -> list[np.ndarray]:
    await engine.start()
    try:
        parts = await asyncio.gather(*(engine.classify(windows[i: i + 40]) for i in range(0, len(windows), 40)))
        return [np.asarray(s, dtype=np.float64) for part in parts for s in part]
    finally:
        await engine.close()


Span = tuple[int, str, int, int]


def spans(decoder: EntityDecoder, encoded: list[EncodedText], scores: list[np.ndarray]) -> set[Span]:
    found: set[Span] = set()
    position = 0
    for index, doc in enumerate(encoded):
        doc_scores = [s.astype(np.float32) for s in scores[position: position + len(doc.windows)]]
        position += len(doc.windows)
        found |= {(index, e["label"], e["start"], e["end"]) for e in decoder.decode(doc, doc_scores)}
    return found


def reference_margins(want: list[np.ndarray]) -> np.ndarray:
    """Per token, the reference's best probability minus its second best."""
    top = np.sort(np.concatenate(want), axis=-1)
    return np.asarray(top[:, -1] - top[:, -2])


def compare(name: str, got: list[np.ndarray], want: list[np.ndarray], spans_got: set[Any],
            spans_want: set[Any], seconds: float) -> dict[str, Any]:
    diffs = np.concatenate([np.abs(a - b).max(axis=-1) for a, b in zip(got, want, strict=True)])
    argmax = np.concatenate([a.argmax(-1) != b.argmax(-1) for a, b in zip(got, want, strict=True)])
    margins = reference_margins(want)
    same = len(spans_got & spans_want)
    row = {"engine": name, "max_probability_diff": float(diffs.max()), "mean_probability_diff": float(diffs.mean()),
           "tokens": int(diffs.size), "tokens_best_label_differs": int(argmax.sum()),
           "largest_reference_margin_of_a_flipped_token": float(margins[argmax].max()) if argmax.any() else None,
           "spans": len(spans_got), "spans_reference": len(spans_want), "spans_identical": same,
           "span_agreement": 2 * same / max(1, len(spans_got) + len(spans_want)), "seconds": round(seconds, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/gpu_agreement.json")
    parser.add_argument("--backends", default=",TRITON_ATTN,FLEX_ATTENTION",
                        help="vLLM attention backends to try (empty = vLLM's own choice)")
    parser.add_argument("--texts", choices=("parity", "heldout"), default="parity")
    args = parser.parse_args()
    import torch

    from worker.engine.hf import TransformersEngine
    from worker.engine.vllm.engine import VllmEngine

    model_dir = str(TINY_NER_PATH)
    texts = corpus(300, seed=77, long_every=10, long_words=400) if args.texts == "parity" else heldout_texts()
    tokenizer = DocumentTokenizer.from_pretrained(model_dir, max_length=128, stride=32)
    encoded = [e for e in tokenizer.encode(texts) if isinstance(e, EncodedText)]
    windows = [list(w) for e in encoded for w in e.windows]
    started = time.perf_counter()
    want = reference_scores(model_dir, windows)
    ref_seconds = time.perf_counter() - started
    probe = TransformersEngine(model_dir, device="cpu", dtype="float32")
    decoder = EntityDecoder(probe.id2label, aggregation="simple", scores="probabilities")
    spans_want = spans(decoder, encoded, want)
    margins = reference_margins(want)
    rows = [{"engine": "reference: transformers float64 CPU eager", "spans": len(spans_want),
             "tokens_best_two_within_0.05": round(float((margins < 0.05).mean()), 5),
             "seconds": round(ref_seconds, 1)}]
    found: dict[str, set[Span]] = {}
    variants: list[tuple[str, Any]] = []
    gpu = torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"  # without a GPU: the transformers rows alone, on the CPU
    for dtype in ("float32", "bfloat16"):
        variants.append((f"transformers {dtype} {device} sdpa", lambda d=dtype: TransformersEngine(
            model_dir, device=device, dtype=d)))
        for backend in args.backends.split(",") if gpu else []:
            variants.append((f"vllm {dtype} {backend or 'default backend'}", lambda d=dtype, b=backend: VllmEngine(
                model_dir, replicas=1, dtype=d, gpu_memory_utilization=0.3, attention_backend=b)))
    if gpu:
        variants.insert(1, ("transformers float32 cuda sdpa, TF32 matmuls", None))
    for name, make in variants:
        started = time.perf_counter()
        try:
            if make is None:  # the same engine with TF32 allowed, to see what TF32 alone does
                torch.backends.cuda.matmul.allow_tf32 = True
                try:
                    got = asyncio.run(engine_scores(TransformersEngine(model_dir, device="cuda", dtype="float32"),
                                                    windows))
                finally:
                    torch.backends.cuda.matmul.allow_tf32 = False
            else:
                got = asyncio.run(engine_scores(make(), windows))
        except Exception as exc:  # one backend failing must not hide the others' figures
            rows.append({"engine": name, "error": repr(exc)[:500]})
            print(json.dumps(rows[-1]), flush=True)
            continue
        found[name] = spans(decoder, encoded, got)
        rows.append(compare(name, got, want, found[name], spans_want, time.perf_counter() - started))
    for dtype in ("float32", "bfloat16"):  # the engines against each other, as the GPU test compares them
        pair = found.get(f"transformers {dtype} cuda sdpa"), found.get(f"vllm {dtype} default backend")
        if pair[0] is not None and pair[1] is not None:
            same = len(pair[0] & pair[1])
            rows.append({"engine": f"vllm {dtype} against transformers {dtype}", "spans_identical": same,
                         "span_agreement": 2 * same / max(1, len(pair[0]) + len(pair[1]))})
            print(json.dumps(rows[-1]), flush=True)
    import transformers

    report = {
        "what": "each engine's probabilities and spans against the same model in float64 on the CPU",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "vllm": _version("vllm")},
        "settings": {"model": "shipped tiny-ner (BERT 4x128)", "corpus": args.texts, "texts": len(texts),
                     "windows": len(windows),
                     "max_length": 128, "stride": 32, "aggregation": "simple"},
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def heldout_texts() -> list[str]:
    """The model card's held-out paragraphs (text of the kind the shipped model was trained for):
    400 with names from training's locales, then 400 from locales training never saw."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from ner_synth import heldout_examples

    return [e.text for e in heldout_examples(400) + heldout_examples(400, unseen_locales=True)]


def _version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "absent"


if __name__ == "__main__":
    raise SystemExit(main())
