"""Which class a request belongs to: path prefixes, and a header only trusted proxies may set."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from fleetkit.errors import ConfigError
from fleetkit.overload.admission import Priority
from fleetkit.ratelimit.keys import peer_is_trusted
from fleetkit.types import Scope

__all__ = ["DEFAULT_ROUTE_CLASSES", "RouteClassifier", "parse_priority", "parse_route_classes"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The reference service's classes: probes and metrics are never shed, signing in and out is
#: critical (a user locked out by load is worse than a slow page).
DEFAULT_ROUTE_CLASSES: dict[str, str] = {
    "/health": "never", "/metrics": "never",
    "/v1/auth/login": "critical", "/v1/auth/logout": "critical",
    "/docs": "sheddable", "/openapi.json": "sheddable",
}
#: What the header may ask for: never-shed is for the app's own routes, not for callers.
_HEADER_VALUES = {b"critical": Priority.CRITICAL, b"normal": Priority.NORMAL,
                  b"sheddable": Priority.SHEDDABLE}


def parse_priority(value: str) -> Priority:
    try:
        return Priority[value.strip().upper()]
    except KeyError:
        names = ", ".join(p.label for p in Priority)
        raise ConfigError(f"{value!r} is not a request class ({names})") from None


def parse_route_classes(items: Iterable[str]) -> dict[str, Priority]:
    """``["/v1/auth/login=critical", ...]`` → ``{"/v1/auth/login": Priority.CRITICAL}``."""
    routes: dict[str, Priority] = {}
    for item in items:
        prefix, sep, name = item.partition("=")
        prefix = prefix.strip()
        if not sep or not prefix.startswith("/"):
            raise ConfigError(f"{item!r} must look like '/v1/auth/login=critical'")
        routes[prefix.rstrip("/") or "/"] = parse_priority(name)
    return routes


class RouteClassifier:
    """Classify a request: the longest matching path prefix, else ``default``; then a
    ``header`` (e.g. ``X-Priority: sheddable``) when the peer is one of ``trusted_proxies``.

    A prefix matches the path itself and everything under it (``/health`` matches
    ``/health/live``, not ``/healthz``). Results are cached by path (bounded).
    """

    def __init__(self, *, routes: Mapping[str, Priority | str] | None = None,
                 default: Priority | str = Priority.NORMAL, header: str | None = "x-priority",
                 trusted_proxies: Iterable[str | _Network] = (), cache_size: int = 4096) -> None:
        given = DEFAULT_ROUTE_CLASSES if routes is None else routes
        self.routes = {(k.rstrip("/") or "/"): v if isinstance(v, Priority) else parse_priority(v)
                       for k, v in given.items()}
        self.default = default if isinstance(default, Priority) else parse_priority(default)
        self.header = header.lower().encode("latin-1") if header else None
        self.trusted = tuple(n if not isinstance(n, str) else ipaddress.ip_network(n, strict=False)
                             for n in trusted_proxies)
        # Longest prefix first; "/" would match everything.
        self._prefixes = sorted(self.routes.items(), key=lambda kv: -len(kv[0]))
        self._cache: dict[str, Priority] = {}
        self._cache_size = cache_size

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> RouteClassifier:
        """From ``OVERLOAD_ROUTE_CLASSES``, ``OVERLOAD_PRIORITY_HEADER``, ``TRUSTED_PROXIES``."""
        options: dict[str, Any] = {
            "routes": parse_route_classes(settings.overload_route_classes),
            "header": settings.overload_priority_header or None,
            "trusted_proxies": settings.trusted_proxies,
        }
        return cls(**{**options, **overrides})

    def by_path(self, path: str) -> Priority:
        found = self._cache.get(path)
        if found is not None:
            return found
        found = self.default
        for prefix, priority in self._prefixes:
            if path == prefix or path.startswith(prefix if prefix == "/" else prefix + "/"):
                found = priority
                break
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # paths with ids are unbounded; a clear is cheaper than LRU
        self._cache[path] = found
        return found

    def __call__(self, scope: Scope) -> Priority:
        priority = self.by_path(scope["path"])
        if self.header is None or not self.trusted or priority is Priority.NEVER:
            return priority
        for name, value in scope.get("headers", ()):
            if name == self.header:
                asked = _HEADER_VALUES.get(value.strip().lower())
                if asked is not None and peer_is_trusted(scope, self.trusted):
                    return asked
                break
        return priority
