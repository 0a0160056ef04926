"""The worker's CPU cost per document on one core, the model left out.

Record bytes → parse → tokenize → decode → output JSON, for batches of documents as the stream
forms them, with the shipped model's tokenizer and labels and scores precomputed once by that
model (so only the CPU path is timed). Four columns, measured side by side in one run:

* ``encode``: the fast tokenizer's own ``encode_batch`` call alone — the floor;
* ``before``: the path before batch decoding (the pinned copy in ``bench/_legacy_text``):
  per-document decoding of full score matrices;
* ``after``: the worker's path now, through the ``Annotator`` as the worker calls it: ``prepare``
  (parse + tokenize) and ``entities`` (one ``decode_batch`` per batch, output controls applied)
  per batch, fed what the engines now return (each token's best label and score with uint8 class
  ids for none/simple/first, full rows otherwise), then each document's output record;
* ``pipeline``: the transformers pipeline's ``preprocess`` + ``postprocess`` per document.

``overhead_us_per_doc`` is the new path's everything-but-the-encode-call, ``total_us_per_doc``
the whole. Documents: (a) ~136 tokens, ~19 entities; (b) ~136 tokens, ~2 entities (news-like);
(c) 2,000–8,000 tokens (per token figures matter there). Everything runs pinned to one core with
the tokenizer's own threads off; a last table measures whether the tokenizer's threads pay for
stream-sized batches on all cores. The old and new entities are compared on every document.

    .venv/bin/python bench/cpu_bench.py          # about a minute
    .venv/bin/python bench/cpu_bench.py --scenarios b --strategies simple --profile   # cProfile, no timing
Writes bench/results/cpu_bench.json (not with --profile).
"""

from __future__ import annotations

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # before the tokenizer is first used

import argparse
import datetime
import gc
import importlib.metadata
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tools"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench._legacy_text.decode import EntityDecoder as BeforeDecoder  # noqa: E402
from bench._legacy_text.tokenize import DocumentTokenizer as BeforeTokenizer  # noqa: E402
from worker.annotator import Annotator, Prepared  # noqa: E402
from worker.engine.remote import best_of_windows  # noqa: E402
from worker.output import OutputControls  # noqa: E402
from worker.records import Document, ParseOptions, Rejection, ner_block, output_value, parse_value  # noqa: E402
from worker.settings import Settings  # noqa: E402
from worker.text.decode import EntityDecoder  # noqa: E402
from worker.text.scores import BestLabels, WindowScores  # noqa: E402
from worker.text.tokenize import DocumentTokenizer, EncodedText  # noqa: E402

