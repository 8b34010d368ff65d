"""The audit trail in a PostgreSQL table (SQLAlchemy Core, psycopg 3), appended under a transaction lock.

One row per record:

===================  ================================================================================
column               content
===================  ================================================================================
``position``         primary key, the order of appending (an identity column the trail never sets)
``sequence``         the record's sequence, unique
``digest``           the record's digest, unique
``record``           the record's canonical JSON, as text, so that its digest is recomputed exactly
``kind``, ``verdict``  for queries
``recorded_at``      timestamptz
``retain_until``     date: six years after ``recorded_at`` (45 CFR 164.530(j)); this module never deletes
===================  ================================================================================

An append takes a transaction-scoped advisory lock on the table, reads the head, inserts the record and
commits, so concurrent appends from several hosts make one chain. ``verify`` reads the rows by
``position``: a row edited, deleted, inserted or whose sequence was swapped is named by its position.
Errors never quote the driver (its messages repeat rows) and never show a password.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from airflow_phi_guard.exceptions import AuditTrailError
from airflow_phi_guard.sql import error_cause, open_database, redact_url, sqlstate
from airflow_phi_guard.trail.chain import (
    TrailEntry,
    TrailHead,
    TrailRecord,
    TrailVerification,
    make_record,
    verify_records,
)

#: The trail table when none is given.
DEFAULT_TRAIL_TABLE = "phi_guard.audit_trail"

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,47}")


class SqlTrail:
    """A trail in a PostgreSQL table, created on first use.

    :param url: a SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host:5432/db``.
    :param table: ``schema.table`` or ``table`` (in ``public``): lower-case letters, digits, underscores.
    :raises AuditTrailError: the URL or the table name is not usable.
    """

    def __init__(self, url: str, table: str = DEFAULT_TRAIL_TABLE) -> None:
        import sqlalchemy as sa

        parts = table.split(".") if "." in table else ["public", table]
        self.display_name = f"{redact_url(url)}#{table}"
        if len(parts) != 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
            raise AuditTrailError(self.display_name, "the table must be schema.table of lower-case letters")
        self.schema, self.name = parts
        try:
            self._engine, _ = open_database(url, backends=("postgresql",), driver="psycopg")
        except ValueError as error:
            raise AuditTrailError(self.display_name, f"the table store needs PostgreSQL: {error}") from None
        metadata = sa.MetaData()
        self.table = sa.Table(
            self.name,
            metadata,
            sa.Column("position", sa.BigInteger, sa.Identity(always=True), primary_key=True),
            sa.Column("sequence", sa.BigInteger, nullable=False, unique=True),
            sa.Column("digest", sa.Text, nullable=False, unique=True),
            sa.Column("record", sa.Text, nullable=False),
            sa.Column("kind", sa.Text, nullable=False),
            sa.Column("verdict", sa.Text, nullable=False),
            sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("retain_until", sa.Date, nullable=False),
            schema=self.schema,
        )
        # an advisory lock key of this table, stable across processes
        self._lock_key = zlib.crc32(f"phi-guard trail {self.schema}.{self.name}".encode())
        self._ready = False

    def append(self, entry: TrailEntry, *, at: datetime | None = None) -> TrailRecord:
        """Append ``entry`` after the last record, in one transaction under the table's advisory lock.

        :param entry: the decision to record.
        :param at: the time to record, UTC now by default.
        :raises AuditTrailError: the database refused, or the last record does not match its digest.
        """
        import sqlalchemy as sa

        from airflow_phi_guard.trail.store import _head_of

        self._create()
        try:
            with self._engine.begin() as connection:
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(self._lock_key)))
                last = connection.execute(
                    sa.select(self.table.c.record).order_by(self.table.c.position.desc()).limit(1)
                ).scalar()
                head = _head_of(self.display_name, last) if last is not None else None
                record = make_record(entry, head, at=at)
                connection.execute(
                    self.table.insert().values(
                        sequence=record.sequence,
                        digest=record.digest,
                        record=record.to_line(),
                        kind=record.kind.value,
                        verdict=record.verdict,
                        recorded_at=record.recorded_at,
                        retain_until=record.retain_until,
                    )
                )
        except sa.exc.SQLAlchemyError as error:
            raise self._error(error) from None
        return record

    def stored(self) -> Iterator[str]:
        import sqlalchemy as sa

        try:
            with self._engine.connect() as connection:
                rows = connection.execute(sa.select(self.table.c.record).order_by(self.table.c.position))
                yield from (row[0] for row in rows)
        except sa.exc.SQLAlchemyError as error:
            raise self._error(error) from None

    def verify(self) -> TrailVerification:
        return verify_records(self.display_name, self.stored())

    def head(self) -> TrailHead | None:
        """The last record's sequence and digest, None for an empty trail."""
        import sqlalchemy as sa

        self._create()
        try:
            with self._engine.connect() as connection:
                last = connection.execute(
                    sa.select(self.table.c.record).order_by(self.table.c.position.desc()).limit(1)
                ).scalar()
        except sa.exc.SQLAlchemyError as error:
            raise self._error(error) from None
        if last is None:
            return None
        fields: dict[str, Any] = json.loads(last)
        return TrailHead(sequence=int(fields["sequence"]), digest=str(fields["digest"]))

    def _create(self) -> None:
        import sqlalchemy as sa

        if self._ready:
            return
        try:
            with self._engine.begin() as connection:
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(self._lock_key)))
                connection.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
                self.table.create(connection, checkfirst=True)
        except sa.exc.SQLAlchemyError as error:
            raise self._error(error) from None
        self._ready = True

    def _error(self, error: Exception) -> AuditTrailError:
        return AuditTrailError(
            self.display_name,
            f"the database refused ({error_cause(error)}, SQLSTATE {sqlstate(error) or 'unknown'}; its "
            "message is withheld because it may quote records); nothing was appended",
        )
