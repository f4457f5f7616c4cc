"""Request body size guard: 413 ``application/problem+json`` before the app buffers the body.

Pure ASGI (no starlette needed): a declared ``Content-Length`` over the limit is refused before
the app runs, a streamed body is cut off as soon as it crosses it. FastAPI's own ``max_body_size``
answers in plain text, which is why this exists.
"""

from __future__ import annotations

import orjson

from fleetkit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimitMiddleware"]


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 problem+json for bodies over ``max_bytes`` (declared or streamed); 400 for an
    invalid ``Content-Length``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    await self._reject(scope, send, declared)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(scope, send, seen)

    async def _reject(self, scope: Scope, send: Send, size: int) -> None:
        too_large = size >= 0
        status = 413 if too_large else 400
        body = orjson.dumps({
            "type": "body-too-large" if too_large else "bad-request",
            "title": "Content Too Large" if too_large else "Bad Request",
            "status": status,
            "detail": (f"request body exceeds {self.max_bytes} bytes" if too_large
                       else "invalid Content-Length"),
            "instance": scope.get("path"),
        })
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/problem+json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
