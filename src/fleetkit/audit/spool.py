"""Append-only disk spool: where audit events go while Redis is unavailable.

Layout: ``<spool_dir>/<uuid>/`` per live ``AuditLog``, holding ``lock`` (an exclusive ``flock``
for as long as the owner lives) and numbered segment files ``000000000001.spool``... Each record
is ``<u32 length><u32 crc32><payload>`` where the payload is one packed stream entry (events, one
JSON per line). Records are only ever appended; a segment is deleted once every record in it has
been re-sent to Redis.

**fsync policy.** ``fsync="always"`` (the default) calls ``fsync`` after every record, before the
events of that record are acknowledged to their ``log()`` callers: a spooled event survives a
power loss, matching Redis with ``appendfsync always``. Records are group commits (one record per
packed entry), so this costs one fsync per batch, not per event. ``fsync="never"`` leaves flushing
to the OS: it survives a process crash but not a machine crash.

A crash can leave a torn last record; it was never acknowledged, so the reader stops at the first
record whose length or checksum does not match. A directory whose lock nobody holds belongs to a
dead process: another ``AuditLog`` using the same ``spool_dir`` adopts and replays it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from fleetkit.errors import AuditError, ConfigError

__all__ = ["DiskSpool", "FsyncPolicy", "read_records"]

FsyncPolicy = Literal["always", "never"]
_HEADER = struct.Struct("<II")
_SUFFIX = ".spool"


def read_records(path: Path) -> Iterator[bytes]:
    """Payloads of a segment, in order, stopping at a torn or corrupt tail."""
    with path.open("rb") as f:
        while True:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            length, crc = _HEADER.unpack(header)
            payload = f.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc:
                return
            yield payload


def _lock(path: Path) -> int | None:
    """Take an exclusive non-blocking flock on ``path``; None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class DiskSpool:
    """A private spool directory under ``base`` (blocking I/O: call it from a thread)."""

    def __init__(self, base: Path, *, fsync: FsyncPolicy = "always",
                 segment_bytes: int = 64 * 1024 * 1024) -> None:
        if fsync not in ("always", "never"):
            raise ConfigError("fsync must be 'always' or 'never'")
        self.base = Path(base)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.dir: Path | None = None
        self._lock_fd: int | None = None
        self._adopted: dict[Path, int] = {}
        self._file: IO[bytes] | None = None
        self._file_path: Path | None = None
        self._seq = 0
        #: Records and bytes written and not yet removed (own directory only).
        self.records = 0
        self.bytes = 0

    def _open_dir(self) -> Path:
        if self.dir is None:
            # Locked under a hidden name, then renamed: another log's adopt_orphans() never sees
            # a directory of ours before we hold its lock (it would adopt a live spool).
            name = uuid.uuid4().hex
            hidden, d = self.base / f".{name}", self.base / name
            try:
                hidden.mkdir(parents=True)
                fd = _lock(hidden / "lock")
                assert fd is not None  # a brand-new directory cannot be locked by anyone else
                try:
                    hidden.rename(d)
                except OSError:
                    os.close(fd)
                    raise
            except OSError as exc:
                raise AuditError(f"cannot create the audit spool in {self.base}: {exc}") from exc
            self.dir, self._lock_fd = d, fd
        return self.dir

    def append(self, payload: bytes) -> None:
        """Append one record; return once it is durable per the fsync policy."""
        try:
            if self._file is None or self._file.tell() >= self.segment_bytes:
                self._rotate()
            assert self._file is not None
            self._file.write(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
            self._file.flush()
            if self.fsync == "always":
                os.fsync(self._file.fileno())
        except OSError as exc:
            raise AuditError(f"cannot write the audit spool: {exc}") from exc
        self.records += 1
        self.bytes += len(payload) + _HEADER.size

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
        d = self._open_dir()
        self._seq += 1
        self._file_path = d / f"{self._seq:012d}{_SUFFIX}"
        self._file = self._file_path.open("ab")
        if self.fsync == "always":  # make the new file's directory entry durable too
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def seal(self) -> list[Path]:
        """Close the current segment and return every segment to replay, oldest first.

        Adopted directories of dead processes come first (they are older than anything here).
        """
        if self._file is not None:
            self._file.close()
            self._file = None
            self._file_path = None
        paths: list[Path] = []
        for d in sorted(self._adopted):
            paths += sorted(d.glob(f"*{_SUFFIX}"))
        if self.dir is not None:
            paths += sorted(self.dir.glob(f"*{_SUFFIX}"))
        return paths

    def adopt_orphans(self) -> int:
        """Lock every sibling directory whose owner died; return how many were adopted."""
        if not self.base.is_dir():
            return 0
        found = 0
        for d in sorted(self.base.iterdir()):
            if d == self.dir or d in self._adopted or d.name.startswith(".") or not d.is_dir():
                continue
            try:
                fd = _lock(d / "lock")
            except OSError:
                continue
            if fd is None:
                continue
            self._adopted[d] = fd
            found += 1
        return found

    def remove(self, path: Path) -> None:
        """Delete a fully replayed segment (and an adopted directory once it is empty)."""
        size = path.stat().st_size if path.exists() else 0
        path.unlink(missing_ok=True)
        if path.parent == self.dir:
            self.bytes = max(0, self.bytes - size)
            self.records = 0 if self.bytes == 0 else self.records
        elif path.parent in self._adopted and not any(path.parent.glob(f"*{_SUFFIX}")):
            fd = self._adopted.pop(path.parent)
            shutil.rmtree(path.parent, ignore_errors=True)
            os.close(fd)

    @property
    def empty(self) -> bool:
        return self.bytes == 0 and not self._adopted

    def close(self) -> None:
        """Release the lock; keep the directory only if it still holds records."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for fd in self._adopted.values():
            os.close(fd)
        self._adopted.clear()
        if self.dir is not None and self._lock_fd is not None:
            if not any(self.dir.glob(f"*{_SUFFIX}")):
                shutil.rmtree(self.dir, ignore_errors=True)
            os.close(self._lock_fd)
            self.dir, self._lock_fd = None, None
