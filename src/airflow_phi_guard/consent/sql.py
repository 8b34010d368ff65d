"""A consent registry read from a SQL table or query, through a SQLAlchemy URL or any DB-API connection."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from airflow_phi_guard.consent.registry import REGISTRY_COLUMNS, ConsentRegistry, registry_from_table
from airflow_phi_guard.consent.sources import refuse_empty, split_purposes
from airflow_phi_guard.exceptions import ConsentRegistryError, ConsentRegistryUnavailableError
from airflow_phi_guard.sql import (
    TABLE_STATE_PROBLEMS,
    DatabaseLocation,
    close_quietly,
    connected,
    open_database,
    quoted_table,
    statement_error,
    table_parts,
)

log = logging.getLogger(__name__)

#: Rows fetched from the database per round trip; bounds the Python objects alive at once.
DEFAULT_BATCH_ROWS = 50_000

# Known shortcoming: DB-API drivers hand over rows as Python objects, so reading costs about 10 s per
# million registry rows here (psycopg 3, half of it the driver's own row building), about two minutes for
# the 10 million. An ADBC driver (adbc-driver-postgresql) would fetch Arrow batches directly; it
# is not in the pinned set, and an Airflow connection's hook hands out a DB-API connection anyway.

#: What a SQLSTATE of a failed read means: a table's problems, and a query's.
_STATE_PROBLEMS = {
    **TABLE_STATE_PROBLEMS,
    "42703": "the query names a column that does not exist; check the query",
    "42601": "the query is not valid SQL; check the query",
}


@dataclass(frozen=True)
class SqlConsentSource:
    """A consent registry in a SQL table, or returned by a query, read through a DB-API connection.

    The rows are fetched in chunks (``cursor.fetchmany``, a server-side cursor where the driver has one) into
    Arrow arrays, without pandas, and then validated by ``registry_from_table`` under the same rules as a
    file. Only the registry's columns (``REGISTRY_COLUMNS``) are selected from a table; other columns of a
    query are ignored. Column types, as PostgreSQL returns them through psycopg:

    ======================  =========================================================================
    registry column         SQL types read
    ======================  =========================================================================
    ``subject_id``          ``text``/``varchar``, integers (compared as their decimal text), ``uuid``
    ``basis``, ``reference`` ``text``/``varchar`` (``uuid`` is read as its text)
    ``purposes``            ``text[]``, or ``text`` holding ``;``-separated purposes as in CSV
    dates                   ``date``; ``timestamp`` (its calendar date as written); ``timestamptz``
                            (its calendar date in the session's ``TimeZone``, which the driver
                            returns it in); ISO 8601 ``text``
    ======================  =========================================================================

    Anything else (``numeric`` ids, integer dates, a column mixing types) is refused as a wrong type, with the
    column's name and never a value. No SQL text is built from values: a table name is checked against a
    plain identifier pattern and quoted, and a query is run as the caller wrote it.

    :param connect: opens a DB-API 2.0 connection, e.g. an Airflow hook's ``get_conn`` or a SQLAlchemy
        engine's ``raw_connection``; the source closes it after reading.
    :param location: the database, for the registry's name.
    :param table: the registry table, ``table`` or ``schema.table``, each a plain identifier used as
        written (quoted, so case counts).
    :param query: instead of a table, a query that returns the registry's columns by name.
    :param batch_rows: rows fetched per round trip.
    :param on_close: called after reading, e.g. to dispose of a SQLAlchemy engine.
    """

    connect: Callable[[], Any] = field(repr=False)
    location: DatabaseLocation
    table: str | None = None
    query: str | None = field(default=None, repr=False)
    batch_rows: int = DEFAULT_BATCH_ROWS
    on_close: Callable[[], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise ConsentRegistryError(
                [
                    f"consent registry in {self.location.namespace}/{self.location.database} needs exactly "
                    "one of a table and a query; give --consent-table or --consent-query (consent_table or "
                    "consent_query)"
                ]
            )
        if self.table is not None:
            _table_parts(self.table, self.location)

    @property
    def schema_and_table(self) -> tuple[str, str] | None:
        """The table's schema and name, the schema defaulted; None for a query."""
        if self.table is None:
            return None
        return _table_parts(self.table, self.location)

    @property
    def dataset_name(self) -> str:
        """The OpenLineage dataset name: ``database.schema.table``, or ``database.query_{digest}``."""
        named = self.schema_and_table
        if named is not None:
            return f"{self.location.database}.{named[0]}.{named[1]}"
        digest = hashlib.sha256((self.query or "").strip().encode("utf-8")).hexdigest()[:16]
        return f"{self.location.database}.query_{digest}"

    @property
    def display_name(self) -> str:
        """The registry as one URI, the OpenLineage naming of a database table,
        ``{scheme}://{host}:{port}/{database}.{schema}.{table}``, or for a query
        ``{scheme}://{host}:{port}/{database}.query_{digest}`` with the first 16 hex digits of the query's
        SHA-256: never a password, and never the query, whose filter may name subjects."""
        return f"{self.location.namespace}/{self.dataset_name}"

    def read(self) -> ConsentRegistry:
        """Read the whole registry and validate it.

        Errors name the source and the problem, and never quote the driver, whose messages carry
        statements, parameters and rows.

        :raises ConsentRegistryUnavailableError: the database cannot be reached.
        :raises ConsentRegistryError: the table, a column or the permission to read is missing, the query
            fails, a column has the wrong type, or the registry is empty or malformed.
        """
        return refuse_empty(registry_from_table(self.read_table(), self.display_name))

    def read_table(self) -> pa.Table:
        """The registry's rows as an Arrow table with the registry's columns, before validation."""
        source = self.display_name
        with connected(self.connect, source, ConsentRegistryUnavailableError, self.on_close) as connection:
            table = self._fetch(connection, source)
        log.info("read %d consent record(s) from %s", table.num_rows, source)
        return table

    def _fetch(self, connection: Any, source: str) -> pa.Table:
        if self.table is not None:
            _table_parts(self.table, self.location)
            quoted = quoted_table(self.table)
            names = self._describe(connection, source, f"SELECT * FROM {quoted} WHERE 1 = 0")
            _require_columns(names, source)
            selected = ", ".join(f'"{name}"' for name in REGISTRY_COLUMNS)
            statement = f"SELECT {selected} FROM {quoted}"
        else:
            statement = self.query or ""
        return self._run_and_collect(connection, source, statement)

    def _describe(self, connection: Any, source: str, statement: str) -> list[str]:
        cursor = connection.cursor()
        try:
            cursor.execute(statement)
            return [column[0] for column in cursor.description or ()]
        except Exception as error:
            raise _statement_error(error, source) from None
        finally:
            close_quietly(cursor)

    def _run_and_collect(self, connection: Any, source: str, statement: str) -> pa.Table:
        cursor = _streaming_cursor(connection)
        try:
            try:
                cursor.execute(statement)
                names = [column[0] for column in cursor.description or ()]
                positions = _positions(names, source)
                chunks = [_chunk(rows, positions, source) for rows in _batches(cursor, self.batch_rows)]
            except (ConsentRegistryError, ConsentRegistryUnavailableError):
                raise
            except Exception as error:
                raise _statement_error(error, source) from None
        finally:
            close_quietly(cursor)
        return split_purposes(_concatenate(chunks, source))


