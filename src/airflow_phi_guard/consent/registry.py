"""The consent registry: every permission of one source, validated column by column and held as Arrow arrays.

A registry has one row per permission with the columns ``subject_id``, ``basis``, ``purposes``,
``granted_at``, ``expires_at``, ``revoked_at`` and ``reference``; other columns are ignored. ``purposes``
is a list (``list<string>``; CSV sources split ``;``-separated text into one). Every source (files, SQL,
FHIR) hands a table in this format to :func:`registry_from_table` (or its batches to
:func:`registry_from_batches`), which validates it chunk by chunk with vectorised ``pyarrow.compute``
calls, never one Python object per row, so that ten million permissions fit.

Rules of reading, the same for every source:

- **Subject ids** are trimmed of whitespace; integer ids count as their decimal text. An empty subject id
  makes the registry malformed. Further normalisation (UUID case, leading zeros) is the policy's, and
  :class:`~airflow_phi_guard.consent.admission.ConsentAdmission` applies it to both sides.
- **Dates**, by the rule named :data:`DATE_RULE` ("calendar date as recorded"): ISO 8601 dates
  (``2026-12-01``) or ISO 8601 timestamps (``2026-12-01T23:30:00-05:00``, ``...Z``, with or without
  seconds, fractions and offset). A timestamp counts on the calendar date written in it: it is never
  converted to another time zone, so ``2026-12-01T23:30:00-05:00`` is 2026-12-01 although it is
  2026-12-02 in UTC. Date columns are taken as they are; a timestamp column with a time zone counts on
  its calendar date in that zone, one without on its own date. ``granted_at`` is required; an empty
  ``expires_at`` or ``revoked_at`` means "none". An unparsable or impossible date (``2026-02-30``), or an
  ``expires_at`` or ``revoked_at`` before ``granted_at``, makes the registry malformed.
- **Purposes** are trimmed; each must belong to the purpose vocabulary
  (:mod:`airflow_phi_guard.consent.purposes`: a product name or an HL7 v3 PurposeOfUse code), or the
  registry is malformed. A grant must list at least one; an ``opt-out`` may list none, since it objects
  to every use whatever it lists.
- **Contradictory duplicates** make the registry malformed: see :func:`contradictory_subjects`. Exact
  duplicates are one record.

A registry that is missing, unreadable, lacks a required column or holds a malformed row is refused as a
whole with :class:`~airflow_phi_guard.exceptions.ConsentRegistryError`: a partly read registry could admit
a person whose objection sits in the row that failed. Its reasons give counts of bad rows per problem and
column names, never a subject id, a reference or any other cell value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from airflow_phi_guard.arrow_types import is_text
from airflow_phi_guard.consent.purposes import token_table, vocabulary_hint
from airflow_phi_guard.exceptions import ConsentRegistryError
from airflow_phi_guard.policy.models import ConsentBasis

#: The columns every registry has, in the order of the format.
REGISTRY_COLUMNS = ("subject_id", "basis", "purposes", "granted_at", "expires_at", "revoked_at", "reference")

#: The separator of the ``purposes`` list in CSV.
PURPOSE_SEPARATOR = ";"

#: The name of the one rule by which registry dates and timestamps are compared, for the report.
DATE_RULE = "calendar-date-as-recorded"

#: The columns of a validated registry, as :class:`ConsentRegistry` holds them.
RECORD_SCHEMA = pa.schema(
    [
        pa.field("subject_id", pa.dictionary(pa.int32(), pa.string())),
        pa.field("basis", pa.int8()),
        pa.field("purposes", pa.list_(pa.dictionary(pa.int8(), pa.string()))),
        pa.field("purpose_mask", pa.int16()),
        pa.field("granted_at", pa.date32()),
        pa.field("expires_at", pa.date32()),
        pa.field("revoked_at", pa.date32()),
        pa.field("reference", pa.string()),
    ]
)

_DATE_COLUMNS = ("granted_at", "expires_at", "revoked_at")
_HASH_CHUNK = 1 << 20
# The bits a purpose mask can use (one per PurposeOfUse code); a test holds the vocabulary to it.
_MASK_BITS = 16
# A basis travels as its position in this tuple.
_BASES = tuple(ConsentBasis)
# An ISO 8601 date, alone or followed by a time of day and an optional offset; the calendar part is then
# checked for a real date.
_ISO_DATE_OR_TIMESTAMP = (
    r"^\d{4}-\d{2}-\d{2}(?:[T ](?:[01]\d|2[0-3])(?::?[0-5]\d(?::?[0-5]\d(?:[.,]\d+)?)?)?"
    r"(?:Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?)?$"
)


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


class ConsentRegistry:
    """All consent records of one source, validated and held as Arrow columns, one row per record.

    Build one with :func:`registry_from_table` (or :meth:`from_records`); the constructor takes a table
    that is already valid. The columns are those of :data:`RECORD_SCHEMA`: ``subject_id`` trimmed and
    dictionary-encoded (each distinct id held once, the indices being the subject grouping), ``basis``
    as the position of its :class:`~airflow_phi_guard.policy.models.ConsentBasis`,
    ``purposes`` as recorded (trimmed, blanks dropped; one-byte codes of the vocabulary's spellings, read
    back as text), ``purpose_mask`` (16 bits) the set of PurposeOfUse codes
    they stand for (one bit per code of :data:`~airflow_phi_guard.consent.purposes.PURPOSE_OF_USE`),
    and the three dates as ``date32``.

    :param source: where the records came from (a file path, or a database or FHIR address).
    :param table: the validated records.
    """

    __slots__ = ("_grouping", "_source", "_table")

    def __init__(self, source: str, table: pa.Table, grouping: SubjectGrouping | None = None) -> None:
        if not table.schema.equals(RECORD_SCHEMA):
            raise TypeError("a ConsentRegistry holds a table of RECORD_SCHEMA; use registry_from_table")
        self._source = source
        self._table = table
        self._grouping = grouping

    @property
    def grouping(self) -> SubjectGrouping:
        """The records grouped by their trimmed subject id, computed once."""
        if self._grouping is None:
            self._grouping = group_subjects(self._table.column("subject_id"))
        return self._grouping

    @classmethod
    def from_records(cls, source: str, records: Iterable[ConsentRecord]) -> ConsentRegistry:
        """A registry of :class:`ConsentRecord` objects, validated like any other source.

        :param source: how the registry is named.
        :param records: the records, in the order of the source.
        :raises ConsentRegistryError: the records contradict each other.
        """
        records = list(records)
        table = pa.table(
            {
                "subject_id": pa.array([record.subject_id for record in records], pa.string()),
                "basis": pa.array([record.basis.value for record in records], pa.string()),
                "purposes": pa.array([list(record.purposes) for record in records], pa.list_(pa.string())),
                "granted_at": pa.array([record.granted_at for record in records], pa.date32()),
                "expires_at": pa.array([record.expires_at for record in records], pa.date32()),
                "revoked_at": pa.array([record.revoked_at for record in records], pa.date32()),
                "reference": pa.array([record.reference for record in records], pa.string()),
            }
        )
        return registry_from_table(table, source)

    @property
    def source(self) -> str:
        """Where the records came from, such as the registry file's path."""
        return self._source

    @property
    def table(self) -> pa.Table:
        """The validated records as Arrow columns (:data:`RECORD_SCHEMA`); PHI, never to be logged."""
        return self._table

    def __repr__(self) -> str:
        # Counts only: the records name subjects.
        return f"ConsentRegistry(source={self._source!r}, records={len(self)}, subjects={self.subject_count})"

    __str__ = __repr__

    def __len__(self) -> int:
        """The number of records (rows), not of subjects."""
        return self._table.num_rows

    @property
    def subject_ids(self) -> pa.Array:
        """Every subject with at least one record, trimmed, in order of first appearance."""
        return self.grouping.subjects

    @property
    def subject_count(self) -> int:
        """How many distinct subjects (after trimming) have a record."""
        return len(self.grouping.subjects)

    @property
    def records(self) -> tuple[ConsentRecord, ...]:
        """Every record as a :class:`ConsentRecord`, in the order of the source.

        One Python object per row: for tests and small registries, not for millions of records.
        """
        return _records_of(self._table)

    def records_for(self, subject_id: str) -> tuple[ConsentRecord, ...]:
        """The records of one subject, in the order of the source; empty when it has none.

        :param subject_id: the subject, compared after trimming whitespace.
        """
        grouping = self.grouping
        position = pc.index(grouping.subjects, pa.scalar(subject_id.strip(), pa.string())).as_py()
        return _records_of(self._table.filter(pa.array(grouping.group == position)))


