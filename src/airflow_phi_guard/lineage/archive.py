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

Indexes serve the audit's queries (:meth:`LineageArchive.events_for`): model name and version, run id,
event time, and GIN indexes on the input and output dataset arrays, so an audit reads the governance events
of its model, then the events that read their outputs, and nothing else.

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

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_STAGING = "phi_guard_archive_staging"

# SQLSTATE classes of a database that is not there right now (connection, operator intervention, resources).
_UNAVAILABLE_STATE_CLASSES = ("08", "57", "53")
_STATE_PROBLEMS = {
    "42501": "the connection's user lacks a privilege it needs (CREATE on the database or schema to set the "
    "archive up, INSERT to load, SELECT to audit); grant it",
    "3F000": "its schema does not exist; load an event log first, which creates it",
    "42P01": "its table does not exist; load an event log first, which creates it",
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
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        from airflow_phi_guard.consent.sources import redact_url

        schema, name = _table_name(table, redact_url(url))
        self.display_name = f"{redact_url(url)} table {schema}.{name}"
        try:
            parsed = sa.engine.make_url(url)
        except (ArgumentError, ValueError) as error:
            # SQLAlchemy's messages repeat the URL, password included.
            raise LineageArchiveError(
                self.display_name,
                f"not a usable SQLAlchemy URL ({type(error).__name__}); use e.g. "
                "postgresql+psycopg://user@host:5432/database",
            ) from None
        if parsed.get_backend_name() != "postgresql":
            raise LineageArchiveError(
                self.display_name,
                "the archive needs PostgreSQL (JSONB, arrays, GIN indexes); use a postgresql+psycopg:// URL",
            )
        try:
            self._engine = sa.create_engine(
                parsed.set(drivername="postgresql+psycopg"), poolclass=sa.pool.NullPool
            )
        except (ArgumentError, NoSuchModuleError, ImportError) as error:
            raise LineageArchiveError(
                self.display_name, f"cannot use the psycopg driver ({type(error).__name__}); install psycopg"
            ) from None
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

    def events_for(self, query: AuditQuery) -> list[dict[str, Any]]:
        """The archived events an audit query needs, selected through the indexes.

        - a model: its governance events, then the closing (COMPLETE or FAIL) events that read their
          outputs, whether they wrote something (a training run) or nothing (a validation run, which the
          datasheet reports; the audit itself lists only readers that wrote something);
        - a source column: the governance events that read its dataset, the COMPLETE events that read
          their outputs, and the other governance events that wrote those outputs (a consumer is
          attributed to the latest of them);
        - a window: the governance and consumer COMPLETE events in it, and the governance events that wrote
          what those consumers read;
        - every model: every governance event and the closing events that read their outputs.

        :param query: the audit's question.
        :raises LineageArchiveError: the table is missing or may not be read.
        :raises LineageArchiveUnavailableError: the database cannot be reached.
        """
        import sqlalchemy as sa

        table = self.table
        consumer = (table.c.event_type == "COMPLETE") & (sa.func.cardinality(table.c.output_datasets) > 0)
        found: dict[str, dict[str, Any]] = {}
        with self._transaction() as connection:

            def fetch(condition: Any) -> list[Any]:
                statement = sa.select(
                    table.c.digest, table.c.event, table.c.input_datasets, table.c.output_datasets
                ).where(condition)
                rows = connection.execute(statement.order_by(table.c.event_time, table.c.digest)).all()
                for row in rows:
                    found.setdefault(row.digest, row.event)
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
                condition = (table.c.event_type == "COMPLETE") & (
                    table.c.governance | (sa.func.cardinality(table.c.input_datasets) > 0) & consumer
                )
                if query.since is not None:
                    condition &= table.c.event_time >= query.since
                if query.until is not None:
                    condition &= table.c.event_time < query.until
                read = sorted({name for row in fetch(condition) for name in row.input_datasets})
                if read:
                    fetch(table.c.governance & table.c.output_datasets.overlap(read))
            else:
                raise TypeError(f"not an audit query: {type(query).__name__}")
        log.info("read %d archived event(s) from %s for the audit", len(found), self.display_name)
        return list(found.values())

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

    def _copy(
        self,
        connection: sa.Connection,
        staging: sa.Table,
        paths: Sequence[str | os.PathLike[str]],
        retention_years: int,
        archived_at: datetime,
    ) -> int:
        """COPY every event of the logs into the staging table; returns the events read."""
        names = ", ".join(f'"{column.name}"' for column in staging.columns)
        driver = connection.connection.driver_connection
        read = 0
        with driver.cursor() as cursor, cursor.copy(f'COPY "{_STAGING}" ({names}) FROM STDIN') as copy:
            for path in paths:
                source_file = str(Path(path).resolve())
                for number, event in iterate_events(path):
                    copy.write_row(_row(event, source_file, number, retention_years, archived_at))
                    read += 1
        return read


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
        sa.Index(f"{name}_model", "model_name", "model_version"),
        sa.Index(f"{name}_run_id", "run_id"),
        sa.Index(f"{name}_event_time", "event_time"),
        # Without fastupdate: a bulk load's entries would wait in GIN's pending list, which every query
        # scans linearly until a vacuum, so an audit right after a large load would cost the load's size.
        sa.Index(
            f"{name}_inputs", "input_datasets", postgresql_using="gin", postgresql_with={"fastupdate": "off"}
        ),
        sa.Index(
            f"{name}_outputs",
            "output_datasets",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
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
