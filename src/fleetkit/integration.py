"""Every component built from :class:`~fleetkit.config.Settings`, started and stopped together,
and the middleware stack in the one order that works.

:class:`Fleet` is framework-neutral (pure ASGI); :func:`fleetkit.fastapi.install` plugs it into
a FastAPI or Starlette app in one call. The order, outermost first::

    close-while-draining → overload admission (OVERLOAD_ENABLED) → RequestId → HTTP metrics
      → health (/health*) → body limit → sessions → rate limit → the app

Admission control is outermost so a refusal costs nothing else (it lets probes and /metrics
through uncounted; docs/overload.md); request ids next so every log line and audit event has
one; metrics time everything below; health answers probes before anything can refuse them;
sessions before rate limiting, which keys per-user policies on the session's user. This is the
order of the reference service (``fleetkit serve``) and of its benchmarks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetkit.audit import AuditLog
from fleetkit.bodylimit import BodyLimitMiddleware
from fleetkit.breaker import BreakerRegistry
from fleetkit.config import Settings
from fleetkit.errors import ConfigError
from fleetkit.health import (
    ComponentStatus,
    HealthMiddleware,
    HealthRegistry,
    add_redis_checks,
    component_check,
)
from fleetkit.health.shutdown import CloseWhileDraining
from fleetkit.monitor import SessionMonitor
from fleetkit.observability import HTTPMetricsMiddleware, RequestIdMiddleware
from fleetkit.overload import (
    AdmissionController,
    LoopLagSampler,
    OverloadMiddleware,
    RouteClassifier,
)
from fleetkit.ratelimit import Policy, RateLimiter, RateLimitMiddleware, ip_key, user_key
from fleetkit.ratelimit.audit import DenialAudit
from fleetkit.redis import RedisClients
from fleetkit.sessions import SessionMiddleware, SessionStore
from fleetkit.types import ASGIApp

if TYPE_CHECKING:
    from fleetkit.db import Database

__all__ = ["DEFAULT_EXEMPT", "Fleet", "Layer", "prepare_data_dir"]

log = logging.getLogger("fleetkit")

#: Paths the rate limiter never counts (scrapes and API docs).
DEFAULT_EXEMPT = ("/metrics", "/docs", "/redoc", "/openapi.json")

#: One middleware: its class and keyword arguments (``app.add_middleware(cls, **kwargs)``).
Layer = tuple[Callable[..., ASGIApp], dict[str, Any]]


@dataclass
class Fleet:
    """The wired components of one process. Build with :meth:`from_settings`; run
    :meth:`running` (an async context manager) in the app's lifespan."""

    settings: Settings
    redis: RedisClients
    limiter: RateLimiter
    sessions: SessionStore
    breakers: BreakerRegistry
    audit: AuditLog
    health: HealthRegistry
    monitor: SessionMonitor | None = None
    db: Database | None = None
    overload: AdmissionController | None = None
    overload_sampler: LoopLagSampler | None = None
    #: The rate-limit middleware's 429s in the audit log, aggregated (docs/security.md).
    denial_audit: DenialAudit | None = None
    #: Embedded mode migrates its SQLite file at start-up: ``fleetkit.db.migrate`` by default,
    #: an app's own (its revisions chained on fleetkit's) when it has tables of its own.
    embedded_migrate: Callable[[str], Awaitable[Any]] | None = None
    _closers: list[Callable[[], Any]] = field(default_factory=list, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, database: bool | None = None,
                      monitor: bool = True, **components: Any) -> Fleet:
        """Build every component with its ``from_settings`` (nothing connects before
        :meth:`start`).

        ``database``: build the :class:`~fleetkit.db.Database` router (the ``postgres`` or
        ``sqlite`` extra); by default only when ``DATABASE_URL`` is set. ``monitor``: supervise
        the session monitor worker process (it runs in distributed mode only). ``components``
        replaces what would be built (``redis=``, ``db=``, ``sessions=``, ``audit=``...), for
        an app that configures one component further.
        """
        if database is None:
            database = "database_url" in settings.model_fields_set
        unknown = set(components) - {f for f in cls.__dataclass_fields__ if f != "_closers"}
        if unknown:
            raise ConfigError(f"Fleet.from_settings: unknown components {sorted(unknown)}")
        redis = components.pop("redis", None) or RedisClients.from_settings(settings)

        def build(name: str, make: Callable[[], Any]) -> Any:
            return components[name] if name in components else make()

        overload = build("overload", lambda: AdmissionController.from_settings(settings)
                         if settings.overload_enabled else None)
        fleet = cls(
            settings=settings, redis=redis,
            db=build("db", lambda: _database(settings) if database else None),
            # The limiter on its own coalescer (RateLimiter.COALESCER, what its bench measures).
            limiter=build("limiter", lambda: RateLimiter.from_settings(
                settings, redis_clients=redis)),
            sessions=build("sessions", lambda: SessionStore.from_settings(
                settings, redis_clients=redis)),
            breakers=build("breakers", lambda: BreakerRegistry.from_settings(
                settings, redis=redis.main)),
            audit=build("audit", lambda: AuditLog.from_settings(settings, redis=redis.main)),
            health=build("health", lambda: HealthRegistry.from_settings(settings)),
            monitor=build("monitor", lambda: SessionMonitor.from_settings(settings)
                          if monitor else None),
            overload=overload,
            overload_sampler=build("overload_sampler", lambda: LoopLagSampler(overload)
                                   if overload is not None else None),
            embedded_migrate=components.get("embedded_migrate"),
        )
        fleet.denial_audit = build("denial_audit", lambda: DenialAudit(
            fleet.audit, trusted_proxies=settings.trusted_proxies))
        fleet._register_checks()
        return fleet

    def _register_checks(self) -> None:
        h = self.health
        if not self.redis.embedded:
            # Every component degrades to a local fallback: Redis is warn, not unready.
            add_redis_checks(h, self.redis, critical=False)
        if self.db is not None:
            h.add("postgres", component_check(self.db), critical=True, component_type="datastore")
        h.add("ratelimit", component_check(self.limiter), critical=False)
        h.add("breakers", component_check(self.breakers), critical=False)
        h.add("sessions", component_check(self.sessions), critical=False)
        h.add("audit", component_check(self.audit), critical=False)
        if self.monitor is not None:
            h.add("session-monitor", component_check(self.monitor), critical=False)
        if self.overload is not None:
            # warn while shedding, never fail: a busy instance stays in rotation.
            h.add("overload", component_check(self.overload), critical=False,
                  measurement="limit")
        if self.monitor is not None:
            h.add_liveness("session-monitor", self._monitor_alive)

    def _monitor_alive(self) -> bool | ComponentStatus:
        # The supervisor restarts a dead worker itself: a restart in progress is warn, never a
        # reason for Kubernetes to kill the whole pod.
        monitor = self.monitor
        if monitor is None or monitor.config is None or monitor.worker_pid is not None:
            return True
        return ComponentStatus("warn", "worker", output="session monitor worker restarting")

    # --- middleware ---------------------------------------------------------------------
    def policies(self, *, login_path: str | None = None) -> list[Policy]:
        """The default policies: per IP, per user and (``login_path``) per IP on the login
        route, from ``RATE_LIMIT_IP`` / ``RATE_LIMIT_USER`` / ``RATE_LIMIT_LOGIN``."""
        s = self.settings
        trusted = list(s.trusted_proxies)
        out = [Policy("ip", s.rate_limit_ip, key=ip_key(trusted)),
               Policy("user", s.rate_limit_user, key=user_key)]
        if login_path is not None:
            out.append(Policy("login", s.rate_limit_login, key=ip_key(trusted), path=login_path,
                              methods=frozenset({"POST"})))
        return out

    def layers(self, *, policies: Sequence[Policy] | None = None,
               exempt: Sequence[str] = DEFAULT_EXEMPT, login_path: str | None = None,
               version: str | None = None, guards: Sequence[Layer] = ()) -> list[Layer]:
        """The middleware, innermost first (the order ``app.add_middleware`` takes them).

        ``guards`` (innermost first) vet the raw request, such as protocol limits: they sit
        inside the HTTP metrics (their refusals are counted) and outside health.
        """
        s = self.settings
        chosen = list(policies) if policies is not None else self.policies(login_path=login_path)
        layers: list[Layer] = [
            (RateLimitMiddleware, {"limiter": self.limiter, "policies": chosen,
                                   "shadow": s.rate_limit_shadow, "exempt": tuple(exempt),
                                   "on_deny": self.denial_audit}),
            (SessionMiddleware, {"store": self.sessions, "cookie_name": s.session_cookie_name,
                                 "cookie_secure": s.session_cookie_secure}),
            (BodyLimitMiddleware, {"max_bytes": s.max_body_bytes}),
        ]
        layers += [
            (HealthMiddleware, {"registry": self.health, "show_details": s.health_show_details,
                                "service_id": s.instance_id, "version": version}),
            *guards,
            (HTTPMetricsMiddleware, {"exclude": ("/metrics",)}),
            (RequestIdMiddleware, {}),
        ]
        if self.overload is not None:
            layers.append((OverloadMiddleware, {
                "controller": self.overload, "classifier": RouteClassifier.from_settings(s),
                "sampler": self.overload_sampler, "retry_after": s.overload_retry_after}))
        # Outermost: while draining, every answer (of any layer) closes its connection.
        layers.append((CloseWhileDraining, {"registry": self.health}))
        return layers

    def wrap(self, app: ASGIApp, **options: Any) -> ASGIApp:
        """``app`` inside the whole stack, for any ASGI app (options as :meth:`layers`)."""
        for cls, kwargs in self.layers(**options):
            app = cls(app, **kwargs)
        return app

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        if self.db is not None:
            if self.db.embedded:
                from fleetkit.db import migrate

                # Embedded mode has no separate migration step: one SQLite file, one process.
                prepare_data_dir(self.settings)
                await (self.embedded_migrate or migrate)(self.settings.database_url)
            await self.db.start()
        await self.redis.preload()
        await self.breakers.start()  # their home loop: sync calls from threads use this one
        if self.monitor is not None:
            await self.monitor.start()
        await self.health.start()
        if self.overload_sampler is not None:
            self.overload_sampler.start()
        log.info("fleetkit ready (%s mode, instance %s)",
                 "embedded" if self.redis.embedded else "distributed", self.settings.instance_id)

    async def aclose(self) -> None:
        """Stop in dependency order: health first (readiness 503), audit flushed late."""
        steps: list[Callable[[], Any]] = [self.health.aclose]
        if self.overload_sampler is not None:
            steps.append(self.overload_sampler.aclose)
        if self.monitor is not None:
            steps.append(self.monitor.aclose)
        steps += [self.breakers.aclose, self.limiter.aclose, self.sessions.aclose]
        if self.denial_audit is not None:  # its counts, before the audit log closes
            steps.append(self.denial_audit.aclose)
        steps.append(self.audit.aclose)
        if self.db is not None:
            steps.append(self.db.aclose)
        steps += [*self._closers, self.redis.aclose]
        for step in steps:
            try:
                await step()
            except Exception:
                log.exception("shutdown step %s failed", getattr(step, "__qualname__", step))

    @contextlib.asynccontextmanager
    async def running(self, *, drain_signals: bool = False) -> AsyncIterator[Fleet]:
        """Start everything, yield, then stop (``drain_signals``: /health/ready answers 503
        for ``SHUTDOWN_DELAY`` seconds after SIGTERM before the server closes)."""
        await self.start()
        restore = None
        if drain_signals:
            from fleetkit.health import drain_on_signal

            restore = drain_on_signal(self.health, delay=self.settings.shutdown_delay)
        try:
            yield self
        finally:
            self.health.begin_shutdown()
            if restore is not None:
                restore()
            await self.aclose()


def prepare_data_dir(settings: Settings) -> None:
    """Create the directory of the SQLite database (``DATA_DIR`` by default): SQLite and the
    migration lock next to it do not create directories."""
    url = settings.database_url
    if url.lower().startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _database(settings: Settings) -> Database:
    try:
        from fleetkit.db import Database
    except ImportError as exc:
        raise ConfigError(
            f"DATABASE_URL is set but the database router cannot load ({exc}): install "
            "'fleetkit[postgres]' (or 'fleetkit[sqlite]'), or pass database=False") from exc
    return Database.from_settings(settings)