MODEL = ROOT / "worker" / "bundled_model" / "tiny-ner"
STRIDE = 32
_FILLER_TEXT = (
    "the committee said on tuesday that the new rules would take effect next year after a long review of costs "
    "and benefits for households and small firms across the region while officials expect prices to rise "
    "slightly before falling again as supply improves and demand for housing slows in most cities analysts "
    "noted that the decision had been widely expected by markets which reacted calmly to the news"
)
FILLER = tuple(_FILLER_TEXT.split(" "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=["simple", "first", "average"])
    parser.add_argument("--scenarios", nargs="+", default=["a", "b", "c"], help="a, b and/or c")
    parser.add_argument("--batch", type=int, default=64, help="documents per batch (short documents)")
    parser.add_argument("--max-length", type=int, default=512, help="window length (BERT-base's by default)")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--short-docs", type=int, default=256)
    parser.add_argument("--long-docs", type=int, default=8)
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of the new path per scenario and strategy instead of timing")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cpu_bench.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    all_cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {all_cores[0]})
    import torch

    torch.set_num_threads(1)
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(MODEL))
    model = AutoModelForTokenClassification.from_pretrained(str(MODEL)).eval()
    scorer = DocumentTokenizer(hf, max_length=int(model.config.max_position_embeddings), stride=STRIDE,
                               max_document_tokens=1_000_000)
    max_length = args.max_length
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    after_tokenizer = DocumentTokenizer(hf, max_length=max_length, stride=STRIDE, max_document_tokens=1_000_000)
    before_tokenizer = BeforeTokenizer(hf, max_length=max_length, stride=STRIDE, max_document_tokens=1_000_000)
    settings = Settings()
    hf.model_max_length = max_length  # the pipeline's windows
    pipe = _pipeline(model, hf)

    makers = {
        "a_short_dense": lambda: _dense_texts(after_tokenizer, args.short_docs, target=136),
        "b_short_sparse": lambda: _sparse_texts(after_tokenizer, args.short_docs, target=136),
        "c_long": lambda: _long_texts(after_tokenizer, args.long_docs),
    }
    scenarios = {name: make() for name, make in makers.items() if name[0] in args.scenarios or name[0] == "b"}
    # As the worker does once its model is loaded: the start-up heap stays out of garbage collections.
    gc.freeze()
    rows = []
    for name, texts in scenarios.items():
        if name[0] not in args.scenarios:
            continue  # (b) is made anyway: the tokenizer threads table reads it
        values = [orjson.dumps({"id": i, "text": text}) for i, text in enumerate(texts)]
        encoded = [doc for doc in after_tokenizer.encode(texts) if isinstance(doc, EncodedText)]
        probabilities = _score(model, torch, scorer, encoded)
        batch = args.batch if not name.startswith("c") else 2
        for strategy in args.strategies:
            row = _measure(name, strategy, texts, values, encoded, probabilities, batch=batch, repeat=args.repeat,
                           id2label=id2label, settings=settings, after=after_tokenizer, before=before_tokenizer,
                           pipe=pipe, profile=args.profile)
            if args.profile:
                continue
            print(_line(row), flush=True)
            rows.append(row)
    if args.profile:
        return
    os.sched_setaffinity(0, set(all_cores))
    parallel = _tokenizer_threads(after_tokenizer, scenarios["b_short_sparse"], repeat=args.repeat)
    for entry in parallel:
        print(f"encode_batch of {entry['batch']:>4} short documents on {len(all_cores)} cores: "
              f"{entry['one_thread_us_per_doc']:.1f} us/doc with one thread, "
              f"{entry['parallel_us_per_doc']:.1f} us/doc with the tokenizer's threads "
              f"({entry['parallel_cpu_us_per_doc']:.1f} us of CPU)")
    result = {
        "benchmark": "cpu",
        "what": "microseconds of one core per document (per token for long documents): parse + tokenize + "
                "decode + output JSON, the model left out; columns: encode call alone, the path before batch "
                "decoding, the path now, the transformers pipeline's preprocess + postprocess",
        "environment": _environment(load_before),
        "settings": {"model": "bundled tiny-ner's tokenizer and labels (BERT WordPiece, 9 BIO labels); its "
                              "scores, computed in its own 128-token windows, laid out in windows of max_length",
                 "max_length": max_length,
                     "stride": STRIDE, "batch_documents": args.batch, "repeat": args.repeat,
                     "pinned_to_one_core": True, "tokenizers_parallelism": False, "command": " ".join(sys.argv)},
        "results": rows,
        "tokenizer_threads": parallel,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    _table(rows)
    print(f"load average before {load_before}, after {os.getloadavg()}; wrote {args.out}")


# --------------------------------------------------------------------------- documents
def _tokens(tokenizer: DocumentTokenizer, text: str) -> int:
    (doc,) = tokenizer.encode([text])
    return doc.num_tokens if isinstance(doc, EncodedText) else 0


def _dense_texts(tokenizer: DocumentTokenizer, count: int, *, target: int) -> list[str]:
    """Synthetic news paragraphs, full of names, joined up to about ``target`` tokens."""
    from ner_synth import Synth

    synth = Synth("heldout", 14)
    texts = []
    for _ in range(count):
        text = ""
        while _tokens(tokenizer, text) < target - 12:
            sentence = synth.sentence()
            if len(sentence.spans) >= 3:
                text = f"{text} {sentence.text}".strip()
        texts.append(text)
    return texts


def _sparse_texts(tokenizer: DocumentTokenizer, count: int, *, target: int) -> list[str]:
    """One synthetic sentence with names among plain sentences: about two entities per document."""
    from ner_synth import Synth

    synth = Synth("heldout", 15)
    rng = random.Random(15)
    texts = []
    for _ in range(count):
        sentence = synth.sentence().text
        words = [rng.choice(FILLER) for _ in range(target)]
        cut = rng.randrange(len(words))
        text = ""
        while not text or _tokens(tokenizer, text) > target:
            words.pop(rng.randrange(len(words)))
            cut = min(cut, len(words))
            text = f"{' '.join(words[:cut]).capitalize()}. {sentence} {' '.join(words[cut:]).capitalize()}."
        texts.append(text.lstrip(". "))
    return texts


def _long_texts(tokenizer: DocumentTokenizer, count: int) -> list[str]:
    from ner_synth import Synth

    synth = Synth("heldout", 16)
    rng = random.Random(16)
    texts = []
    for _ in range(count):
        target = rng.randrange(2000, 8000)
        parts: list[str] = []
        while _tokens(tokenizer, "\n".join(parts)) < target:
            parts.extend(synth.paragraph(3).text for _ in range(20))
        texts.append("\n".join(parts))
    return texts


def _score(model: Any, torch: Any, scorer: DocumentTokenizer, encoded: list[EncodedText]) -> list[np.ndarray]:
    """Probabilities for every window of ``encoded`` (once; not timed). The shipped model reads
    128 positions, so it scores each token in windows of its own length (merged per token as the
    worker merges them), and those rows are laid out in the benchmark's longer windows."""
    from worker.text.windows import merged_rows

    result = []
    for doc in encoded:
        (short,) = scorer.encode([doc.text])
        assert isinstance(short, EncodedText) and short.num_tokens == doc.num_tokens
        stacked = np.concatenate(_model_probabilities(model, torch, short.windows))
        rows = merged_rows(short) if len(short.windows) > 1 else short.content_offset + np.arange(short.num_tokens)
        tokens, special = stacked[rows], stacked[:1]
        for index, window in enumerate(doc.windows):
            start, stop = doc.window_range(index)
            before = np.repeat(special, doc.content_offset, axis=0)
            after = np.repeat(special, len(window) - doc.content_offset - (stop - start), axis=0)
            result.append(np.ascontiguousarray(np.concatenate([before, tokens[start:stop], after])))
    return result


def _model_probabilities(model: Any, torch: Any, windows: list[list[int]]) -> list[np.ndarray]:
    width = max(len(w) for w in windows)
    ids = torch.zeros((len(windows), width), dtype=torch.long)
    mask = torch.zeros((len(windows), width), dtype=torch.long)
    for row, window in enumerate(windows):
        ids[row, : len(window)] = torch.tensor(window)
        mask[row, : len(window)] = 1
    with torch.inference_mode():
        probs = torch.softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1).numpy()
    return [np.ascontiguousarray(probs[row, : len(w)]) for row, w in enumerate(windows)]


