"""The engine host with the shipped model and the transformers engine on the CPU: several
clients share one engine, get exactly their own rows, and see the host's failures."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from worker.bundled_model import TINY_NER_PATH
from worker.engine import wire
from worker.engine.base import EngineError, WindowScores
from worker.engine.hf import TransformersEngine
from worker.engine.host import EngineFacts, EngineHostProcess, HostedEngine
from worker.settings import Settings
from worker.text.aggregate import BEST_ONLY_STRATEGIES
from worker.text.scores import BestLabels

MODEL = str(TINY_NER_PATH)
ENVIRON = {"NER_ENGINE": "hf", "NER_MODEL": MODEL, "NER_DEVICE": "cpu", "NER_LOG_LEVEL": "WARNING"}


def make_windows(seed: int, count: int, longest: int = 128) -> list[list[int]]:
    rng = random.Random(seed)
    return [[101, *(rng.randrange(1000, 6000) for _ in range(rng.randint(1, longest - 2))), 102]
            for _ in range(count)]


def facts() -> EngineFacts:
    return EngineFacts.of(TransformersEngine(MODEL))


async def reference(windows: list[list[int]]) -> list[WindowScores]:
    """The rows the in-process engine gives for these windows alone."""
    host_settings = Settings()  # the host's: the default aggregation needs best labels only
    engine = TransformersEngine(MODEL, device="cpu", micro_batch_tokens=host_settings.max_batch_tokens,
                                best_labels=host_settings.aggregation in BEST_ONLY_STRATEGIES)
    await engine.start()
    try:
        return await engine.classify(windows)
    finally:
        await engine.close()


def assert_same_rows(got: list[WindowScores], expected: list[WindowScores], *, merged: bool) -> None:
    """Bit for bit when the host ran the request in a batch of its own; within float32 rounding
    when merged: other windows change the padded width and the order of the sums, just as they
    would in a batch of the in-process engine."""
    assert [len(g) for g in got] == [len(e) for e in expected]
    for g, e in zip(got, expected, strict=True):
        if isinstance(e, BestLabels):  # what the host answers for the default aggregation
            assert isinstance(g, BestLabels)
            assert np.array_equal(g.classes, e.classes)
            g, e = g.scores, e.scores
        else:
            assert not isinstance(g, BestLabels) and g.shape == e.shape
            assert (g.argmax(axis=1) == e.argmax(axis=1)).all()
        assert g.dtype == np.float32
        if merged:
            np.testing.assert_allclose(g, e, rtol=0, atol=1e-5)
        else:
            assert np.array_equal(g, e)


def start_host(socket_path: str | None = None, **options: float) -> EngineHostProcess:
    host = EngineHostProcess(socket_path=socket_path, environ=ENVIRON, drain_timeout_s=5.0, **options)  # type: ignore[arg-type]
    host.start()
    return host


@pytest.fixture(scope="module")
def shared_host() -> Iterator[EngineHostProcess]:
    host = start_host(max_wait_ms=5.0)
    yield host
    asyncio.run(host.stop(timeout_s=10))


async def connect(host: EngineHostProcess) -> HostedEngine:
    engine = HostedEngine(host.socket_path, facts(), start_timeout_s=120)
    await host.wait_ready(engine)
    return engine


def host_up(host: EngineHostProcess) -> None:
    async def probe() -> None:
        await (await connect(host)).close()

    asyncio.run(probe())


def _client_process(socket_path: str, requests: list[list[list[int]]], start_at: float) -> list[list[WindowScores]]:
    """One stream process's share: its own connection, its requests all in flight at once."""

    async def run() -> list[list[WindowScores]]:
        engine = HostedEngine(socket_path, facts(), start_timeout_s=120)
        await engine.start()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        try:
            return list(await asyncio.gather(*(engine.classify(windows) for windows in requests)))
        finally:
            await engine.close()

    return asyncio.run(run())


def test_client_processes_get_the_rows_of_the_in_process_engine(shared_host: EngineHostProcess) -> None:
    host_up(shared_host)  # loaded before the clock starts
    shares = [[make_windows(100 * process + request, 12) for request in range(4)] for process in range(3)]
    start_at = time.time() + 8.0  # every process connected before the first request goes out
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(shares)) as pool:
        answers = pool.starmap(_client_process, [(shared_host.socket_path, share, start_at) for share in shares])
    for share, answer in zip(shares, answers, strict=True):
        for windows, rows in zip(share, answer, strict=True):
            assert_same_rows(rows, asyncio.run(reference(windows)), merged=True)


def test_requests_that_arrive_together_go_to_the_engine_as_one_batch(shared_host: EngineHostProcess) -> None:
    asyncio.run(_merged(shared_host))


async def _merged(shared_host: EngineHostProcess) -> None:
    client = await connect(shared_host)
    others = [await connect(shared_host) for _ in range(3)]
    try:
        before = await client.host_stats()
        requests = [(engine, make_windows(7 * i + n, 6)) for i, engine in enumerate(others) for n in range(5)]
        answers = await asyncio.gather(*(engine.classify(windows) for engine, windows in requests))
        after = await client.host_stats()
    finally:
        for engine in [client, *others]:
            await engine.close()
    assert after["requests"] - before["requests"] == len(requests)
    assert after["windows"] - before["windows"] == sum(len(windows) for _, windows in requests)
    assert after["batches"] - before["batches"] < len(requests) / 2  # merged across connections
    for (_, windows), rows in zip(requests, answers, strict=True):
        assert [len(r) for r in rows] == [len(w) for w in windows]


