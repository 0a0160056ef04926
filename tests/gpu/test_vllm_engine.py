"""The vLLM engine against the transformers engine on the same weights, on a GPU.

Same documents (a varied multilingual corpus, a tenth of it several windows long), same
tokenizer and decoder, two engines: in float32 the entities must be identical; in bfloat16 at
least 99.5 % of the spans must agree (the kernels differ, so rounding differs). Both figures are
printed. The vLLM engine runs with two replicas, so batches are split and load-balanced.

Needs a CUDA GPU and vllm; skipped elsewhere (run ``pytest -m gpu`` on a GPU machine).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tests.gpu.agreement import annotate_with, gpu_with_vllm, spans
from worker.engine.base import EngineError
from worker.text.scores import BestLabels

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpu_with_vllm(), reason="needs a CUDA GPU and vllm"),
]


def _compare(model_dir: Path, texts: list[str], dtype: str) -> dict[str, float]:
    from worker.engine.hf import TransformersEngine
    from worker.engine.vllm.engine import VllmEngine

    vllm_engine = VllmEngine(str(model_dir), replicas=2, dtype=dtype, gpu_memory_utilization=0.3, split_tokens=2048)
    hf_engine = TransformersEngine(str(model_dir), device="cuda", dtype=dtype)
    got, got_scores = annotate_with(vllm_engine, model_dir, texts)
    want, want_scores = annotate_with(hf_engine, model_dir, texts)
    assert len(got_scores) == len(want_scores)
    assert all(a.shape == b.shape for a, b in zip(got_scores, want_scores, strict=True))
    a, b = spans(got), spans(want)
    score_diff = max(float(np.abs(x - y).max()) for x, y in zip(got_scores, want_scores, strict=True))
    same = len(a & b)
    figures = {"spans_vllm": len(a), "spans_transformers": len(b), "identical": same,
               "agreement": 2 * same / max(1, len(a) + len(b)), "max_probability_diff": score_diff}
    print(f"\n{dtype}: {same} of {len(a)} vLLM / {len(b)} transformers spans identical "
          f"({100 * figures['agreement']:.3f} %); max |probability difference| {score_diff:.2e}")
    return figures


def test_float32_entities_are_identical(model_dir: Path, texts: list[str]) -> None:
    figures = _compare(model_dir, texts, "float32")
    assert figures["spans_vllm"] > 0
    assert figures["agreement"] == 1.0
    assert figures["max_probability_diff"] < 1e-3


def test_bfloat16_spans_agree(model_dir: Path, texts: list[str]) -> None:
    figures = _compare(model_dir, texts, "bfloat16")
    assert figures["spans_vllm"] > 0
    assert figures["agreement"] >= 0.995


def test_best_labels_from_the_replicas_decode_to_the_same_entities(model_dir: Path, texts: list[str]) -> None:
    """The replicas' compact answer (each token's best label and its probability) gives the
    entities the full probability rows give, scores included."""
    from worker.engine.vllm.engine import VllmEngine

    best = VllmEngine(str(model_dir), replicas=1, dtype="float32", gpu_memory_utilization=0.3, best_labels=True)
    full = VllmEngine(str(model_dir), replicas=1, dtype="float32", gpu_memory_utilization=0.3)
    got, got_scores = annotate_with(best, model_dir, texts)
    want, _ = annotate_with(full, model_dir, texts)
    assert got_scores and all(isinstance(s, BestLabels) for s in got_scores)
    assert spans(got) == spans(want) and len(spans(want)) > 0
    by_span = {(i, e["label"], e["start"], e["end"]): e["score"] for i, doc in enumerate(want) for e in doc}
    assert max(abs(e["score"] - by_span[(i, e["label"], e["start"], e["end"])])
               for i, doc in enumerate(got) for e in doc) < 1e-5


def test_a_dead_replica_fails_its_batch_and_the_engine_reports_it(model_dir: Path) -> None:
    from worker.engine.vllm.engine import VllmEngine

    engine = VllmEngine(str(model_dir), replicas=1, dtype="bfloat16", gpu_memory_utilization=0.15)

    async def run() -> None:
        await engine.start()
        try:
            assert engine.ready()
            assert [s.shape[0] for s in await engine.classify([[1, 5, 6, 7], [1, 5]])] == [4, 2]
            task = asyncio.ensure_future(engine.classify([[1] * 50] * 5000))
            await asyncio.sleep(0.05)
            engine._handles[0].kill()
            with pytest.raises(EngineError, match="replica 0"):
                await task
            assert not engine.ready()
            with pytest.raises(EngineError):
                await engine.classify([[1, 2, 3]])
        finally:
            await engine.close()

    asyncio.run(run())
