"""Distributed circuit breaker: fleet-wide state in Redis, no Redis I/O on the hot path.

```python
b = CircuitBreaker("payments", redis=client, failure_rate_threshold=0.5, minimum_calls=20,
                   window_seconds=10, wait_open_seconds=5, half_open_permits=3)
async with b: ...                 # CircuitOpenError when the fleet-wide state is open
await b.call(fn, *args)           # or @b, or BreakerTransport(b) for httpx
await b.aclose()
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleetkit.breaker.breaker import CircuitBreaker, Fallback, Listener
from fleetkit.breaker.memory import MemoryBackend
from fleetkit.breaker.registry import BreakerRegistry
from fleetkit.breaker.rules import BreakerConfig, Outcome
from fleetkit.breaker.state import STATES, Snapshot, State
from fleetkit.errors import CircuitOpenError

if TYPE_CHECKING:
    from fleetkit.breaker.transport import BreakerTransport, server_error

__all__ = [
    "STATES",
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerTransport",
    "CircuitBreaker",
    "CircuitOpenError",
    "Fallback",
    "Listener",
    "MemoryBackend",
    "Outcome",
    "Snapshot",
    "State",
    "server_error",
]


def __getattr__(name: str) -> Any:
    # The httpx transport needs the `httpx` extra; the breaker itself does not.
    if name in ("BreakerTransport", "server_error"):
        from fleetkit.breaker import transport

        return getattr(transport, name)
    raise AttributeError(f"module 'fleetkit.breaker' has no attribute {name!r}")
