"""Structured JSON logs (orjson) carrying the request id of ``X-Request-ID``.

:class:`RequestIdMiddleware` takes the incoming ``X-Request-ID`` when it is well formed (else
makes a new one), stores it in a context variable for the duration of the request and returns
it in the response. :class:`RequestIdFilter` copies it onto every log record, and
:class:`JsonFormatter` writes one JSON object per line. Secrets never reach the output: keys
that look like credentials are masked and URL passwords are redacted in every string.
"""

from __future__ import annotations

import contextvars
import datetime
import logging
import os
import random
import re
import sys
from typing import Any

import orjson

from fleetkit.redaction import redact_text
from fleetkit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["REQUEST_ID_HEADER", "JsonFormatter", "RequestIdFilter", "RequestIdMiddleware",
           "configure_logging", "get_request_id"]


REQUEST_ID_HEADER = "x-request-id"
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("fleetkit_request_id",
                                                                        default=None)
# Printable token characters only: no spaces, quotes or CR/LF that could forge log lines.
# A client's id is kept (logs, audit rows) only when it is short, plain and cannot be a
# credential: no "=", "/", "+" or "@" (base64 padding, key=value, emails) and no run of more
# than 36 token characters (a UUID fits; a 43-character session secret or a JWT does not).
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
_TOKEN_RUN = re.compile(rb"[A-Za-z0-9_-]{37}")
_SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|api[_-]?key|authorization|cookie|"
                         r"credential|private[_-]?key|dsn", re.I)
_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message",
                                                                                  "asctime"}


def get_request_id() -> str | None:
    """The current request's id (``None`` outside a request)."""
    return _request_id.get()


# Request ids need uniqueness, not secrecy: a PRNG reseeded in each forked child (128 random
# bits) instead of uuid4's os.urandom system call on every request.
_RNG = random.Random()
os.register_at_fork(after_in_child=_RNG.seed)


def _new_id() -> str:
    return f"{_RNG.getrandbits(128):032x}"


class RequestIdMiddleware:
    """Pure ASGI middleware: accept or mint the request id, expose it, echo it back."""

    def __init__(self, app: ASGIApp, *, header: str = REQUEST_ID_HEADER,
                 trust_incoming: bool = True) -> None:
        self.app = app
        self.header = header.lower().encode("latin-1")
        self.trust_incoming = trust_incoming

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = None
        if self.trust_incoming:
            for name, value in scope.get("headers", ()):
                if name == self.header:
                    if _VALID_ID.match(value) and not _TOKEN_RUN.search(value):
                        request_id = value.decode("ascii")
                    break  # a malformed or oversized id is replaced, never logged
        if request_id is None:
            request_id = _new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        raw_id = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() != self.header]
                headers.append((self.header, raw_id))
                message["headers"] = headers
            await send(message)

        token = _request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``None`` outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


def redact(value: Any, key: str = "") -> Any:
    """Mask credential-like keys, URL passwords and inline secrets
    (:func:`fleetkit.redaction.redact_text`), recursively."""
    if key and _SECRET_KEY.search(key):
        return "***"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras, exception."""

    def __init__(self, *, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id.get(),
            **self.static,
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and key not in data:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(redact(data), default=str).decode()


def configure_logging(*, level: str = "info", json: bool = True,
                      static: dict[str, Any] | None = None) -> None:
    """Replace the root handlers with one stderr handler (JSON or plain text) with request ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter(static=static) if json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
