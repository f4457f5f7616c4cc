"""The ASGI type aliases, in one place for every fleetkit module (as ``starlette.types``).

They are structurally identical to starlette's, so a fleetkit middleware accepts and wraps any
Starlette/FastAPI app, and fleetkit's core does not depend on starlette to name them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
