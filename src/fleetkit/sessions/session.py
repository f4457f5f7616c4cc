"""A session as the store hands it out, and how its data fields are stored.

Data items are stored as ``.<name>`` hash fields holding JSON, so one item is written without
rewriting the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from fleetkit.errors import InvalidArgument

__all__ = ["Session", "SessionInfo", "decode_data", "encode_data", "text"]


@dataclass(slots=True)
class Session:
    """A live session. ``token`` is the secret the client holds; ``id`` is safe to log."""

    token: str
    id: str
    user_id: str
    data: dict[str, Any]
    created: float
    last_seen: float
    ip: str
    user_agent: str
    region: str
    #: Served from the local cache while Redis was unreachable.
    stale: bool = False
    #: Reached through the old token of a rotated session, within the grace period.
    grace: bool = False
    #: Set by :meth:`SessionStore.create`: older sessions of the user evicted by the cap.
    evicted: int = 0


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One entry of :meth:`SessionStore.list_sessions` (no token: ``id`` is the stored hash)."""

    id: str
    created: float
    last_seen: float
    ip: str
    user_agent: str


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def encode_data(data: Mapping[str, Any]) -> list[str | bytes]:
    out: list[str | bytes] = []
    for name, value in data.items():
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"session data key {name!r} must be a non-empty str")
        out += ["." + name, orjson.dumps(value)]
    return out


def decode_data(h: Mapping[str, str]) -> dict[str, Any]:
    return {k[1:]: _decode(v) for k, v in h.items() if k.startswith(".")}


def _decode(value: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
