"""A framed stream connection, the same on both ends of the engine host's socket."""

from __future__ import annotations

import asyncio

from worker.engine import wire


class FrameConnection(asyncio.Protocol):
    """Cuts what arrives into frames and writes frames; the subclass says what they mean."""

    def __init__(self) -> None:
        self._buffer = wire.FrameBuffer()
        self._transport: asyncio.Transport | None = None

    # --- what a subclass implements -------------------------------------------------------
    def opened(self) -> None:
        """The connection is up."""

    def frame_received(self, frame: wire.Frame) -> None:
        raise NotImplementedError

    def unreadable(self, reason: str) -> None:
        """The peer sent bytes that are no frame: the stream cannot be followed any more."""
        self.close()

    def lost(self, reason: str) -> None:
        """The connection is gone."""

    # --- the plumbing ---------------------------------------------------------------------
    @property
    def closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def send(self, kind: int, request_id: int, payload: bytes) -> None:
        """Write one frame; nothing once the connection is closing (the peer has gone)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(wire.header(kind, request_id, len(payload)))
            if payload:
                self._transport.write(payload)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.opened()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._buffer.feed(data)
        except wire.WireError as exc:
            self.unreadable(str(exc))
            return
        for frame in frames:
            if self.closing:
                return
            self.frame_received(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost(str(exc) if exc else "closed by the peer")
