"""PostgreSQL WAL positions (``pg_lsn``) as comparable integers.

A read-your-writes token is the text form (``"16/B374D848"``) so it can be stored in a session or
a cookie as is; :func:`parse_lsn` turns it into an ``int`` for comparisons.
"""

from __future__ import annotations

from fleetkit.errors import InvalidArgument

__all__ = ["format_lsn", "parse_lsn"]


def parse_lsn(text: str) -> int:
    """``"16/B374D848"`` → ``0x16B374D848``; raises ``ValueError`` on anything else."""
    high, sep, low = text.strip().partition("/")
    if not sep or not high or not low:
        raise InvalidArgument(f"{text!r} is not a PostgreSQL LSN such as '16/B374D848'")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
