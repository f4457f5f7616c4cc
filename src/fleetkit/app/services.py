"""Every component of the reference service, built from :class:`Settings` and closed in order."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from fleetkit.app.keys import Keys
from fleetkit.app.login import LoginGuard
from fleetkit.app.migrations import migrate
from fleetkit.audit import AuditEvent, AuditLog
from fleetkit.breaker import BreakerRegistry, CircuitBreaker
from fleetkit.config import Settings
from fleetkit.db import Database
from fleetkit.errors import BackendUnavailable
from fleetkit.health import ComponentStatus
from fleetkit.health.checks import add_redis_checks, component_check
from fleetkit.health.registry import HealthRegistry
from fleetkit.integration import prepare_data_dir
from fleetkit.monitor import SessionMonitor
from fleetkit.overload import AdmissionController, LoopLagSampler
from fleetkit.ratelimit import Limit, RateLimiter, parse_limits
from fleetkit.redis import AnyRedis, RedisClients
from fleetkit.sessions import SessionStore

__all__ = ["Services"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger("fleetkit.app")


@dataclass
class Services:
    """The wired components; :meth:`start` and :meth:`aclose` run in the app's lifespan."""

    settings: Settings
    redis: RedisClients
    db: Database
    limiter: RateLimiter
    breakers: BreakerRegistry
    db_breaker: CircuitBreaker
    sessions: SessionStore
    audit: AuditLog
    monitor: SessionMonitor
    health: HealthRegistry
    overload: AdmissionController
    overload_sampler: LoopLagSampler
    keys: Keys
    login: LoginGuard
    login_limits: tuple[Limit, ...] = field(default=())
    region_clients: list[AnyRedis] = field(default_factory=list)
    trusted_proxies: tuple[IPNetwork, ...] = ()

    @classmethod
    def build(cls, settings: Settings) -> Services:
        redis = RedisClients.from_settings(settings)
        db = Database.from_settings(settings)
        # The limiter on its own coalescer (RateLimiter.COALESCER, what bench/ratelimit.py
        # measures), even when the rate limit and session roles share one client.
        limiter = RateLimiter.from_settings(settings, redis_clients=redis)
        breakers = BreakerRegistry.from_settings(settings, redis=redis.main)
        keys = Keys.from_settings(settings)
        # Other regions' session Redis (foreign tokens are resolved in their home region) are
        # made and closed by the store. Keyed routes: the token's route part cannot be mapped
        # to a user id without SECRET_KEY.
        sessions = SessionStore.from_settings(settings, redis_clients=redis,
                                              routing_key=keys.route)
        spool = Path(settings.audit_spool_dir)
        # Embedded mode keeps audit rows in the app's own SQLite file, so GET /v1/audit reads
        # them through the same Database as everything else.
        sqlite_db = make_url(settings.database_url).database if db.embedded else None
        audit = AuditLog(
            redis=redis.main, shards=settings.audit_stream_shards, spool_dir=spool,
            sqlite_path=sqlite_db or spool.parent / "audit.db", instance=settings.instance_id,
        )
        monitor = SessionMonitor.from_settings(settings)
        health = HealthRegistry(interval=settings.health_interval, deadline=settings.health_timeout)
        # One controller per worker process: each has its own event loop, and the loop's
        # lag is the signal (docs/overload.md).
        overload = AdmissionController.from_settings(settings)
        services = cls(
            settings=settings, redis=redis, db=db, limiter=limiter, breakers=breakers,
            # Only an unreachable database counts against the breaker: a constraint violation
            # or a bad query is the request's problem, not the dependency's.
            db_breaker=breakers.get("database", record_exceptions=(BackendUnavailable,
                                                                   TimeoutError, OSError)),
            sessions=sessions, audit=audit, monitor=monitor,
            health=health, overload=overload, overload_sampler=LoopLagSampler(overload),
            keys=keys,
            login=LoginGuard.from_settings(settings, limiter=limiter, keys=keys),
            login_limits=parse_limits(settings.rate_limit_login),
            trusted_proxies=tuple(ipaddress.ip_network(c, strict=False)
                                  for c in settings.trusted_proxies),
        )
        services._register_checks()
        return services

    def _register_checks(self) -> None:
        h = self.health
        if not self.redis.embedded:
            # Each component degrades to a local fallback, so Redis is not critical for
            # readiness: an outage shows as warn while the instance keeps serving.
            add_redis_checks(h, self.redis, critical=False)
        # fail only when the primary is down; replicas out of rotation are warn (reads fall
        # back to the primary).
        h.add("postgres", component_check(self.db), critical=True, component_type="datastore")
        h.add("ratelimit", component_check(self.limiter), critical=False)
        h.add("breakers", component_check(self.breakers), critical=False)
        h.add("sessions", component_check(self.sessions), critical=False)
        h.add("audit", component_check(self.audit), critical=False)
        h.add("session-monitor", component_check(self.monitor), critical=False)
        if self.settings.overload_enabled:
            # warn while shedding, never fail: readiness must keep a busy instance in rotation.
            h.add("overload", component_check(self.overload), critical=False,
                  measurement="limit")
        h.add_liveness("session-monitor", self._monitor_alive)

    def _monitor_alive(self) -> bool | ComponentStatus:
        # The supervisor restarts a dead worker itself: a restart in progress is warn, never a
        # reason for Kubernetes to kill the whole pod.
        if self.monitor.config is None or self.monitor.worker_pid is not None:
            return True
        return ComponentStatus("warn", "worker", output="session monitor worker restarting")

    async def start(self) -> None:
        if self.db.embedded:
            # Embedded mode has no separate migration step: one SQLite file, one process.
            prepare_data_dir(self.settings)
            await migrate(self.settings.database_url)
        await self.db.start()
        await self.redis.preload()
        await self.breakers.start()  # their home loop: sync calls from threads use this one
        await self.monitor.start()
        await self.health.start()
        if self.settings.overload_enabled:
            self.overload_sampler.start()
        mode = "embedded" if self.redis.embedded else "distributed"
        log.info("fleetkit ready (%s mode, instance %s)", mode, self.settings.instance_id)

    async def audit_event(self, event: AuditEvent) -> None:
        """Log an audit event; a failure is logged, never turned into a failed request."""
        try:
            await self.audit.log(event)
        except Exception:
            log.exception("audit event %s could not be recorded", event.action)

    async def aclose(self) -> None:
        """Stop in dependency order: health first (readiness already 503), audit flushed last."""
        steps = [self.health.aclose, self.overload_sampler.aclose, self.monitor.aclose,
                 self.breakers.aclose, self.limiter.aclose, self.sessions.aclose,
                 self.audit.aclose, self.db.aclose,
                 self.redis.aclose,
                 *(client.aclose for client in self.region_clients)]
        for step in steps:
            try:
                await step()
            except Exception:
                log.exception("shutdown step %s failed", getattr(step, "__qualname__", step))
