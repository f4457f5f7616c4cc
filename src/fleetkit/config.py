"""Settings: the only module that reads the environment.

Names follow the seed (``REDIS_URL``, ``DATABASE_READ_POOL_SIZE``...). Every component takes its
options as explicit keyword arguments; :class:`Settings` is how the reference service and the CLI
fill them from the environment. :func:`load_settings` turns a validation failure into a
:class:`~fleetkit.errors.ConfigError` that names each bad setting. The checks of single values
(URL schemes, rate-limit policies, networks...) are in :mod:`fleetkit.config_checks`, which reads
no environment.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fleetkit import config_checks as checks
from fleetkit.config_checks import COOKIE_NAME_RE, parse_policy_list
from fleetkit.errors import ConfigError
from fleetkit.redaction import redact_text

__all__ = ["Settings", "load_settings", "parse_policy_list", "redact_url"]


CommaList = Annotated[list[str], NoDecode]
# Settings whose value is never shown in an error message, not even redacted.
_SECRET_SETTINGS = frozenset({"SECRET_KEY"})


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fleetkit"


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


#: Each setting's check of its value (:mod:`fleetkit.config_checks`), after its type is parsed.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(("redis_url", "redis_rate_limit_url", "redis_session_url"), checks.redis_url),
    "database_url": checks.database_url,
    "database_read_urls": checks.each(checks.database_url),
    "trusted_proxies": checks.each(checks.ip_network),
    **dict.fromkeys(("rate_limit_ip", "rate_limit_user", "rate_limit_login",
                     "rate_limit_login_account_ip", "rate_limit_login_account",
                     "rate_limit_login_device"), checks.policy_list),
    "session_regions": checks.each(checks.region),
    "admin_email": checks.removed_admin_email,
    "overload_route_classes": checks.each(checks.route_class),
    "secret_key": checks.secret_key,
}


class Settings(BaseSettings):
    """fleetkit settings, read from environment variables (case-insensitive) and ``.env``."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        validate_default=True,
    )

    # --- process / server -------------------------------------------------------------------
    environment: Literal["development", "production", "test"] = Field(
        "development", description="production enforces the checklist of docs/security.md.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    web_concurrency: int = Field(1, ge=1, le=256, description="Worker processes for `serve`.")
    instance_id: str = Field(default_factory=_default_instance_id)
    region: str = Field("local", pattern=r"^[a-z0-9-]{1,32}$")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Larger request bodies get 413.")
    max_header_bytes: int = Field(
        16_384, ge=1024, le=1_048_576,
        description="Request line target + all header lines, bytes; more gets 431.")
    max_header_count: int = Field(100, ge=8, le=1000, description="More header lines get 431.")
    api_docs: bool | None = Field(
        None, description="Serve /docs and /openapi.json; unset: on outside production.")
    graceful_timeout: float = Field(25.0, gt=0, description="Seconds to drain on SIGTERM.")
    shutdown_delay: float = Field(
        0.0, ge=0, description="Seconds /health/ready reports 503 before the listener closes."
    )

    # --- Redis (seed names) -----------------------------------------------------------------
    redis_url: str | None = Field(None, description="Main Redis; unset means embedded mode.")
    redis_rate_limit_url: str | None = Field(None, description="Rate-limit role; defaults to main.")
    redis_session_url: str | None = Field(None, description="Sessions role; defaults to main.")
    redis_max_connections: int = Field(64, ge=1, le=10_000, description="Pool size per role.")
    redis_socket_timeout: float = Field(1.0, gt=0, le=60)
    redis_connect_timeout: float = Field(1.0, gt=0, le=60)
    redis_retries: int = Field(2, ge=0, le=20, description="Retries with jittered backoff.")

    # --- PostgreSQL (seed names) ------------------------------------------------------------
    database_url: str = Field(
        "sqlite+aiosqlite:///{DATA_DIR}/fleetkit.db",
        description="Primary; SQLite means embedded mode. `{DATA_DIR}` is replaced by DATA_DIR.",
    )
    database_read_urls: CommaList = Field(default_factory=list)
    database_connection_limit: int = Field(100, ge=1, le=100_000)
    database_read_pool_size: int = Field(60, ge=1, le=10_000)
    database_write_pool_size: int = Field(40, ge=1, le=10_000)
    database_pool_timeout: float = Field(5.0, gt=0, le=300)
    database_health_interval: float = Field(30.0, gt=0)
    database_max_replica_lag: float = Field(5.0, gt=0, description="Seconds of replay lag.")
    database_statement_cache_size: int = Field(
        100, ge=0, description="asyncpg prepared statements; 0 behind PgBouncer < 1.21."
    )

    # --- rate limiting ----------------------------------------------------------------------
    rate_limit_ip: str = "50/second;5000/hour"
    rate_limit_user: str = "100/second;20000/hour"
    rate_limit_login: str = "5/minute;50/hour"  # per client address, every login attempt
    rate_limit_login_account_ip: str = Field(
        "5/minute;20/hour", description="Login attempts on one account from one address.")
    # High enough that a flood of wrong passwords from rotating addresses cannot cheaply lock the
    # real user out; a known device or address passes it (docs/security.md, "Login protection").
    rate_limit_login_account: str = Field(
        "20/minute;100/hour", description="Login attempts on one account from clients it does "
                                          "not know (a known device or address passes).")
    rate_limit_login_device: str = Field(
        "10/minute;50/hour", description="Login attempts with one device cookie.")
    rate_limit_algorithm: Literal["sliding_window", "sliding_log", "gcra"] = "sliding_window"
    rate_limit_failure_mode: Literal["local", "open", "closed"] = "local"
    rate_limit_shadow: bool = False
    rate_limit_fallback_instances: int = Field(1, ge=1, description="Used when no heartbeat.")
    trusted_proxies: CommaList = Field(default_factory=list, description="CIDRs of proxies.")

    # --- overload protection (admission control, docs/overload.md) --------------------------
    overload_enabled: bool = Field(
        True, description="Adaptive admission control: refuse the excess with 503 by priority."
    )
    overload_target_delay: float = Field(
        0.02, gt=0, le=10,
        description="Seconds of queueing (event-loop lag) a request may wait before it runs.",
    )
    overload_target_latency: float = Field(
        0.25, gt=0, le=600, description="Mean seconds of an admitted request at the limit.",
    )
    overload_queue_timeout: float = Field(
        0.05, ge=0, le=60, description="Longest wait in the admission queue (CoDel interval).",
    )
    overload_min_limit: int = Field(8, ge=1, le=100_000, description="Lowest concurrency limit.")
    overload_max_limit: int = Field(1024, ge=1, le=100_000,
                                    description="Highest concurrency limit (per process).")
    overload_retry_after: int = Field(
        3, ge=1, le=3600, description="Refusals say Retry-After 1..N seconds (jittered).",
    )
    overload_priority_header: str = Field(
        "x-priority", pattern=r"^[A-Za-z0-9-]{0,64}$",
        description="Header naming a request's class; believed only from TRUSTED_PROXIES.",
    )
    overload_route_classes: CommaList = Field(
        default_factory=lambda: [
            "/health=never", "/metrics=never", "/v1/auth/login=critical",
            "/v1/auth/logout=critical", "/docs=sheddable", "/openapi.json=sheddable",
        ],
        description="Comma-separated 'path-prefix=class' (never, critical, normal, sheddable).",
    )

    # --- sessions ---------------------------------------------------------------------------
    session_idle_ttl: int = Field(1800, ge=1)
    session_absolute_ttl: int = Field(86_400, ge=1)
    session_max_per_user: int = Field(5, ge=1, le=10_000)
    session_on_limit: Literal["evict_oldest", "refuse"] = "evict_oldest"
    session_cookie_name: str = Field("__Host-session", pattern=COOKIE_NAME_RE)
    session_cookie_secure: bool = Field(True, description="False only for plain-HTTP development.")
    secret_key: SecretStr | None = Field(
        None, description="Keys token routes, account hashes and device cookies; the same on "
                          "every instance; required in production.")
    session_regions: CommaList = Field(
        default_factory=list, description="Other regions: 'name=redis://...' items."
    )
    session_foreign_tokens: Literal["route", "reject"] = Field(
        "route", description="A token from another region: resolve it there, or reject it."
    )
    session_monitor_interval: float = Field(30.0, gt=0)

    # --- circuit breaker --------------------------------------------------------------------
    breaker_failure_rate: float = Field(0.5, gt=0, le=1)
    breaker_minimum_calls: int = Field(20, ge=1)
    breaker_window_seconds: float = Field(10.0, gt=0)
    breaker_wait_open_seconds: float = Field(5.0, gt=0)
    breaker_half_open_permits: int = Field(3, ge=1)

    # --- audit ------------------------------------------------------------------------------
    audit_stream_shards: int = Field(4, ge=1, le=1024)
    audit_spool_dir: Path = Field(
        Path("{DATA_DIR}/audit-spool"), description="`{DATA_DIR}` is replaced by DATA_DIR."
    )
    audit_batch_size: int = Field(2000, ge=1, le=100_000)
    audit_max_deliveries: int = Field(5, ge=1)

    # --- data directory --------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where embedded mode writes (SQLite database, its migration lock, audit "
                    "spool and audit.db): `$XDG_DATA_HOME/fleetkit`, else "
                    "`~/.local/share/fleetkit`; never the current directory.",
    )

    # --- health / observability -------------------------------------------------------------
    health_interval: float = Field(5.0, gt=0)
    health_timeout: float = Field(0.08, gt=0, le=10, description="Endpoint deadline, seconds.")
    health_show_details: bool = False
    prometheus_multiproc_dir: Path | None = None

    # --- reference service ------------------------------------------------------------------
    # Removed: whoever registered this address first became an admin, with no proof of owning
    # it. Still declared so that a deployment that sets it fails at start-up instead of
    # silently running without its admin (see _check_removed).
    admin_email: str | None = Field(None, description="Removed; use `fleetkit admin create`.")

    @field_validator("database_read_urls", "trusted_proxies", "session_regions",
                     "overload_route_classes", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return checks.split_commas(value)

    @field_validator(*_CHECKS)
    @classmethod
    def _check_value(cls, value: Any, info: ValidationInfo) -> Any:
        return _CHECKS[str(info.field_name)](value)

    @model_validator(mode="after")
    def _place_data(self) -> Settings:
        """``{DATA_DIR}`` in DATABASE_URL / AUDIT_SPOOL_DIR (their defaults) becomes DATA_DIR."""
        data = str(self.data_dir)
        given = set(self.model_fields_set)  # filling a default is not "set by the user"
        if "{DATA_DIR}" in self.database_url:
            self.database_url = self.database_url.replace("{DATA_DIR}", data)
        if "{DATA_DIR}" in str(self.audit_spool_dir):
            self.audit_spool_dir = Path(str(self.audit_spool_dir).replace("{DATA_DIR}", data))
        self.__pydantic_fields_set__.intersection_update(given)
        return self

    @model_validator(mode="after")
    def _check_pools(self) -> Settings:
        if self.session_absolute_ttl < self.session_idle_ttl:
            raise ConfigError("SESSION_ABSOLUTE_TTL must be >= SESSION_IDLE_TTL")
        if self.overload_min_limit > self.overload_max_limit:
            raise ConfigError("OVERLOAD_MIN_LIMIT must be <= OVERLOAD_MAX_LIMIT")
        return self

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        """The production checklist (docs/security.md): refuse to start, naming each setting."""
        if self.environment != "production":
            return self
        problems = []
        if not self.session_cookie_secure:
            problems.append("SESSION_COOKIE_SECURE: must be true in production (a session "
                            "cookie over plain HTTP can be read on the wire)")
        if self.database_url.lower().startswith("sqlite"):
            problems.append("DATABASE_URL: SQLite is embedded mode; production needs "
                            "PostgreSQL")
        if self.redis_url is None:
            problems.append("REDIS_URL: unset is embedded mode (per-process rate limits and "
                            "sessions); production needs Redis")
        if self.secret_key is None:
            problems.append("SECRET_KEY: required in production (the same secret on every "
                            "instance: it keys session tokens, account hashes and device "
                            "cookies)")
        if problems:
            raise ConfigError("ENVIRONMENT=production refuses:\n  " + "\n  ".join(problems))
        return self

    @property
    def docs_enabled(self) -> bool:
        """Whether /docs and /openapi.json are served (``API_DOCS``, else not in production)."""
        return self.api_docs if self.api_docs is not None else self.environment != "production"

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: every Redis role uses its in-memory backend."""
        return self.redis_url is None

    @property
    def pool_sizes(self) -> tuple[int, int]:
        """(write, read-per-replica) pool sizes capped by ``DATABASE_CONNECTION_LIMIT``.

        The limit is this process's budget across the write pool and every read pool; sizes
        shrink proportionally when they would exceed it.
        """
        replicas = max(1, len(self.database_read_urls))
        write, read = self.database_write_pool_size, self.database_read_pool_size
        total = write + read * replicas
        if total <= self.database_connection_limit:
            return write, read
        scale = self.database_connection_limit / total
        return max(1, int(write * scale)), max(1, int(read * scale))


def redact_url(url: str) -> str:
    """Hide the password of a URL (``redis://u:secret@h`` → ``redis://u:***@h``) for logs.

    The same as :func:`fleetkit.redaction.redact_text` (kept for the public API).
    """
    return redact_text(url)


class _IsolatedSettings(Settings):
    """Settings that read nothing from the process environment or ``.env`` (for ``env=``)."""

    model_config = SettingsConfigDict(
        env_prefix="FLEETKIT_ISOLATED_NEVER_SET_", env_file=None, extra="ignore",
        validate_default=True,
    )


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from the environment (or ``env``), raising :class:`ConfigError`.

    The error message names every bad setting by its environment variable, e.g.
    ``DATABASE_READ_POOL_SIZE: Input should be greater than or equal to 1 (got '0')``.
    """
    try:
        if env is None:
            return Settings(**overrides)
        fields = set(Settings.model_fields)
        given = {k.lower(): v for k, v in env.items() if k.lower() in fields}
        return _IsolatedSettings(**{**given, **overrides})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = redact_text(str(err["msg"])).removeprefix("Value error, ")
            if not err["loc"]:  # a check across settings: its message names them
                lines.append(msg)
                continue
            got = err.get("input")
            name = str(err["loc"][0]).upper()
            hidden = isinstance(got, dict | list) or name in _SECRET_SETTINGS
            shown = "" if hidden else f" (got {redact_text(str(got))!r})"
            lines.append(f"{name}: {msg}{shown}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
