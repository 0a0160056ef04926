"""The remote engine's wire format and its failure handling, against a scripted HTTP server.

The server here is real HTTP (aiohttp on a free port) but scripted: each /pooling request gets
the next behaviour of a list (answer, a status, or a stall), so retries, timeouts, refusals and
readiness can be checked exactly. The run against a model-backed vLLM look-alike is in
tests/integration/test_remote_engine_server.py.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiohttp import web

from worker.engine import Engine, EngineError
from worker.engine.base import BestLabels
from worker.engine.remote import (
    RemoteEngine,
    error_message,
    parse_pooling_response,
    pooling_request,
    split_requests,
)

LABELS = ["O", "B-PER", "I-PER"]


@pytest.fixture
def model_dir(tmp_path: Path) -> str:
    from transformers import BertConfig

    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=8, max_position_embeddings=64,
                        id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)})
    config.save_pretrained(tmp_path)
    return str(tmp_path)


def scores_for(window: list[int]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Deterministic per-token scores that identify the window and the token."""
    return np.array([[float(t), float(len(window)), 0.5] for t in window], dtype=np.float32)


# --- pure functions ----------------------------------------------------------------------------


def test_split_requests_respects_window_and_token_limits() -> None:
    windows = [[1] * 10, [1] * 10, [1] * 10, [1] * 30, [1] * 5]
    assert split_requests(windows, max_windows=2, max_tokens=1000) == [(0, 2), (2, 4), (4, 5)]
    assert split_requests(windows, max_windows=100, max_tokens=25) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert split_requests([], max_windows=2, max_tokens=10) == []


def test_pooling_request_sends_token_id_windows_for_token_classify() -> None:
    body = orjson.loads(pooling_request([[101, 7, 102], [101, 8, 9, 102]]))
    assert body["input"] == [[101, 7, 102], [101, 8, 9, 102]]
    assert body["task"] == "token_classify"
    assert body["use_activation"] is True and body["add_special_tokens"] is False
    assert (body["encoding_format"], body["embed_dtype"], body["endianness"]) == ("base64", "float32", "little")
    assert "embed_dtype" not in orjson.loads(pooling_request([[1]], encoding="float"))


def test_parse_response_of_nested_floats_and_of_base64_reordered_by_index() -> None:
    first, second = scores_for([1, 2]), scores_for([3, 4, 5])
    payload = orjson.dumps({"data": [
        {"index": 1, "object": "pooling", "data": base64.b64encode(second.astype("<f4").tobytes()).decode()},
        {"index": 0, "object": "pooling", "data": first.tolist()},
    ]})
    parsed = parse_pooling_response(payload, [2, 3], 3)
    np.testing.assert_array_equal(parsed[0], first)
    np.testing.assert_array_equal(parsed[1], second)
    assert all(matrix.dtype == np.float32 for matrix in parsed)


