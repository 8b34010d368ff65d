"""Surrogate codes: random re-identification codes kept in a private mapping (45 CFR 164.514(c)).

A keyed pseudonym is computed from the identifier, so it is "derived from information about the
individual" and cannot stay in a Safe Harbor dataset. A surrogate code is drawn at random (128 bits from
the operating system's generator) the first time a person is seen, and looked up in a mapping table
after that, so the same person gets the same code across runs and tables, and nothing about the code
can be computed from the person. The mapping is the means of re-identification: it holds the
identifiers next to their codes, must be kept like the source data, and is never published or
disclosed (164.514(c)(2)).

A mapping lives in a Parquet file or a SQL table, one row per (namespace, identifier): the namespace
names the kind of identifier (``patient``), so that two tables whose columns hold the same patients
under different names share their codes. Identifiers are compared after trimming whitespace, and a
UUID compares in lower case.

New codes are written to the mapping only when the caller commits, which the engine does only for a
run it publishes: a refused run leaves the mapping as it was. A Parquet mapping is locked for the whole
run (an exclusive ``flock`` on a file beside it), so that two runs cannot give one new person two codes;
a SQL mapping relies on its primary key instead and refuses the run whose new codes lost a race.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_phi_guard.arrow_types import holds_ids
from airflow_phi_guard.exceptions import SurrogateMappingError

log = logging.getLogger(__name__)

#: The columns of a mapping table.
MAPPING_SCHEMA = pa.schema(
    [
        pa.field("namespace", pa.string(), nullable=False),
        pa.field("identifier", pa.string(), nullable=False),
        pa.field("code", pa.string(), nullable=False),
    ]
)

#: Random bytes per code: 128 bits, so that codes never repeat in practice and cannot be guessed.
CODE_BYTES = 16

_UUID = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"


class MappingStore(Protocol):
    """Where a mapping is kept: it reads the codes of one namespace and adds new ones."""

    def describe(self) -> str:
        """A name for messages and reports, with no secret in it."""
        ...

    def load(self, namespace: str) -> pa.Table:
        """Every (identifier, code) of ``namespace``."""
        ...

    def add(self, namespace: str, new: pa.Table) -> None:
        """Add new (identifier, code) rows; refuse, adding none, if any identifier already has a code."""
        ...


def normalized_identifiers(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Identifiers as the mapping compares them: text, trimmed, UUIDs in lower case, blanks as nulls.

    :param values: a column of text or integer identifiers.
    :raises TypeError: the column holds neither.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if not (holds_ids(values.type) or pa.types.is_null(values.type)):
        raise TypeError(f"surrogate codes replace text or integer identifiers, not {values.type}")
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    text = pc.if_else(pc.match_substring_regex(text, _UUID), pc.utf8_lower(text), text)
    return pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, pa.string()), text)


class SurrogateCodes:
    """The codes of one namespace during one run: existing ones looked up, new ones drawn and held.

    :param store: where the mapping is kept.
    :param namespace: the kind of identifier, such as ``patient``.
    """

    def __init__(self, store: MappingStore, namespace: str) -> None:
        if not namespace.strip():
            raise ValueError("a surrogate namespace is needed")
        self.store = store
        self.namespace = namespace.strip()
        known = store.load(self.namespace)
        self._identifiers = known.column("identifier").combine_chunks().cast(pa.string())
        self._codes = known.column("code").combine_chunks().cast(pa.string())
        self._new_identifiers: list[pa.Array] = []
        self._new_codes: list[pa.Array] = []

    @property
    def new_codes(self) -> int:
        """How many people got a code for the first time in this run."""
        return sum(len(codes) for codes in self._new_codes)

    @property
    def known_codes(self) -> int:
        """How many codes the mapping held when the run began."""
        return len(self._codes)

    def codes_for(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The code of each identifier; a null or blank identifier gets a null.

        :param values: the identifier column of a batch.
        """
        identifiers = normalized_identifiers(values)
        # A batch holds few people and the mapping may hold millions: the batch's distinct ids are hashed
        # and the mapping's ids probed against them, instead of the whole mapping hashed for every batch.
        distinct = pc.unique(identifiers.drop_null())
        slots, codes = [], []
        for known_identifiers, known_codes in self._chunks():
            slot = pc.index_in(known_identifiers, value_set=distinct)
            found = pc.is_valid(slot)
            slots.append(slot.filter(found).cast(pa.int64()))
            codes.append(known_codes.filter(found))
        slot_of = pa.concat_arrays(slots).to_numpy()
        missing = np.ones(len(distinct), dtype=bool)
        missing[slot_of] = False
        if missing.any():
            new = distinct.filter(pa.array(missing))
            codes.append(self._draw(new))
            slot_of = np.concatenate([slot_of, np.flatnonzero(missing)])
        # every distinct id has a code now; ordered by id, the first one found for it (known codes first)
        order = np.argsort(slot_of, kind="stable")
        first = order[np.concatenate([[True], np.diff(slot_of[order]) != 0])] if len(order) else order
        code_of_distinct = pc.take(pa.concat_arrays(codes), pa.array(first))
        return pc.take(code_of_distinct, pc.index_in(identifiers, value_set=distinct))

    def commit(self) -> None:
        """Write this run's new codes to the mapping. Call only for a run that is published."""
        if not self._new_codes:
            return
        new = pa.table(
            {
                "namespace": pa.array([self.namespace] * self.new_codes, pa.string()),
                "identifier": pa.concat_arrays(self._new_identifiers),
                "code": pa.concat_arrays(self._new_codes),
            },
            schema=MAPPING_SCHEMA,
        )
        self.store.add(self.namespace, new)
        log.info(
            "surrogate mapping %s: %d new code(s) in namespace %s",
            self.store.describe(),
            len(new),
            self.namespace,
        )

    def _draw(self, identifiers: pa.Array) -> pa.Array:
        codes = pa.array([secrets.token_hex(CODE_BYTES) for _ in range(len(identifiers))], pa.string())
        # 128 random bits do not repeat in practice; checking costs one probe of the codes held, and a
        # repeat would merge two people, so it is checked anyway.
        repeated = any(pc.any(pc.is_in(taken, value_set=codes)).as_py() for _, taken in self._chunks())
        if repeated or len(pc.unique(codes)) != len(codes):
            raise SurrogateMappingError(
                [f"surrogate mapping {self.store.describe()}: a drawn code repeated; run again"]
            )
        self._new_identifiers.append(identifiers)
        self._new_codes.append(codes)
        if len(self._new_codes) > _NEW_CHUNKS:
            # a few chunks keep the probes of each batch few; merging them now and then keeps copies rare
            self._new_identifiers = [pa.concat_arrays(self._new_identifiers)]
            self._new_codes = [pa.concat_arrays(self._new_codes)]
        return codes

    def _chunks(self) -> Iterator[tuple[pa.Array, pa.Array]]:
        """The identifiers and codes held, known ones first, in a few chunks."""
        yield self._identifiers, self._codes
        yield from zip(self._new_identifiers, self._new_codes, strict=True)


