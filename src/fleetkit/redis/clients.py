"""The three role clients of the seed's RedisModule: main, rate limit, sessions.

A role without its own URL shares the main client (same pool). No URL at all is embedded mode:
every role is ``None`` and components use their in-memory backends.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

from fleetkit.redis.coalescer import Coalescer, CoalescerConfig
from fleetkit.redis.connect import AnyRedis, ClientOptions, create_client
from fleetkit.redis.scripts import Script, wrap_redis_error
from fleetkit.redis.stats import POOLS, pool_in_use, role_stats

__all__ = ["ROLES", "PingResult", "RedisClients", "Role"]

Role = Literal["main", "ratelimit", "sessions"]
ROLES: tuple[Role, ...] = ("main", "ratelimit", "sessions")


@dataclass(frozen=True)
class PingResult:
    """Outcome of one role's health ping."""

    role: str
    ok: bool
    latency: float
    error: str | None = None


class RedisClients:
    """Holds one client (and one coalescer) per role; ``None`` roles are embedded.

    Build it with :meth:`from_urls` (or ``from_settings``); pass ``clients.main`` /
    ``clients.ratelimit`` / ``clients.sessions`` to components as ``redis=``.
    """

    def __init__(self, clients: dict[Role, AnyRedis | None], *,
                 options: ClientOptions | None = None) -> None:
        self._clients = {role: clients.get(role) for role in ROLES}
        #: The connection options the role clients were made with (reused for extra clients).
        self.options = options or ClientOptions()
        self._coalescers: dict[tuple[int, CoalescerConfig], Coalescer] = {}

    @classmethod
    def from_urls(
        cls, main: str | None, *, ratelimit: str | None = None, sessions: str | None = None,
        options: ClientOptions | None = None,
    ) -> RedisClients:
        """Create the role clients; roles whose URL is ``None`` or equal to main share main."""
        if main is None:
            if ratelimit or sessions:
                from fleetkit.errors import ConfigError

                raise ConfigError("REDIS_URL must be set when REDIS_RATE_LIMIT_URL or "
                                  "REDIS_SESSION_URL is set")
            return cls({}, options=options)
        clients: dict[Role, AnyRedis | None] = {"main": create_client(main, role="main",
                                                                       options=options)}
        for role, url in (("ratelimit", ratelimit), ("sessions", sessions)):
            if url and url != main:
                clients[role] = create_client(url, role=role, options=options)  # type: ignore[index]
            else:
                clients[role] = clients["main"]  # type: ignore[index]
        for client in {id(c): c for c in clients.values() if c is not None}.values():
            POOLS.clients.add(client)
        return cls(clients, options=options)

    @classmethod
    def from_settings(cls, settings: Any) -> RedisClients:
        """From :class:`fleetkit.config.Settings` (typed ``Any`` to keep imports one-way)."""
        options = ClientOptions(
            max_connections=settings.redis_max_connections,
            socket_timeout=settings.redis_socket_timeout,
            connect_timeout=settings.redis_connect_timeout,
            retries=settings.redis_retries,
        )
        return cls.from_urls(settings.redis_url, ratelimit=settings.redis_rate_limit_url,
                             sessions=settings.redis_session_url, options=options)

    @property
    def embedded(self) -> bool:
        return self._clients["main"] is None

    @property
    def main(self) -> AnyRedis | None:
        return self._clients["main"]

    @property
    def ratelimit(self) -> AnyRedis | None:
        return self._clients["ratelimit"]

    @property
    def sessions(self) -> AnyRedis | None:
        return self._clients["sessions"]

    def get(self, role: Role) -> AnyRedis | None:
        return self._clients[role]

    def coalescer(self, role: Role, config: CoalescerConfig | None = None) -> Coalescer | None:
        """The shared coalescer of ``role``'s client with ``config`` (default batching unless
        given): one per client and config, made on first use, closed by :meth:`aclose`.

        Roles that share a client share its coalescer only when they ask for the same config,
        so a component tuned for small batches (the rate limiter) never inherits another's.
        """
        client = self._clients[role]
        if client is None:
            return None
        config = config or CoalescerConfig()
        found = self._coalescers.get((id(client), config))
        if found is None:
            found = self._coalescers[(id(client), config)] = config.build(client)
        return found

    async def ping(self, role: Role, *, timeout: float = 1.0) -> PingResult:
        """PING one role, time-boxed; never raises (health checks read the result)."""
        client = self._clients[role]
        if client is None:
            return PingResult(role, True, 0.0, None)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await client.ping()
        except Exception as exc:  # health reports, it does not raise
            error = wrap_redis_error(exc)
            return PingResult(role, False, time.perf_counter() - start,
                              f"{type(error).__name__}: {error}")
        return PingResult(role, True, time.perf_counter() - start)

    async def ping_all(self, *, timeout: float = 1.0) -> dict[str, PingResult]:
        results = await asyncio.gather(*(self.ping(r, timeout=timeout) for r in ROLES))
        return {r.role: r for r in results}

    async def preload(self) -> None:
        """SCRIPT LOAD every registered script on each distinct client (best effort)."""
        for client in self._distinct():
            for script in Script.registered():
                try:
                    await script.load(client)
                except Exception:  # noqa: S112 — NOSCRIPT recovery covers a miss later
                    continue

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-role counters and pool usage (also exported to Prometheus)."""
        out: dict[str, dict[str, Any]] = {}
        for role in ROLES:
            client = self._clients[role]
            s = role_stats(role if client is None else getattr(client, "fleetkit_role", role))
            out[role] = {
                "embedded": client is None, "commands": s.commands, "errors": s.errors,
                "reconnects": s.reconnects, "down": s.down, "last_error": s.last_error,
                "pool_in_use": 0 if client is None else pool_in_use(client),
            }
        return out

    def _distinct(self) -> list[AnyRedis]:
        return list({id(c): c for c in self._clients.values() if c is not None}.values())

    async def aclose(self) -> None:
        for coalescer in self._coalescers.values():
            await coalescer.aclose()
        for client in self._distinct():
            await client.aclose()
