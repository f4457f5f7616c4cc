"""Request body size guard: 413 ``application/problem+json`` before the app buffers the body.

Pure ASGI (no starlette needed): a declared ``Content-Length`` over the limit is refused before
the app runs, a streamed body is cut off as soon as it crosses it. FastAPI's own ``max_body_size``
answers in plain text, which is why this exists.
"""

from __future__ import annotations

import orjson

from fleetkit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimitMiddleware"]


class BodyLimitMiddleware:
    """413 problem+json for bodies over ``max_bytes`` (declared or streamed); 400 for an
    invalid ``Content-Length``.

    A streamed (chunked) body is cut where it crosses the limit: the 413 is sent from inside
    ``receive`` and the app is told the client left. Raising instead would not work: FastAPI
    turns any exception while it reads the body into a 400.
    """

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
        started = rejected = False

        async def limited_receive() -> Message:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    if not started:  # else the app already answered: just stop its reading
                        rejected = True
                        await self._reject(scope, send, seen)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return  # the 413 is the answer; whatever the app makes of the disconnect is not
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)

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
