"""The lineage archive: OpenLineage event logs kept in PostgreSQL for as long as HIPAA documentation must be.

One table holds one row per distinct event (SQLAlchemy Core, psycopg 3):

=====================  ===================================================================================
column                 content
=====================  ===================================================================================
``digest``             primary key: SHA-256 (hex) of the event's canonical JSON (keys sorted, no blanks,
                       UTF-8), so loading a log twice, or two logs holding the same event, adds it once
``event``              the event as JSONB
``event_time``         its ``eventTime`` (timestamptz; UTC when the event gives no offset; NULL unreadable)
``event_type``         START, COMPLETE, FAIL...
``run_id``             ``run.runId``
``job_namespace``,     ``job.namespace`` and ``job.name``
``job_name``
``governance``         whether the event carries the ``phiGuard_policy`` run facet
``model_name``,        the model the ``phiGuard_policy`` facet names
``model_version``
``input_datasets``,    text[] of the dataset URIs the event read and wrote, as the audit matches them (names
``output_datasets``    percent-decoded; a governance event's ``phiGuard_columns`` source datasets are inputs)
``reads_governed``     whether the event read a dataset that an archived governance event wrote: kept
                       true by every load, for the events it adds and for those already archived that
                       read what its governance events wrote
``source_file``        the log the event was first loaded from
``archived_at``        when it was first loaded
``retain_until``       the event's date (UTC; the load's date for an event without a readable time) plus
                       the retention years; a later load can lengthen it, never shorten it
=====================  ===================================================================================

Retention defaults to six years: 45 CFR 164.530(j)(2) (as REGULATORY.md cites it) and 164.316(b)(2)(i) ask
that documentation be kept six years from its creation or from when it was last in effect, whichever is
later. The retention years can be raised, never set below six. ``retain_until`` is metadata for whoever
purges the table; this module never deletes a row. An event's six years run from the event itself, not
from when its policy was last in effect: an organisation whose policy stays in force longer must load
with more years (a known shortcoming: the archive does not know when a policy was retired).

Indexes serve the audit's queries (:meth:`LineageArchive.events_for`): model name and version, run id, a
GIN index on the input dataset arrays, one on the output arrays of governance events, and the event time of
governance events and of the events with ``reads_governed``. So a model's audit reads the governance events
of its model, then the events that read their outputs, and nothing else; a window's audit reads the
governance events and the readers of governed sets in the window, never the other events of the window.
``benchmarks/audit_scale.py`` measures that, and ``tests/lineage/test_archive.py`` checks the plans.

A load reads every log line by line and writes through ``COPY`` into a temporary table, then one
``INSERT ... ON CONFLICT`` in the same transaction: either every line of every log is archived, or none.
A line that is not a JSON object refuses the whole load, named by file and line number, never by its
content. Errors never quote the database driver, whose messages repeat statements and rows, and never show
a password.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_phi_guard.exceptions import LineageArchiveError, LineageArchiveUnavailableError
from airflow_phi_guard.lineage.audit import (
    AllModelsQuery,
    AuditQuery,
    ColumnQuery,
    EventLogError,
    ModelQuery,
    WindowQuery,
    dataset_names,
    event_datasets,
    event_model,
    is_governance_event,
    iterate_events,
    parse_event_time,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)

#: The archive table when none is given: a schema of its own, so that its grants and purges stand apart.
DEFAULT_ARCHIVE_TABLE = "phi_guard.lineage_events"

#: HIPAA's documentation retention, in years (45 CFR 164.530(j)(2), 164.316(b)(2)(i)); also the least
#: a load accepts.
HIPAA_RETENTION_YEARS = 6

# The staging columns' types as COPY receives them, in column order. The event goes as text (COPY's text
# format hands the server its JSON as written, and jsonb parses it), not through a jsonb dumper.
_COPY_TYPES = (
    *("text", "text", "timestamptz", "text", "text", "text", "text", "bool", "text", "text"),
    *("text[]", "text[]", "text", "timestamptz", "date", "bool"),
)

# For sorting rows whose event time is NULL: any aware instant will do, the flag sorts them apart.
_EPOCH = datetime.fromtimestamp(0, UTC)

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_STAGING = "phi_guard_archive_staging"

# SQLSTATE classes of a database that is not there right now (connection, operator intervention, resources).
_UNAVAILABLE_STATE_CLASSES = ("08", "57", "53")
_STATE_PROBLEMS = {
    "42501": "the connection's user lacks a privilege it needs (CREATE on the database or schema to set the "
    "archive up, INSERT to load, SELECT to audit); grant it",
    "3F000": "its schema does not exist; load an event log first, which creates it",
    "42P01": "its table does not exist; load an event log first, which creates it",
    "42703": "its table was made by an earlier version and lacks a column the audit reads; load any event "
    "log into it (one already archived will do), which upgrades it",
}


class LoadSummary(BaseModel):
    """What one load did: counts only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    files: int = Field(description="Event logs read.")
    events_read: int = Field(description="Event lines read from them.")
    distinct_events: int = Field(description="Distinct events among them (by content digest).")
    added: int = Field(description="Events the archive did not hold, now archived.")
    already_archived: int = Field(description="Events the archive held already: nothing was added for them.")
    retention_extended: int = Field(
        description="Events already archived whose retain_until this load's retention lengthened."
    )

    def describe(self) -> str:
        """One line for a terminal."""
        text = (
            f"archived {self.added} new event(s) of {self.events_read} read from {self.files} log(s); "
            f"{self.already_archived} already in the archive, nothing added for them"
        )
        if self.retention_extended:
            text += f"; retention lengthened for {self.retention_extended}"
        return text


