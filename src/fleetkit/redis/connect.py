"""Redis URL → client: standalone, TLS, ACL user, Sentinel and Cluster.

Accepted forms::

    redis://[user:password@]host:port[/db][?option=value...]
    rediss://...                                  TLS (``ssl_ca_certs=`` etc. in the query)
    unix:///path/to/redis.sock[?db=0]
    redis+cluster://[user:password@]host:port[,host:port...]       (rediss+cluster for TLS)
    redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]

Every client gets automatic reconnection with jittered exponential backoff and is instrumented
(latency, errors, reconnects) for its role; see :mod:`fleetkit.redis.stats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fleetkit.errors import ConfigError
from fleetkit.redis.stats import InstrumentedCluster, InstrumentedRedis

__all__ = ["AnyRedis", "ClientOptions", "create_client", "parse_hosts"]

AnyRedis = Redis | RedisCluster

# Query options whose values are numbers or booleans rather than strings.
_NUMERIC = {"socket_timeout": float, "socket_connect_timeout": float, "max_connections": int,
            "health_check_interval": int, "db": int}
_BOOLEAN = {"ssl_check_hostname", "socket_keepalive"}


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """Connection options shared by the role clients (explicit, no environment reads)."""

    max_connections: int = 64
    socket_timeout: float = 1.0
    connect_timeout: float = 1.0
    retries: int = 2
    backoff_base: float = 0.01
    backoff_cap: float = 0.5
    health_check_interval: int = 10
    extra: dict[str, Any] = field(default_factory=dict)


def parse_hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    """``"a:1,b:2"`` → ``[("a", 1), ("b", 2)]`` (IPv6 in brackets allowed)."""
    hosts = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else default_port
        elif part.count(":") == 1:
            host, _, p = part.partition(":")
            port = int(p)
        else:
            host, port = part, default_port
        hosts.append((host, port))
    if not hosts:
        raise ConfigError("no host")
    return hosts


def _split_url(url: str) -> tuple[str, str | None, str | None, str, str, dict[str, Any]]:
    """Split into scheme, user, password, hosts, path, query options (urlsplit rejects a,b)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError("missing scheme")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    user = password = None
    if "@" in netloc:
        creds, _, netloc = netloc.rpartition("@")
        u, colon, p = creds.partition(":")
        user = unquote(u) or None
        password = unquote(p) if colon else None
    options: dict[str, Any] = {}
    for name, values in parse_qs(query).items():
        value: Any = values[-1]
        if name in _NUMERIC:
            value = _NUMERIC[name](value)
        elif name in _BOOLEAN:
            value = value.lower() in ("1", "true", "yes", "on")
        options[name] = value
    return scheme.lower(), user, password, netloc, path if slash else "", options


def _retry(opts: ClientOptions) -> Retry:
    return Retry(ExponentialWithJitterBackoff(cap=opts.backoff_cap, base=opts.backoff_base),
                 opts.retries, supported_errors=(RedisConnectionError, RedisTimeoutError))


def create_client(
    url: str, *, role: str = "main", options: ClientOptions | None = None
) -> AnyRedis:
    """Create an instrumented ``redis.asyncio`` client for ``url``.

    Raises :class:`~fleetkit.errors.ConfigError` naming the URL (password hidden) when it
    cannot be parsed. No connection is made until the first command.
    """
    from fleetkit.config import redact_url

    opts = options or ClientOptions()
    try:
        scheme, user, password, netloc, path, query = _split_url(url)
        common: dict[str, Any] = {
            "username": user, "password": password,
            "socket_timeout": opts.socket_timeout, "socket_connect_timeout": opts.connect_timeout,
            "retry": _retry(opts), "max_connections": opts.max_connections,
            "health_check_interval": opts.health_check_interval,
            **opts.extra,
        }
        if scheme in ("redis", "rediss", "unix"):
            # redis-py's own parser handles these forms and their query options.
            urlsplit(url)  # raises on a malformed port
            client: Any = InstrumentedRedis.from_url(
                url, **{k: v for k, v in common.items() if k not in ("username", "password")}
            )
        elif scheme in ("redis+cluster", "rediss+cluster"):
            nodes = [ClusterNode(h, p) for h, p in parse_hosts(netloc, 6379)]
            tls: dict[str, Any] = {"ssl": True} if scheme.startswith("rediss") else {}
            query.pop("db", None)  # a cluster has only db 0
            client = InstrumentedCluster(startup_nodes=nodes, **common, **tls, **query)
        elif scheme in ("redis+sentinel", "rediss+sentinel"):
            parts = [p for p in path.split("/") if p]
            if not parts:
                raise ConfigError("missing the sentinel service name: redis+sentinel://h:26379/name")
            service = parts[0]
            db = int(parts[1]) if len(parts) > 1 else int(query.pop("db", 0))
            sentinel_kwargs = {"socket_timeout": opts.socket_timeout,
                               "socket_connect_timeout": opts.connect_timeout}
            tls = {"ssl": True} if scheme.startswith("rediss") else {}
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                parse_hosts(netloc, 26379), sentinel_kwargs=sentinel_kwargs,
                                **tls, **query)
            client = sentinel.master_for(service, redis_class=InstrumentedRedis, db=db, **common,
                                         **tls)
            client.fleetkit_owned = tuple(sentinel.sentinels)
        else:
            raise ConfigError(f"unsupported scheme {scheme!r}")
    except (ValueError, TypeError) as exc:
        shown = redact_url(url)
        raise ConfigError(f"invalid Redis URL for role {role!r} ({shown}): {exc}") from exc
    client.fleetkit_role = role
    result: AnyRedis = client
    return result
