"""The checks behind :class:`fleetkit.config.Settings`' validators: one value at a time.

Pure functions of the value they are given (no environment read: only ``fleetkit.config`` reads
the environment). Each returns the value it accepts (normalised where said) and raises
:class:`~fleetkit.errors.ConfigError` with the reason otherwise; ``load_settings`` prefixes the
setting's name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from fleetkit.errors import ConfigError
from fleetkit.redaction import redact_text

__all__ = ["COOKIE_NAME_RE", "database_url", "each", "ip_network", "parse_policy_list",
           "policy_list", "redis_url", "region", "removed_admin_email", "route_class", "secret_key",
           "split_commas"]

_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel",
                  "rediss+sentinel")
_DB_SCHEMES = ("postgresql", "postgresql+asyncpg", "postgres", "sqlite", "sqlite+aiosqlite")
_POLICY_RE = re.compile(
    r"^\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*(second|minute|hour|day|s|m|h|d)s?\s*$", re.I
)
# The limiter packs amount and window (ms) as int64: bound both well inside that.
_MAX_AMOUNT = 10**12
_MAX_MULTIPLIER = 10**6
_ROUTE_CLASSES = ("never", "critical", "normal", "sheddable")
#: RFC 6265 cookie-name: an HTTP token (no ';', '=', space, quote, control characters).
COOKIE_NAME_RE = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$"


def parse_policy_list(value: str) -> list[str]:
    """Split ``"20/second;1000/hour"`` into items, checking each one's shape."""
    items = [p.strip() for p in re.split(r"[;,]", value) if p.strip()]
    for item in items:
        match = _POLICY_RE.match(item)
        if not match:
            raise ConfigError(f"{item!r} is not a rate limit such as '100/minute'")
        amount, multiplier = int(match.group(1)), int(match.group(2) or 1)
        if not 1 <= amount <= _MAX_AMOUNT:
            raise ConfigError(f"{item!r}: the number of requests must be 1..{_MAX_AMOUNT}")
        if not 1 <= multiplier <= _MAX_MULTIPLIER:
            raise ConfigError(f"{item!r}: the window's count must be 1..{_MAX_MULTIPLIER}")
    return items


def split_commas(value: Any) -> Any:
    """``"a, b,,c"`` → ``["a", "b", "c"]``; anything but a string is returned unchanged."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def each(check: Callable[[str], object]) -> Callable[[list[str]], list[str]]:
    """The check of a list: ``check`` on every item, the list returned unchanged."""
    def check_all(values: list[str]) -> list[str]:
        for item in values:
            check(item)
        return values
    return check_all


def policy_list(value: str) -> str:
    """A ``;``- or ``,``-separated list of rate limits (:func:`parse_policy_list`), unchanged."""
    parse_policy_list(value)
    return value


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def redis_url(value: str | None) -> str | None:
    """A Redis URL of a known scheme; empty means unset (``None``)."""
    if value is None or value == "":
        return None
    if _scheme(value) not in _REDIS_SCHEMES:
        raise ConfigError(f"scheme must be one of {', '.join(_REDIS_SCHEMES)}")
    return value


def database_url(value: str) -> str:
    """A database URL of a supported scheme (PostgreSQL or SQLite)."""
    if _scheme(value) not in _DB_SCHEMES:
        raise ConfigError(f"scheme must be one of {', '.join(_DB_SCHEMES)}")
    return value


def ip_network(item: str) -> str:
    """An IP network or address (``10.0.0.0/8``, ``::1``)."""
    try:
        ipaddress.ip_network(item, strict=False)
    except ValueError as exc:
        raise ConfigError(f"{item!r} is not an IP network") from exc
    return item


def region(item: str) -> str:
    """A ``name=redis-url`` pair of ``SESSION_REGIONS`` (the URL is redacted in the error)."""
    name, sep, url = item.partition("=")
    if not sep or not name or not url:
        raise ConfigError(f"{redact_text(item)!r} must look like 'eu-west=redis://host:6379'")
    return item


def route_class(item: str) -> str:
    """A ``/path-prefix=class`` pair of ``OVERLOAD_ROUTE_CLASSES``."""
    prefix, sep, name = item.partition("=")
    if not sep or not prefix.strip().startswith("/") or name.strip().lower() not in _ROUTE_CLASSES:
        raise ConfigError(f"{item!r} must look like '/v1/auth/login=critical' (classes: "
                          f"{', '.join(_ROUTE_CLASSES)})")
    return item


def removed_admin_email(value: str | None) -> None:
    """``ADMIN_EMAIL`` is refused when set (it made the first registrant an admin)."""
    if value:
        raise ConfigError("ADMIN_EMAIL is no longer supported (whoever registered that address "
                          "first became an admin); create the first admin with "
                          "`fleetkit admin create EMAIL` and unset ADMIN_EMAIL")


def secret_key(value: SecretStr | None) -> SecretStr | None:
    """At least 32 characters; empty means unset (``None``)."""
    if value is None or not value.get_secret_value():
        return None
    if len(value.get_secret_value()) < 32:
        raise ConfigError("needs at least 32 characters, e.g. the output of "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return value
