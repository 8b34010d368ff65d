"""The consent registry: one validated record per permission, grouped by subject, read from CSV or Parquet.

A registry file has one row per permission with the columns ``subject_id``, ``basis``, ``purposes``,
``granted_at``, ``expires_at``, ``revoked_at`` and ``reference``; other columns are ignored. ``purposes``
is a list: ``;``-separated text in CSV, a ``list<string>`` column in Parquet.

Rules of reading, the same for every source:

- **Subject ids** are compared after trimming whitespace; integer ids in Parquet count as their decimal
  text. An empty subject id makes the registry malformed.
- **Dates** are ISO 8601 dates (``2026-12-01``) or ISO 8601 timestamps (``2026-12-01T23:30:00-05:00``).
  A timestamp counts on the calendar date written in it, as recorded: it is never converted to another
  time zone, so ``2026-12-01T23:30:00-05:00`` is 2026-12-01 although it is 2026-12-02 in UTC. Parquet
  date columns are taken as they are; a Parquet timestamp with a time zone counts on its calendar date
  in that zone. ``granted_at`` is required; an empty ``expires_at`` or ``revoked_at`` means "none". An
  ``expires_at`` or ``revoked_at`` before ``granted_at`` makes the registry malformed.
- **Purposes** are trimmed and compared exactly; a grant must list at least one. An ``opt-out`` may
  list none, since it objects to every use whatever it lists.
- In CSV every column is read as text and an empty (or blank) cell is null.

A registry that is missing, unreadable, lacks a required column or holds a malformed row is refused as a
whole with :class:`~airflow_phi_guard.exceptions.ConsentRegistryError`: a partly read registry could admit
a person whose objection sits in the row that failed. Its reasons give counts of bad rows per problem and
column names, never a subject id, a reference or any other cell value, and the pyarrow error that caused
it is not chained, because pyarrow's messages quote the offending row.

The record model and the registry are independent of the file format, so that other sources (a SQL
database, a FHIR server) build the same :class:`ConsentRegistry` from :class:`ConsentRecord` objects.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from airflow_phi_guard.arrow_types import is_text
from airflow_phi_guard.exceptions import ConsentRegistryError
from airflow_phi_guard.policy.models import ConsentBasis

#: The columns every registry has, in the order of the format.
REGISTRY_COLUMNS = ("subject_id", "basis", "purposes", "granted_at", "expires_at", "revoked_at", "reference")

#: The separator of the ``purposes`` list in CSV.
PURPOSE_SEPARATOR = ";"

_DATE_COLUMNS = ("granted_at", "expires_at", "revoked_at")
_CSV_SUFFIXES = (".csv",)
_PARQUET_SUFFIXES = (".parquet", ".pq")


class ConsentRecord(BaseModel):
    """One permission (or objection) a subject gave, as a registry row states it."""

    # Input values are hidden from validation errors: a record's values are PHI, and a pydantic
    # message printed anywhere would otherwise quote them.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    # The subject id and the reference stay out of repr(), so that logging a record cannot leak them.
    subject_id: str = Field(repr=False, description="Who the record is about, trimmed of whitespace.")
    basis: ConsentBasis = Field(description="The permission granted, or `opt-out` for an objection.")
    purposes: tuple[str, ...] = Field(
        description="The uses a grant covers, at least one; an opt-out may list none."
    )
    granted_at: date = Field(description="First day the record is in force.")
    expires_at: date | None = Field(default=None, description="First day the record is no longer in force.")
    revoked_at: date | None = Field(default=None, description="Day the record was revoked, from then on.")
    reference: str | None = Field(
        default=None, repr=False, description="Id of the document behind the record."
    )

    @field_validator("subject_id", mode="before")
    @classmethod
    def _subject_as_text(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise PydanticCustomError("subject_id_empty", "the subject id is empty")
        return value

    @field_validator("basis", mode="before")
    @classmethod
    def _basis_trimmed(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("purposes", mode="before")
    @classmethod
    def _purposes_as_list(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            items: list[object] = []
        elif isinstance(value, str):
            items = list(value.split(PURPOSE_SEPARATOR))
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            return value
        purposes: list[str] = []
        for item in items:
            if item is None:
                continue
            if not isinstance(item, str):
                raise PydanticCustomError("purposes_not_text", "a purpose is not text")
            purpose = item.strip()
            if purpose and purpose not in purposes:
                purposes.append(purpose)
        # An opt-out objects to every use, so it may list none; a grant that names no use permits none.
        if not purposes and info.data.get("basis") is not ConsentBasis.OPT_OUT:
            raise PydanticCustomError("purposes_empty", "the record lists no purpose")
        return tuple(purposes)

    @field_validator("granted_at", "expires_at", "revoked_at", mode="before")
    @classmethod
    def _calendar_date(cls, value: object) -> object:
        try:
            return parse_calendar_date(value)
        except ValueError:
            raise ValueError("not an ISO 8601 date or timestamp") from None

    @field_validator("expires_at", "revoked_at", mode="after")
    @classmethod
    def _not_before_granted(cls, value: date | None, info: ValidationInfo) -> date | None:
        granted_at = info.data.get("granted_at")
        if value is not None and granted_at is not None and value < granted_at:
            raise PydanticCustomError("before_granted", "the date is before granted_at")
        return value

    @field_validator("reference", mode="before")
    @classmethod
    def _reference_or_none(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @property
    def is_opt_out(self) -> bool:
        """Whether the record is an objection rather than a grant."""
        return self.basis is ConsentBasis.OPT_OUT


def parse_calendar_date(value: object) -> date | None:
    """Read a registry date by the rule of this module: the calendar date as recorded.

    :param value: an ISO 8601 date or timestamp as text, a ``date``, a ``datetime`` or None; blank text
        is None.
    :raises ValueError: the value is not a date in any of these forms (the message does not quote it).
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        # The wall-clock date of the timestamp, in whatever zone it was recorded in.
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(text).date()
        except ValueError:
            pass
    raise ValueError("not an ISO 8601 date or timestamp")


