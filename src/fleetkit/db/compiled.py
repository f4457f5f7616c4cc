"""Core statements compiled once for asyncpg (``Database.fetch_all``'s driver path)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy.dialects.postgresql.asyncpg import dialect as _asyncpg_dialect
from sqlalchemy.sql.base import Executable

from fleetkit.errors import UsageError

__all__ = ["StatementCache"]

_PG_DIALECT: Any = _asyncpg_dialect()  # type: ignore[no-untyped-call]


class StatementCache:
    """Statement -> (SQL with ``$n`` placeholders, compiled form), bounded (LRU-ish: oldest out).

    Keyed by the statement object: build statements once, at import.
    """

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._compiled: OrderedDict[Any, tuple[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._compiled)

    def sql_and_args(self, statement: Any,
                     params: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
        entry = self._compiled.get(statement)
        if entry is None:
            if not isinstance(statement, Executable):
                raise UsageError(f"fetch_all() takes a SQLAlchemy Core statement, not "
                                 f"{type(statement).__name__}")
            compiled = cast(Any, statement).compile(dialect=_PG_DIALECT)
            entry = self._compiled[statement] = (compiled.string, compiled)
            if len(self._compiled) > self._size:  # statements built per call: stay bounded
                self._compiled.popitem(last=False)
        sql, compiled = entry
        try:  # every parameter given (the usual case): skip construct_params
            args = [params[name] for name in compiled.positiontup] if params else []
            if len(args) != len(compiled.positiontup):
                raise KeyError
        except KeyError:  # defaults or literal binds: let SQLAlchemy fill them in
            values = compiled.construct_params(params)
            args = [values[name] for name in compiled.positiontup]
        return sql, args