def sql_consent_source(
    url: str, *, table: str | None = None, query: str | None = None, batch_rows: int = DEFAULT_BATCH_ROWS
) -> SqlConsentSource:
    """A registry in the database a SQLAlchemy URL names, e.g. ``postgresql+psycopg://user@host:5432/db``.

    :param url: the SQLAlchemy URL; a password in it is used but never shown.
    :param table: the registry table, ``table`` or ``schema.table``.
    :param query: instead of a table, a query returning the registry's columns.
    :param batch_rows: rows fetched per round trip.
    :raises ConsentRegistryError: the URL cannot be parsed, its driver is not installed, or neither or
        both of table and query are given.
    """
    try:
        engine, location = open_database(url)
    except ValueError as error:
        raise ConsentRegistryError([f"consent registry {error}"]) from None
    return SqlConsentSource(
        connect=engine.raw_connection,
        location=location,
        table=table,
        query=query,
        batch_rows=batch_rows,
        on_close=engine.dispose,
    )


def _table_parts(table: str, location: DatabaseLocation) -> tuple[str, str]:
    parts = table_parts(table)
    if parts is None:
        raise ConsentRegistryError(
            [
                f"consent registry in {location.namespace}/{location.database}: the table name is not "
                "table or schema.table of letters, digits and underscores; use a query for anything else"
            ]
        )
    return parts


