"""Every Redis key fleetkit writes, in one place (as ``arq/constants.py``).

Each component takes its prefix as a constructor argument whose default is named here, and
builds its keys with the helpers below, so two components that must agree on a layout (the
session store and the session monitor) cannot drift apart. Every key a script touches shares one
hash tag (``{...}``), so every script runs on one Redis Cluster slot::

    fk:rl:{<key>}:<alg>:<window_ms>:<amount>  rate limit state, one key per limit and client
    fk:rl:{instances}                         zset of live limiter instances (heartbeat)
    fk:{<route>}s<sid>                        session hash
    fk:{<route>}u<user>                       zset: the user's session index
    fk:{<route>}r<sid>                        rotated session: the new sid (grace period)
    fk:{<route>}t<sid>                        tombstone of a revoked or evicted sid
    fk:monitor:lease                          the session monitor's fleet-wide lease
    {fleetkit:breaker:<name>}:state           breaker state hash
    {fleetkit:breaker:<name>}:buckets         its sliding window of call/failure counts
    {fleetkit:breaker:<name>}:leases          its half-open trial leases (zset)
    fleetkit:breaker:events:<name>            its pub/sub channel (not a key: no hash tag)
    fleetkit:audit:{s<n>}                     audit stream shard n
    fleetkit:audit:dead:{s<n>}                its dead letters

The sessions' Lua scripts append the kind letters below to the ``base`` they are given; the
monitor's prune script is given the session and tombstone prefixes it needs (KEYS/ARGV built
here), so no script spells a prefix of its own.
"""

from __future__ import annotations

__all__ = [
    "AUDIT_PREFIX", "BREAKER_PREFIX", "RATELIMIT_ALGORITHM_TAGS", "RATELIMIT_PREFIX",
    "SESSION", "SESSIONS_PREFIX", "SESSION_INDEX", "SESSION_ROTATED", "SESSION_TOMBSTONE",
    "breaker_keys", "escape_tag", "index_base", "monitor_lease_key", "ratelimit_instances_key",
    "session_base", "session_index_pattern",
]

#: :class:`fleetkit.ratelimit.RateLimiter` (``prefix=``).
RATELIMIT_PREFIX = "fk:rl:"
#: :class:`fleetkit.sessions.SessionStore` and :class:`fleetkit.monitor.SessionMonitor`
#: (``prefix=``): the monitor scans the store's indexes, so both must use the same prefix.
SESSIONS_PREFIX = "fk:"
#: :class:`fleetkit.breaker.CircuitBreaker` / ``BreakerRegistry`` (``key_prefix=``).
BREAKER_PREFIX = "fleetkit:breaker"
#: :class:`fleetkit.audit.AuditLog` and the consumer (``prefix=``).
AUDIT_PREFIX = "fleetkit:audit"

#: The algorithm part of a rate limit key (``...}:sw:60000:100``).
RATELIMIT_ALGORITHM_TAGS = {"sliding_window": "sw", "sliding_log": "sl", "gcra": "gc"}

# Kinds of session keys, appended to session_base(prefix, route).
SESSION = "s"
SESSION_INDEX = "u"
SESSION_ROTATED = "r"
SESSION_TOMBSTONE = "t"


def escape_tag(text: str) -> str:
    """``text`` safe inside a hash tag: braces would end the tag early (or leave it empty), so
    they are escaped, and so is the escape character."""
    if "{" in text or "}" in text or "%" in text:
        text = text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return text


def breaker_keys(prefix: str, name: str) -> tuple[list[str], str]:
    """The three keys of one breaker (one hash tag: one Cluster slot) and its channel.

    The channel is not a key: a plain PUBLISH reaches every node of a Cluster.
    """
    tag = f"{{{prefix}:{escape_tag(name)}}}"
    return [f"{tag}:state", f"{tag}:buckets", f"{tag}:leases"], f"{prefix}:events:{name}"


def ratelimit_instances_key(prefix: str = RATELIMIT_PREFIX) -> str:
    return f"{prefix}{{instances}}"


def session_base(prefix: str, route: str) -> str:
    """``<prefix>{<route>}``: what every key of one user's sessions starts with."""
    return f"{prefix}{{{route}}}"


def session_index_pattern(prefix: str = SESSIONS_PREFIX) -> str:
    """SCAN MATCH pattern of every per-user session index under ``prefix``."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    return escaped + "{*}" + SESSION_INDEX + "*"


def index_base(index_key: str) -> str:
    """The ``<prefix>{<route>}`` part of a per-user index key found by SCAN."""
    return index_key[: index_key.index("}") + 1]


def monitor_lease_key(prefix: str = SESSIONS_PREFIX) -> str:
    return f"{prefix}monitor:lease"