class LineageArchive:
    """An archive of OpenLineage events in a PostgreSQL table, and the audit's event source over it.

    :param url: a SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host:5432/db``; a ``postgresql://`` URL
        is used through psycopg 3. A password in it is used, never shown.
    :param table: the archive table, ``schema.table`` or ``table`` (in ``public``), lower-case letters,
        digits and underscores.
    :raises LineageArchiveError: the URL is not a PostgreSQL URL SQLAlchemy can use, or the table name is
        not one this archive accepts.
    """

    def __init__(self, url: str, table: str = DEFAULT_ARCHIVE_TABLE) -> None:
        import sqlalchemy as sa

        from airflow_phi_guard.sql import open_database, redact_url

        schema, name = _table_name(table, redact_url(url))
        self.display_name = f"{redact_url(url)} table {schema}.{name}"
        problem = None
        try:
            # JSONB, arrays and GIN indexes: PostgreSQL only, through psycopg whatever driver the URL names.
            self._engine, _ = open_database(url, backends=("postgresql",), driver="psycopg")
        except ValueError as error:
            problem = str(error)
        if problem is not None:
            raise LineageArchiveError(self.display_name, problem)
        self._metadata = sa.MetaData()
        self.table = _archive_table(self._metadata, schema, name)

    def __enter__(self) -> LineageArchive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the archive's database connections."""
        self._engine.dispose()

    def load(
        self, paths: Sequence[str | os.PathLike[str]], *, retention_years: int = HIPAA_RETENTION_YEARS
    ) -> LoadSummary:
        """Archive every event of the logs, in one transaction: all of them or none.

        Creates the schema, the table and its indexes when they do not exist. An event already archived
        is not added again; its ``retain_until`` is lengthened when this load's is later, never shortened.

        :param paths: the event logs (JSON lines).
        :param retention_years: years to keep each event from its date; at least six.
        :raises EventLogError: a log is unreadable or a line is not a JSON object PostgreSQL can store,
            named by its number; nothing was loaded.
        :raises LineageArchiveError: the retention is under six years, or the database refused the load.
        :raises LineageArchiveUnavailableError: the database cannot be reached.
        """
        import sqlalchemy as sa
        from sqlalchemy.dialects import postgresql

        if isinstance(retention_years, bool) or not isinstance(retention_years, int):
            raise LineageArchiveError(self.display_name, "the retention must be a whole number of years")
        if retention_years < HIPAA_RETENTION_YEARS:
            raise LineageArchiveError(
                self.display_name,
                f"a retention of {retention_years} year(s) is shorter than the six years HIPAA asks for "
                "documentation (45 CFR 164.530(j)(2)); give at least 6",
            )
        archived_at = datetime.now(UTC)
        staging = _staging_table()
        table = self.table

        with self._transaction() as connection:
            self._create(connection)
            staging.create(connection)
            read = self._copy(connection, staging, paths, retention_years, archived_at)
            distinct = connection.execute(
                sa.select(sa.func.count(sa.distinct(staging.c.digest)))
            ).scalar_one()
            with _through_indexes(connection):
                self._mark_readers_of_archived(connection, staging)

            # One row per digest (a log may hold an event twice); the longest retention among them wins.
            rows = (
                sa.select(*staging.columns)
                .ext(postgresql.distinct_on(staging.c.digest))
                .order_by(staging.c.digest, staging.c.retain_until.desc())
            )
            insert = postgresql.insert(table).from_select([column.name for column in staging.columns], rows)
            insert = insert.on_conflict_do_update(
                index_elements=[table.c.digest],
                set_={"retain_until": insert.excluded.retain_until},
                where=table.c.retain_until < insert.excluded.retain_until,
            ).returning(sa.literal_column("(xmax = 0)").label("added"))
            changed = insert.cte("changed")
            added, extended = connection.execute(
                sa.select(
                    sa.func.count().filter(changed.c.added),
                    sa.func.count().filter(sa.not_(changed.c.added)),
                )
            ).one()
            with _through_indexes(connection):
                self._mark_readers_of_loaded(connection, staging)

        summary = LoadSummary(
            files=len(paths),
            events_read=read,
            distinct_events=distinct,
            added=added,
            already_archived=distinct - added,
            retention_extended=extended,
        )
        log.info(
            "archived %d new event(s) of %d read from %d log(s) into %s; %d already archived",
            summary.added,
            summary.events_read,
            summary.files,
            self.display_name,
            summary.already_archived,
        )
        return summary

    def _mark_readers_of_archived(self, connection: sa.Connection, staging: sa.Table) -> None:
        """Flag the staged events that read what an archived governance event wrote (one index probe each)."""
        import sqlalchemy as sa

        governed = self.table.alias("governed")
        writer = sa.exists().where(
            governed.c.governance & governed.c.output_datasets.overlap(staging.c.input_datasets)
        )
        connection.execute(
            sa.update(staging)
            .where(sa.func.cardinality(staging.c.input_datasets) > 0, writer)
            .values(reads_governed=True)
        )

    def _mark_readers_of_loaded(self, connection: sa.Connection, staging: sa.Table) -> None:
        """Flag the archived events, earlier ones and this load's, that read what this load's governance
        events wrote."""
        import sqlalchemy as sa

        written = sa.select(sa.func.unnest(staging.c.output_datasets).label("name")).where(
            staging.c.governance
        )
        names = sorted(set(connection.execute(written).scalars()))
        if not names:
            return
        marked = connection.execute(
            sa.update(self.table)
            .where(sa.not_(self.table.c.reads_governed), self.table.c.input_datasets.overlap(names))
            .values(reads_governed=True)
        ).rowcount
        log.debug("%d archived event(s) read what this load's governance events wrote", marked)

    def events_for(self, query: AuditQuery) -> list[dict[str, Any]]:
        """The archived events an audit query needs, selected through the indexes.

        - a model: its governance events, then the closing (COMPLETE or FAIL) events that read their
          outputs, whether they wrote something (a training run) or nothing (a validation run, which the
          datasheet reports; the audit itself lists only readers that wrote something);
        - a source column: the governance events that read its dataset, the COMPLETE events that read
          their outputs, and the other governance events that wrote those outputs (a consumer is
          attributed to the latest of them);
        - a window: the governance events in it, the COMPLETE events in it that read a governed set
          (``reads_governed``) and wrote something, and the governance events that wrote what those read;
        - every model: every governance event and the closing events that read their outputs.

        :param query: the audit's question.
        :raises LineageArchiveError: the table is missing or may not be read.
        :raises LineageArchiveUnavailableError: the database cannot be reached.
        """
        import sqlalchemy as sa

        table = self.table
        consumer = (table.c.event_type == "COMPLETE") & (sa.func.cardinality(table.c.output_datasets) > 0)
        found: dict[str, Any] = {}
        with self._transaction() as connection, _through_indexes(connection):

            def fetch(condition: Any) -> list[Any]:
                statement = sa.select(
                    table.c.digest,
                    table.c.event,
                    table.c.event_time,
                    table.c.input_datasets,
                    table.c.output_datasets,
                )
                rows = connection.execute(statement.where(condition)).all()
                for row in rows:
                    found.setdefault(row.digest, row)
                return rows

            def readers_of(rows: Sequence[Any], *, also_writing_nothing: bool = False) -> list[Any]:
                outputs = sorted({name for row in rows for name in row.output_datasets})
                if not outputs:
                    return []
                reader = table.c.event_type.in_(("COMPLETE", "FAIL")) if also_writing_nothing else consumer
                return fetch(reader & table.c.input_datasets.overlap(outputs))

            if isinstance(query, ModelQuery):
                condition = table.c.governance & (table.c.model_name == query.name)
                if query.version is not None:
                    condition &= table.c.model_version == query.version
                readers_of(fetch(condition), also_writing_nothing=True)
            elif isinstance(query, AllModelsQuery):
                readers_of(fetch(table.c.governance), also_writing_nothing=True)
            elif isinstance(query, ColumnQuery):
                names = sorted(dataset_names(query.dataset))
                governance = fetch(table.c.governance & table.c.input_datasets.overlap(names))
                outputs = sorted({name for row in governance for name in row.output_datasets})
                if outputs:
                    fetch(table.c.governance & table.c.output_datasets.overlap(outputs))
                    readers_of(governance)
            elif isinstance(query, WindowQuery):
                window = sa.true()
                if query.since is not None:
                    window &= table.c.event_time >= query.since
                if query.until is not None:
                    window &= table.c.event_time < query.until
                # Two selects, one per partial time index; every event type of governance, so that a run
                # refused in the window is listed as the event log lists it.
                fetch(table.c.governance & window)
                readers = fetch(table.c.reads_governed & consumer & window)
                read = sorted({name for row in readers for name in row.input_datasets})
                if read:
                    fetch(table.c.governance & table.c.output_datasets.overlap(read))
            else:
                raise TypeError(f"not an audit query: {type(query).__name__}")
        log.info("read %d archived event(s) from %s for the audit", len(found), self.display_name)
        # In event time order (unreadable times last, as PostgreSQL sorts NULL), whatever select found them.
        ordered = sorted(
            found.values(), key=lambda row: (row.event_time is None, row.event_time or _EPOCH, row.digest)
        )
        return [row.event for row in ordered]

    def read_all(self) -> list[dict[str, Any]]:
        """Every archived event, in event time order (for exports and tests; an audit needs less)."""
        import sqlalchemy as sa

        statement = sa.select(self.table.c.event).order_by(self.table.c.event_time, self.table.c.digest)
        with self._transaction() as connection:
            return list(connection.execute(statement).scalars())

    def count(self) -> int:
        """How many events the archive holds."""
        import sqlalchemy as sa

        with self._transaction() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one()

    def retention(self) -> dict[str, date]:
        """Each archived event's ``retain_until``, by content digest (the digests are no data)."""
        import sqlalchemy as sa

        statement = sa.select(self.table.c.digest, self.table.c.retain_until)
        with self._transaction() as connection:
            return {row.digest: row.retain_until for row in connection.execute(statement)}

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A connection in a transaction, with the driver's errors turned into the archive's."""
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        try:
            connection = self._engine.connect()
        except SQLAlchemyError as error:
            # A refused connection, a wrong password or database name: none carries a SQLSTATE.
            raise LineageArchiveUnavailableError(self.display_name, _cause(error)) from None
        try:
            with connection.begin():
                yield connection
        except DBAPIError as error:
            raise _statement_error(error, self.display_name) from None
        except SQLAlchemyError as error:
            raise LineageArchiveError(
                self.display_name, f"the statement failed ({_cause(error)}; the message is withheld)"
            ) from None
        finally:
            connection.close()

    def _create(self, connection: sa.Connection) -> None:
        import sqlalchemy as sa

        schema = self.table.schema
        # Quoted by the dialect; the name was checked against a plain identifier pattern anyway.
        connection.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        self._metadata.create_all(connection, tables=[self.table], checkfirst=True)
        self._upgrade(connection)

    def _upgrade(self, connection: sa.Connection) -> None:
        """Give a table archived before ``reads_governed`` existed the column, its index and its values.

        The indexes that table has and this one does not use (over every event's time, over every event's
        outputs) stay: dropping them is the administrator's choice, not a load's.
        """
        import sqlalchemy as sa

        table = self.table
        present = {column["name"] for column in sa.inspect(connection).get_columns(table.name, table.schema)}
        if "reads_governed" in present:
            return
        connection.execute(
            sa.text(
                f'ALTER TABLE "{table.schema}"."{table.name}" '
                "ADD COLUMN reads_governed boolean NOT NULL DEFAULT false"
            )
        )
        for index in table.indexes:
            index.create(connection, checkfirst=True)
        written = sa.select(sa.func.unnest(table.c.output_datasets)).where(table.c.governance)
        names = sorted(set(connection.execute(written).scalars()))
        with _through_indexes(connection):
            if names:
                connection.execute(
                    sa.update(table).where(table.c.input_datasets.overlap(names)).values(reads_governed=True)
                )
        log.info("upgraded %s: its events now say whether they read a governed dataset", self.display_name)

    def _copy(
        self,
        connection: sa.Connection,
        staging: sa.Table,
        paths: Sequence[str | os.PathLike[str]],
        retention_years: int,
        archived_at: datetime,
    ) -> int:
        """COPY every event of the logs into the staging table; returns the events read.

        The rows' types are declared once, so that no value's dumper is looked up row by row, and a writer
        thread sends the buffered rows while the next ones are built: the server parses one batch as this
        process reads and hashes the next.
        """
        from psycopg.copy import QueuedLibpqWriter

        names = ", ".join(f'"{column.name}"' for column in staging.columns)
        driver = connection.connection.driver_connection
        read = 0
        with (
            driver.cursor() as cursor,
            cursor.copy(f'COPY "{_STAGING}" ({names}) FROM STDIN', writer=QueuedLibpqWriter(cursor)) as copy,
        ):
            copy.set_types(_COPY_TYPES)
            for path in paths:
                source_file = str(Path(path).resolve())
                for number, event in iterate_events(path):
                    copy.write_row(_row(event, source_file, number, retention_years, archived_at))
                    read += 1
        return read


@contextlib.contextmanager
def _through_indexes(connection: sa.Connection) -> Iterator[None]:
    """Plan the block's statements through the indexes, whatever the statistics say.

    Every select of the audit and every probe of a load is a lookup the indexes were made for, yet the
    planner takes ``array && '{...}'`` with a thousand names or so (or on a table loaded since its last
    ``ANALYZE``) to match much of the table, and scans it all, testing every row against every name:
    seconds over 100,000 events. With sequential scans priced out it keeps to the GIN index; a scan that has
    no alternative (the load's staging table) still runs. JIT compilation, worth it for long scans, would
    cost a lookup tens of milliseconds.
    """
    import sqlalchemy as sa

    connection.execute(sa.text("SET LOCAL enable_seqscan = off"))
    connection.execute(sa.text("SET LOCAL jit = off"))
    yield
    connection.execute(sa.text("RESET enable_seqscan"))
    connection.execute(sa.text("RESET jit"))


def _row(
    event: dict[str, Any], source_file: str, line: int, retention_years: int, archived_at: datetime
) -> tuple[Any, ...]:
    """One staging row, in the staging table's column order."""
    try:
        canonical = json.dumps(
            event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        encoded = canonical.encode("utf-8")
    except UnicodeEncodeError:
        # before ValueError, of which it is a subclass
        raise EventLogError(source_file, line, "holds text that is not valid Unicode") from None
    except ValueError:
        raise EventLogError(source_file, line, "holds NaN or Infinity, which JSON and jsonb do not") from None
    if "\\u0000" in canonical:
        raise EventLogError(source_file, line, "holds a NUL character, which PostgreSQL's jsonb cannot store")

    moment = parse_event_time(event.get("eventTime"))
    inputs, outputs = event_datasets(event)
    model = event_model(event)
    job = event.get("job") if isinstance(event.get("job"), dict) else {}
    run = event.get("run") if isinstance(event.get("run"), dict) else {}
    return (
        hashlib.sha256(encoded).hexdigest(),
        canonical,
        moment,
        _short_text(event.get("eventType")),
        _short_text(run.get("runId")),
        _short_text(job.get("namespace")),
        _short_text(job.get("name")),
        is_governance_event(event),
        model[0] if model else None,
        model[1] if model else None,
        inputs,
        outputs,
        source_file,
        archived_at,
        _retain_until((moment or archived_at).astimezone(UTC).date(), retention_years),
        False,  # reads_governed: decided by the load in SQL, against the archive
    )


def _short_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _retain_until(day: date, years: int) -> date:
    """``day`` plus whole years; 29 February becomes 1 March, so that the period is never short."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        if day.year + years > date.max.year:
            return date.max
        return date(day.year + years, 3, 1)


def _archive_table(metadata: sa.MetaData, schema: str, name: str) -> sa.Table:
    import sqlalchemy as sa
    from sqlalchemy.dialects.postgresql import ARRAY, JSONB

    return sa.Table(
        name,
        metadata,
        sa.Column("digest", sa.Text, primary_key=True),
        sa.Column("event", JSONB, nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True)),
        sa.Column("event_type", sa.Text),
        sa.Column("run_id", sa.Text),
        sa.Column("job_namespace", sa.Text),
        sa.Column("job_name", sa.Text),
        sa.Column("governance", sa.Boolean, nullable=False),
        sa.Column("model_name", sa.Text),
        sa.Column("model_version", sa.Text),
        sa.Column("input_datasets", ARRAY(sa.Text), nullable=False),
        sa.Column("output_datasets", ARRAY(sa.Text), nullable=False),
        sa.Column("source_file", sa.Text, nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retain_until", sa.Date, nullable=False),
        # Last, so that a staging row is the event's fields plus this flag, which the load decides in SQL.
        sa.Column("reads_governed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Index(f"{name}_model", "model_name", "model_version"),
        sa.Index(f"{name}_run_id", "run_id"),
        # Partial: a window's audit reads governance events and the readers of governed sets in the window,
        # and an index over every event's time would lead it through all the others too.
        sa.Index(f"{name}_governance_time", "event_time", postgresql_where=sa.text("governance")),
        sa.Index(f"{name}_reader_time", "event_time", postgresql_where=sa.text("reads_governed")),
        # Without fastupdate: a bulk load's entries would wait in GIN's pending list, which every query
        # scans linearly until a vacuum, so an audit right after a large load would cost the load's size.
        sa.Index(
            f"{name}_inputs", "input_datasets", postgresql_using="gin", postgresql_with={"fastupdate": "off"}
        ),
        # Only governance events' outputs are ever looked up (what a governance run wrote).
        sa.Index(
            f"{name}_governed_outputs",
            "output_datasets",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
            postgresql_where=sa.text("governance"),
        ),
        sa.Index(f"{name}_retain_until", "retain_until"),
        schema=schema,
    )


def _staging_table() -> sa.Table:
    """The load's temporary table: the archive's columns, no key, dropped at commit."""
    import sqlalchemy as sa

    columns = _archive_table(sa.MetaData(), "unused", "unused").columns
    return sa.Table(
        _STAGING,
        sa.MetaData(),
        *(sa.Column(column.name, column.type) for column in columns),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )


def _table_name(table: str, shown_url: str) -> tuple[str, str]:
    parts = table.split(".")
    if len(parts) == 1:
        parts = ["public", *parts]
    if len(parts) != 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise LineageArchiveError(
            f"{shown_url} table {table}",
            "the archive table must be table or schema.table of lower-case letters, digits and "
            "underscores, each at most 48 characters",
        )
    return parts[0], parts[1]


def _statement_error(error: Any, archive: str) -> LineageArchiveError:
    """The archive's error for a statement the database refused; the driver's message is never used."""
    original = getattr(error, "orig", None) or error
    state = getattr(original, "sqlstate", None)
    state = state if isinstance(state, str) else None
    if getattr(error, "connection_invalidated", False) or (state and state[:2] in _UNAVAILABLE_STATE_CLASSES):
        return LineageArchiveUnavailableError(archive, _cause(error))
    if state in _STATE_PROBLEMS:
        return LineageArchiveError(archive, _STATE_PROBLEMS[state])
    return LineageArchiveError(
        archive,
        f"the database refused a statement ({_cause(error)}, SQLSTATE {state or 'unknown'}; its message is "
        "withheld because it may quote events); nothing was loaded",
    )


def _cause(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    return type(original).__name__
