"""A recipient registry read from a SQL table, through a SQLAlchemy URL or any DB-API connection."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from airflow_phi_guard.exceptions import (
    RecipientRegistryError,
    RecipientRegistryUnavailableError,
    name_some,
)
from airflow_phi_guard.recipients.models import (
    INFERENCE,
    Recipient,
    RecipientRegistry,
)
from airflow_phi_guard.sql import (
    DatabaseLocation,
    close_quietly,
    connected,
    open_database,
    quoted_table,
    redact_url,
    statement_error,
    table_parts,
)

log = logging.getLogger(__name__)

#: The agreement's columns, by the model's field names (``baa_<field>``).
BAA_FIELDS = ("id", "signed", "effective", "expires", "permitted_uses", "data")
#: The sale authorization's columns, by the model's field names (``sale_authorization_<field>``).
SALE_AUTHORIZATION_FIELDS = ("id", "recorded", "expires")

#: Every column a recipient registry table has, in the order of the reference above.
RECIPIENT_COLUMNS = (
    "recipient_id",
    "name",
    "destinations",
    "region",
    "sale_of_phi",
    *(f"baa_{name}" for name in BAA_FIELDS),
    *(f"sale_authorization_{name}" for name in SALE_AUTHORIZATION_FIELDS),
)

_LIST_COLUMNS = frozenset({"destinations", "baa_permitted_uses"})

#: What a pydantic error type says about a cell, in words that never repeat the cell.
_TYPE_PROBLEMS = {
    "missing": "is null",
    "string_type": "is null or not text",
    "string_too_short": "is empty",
    "too_short": "lists nothing",
    "tuple_type": "is not a list (text[] or ;-separated text)",
    "bool_type": "is null or not a boolean",
    "bool_parsing": "is not a boolean",
    "date_type": "is not a date",
    "date_parsing": "is not a date (give a date, or ISO 8601 text)",
    "date_from_datetime_parsing": "is not a date (give a date, or ISO 8601 text)",
    "date_from_datetime_inexact": "is a timestamp with a time of day; give a date",
    "enum": "is not one of phi, deidentified-only",
}


@dataclass(frozen=True)
class SqlRecipientSource:
    """A recipient registry in a SQL table, read through a DB-API connection.

    One row per recipient, validated into the same :class:`~airflow_phi_guard.recipients.models.
    RecipientRegistry` as the YAML file, under the same rules. The table's columns (every one is required;
    other columns are ignored), with the PostgreSQL types read:

    ================================  ============================  ==================================
    column                            type                          holds
    ================================  ============================  ==================================
    ``recipient_id``                  ``text``, not null, unique    the id a policy's ``recipient`` names
    ``name``                          ``text``, not null            who the recipient is
    ``destinations``                  ``text[]`` (or ``text``,      URI prefixes it owns
                                      ``;``-separated)
    ``region``                        ``text``, not null            where it keeps the data
    ``sale_of_phi``                   ``boolean``, not null         whether the flow is a sale of PHI
    ``baa_id``                        ``text``                      the agreement's id; null: no BAA
    ``baa_signed``                    ``date``                      when it was signed
    ``baa_effective``                 ``date``                      first day it holds
    ``baa_expires``                   ``date``                      first day it no longer holds
    ``baa_permitted_uses``            ``text[]`` (or ``text``,      model-training, inference...
                                      ``;``-separated)
    ``baa_data``                      ``text``                      ``phi`` or ``deidentified-only``
    ``sale_authorization_id``         ``text``                      the sale's authorization; null: none
    ``sale_authorization_recorded``   ``date``                      when it was recorded
    ``sale_authorization_expires``    ``date``                      first day it no longer holds; null:
                                                                    without end
    ================================  ============================  ==================================

    The ``baa_*`` columns are all null (no agreement) or all set; the ``sale_authorization_*`` columns all
    null (none recorded) or all set, but ``sale_authorization_expires`` may be null. Dates may also be ISO
    8601 ``text``; a ``timestamp`` is refused unless its time is midnight. No SQL text is built from values:
    the table name is checked against a plain identifier pattern and quoted.

    :param connect: opens a DB-API 2.0 connection, e.g. an Airflow hook's ``get_conn`` or a SQLAlchemy
        engine's ``raw_connection``; the source closes it after reading.
    :param location: the database, for the registry's name.
    :param table: the registry table, ``table`` or ``schema.table``, each a plain identifier used as
        written (quoted, so case counts).
    :param on_close: called after reading, e.g. to dispose of a SQLAlchemy engine.
    :raises RecipientRegistryError: the table name is not plain.
    """

    connect: Callable[[], Any] = field(repr=False)
    location: DatabaseLocation
    table: str
    on_close: Callable[[], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if table_parts(self.table) is None:
            raise RecipientRegistryError(
                f"{self.location.namespace}/{self.location.database}",
                None,
                None,
                "the table name is not table or schema.table of letters, digits and underscores",
            )

    @property
    def dataset_name(self) -> str:
        """The OpenLineage dataset name: ``database.schema.table``."""
        schema, name = table_parts(self.table) or ("", self.table)
        return f"{self.location.database}.{schema}.{name}"

    @property
    def display_name(self) -> str:
        """The registry as one URI, the OpenLineage naming of a database table,
        ``{scheme}://{host}:{port}/{database}.{schema}.{table}``; never a password."""
        return f"{self.location.namespace}/{self.dataset_name}"

    def read(self) -> RecipientRegistry:
        """Read the whole table and validate it.

        A malformed row refuses the whole registry, naming the columns at fault and how many rows, never a
        value; no error quotes the driver, whose messages carry statements and rows.

        :raises RecipientRegistryUnavailableError: the database cannot be reached.
        :raises RecipientRegistryError: the table, a column or the permission to read is missing, or the
            registry is empty or malformed.
        """
        source = self.display_name
        with connected(self.connect, source, RecipientRegistryUnavailableError, self.on_close) as connection:
            rows = self._fetch(connection, source)

        registry = registry_from_rows(rows, source)
        log.info("read %d recipient(s) from %s", len(registry.recipients), source)
        return registry

    def _fetch(self, connection: Any, source: str) -> list[dict[str, Any]]:
        quoted = quoted_table(self.table)
        cursor = connection.cursor()
        try:
            try:
                cursor.execute(f"SELECT * FROM {quoted} WHERE 1 = 0")
                present = {column[0] for column in cursor.description or ()}
                missing = [name for name in RECIPIENT_COLUMNS if name not in present]
                if missing:
                    raise RecipientRegistryError(
                        source,
                        None,
                        None,
                        f"the table lacks the required column(s) {name_some(missing)}; a recipient registry "
                        f"table has the columns {', '.join(RECIPIENT_COLUMNS)}",
                    )
                selected = ", ".join(f'"{name}"' for name in RECIPIENT_COLUMNS)
                cursor.execute(f"SELECT {selected} FROM {quoted}")
                # A registry lists the covered entity's recipients: tens or hundreds of rows, read whole.
                return [dict(zip(RECIPIENT_COLUMNS, row, strict=True)) for row in cursor.fetchall()]
            except (RecipientRegistryError, RecipientRegistryUnavailableError):
                raise
            except Exception as error:
                raise _statement_error(error, source) from None
        finally:
            close_quietly(cursor)


