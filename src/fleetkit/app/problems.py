"""RFC 9457 problem+json responses and the body-size guard.

Every error the service returns is ``application/problem+json``; nothing a client sends can turn
into a 500 (validation errors are 422, oversized bodies 413, a dependency outage 503).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from fleetkit.bodylimit import BodyLimitMiddleware  # re-exported: it moved to the library
from fleetkit.errors import BackendUnavailable, CircuitOpenError

__all__ = ["BodyLimitMiddleware", "Problem", "install_problem_handlers", "problem"]

log = logging.getLogger("fleetkit.app")

_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
           415: "Unsupported Media Type", 422: "Unprocessable Content",
           429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


class Problem(HTTPException):
    """Raise from a route to answer with problem+json (``type`` is a short slug)."""

    def __init__(self, status: int, detail: str, *, type_: str = "about:blank",
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(status, detail, headers=headers)
        self.type = type_
        self.extra = extra


def problem(status: int, detail: str, *, type_: str = "about:blank", instance: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body: dict[str, Any] = {"type": type_, "title": _TITLES.get(status, "Error"),
                            "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/problem+json")


def install_problem_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        extra = exc.extra if isinstance(exc, Problem) else {}
        type_ = exc.type if isinstance(exc, Problem) else "about:blank"
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, str(exc.detail), type_=type_, headers=headers,
                       instance=request.url.path, **extra)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
                  for e in exc.errors()]
        return problem(422, "request validation failed", type_="validation-error",
                       instance=request.url.path, errors=errors)

    async def circuit_open(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CircuitOpenError)
        retry = max(1, round(exc.retry_after or 1))
        return problem(503, f"dependency {exc.name!r} is unavailable ({exc.state})",
                       type_="circuit-open", headers={"Retry-After": str(retry)},
                       instance=request.url.path)

    async def unavailable(request: Request, exc: Exception) -> Response:
        log.warning("dependency unavailable on %s: %s", request.url.path, exc)
        return problem(503, "a dependency is unavailable, retry shortly",
                       type_="dependency-unavailable", headers={"Retry-After": "1"},
                       instance=request.url.path)

    async def internal_error(request: Request, exc: Exception) -> Response:
        # A bug, not the client's fault: log it with its traceback, answer problem+json.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, "internal error", type_="internal-error", instance=request.url.path)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(CircuitOpenError, circuit_open)
    app.add_exception_handler(BackendUnavailable, unavailable)
