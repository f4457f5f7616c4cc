"""Distributed circuit breaker: fleet-wide state in Redis, no Redis I/O on the hot path.

```python
b = CircuitBreaker("payments", redis=client, failure_rate_threshold=0.5, minimum_calls=20,
                   window_seconds=10, wait_open_seconds=5, half_open_permits=3)
async with b: ...                 # CircuitOpenError when the fleet-wide state is open
with b: ...                       # plain code too, from any thread
await b.call(fn, *args)           # or @b on an async def or a def, or BreakerTransport(b)
await b.force_open(); await b.force_close(); await b.reset(); await b.disable()  # fleet-wide
await b.aclose()                  # shutdown (sync code: b.shutdown())
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleetkit.breaker.backend import AdminAction, BreakerBackend, TrialVerdict
from fleetkit.breaker.breaker import CircuitBreaker, Fallback, Listener
from fleetkit.breaker.memory import MemoryBreakerBackend
from fleetkit.breaker.redis import RedisBreakerBackend
from fleetkit.breaker.registry import BreakerRegistry
from fleetkit.breaker.rules import BreakerConfig, BreakerOutcome
from fleetkit.breaker.state import STATES, Snapshot, State
from fleetkit.deprecation import renamed
from fleetkit.errors import CircuitOpenError, ConfigError

if TYPE_CHECKING:
    from fleetkit.breaker.transport import BreakerTransport, server_error

__all__ = [
    "STATES",
    "AdminAction",
    "BreakerBackend",
    "BreakerConfig",
    "BreakerOutcome",
    "BreakerRegistry",
    "BreakerTransport",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigError",
    "Fallback",
    "Listener",
    "MemoryBreakerBackend",
    "RedisBreakerBackend",
    "Snapshot",
    "State",
    "TrialVerdict",
    "server_error",
]

#: Old names kept for one release (see CHANGELOG.md): both were also exported by other packages.
_deprecated = renamed(__name__, MemoryBackend=(MemoryBreakerBackend, "MemoryBreakerBackend"),
                      Outcome=(BreakerOutcome, "BreakerOutcome"))


def __getattr__(name: str) -> Any:
    # The httpx transport needs the `httpx` extra; the breaker itself does not.
    if name in ("BreakerTransport", "server_error"):
        from fleetkit.breaker import transport

        return getattr(transport, name)
    return _deprecated(name)
