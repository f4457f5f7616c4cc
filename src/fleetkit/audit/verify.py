"""Tamper evidence: recompute the batch hash chain and name the first altered batch.

For every batch, in chain order: its ``prev_hash`` must equal the previous batch's ``hash``, its
``hash`` must equal ``sha256(prev_hash || batch_id || rows_digest)``, and the digest recomputed
from the rows stored today must equal ``rows_digest`` (with the same row count). Editing a row
(even with the trigger disabled, as a superuser) changes its batch's digest; rewriting the digest
too breaks the next link. Batches reaching below the ``prune`` watermark lost rows legitimately:
only their links are checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fleetkit.audit.schema import CANON_SQL, qident
from fleetkit.audit.sink import GENESIS, SqliteSink, chain_hash

__all__ = ["VerifyResult", "verify_postgres", "verify_sqlite"]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    batches: int
    rows: int
    first_bad_batch: int | None = None
    detail: str = "chain intact"

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.batches} batches, {self.rows} rows, chain intact"
        return f"ALTERED: batch {self.first_bad_batch}: {self.detail}"


def _walk(batches: Sequence[Sequence[Any]], stored: dict[int, tuple[int, bytes | None]],
          checkable: Any) -> VerifyResult:
    """``batches``: (batch_id, chain_pos, row_count, rows_digest, prev_hash, hash, extra)."""
    prev = GENESIS
    rows = 0
    for i, (batch_id, pos, count, digest, prev_hash, hsh, extra) in enumerate(batches, 1):
        bad = None
        if pos != i:
            bad = f"chain position {pos} where {i} was expected (a batch was removed)"
        elif bytes(prev_hash) != prev:
            bad = "prev_hash does not match the previous batch's hash"
        elif chain_hash(bytes(prev_hash), batch_id, bytes(digest)) != bytes(hsh):
            bad = "hash does not match sha256(prev_hash || batch_id || rows_digest)"
        else:
            got_count, got_digest = stored.pop(batch_id, (0, None))
            if checkable(extra):
                if got_count != count:
                    bad = f"{got_count} rows stored where {count} were inserted"
                elif got_digest is None or bytes(got_digest) != bytes(digest):
                    bad = "rows were altered (digest mismatch)"
            rows += got_count
        if bad:
            return VerifyResult(False, len(batches), rows, batch_id, bad)
        prev = bytes(hsh)
    if stored:
        stray = min(stored)
        return VerifyResult(False, len(batches), rows, stray,
                            "rows reference a batch that is not in the chain")
    return VerifyResult(True, len(batches), rows)


async def verify_postgres(conn: Any, schema: str = "public") -> VerifyResult:
    """Verify the chain stored in ``schema`` (asyncpg connection; one scan of the table)."""
    s = qident(schema)
    batches = await conn.fetch(
        f"SELECT batch_id, chain_pos, row_count, rows_digest, prev_hash, hash, min_time "
        f"FROM {s}.audit_batches ORDER BY chain_pos")
    stored = {r[0]: (r[1], r[2]) for r in await conn.fetch(
        f"SELECT batch_id, count(*)::int, sha256(convert_to(string_agg({CANON_SQL}, E'\\n' "
        f"ORDER BY event_id), 'UTF8')) FROM {s}.audit_events GROUP BY batch_id")}
    watermark = await conn.fetchval(f"SELECT pruned_before FROM {s}.audit_retention")
    return _walk([tuple(b) for b in batches], stored,
                 lambda min_time: watermark is None or min_time >= watermark)


def verify_sqlite(sink: SqliteSink) -> VerifyResult:
    """Verify the embedded-mode SQLite chain (blocking)."""
    grouped: dict[int, list[Any]] = {}
    for batch_id, *row in sink.rows():
        grouped.setdefault(batch_id, []).append(row)
    stored: dict[int, tuple[int, bytes | None]] = {
        b: (len(rows), sink.digest(rows)) for b, rows in grouped.items()}
    return _walk([(*b, None) for b in sink.batches()], stored, lambda _: True)