def sql_recipient_source(url: str, *, table: str) -> SqlRecipientSource:
    """A registry in the database a SQLAlchemy URL names, e.g. ``postgresql+psycopg://user@host:5432/db``.

    :param url: the SQLAlchemy URL; a password in it is used but never shown.
    :param table: the registry table, ``table`` or ``schema.table``.
    :raises RecipientRegistryError: the URL cannot be parsed or its driver is not installed, or the table
        name is not plain.
    """
    try:
        engine, location = open_database(url)
    except ValueError as error:
        raise RecipientRegistryError(redact_url(url), None, None, str(error)) from None
    return SqlRecipientSource(
        connect=engine.raw_connection, location=location, table=table, on_close=engine.dispose
    )


def read_recipient_registry(
    location: str | os.PathLike[str], *, table: str | None = None
) -> RecipientRegistry:
    """Read a registry from where a user names it: a YAML file, or a table of a database URL.

    :param location: a YAML file's path, or a SQLAlchemy URL (which needs ``table``).
    :param table: the registry table of a database URL, ``table`` or ``schema.table``.
    :raises RecipientRegistryError: the registry is unusable, a database URL has no table or a file has one.
    :raises RecipientRegistryUnavailableError: the database cannot be reached.
    """
    from airflow_phi_guard.recipients.registry import load_recipient_registry

    text = os.fspath(location)
    # A YAML registry is a local file: any URL is a database's, and one of an unknown dialect is refused
    # as such (its password withheld) rather than looked for as a file.
    if "://" in text:
        if not table:
            raise RecipientRegistryError(
                redact_url(text), None, None, "a database registry needs its table (--recipients-table)"
            )
        return sql_recipient_source(text, table=table).read()
    if table:
        raise RecipientRegistryError(
            text, None, None, "a table is read from a database URL, not from a YAML file; give one or other"
        )
    return load_recipient_registry(text)