def test_best_labels_are_each_windows_argmax_and_its_probability_in_request_order() -> None:
    rng = np.random.default_rng(7)
    first, second = (rng.dirichlet(np.ones(3), size=n).astype(np.float32) for n in (2, 3))
    payload = orjson.dumps({"data": [
        {"index": 1, "object": "pooling", "data": base64.b64encode(second.astype("<f4").tobytes()).decode()},
        {"index": 0, "object": "pooling", "data": first.tolist()},
    ]})
    parsed = parse_pooling_response(payload, [2, 3], 3, best_labels=True)
    assert len(parsed) == 2
    for best, rows in zip(parsed, [first, second], strict=True):
        assert isinstance(best, BestLabels)
        assert best.classes.dtype == np.uint8 and best.scores.dtype == np.float32  # as the other engines send them
        assert best.classes.tolist() == rows.argmax(axis=1).tolist()
        np.testing.assert_array_equal(best.scores, rows.max(axis=1))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"<html>bad gateway</html>", "other than a pooling response"),
        (orjson.dumps({"data": [{"index": 0, "data": [[0.1, 0.2, 0.7]]}]}), "1 results for 2 windows"),
        (orjson.dumps({"data": [{"index": 0, "data": [[0.1, 0.9]]}, {"index": 1, "data": [[0.1, 0.9]]}]}), "shape"),
        (orjson.dumps({"data": [{"index": 0, "data": "not base64!"}, {"index": 1, "data": "AAAA"}]}), "unreadable"),
        (orjson.dumps({"data": [{"index": 0, "data": [[1, 2, 3]]}, {"index": 0, "data": [[1, 2, 3]]}]}), "bad index"),
    ],
)
def test_parse_response_rejects_what_does_not_fit_the_request(payload: bytes, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        parse_pooling_response(payload, [1, 1], 3)


def test_error_message_of_vllm_error_shapes() -> None:
    assert error_message(b'{"error": {"message": "too long", "type": "BadRequestError", "code": 400}}') == "too long"
    assert error_message(b'{"object": "error", "message": "old shape"}') == "old shape"
    assert error_message(b"Internal Server Error") == "Internal Server Error"
    assert error_message(b"") == "(empty body)"


# --- against a scripted server -----------------------------------------------------------------


class Script:
    def __init__(self, behaviours: list[Any]) -> None:
        self.behaviours = behaviours
        self.requests: list[dict[str, Any]] = []
        self.health_status = 200
        self.max_model_len = 64

    async def pooling(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.requests.append(body)
        behaviour = self.behaviours.pop(0) if self.behaviours else "ok"
        if isinstance(behaviour, tuple) and behaviour[0] == "stall":
            await asyncio.sleep(behaviour[1])
            behaviour = "ok"
        if behaviour != "ok":
            status, headers = (behaviour, {}) if isinstance(behaviour, int) else behaviour
            return web.Response(status=status, headers=headers,
                                body=orjson.dumps({"error": {"message": f"scripted {status}", "code": status}}))
        data = [{"index": i, "object": "pooling", "data": scores_for(window).tolist()}
                for i, window in enumerate(body["input"])]
        return web.json_response({"object": "list", "data": data})

    async def health(self, _: web.Request) -> web.Response:
        return web.Response(status=self.health_status)

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m", "max_model_len": self.max_model_len}]})


@asynccontextmanager
async def scripted_server(script: Script) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/pooling", script.pooling)
    app.router.add_get("/health", script.health)
    app.router.add_get("/v1/models", script.models)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def engine_for(url: str, model_dir: str, **options: Any) -> RemoteEngine:
    settings: dict[str, Any] = {"timeout_s": 5.0, "max_retries": 3, "encoding": "float", "backoff_s": 0.01,
                                "backoff_max_s": 0.05, "health_interval_s": 0.05, "startup_timeout_s": 2.0}
    settings.update(options)
    return RemoteEngine(url, model_dir, **settings)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


def test_model_facts_come_from_the_local_config(model_dir: str) -> None:
    engine = RemoteEngine("http://127.0.0.1:9/", model_dir, max_length=32)
    assert isinstance(engine, Engine)
    assert engine.id2label == dict(enumerate(LABELS))
    assert engine.max_length == 32 and engine.url == "http://127.0.0.1:9"
    assert not engine.ready()


def test_classify_splits_into_requests_and_keeps_order(model_dir: str) -> None:
    script = Script([])
    windows = [[i, i + 1, i + 2] for i in range(7)]

    async def scenario() -> None:
        async with scripted_server(script) as url:
            engine = engine_for(url, model_dir, request_windows=3)
            await engine.start()
            try:
                results = await engine.classify(windows)
            finally:
                await engine.close()
        assert [len(r["input"]) for r in script.requests] == [3, 3, 1]
        for window, scores in zip(windows, results, strict=True):
            np.testing.assert_array_equal(scores, scores_for(window))

    run(scenario)


@pytest.mark.parametrize(("aggregation", "best"), [("none", True), ("simple", True), ("first", True),
                                                   ("average", False), ("max", False)])
def test_the_engine_hands_on_best_labels_where_the_aggregation_reads_no_more(model_dir: str, aggregation: str,
                                                                              best: bool) -> None:
    from worker.settings import load_settings

    windows = [[1, 7, 2], [1, 8, 9, 40, 2]]

    async def scenario() -> None:
        async with scripted_server(Script([])) as url:
            engine = RemoteEngine.from_settings(load_settings({
                "NER_ENGINE": "remote", "NER_REMOTE_URL": url, "NER_MODEL": model_dir, "NER_AGGREGATION": aggregation}))
            await engine.start()
            try:
                results = await engine.classify(windows)
            finally:
                await engine.close()
        for window, scores in zip(windows, results, strict=True):
            rows = scores_for(window)
            if best:
                assert isinstance(scores, BestLabels)
                assert scores.classes.tolist() == rows.argmax(axis=1).tolist()
                np.testing.assert_array_equal(scores.scores, rows.max(axis=1))
            else:
                assert not isinstance(scores, BestLabels)
                np.testing.assert_array_equal(scores, rows)

    run(scenario)


def test_5xx_and_429_are_retried_until_an_answer(model_dir: str) -> None:
    script = Script([500, 503, (429, {"Retry-After": "0"}), "ok"])

    async def scenario() -> None:
        async with scripted_server(script) as url:
            engine = engine_for(url, model_dir)
            await engine.start()
            try:
                result = await engine.classify([[1, 2]])
                assert engine.ready()
            finally:
                await engine.close()
        np.testing.assert_array_equal(result[0], scores_for([1, 2]))
        assert len(script.requests) == 4  # three failures, then the answer: nothing skipped

    run(scenario)


def test_timeouts_are_retried(model_dir: str) -> None:
    script = Script([("stall", 1.0), "ok"])

    async def scenario() -> None:
        async with scripted_server(script) as url:
            engine = engine_for(url, model_dir, timeout_s=0.3)
            await engine.start()
            try:
                result = await engine.classify([[4, 5, 6]])
            finally:
                await engine.close()
        np.testing.assert_array_equal(result[0], scores_for([4, 5, 6]))
        assert len(script.requests) == 2

    run(scenario)


def test_exhausted_retries_raise_engine_error_and_readiness_turns_false(model_dir: str) -> None:
    script = Script([502, 502, 502, 502, "ok"])

    async def scenario() -> None:
        async with scripted_server(script) as url:
            engine = engine_for(url, model_dir, max_retries=3, health_interval_s=30)
            await engine.start()
            try:
                with pytest.raises(EngineError, match=r"failed 4 times.*HTTP 502"):
                    await engine.classify([[1]])
                assert not engine.ready()
                await engine.classify([[1]])  # the server answers again
                assert engine.ready()
            finally:
                await engine.close()
        assert len(script.requests) == 5

    run(scenario)


def test_a_client_error_is_not_retried(model_dir: str) -> None:
    script = Script([400])

    async def scenario() -> None:
        async with scripted_server(script) as url:
            engine = engine_for(url, model_dir)
            await engine.start()
            try:
                with pytest.raises(EngineError, match=r"refused the request.*scripted 400"):
                    await engine.classify([[1, 2, 3]])
            finally:
                await engine.close()
        assert len(script.requests) == 1

    run(scenario)


def test_readiness_follows_the_health_endpoint(model_dir: str) -> None:
    script = Script([])

    async def scenario() -> None:
        async with scripted_server(script) as url:
            engine = engine_for(url, model_dir)
            await engine.start()
            try:
                assert engine.ready()
                script.health_status = 503
                await asyncio.sleep(0.3)
                assert not engine.ready()
                script.health_status = 200
                await asyncio.sleep(0.3)
                assert engine.ready()
            finally:
                await engine.close()
            assert not engine.ready()

    run(scenario)


def test_start_fails_naming_the_url_when_the_server_never_answers(model_dir: str) -> None:
    script = Script([])
    script.health_status = 503

    async def scenario() -> None:
        async with scripted_server(script) as url:
            engine = engine_for(url, model_dir, startup_timeout_s=0.3)
            with pytest.raises(EngineError, match=r"NER_REMOTE_URL=http://127\.0\.0\.1"):
                await engine.start()
            assert not engine.ready()

    run(scenario)


def test_start_refuses_windows_longer_than_the_server_takes(model_dir: str) -> None:
    script = Script([])
    script.max_model_len = 16

    async def scenario() -> None:
        async with scripted_server(script) as url:
            engine = engine_for(url, model_dir)
            with pytest.raises(EngineError, match="NER_MAX_LENGTH=16"):
                await engine.start()

    run(scenario)


def test_classify_before_start_is_an_engine_error(model_dir: str) -> None:
    async def scenario() -> None:
        with pytest.raises(EngineError, match="not started"):
            await engine_for("http://127.0.0.1:9", model_dir).classify([[1]])

    run(scenario)
