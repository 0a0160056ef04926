"""The vLLM engine: token classification on a GPU with several vLLM engines sharing it.

One vLLM engine spends a few hundred microseconds of Python per request, while the GPU needs
well under a hundred per short document with a BERT-sized encoder: one engine leaves most of
the GPU idle. So this engine runs ``replicas`` vLLM engines, each in a program of its own
(``python -m worker.engine.vllm.replica``), each with ``gpu_memory_utilization / replicas`` of
the GPU, and feeds them from the worker's event loop over Unix sockets: token ids go out as
int32 arrays, scores come back as float32 matrices. Every batch goes to the replica with the
fewest tokens outstanding; a large batch is split over several. ``classify`` only awaits, so
Kafka I/O, tokenization and decoding of other batches go on while the replicas work.

vLLM is imported only in the replica programs: importing this module needs no vLLM.
A replica that dies fails its open batches with ``EngineError`` and marks the engine not
ready; nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from worker.engine.base import EngineError, ScoreKind, WindowScores, read_model_facts
from worker.engine.vllm.replicas import ReplicaConnection, ReplicaHandle, split_evenly
from worker.settings import Settings
from worker.text.aggregate import BEST_ONLY_STRATEGIES

DEFAULT_START_TIMEOUT_S = 900.0
DEFAULT_SPLIT_TOKENS = 8192
FLOAT32_ATTENTION_BACKEND = "FLEX_ATTENTION"


def llm_arguments(model: str, *, dtype: str, max_model_len: int, max_num_batched_tokens: int, max_num_seqs: int,
                  gpu_memory_utilization: float, enforce_eager: bool, attention_backend: str) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for one replica (its share of the GPU already applied)."""
    arguments: dict[str, Any] = {
        "model": model,
        "runner": "pooling",
        # "auto" means bfloat16 on a GPU, as in the transformers engine.
        "dtype": "bfloat16" if dtype == "auto" else dtype,
        "max_num_batched_tokens": max_num_batched_tokens,
        "max_num_seqs": max_num_seqs,
        "gpu_memory_utilization": gpu_memory_utilization,
        "enforce_eager": enforce_eager,
        # Windows never share prefixes worth caching; hashing every block would only cost CPU.
        "enable_prefix_caching": False,
        "seed": 0,
    }
    if max_model_len:
        arguments["max_model_len"] = max_model_len
    if not attention_backend and arguments["dtype"] == "float32":
        # vLLM's own float32 choice for encoders, TRITON_ATTN, multiplies in TF32 (Triton's tl.dot
        # rounds float32 inputs to 10-bit mantissas): on the shipped model it is 4.6e-3 off a float64
        # reference in probability and changes 9 of 4,551 spans, while FLEX_ATTENTION and the
        # transformers engine stay within 5e-6 (bench/results/gpu_agreement_h200.json). Whoever
        # asks for float32 asks for float32 arithmetic.
        attention_backend = FLOAT32_ATTENTION_BACKEND
    if attention_backend:
        arguments["attention_backend"] = attention_backend
    return arguments


