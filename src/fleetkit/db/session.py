"""A routed ORM session: SELECTs to a replica, flushes and DML to the primary.

Used through :meth:`fleetkit.db.Database.session`. Routing is sticky: a session keeps one replica
for its reads, and once it has written (or asked for ``FOR UPDATE`` or run raw SQL, which may
write) it reads from the primary for the rest of its life, so it sees its own changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Delete, Insert, Select, Update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

if TYPE_CHECKING:
    from fleetkit.db.replicas import Node

__all__ = ["ReplicaPicker", "RoutedSession"]


class ReplicaPicker(Protocol):
    """What a routed session needs from the router (``fleetkit.db.Database`` is one)."""

    primary: Node
    replicas: list[Node]

    def pick_replica(self, token: int | None) -> Node | None:
        """A healthy replica that has replayed ``token`` (by the cached position), or None."""


def _needs_primary(clause: ClauseElement | None) -> bool:
    if clause is None:
        return False
    if isinstance(clause, Insert | Update | Delete):
        return True
    if isinstance(clause, Select):
        return clause._for_update_arg is not None
    # text() and anything else we cannot classify may write.
    return True


class RoutedSession(Session):
    def __init__(self, *, router: ReplicaPicker, token: int | None = None, pinned: bool = False,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.router = router
        self.token = token
        self.pinned = pinned or not router.replicas
        self._replica: Node | None = None

    def get_bind(self, mapper: Any = None, *, clause: ClauseElement | None = None,
                 bind: Any = None, _sa_skip_events: bool | None = None,
                 _sa_skip_for_implicit_returning: bool = False,
                 **kw: Any) -> Engine | Connection:
        if bind is not None:
            return bind  # type: ignore[no-any-return]
        if self.pinned or self._flushing or _needs_primary(clause):
            self.pinned = True
            return self.router.primary.engine.sync_engine
        replica = self._replica
        if replica is None or not replica.healthy:
            replica = self._replica = self.router.pick_replica(self.token)
        if replica is None:
            return self.router.primary.engine.sync_engine
        return replica.engine.sync_engine
