"""Open a database by SQLAlchemy URL and read its errors, never showing a password or a driver message."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: OpenLineage's scheme and default port per SQLAlchemy backend (https://openlineage.io/docs/spec/naming).
LINEAGE_SCHEMES = {"postgresql": ("postgres", 5432), "mysql": ("mysql", 3306), "mariadb": ("mysql", 3306)}

#: The schema a PostgreSQL table without one is named in. A connection whose search_path puts another
#: schema first reads the table from there while lineage names it in public: give ``schema.table`` to
#: name it exactly.
DEFAULT_SCHEMA = "public"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")

# SQLSTATE classes of a database that is not there right now: connection exception, operator intervention
# (shutdown, cancel, statement timeout), insufficient resources, transaction rollback (serialization,
# deadlock). A retry may heal them; every other failure of a statement is the caller's to refuse.
_UNAVAILABLE_STATE_CLASSES = ("08", "57", "53", "40")

#: What a SQLSTATE of a failed read of a table means, in words a message may show.
TABLE_STATE_PROBLEMS = {
    "42P01": "its table does not exist or is not visible to the connection's user; check the table name "
    "(schema.table) and the search path",
    "3F000": "its schema does not exist; check the table name (schema.table)",
    "42703": "a column does not exist; check the table's columns",
    "42501": "the connection's user may not read it; grant SELECT on the table",
}


@dataclass(frozen=True)
class DatabaseLocation:
    """Where a database is, as OpenLineage names it: ``scheme://authority`` and the database's name.

    :param scheme: the OpenLineage scheme, e.g. ``postgres``.
    :param authority: ``host:port``.
    :param database: the database's name.
    """

    scheme: str
    authority: str
    database: str

    @property
    def namespace(self) -> str:
        """The OpenLineage namespace of the database's datasets, e.g. ``postgres://127.0.0.1:5432``."""
        return f"{self.scheme}://{self.authority}"


def open_database(
    url: str, *, backends: tuple[str, ...] | None = None, driver: str | None = None
) -> tuple[Any, DatabaseLocation]:
    """A SQLAlchemy engine for a URL, without a pool, and the database's location for names and lineage.

    No connection is opened here: an unreachable server shows only when the engine is first used. SQLAlchemy
    is imported here only, and its messages are never shown, since some repeat the URL, password included.

    :param url: e.g. ``postgresql+psycopg://user@host:5432/db``; a password in it is used, never shown.
    :param backends: the backends the caller can use (e.g. ``("postgresql",)``); any, when None.
    :param driver: the DB-API driver to use whatever driver the URL names, e.g. ``psycopg``.
    :raises ValueError: the URL cannot be parsed, names another backend than ``backends``, or its driver is
        not installed; the message names the error's class and the URL without its password, never
        SQLAlchemy's message (which repeats it).
    """
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = redact_url(url)
    problem = None
    try:
        parsed = sqlalchemy.engine.make_url(url)
        backend = parsed.get_backend_name()
        if backends is not None and backend not in backends:
            problem = f"{shown} names the {backend} backend; use {' or '.join(backends)}"
        else:
            if driver is not None:
                parsed = parsed.set(drivername=f"{backend}+{driver}")
            engine = sqlalchemy.create_engine(parsed, poolclass=sqlalchemy.pool.NullPool)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as error:
        problem = (
            f"{shown} is not a usable SQLAlchemy URL ({type(error).__name__}); use e.g. "
            "postgresql+psycopg://user@host:5432/database and install the driver it names"
        )
    if problem is not None:
        # Raised outside the handler, so that not even the suppressed context holds SQLAlchemy's error.
        raise ValueError(problem)
    scheme, default_port = LINEAGE_SCHEMES.get(backend, (backend, None))
    host = parsed.host or "localhost"
    port = parsed.port or default_port
    location = DatabaseLocation(
        scheme=scheme, authority=f"{host}:{port}" if port else host, database=parsed.database or ""
    )
    return engine, location


