"""One vLLM engine replica: a separate program the vLLM engine starts, one per replica.

    python -m worker.engine.vllm.replica --socket PATH --index I --config JSON

It loads the model with ``vllm.LLM(runner="pooling", ...)``, warms it up, connects to the
worker's Unix socket ``PATH``, says READY, and then scores the token id windows of every
REQUEST frame with the pooling task ``token_classify`` (softmax probabilities,
``[len(window), num_labels]`` per window). When the worker hangs up, the replica exits.

Why a program of its own: one vLLM engine spends a few hundred microseconds of Python per
request, far more than a small encoder needs on the GPU, so the worker runs several engines
side by side on one GPU. Each must be a fresh interpreter (an ``LLM`` built inside a
``multiprocessing`` child was seen to hang), and a fresh interpreter also keeps vLLM, CUDA and
their threads out of the worker's own process.

Windows go into ``LLMEngine.add_request`` as they arrive and ``step()`` runs while requests are
pending, so new work joins the running batch (rather than rounds of ``LLM.encode`` calls, where
each round waits for the slowest window of the last).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import queue
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.engine import wire


@dataclass(slots=True)
class Job:
    """One REQUEST frame: its windows, and the scores as they come back."""

    request_id: int
    lengths: npt.NDArray[np.int32]
    ids: npt.NDArray[np.int32]
    offsets: list[int] = field(default_factory=list)
    scores: npt.NDArray[np.float32] | None = None
    remaining: int = 0
    failed: bool = False

    def window(self, index: int) -> list[int]:
        start = self.offsets[index]
        return self.ids[start : start + int(self.lengths[index])].tolist()  # type: ignore[no-any-return]


class Replica:
    def __init__(self, llm: Any, *, max_in_core: int, best_labels: bool = False) -> None:
        from vllm import PoolingParams  # type: ignore[import-not-found]

        self.sock: socket.socket | None = None
        self.llm = llm
        self.engine = llm.llm_engine
        self.max_in_core = max_in_core
        self.best_labels = best_labels  # answer each token's best label only: less to copy through the socket
        self.params = PoolingParams(task="token_classify")
        self.inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.send: Callable[[int, int, bytes], None] = self._send_socket
        self.num_labels = 0
        self.closed = False
        self._counter = 0

    # --- receiving ------------------------------------------------------------------------
    def start_reader(self) -> None:
        threading.Thread(target=self._read_loop, name="replica-reader", daemon=True).start()

    def _read_loop(self) -> None:
        assert self.sock is not None
        try:
            while (message := wire.read_frame(self.sock)) is not None:
                if message.kind != wire.REQUEST:
                    raise wire.WireError(f"unexpected {wire.KINDS[message.kind]} frame")
                try:
                    lengths, ids = wire.unpack_windows(message.payload)
                except wire.WireError as exc:
                    self.send(wire.ERROR, message.request_id, str(exc).encode())
                    continue
                self.inbox.put(make_job(message.request_id, lengths, ids))
        except (OSError, wire.WireError) as exc:
            print(f"vllm replica: connection lost: {exc}", file=sys.stderr, flush=True)
        self.inbox.put(None)

    def _poll(self) -> Job | None:
        try:
            job = self.inbox.get_nowait()
        except queue.Empty:
            return None
        if job is None:
            self.closed = True
        return job

    # --- sending --------------------------------------------------------------------------
    def _send_socket(self, kind: int, request_id: int, payload: bytes) -> None:
        assert self.sock is not None
        wire.send_frame(self.sock, kind, request_id, payload)

    def _finish(self, job: Job) -> None:
        if job.scores is None:  # a request without windows
            job.scores = np.empty((0, self.num_labels), dtype=np.float32)
        if self.best_labels:
            self.send(wire.BEST, job.request_id, wire.pack_best(job.scores))
        else:
            self.send(wire.RESULT, job.request_id, wire.pack_scores(job.scores))

    def _store(self, job: Job, index: int, data: Any) -> None:
        """Put one window's ``[tokens, labels]`` output into the job's stacked matrix."""
        matrix = data.float().numpy() if hasattr(data, "numpy") else np.asarray(data, dtype=np.float32)
        length = int(job.lengths[index])
        if matrix.ndim != 2 or matrix.shape[0] != length:
            raise ValueError(f"vLLM returned scores of shape {tuple(matrix.shape)} for a window of {length} tokens")
        if job.scores is None:
            self.num_labels = self.num_labels or int(matrix.shape[1])
            job.scores = np.empty((int(job.lengths.sum()), matrix.shape[1]), dtype=np.float32)
        start = job.offsets[index]
        job.scores[start : start + length] = matrix
        job.remaining -= 1

    # --- the engine loops -----------------------------------------------------------------
    def serve(self, *, until_idle: bool = False) -> None:
        """Answer requests until the worker hangs up (or, for the warm-up, until idle)."""
        waiting: deque[tuple[Job, int]] = deque()
        in_core: dict[str, tuple[Job, int]] = {}
        while True:
            if waiting or in_core:
                job = self._poll()
            elif until_idle:
                job = self._poll()
                if job is None:
                    return
            else:
                job = self.inbox.get()  # block only when the engine has nothing to do
                self.closed = job is None
            while job is not None:
                waiting.extend((job, index) for index in range(job.remaining))
                if job.remaining == 0:
                    self._finish(job)
                job = self._poll()
            if self.closed:
                return
            # Keep a bounded number of requests inside vLLM; the rest wait here (as LLM.encode does).
            while waiting and len(in_core) < self.max_in_core:
                pending, index = waiting.popleft()
                if pending.failed:
                    continue
                self._counter += 1
                key = str(self._counter)
                try:
                    self.engine.add_request(key, _tokens_input(pending.window(index)), self.params)
                except Exception as exc:  # a bad window fails its own request, not the replica
                    self._fail(pending, f"vLLM rejected a window: {exc}", in_core)
                    continue
                in_core[key] = (pending, index)
            if not in_core:
                continue
            for output in self.engine.step():
                if not output.finished or output.request_id not in in_core:
                    continue
                pending, index = in_core.pop(output.request_id)
                if pending.failed:
                    continue
                try:
                    self._store(pending, index, output.outputs.data)
                except ValueError as exc:
                    self._fail(pending, str(exc), in_core)
                    continue
                if pending.remaining == 0:
                    self._finish(pending)

    def _fail(self, job: Job, message: str, in_core: dict[str, tuple[Job, int]]) -> None:
        job.failed = True
        mine = [key for key, (pending, _) in in_core.items() if pending is job]
        for key in mine:
            del in_core[key]
        if mine:
            self.engine.abort_request(mine)
        self.send(wire.ERROR, job.request_id, message.encode())

    def warm_up(self, max_len: int, vocab: int) -> None:
        """Run a few windows through the engine so that the first real batch is not the slow one."""
        lengths = np.array([min(max_len, n) for n in (8, 64, 128, 256, 512)] * 4, dtype=np.int32)
        ids = (np.arange(int(lengths.sum())) % max(1, min(vocab, 1000))).astype(np.int32)
        answers: list[tuple[int, bytes]] = []
        self.send = lambda kind, _request_id, payload: answers.append((kind, payload))
        try:
            self.inbox.put(make_job(0, lengths, ids))
            self.serve(until_idle=True)
        finally:
            self.send = self._send_socket
        if not answers or answers[0][0] not in (wire.RESULT, wire.BEST):
            detail = answers[0][1].decode(errors="replace") if answers else "no answer"
            raise RuntimeError(f"warm-up failed: {detail}")


def make_job(request_id: int, lengths: npt.NDArray[np.int32], ids: npt.NDArray[np.int32]) -> Job:
    offsets = [0, *np.cumsum(lengths)[:-1].tolist()] if lengths.size else []
    return Job(request_id, lengths, ids, offsets=offsets, remaining=int(lengths.size))


def _tokens_input(ids: list[int]) -> Any:
    from vllm.inputs import tokens_input  # type: ignore[import-not-found]

    return tokens_input(ids)


def build_llm(options: dict[str, Any]) -> Any:
    if importlib.util.find_spec("flashinfer") is None:
        # vLLM 0.26 imports FlashInfer for a sampler (built even for pooling models) unless told not to.
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
    from vllm import LLM

    return LLM(**options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One vLLM token-classification engine replica.")
    parser.add_argument("--socket", required=True, help="Unix socket of the worker, connected once the engine is up")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--config", required=True, help="JSON: {llm: LLM kwargs, max_in_core, best_labels}")
    args = parser.parse_args(argv)
    config = json.loads(args.config)
    started = time.perf_counter()
    try:
        llm = build_llm(config["llm"])
        model_config = llm.llm_engine.model_config
        replica = Replica(llm, max_in_core=int(config.get("max_in_core", 2048)),
                          best_labels=bool(config.get("best_labels", False)))
        replica.warm_up(int(model_config.max_model_len), int(model_config.get_vocab_size()))
        # Connect only now: the engine-core process vLLM forked above must not inherit the socket.
        replica.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        replica.sock.connect(args.socket)
    except Exception as exc:
        traceback.print_exc()  # the whole story goes to the log; the worker gets the gist
        _report_start_failure(args.socket, args.index, f"{type(exc).__name__}: {exc}")
        os._exit(1)
    import vllm

    info = {
        "index": args.index, "pid": os.getpid(), "vllm": vllm.__version__, "num_labels": replica.num_labels,
        "max_model_len": int(model_config.max_model_len), "start_seconds": round(time.perf_counter() - started, 2),
    }
    replica.send(wire.READY, args.index, wire.ready_payload(info))
    replica.start_reader()
    status = 0
    try:
        replica.serve()
    except Exception:  # the engine itself failed: the worker sees the connection close and reports it
        traceback.print_exc()
        status = 1
    with contextlib.suppress(Exception):  # exiting anyway; the engine core also watches its parent
        llm.llm_engine.engine_core.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # skip interpreter teardown: vLLM's threads can abort it after the work is done


def _report_start_failure(path: str, index: int, message: str) -> None:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        # Best effort: the worker also sees the exit code.
        sock.connect(path)
        wire.send_frame(sock, wire.ERROR, index, f"vLLM replica {index} failed to start: {message}".encode())


if __name__ == "__main__":
    sys.exit(main())
