"""Session tokens: ``<region>.<route>.<secret>``.

* ``secret``: 256 bits from :mod:`secrets` (43 base64url characters). Redis never sees it: keys
  hold :func:`session_id`, a SHA-256 of the token, so a dump of Redis cannot be replayed.
* ``route``: 36 bits (6 base64url characters) of keyed BLAKE2b of the user id. It is the Redis
  Cluster hash tag of every key of that user (session, rotation alias, tombstone, per-user index),
  so each operation is one atomic script on one slot. Two users sharing a route only share a slot
  (the index key also names the user), so it is kept short: it is paid in every key name. Opaque:
  with a ``routing_key`` it reveals nothing about the user.
* ``region``: the home region whose Redis holds the session (see :mod:`fleetkit.sessions.regions`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass

__all__ = ["ParsedToken", "make_route", "new_token", "parse_token", "session_id"]

_REGION_RE = re.compile(r"^[a-z0-9-]{1,32}$")
_B64_RE = re.compile(r"^[A-Za-z0-9_-]+$")
ROUTE_LEN = 6  # 36 bits, base64url
SECRET_LEN = 43  # 32 bytes
MAX_TOKEN_LEN = 32 + 1 + ROUTE_LEN + 1 + SECRET_LEN


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A syntactically valid token split into its parts (says nothing about its validity)."""

    region: str
    route: str
    secret: str

    @property
    def token(self) -> str:
        return f"{self.region}.{self.route}.{self.secret}"

    @property
    def sid(self) -> str:
        return session_id(self.token)


def make_route(user_id: str, key: bytes | None = None) -> str:
    """The routing part for ``user_id`` (same user → same Cluster slot)."""
    digest = hashlib.blake2b(user_id.encode("utf-8"), digest_size=6, key=key or b"")
    return _b64(digest.digest())[:ROUTE_LEN]


def session_id(token: str) -> str:
    """What Redis stores instead of the token: 96 bits of SHA-256, base64url (16 chars).

    96 bits keep accidental collisions out of reach (birthday bound 2**48 sessions) and forging
    a token for a stolen id needs a SHA-256 preimage; every byte here is paid per session.
    """
    return _b64(hashlib.sha256(token.encode("ascii")).digest()[:12])


def new_token(region: str, route: str) -> ParsedToken:
    """A fresh token for a user (``route``) homed in ``region``."""
    return ParsedToken(region, route, secrets.token_urlsafe(32))


def parse_token(value: str | bytes | None) -> ParsedToken | None:
    """Split and strictly validate a token; anything malformed is ``None`` (never raises)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or len(value) > MAX_TOKEN_LEN:
        return None
    parts = value.strip().split(".")
    if len(parts) != 3:
        return None
    region, route, secret = parts
    if not _REGION_RE.match(region):
        return None
    if len(route) != ROUTE_LEN or len(secret) != SECRET_LEN:
        return None
    if not _B64_RE.match(route) or not _B64_RE.match(secret):
        return None
    return ParsedToken(region, route, secret)
