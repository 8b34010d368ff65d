"""Where a consent registry is read from: one interface over files (local or fsspec URLs) and SQL databases.

A source is anything with a ``display_name`` (how reports, lineage and messages name it, never with a
password) and a ``read()`` that returns a validated
:class:`~airflow_phi_guard.consent.registry.ConsentRegistry`.
:func:`consent_source` picks the source for what a user typed:

- a local path, or an fsspec URL such as ``file:///data/consent.csv``, ``memory://consent.parquet`` or
  ``s3://bucket/consent/`` (the protocol's fsspec implementation must be installed): a
  :class:`FileConsentSource`, read as CSV, Parquet or FHIR R4 Consent NDJSON (``.ndjson``,
  ``.ndjson.gz``, through consent/fhir.py) by its extension;
- a SQLAlchemy URL such as ``postgresql+psycopg://user@host:5432/db`` together with a table or a query:
  a :class:`~airflow_phi_guard.consent.sql.SqlConsentSource` (see ``consent/sql.py``).

Every source ends in ``registry_from_table``, so the rules of reading (consent/registry.py) are the
same whatever the source, and every source refuses an empty registry: a registry without a single record
cannot admit anyone, and reading one is far more often a wrong table, file or filter than a real state.

Errors name the source and the problem, never a value: a registry that is missing, unreadable, empty or
malformed is a :class:`~airflow_phi_guard.exceptions.ConsentRegistryError` (a refusal, no retry); one on
remote storage that cannot be reached is a
:class:`~airflow_phi_guard.exceptions.ConsentRegistryUnavailableError`, which a retry may heal. pyarrow's
and the drivers' messages quote rows, so they are never chained.
"""

from __future__ import annotations

import csv
import io
import os
import urllib.parse
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc

from airflow_phi_guard.consent.registry import PURPOSE_SEPARATOR, ConsentRegistry, registry_from_table
from airflow_phi_guard.exceptions import ConsentRegistryError, ConsentRegistryUnavailableError

# Re-exported: the one redactor of URLs, also for what imports it from here.
from airflow_phi_guard.sql import redact_url as redact_url

_CSV_SUFFIXES = (".csv",)
_PARQUET_SUFFIXES = (".parquet", ".pq")
#: FHIR R4 Consent resources, one per line (bulk export), read by consent/fhir.py.
_FHIR_SUFFIXES = (".ndjson", ".ndjson.gz")


@runtime_checkable
class ConsentSource(Protocol):
    """A place a consent registry is read from."""

    @property
    def display_name(self) -> str:
        """How the source is named in reports, lineage and messages; never with a password."""
        ...

    def read(self) -> ConsentRegistry:
        """Read and validate the whole registry; refuse it whole if any part is unusable."""
        ...


def consent_source(
    location: ConsentSource | str | os.PathLike[str], *, table: str | None = None, query: str | None = None
) -> ConsentSource:
    """The source for a location as a user gives it: a source as it is, a file path or URL, a database URL.

    :param location: a :class:`ConsentSource`; a local path or an fsspec URL of a CSV or Parquet
        registry; or a SQLAlchemy database URL, which needs ``table`` or ``query``.
    :param table: the registry table of a database URL, ``table`` or ``schema.table``.
    :param query: the query that returns the registry's rows from a database URL, instead of a table.
    :raises ConsentRegistryError: a database URL without a table or query, or a file with one.
    """
    if isinstance(location, ConsentSource):
        return location
    text = os.fspath(location)
    if is_database_url(text):
        from airflow_phi_guard.consent.sql import sql_consent_source

        return sql_consent_source(text, table=table, query=query)
    if table is not None or query is not None:
        raise ConsentRegistryError(
            [
                f"consent registry {redact_url(text)} is a file, so a table or query cannot be read from "
                "it; give a database URL such as postgresql+psycopg://user@host:5432/db"
            ]
        )
    return FileConsentSource(text)


def read_consent_registry(location: ConsentSource | str | os.PathLike[str]) -> ConsentRegistry:
    """Read a consent registry from any source: a source object, or a file's path or fsspec URL.

    :param location: see :func:`consent_source`; a database URL needs :func:`consent_source` with a table
        or query instead.
    :raises ConsentRegistryError: the registry is missing, unreadable, empty or malformed.
    :raises ConsentRegistryUnavailableError: its storage or database cannot be reached.
    """
    return consent_source(location).read()


