"""Multi-datacenter routing of session tokens.

Every token names its home region (``eu-west.<route>.<secret>``). An instance serves its own
region from its local session Redis; for a token of another region it either

* ``foreign_tokens="route"``: runs the operation on that region's session Redis (configured with
  ``SESSION_REGIONS=us-east=rediss://...``), one cross-region round trip; or
* ``foreign_tokens="reject"``: treats the token as unknown (the request is anonymous and the user
  logs in again locally), for deployments where regions must not reach each other.

Deployment choices and their consistency on revoke:

1. **Region-local Redis + this routing (recommended).** Each session lives in exactly one Redis,
   so ``revoke`` is immediate and global: every instance, in any region, reads the same key.
   Cost: a cross-region round trip for roaming users, and a region outage makes its sessions
   unavailable elsewhere (``reject`` mode turns that into a re-login).
2. **Active-active replication (e.g. Redis Enterprise CRDB / Active-Active).** Every region holds
   every session and reads locally. Replication is asynchronous, so a revoke reaches the other
   regions after the replication lag: during that window a revoked token still works there. The
   tombstone written by ``revoke`` keeps a concurrent ``update`` in another region from
   resurrecting the session once both sides converge. Use ``region`` = the logical name shared by
   all regions so tokens are never routed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Generic, Literal, TypeVar

from fleetkit.errors import ConfigError
from fleetkit.redis import ClientOptions, create_client
from fleetkit.sessions.metrics import FOREIGN

__all__ = ["ForeignPolicy", "RegionRouter", "connect_regions", "parse_region_urls"]

ForeignPolicy = Literal["route", "reject"]
B = TypeVar("B")


def parse_region_urls(items: Iterable[str]) -> dict[str, str]:
    """``["us-east=redis://h:6379", ...]`` (the ``SESSION_REGIONS`` setting) → ``{name: url}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise ConfigError(f"SESSION_REGIONS item {item!r} must look like 'eu-west=redis://h'")
        out[name.strip()] = url.strip()
    return out


def connect_regions(items: Iterable[str], *, options: ClientOptions) -> dict[str, Any]:
    """A session Redis client per ``name=url`` item (``SESSION_REGIONS``), closed by the caller."""
    return {name: create_client(url, role=f"sessions-{name}", options=options)
            for name, url in parse_region_urls(items).items()}


class RegionRouter(Generic[B]):
    """Picks the backend that holds a token of ``region`` (``None`` = treat as unknown)."""

    def __init__(self, local_region: str, local: B, regions: Mapping[str, B] | None = None, *,
                 foreign: ForeignPolicy = "route") -> None:
        if foreign not in ("route", "reject"):
            raise ConfigError(f"foreign_tokens must be 'route' or 'reject', not {foreign!r}")
        self.local_region = local_region
        self.local = local
        self.foreign = foreign
        self.regions = dict(regions or {})
        self.regions.pop(local_region, None)

    def backend_for(self, region: str) -> B | None:
        if region == self.local_region:
            return self.local
        if self.foreign == "reject":
            FOREIGN.labels("rejected").inc()
            return None
        found = self.regions.get(region)
        FOREIGN.labels("routed" if found is not None else "unknown_region").inc()
        return found
