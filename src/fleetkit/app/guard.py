"""Protocol guard: header limits, security headers, and the one place a bug becomes a 500.

One small pure ASGI layer, just inside the request id middleware (so every answer it makes,
the 500 included, carries ``X-Request-ID`` and logs with the request id):

- **431** problem+json when the request target plus header lines exceed ``max_header_bytes`` or
  there are more than ``max_header_count`` lines (uvicorn's httptools parser has no such limit;
  ``fleetkit serve``'s protocol also refuses, as they arrive, heads well past the limit:
  :mod:`fleetkit.app.headlimit`);
- ``X-Content-Type-Options: nosniff`` on every response; ``Cache-Control: no-store`` on 401s and
  on the routes that answer with account data (unless the route set its own);
- an exception that escapes the app is logged **once**, with its traceback, and answered with a
  500 problem+json. It is not re-raised: the server would log the same traceback again, and
  Starlette's outermost error handler, outside the request id middleware, would answer without
  the id.

The header lines are encoded once, at construction; the per-request work is one pass over the
request headers and one over the response's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.responses import Response

from fleetkit.app.problems import problem
from fleetkit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HEAD_LIMIT_KEY", "NO_STORE_PREFIXES", "ProtocolGuardMiddleware"]

log = logging.getLogger("fleetkit.app")

#: Responses under these paths hold one user's data: never stored by a browser or proxy.
NO_STORE_PREFIXES = ("/v1/me", "/v1/sessions", "/v1/audit", "/v1/auth", "/v1/admin",
                     "/v1/items")
#: Lifespan-state key of ``max_header_bytes``, for fleetkit serve's protocol
#: (:mod:`fleetkit.app.headlimit`, which imports uvicorn: this module does not).
HEAD_LIMIT_KEY = "fleetkit.max_header_bytes"
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")


class ProtocolGuardMiddleware:
    def __init__(self, app: ASGIApp, *, max_header_bytes: int = 16_384,
                 max_header_count: int = 100,
                 no_store: Sequence[str] = NO_STORE_PREFIXES) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.no_store = tuple(no_store)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and "state" in scope:
                # fleetkit serve's protocol bounds the head with it before the app runs.
                scope["state"][HEAD_LIMIT_KEY] = self.max_header_bytes
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or ()
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        for name, value in headers:
            size += len(name) + len(value) + 4  # ": " and CRLF
        if size > self.max_header_bytes or len(headers) > self.max_header_count:
            await self._answer(scope, send, problem(
                431, f"request headers exceed {self.max_header_bytes} bytes or "
                     f"{self.max_header_count} fields", type_="headers-too-large",
                instance=scope.get("path"), headers={"X-Content-Type-Options": "nosniff"}))
            return
        path: str = scope.get("path", "")
        no_store = path.startswith(self.no_store)
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                out = list(message.get("headers", ()))
                out.append(_NOSNIFF)
                if (no_store or message["status"] == 401) and not any(
                        k.lower() == b"cache-control" for k, _ in out):
                    out.append(_NO_STORE)
                message["headers"] = out
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception as exc:
            log.error("unhandled error on %s %s", scope.get("method"), path, exc_info=exc)
            if not started:
                await self._answer(scope, guarded_send, problem(
                    500, "internal error", type_="internal-error", instance=path))

    @staticmethod
    async def _answer(scope: Scope, send: Send, response: Response) -> None:
        async def no_receive() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_receive, send)