def consent_display_name(location: ConsentSource | str | os.PathLike[str]) -> str:
    """How a registry is named in a report and in lineage: an absolute path, or a URL without a password.

    :param location: a source, or a file's path or URL.
    """
    if isinstance(location, ConsentSource):
        return location.display_name
    text = os.fspath(location)
    if is_database_url(text) or _is_url(text):
        return redact_url(text)
    return str(Path(text).resolve())


def refuse_empty(registry: ConsentRegistry) -> ConsentRegistry:
    """The registry as it is, or a refusal when it holds no record at all.

    :param registry: a validated registry.
    :raises ConsentRegistryError: it is empty.
    """
    if len(registry) == 0:
        raise ConsentRegistryError(
            [
                f"consent registry {registry.source} is empty: it holds no record, so no row can be "
                "admitted; check that it names the right file, table or query"
            ]
        )
    return registry


def is_database_url(text: str) -> bool:
    """Whether text is a SQLAlchemy database URL rather than a file's path or fsspec URL.

    A URL whose scheme is no fsspec protocol and names a SQLAlchemy dialect (``postgresql``,
    ``postgresql+psycopg``, ``mysql+pymysql``, ``sqlite``...) is a database URL.

    :param text: what the user gave.
    """
    scheme = urllib.parse.urlsplit(text).scheme.lower() if "://" in text else ""
    if not scheme or _is_fsspec_protocol(scheme):
        return False
    dialect = scheme.partition("+")[0]
    return dialect in _SQLALCHEMY_DIALECTS


# The dialects SQLAlchemy ships, plus the names third-party dialects commonly register under; "postgres"
# is not one (SQLAlchemy removed that alias) but is refused with advice by consent/sql.py rather than
# taken for a file.
_SQLALCHEMY_DIALECTS = frozenset(
    {"postgresql", "postgres", "mysql", "mariadb", "sqlite", "oracle", "mssql", "redshift", "snowflake"}
)


class FileConsentSource:
    """A CSV or Parquet registry in a local file (or Parquet folder), or behind an fsspec URL.

    :param location: a local path, or an fsspec URL such as ``memory://consent.csv``.
    :param storage_options: keyword arguments of the fsspec filesystem (credentials belong here, never in
        the URL, which is shown).
    """

    def __init__(self, location: str | os.PathLike[str], **storage_options: Any) -> None:
        self.location = os.fspath(location)
        self.storage_options = storage_options

    def __repr__(self) -> str:
        return f"FileConsentSource({self.display_name!r})"

    @property
    def is_remote(self) -> bool:
        """Whether the registry is read through fsspec rather than from the local file system."""
        return _is_url(self.location) and urllib.parse.urlsplit(self.location).scheme.lower() != "file"

    @property
    def name(self) -> str:
        """The registry's name in its records and messages: the path as given, or the redacted URL."""
        return redact_url(self.location)

    @property
    def display_name(self) -> str:
        """The absolute local path, or the URL without a password."""
        return consent_display_name(self.location)

    def read(self) -> ConsentRegistry:
        """Read the file by its extension, validate it, refuse it if empty.

        :raises ConsentRegistryError: missing, of an unknown kind, unreadable, empty or malformed.
        :raises ConsentRegistryUnavailableError: the remote storage could not be reached.
        """
        return refuse_empty(registry_from_table(self.read_table(), self.name))

    def read_table(self) -> pa.Table:
        """The file's rows in the registry format, before validation."""
        filesystem, path = self._filesystem()
        source = self.name
        suffix = _suffix(path)
        if not self._exists(filesystem, path):
            raise ConsentRegistryError(
                [f"consent registry {source} does not exist, so no record can be admitted; check its path"]
            )
        try:
            if path.lower().rstrip("/").endswith(_FHIR_SUFFIXES):
                from airflow_phi_guard.consent.fhir import read_fhir_consents

                return read_fhir_consents(self.location)
            if suffix in _CSV_SUFFIXES:
                return _read_csv(filesystem, path, source)
            if suffix in _PARQUET_SUFFIXES:
                return _read_parquet(filesystem, path, source)
        except ConsentRegistryError:
            raise
        except OSError as error:
            # Local files keep the refusal of an unreadable file; remote storage that fails mid-read is
            # more likely down than broken, so a retry is worth it there.
            if self.is_remote:
                raise ConsentRegistryUnavailableError(source, type(error).__name__) from None
            raise ConsentRegistryError(
                [f"consent registry {source} cannot be read ({type(error).__name__}); check the file"]
            ) from None
        raise ConsentRegistryError(
            [
                f"consent registry {source} is neither .csv nor .parquet nor FHIR .ndjson; give a file of "
                "one of these kinds"
            ]
        )

    def _filesystem(self) -> tuple[Any, str]:
        """The fsspec filesystem and the path within it; None for a local path, read with plain I/O."""
        if not _is_url(self.location):
            return None, self.location
        import fsspec

        try:
            filesystem, path = fsspec.core.url_to_fs(self.location, **self.storage_options)
        except (ImportError, ValueError) as error:
            raise ConsentRegistryError(
                [
                    f"consent registry {self.name} names a storage that cannot be opened "
                    f"({type(error).__name__}); install its fsspec implementation or check the URL"
                ]
            ) from None
        except Exception as error:
            # Filesystems that connect on creation (ftp, sftp) fail here when the server is down.
            raise ConsentRegistryUnavailableError(self.name, type(error).__name__) from None
        # A file:// URL is a local file: read with plain I/O, and refused (not retried) when unreadable.
        return (None, path) if not self.is_remote else (filesystem, path)

    def _exists(self, filesystem: Any, path: str) -> bool:
        if filesystem is None:
            return Path(path).exists()
        try:
            return bool(filesystem.exists(path))
        except Exception as error:
            # A store that cannot say whether the file exists is unreachable, not empty.
            raise ConsentRegistryUnavailableError(self.name, type(error).__name__) from None