# --------------------------------------------------------------------------- measuring
def _measure(name: str, strategy: str, texts: list[str], values: list[bytes], encoded: list[EncodedText],
             probabilities: list[np.ndarray], *, batch: int, repeat: int, id2label: dict[int, str],
             settings: Settings, after: DocumentTokenizer, before: BeforeTokenizer, pipe: Any,
             profile: bool = False) -> dict[str, Any]:
    after_decoder = EntityDecoder(id2label, aggregation=strategy)  # type: ignore[arg-type]
    options = ParseOptions.from_settings(settings)
    controls = OutputControls.from_settings(settings)
    annotator = Annotator(None, after, after_decoder, max_entities=settings.max_entities_per_document,  # type: ignore[arg-type]
                          parse=options, controls=controls.for_model(after_decoder.scheme, after_decoder.ignore_labels))
    before_decoder = BeforeDecoder(id2label, aggregation=strategy)  # type: ignore[arg-type]
    best_only = strategy in ("none", "simple", "first")
    # As the engines answer: best labels with uint8 class ids (none/simple/first), else full rows.
    engine_out: list[WindowScores] = best_of_windows(probabilities) if best_only else list(probabilities)
    first_window = np.cumsum([0] + [len(doc.windows) for doc in encoded])
    batches = [(start, min(start + batch, len(values))) for start in range(0, len(values), batch)]
    backend = after._backend
    before_controls = controls.for_model(before_decoder.scheme, before_decoder.ignore_labels)

    def floor() -> None:
        for start, stop in batches:
            backend.encode_batch(texts[start:stop], add_special_tokens=False)

    # One ner block for all (the stream's per-record bookkeeping, its ner block among it, is left out).
    ner = ner_block("tiny-ner", {"topic": "documents", "partition": 0, "offset": 0}, document_engine_seconds=0.001)

    def before_path() -> list[Any]:
        outputs = []
        for start, stop in batches:
            documents = [d for d in (parse_value(v, options) for v in values[start:stop]) if isinstance(d, Document)]
            docs = before.encode([d.text for d in documents])
            for index, (document, doc) in enumerate(zip(documents, docs, strict=True)):
                i = start + index
                entities = before_decoder.decode(doc, probabilities[first_window[i] : first_window[i + 1]])
                outputs.append(output_value(document, before_controls.apply(entities), ner=ner, controls=controls))
        return outputs

    def after_path() -> list[Any]:
        outputs = []
        for start, stop in batches:
            # As the worker does: the annotator prepares (parse + tokenize) and decodes (output
            # controls applied), then each document's output record.
            items = [_Item(raw=value) for value in values[start:stop]]
            annotator.prepare(items, _raw)
            docs = [item.encoded for item in items if item.encoded is not None]
            decoded = annotator.entities(docs, engine_out[first_window[start] : first_window[stop]])
            for item, entities in zip(items, decoded, strict=True):
                assert item.document is not None and not isinstance(entities, Rejection)
                outputs.append(output_value(item.document, entities, ner=ner, controls=controls))
        return outputs

    if before_path() != after_path():
        raise SystemExit(f"{name} {strategy}: the entities before and after differ")
    if profile:
        _profile(after_path, repeat)
        return {}
    pipeline_us = _pipeline_us(pipe, texts, probabilities, first_window, strategy, repeat)
    seconds = _best_of({"encode": floor, "before": before_path, "after": after_path}, repeat)
    docs = len(values)
    tokens = sum(doc.num_tokens for doc in encoded)
    per_doc = {label: s * 1e6 / docs for label, s in seconds.items()}
    entities = sum(len(e) for e in (orjson.loads(o)["entities"] for o in after_path()))
    full_bytes = sum(p.nbytes for p in probabilities)
    sent_bytes = sum(_nbytes(s) for s in engine_out)
    row: dict[str, Any] = {
        "scenario": name, "strategy": strategy, "docs": docs, "tokens_per_doc": round(tokens / docs, 1),
        "entities_per_doc": round(entities / docs, 1), "batch_documents": min(batch, docs),
        "encode_us_per_doc": round(per_doc["encode"], 1),
        "before_total_us_per_doc": round(per_doc["before"], 1),
        "before_overhead_us_per_doc": round(per_doc["before"] - per_doc["encode"], 1),
        "total_us_per_doc": round(per_doc["after"], 1),
        "overhead_us_per_doc": round(per_doc["after"] - per_doc["encode"], 1),
        "pipeline_us_per_doc": round(pipeline_us, 1),
        "total_over_encode": round(per_doc["after"] / per_doc["encode"], 2),
        "speedup_over_before": round(per_doc["before"] / per_doc["after"], 1),
        "speedup_over_pipeline": round(pipeline_us / per_doc["after"], 1),
        "engine_bytes_per_doc_before": round(full_bytes / docs), "engine_bytes_per_doc_after": round(sent_bytes / docs),
    }
    if name.startswith("c"):
        for key in ("encode", "before", "after"):
            row[f"{key}_us_per_token"] = round(seconds[key] * 1e6 / tokens, 3)
        row["overhead_us_per_token"] = round((seconds["after"] - seconds["encode"]) * 1e6 / tokens, 3)
        row["pipeline_us_per_token"] = round(pipeline_us * docs / tokens, 3)
    return row


