"""Where the audit trail is kept: a JSONL file appended under a lock, or a PostgreSQL table.

Both stores append one record at a time under an exclusive lock held from reading the head to writing the
record, so two tasks appending at once still make one chain. Neither ever rewrites or deletes a record.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Protocol

from airflow_phi_guard.exceptions import AuditTrailError
from airflow_phi_guard.trail.chain import (
    TrailEntry,
    TrailHead,
    TrailRecord,
    TrailVerification,
    make_record,
    parse_record,
    record_digest,
    verify_records,
)


class AuditTrail(Protocol):
    """A store of the chain."""

    display_name: str

    def append(self, entry: TrailEntry, *, at: datetime | None = None) -> TrailRecord:
        """Append ``entry`` after the current head and return the record as stored."""
        ...

    def stored(self) -> Iterator[str]:
        """The records' texts in stored order."""
        ...

    def verify(self) -> TrailVerification:
        """Check the whole chain."""
        ...


class JsonlTrail:
    """A trail in a JSONL file, one canonical record per line.

    The lock is an ``flock`` on a file beside the trail (``<name>.lock``), so it also holds across
    processes of one host; a trail on a network file system whose ``flock`` is not shared between hosts
    is not safe for appends from several hosts (a known shortcoming; use the PostgreSQL store there).

    :param path: the JSONL file; created with its folder on the first append.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.display_name = str(self.path)

    def append(self, entry: TrailEntry, *, at: datetime | None = None) -> TrailRecord:
        """Append ``entry`` as the record after the last one.

        :param entry: the decision to record.
        :param at: the time to record, UTC now by default.
        :raises AuditTrailError: when the last record is unreadable or does not match its digest, so that
            no record is chained to a broken one.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            record = make_record(entry, self._head(), at=at)
            with open(self.path, "a", encoding="utf-8") as trail:
                trail.write(record.to_line() + "\n")
                trail.flush()
                os.fsync(trail.fileno())
        return record

    def stored(self) -> Iterator[str]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", errors="replace") as trail:
            for line in trail:
                if line.strip():
                    yield line.rstrip("\n")

    def verify(self) -> TrailVerification:
        return verify_records(self.display_name, self.stored())

    def head(self) -> TrailHead | None:
        """The last record's sequence and digest, None for an empty trail."""
        with self._locked():
            return self._head()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f"{self.path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _head(self) -> TrailHead | None:
        last = _last_line(self.path)
        if last is None:
            return None
        return _head_of(self.display_name, last)


def _head_of(trail: str, text: str) -> TrailHead:
    fields = parse_record(text)
    if fields is None or record_digest(fields) != fields["digest"]:
        raise AuditTrailError(
            trail,
            "its last record is unreadable or does not match its digest; nothing was appended; run "
            "`phi-guard trail verify` and repair the trail from a copy before appending",
        )
    return TrailHead(sequence=int(fields["sequence"]), digest=str(fields["digest"]))


def _last_line(path: Path) -> str | None:
    """The last non-empty line, read from the end so that appends stay cheap on a long trail."""
    if not path.exists():
        return None
    with open(path, "rb") as trail:
        trail.seek(0, os.SEEK_END)
        end = trail.tell()
        block, tail = 8192, b""
        position = end
        while position > 0:
            step = min(block, position)
            position -= step
            trail.seek(position)
            tail = trail.read(step) + tail
            lines = tail.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or position == 0:
                text = lines[-1].decode("utf-8", errors="replace")
                return text or None
    return None


def open_trail(target: str | os.PathLike[str]) -> AuditTrail:
    """The trail at ``target``: a URL (any text with ``://``) opens the table store, which refuses all but
    PostgreSQL, rather than taking another database's URL for a file's path; anything else names a JSONL
    file.

    :param target: a path, or a database URL with an optional ``#schema.table`` suffix.
    """
    text = os.fspath(target)
    if "://" in text:
        from airflow_phi_guard.trail.sql import SqlTrail

        # The table follows the last "#"; what follows a "#" in a password is more than a table's name.
        url, _, table = text.rpartition("#")
        if not url or not all(part.isidentifier() for part in table.split(".")):
            url, table = text, ""
        return SqlTrail(url, table) if table else SqlTrail(url)
    return JsonlTrail(text)
