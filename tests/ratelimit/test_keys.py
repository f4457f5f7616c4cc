from __future__ import annotations

from typing import Any

import pytest

from fleetkit.ratelimit import api_key_key, ip_key, route_key, user_key

PROXIES = ["10.0.0.0/8", "fd00::/8"]


def _scope(peer: str | None, *xff: str, **extra: Any) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", v.encode("latin-1")) for v in xff]
    return {"type": "http", "client": (peer, 1234) if peer else None, "headers": headers,
            "path": "/x", "method": "GET", **extra}


@pytest.mark.parametrize(("peer", "xff", "expected"), [
    ("203.0.113.9", ["1.2.3.4"], "ip:203.0.113.9"),             # untrusted peer: XFF ignored
    ("10.0.0.1", ["198.51.100.7"], "ip:198.51.100.7"),          # one trusted proxy
    ("10.0.0.1", ["6.6.6.6, 198.51.100.7, 10.0.0.2"], "ip:198.51.100.7"),  # spoofed left part
    ("10.0.0.1", ["6.6.6.6", "198.51.100.7"], "ip:198.51.100.7"),  # several header lines
    ("10.0.0.1", ["198.51.100.7:4711"], "ip:198.51.100.7"),     # with a port
    ("10.0.0.1", ["[2001:db8::1]:443"], "ip:2001:db8::/64"),    # IPv6 grouped by /64
    ("10.0.0.1", ["1.2.3.4, not-an-ip"], "ip:10.0.0.1"),        # garbage: nearest trusted hop
    ("10.0.0.1", ["\x00\xff,,, ;"], "ip:10.0.0.1"),
    ("10.0.0.1", [], "ip:10.0.0.1"),
    ("10.0.0.1", ["10.0.0.5, 10.0.0.6"], "ip:10.0.0.5"),        # only proxies
    ("unix-socket", ["1.2.3.4"], "unix-socket"),
])
def test_client_ip(peer: str, xff: list[str], expected: str) -> None:
    assert ip_key(PROXIES)(_scope(peer, *xff)) in (expected, f"ip:{expected}")


def test_no_client_means_no_key() -> None:
    assert ip_key()(_scope(None)) is None


def test_user_api_key_and_route_keys() -> None:
    class User:
        is_authenticated = True
        identity = "u42"

    assert user_key(_scope("1.1.1.1", user=User())) == "user:u42"
    assert user_key(_scope("1.1.1.1", state={"user_id": 7})) == "user:7"
    assert user_key(_scope("1.1.1.1")) is None
    scope = _scope("1.1.1.1")
    scope["headers"].append((b"x-api-key", b"secret-key"))
    key = api_key_key()(scope)
    assert key is not None and key.startswith("apikey:") and "secret" not in key
    assert api_key_key()(_scope("1.1.1.1")) is None
    assert route_key(_scope("1.1.1.1")) == "route:GET:/x"