def registry_from_rows(rows: Sequence[Mapping[str, Any]], source: str) -> RecipientRegistry:
    """Validate the rows of a registry table, one recipient each, into a registry.

    :param rows: each row's cells by column name (:data:`RECIPIENT_COLUMNS`).
    :param source: how errors name the registry.
    :raises RecipientRegistryError: the table is empty, or rows are malformed (columns and counts named,
        never a value), or a destination prefix is listed by two recipients.
    """
    if not rows:
        raise RecipientRegistryError(
            source, None, None, "the table holds no recipient; check that it names the right table"
        )

    problems: Counter[str] = Counter()
    malformed = 0
    recipients: dict[str, Recipient] = {}
    ids = Counter(_id(row.get("recipient_id")) for row in rows)
    for row in rows:
        recipient_id = _id(row.get("recipient_id"))
        found = _row_problems(row, recipient_id, ids)
        recipient = None
        try:
            recipient = Recipient.model_validate(_recipient_data(row))
        except ValidationError as error:
            found |= {_describe(detail) for detail in error.errors()}
        if found:
            malformed += 1
            problems.update(found)
        elif recipient_id is not None and recipient is not None:
            recipients[recipient_id] = recipient
    if problems:
        described = [f"{problem} ({count} row(s))" for problem, count in sorted(problems.items())]
        raise RecipientRegistryError(
            source,
            None,
            None,
            f"{malformed} of {len(rows)} row(s) are malformed: {name_some(described)}; correct them, the "
            "registry is used whole or not at all",
        )

    try:
        return RecipientRegistry(recipients=recipients)
    except ValidationError:
        shared = _shared_prefixes(recipients)
        raise RecipientRegistryError(
            source,
            "destinations",
            None,
            f"{shared} destination prefix(es) are each listed by more than one recipient; give each to one",
        ) from None


def _id(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _row_problems(row: Mapping[str, Any], recipient_id: str | None, ids: Counter[str | None]) -> set[str]:
    """What is wrong with a row before the model judges it: its id, and half-given agreements."""
    found = set()
    if recipient_id is None:
        found.add("recipient_id is null, empty or not text")
    elif ids[recipient_id] > 1:
        found.add("recipient_id occurs on more than one row")
    for prefix, fields in (("baa", BAA_FIELDS), ("sale_authorization", SALE_AUTHORIZATION_FIELDS)):
        others = any(row.get(f"{prefix}_{name}") is not None for name in fields)
        if row.get(f"{prefix}_id") is None and others:
            found.add(f"{prefix}_id is null while other {prefix}_ columns are set: give all or none")
    return found


def _recipient_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row as the model's fields; every required cell is passed, null or not, so none defaults."""
    data: dict[str, Any] = {
        "name": row.get("name"),
        "destinations": _listed(row.get("destinations")),
        "region": row.get("region"),
        "sale_of_phi": row.get("sale_of_phi"),
    }
    for prefix, fields in (("baa", BAA_FIELDS), ("sale_authorization", SALE_AUTHORIZATION_FIELDS)):
        if row.get(f"{prefix}_id") is not None:
            # A null cell is left out, so that the model names the column as missing.
            cells = {name: row.get(f"{prefix}_{name}") for name in fields}
            data[prefix] = {
                name: _listed(cell) if f"{prefix}_{name}" in _LIST_COLUMNS else cell
                for name, cell in cells.items()
                if cell is not None
            }
    return data


def _listed(value: Any) -> Any:
    """A ``text[]`` as a tuple; ``;``-separated text as its parts; anything else as it is, for the model."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(";") if part.strip())
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


def _describe(detail: Mapping[str, Any]) -> str:
    """One pydantic error as ``column: problem``, from its location and type only, never its input."""
    location = tuple(str(part) for part in detail["loc"] if not isinstance(part, int))
    kind = detail["type"]
    if location == ():
        return "sale_authorization_id is set on a row whose sale_of_phi is false"
    if location == ("baa",):
        return "baa_signed, baa_effective, baa_expires are out of order (signed <= effective < expires)"
    if location == ("sale_authorization",):
        return "sale_authorization_recorded, sale_authorization_expires are out of order"
    column = "_".join(location)
    if kind == "value_error" and column == "destinations":
        return "destinations lists a prefix with '.' or '..' segments; give it resolved"
    if kind == "value_error" and column == "baa_permitted_uses":
        return f"baa_permitted_uses lists a use outside the vocabulary (a purpose, or {INFERENCE})"
    return f"{column} {_TYPE_PROBLEMS.get(kind, f'is not valid ({kind})')}"


def _shared_prefixes(recipients: Mapping[str, Recipient]) -> int:
    owners: dict[object, set[str]] = {}
    for recipient_id, recipient in recipients.items():
        for prefix in recipient.prefixes:
            owners.setdefault(prefix, set()).add(recipient_id)
    return sum(1 for ids in owners.values() if len(ids) > 1)


def _statement_error(error: BaseException, source: str) -> Exception:
    """The refusal or retryable failure a driver's error stands for; its message is never used."""
    return statement_error(
        error,
        source,
        refuse=lambda problem: RecipientRegistryError(source, None, None, problem),
        unavailable=RecipientRegistryUnavailableError,
    )