class VllmEngine:
    scores: ScoreKind = "probabilities"

    def __init__(self, model: str, *, replicas: int = 4, dtype: str = "auto", max_length: int = 0,
                 max_model_len: int = 0, max_num_batched_tokens: int = 65536, max_num_seqs: int = 1024,
                 gpu_memory_utilization: float = 0.8, enforce_eager: bool = True, attention_backend: str = "",
                 start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
                 split_tokens: int = DEFAULT_SPLIT_TOKENS, best_labels: bool = False) -> None:
        """``best_labels``: the replicas answer each token's best label and its probability only,
        for the aggregations that need no more."""
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        facts = read_model_facts(model, max_length, max_model_len)
        self.id2label: dict[int, str] = facts.id2label
        self.name = facts.name
        self.max_length = facts.max_length
        self.replicas = replicas
        self.start_timeout_s = start_timeout_s
        self.split_tokens = max(1, split_tokens)
        self.replica_config: dict[str, Any] = {
            "llm": llm_arguments(
                model, dtype=dtype, max_model_len=max_model_len, max_num_batched_tokens=max_num_batched_tokens,
                max_num_seqs=max_num_seqs, gpu_memory_utilization=gpu_memory_utilization / replicas,
                enforce_eager=enforce_eager, attention_backend=attention_backend,
            ),
            "max_in_core": 2 * max_num_seqs,
            "best_labels": best_labels,
        }
        self._handles: list[ReplicaHandle] = []
        self._active = replicas
        self._server: asyncio.AbstractServer | None = None
        self._socket_dir: str | None = None
        self._started = False
        self._closing = False

    @classmethod
    def from_settings(cls, settings: Settings) -> VllmEngine:
        return cls(
            settings.model, replicas=settings.engine_replicas, dtype=settings.dtype, max_length=settings.max_length,
            max_model_len=settings.vllm_max_model_len, max_num_batched_tokens=settings.vllm_max_num_batched_tokens,
            max_num_seqs=settings.vllm_max_num_seqs, gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
            enforce_eager=settings.vllm_enforce_eager, attention_backend=settings.vllm_attention_backend,
            best_labels=settings.aggregation in BEST_ONLY_STRATEGIES,
        )

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the replicas: the first alone (it fills the caches), then the rest together."""
        if self._started:
            return
        self._started = True
        self._socket_dir = tempfile.mkdtemp(prefix="ner-vllm-")  # private (0700) to this user
        socket_path = str(Path(self._socket_dir) / "engine.sock")
        self._handles = [ReplicaHandle(index) for index in range(self.replicas)]
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: ReplicaConnection(self._handles), path=socket_path)
        try:
            first, rest = self._handles[0], self._handles[1:]
            first.launch(socket_path, self.replica_config)
            await first.wait_ready(self.start_timeout_s)
            for handle in rest:
                handle.launch(socket_path, self.replica_config)
            await asyncio.gather(*(handle.wait_ready(self.start_timeout_s) for handle in rest))
        except BaseException:
            await self.close()
            raise

    def ready(self) -> bool:
        return (self._started and not self._closing and len(self._handles) == self.replicas
                and all(handle.ready for handle in self._handles))

    def use_replicas(self, count: int | None) -> None:
        """Send work to the first ``count`` replicas only (None: all); for capacity measurements."""
        self._active = self.replicas if count is None else max(1, min(count, self.replicas))

    async def close(self) -> None:
        self._closing = True
        for handle in self._handles:
            if handle.transport is not None:
                handle.transport.close()  # the replica sees the end of its stream and exits
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while loop.time() < deadline and any(h.process is not None and h.exit_code() is None for h in self._handles):
            await asyncio.sleep(0.1)
        for handle in self._handles:
            handle.kill()
            if handle.process is not None:
                await asyncio.to_thread(handle.process.wait)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    # --- work -----------------------------------------------------------------------------
    async def classify(self, windows: Sequence[Sequence[int]]) -> list[WindowScores]:
        if not windows:
            return []
        self._check_usable()
        lengths = [len(window) for window in windows]
        if min(lengths) < 1 or max(lengths) > self.max_length:
            raise EngineError(f"window lengths must be 1..{self.max_length} tokens, got {min(lengths)}..{max(lengths)}")
        total = sum(lengths)
        active = self._handles[: self._active]
        parts = min(len(active), max(1, total // self.split_tokens))
        futures = []
        for start, end in split_evenly(lengths, parts):
            handle = min(active, key=lambda h: h.outstanding_tokens)
            futures.append(handle.submit(windows[start:end], lengths[start:end]))
        scores: list[WindowScores] = []
        for part in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(part, BaseException):
                raise part if isinstance(part, EngineError) else EngineError(f"vLLM engine failed: {part}") from part
            scores.extend(part)
        return scores

    def _check_usable(self) -> None:
        if not self._started or self._closing:
            raise EngineError("the vLLM engine is not started")
        for handle in self._handles:
            if handle.failure is not None:
                raise EngineError(f"the vLLM engine is down: {handle.failure}")
            if not handle.ready:
                raise EngineError("the vLLM engine is still starting")