#: How many chunks of new codes a run holds before merging them into one.
_NEW_CHUNKS = 8


class ParquetMappingStore:
    """A mapping in one Parquet file, rewritten atomically when codes are added.

    Open it with :func:`locked_parquet_mapping`, which holds an exclusive lock for the whole run.

    :param path: the mapping file; it need not exist yet.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return str(self.path)

    def load(self, namespace: str) -> pa.Table:
        table = self._read()
        return table.filter(pc.equal(table.column("namespace"), namespace)).select(["identifier", "code"])

    def add(self, namespace: str, new: pa.Table) -> None:
        table = self._read()
        clash = pc.is_in(
            new.column("identifier"),
            value_set=table.filter(pc.equal(table.column("namespace"), namespace)).column("identifier"),
        )
        if pc.any(clash).as_py():
            raise SurrogateMappingError([f"surrogate mapping {self.path}: changed during the run; run again"])
        combined = pa.concat_tables([table, new.cast(MAPPING_SCHEMA)])
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            pq.write_table(combined, temporary)
            os.replace(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)

    def _read(self) -> pa.Table:
        if not self.path.exists():
            return MAPPING_SCHEMA.empty_table()
        try:
            table = pq.read_table(self.path)
        except (OSError, pa.ArrowException) as error:
            raise SurrogateMappingError(
                [f"surrogate mapping {self.path} cannot be read ({type(error).__name__}); check the file"]
            ) from None
        if not table.schema.equals(MAPPING_SCHEMA, check_metadata=False):
            raise SurrogateMappingError(
                [
                    f"surrogate mapping {self.path} does not have the columns namespace, identifier, code "
                    "(text, not null)"
                ]
            )
        return table


@contextmanager
def locked_parquet_mapping(path: str | os.PathLike[str]) -> Iterator[ParquetMappingStore]:
    """A Parquet mapping locked against other runs until the block ends.

    :param path: the mapping file.
    """
    store = ParquetMappingStore(path)
    store.path.parent.mkdir(parents=True, exist_ok=True)
    with open(store.path.with_name(f"{store.path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield store
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class SqlMappingStore:
    """A mapping in a SQL table, through SQLAlchemy; the table is created if it does not exist.

    The primary key (namespace, identifier) decides races: codes are inserted in one transaction, and if
    another run gave one of the new identifiers a code first, nothing is inserted and the run is refused.

    :param engine: a SQLAlchemy engine, e.g. an Airflow hook's; :meth:`from_url` opens one from a URL.
    :param table: the table name, optionally ``schema.table``.
    """

    @classmethod
    def from_url(cls, url: str, table: str) -> SqlMappingStore:
        """A mapping in the database a SQLAlchemy URL names, opened without a pool.

        :param url: e.g. ``postgresql+psycopg://user@host:5432/db``; a password in it is used, never shown.
        :param table: the table name, optionally ``schema.table``.
        :raises SurrogateMappingError: the URL cannot be parsed or its driver is not installed.
        """
        from airflow_phi_guard.sql import open_database

        try:
            engine, _ = open_database(url)
        except ValueError as error:
            raise SurrogateMappingError([f"surrogate mapping {error}"]) from None
        return cls(engine, table)

    def __init__(self, engine: object, table: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.engine = engine
        schema, _, name = table.rpartition(".")
        self.table = sa.Table(
            name,
            sa.MetaData(schema=schema or None),
            sa.Column("namespace", sa.Text, primary_key=True),
            sa.Column("identifier", sa.Text, primary_key=True),
            sa.Column("code", sa.Text, nullable=False, unique=True),
        )

    def describe(self) -> str:
        from airflow_phi_guard.sql import redact_url

        # SQLAlchemy hides the password but keeps the query, where a driver may take a secret too.
        url = self.engine.url.render_as_string(hide_password=True)  # type: ignore[attr-defined]
        return f"{redact_url(url)} table {self.table.fullname}"

    def load(self, namespace: str) -> pa.Table:
        sa = self._sa
        try:
            self.table.metadata.create_all(self.engine, tables=[self.table])
            with self.engine.connect() as connection:  # type: ignore[attr-defined]
                rows = connection.execute(
                    sa.select(self.table.c.identifier, self.table.c.code).where(
                        self.table.c.namespace == namespace
                    )
                ).all()
        except sa.exc.SQLAlchemyError as error:
            raise self._unavailable(error) from None
        return pa.table(
            {
                "identifier": pa.array([row[0] for row in rows], pa.string()),
                "code": pa.array([row[1] for row in rows], pa.string()),
            }
        )

    def add(self, namespace: str, new: pa.Table) -> None:
        sa = self._sa
        try:
            with self.engine.begin() as connection:  # type: ignore[attr-defined]
                connection.execute(self.table.insert(), new.to_pylist())
        except sa.exc.IntegrityError:
            raise SurrogateMappingError(
                [f"surrogate mapping {self.describe()}: another run added codes at the same time; run again"]
            ) from None
        except sa.exc.SQLAlchemyError as error:
            raise self._unavailable(error) from None

    def _unavailable(self, error: Exception) -> SurrogateMappingError:
        # Driver messages quote statements and parameters, which here are identifiers: only the class.
        return SurrogateMappingError(
            [
                f"surrogate mapping {self.describe()} cannot be used ({type(error).__name__}); "
                "check the database"
            ]
        )
