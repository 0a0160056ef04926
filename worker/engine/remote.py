"""The remote engine: an existing vLLM server's ``/pooling`` endpoint, task ``token_classify``.

The worker still tokenizes every document itself and sends token id windows (``"input"`` as a
list of token id lists, several documents per request), so offsets stay exact and the server
never re-tokenizes. The model's labels and window size come from its local config:
``NER_MODEL`` must name the same model the server serves, since the worker needs its tokenizer
anyway.

Request and response shapes follow vLLM's ``PoolingCompletionRequest`` / ``PoolingResponse``
(vllm/entrypoints/pooling): scores come back as one ``[tokens, labels]`` softmax matrix per
window, as nested float lists or, with ``"encoding_format": "base64"`` (the default here,
about a fifth of the bytes and no float parsing), as flattened little-endian float32.
vLLM's ``/pooling`` has no way to answer less, so where the aggregation reads only each token's
best label and its probability (none, simple, first) the rows are reduced to ``BestLabels``
right after parsing, in one vectorised pass over all the windows of a response: the decoder then
gets 5 bytes per token, as from the other engines, instead of 4 per label.

Failures: connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff
and jitter (``Retry-After`` honoured); ``classify`` raises ``EngineError`` only when the retries
are spent, so the caller keeps every record (the stream stops without committing). Any other
status, or a response that does not fit the windows sent, fails at once: retrying cannot help.
``ready()`` is false from the first failed attempt until the server answers again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import orjson

from worker.engine.base import BestLabels, EngineError, ScoreKind, WindowScores, read_model_facts
from worker.retry import Backoff
from worker.settings import Settings
from worker.text.aggregate import BEST_ONLY_STRATEGIES

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_RETRYABLE_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)
_ENCODINGS = ("base64", "float")


class RemoteEngine:
    scores: ScoreKind = "probabilities"

    def __init__(self, url: str, model: str, *, timeout_s: float = 30.0, max_retries: int = 5,
                 max_length: int = 0, encoding: str = "base64", request_windows: int = 256,
                 request_tokens: int = 32768, max_connections: int = 8, backoff_s: float = 0.5,
                 backoff_max_s: float = 10.0, health_interval_s: float = 5.0,
                 startup_timeout_s: float = 120.0, best_labels: bool = False) -> None:
        """``best_labels``: answer each token's best label and its probability only (reduced from
        the server's rows on arrival), for the aggregations that need no more."""
        if encoding not in _ENCODINGS:
            raise ValueError(f"encoding must be one of {_ENCODINGS}, got {encoding!r}")
        self.url = url.rstrip("/")
        facts = read_model_facts(model, max_length)
        self.id2label: dict[int, str] = facts.id2label
        self.name = facts.name
        self.max_length = facts.max_length
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_retries = max_retries
        self._encoding = encoding
        self._request_windows = request_windows
        self._request_tokens = request_tokens
        self._max_connections = max_connections
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._health_interval_s = health_interval_s
        self._startup_timeout_s = startup_timeout_s
        self._best_labels = best_labels
        self._session: aiohttp.ClientSession | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._server_up = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteEngine:
        return cls(settings.remote_url, settings.model, timeout_s=settings.remote_timeout_s,
                   max_retries=settings.remote_max_retries, max_length=settings.max_length,
                   request_tokens=max(settings.max_batch_tokens, settings.max_length or 512),
                   max_connections=max(2, 2 * settings.max_concurrent_batches),
                   best_labels=settings.aggregation in BEST_ONLY_STRATEGIES)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection pool and wait until the server answers (bounded by the start timeout)."""
        # One pooled session for the engine's life: keep-alive connections, at most max_connections.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30),
            timeout=self._timeout, json_serialize=lambda value: orjson.dumps(value).decode(),
        )
        backoff = Backoff(self._backoff_s, self._backoff_max_s, deadline_s=self._startup_timeout_s)
        while not await self._probe():
            if backoff.exhausted():
                await self.close()
                raise EngineError(f"the vLLM server at NER_REMOTE_URL={self.url} did not answer "
                                  f"within {self._startup_timeout_s:.0f}s")
            delay = backoff.next_delay()
            log.warning("the vLLM server at %s does not answer yet; retrying in %.1fs", self.url, delay)
            await asyncio.sleep(delay)
        try:
            await self._check_server_model()
        except EngineError:
            await self.close()
            raise
        self._monitor = asyncio.create_task(self._watch_health(), name="remote-engine-health")

    def ready(self) -> bool:
        return self._session is not None and self._server_up

    async def close(self) -> None:
        self._server_up = False
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _probe(self) -> bool:
        """One ``GET /health``; updates readiness."""
        assert self._session is not None
        try:
            async with self._session.get(f"{self.url}/health") as response:
                await response.read()
                up = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            up = False
        self._mark(up)
        return up

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval_s)
            await self._probe()

    async def _check_server_model(self) -> None:
        """The server's ``max_model_len`` must fit our windows (vLLM rejects longer prompts)."""
        assert self._session is not None
        try:
            async with self._session.get(f"{self.url}/v1/models") as response:
                body = await response.read()
                models = orjson.loads(body).get("data", []) if response.status == 200 else []
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, AttributeError):
            models = []  # optional: an endpoint without /v1/models is still usable
        limits = [m.get("max_model_len") for m in models if isinstance(m, dict)]
        served = [int(v) for v in limits if isinstance(v, int)]
        if served and min(served) < self.max_length:
            raise EngineError(f"the vLLM server takes at most {min(served)} tokens per prompt but windows have up to "
                              f"{self.max_length}; set NER_MAX_LENGTH={min(served)} or less")
        log.info("remote engine: %s serves %s", self.url,
                 ", ".join(str(m.get("id")) for m in models if isinstance(m, dict)) or "an unnamed model")

    def _mark(self, up: bool) -> None:
        if up != self._server_up:
            if up:
                log.info("the vLLM server at %s answers again", self.url)
            else:
                log.warning("the vLLM server at %s does not answer", self.url)
        self._server_up = up

    # --- scoring ----------------------------------------------------------------------------

    async def classify(self, windows: Sequence[Sequence[int]]) -> list[WindowScores]:
        if self._session is None:
            raise EngineError("the remote engine is not started")
        chunks = split_requests(windows, max_windows=self._request_windows, max_tokens=self._request_tokens)
        results = await asyncio.gather(*(self._classify_chunk(windows[a:b]) for a, b in chunks))
        return [scores for chunk in results for scores in chunk]

    async def _classify_chunk(self, windows: Sequence[Sequence[int]]) -> list[WindowScores]:
        body = pooling_request(windows, encoding=self._encoding)
        lengths = [len(w) for w in windows]
        # Jitter: the requests of many workers that failed together must not come back together.
        backoff = Backoff(self._backoff_s, self._backoff_max_s, jitter=True)
        for attempt in range(self._max_retries + 1):
            retry_after: float | None = None
            try:
                status, payload, retry_after = await self._post(body)
            except _RETRYABLE_ERRORS as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if status == 200:
                    self._mark(True)
                    return parse_pooling_response(payload, lengths, len(self.id2label), best_labels=self._best_labels)
                problem = f"HTTP {status}: {error_message(payload)}"
                if status not in _RETRY_STATUSES:
                    raise EngineError(f"the vLLM server refused the request ({problem})")
            self._mark(False)
            if attempt == self._max_retries:
                raise EngineError(f"the vLLM server failed {attempt + 1} times; last: {problem}")
            delay = backoff.next_delay(retry_after)
            log.warning("vLLM request failed (%s); retry %d of %d in %.2fs",
                        problem, attempt + 1, self._max_retries, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _post(self, body: bytes) -> tuple[int, bytes, float | None]:
        assert self._session is not None
        async with self._session.post(f"{self.url}/pooling", data=body,
                                      headers={"Content-Type": "application/json"}) as response:
            payload = await response.read()
            return response.status, payload, _retry_after(response.headers.get("Retry-After"))


def split_requests(windows: Sequence[Sequence[int]], *, max_windows: int, max_tokens: int) -> list[tuple[int, int]]:
    """[start, end) ranges of consecutive windows, each within the window and token limits (never empty)."""
    ranges: list[tuple[int, int]] = []
    start, tokens = 0, 0
    for index, window in enumerate(windows):
        if index > start and (index - start >= max_windows or tokens + len(window) > max_tokens):
            ranges.append((start, index))
            start, tokens = index, 0
        tokens += len(window)
    if start < len(windows):
        ranges.append((start, len(windows)))
    return ranges


def pooling_request(windows: Sequence[Sequence[int]], *, encoding: str = "base64") -> bytes:
    """The JSON body of ``POST /pooling`` for token id windows that already carry special tokens."""
    body: dict[str, Any] = {
        "input": [list(w) for w in windows],
        "task": "token_classify",
        "use_activation": True,  # softmax probabilities, whatever the server's default
        "add_special_tokens": False,
        "encoding_format": encoding,
    }
    if encoding == "base64":
        body.update(embed_dtype="float32", endianness="little")
    return orjson.dumps(body)


def parse_pooling_response(payload: bytes, lengths: Sequence[int], num_labels: int, *,
                           best_labels: bool = False) -> list[WindowScores]:
    """One ``[length, num_labels]`` float32 matrix per window, in request order, or ``EngineError``;
    with ``best_labels`` each window's ``BestLabels`` instead."""
    try:
        items = orjson.loads(payload)["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise EngineError(f"the vLLM server answered something other than a pooling response: {exc}") from None
    if not isinstance(items, list) or len(items) != len(lengths):
        count = len(items) if isinstance(items, list) else "no"
        raise EngineError(f"the vLLM server returned {count} results for {len(lengths)} windows")
    results: list[npt.NDArray[np.float32] | None] = [None] * len(lengths)
    for position, item in enumerate(items):
        index = item.get("index", position) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < len(lengths) or results[index] is not None:
            raise EngineError(f"the vLLM server returned a result with a bad index: {index!r}")
        results[index] = _matrix(item.get("data"), lengths[index], num_labels)
    matrices = [r for r in results if r is not None]
    return best_of_windows(matrices) if best_labels else list(matrices)


def best_of_windows(matrices: Sequence[npt.NDArray[np.float32]]) -> list[WindowScores]:
    """Each window's best labels, found in one pass over all the windows' rows together."""
    if not matrices:
        return []
    best = BestLabels.of(np.concatenate(matrices) if len(matrices) > 1 else matrices[0])
    # As the other engines send them: one byte per class id where the labels fit.
    narrow: type[np.integer[Any]] = np.uint8 if matrices[0].shape[1] <= 256 else np.int32
    classes = best.classes.astype(narrow)
    stops = np.cumsum([len(matrix) for matrix in matrices]).tolist()
    return [BestLabels(classes[start:stop], best.scores[start:stop])
            for start, stop in zip([0, *stops[:-1]], stops, strict=True)]


def _matrix(data: Any, length: int, num_labels: int) -> npt.NDArray[np.float32]:
    try:
        if isinstance(data, str):
            flat = np.frombuffer(base64.b64decode(data, validate=True), dtype="<f4")
            if flat.size != length * num_labels:
                raise ValueError(f"{flat.size} values")
            matrix = flat.reshape(length, num_labels)
        else:
            matrix = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise EngineError(f"the vLLM server returned unreadable scores for a {length}-token window: {exc}") from None
    if matrix.shape != (length, num_labels):
        raise EngineError(f"the vLLM server returned scores of shape {matrix.shape} for a {length}-token window "
                          f"and {num_labels} labels (does it serve the model NER_MODEL names?)")
    return np.ascontiguousarray(matrix, dtype=np.float32)


def error_message(payload: bytes) -> str:
    """The message of a vLLM error response (``{"error": {"message": ...}}`` or older flat shapes)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload[:200].decode("utf-8", "replace") or "(empty body)"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        for key in ("message", "detail"):
            if key in body:
                return str(body[key])
    return str(body)[:200]


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare from vLLM; the backoff applies