@dataclass(slots=True)
class _Item(Prepared):
    raw: bytes = b""


def _raw(item: _Item) -> bytes:
    return item.raw


def _profile(run: Callable[[], object], repeat: int) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(lambda: [run() for _ in range(repeat)])
    pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


def _best(run: Callable[[], object], repeat: int) -> float:
    return _best_of({"run": run}, repeat)["run"]


def _best_of(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Least CPU time of this thread for each run over ``repeat`` rounds; the runs take turns, so
    that load from other processes on a shared machine falls on all of them alike."""
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeat):
        for label, run in runs.items():
            started = time.thread_time()
            run()
            times[label].append(time.thread_time() - started)
    return {label: min(spent) for label, spent in times.items()}


def _nbytes(scores: WindowScores) -> int:
    if isinstance(scores, BestLabels):
        return int(scores.classes.astype(np.uint8).nbytes + scores.scores.nbytes)  # as the engines send them
    return int(scores.nbytes)


def _pipeline(model: Any, tokenizer: Any) -> Any:
    from transformers import pipeline

    return pipeline("token-classification", model=model, tokenizer=tokenizer, device="cpu")


def _pipeline_us(pipe: Any, texts: list[str], probabilities: list[np.ndarray], first_window: np.ndarray,
                 strategy: str, repeat: int) -> float:
    """The pipeline's preprocess + postprocess per document, fed our scores as its logits."""
    import torch

    pre, _, post = pipe._sanitize_parameters(aggregation_strategy=strategy, stride=STRIDE)
    logits = [np.log(np.maximum(p, 1e-30)) for p in probabilities]

    def run() -> None:
        for i, text in enumerate(texts):
            outputs = []
            chunks = pipe.preprocess(text, **pre)
            for chunk, window in zip(chunks, logits[first_window[i] : first_window[i + 1]], strict=False):
                width = chunk["input_ids"].shape[1]
                padded = np.zeros((width, window.shape[1]), np.float32)
                padded[: min(width, len(window))] = window[:width]
                outputs.append({"logits": torch.from_numpy(padded)[None], "input_ids": chunk["input_ids"],
                                "special_tokens_mask": chunk["special_tokens_mask"],
                                "offset_mapping": chunk["offset_mapping"], "sentence": chunk["sentence"],
                                "is_last": chunk["is_last"]})
            pipe.postprocess(outputs, **post)

    return _best(run, max(1, repeat // 2)) * 1e6 / len(texts)


def _tokenizer_threads(tokenizer: DocumentTokenizer, texts: list[str], *, repeat: int) -> list[dict[str, Any]]:
    """``encode_batch`` on all cores, the tokenizer's threads off and on, for stream-sized batches."""
    backend = tokenizer._backend
    result = []
    for size in (16, 64, 256):
        chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for parallel in ("false", "true"):
            os.environ["TOKENIZERS_PARALLELISM"] = parallel
            runs = []
            for _ in range(repeat):
                started, started_cpu = time.perf_counter(), time.process_time()
                for chunk in chunks:
                    backend.encode_batch(chunk, add_special_tokens=False)
                runs.append((time.perf_counter() - started, time.process_time() - started_cpu))
            wall[parallel], cpu[parallel] = min(runs)
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        result.append({"batch": size, "one_thread_us_per_doc": round(wall["false"] * 1e6 / len(texts), 1),
                       "parallel_us_per_doc": round(wall["true"] * 1e6 / len(texts), 1),
                       "parallel_cpu_us_per_doc": round(cpu["true"] * 1e6 / len(texts), 1)})
    return result


# --------------------------------------------------------------------------- reporting
def _line(row: dict[str, Any]) -> str:
    return (f"{row['scenario']:<15}{row['strategy']:<8} {row['tokens_per_doc']:>7.0f} tok "
            f"{row['entities_per_doc']:>6.1f} ent  encode {row['encode_us_per_doc']:>8.1f}  "
            f"before {row['before_total_us_per_doc']:>8.1f}  after "
            f"{row['total_us_per_doc']:>8.1f} (overhead {row['overhead_us_per_doc']:.1f})  pipeline "
            f"{row['pipeline_us_per_doc']:>9.1f} us/doc")


def _table(rows: Sequence[dict[str, Any]]) -> None:
    print("\n| documents | strategy | tokens | entities | encode µs | before µs (overhead) | after µs (overhead) "
          "| pipeline µs | after ÷ encode | × pipeline | engine bytes before → after |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['scenario']} | {r['strategy']} | {r['tokens_per_doc']:.0f} | {r['entities_per_doc']} "
              f"| {r['encode_us_per_doc']} | {r['before_total_us_per_doc']} ({r['before_overhead_us_per_doc']}) "
              f"| {r['total_us_per_doc']} ({r['overhead_us_per_doc']}) | {r['pipeline_us_per_doc']} "
              f"| {r['total_over_encode']} | {r['speedup_over_pipeline']} "
              f"| {r['engine_bytes_per_doc_before']} → {r['engine_bytes_per_doc_after']} |")
    for r in rows:
        if "after_us_per_token" in r:
            print(f"{r['scenario']} {r['strategy']}: per token encode {r['encode_us_per_token']} µs, before "
                  f"{r['before_us_per_token']}, after {r['after_us_per_token']} "
                  f"(overhead {r['overhead_us_per_token']}), "
                  f"pipeline {r['pipeline_us_per_token']}")


def _environment(load_before: tuple[float, float, float]) -> dict[str, Any]:
    versions = {name: importlib.metadata.version(name) for name in ("numpy", "tokenizers", "transformers", "torch",
                                                                     "orjson")}
    cpu = platform.processor()
    for text in Path("/proc/cpuinfo").read_text().splitlines():
        if text.startswith("model name"):
            cpu = text.split(":", 1)[1].strip()
            break
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cpu": cpu,
            "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions}


if __name__ == "__main__":
    main()