def _read_csv(filesystem: Any, path: str, source: str) -> pa.Table:
    """Read a CSV registry with every column as text and empty cells as null."""
    import pyarrow.csv as pa_csv

    header = _csv_header(filesystem, path, source)
    convert = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    try:
        if filesystem is None:
            table = pa_csv.read_csv(path, convert_options=convert)
        else:
            with filesystem.open(path, "rb") as stream:
                table = pa_csv.read_csv(stream, convert_options=convert)
    except pa.ArrowException as error:
        if isinstance(error, OSError):
            raise
        # pyarrow's message quotes the row it could not parse, so only the error's kind is told.
        raise ConsentRegistryError(
            [f"consent registry {source} cannot be read as CSV ({type(error).__name__}); check its format"]
        ) from None
    return split_purposes(table)


def split_purposes(table: pa.Table) -> pa.Table:
    """Turn ``;``-separated purposes (CSV, a text column in SQL) into the list column Parquet holds."""
    names = [name.strip() for name in table.column_names]
    if "purposes" not in names:
        return table
    position = names.index("purposes")
    column = table.column(position)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return table
    purposes = pc.split_pattern(column, pattern=PURPOSE_SEPARATOR)
    return table.set_column(position, table.field(position).name, purposes)


def _csv_header(filesystem: Any, path: str, source: str) -> list[str]:
    """The column names of a CSV file, read before pyarrow so that every column can be typed as text."""
    try:
        if filesystem is None:
            with open(path, encoding="utf-8-sig", newline="") as stream:
                header = next(csv.reader(stream), None)
        else:
            with (
                filesystem.open(path, "rb") as binary,
                io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as stream,
            ):
                header = next(csv.reader(stream), None)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ConsentRegistryError(
            [f"consent registry {source} cannot be read ({type(error).__name__}); check the file"]
        ) from None
    if not header:
        raise ConsentRegistryError([f"consent registry {source} is empty: it has no header row"])
    return header


def _read_parquet(filesystem: Any, path: str, source: str) -> pa.Table:
    import pyarrow.parquet as pa_parquet

    try:
        return pa_parquet.read_table(path, filesystem=filesystem)
    except pa.ArrowException as error:
        if isinstance(error, OSError) and filesystem is not None:
            raise
        raise ConsentRegistryError(
            [f"consent registry {source} cannot be read as Parquet ({type(error).__name__}); check the file"]
        ) from None


def _suffix(path: str) -> str:
    return Path(path.rstrip("/")).suffix.lower()


def _is_url(text: str) -> bool:
    """Whether text is an fsspec URL (``memory://x``, ``file:///x``, ``s3://b/k``), not a local path."""
    if "://" not in text:
        return False
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    # A one-letter scheme is a Windows drive (C:\data), not a URL.
    return len(scheme) > 1 and _is_fsspec_protocol(scheme)


def _is_fsspec_protocol(scheme: str) -> bool:
    from fsspec.registry import known_implementations, registry

    return scheme in known_implementations or scheme in registry
