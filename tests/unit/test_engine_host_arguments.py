"""The engine host program's defaults follow the engine it serves."""

from __future__ import annotations

from worker.engine.host.__main__ import parse_arguments
from worker.settings import load_settings


def test_a_vllm_host_keeps_two_merged_batches_per_replica_running() -> None:
    settings = load_settings({"NER_ENGINE": "vllm", "NER_ENGINE_REPLICAS": "8"})
    assert parse_arguments(["--socket", "s"], settings).max_in_flight == 16


def test_another_engine_keeps_two_running_and_the_argument_wins() -> None:
    settings = load_settings({"NER_ENGINE": "hf"})
    assert parse_arguments(["--socket", "s"], settings).max_in_flight == 2
    assert parse_arguments(["--socket", "s", "--max-in-flight", "5"], settings).max_in_flight == 5
