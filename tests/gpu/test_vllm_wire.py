"""The vLLM engine's pure parts, on any machine: framing, splitting, engine arguments."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest

from worker.engine import wire
from worker.engine.vllm.engine import VllmEngine, llm_arguments
from worker.engine.vllm.replicas import split_evenly


def test_windows_round_trip() -> None:
    windows = [[101, 7, 8, 102], [101, 102], [5] * 300]
    lengths, ids = wire.unpack_windows(wire.pack_windows(windows))
    assert lengths.tolist() == [4, 2, 300]
    assert ids.tolist() == [t for w in windows for t in w]


def test_a_request_whose_lengths_do_not_match_its_ids_is_refused() -> None:
    payload = bytearray(wire.pack_windows([[1, 2, 3]]))
    payload[4:8] = (5).to_bytes(4, "little")  # claims 5 tokens, carries 3
    with pytest.raises(wire.WireError):
        wire.unpack_windows(payload)


def test_scores_round_trip_and_split_into_views() -> None:
    matrix = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    back = wire.unpack_scores(wire.pack_scores(matrix))
    parts = wire.split_rows(back, [4, 1, 2])
    assert [p.shape for p in parts] == [(4, 3), (1, 3), (2, 3)]
    assert np.array_equal(np.concatenate(parts), matrix)


def test_a_truncated_result_is_refused() -> None:
    payload = wire.pack_scores(np.ones((4, 9), dtype=np.float32))
    with pytest.raises(wire.WireError):
        wire.unpack_scores(payload[:-4])


def test_frames_survive_any_chunking() -> None:
    rng = random.Random(3)
    sent = [(wire.RESULT, i, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))) for i in range(40)]
    stream = b"".join(wire.header(kind, rid, len(p)) + p for kind, rid, p in sent)
    buffer, got, position = wire.FrameBuffer(), [], 0
    while position < len(stream):
        step = rng.randrange(1, 5000)
        got += buffer.feed(stream[position : position + step])
        position += step
    assert [(f.kind, f.request_id, bytes(f.payload)) for f in got] == sent


def test_an_unknown_frame_kind_is_an_error() -> None:
    with pytest.raises(wire.WireError):
        wire.FrameBuffer().feed(wire.HEADER.pack(99, 0, 1))


@pytest.mark.parametrize("parts", [1, 2, 3, 8, 50])
def test_split_evenly_covers_every_window_once_in_order(parts: int) -> None:
    lengths = [random.Random(parts).randint(1, 512) for _ in range(37)]
    ranges = split_evenly(lengths, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(lengths)
    assert all(a < b for a, b in ranges)
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(ranges))
    assert len(ranges) <= min(parts, len(lengths))
    if parts <= 3:  # balanced: no part holds much more than its share plus one window
        shares = [sum(lengths[a:b]) for a, b in ranges]
        assert max(shares) <= sum(lengths) / len(ranges) + max(lengths)


def test_llm_arguments_follow_the_settings() -> None:
    args = llm_arguments("m", dtype="auto", max_model_len=0, max_num_batched_tokens=65536, max_num_seqs=1024,
                         gpu_memory_utilization=0.1, enforce_eager=True, attention_backend="")
    assert args["runner"] == "pooling" and args["dtype"] == "bfloat16"
    assert args["enable_prefix_caching"] is False
    assert "max_model_len" not in args and "attention_backend" not in args
    args = llm_arguments("m", dtype="float32", max_model_len=256, max_num_batched_tokens=8192, max_num_seqs=64,
                         gpu_memory_utilization=0.2, enforce_eager=False, attention_backend="TRITON_ATTN")
    assert (args["dtype"], args["max_model_len"], args["attention_backend"]) == ("float32", 256, "TRITON_ATTN")


def test_float32_without_a_chosen_backend_gets_an_attention_that_multiplies_in_float32() -> None:
    # vLLM's own float32 pick (TRITON_ATTN) rounds to TF32; a backend the settings name is kept.
    chosen = llm_arguments("m", dtype="float32", max_model_len=0, max_num_batched_tokens=8192, max_num_seqs=64,
                           gpu_memory_utilization=0.2, enforce_eager=True, attention_backend="")
    assert chosen["attention_backend"] == "FLEX_ATTENTION"
    kept = llm_arguments("m", dtype="float32", max_model_len=0, max_num_batched_tokens=8192, max_num_seqs=64,
                         gpu_memory_utilization=0.2, enforce_eager=True, attention_backend="TRITON_ATTN")
    assert kept["attention_backend"] == "TRITON_ATTN"


def _model(tmp_path: Path, **config: object) -> str:
    base = {"model_type": "bert", "max_position_embeddings": 512, "id2label": {"0": "O", "1": "B-PER", "2": "I-PER"}}
    (tmp_path / "config.json").write_text(json.dumps({**base, **config}))
    return str(tmp_path)


def test_the_engine_splits_the_gpu_between_its_replicas(tmp_path: Path) -> None:
    engine = VllmEngine(_model(tmp_path), replicas=4, gpu_memory_utilization=0.8, max_model_len=256)
    assert engine.replica_config["llm"]["gpu_memory_utilization"] == pytest.approx(0.2)
    assert engine.max_length == 256
    assert engine.id2label == {0: "O", 1: "B-PER", 2: "I-PER"}
    assert not engine.ready()


def test_bad_engine_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="replicas"):
        VllmEngine(_model(tmp_path), replicas=0)


def test_best_labels_round_trip_and_split_per_window() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random((7, 9)).astype(np.float32)
    payload = wire.pack_best(scores)
    assert len(payload) == 8 + 7 * 5  # 5 bytes per token instead of 36
    best = wire.unpack_best(payload)
    assert best.classes.tolist() == scores.argmax(axis=1).tolist()
    assert best.scores.tolist() == scores.max(axis=1).tolist()
    first, second = wire.split_best(best, [3, 4])
    assert first.classes.tolist() == best.classes[:3].tolist() and second.scores.tolist() == best.scores[3:].tolist()


def test_best_labels_of_many_classes_take_two_bytes() -> None:
    scores = np.zeros((2, 300), dtype=np.float32)
    scores[0, 299] = scores[1, 5] = 1.0
    assert wire.unpack_best(wire.pack_best(scores)).classes.tolist() == [299, 5]


def test_a_best_labels_payload_of_the_wrong_size_is_refused() -> None:
    payload = wire.pack_best(np.ones((4, 9), dtype=np.float32))
    with pytest.raises(wire.WireError):
        wire.unpack_best(payload[:-1])