def _require_columns(names: Sequence[str], source: str) -> None:
    present = {name.strip() for name in names}
    missing = [name for name in REGISTRY_COLUMNS if name not in present]
    if missing:
        raise ConsentRegistryError(
            [
                f"consent registry {source} lacks the required column(s) {', '.join(missing)}; "
                f"a registry has the columns {', '.join(REGISTRY_COLUMNS)}"
            ]
        )


def _positions(names: Sequence[str], source: str) -> list[int]:
    """Where each registry column is in the result, refusing missing and repeated ones."""
    stripped = [name.strip() for name in names]
    _require_columns(stripped, source)
    duplicated = sorted({name for name in REGISTRY_COLUMNS if stripped.count(name) > 1})
    if duplicated:
        raise ConsentRegistryError(
            [f"consent registry {source} names column(s) {', '.join(duplicated)} more than once; keep one"]
        )
    return [stripped.index(name) for name in REGISTRY_COLUMNS]


def _batches(cursor: Any, size: int) -> Iterator[Sequence[Sequence[Any]]]:
    while rows := cursor.fetchmany(size):
        yield rows


def _chunk(rows: Sequence[Sequence[Any]], positions: Sequence[int], source: str) -> pa.Table:
    """One fetched chunk as Arrow arrays, each column's type inferred from its values."""
    # Transposing in C (zip) instead of a Python loop per value: the fetch itself is then most of the time.
    columns = list(zip(*rows, strict=True))
    arrays = {}
    for name, position in zip(REGISTRY_COLUMNS, positions, strict=True):
        values = columns[position]
        try:
            array = pa.array(values)
            if getattr(array.type, "extension_name", None) == "arrow.uuid":
                # psycopg returns uuid columns as uuid.UUID; their canonical text is the id.
                array = pa.array([None if value is None else str(value) for value in values], pa.string())
        except (pa.ArrowException, TypeError, ValueError):
            # pyarrow's message quotes the value it could not convert.
            raise ConsentRegistryError(
                [
                    f"consent registry {source} has column {name} of the wrong type: its values "
                    f"({_kinds(values)}) are not one type Arrow can hold; give it one SQL type"
                ]
            ) from None
        arrays[name] = array
    return pa.table(arrays)


def _kinds(values: Sequence[Any]) -> str:
    """The Python types among a column's values, named: safe to show, unlike the values."""
    return ", ".join(sorted({type(value).__name__ for value in values if value is not None})) or "none"


def _concatenate(chunks: list[pa.Table], source: str) -> pa.Table:
    if not chunks:
        return pa.table({name: pa.nulls(0) for name in REGISTRY_COLUMNS})
    try:
        # A chunk whose column is all null has the null type; permissive promotion gives it the type of
        # the others.
        return pa.concat_tables(chunks, promote_options="permissive")
    except pa.ArrowException:
        kinds = [
            name
            for name in REGISTRY_COLUMNS
            if len({str(chunk.schema.field(name).type) for chunk in chunks}) > 1
        ]
        raise ConsentRegistryError(
            [
                f"consent registry {source} has column(s) of the wrong type: {', '.join(kinds) or 'some'} "
                "hold values of different types in different rows; give each one SQL type"
            ]
        ) from None


def _streaming_cursor(connection: Any) -> Any:
    """A server-side cursor where the driver has one (psycopg, psycopg2), so the result is not held whole."""
    try:
        return connection.cursor(name=f"phi_guard_consent_{uuid.uuid4().hex[:12]}")
    except TypeError:
        # Drivers without named cursors (sqlite3) take no name; their fetchmany still bounds the Python
        # objects, though the driver may hold the whole result.
        return connection.cursor()


def _statement_error(error: BaseException, source: str) -> Exception:
    """The refusal or retryable failure a driver's error stands for; its message is never used."""
    return statement_error(
        error,
        source,
        refuse=lambda problem: ConsentRegistryError([f"consent registry {source} {problem}"]),
        unavailable=ConsentRegistryUnavailableError,
        problems=_STATE_PROBLEMS,
        check="the table or query",
    )