def test_one_clients_bad_window_does_not_fail_anothers_merged_batch() -> None:
    asyncio.run(_bad_window_alone())


async def _bad_window_alone() -> None:
    host = start_host(max_wait_ms=300.0)  # long enough that both requests surely share a batch
    good, bad = (HostedEngine(host.socket_path, facts(), start_timeout_s=120) for _ in range(2))
    try:
        await host.wait_ready(good)
        await bad.start()
        windows = make_windows(5, 4)
        answers = await asyncio.gather(good.classify(windows), bad.classify([[101, 10**6, 102]]),
                                       return_exceptions=True)
        assert isinstance(answers[1], EngineError)
        assert not isinstance(answers[0], BaseException)
        assert_same_rows(answers[0], await reference(windows), merged=False)
        stats = await good.host_stats()
        assert stats["batches"] == 3 and stats["failed_requests"] == 1  # merged, then retried one by one
        assert good.ready() and bad.ready()
    finally:
        await good.close()
        await bad.close()
        await host.stop(timeout_s=10)


def _frames(sock: socket.socket, most: int = 100) -> list[wire.Frame]:
    """Up to ``most`` frames, fewer if the host hangs up or stays silent for a while."""
    sock.settimeout(10.0)
    frames: list[wire.Frame] = []
    try:
        while len(frames) < most and (frame := wire.read_frame(sock)) is not None:
            frames.append(frame)
    except TimeoutError:
        pass
    return frames


def test_bad_frames_are_refused(shared_host: EngineHostProcess) -> None:
    host_up(shared_host)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(shared_host.socket_path)
        assert wire.read_frame(sock).kind == wire.READY  # type: ignore[union-attr]
        mismatched = bytearray(wire.pack_windows([[101, 7, 102]]))
        mismatched[4:8] = (5).to_bytes(4, "little")  # says 5 tokens, carries 3
        too_long = wire.pack_windows([[7] * 129])
        negative = wire.pack_windows([[101, -3, 102]])
        for request_id, payload in ((1, bytes(mismatched)), (2, too_long), (3, negative),
                                    (4, wire.pack_windows([[101, 7, 102]]))):
            wire.send_frame(sock, wire.REQUEST, request_id, payload)
        answers = {frame.request_id: frame for frame in _frames(sock, most=4)}
        wire.send_frame(sock, wire.RESULT, 5, b"")  # a client never sends results
        answers.update({frame.request_id: frame for frame in _frames(sock)})
    assert [answers[i].kind for i in (1, 2, 3)] == [wire.ERROR] * 3
    assert b"129 tokens" in answers[2].payload and b"negative" in answers[3].payload
    assert answers[4].kind == wire.BEST  # a bad request fails alone; the connection goes on (best labels)
    assert answers[0].kind == wire.ERROR and b"refused" in answers[0].payload  # then the host hung up
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(shared_host.socket_path)
        assert wire.read_frame(sock).kind == wire.READY  # type: ignore[union-attr]
        sock.sendall(wire.HEADER.pack(99, 0, 1))  # an unknown kind: the stream cannot be followed
        frames = _frames(sock)
    assert [(f.kind, f.request_id) for f in frames] == [(wire.ERROR, 0)]


def test_killing_the_host_fails_the_requests_in_flight() -> None:
    asyncio.run(_killed())


async def _killed() -> None:
    host = start_host()
    engine = HostedEngine(host.socket_path, facts(), start_timeout_s=120)
    try:
        await host.wait_ready(engine)
        assert engine.ready()
        in_flight = [asyncio.create_task(engine.classify(make_windows(n, 400))) for n in range(4)]
        while (await engine.host_stats())["batches"] == 0:  # the engine is working on them
            await asyncio.sleep(0.01)
        host.kill()
        for task in in_flight:
            with pytest.raises(EngineError, match="engine host"):
                await task
        assert not engine.ready()
        with pytest.raises(EngineError):
            await engine.classify(make_windows(1, 1))
    finally:
        await engine.close()
        await host.stop(timeout_s=5)


def test_a_client_started_before_the_host_waits_for_it(tmp_path: Path) -> None:
    asyncio.run(_early_client(str(tmp_path / "engine.sock")))


async def _early_client(socket_path: str) -> None:
    engine = HostedEngine(socket_path, facts(), start_timeout_s=120)
    starting = asyncio.create_task(engine.start())
    await asyncio.sleep(1.0)
    assert not starting.done() and not engine.ready()
    host = start_host(socket_path)
    try:
        await host.wait_ready(engine)
        await starting
        assert engine.ready()
        windows = make_windows(9, 3)
        assert_same_rows(await engine.classify(windows), await reference(windows), merged=False)
    finally:
        await engine.close()
        assert await host.stop(timeout_s=10) == 0  # SIGTERM: drained and stopped cleanly


def test_a_host_whose_engine_cannot_load_fails_the_start(tmp_path: Path) -> None:
    asyncio.run(_unloadable(str(tmp_path / "no-model")))


async def _unloadable(model: str) -> None:
    host = EngineHostProcess(environ={**ENVIRON, "NER_MODEL": model})
    host.start()
    engine = HostedEngine(host.socket_path, facts(), start_timeout_s=120)
    try:
        with pytest.raises(EngineError, match="exited with code"):
            await host.wait_ready(engine)
        assert not engine.ready()
    finally:
        await host.stop(timeout_s=5)
