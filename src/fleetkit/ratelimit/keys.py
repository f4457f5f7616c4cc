"""Key functions: who a request counts against (client IP, user, API key, route).

A key function takes the ASGI ``scope`` and returns a string, or ``None`` to skip the policy
(e.g. no user is authenticated). They never raise on hostile input: a spoofed or malformed
``X-Forwarded-For`` falls back to the nearest address that a trusted hop vouched for.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Callable, Iterable

from fleetkit.types import Scope

__all__ = ["KeyFunc", "api_key_key", "client_ip", "ip_key", "peer_is_trusted", "route_key",
           "user_key"]

KeyFunc = Callable[[Scope], "str | None"]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _header_values(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers") or () if k.lower() == name]


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> _Address | None:
    """``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``; None if it is not an address.

    Cached: parsing costs microseconds and the same peers (proxies, clients) recur.
    """
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def peer_is_trusted(scope: Scope, trusted: Iterable[_Network]) -> bool:
    """True if the connection's peer (not a header) is in one of the ``trusted`` networks."""
    client = scope.get("client")
    peer = _parse_ip(client[0]) if client else None
    return peer is not None and any(peer in net for net in trusted)


def client_ip(scope: Scope, trusted: Iterable[_Network] = (), *,
              header: bytes = b"x-forwarded-for") -> str | None:
    """The client address: the peer, or the right-most untrusted ``X-Forwarded-For`` entry when
    the peer is a trusted proxy. Entries left of the first untrusted one are client-supplied and
    ignored, so a client cannot choose its own key."""
    client = scope.get("client")
    peer = _parse_ip(client[0]) if client else None
    if peer is None:
        return client[0] if client else None
    nets = tuple(trusted)
    if not nets or not any(peer in net for net in nets):
        return str(peer)
    hops = ",".join(_header_values(scope, header)).split(",")
    current = peer
    for raw in reversed(hops):
        if not raw.strip():
            continue
        hop = _parse_ip(raw)
        if hop is None:  # garbage where a trusted proxy would have written an address
            break
        current = hop
        if not any(hop in net for net in nets):
            break
    return str(current)


def ip_key(trusted_proxies: Iterable[str] = (), *, ipv6_prefix: int = 64,
           header: str = "x-forwarded-for") -> KeyFunc:
    """Key by client IP; IPv6 clients are grouped by ``/ipv6_prefix`` (one host owns a /64)."""
    nets = tuple(ipaddress.ip_network(c, strict=False) for c in trusted_proxies)
    name = header.lower().encode("latin-1")

    def key(scope: Scope) -> str | None:
        ip = client_ip(scope, nets, header=name)
        if ip is None:
            return None
        if ":" in ip and ipv6_prefix < 128:
            try:
                net = ipaddress.ip_network(f"{ip}/{ipv6_prefix}", strict=False)
            except ValueError:
                return f"ip:{ip}"
            return f"ip:{net}"
        return f"ip:{ip}"

    return key


def user_key(scope: Scope) -> str | None:
    """The authenticated user: ``scope["user"]`` (Starlette auth) or ``state["user_id"]``."""
    user = scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        identity = getattr(user, "identity", None) or getattr(user, "display_name", None)
        if identity:
            return f"user:{identity}"
    state = scope.get("state") or {}
    uid = state.get("user_id") if isinstance(state, dict) else None
    return f"user:{uid}" if uid else None


def api_key_key(header: str = "x-api-key") -> KeyFunc:
    """Key by API key; only a hash of it is stored in Redis."""
    name = header.lower().encode("latin-1")

    def key(scope: Scope) -> str | None:
        values = _header_values(scope, name)
        if not values or not values[0]:
            return None
        digest = hashlib.sha256(values[0].encode("utf-8", "surrogateescape")).hexdigest()
        return f"apikey:{digest[:32]}"

    return key


def route_key(scope: Scope) -> str | None:
    """Method and route template when the router set it (else the path): one bucket per route."""
    route = scope.get("route")
    path = getattr(route, "path", None) or scope.get("path", "")
    return f"route:{scope.get('method', '')}:{path}"