def redact_url(url: str) -> str:
    """A URL fit to be shown: its password replaced by ``***`` and its query and fragment dropped.

    Any text with ``://`` is treated so, whatever its scheme: a URL whose dialect is unknown is the very
    one an error message shows. SQLAlchemy reads a password up to the first ``@`` and lets it hold ``/``,
    ``?`` and ``#``, which a URL parser would take for the path, query or fragment; so the user part runs
    here to the last ``@``, and a URL with ``@`` in its path shows less of it, never more of a password.
    Text without ``://`` (a file's path) is returned as it is.

    :param url: a database URL.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    user_info, at, location = rest.rpartition("@")
    for mark in "?#":
        location = location.partition(mark)[0]
    if not at:
        return f"{scheme}://{location}"
    user, colon, _ = user_info.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{location}"


def table_parts(table: str) -> tuple[str, str] | None:
    """The schema (defaulted) and name of ``table`` or ``schema.table``, or None when either part is not a
    plain identifier of letters, digits and underscores, so that the name can be quoted safely.

    :param table: the table name as the user gave it.
    """
    parts = table.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        return None
    return (DEFAULT_SCHEMA, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def quoted_table(table: str) -> str | None:
    """``"schema"."table"`` (or ``"table"`` when no schema was given), as written, or None when not plain.

    :param table: the table name as the user gave it.
    """
    parts = table.split(".")
    if table_parts(table) is None:
        return None
    return ".".join(f'"{part}"' for part in parts)


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a driver's error (psycopg 3 ``sqlstate``, psycopg2 ``pgcode``), also when wrapped.

    :param error: the driver's error, or SQLAlchemy's wrapper of it (``.orig``).
    """
    original = getattr(error, "orig", None) or error
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return state if isinstance(state, str) else None


def error_cause(error: BaseException) -> str:
    """The class name of the underlying error: what a message may say about it.

    :param error: the driver's error, or SQLAlchemy's wrapper of it.
    """
    original = getattr(error, "orig", None) or error
    return type(original).__name__


def is_unavailable(error: BaseException) -> bool:
    """Whether a failure is the database's not being there right now, which a retry may heal.

    A SQLSTATE decides when there is one; without one (sqlite3, some drivers' lost connections) the PEP 249
    class does: ``OperationalError`` and ``InterfaceError`` are retried.

    :param error: the driver's error, or SQLAlchemy's wrapper of it.
    """
    state = sqlstate(error)
    if state:
        return state[:2] in _UNAVAILABLE_STATE_CLASSES
    kinds = {cls.__name__ for cls in type(getattr(error, "orig", None) or error).__mro__}
    return bool(kinds & {"OperationalError", "InterfaceError"})


def close_quietly(resource: Any) -> None:
    """Close a connection or cursor; a failure to close decides nothing, the first error is the one told.

    :param resource: anything with ``close()``.
    """
    try:
        resource.close()
    except Exception as error:
        log.debug("closing a database resource failed: %s", type(error).__name__)


@contextmanager
def connected(
    connect: Callable[[], Any],
    source: str,
    unavailable: Callable[[str, str], Exception],
    on_close: Callable[[], None] | None = None,
) -> Iterator[Any]:
    """A DB-API connection for the block: closed when it ends, and then ``on_close`` called, whatever
    happened.

    A failure to connect carries no SQLSTATE, so it counts as a database that is not there right now: a
    wrong database name or password is then retried like a server that is down, which only delays the
    failure.

    :param connect: opens the connection, e.g. an Airflow hook's ``get_conn`` or a SQLAlchemy engine's
        ``raw_connection``.
    :param source: how errors name the database's table.
    :param unavailable: builds the caller's retryable error from ``source`` and the cause's class name.
    :param on_close: called last, e.g. to dispose of a SQLAlchemy engine.
    :raises Exception: ``unavailable(source, cause)`` when the connection cannot be opened; the driver's
        message is dropped.
    """
    try:
        try:
            connection = connect()
        except Exception as error:
            raise unavailable(source, error_cause(error)) from None
        try:
            yield connection
        finally:
            close_quietly(connection)
    finally:
        if on_close is not None:
            on_close()


def statement_error(
    error: BaseException,
    source: str,
    *,
    refuse: Callable[[str], Exception],
    unavailable: Callable[[str, str], Exception],
    problems: Mapping[str, str] = TABLE_STATE_PROBLEMS,
    check: str = "the table",
) -> Exception:
    """The refusal or retryable failure a driver's error stands for; its message is never used, since
    drivers quote statements, parameters and rows in it.

    A SQLSTATE of ``problems`` says what to fix; one of a database that is not there right now (or, without
    a SQLSTATE, an ``OperationalError``: sqlite3 reports a missing table so, and is then retried in vain) is
    retryable; anything else is refused with the cause's class name only.

    :param error: the driver's error, or SQLAlchemy's wrapper of it.
    :param source: how errors name the database's table.
    :param refuse: builds the caller's refusal from the end of a message (``cannot be read ...``).
    :param unavailable: builds the caller's retryable error from ``source`` and the cause's class name.
    :param problems: what each known SQLSTATE means, in words a message may show.
    :param check: what the user should check when the SQLSTATE is not known, e.g. ``the table or query``.
    """
    state = sqlstate(error)
    if state in problems:
        return refuse(f"cannot be read: {problems[state]}")
    if is_unavailable(error):
        return unavailable(source, error_cause(error))
    return refuse(
        f"cannot be read ({error_cause(error)}); check {check}, the driver's message is withheld because it "
        "may quote rows"
    )