def _records_of(table: pa.Table) -> tuple[ConsentRecord, ...]:
    return tuple(
        ConsentRecord(
            subject_id=row["subject_id"],
            basis=_BASES[row["basis"]],
            purposes=row["purposes"],
            granted_at=row["granted_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            reference=row["reference"],
        )
        for row in table.drop_columns(["purpose_mask"]).to_pylist()
    )


def registry_from_table(table: pa.Table, source: str) -> ConsentRegistry:
    """Validate a table in the registry format into a :class:`ConsentRegistry`, column by column.

    The table is held by the caller while it is validated, so memory peaks at the table plus the
    registry; :func:`registry_from_batches` holds one batch at a time.

    :param table: the registry's rows; extra columns are ignored.
    :param source: how the registry is named, in the registry and in errors.
    :raises ConsentRegistryError: a required column is missing or of the wrong type, or rows are
        malformed (counted per column and problem, never quoted).
    """
    problems: Counter[tuple[str, str]] = Counter()
    return _assembled([_validated_columns(table, source, problems)], source, problems)


def registry_from_batches(
    batches: Iterable[pa.RecordBatch | pa.Table], source: str, schema: pa.Schema
) -> ConsentRegistry:
    """Validate a registry read batch by batch, so that only its validated columns are ever held.

    The same rules and refusals as :func:`registry_from_table`, whose input table is held in full while
    it is validated; here each batch is released once read (for ``pyarrow.parquet.ParquetFile``'s
    ``iter_batches`` or a dataset scanner).

    :param batches: the registry's rows, in order.
    :param source: how the registry is named, in the registry and in errors.
    :param schema: the schema of the batches, checked before the first is read (and enough for a
        registry without rows).
    :raises ConsentRegistryError: as :func:`registry_from_table`.
    """
    problems: Counter[tuple[str, str]] = Counter()
    parts = [_validated_columns(schema.empty_table(), source, problems)]
    for batch in batches:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        parts.append(_validated_columns(table, source, problems))
        del table, batch
    return _assembled(parts, source, problems)


def _validated_columns(
    table: pa.Table, source: str, problems: Counter[tuple[str, str]]
) -> dict[str, pa.Array | pa.ChunkedArray]:
    """The columns of :data:`RECORD_SCHEMA` read from one table, ``subject_id`` still as trimmed text."""
    columns = _required_columns(table, source)
    subject_id = _subject_column(columns.pop("subject_id"), problems)
    basis = _basis_column(columns.pop("basis"), problems)
    purposes, purpose_mask = _purpose_columns(columns.pop("purposes"), basis, problems)
    dates = {name: _date_column(name, columns.pop(name), problems) for name in _DATE_COLUMNS}
    for name in ("expires_at", "revoked_at"):
        before = pc.fill_null(pc.less(dates[name], dates["granted_at"]), False)
        problems[(name, "before_granted")] += pc.sum(before).as_py() or 0
    reference = _trimmed(_as_text(columns.pop("reference")))
    blank = pc.equal(pc.binary_length(reference), 0)
    if pc.any(blank).as_py():
        reference = pc.if_else(blank, pa.scalar(None, pa.string()), reference)
    return {
        "subject_id": subject_id,
        "basis": basis,
        "purposes": purposes,
        "purpose_mask": purpose_mask,
        **dates,
        "reference": reference,
    }


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return column.chunks if isinstance(column, pa.ChunkedArray) else [column]


def _assembled(
    parts: list[dict[str, pa.Array | pa.ChunkedArray]], source: str, problems: Counter[tuple[str, str]]
) -> ConsentRegistry:
    """The registry of validated parts, grouped by subject and checked for contradictions, or a refusal."""
    problems = +problems
    if not problems:
        columns = {
            field.name: pa.chunked_array(
                [chunk for part in parts for chunk in _chunks(part[field.name])],
                pa.string() if field.name == "subject_id" else field.type,
            )
            for field in RECORD_SCHEMA
        }
        del parts
        # Contradictions are looked for only among well-formed rows: a malformed row has no meaning.
        grouping = group_subjects(columns["subject_id"])
        # The ids are held once each, as the dictionary of their grouping, not once per record.
        columns["subject_id"] = pa.DictionaryArray.from_arrays(
            pa.array(grouping.group, pa.int32()), grouping.subjects
        )
        validated = pa.Table.from_arrays(list(columns.values()), schema=RECORD_SCHEMA)
        del columns
        problems[("subject_id", "contradictory")] += contradictory_subjects(validated, grouping)
        problems = +problems
    if problems:
        raise ConsentRegistryError(
            [
                f"consent registry {source} is malformed: {problem}; fix or remove those rows"
                for problem in _describe_problems(problems)
            ]
        )
    return ConsentRegistry(source, validated, grouping)


def contradictory_subjects(records: pa.Table, grouping: SubjectGrouping | None = None) -> int:
    """How many subjects have records that contradict each other.

    Two records of one subject contradict when they are the same permission but disagree on when it
    ends: the same basis, the same purposes (as PurposeOfUse codes) and the same ``granted_at`` but a
    different ``expires_at`` or ``revoked_at``; or the same non-empty ``reference`` (one document) but a
    different basis, purposes, ``granted_at``, ``expires_at`` or ``revoked_at``. Exact duplicates are one
    record, and two documents with the same terms (differing only in ``reference``) are no contradiction.

    Candidates are found with 64-bit hashes of the keys, compared against the exact end dates (a key
    collision can only add a candidate, never hide one); each candidate subject's records are then
    checked exactly. Only the document rule compares its terms by a 64-bit hash, which could hide a
    contradiction with a chance of about 2^-64 per pair of records of one document.

    :param records: validated records (:data:`RECORD_SCHEMA`).
    :param grouping: the records grouped by subject, when ids are normalised otherwise than trimmed.
    """
    grouping = grouping if grouping is not None else group_subjects(records.column("subject_id"))
    group = grouping.group
    # A subject with a single record cannot contradict itself: only the others are looked at.
    several = np.bincount(group, minlength=len(grouping.subjects))[group] > 1
    if not several.any():
        return 0
    if not several.all():
        chosen = pa.array(several)
        records, group = records.filter(chosen), group[several]
    del several

    # Exact words to hash: the subject's group and granted_at in one, the basis and the purpose codes
    # (13 bits) in another; both end dates in a third, compared exactly, never hashed. Built in place,
    # so that a few arrays of one word per record are alive at a time.
    key = group.astype(np.uint64)
    key <<= np.uint64(32)
    key |= _days(records.column("granted_at"))
    _mix(key, in_place=True)
    terms = np.asarray(_numpy(records.column("basis")), dtype=np.uint64)
    terms <<= np.uint64(_MASK_BITS)
    terms |= _numpy(records.column("purpose_mask")).astype(np.uint64)
    key ^= terms
    del terms
    _mix(key, in_place=True)
    ends = _days(records.column("expires_at"))
    ends <<= np.uint64(32)
    ends |= _days(records.column("revoked_at"))
    candidates = [_candidate_groups(key, ends, group)]
    del key, ends

    has_reference = records.column("reference").is_valid().to_numpy(zero_copy_only=False)
    if has_reference.any():
        referenced = records.column("reference")
        if not has_reference.all():
            referenced = referenced.filter(pa.array(has_reference))
        document = _mix(group[has_reference].astype(np.uint64) ^ np.uint64(0x29), in_place=True)
        document ^= hash_text(referenced, seed=1)
        _mix(document, in_place=True)
        # Any repetition of one document in one subject is checked exactly: its terms are not hashed,
        # so no collision can hide a contradiction (exact duplicates only cost the exact check).
        candidates.append(_candidate_groups(document, None, group[has_reference]))
        del referenced, document

    suspects = np.unique(np.concatenate(candidates))
    if not len(suspects):
        return 0
    chosen = pa.array(np.isin(group, suspects))
    subset = records.filter(chosen).set_column(0, "subject_id", pa.array(group).filter(chosen))
    return _exact_contradictions(subset)


def _exact_contradictions(records: pa.Table) -> int:
    """The rule of :func:`contradictory_subjects`, on few records, with exact Arrow group_by."""
    keys = ["subject_id", "basis", "purpose_mask", "granted_at"]
    ends = ["expires_at", "revoked_at"]
    same_terms = records.select(keys + ends).group_by(keys + ends, use_threads=False).aggregate([])
    by_terms = same_terms.group_by(keys, use_threads=False).aggregate([([], "count_all")])
    flagged = [by_terms.filter(pc.greater(by_terms.column("count_all"), 1)).column("subject_id")]

    referenced = records.filter(pc.is_valid(records.column("reference")))
    terms = ["basis", "purpose_mask", "granted_at", *ends]
    same_document = referenced.group_by(["subject_id", "reference", *terms], use_threads=False).aggregate([])
    by_document = same_document.group_by(["subject_id", "reference"], use_threads=False).aggregate(
        [([], "count_all")]
    )
    flagged.append(by_document.filter(pc.greater(by_document.column("count_all"), 1)).column("subject_id"))
    kind = records.schema.field("subject_id").type
    return pc.count_distinct(pa.chunked_array([*flagged[0].chunks, *flagged[1].chunks], kind)).as_py()


@dataclass(frozen=True)
class SubjectGrouping:
    """The records of a registry grouped by subject id, exactly.

    :param subjects: the distinct ids, in order of first appearance.
    :param group: per record (in the registry's order), the position of its id in ``subjects``
        (``int32``).
    """

    subjects: pa.Array
    group: np.ndarray

    @cached_property
    def order(self) -> np.ndarray:
        """The records sorted by group, stably (computed on first use)."""
        return np.argsort(self.group, kind="stable")

    @cached_property
    def starts(self) -> np.ndarray:
        """Where each group begins in :attr:`order` (computed on first use)."""
        return np.concatenate([[0], np.cumsum(np.bincount(self.group, minlength=len(self.subjects)))[:-1]])


def group_subjects(subject_ids: pa.Array | pa.ChunkedArray) -> SubjectGrouping:
    """Group records by their subject ids (null as empty), exactly, in one hash pass.

    :param subject_ids: one id per record.
    """
    # Arrow's dictionary encoding compares the ids themselves, so no hash of ours has to be verified,
    # and no sort is needed: the per-subject decision reduces over the group codes directly.
    # Known shortcoming: it is the largest single cost of a registry at scale, and what keeps the peak
    # memory of benchmarks/consent_scale.py above 2 GB: for 10 million permissions (5 million subjects)
    # about 3 s on the shared 2-core machine and about 0.9 GB of resident memory above the validated
    # columns (its hash table and growing dictionary). A numpy grouping by hash_text and one stable sort,
    # tried, was slower and saved little, since taking the distinct ids out of a chunked column copies
    # it; a chunk-aware take of the first occurrences would be the next thing to try.
    subject_ids = subject_ids.cast(pa.string())
    if subject_ids.null_count:
        subject_ids = pc.fill_null(subject_ids, "")
    encoded = pc.dictionary_encode(subject_ids)
    if isinstance(encoded, pa.Array):
        return SubjectGrouping(subjects=encoded.dictionary, group=encoded.indices.to_numpy())
    # The chunks of a chunked encoding share one dictionary, the last chunk's being complete.
    chunks = encoded.chunks
    return SubjectGrouping(
        subjects=chunks[-1].dictionary if chunks else pa.array([], pa.string()),
        group=np.concatenate([chunk.indices.to_numpy() for chunk in chunks])
        if chunks
        else np.zeros(0, dtype=np.int32),
    )


def hash_text(values: pa.Array | pa.ChunkedArray, seed: int = 0) -> np.ndarray:
    """A 64-bit hash per text value (its UTF-8 bytes and length; null as empty), computed with numpy.

    Not a cryptographic hash: it groups and looks up ids, and every match it proposes is verified on
    the text itself.

    :param values: text values.
    :param seed: varies the hash.
    """
    values = values.cast(pa.string())
    if values.null_count:
        values = pc.fill_null(values, "")
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    hashes = np.empty(len(values), dtype=np.uint64)
    at = 0
    for chunk in chunks:
        for start in range(0, len(chunk), _HASH_CHUNK):
            part = chunk.slice(start, _HASH_CHUNK)
            hashes[at : at + len(part)] = _hash_chunk(part, seed)
            at += len(part)
    return hashes


def _hash_chunk(values: pa.Array, seed: int) -> np.ndarray:
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False).astype(np.uint64)
    hashes = _mix(lengths * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed))
    longest = int(lengths.max()) if len(values) else 0
    if not longest:
        return hashes
    width = -(-longest // 8) * 8
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[
        values.offset : values.offset + len(values) + 1
    ]
    if not values.null_count and int(offsets[-1] - offsets[0]) == longest * len(values):
        # Ids of one length (UUIDs, fixed-format numbers) already lie in one block of bytes: padded with
        # zeros in numpy, they give the very words of the general path without a padded copy in Arrow.
        data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        block = np.zeros((len(values), width), dtype=np.uint8)
        block[:, :longest] = data.reshape(len(values), longest)
        for word in block.view("<u8").T:
            hashes = _mix(hashes ^ word)
        return hashes
    # Padded to one width, ASCII ids lie in one (rows x width) block of bytes, read as 64-bit words.
    padded = pc.utf8_rpad(values, width=width, padding="\x00")
    data = padded.buffers()[2]
    if data is not None and data.size >= len(values) * width:
        first = np.frombuffer(padded.buffers()[1], dtype=np.int32)[padded.offset]
        block = np.frombuffer(data, dtype=np.uint8)[first : first + len(values) * width]
        if block.size == len(values) * width and _uniform(padded, width):
            words = block.view("<u8").reshape(len(values), width // 8)
            for column in range(words.shape[1]):
                # Only a value's own words count, so that its hash does not depend on its neighbours.
                hashes = np.where(lengths > np.uint64(8 * column), _mix(hashes ^ words[:, column]), hashes)
            return hashes
    return _hash_bytes(values, hashes)


def _uniform(padded: pa.Array, width: int) -> bool:
    """Whether every padded value is exactly ``width`` bytes (false when some id is not ASCII)."""
    offsets = np.frombuffer(padded.buffers()[1], dtype=np.int32)[
        padded.offset : padded.offset + len(padded) + 1
    ]
    return bool(np.all(np.diff(offsets) == width))


def _hash_bytes(values: pa.Array, hashes: np.ndarray) -> np.ndarray:
    """The slow path of :func:`hash_text` for ids with multi-byte characters: byte by byte."""
    values = values.cast(pa.large_string())
    count = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset : values.offset + count + 1]
    data = values.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None and data.size else np.zeros(1, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    last = len(data) - 1
    for word_start in range(0, int(lengths.max()), 8):
        word = np.zeros(count, dtype=np.uint64)
        for byte in range(8):
            at = word_start + byte
            inside = at < lengths
            taken = data[np.minimum(starts + at, last)].astype(np.uint64)
            word |= np.where(inside, taken, np.uint64(0)) << np.uint64(8 * byte)
        hashes = np.where(lengths > word_start, _mix(hashes ^ word), hashes)
    return hashes


def _mix(values: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """The splitmix64 finaliser: spreads every input bit over the whole word (wrapping arithmetic).

    :param values: 64-bit words.
    :param in_place: overwrite ``values`` instead of returning a new array.
    """
    # In place on one array: each step would otherwise allocate a temporary of the whole input.
    if in_place:
        values ^= values >> np.uint64(30)
    else:
        values = values ^ (values >> np.uint64(30))
    values *= np.uint64(0xBF58476D1CE4E5B9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94D049BB133111EB)
    values ^= values >> np.uint64(31)
    return values


def _numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A null-free Arrow array as one numpy array."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_numpy(zero_copy_only=False)


def _days(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A date column as day numbers in 32 bits (null as a day no date has), held in 64-bit words."""
    days = pc.fill_null(column.cast(pa.int32()), np.iinfo(np.int32).min)
    days = np.ascontiguousarray(days.to_numpy(zero_copy_only=False), dtype=np.int32)
    return days.view(np.uint32).astype(np.uint64)


def _candidate_groups(keys: np.ndarray, values: np.ndarray | None, groups: np.ndarray) -> np.ndarray:
    """Groups with two records of one key hash but different values (any two, without values)."""
    if len(keys) < 2:
        return np.zeros(0, dtype=groups.dtype)
    # Most registries hold no two records of one key at all: one sort of the keys alone shows it, and
    # only the records of repeated keys go through the sort with their values.
    ordered = np.sort(keys)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    del ordered
    if not len(repeated):
        return np.zeros(0, dtype=groups.dtype)
    chosen = np.isin(keys, repeated)
    if values is None:
        return np.unique(groups[chosen])
    keys, values, groups = keys[chosen], values[chosen], groups[chosen]
    order = np.argsort(keys, kind="stable")
    keys, values, groups = keys[order], values[order], groups[order]
    first = np.concatenate([[True], keys[1:] != keys[:-1]])
    starts = np.flatnonzero(first)
    differing = np.minimum.reduceat(values, starts) != np.maximum.reduceat(values, starts)
    run = np.cumsum(first) - 1
    return np.unique(groups[differing[run]])


def _required_columns(table: pa.Table, source: str) -> dict[str, pa.Array]:
    """Every required column as one Arrow array, or a refusal naming the missing and mistyped ones."""
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

    columns: dict[str, pa.Array] = {}
    mistyped: list[str] = []
    for name in REGISTRY_COLUMNS:
        original = table.column(names.index(name))
        # Chunk by chunk, never combined: a combined copy of every column would double the memory.
        column = _typed_column(name, original)
        if column is None:
            mistyped.append(f"{name} ({original.type})")
        else:
            columns[name] = column
    if mistyped:
        raise ConsentRegistryError(
            [
                f"consent registry {source} has column(s) of the wrong type: {', '.join(mistyped)}; "
                "subject_id is text or integers, purposes a list of text, dates are dates, timestamps "
                "or ISO text, the others text"
            ]
        )
    return columns


def _typed_column(name: str, column: pa.Array) -> pa.Array | None:
    """A column decoded to the type its checks expect, or None when its Arrow type cannot hold it."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_null(kind):
        return column
    if name == "subject_id" and pa.types.is_integer(kind):
        return column.cast(pa.string())
    if name == "purposes":
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            item = kind.value_type
            if is_text(item) or pa.types.is_null(item):
                return column
        return None
    if name in _DATE_COLUMNS and pa.types.is_timestamp(kind):
        # The calendar date as recorded: the wall clock of the column's zone, never a conversion to UTC.
        if kind.tz is not None:
            column = pc.local_timestamp(column)
        return column.cast(pa.date32())
    if name in _DATE_COLUMNS and pa.types.is_date(kind):
        return column.cast(pa.date32())
    return column if is_text(kind) else None


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text or all-null column as ``string``."""
    return column.cast(pa.string())


def _trimmed(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text trimmed of whitespace; a chunk that had none to trim keeps its own buffers (no copy)."""
    chunks = []
    for chunk in column.chunks:
        trimmed = pc.utf8_trim_whitespace(chunk)
        chunks.append(chunk if _text_bytes(trimmed) == _text_bytes(chunk) else trimmed)
    return pa.chunked_array(chunks, column.type)


def _text_bytes(chunk: pa.Array) -> int:
    """How many bytes of text a ``string`` array holds, from its offsets."""
    if not len(chunk):
        return 0
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)
    return int(offsets[chunk.offset + len(chunk)]) - int(offsets[chunk.offset])


def _subject_column(column: pa.ChunkedArray, problems: Counter[tuple[str, str]]) -> pa.ChunkedArray:
    trimmed = _trimmed(_as_text(column))
    empty = pc.fill_null(pc.equal(pc.binary_length(trimmed), 0), True)
    problems[("subject_id", "empty")] += pc.sum(empty).as_py() or 0
    return trimmed


def _basis_column(column: pa.ChunkedArray, problems: Counter[tuple[str, str]]) -> pa.ChunkedArray:
    text = _as_text(column)
    spellings = pa.array([basis.value for basis in _BASES])
    basis = pc.index_in(text, value_set=spellings)
    if basis.null_count:
        # Only a column with a miss pays for trimming.
        basis = pc.index_in(pc.utf8_trim_whitespace(text), value_set=spellings)
    problems[("basis", "unknown")] += basis.null_count
    return basis.cast(pa.int8())


def _purpose_columns(
    column: pa.ChunkedArray, basis: pa.ChunkedArray, problems: Counter[tuple[str, str]]
) -> tuple[pa.ChunkedArray, pa.Array]:
    """The purposes as recorded (trimmed, blanks dropped) and, per record, the mask of their codes."""
    if pa.types.is_null(column.type):
        column = pa.chunked_array([pa.nulls(len(column), pa.list_(pa.string()))])
    column = column.cast(pa.list_(pa.string()))
    opt_out = pc.fill_null(pc.equal(basis, _BASES.index(ConsentBasis.OPT_OUT)), False)
    opt_out = opt_out.combine_chunks().to_numpy(zero_copy_only=False)
    spellings, masks = token_table()
    spellings, masks = pa.array(spellings, pa.string()), np.asarray(masks, dtype=np.int16)

    purposes, purpose_masks, start = [], [], 0
    for chunk in column.chunks:
        kept, purpose_mask, unknown, empty = _purpose_chunk(chunk, spellings, masks, opt_out[start:])
        purposes.append(kept)
        purpose_masks.append(purpose_mask)
        problems[("purposes", "unknown")] += unknown
        problems[("purposes", "empty")] += empty
        start += len(chunk)
    purpose_mask = np.concatenate(purpose_masks) if purpose_masks else np.zeros(0, dtype=np.int16)
    return pa.chunked_array(purposes, RECORD_SCHEMA.field("purposes").type), pa.array(
        purpose_mask, pa.int16()
    )


def _purpose_chunk(
    chunk: pa.ListArray, spellings: pa.Array, masks: np.ndarray, opt_out: np.ndarray
) -> tuple[pa.ListArray, np.ndarray, int, int]:
    """One chunk of :func:`_purpose_columns`: its purposes, masks, and counts of unknown and empty rows."""
    rows = len(chunk)
    parents = pc.list_parent_indices(chunk).to_numpy(zero_copy_only=False)
    tokens = pc.utf8_trim_whitespace(pc.list_flatten(chunk))
    kept = pc.fill_null(pc.greater(pc.binary_length(tokens), 0), False).to_numpy(zero_copy_only=False)
    if not kept.all():
        tokens, parents = tokens.filter(pa.array(kept)), parents[kept]

    positions = pc.index_in(tokens, value_set=spellings)
    unknown = pc.is_null(positions).to_numpy(zero_copy_only=False)
    token_masks = masks[pc.fill_null(positions, 0).to_numpy()]
    token_masks[unknown] = 0
    counts = np.bincount(parents, minlength=rows)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    # The codes of a record are the OR of its tokens' (parents ascend, so each record is one run).
    purpose_mask = np.zeros(rows, dtype=np.int16)
    listed = counts > 0
    if len(token_masks):
        purpose_mask[listed] = np.bitwise_or.reduceat(token_masks, offsets[:-1][listed])

    # An opt-out objects to every use, so it may list none; a grant that names no use permits none.
    empty = int(np.count_nonzero(~listed & ~opt_out[:rows]))
    # Every token of a valid registry is one of the vocabulary's spellings, so the purposes as recorded
    # are held as one-byte codes of that vocabulary rather than as text (an unknown token refuses the
    # registry, and its code is null).
    codes = pa.DictionaryArray.from_arrays(positions.cast(pa.int8()), spellings)
    kept_purposes = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), codes)
    return kept_purposes, purpose_mask, len(np.unique(parents[unknown])), empty


def _date_column(name: str, column: pa.Array, problems: Counter[tuple[str, str]]) -> pa.Array:
    """A date column as ``date32`` by the rule of this module, counting what cannot be read."""
    unparsable = 0
    if pa.types.is_null(column.type):
        dates = pa.nulls(len(column), pa.date32())
    elif pa.types.is_date32(column.type):
        dates = column
    else:
        text = pc.utf8_trim_whitespace(_as_text(column))
        text = pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, pa.string()), text)
        day = pc.utf8_slice_codeunits(text, 0, 10)
        parsed = pc.strptime(day, format="%Y-%m-%d", unit="s", error_is_null=True)
        # strptime rolls 2026-02-30 over into March; a date that does not read back as written is none.
        exact = pc.fill_null(pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), day), False)
        shaped = pc.fill_null(pc.match_substring_regex(text, _ISO_DATE_OR_TIMESTAMP), False)
        valid = pc.and_(shaped, exact)
        dates = pc.if_else(valid, parsed.cast(pa.date32()), pa.scalar(None, pa.date32()))
        unparsable = pc.sum(pc.and_(pc.is_valid(text), pc.invert(valid))).as_py() or 0
        problems[(name, "unparsable")] += unparsable
    if name == "granted_at":
        problems[(name, "missing")] += dates.null_count - unparsable
    return dates