class ConsentRegistry(BaseModel):
    """All consent records of one source, grouped by subject.

    :param source: where the records came from (a file path, or a database or FHIR address).
    :param records: every record, in the order of the source.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    source: str = Field(description="Where the records came from, such as the registry file's path.")
    records: tuple[ConsentRecord, ...] = Field(description="Every record, in the order of the source.")

    _by_subject: dict[str, tuple[ConsentRecord, ...]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        grouped: dict[str, list[ConsentRecord]] = {}
        for record in self.records:
            grouped.setdefault(record.subject_id, []).append(record)
        self._by_subject = {subject: tuple(records) for subject, records in grouped.items()}

    def __repr__(self) -> str:
        # Counts only: the records name subjects.
        counts = f"records={len(self.records)}, subjects={len(self._by_subject)}"
        return f"ConsentRegistry(source={self.source!r}, {counts})"

    __str__ = __repr__

    def __len__(self) -> int:
        """The number of records (rows), not of subjects."""
        return len(self.records)

    @property
    def subject_ids(self) -> tuple[str, ...]:
        """Every subject with at least one record, in order of first appearance."""
        return tuple(self._by_subject)

    def records_for(self, subject_id: str) -> tuple[ConsentRecord, ...]:
        """The records of one subject, in the order of the source; empty when it has none.

        :param subject_id: the subject, compared after trimming whitespace.
        """
        return self._by_subject.get(subject_id.strip(), ())


def read_consent_registry(path: str | os.PathLike[str]) -> ConsentRegistry:
    """Read a consent registry file, CSV or Parquet by its extension.

    :param path: a ``.csv`` file, or a ``.parquet``/``.pq`` file or folder.
    :raises ConsentRegistryError: the file is missing, unreadable, of an unknown kind, lacks a required
        column or holds a malformed row.
    """
    source = os.fspath(path)
    target = Path(source)
    suffix = target.suffix.lower()
    if not target.exists():
        raise ConsentRegistryError(
            [f"consent registry {source} does not exist, so no record can be admitted; check its path"]
        )
    if suffix in _CSV_SUFFIXES:
        table = _read_csv(target, source)
    elif suffix in _PARQUET_SUFFIXES:
        table = _read_parquet(target, source)
    else:
        raise ConsentRegistryError(
            [f"consent registry {source} is neither .csv nor .parquet; give a file of one of these kinds"]
        )
    return registry_from_table(table, source)


def registry_from_table(table: pa.Table, source: str) -> ConsentRegistry:
    """Validate a table in the registry format into a :class:`ConsentRegistry`.

    :param table: the registry's rows; extra columns are ignored.
    :param source: how the registry is named, in the registry and in errors.
    :raises ConsentRegistryError: a required column is missing or of the wrong type, or rows are
        malformed.
    """
    columns = _required_columns(table, source)
    records, problems = _validate_rows(columns, table.num_rows)
    if problems:
        raise ConsentRegistryError(
            [
                f"consent registry {source} is malformed: {problem}; fix or remove those rows"
                for problem in _describe_problems(problems)
            ]
        )
    return ConsentRegistry(source=source, records=tuple(records))


def _read_csv(target: Path, source: str) -> pa.Table:
    """Read a CSV registry with every column as text and empty cells as null."""
    import pyarrow.csv as pa_csv

    header = _csv_header(target, source)
    convert = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    try:
        table = pa_csv.read_csv(target, convert_options=convert)
    except (OSError, pa.ArrowException) as error:
        # pyarrow's message quotes the row it could not parse, so only the error's kind is told.
        raise ConsentRegistryError(
            [f"consent registry {source} cannot be read as CSV ({type(error).__name__}); check its format"]
        ) from None
    return _split_purposes(table)


def _split_purposes(table: pa.Table) -> pa.Table:
    """Turn CSV's ``;``-separated purposes into the list column that Parquet registries hold."""
    names = [name.strip() for name in table.column_names]
    if "purposes" not in names:
        return table
    position = names.index("purposes")
    purposes = pc.split_pattern(table.column(position), pattern=PURPOSE_SEPARATOR)
    return table.set_column(position, table.field(position).name, purposes)


