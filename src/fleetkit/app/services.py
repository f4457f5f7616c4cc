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
from fleetkit.health.registry import HealthRegistry
from fleetkit.integration import Fleet
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

    fleet: Fleet | None = None

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """The service's components are a :class:`~fleetkit.integration.Fleet` (what
        ``fleetkit.fastapi.install`` builds for any app), configured further where the service
        needs more than the settings say."""
        redis = RedisClients.from_settings(settings)
        db = Database.from_settings(settings)
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
        # One controller per worker process: each has its own event loop, and the loop's
        # lag is the signal (docs/overload.md). Built even when disabled (tests read it).
        overload = AdmissionController.from_settings(settings)
        sampler = LoopLagSampler(overload)
        enabled = settings.overload_enabled
        fleet = Fleet.from_settings(
            settings, redis=redis, db=db, sessions=sessions, audit=audit,
            embedded_migrate=migrate,  # the service's tables chained on fleetkit's
            overload=overload if enabled else None,
            overload_sampler=sampler if enabled else None)
        breakers = fleet.breakers
        assert fleet.monitor is not None  # built in every mode (it runs nothing when embedded)
        return cls(
            settings=settings, redis=redis, db=db, limiter=fleet.limiter, breakers=breakers,
            # Only an unreachable database counts against the breaker: a constraint violation
            # or a bad query is the request's problem, not the dependency's.
            db_breaker=breakers.get("database", record_exceptions=(BackendUnavailable,
                                                                   TimeoutError, OSError)),
            sessions=sessions, audit=audit, monitor=fleet.monitor, health=fleet.health,
            overload=overload,
            overload_sampler=sampler, keys=keys,
            login=LoginGuard.from_settings(settings, limiter=fleet.limiter, keys=keys),
            login_limits=parse_limits(settings.rate_limit_login),
            trusted_proxies=tuple(ipaddress.ip_network(c, strict=False)
                                  for c in settings.trusted_proxies),
            fleet=fleet,
        )

    async def start(self) -> None:
        assert self.fleet is not None
        await self.fleet.start()

    async def audit_event(self, event: AuditEvent) -> None:
        """Log an audit event; a failure is logged, never turned into a failed request."""
        try:
            await self.audit.log(event)
        except Exception:
            log.exception("audit event %s could not be recorded", event.action)

    async def aclose(self) -> None:
        """Stop in dependency order: health first (readiness already 503), audit flushed last."""
        assert self.fleet is not None
        await self.fleet.aclose()