def _describe_problems(problems: Mapping[tuple[str, str], int]) -> Iterable[str]:
    """One sentence per problem, with its count, in the order of the registry's columns."""
    order = {name: position for position, name in enumerate(REGISTRY_COLUMNS)}
    for (column, kind), count in sorted(
        problems.items(), key=lambda item: (order.get(item[0][0], 99), item[0][1] == "contradictory", item[0])
    ):
        if kind == "contradictory":
            yield f"{count} subject(s) {_problem_text(column, kind)}"
        else:
            yield f"{count} row(s) {_problem_text(column, kind)}"


def _problem_text(column: str, kind: str) -> str:
    bases = ", ".join(basis.value for basis in ConsentBasis)
    if column == "subject_id" and kind == "contradictory":
        return (
            "have contradictory records (the same basis, purposes and granted_at, or the same reference, "
            "with a different expiry or revocation)"
        )
    if column == "subject_id":
        return "have an empty subject_id"
    if column == "basis":
        return f"have a missing or unknown basis (expected one of {bases})"
    if column == "purposes" and kind == "unknown":
        return f"list a purpose outside the vocabulary ({vocabulary_hint()})"
    if column == "purposes":
        return "list no purposes (a grant lists at least one, ';'-separated in CSV)"
    if column in _DATE_COLUMNS and kind == "before_granted":
        return f"have {column} before granted_at"
    if column == "granted_at" and kind == "missing":
        return "have no granted_at"
    return f"have an unparsable date in {column} (expected an ISO 8601 date or timestamp)"