def _csv_header(target: Path, source: str) -> list[str]:
    """The column names of a CSV file, read before pyarrow so that every column can be typed as text."""
    try:
        with target.open(encoding="utf-8-sig", newline="") as stream:
            header = next(csv.reader(stream), None)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConsentRegistryError(
            [f"consent registry {source} cannot be read ({type(error).__name__}); check the file"]
        ) from None
    if not header:
        raise ConsentRegistryError([f"consent registry {source} is empty: it has no header row"])
    return header


def _read_parquet(target: Path, source: str) -> pa.Table:
    import pyarrow.parquet as pa_parquet

    try:
        return pa_parquet.read_table(target)
    except (OSError, pa.ArrowException) as error:
        raise ConsentRegistryError(
            [f"consent registry {source} cannot be read as Parquet ({type(error).__name__}); check the file"]
        ) from None


def _required_columns(table: pa.Table, source: str) -> dict[str, list[Any]]:
    """Every required column as Python values, or a refusal naming the missing and mistyped ones."""
    names = [name.strip() for name in table.column_names]
    missing = [name for name in REGISTRY_COLUMNS if name not in names]
    if missing:
        raise ConsentRegistryError(
            [
                f"consent registry {source} lacks the required column(s) {', '.join(missing)}; "
                f"a registry has the columns {', '.join(REGISTRY_COLUMNS)}"
            ]
        )
    duplicated = sorted({name for name in REGISTRY_COLUMNS if names.count(name) > 1})
    if duplicated:
        raise ConsentRegistryError(
            [f"consent registry {source} names column(s) {', '.join(duplicated)} more than once; keep one"]
        )

    columns: dict[str, list[Any]] = {}
    mistyped: list[str] = []
    for name in REGISTRY_COLUMNS:
        values = _column_values(name, table.column(names.index(name)))
        if values is None:
            mistyped.append(f"{name} ({table.column(names.index(name)).type})")
        else:
            columns[name] = values
    if mistyped:
        raise ConsentRegistryError(
            [
                f"consent registry {source} has column(s) of the wrong type: {', '.join(mistyped)}; "
                "subject_id is text or integers, purposes a list of text, dates are dates, timestamps "
                "or ISO text, the others text"
            ]
        )
    return columns


def _column_values(name: str, column: pa.ChunkedArray) -> list[Any] | None:
    """A column's values as Python objects, or None when its Arrow type cannot hold that column."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    text = is_text(kind)
    if pa.types.is_null(kind):
        return [None] * len(column)
    if name == "subject_id" and pa.types.is_integer(kind):
        return column.cast(pa.string()).to_pylist()
    if name == "purposes":
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            item = kind.value_type
            if is_text(item) or pa.types.is_null(item):
                return column.to_pylist()
        return None
    if name in _DATE_COLUMNS and pa.types.is_timestamp(kind):
        # The calendar date as recorded: the wall clock of the column's zone, never a conversion to UTC.
        if kind.tz is not None:
            column = pc.local_timestamp(column)
        return column.cast(pa.date32()).to_pylist()
    if name in _DATE_COLUMNS and pa.types.is_date(kind):
        return column.to_pylist()
    return column.to_pylist() if text else None


def _validate_rows(
    columns: Mapping[str, list[Any]], row_count: int
) -> tuple[list[ConsentRecord], dict[tuple[str, str], int]]:
    """Validate every row, counting the problems per column instead of stopping at the first."""
    records: list[ConsentRecord] = []
    problems: dict[tuple[str, str], int] = {}
    for index in range(row_count):
        row = {name: columns[name][index] for name in REGISTRY_COLUMNS}
        try:
            records.append(ConsentRecord.model_validate(row))
        except ValidationError as error:
            for detail in error.errors(include_input=False, include_url=False):
                column = str(detail["loc"][0]) if detail["loc"] else "row"
                key = (column, detail["type"])
                problems[key] = problems.get(key, 0) + 1
    return records, problems


def _describe_problems(problems: Mapping[tuple[str, str], int]) -> Iterable[str]:
    """One sentence per problem, with its count of rows, in the order of the registry's columns."""
    order = {name: position for position, name in enumerate(REGISTRY_COLUMNS)}
    for (column, kind), count in sorted(
        problems.items(), key=lambda item: (order.get(item[0][0], 99), item[0])
    ):
        yield f"{count} row(s) {_problem_text(column, kind)}"


def _problem_text(column: str, kind: str) -> str:
    bases = ", ".join(basis.value for basis in ConsentBasis)
    if column == "subject_id" and kind in ("subject_id_empty", "missing", "string_type"):
        return "have an empty subject_id"
    if column == "basis":
        return f"have a missing or unknown basis (expected one of {bases})"
    if column == "purposes":
        return "list no purposes (a grant lists at least one, ';'-separated in CSV)"
    if column in _DATE_COLUMNS and kind == "before_granted":
        return f"have {column} before granted_at"
    if column == "granted_at" and kind in ("date_type", "missing"):
        return "have no granted_at"
    if column in _DATE_COLUMNS:
        return f"have an unparsable date in {column} (expected an ISO 8601 date or timestamp)"
    return f"have a malformed {column}"
