"""A bound on the request head in ``fleetkit serve``'s server, before the app sees the request.

uvicorn's httptools protocol has no limit on the request line and header fields (its h11
protocol has one): it buffers a 4 MB header, then hands it to the app, where
:class:`~fleetkit.app.guard.ProtocolGuardMiddleware` answers 431. This protocol counts the bytes
of each request head as they arrive and, once they pass ``MAX_HEADER_BYTES`` plus
:data:`SLACK` (the request line and framing the guard does not count), answers 431 itself: the
server holds at most that much plus one read of a request head, whatever the client sends.

The guard publishes its limit in the lifespan state (:data:`HEAD_LIMIT_KEY`); with no guard (or
``--lifespan off``) there is no bound here. The refusal is the guard's problem+json, with
``nosniff``, a fresh ``X-Request-ID`` and ``Connection: close``. The connection then *lingers*:
what the client still sends is read and dropped (no parsing, no buffering) until it closes, for
at most :data:`LINGER_SECONDS` and :data:`LINGER_BYTES`, so that a client still uploading its
head reads the 431 instead of a reset.
"""

from __future__ import annotations

import asyncio
import secrets

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from fleetkit.app.guard import HEAD_LIMIT_KEY

__all__ = ["HEAD_LIMIT_KEY", "LINGER_BYTES", "LINGER_SECONDS", "SLACK", "HeadLimitProtocol"]

#: Bytes of a head beyond ``MAX_HEADER_BYTES`` left to the guard (request line, CRLFs): a head
#: the guard would accept always reaches it.
SLACK = 1024
LINGER_SECONDS = 10.0
LINGER_BYTES = 64 * 1024 * 1024
_BODY = orjson.dumps({"type": "headers-too-large", "title": "Request Header Fields Too Large",
                      "status": 431, "detail": "request head too large"})


class HeadLimitProtocol(HttpToolsProtocol):
    """httptools protocol refusing a request head over the guard's limit as it arrives."""

    _head: int | None = 0  # bytes of the current request head; None while a body is read
    _linger: asyncio.TimerHandle | None = None
    _dropped = 0

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:  # refused: drop what the client still sends
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        limit = self.app_state.get(HEAD_LIMIT_KEY)
        if limit is None or self._head is None:
            super().data_received(data)
            return
        # Counted before parsing: a head that completes in this read resets the count.
        self._head += len(data)
        super().data_received(data)
        if self._head is not None and self._head > limit + SLACK:
            self._refuse()

    def on_headers_complete(self) -> None:
        self._head = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head = 0  # what follows is the next request's head
        super().on_message_complete()

    def _refuse(self) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline:
            transport.close()  # an earlier request is still being answered: no 431 between
            return
        lines = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            lines += [name, b": ", value, b"\r\n"]
        lines += [b"content-type: application/problem+json\r\n",
                  b"content-length: ", str(len(_BODY)).encode(), b"\r\n",
                  b"x-content-type-options: nosniff\r\n",
                  b"x-request-id: ", secrets.token_hex(16).encode(), b"\r\n",
                  b"connection: close\r\n\r\n", _BODY]
        transport.write(b"".join(lines))
        self._unset_keepalive_if_required()
        if transport.can_write_eof():
            transport.write_eof()  # the client reads the 431, then EOF
        self._linger = self.loop.call_later(LINGER_SECONDS, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)
