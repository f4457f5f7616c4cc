"""The audit event (OWASP Logging Cheat Sheet fields) and its compact wire form.

An event answers when (``time``), where (``instance``, ``client_ip``), who (``actor``), what
(``action`` on ``resource`` with ``outcome`` and ``reason``) and which interaction
(``request_id``). The producer makes the event id (UUIDv7, time ordered): it is the idempotency
key that lets the sink drop the duplicates a retried XADD can create.

Validation runs in :meth:`AuditEvent.encode`, called by ``AuditLog.log()``: a bad event raises
:class:`~fleetkit.errors.InvalidAuditEvent` naming the field. CR/LF (and other control characters)
in text fields are escaped so a log line can never be forged; metadata keys that name secrets
(password, token, session id...) have their value replaced by a SHA-256 digest.

A security event is never dropped for what a client put in it: the text fields that carry
request data (actor, resource, reason, user agent, request id, client address) are *sanitised*,
not refused. Text that looks like a credential (a bearer token, a JWT, ``token=...``) has that
part replaced by ``[redacted]``, text over its limit is cut with a ``...[truncated]`` marker, an
address that does not parse is moved to ``metadata.client_ip_given``; the event's
``metadata.sanitised`` lists the fields changed. Only programming errors are refused (a missing
actor, an unknown outcome, a malformed action, metadata that is not JSON).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import random
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from fleetkit.errors import InvalidAuditEvent

__all__ = ["OUTCOMES", "REDACTED", "TRUNCATED", "AuditEvent", "Outcome", "hash_secret",
           "redact_credentials", "uuid7"]

Outcome = Literal["success", "failure", "denied"]
OUTCOMES: frozenset[str] = frozenset(("success", "failure", "denied"))

# Non-cryptographic randomness is enough for uniqueness (74 random bits per millisecond) and
# ~20x cheaper than os.urandom per call; reseeded in forked children so they never collide.
_RNG = random.Random()
os.register_at_fork(after_in_child=_RNG.seed)
_RAND_B = (1 << 62) - 1

_LIMITS = {"actor": 256, "action": 128, "resource": 512, "reason": 1024, "user_agent": 512,
           "request_id": 128, "instance": 128, "client_ip_given": 128}
_ACTION_RE = re.compile(r"[A-Za-z0-9_.:/-]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}
# Credentials that must never be stored, even hashed, inside free text. (A value already
# replaced by the marker is not matched again: sanitising is idempotent.)
_TOKEN_RE = re.compile(
    r"(?i)\bbearer\s+[\w.~+/-]{8,}|eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.|"
    r"\b(?:password|passwd|pwd|secret|token|api[_-]?key)\s*[=:]\s*"
    r"(?!\[redacted\](?:[\s/&;,]|$))\S"
)
# The same shapes with their whole extent, for replacement (group 1/2: the part that is kept).
_REDACT_RE = re.compile(
    r"(?i)(\bbearer\s+)[\w.~+/-]{8,}|eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]*|"
    r"(\b(?:password|passwd|pwd|secret|token|api[_-]?key)\s*[=:]\s*)"
    r"(?!\[redacted\](?:[\s/&;,]|$))\S[^\s/&;,]*"
)
REDACTED = "[redacted]"
TRUNCATED = "...[truncated]"
_SECRET_KEY_RE = re.compile(
    r"(?i)pass(?:word|wd)?|secret|token|api[_-]?key|authori[sz]ation|cookie|session[_-]?id|"
    r"private[_-]?key|credential"
)
MAX_METADATA_BYTES = 8192


def _may_hold_token(text: str) -> bool:
    """False when ``_TOKEN_RE`` cannot match: a cheap test that skips the regex on most text.

    Every alternative of ``_TOKEN_RE`` needs whitespace, ``=``, ``:`` or ``eyJ``. In printable
    text the only whitespace is the ASCII space (str.isprintable excludes control characters
    and Unicode separators), so a printable text without those four has no match.
    """
    return (" " in text or "=" in text or ":" in text or "eyJ" in text
            or not text.isprintable())


# Metadata keys already checked against _SECRET_KEY_RE (few distinct keys recur), bounded.
_SAFE_KEYS: set[str] = set()


_ms_cache: list[Any] = [-1, ""]


def uuid7() -> str:
    """A UUIDv7 string (RFC 9562): 48-bit Unix milliseconds, version 7, 74 random bits."""
    ms = time.time_ns() // 1_000_000
    cache = _ms_cache
    if cache[0] != ms:  # the timestamp part changes once per millisecond
        h = f"{ms:012x}"
        cache[0], cache[1] = ms, f"{h[:8]}-{h[8:]}-7"
    r = _RNG.getrandbits(74)
    return f"{cache[1]}{r >> 62:03x}-{0x8000 | (r >> 48) & 0x3FFF:04x}-{r & 0xFFFFFFFFFFFF:012x}"


def hash_secret(value: object) -> str:
    """What is stored instead of a secret: ``sha256:`` and the first 16 bytes of its digest."""
    raw = value if isinstance(value, bytes) else str(value).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    return _ESCAPES.get(ch) or f"\\x{ord(ch):02x}"


def _redact_match(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2) or "") + REDACTED


def redact_credentials(text: str) -> str:
    """``text`` with every credential-looking part replaced by ``[redacted]``."""
    return _REDACT_RE.sub(_redact_match, text)


def _text(name: str, value: Any, *, required: bool, notes: list[str]) -> str | None:
    """The slow path of a text field: type checks, then escape, redact, truncate (noted)."""
    if value is None:
        if required:
            raise InvalidAuditEvent(f"audit event field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise InvalidAuditEvent(f"audit event field {name!r} must be a string, "
                                f"not {type(value).__name__}")
    if not value and required:
        raise InvalidAuditEvent(f"audit event field {name!r} must not be empty")
    limit = _LIMITS[name]
    text: str = value[:4 * limit]  # bounds the regex work on a megabyte of client text
    if _CONTROL_RE.search(text):  # CR/LF injection: keep the text, neutralise the characters
        text = _CONTROL_RE.sub(_escape, text)
    if name in _REDACTED_FIELDS and _TOKEN_RE.search(text):
        text = redact_credentials(text)
    if len(text) > limit or len(value) > 4 * limit:
        text = text[:limit - len(TRUNCATED)] + TRUNCATED
    if text != value:
        notes.append(name)
    return text


# Fields whose text is searched for credentials (the others only escaped and truncated).
_REDACTED_FIELDS = frozenset(("actor", "resource", "reason"))


def _optional(name: str, value: Any, notes: list[str]) -> str | None:
    # Fast path: short printable text needs no escaping (isprintable excludes CR/LF).
    if type(value) is str and len(value) <= _LIMITS[name] and value.isprintable():
        return value
    return _text(name, value, required=False, notes=notes)


def _check_ip(value: Any) -> str | None:
    """The address as given if it parses (inet_pton is C-fast; ipaddress only as fallback),
    else None (the caller keeps the given text in metadata)."""
    if type(value) is str:
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, value)
                return value
            except OSError:
                continue
        try:  # forms inet_pton refuses but PostgreSQL's inet accepts, e.g. a zone index
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
    return None


_SCALARS = (int, float, bool, type(None))


def _plain(meta: dict[str, Any]) -> bool:
    """True when metadata needs no scrubbing: flat, no secret-named key, no token-like text."""
    for k, v in meta.items():
        if k not in _SAFE_KEYS:
            if type(k) is not str or _SECRET_KEY_RE.search(k):
                return False
            if len(_SAFE_KEYS) < 4096:
                _SAFE_KEYS.add(k)
        if type(v) is str:
            if _may_hold_token(v) and _TOKEN_RE.search(v):
                return False
        elif type(v) not in _SCALARS:
            return False
    return True


def _scrub(value: Any, depth: int = 0) -> Any:
    """Copy of metadata with secret-named keys hashed (nested dicts and lists included)."""
    if depth > 8:
        raise InvalidAuditEvent("audit event metadata is nested deeper than 8 levels")
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidAuditEvent("audit event metadata keys must be strings")
            if _SECRET_KEY_RE.search(k) and v is not None:
                out[k] = hash_secret(v)
            else:
                out[k] = _scrub(v, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    if isinstance(value, str) and _TOKEN_RE.search(value):
        return hash_secret(value)
    return value


@dataclass(slots=True, kw_only=True)
class AuditEvent:
    """One audit record; ``event_id`` and ``time`` are made here, in the producer.

    ``time`` is Unix time in microseconds (UTC). ``metadata`` is any JSON object up to 8 KiB.
    """

    actor: str
    action: str
    resource: str
    outcome: Outcome
    reason: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    instance: str | None = None
    metadata: dict[str, Any] | None = None
    event_id: str = field(default_factory=uuid7)
    time: int = field(default_factory=lambda: time.time_ns() // 1000)

    def encode(self, *, instance: str | None = None) -> bytes:
        """Validate and serialise to one line of JSON (keys = the table's column names).

        Raises :class:`InvalidAuditEvent` naming the first bad field. ``instance`` fills the
        field when the event does not set it.
        """
        actor: Any = self.actor
        action: Any = self.action
        resource: Any = self.resource
        notes: list[str] = []  # the fields sanitised (usually none)
        # Fast path: short printable strings need no escaping (isprintable excludes CR/LF).
        if not (type(actor) is str and 0 < len(actor) <= 256 and actor.isprintable()):
            actor = _text("actor", actor, required=True, notes=notes)
        if not (type(action) is str and 0 < len(action) <= 128 and action.isprintable()):
            action = _text("action", action, required=True, notes=notes)
            if notes and notes[-1] == "action":  # the code names actions: refuse, not sanitise
                raise InvalidAuditEvent("audit event field 'action' is not a short printable "
                                        "name")
        if not (type(resource) is str and 0 < len(resource) <= 512 and resource.isprintable()):
            resource = _text("resource", resource, required=True, notes=notes)
        doc: dict[str, Any] = {"event_id": self.event_id, "time": self.time, "actor": actor,
                               "action": action, "resource": resource, "outcome": self.outcome}
        if self.outcome not in OUTCOMES:
            raise InvalidAuditEvent(
                f"audit event outcome must be one of success/failure/denied, not {self.outcome!r}")
        if not _ACTION_RE.fullmatch(str(action)):
            raise InvalidAuditEvent(f"audit event action {action!r} may only use letters, "
                                    "digits and _ . : / -")
        if (type(self.event_id) is not str or len(self.event_id) != 36
                or self.event_id[14] != "7"):
            raise InvalidAuditEvent("audit event_id must be a UUIDv7 string (leave it unset)")
        if type(self.time) is not int or not 0 < self.time < 32_503_680_000_000_000:
            raise InvalidAuditEvent("audit event time must be Unix microseconds (leave it unset)")
        if (_may_hold_token(actor) or _may_hold_token(resource)) and _TOKEN_RE.search(
                f"{actor}\n{resource}"):
            for name, text in (("actor", actor), ("resource", resource)):
                if name not in notes and _TOKEN_RE.search(text):
                    doc[name] = redact_credentials(text)
                    notes.append(name)
        if self.reason is not None:
            doc["reason"] = _text("reason", self.reason, required=False, notes=notes)
        given_ip = None
        if self.client_ip is not None:
            ip = _check_ip(self.client_ip)
            if ip is None:
                given_ip = _text("client_ip_given", str(self.client_ip), required=False,
                                 notes=[])
                notes.append("client_ip")
            else:
                doc["client_ip"] = ip
        if self.user_agent is not None:
            doc["user_agent"] = _optional("user_agent", self.user_agent, notes)
        if self.request_id is not None:
            doc["request_id"] = _optional("request_id", self.request_id, notes)
        inst = self.instance if self.instance is not None else instance
        if inst is not None:
            doc["instance"] = _optional("instance", inst, notes)
        meta = self.metadata
        if meta:
            if not isinstance(meta, dict):
                raise InvalidAuditEvent("audit event metadata must be a JSON object")
            meta = meta if _plain(meta) else _scrub(meta)
        if notes:  # rare: the record says which fields are not as the request sent them
            meta = {**(meta or {}), "sanitised": notes}
            if given_ip is not None:
                meta["client_ip_given"] = redact_credentials(given_ip)
        if meta:
            doc["metadata"] = meta
        try:
            line = orjson.dumps(doc)
        except TypeError as exc:
            raise InvalidAuditEvent(f"audit event metadata is not JSON: {exc}") from None
        if len(line) > MAX_METADATA_BYTES + 4096:
            raise InvalidAuditEvent(f"audit event is larger than {MAX_METADATA_BYTES} bytes of "
                                    "metadata allows")
        return line

    @classmethod
    def decode(cls, line: bytes) -> AuditEvent:
        """The inverse of :meth:`encode` (used by the spool inspector and tests)."""
        doc = orjson.loads(line)
        return cls(**doc)
