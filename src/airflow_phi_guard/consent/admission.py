"""The admission rules: which rows of a dataset a consent registry admits for a purpose at an as-of date.

A row is admitted when its subject has a record whose basis the policy accepts, whose purposes include
the policy's purpose, with ``granted_at <= as_of``, ``as_of < expires_at`` (or no expiry) and
``as_of < revoked_at`` (or no revocation), and the subject has no opt-out in force. An opt-out is in
force when it was granted at or before the as-of date and not revoked by then (``as_of < revoked_at``);
it beats every grant. An opt-out's purposes and expiry are not consulted: an objection covers every use
and does not lapse by itself, so only a revocation ends it (fail closed).

Every excluded row is counted under one :class:`ExclusionReason`. The decision is taken once per subject,
when :class:`ConsentAdmission` is built; a batch is then admitted with vectorised ``pyarrow.compute``
calls, so the cost per row is a hash lookup.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import date, datetime
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc

from airflow_phi_guard.arrow_types import holds_ids
from airflow_phi_guard.consent.registry import ConsentRecord, ConsentRegistry
from airflow_phi_guard.policy.models import NON_ADMITTING_BASES, ConsentBasis


class ExclusionReason(StrEnum):
    """Why a row was not admitted, as the governance report counts it."""

    NO_SUBJECT_ID = "no-subject-id"
    NO_RECORD = "no-record"
    BASIS_NOT_ACCEPTED = "basis-not-accepted"
    PURPOSE_NOT_COVERED = "purpose-not-covered"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    OPTED_OUT = "opted-out"


#: The checks a grant goes through, in order; a record is excluded by the first one it fails, and among
#: several records that all fail, the one that got furthest names the subject's reason.
CHECK_ORDER = (
    ExclusionReason.BASIS_NOT_ACCEPTED,
    ExclusionReason.PURPOSE_NOT_COVERED,
    ExclusionReason.NOT_YET_VALID,
    ExclusionReason.EXPIRED,
    ExclusionReason.REVOKED,
)

# Decisions travel through Arrow as small integers: 0 admits, n > 0 is the n-th reason.
_REASONS = tuple(ExclusionReason)
_ADMITTED = 0
_CODE = {reason: position + 1 for position, reason in enumerate(_REASONS)}


def opt_out_in_force(record: ConsentRecord, as_of: date) -> bool:
    """Whether a record is an opt-out that excludes its subject at the as-of date.

    :param record: any record; only an ``opt-out`` can be in force.
    :param as_of: the date of the decision.
    """
    if record.basis is not ConsentBasis.OPT_OUT:
        return False
    return record.granted_at <= as_of and (record.revoked_at is None or as_of < record.revoked_at)


def record_exclusion(
    record: ConsentRecord, bases: Collection[ConsentBasis], purpose: str, as_of: date
) -> ExclusionReason | None:
    """The first check of :data:`CHECK_ORDER` that a single grant fails, or None when it admits.

    Opt-outs are not judged here (see :func:`opt_out_in_force`); as a grant, an opt-out's basis is never
    accepted, and neither is ``treatment-consent``, whatever ``bases`` says.

    :param record: the record to judge.
    :param bases: the bases the policy accepts.
    :param purpose: the policy's purpose.
    :param as_of: the date of the decision.
    """
    if record.basis in NON_ADMITTING_BASES or record.basis not in bases:
        return ExclusionReason.BASIS_NOT_ACCEPTED
    if purpose.strip() not in record.purposes:
        return ExclusionReason.PURPOSE_NOT_COVERED
    if as_of < record.granted_at:
        return ExclusionReason.NOT_YET_VALID
    if record.expires_at is not None and record.expires_at <= as_of:
        return ExclusionReason.EXPIRED
    if record.revoked_at is not None and record.revoked_at <= as_of:
        return ExclusionReason.REVOKED
    return None


def decide(
    records: Iterable[ConsentRecord], bases: Collection[ConsentBasis], purpose: str, as_of: date
) -> ExclusionReason | None:
    """Decide one subject from all of its records: None admits, otherwise the one reason it is excluded.

    The rule, in order:

    1. no record at all: ``no-record``;
    2. an opt-out in force: ``opted-out``, whatever else the subject granted;
    3. any record that passes every check of :data:`CHECK_ORDER`: admitted;
    4. otherwise the reason of the record that got furthest through the checks (basis, then purpose,
       then not-yet-valid, then expired, then revoked), so that an expired research authorization for
       the right purpose reports ``expired`` rather than a treatment consent's ``basis-not-accepted``.

    :param records: the subject's records.
    :param bases: the bases the policy accepts.
    :param purpose: the policy's purpose.
    :param as_of: the date of the decision.
    """
    records = tuple(records)
    if not records:
        return ExclusionReason.NO_RECORD
    if any(opt_out_in_force(record, as_of) for record in records):
        return ExclusionReason.OPTED_OUT

    furthest: ExclusionReason | None = None
    for record in records:
        reason = record_exclusion(record, bases, purpose, as_of)
        if reason is None:
            return None
        if furthest is None or CHECK_ORDER.index(reason) > CHECK_ORDER.index(furthest):
            furthest = reason
    return furthest


class ConsentAdmission:
    """The decisions of one registry for one policy's bases and purpose at one as-of date.

    :param registry: the consent records.
    :param bases: the bases the policy accepts; ``treatment-consent`` and ``opt-out`` are refused.
    :param purpose: the policy's purpose, matched exactly against each record's purposes.
    :param as_of: the date of the decision; a ``datetime`` counts on its calendar date as recorded.
    :raises ValueError: no basis, a basis that cannot admit, or an empty purpose.
    """

    def __init__(
        self, registry: ConsentRegistry, bases: Iterable[ConsentBasis], purpose: str, as_of: date
    ) -> None:
        self.registry = registry
        self.bases = frozenset(ConsentBasis(basis) for basis in bases)
        self.purpose = purpose.strip()
        self.as_of = as_of.date() if isinstance(as_of, datetime) else as_of
        self._check_arguments()

        # Subjects are grouped by the same Arrow trim that admit() applies to the dataset, so that a
        # registry id and a dataset id match exactly when they are equal after that trim.
        trimmed = pc.utf8_trim_whitespace(pa.array(registry.subject_ids, pa.string())).to_pylist()
        grouped: dict[str, list[ConsentRecord]] = {}
        for subject_id, key in zip(registry.subject_ids, trimmed, strict=True):
            grouped.setdefault(key, []).extend(registry.records_for(subject_id))
        self._decisions = {
            key: decide(records, self.bases, self.purpose, self.as_of) for key, records in grouped.items()
        }

        self._subject_ids = pa.array(list(self._decisions), pa.string())
        self._codes = pa.array(
            [_ADMITTED if reason is None else _CODE[reason] for reason in self._decisions.values()], pa.int8()
        )

    def _check_arguments(self) -> None:
        if not self.bases:
            raise ValueError("no consent basis is accepted, so no row could be admitted")
        refused = sorted(basis.value for basis in self.bases & NON_ADMITTING_BASES)
        if refused:
            raise ValueError(f"{', '.join(refused)} cannot admit a record for training")
        if not self.purpose:
            raise ValueError("the purpose is empty")

    def decision_for(self, subject_id: str) -> ExclusionReason | None:
        """The decision for one subject: None admits; unknown or blank ids get their reason.

        :param subject_id: the subject, compared after trimming whitespace.
        """
        mask, counts = self.admit(pa.array([subject_id], pa.string()))
        return None if mask[0].as_py() else next(iter(counts))

    def admit(
        self, subjects: pa.Array | pa.ChunkedArray
    ) -> tuple[pa.BooleanArray, dict[ExclusionReason, int]]:
        """Admit the rows of a batch by their subject column.

        :param subjects: the subject column, text or integers (integers compare as their decimal text).
        :returns: a mask, true where a row is admitted (never null), and the number of excluded rows
            per reason, in the order of :class:`ExclusionReason`, listing only reasons that occurred.
        :raises TypeError: the column is neither text nor integers.
        """
        text = _subject_text(subjects)

        trimmed = pc.utf8_trim_whitespace(text)
        blank = pc.fill_null(pc.equal(pc.utf8_length(trimmed), 0), True)
        positions = pc.index_in(trimmed, value_set=self._subject_ids)
        codes = pc.fill_null(pc.take(self._codes, positions), _CODE[ExclusionReason.NO_RECORD])
        codes = pc.if_else(blank, pa.scalar(_CODE[ExclusionReason.NO_SUBJECT_ID], pa.int8()), codes)

        mask = pc.equal(codes, pa.scalar(_ADMITTED, pa.int8()))
        found = {entry["values"]: entry["counts"] for entry in pc.value_counts(codes).to_pylist()}
        counts = {reason: found[_CODE[reason]] for reason in _REASONS if _CODE[reason] in found}
        return mask, counts


def _subject_text(subjects: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The subject column as one string array, refusing types whose text form would be a guess."""
    if isinstance(subjects, pa.ChunkedArray):
        subjects = subjects.combine_chunks()
    kind = subjects.type
    if pa.types.is_dictionary(kind):
        subjects = subjects.cast(kind.value_type)
        kind = subjects.type
    if not (holds_ids(kind) or pa.types.is_null(kind)):
        raise TypeError(f"the subject column must hold text or integers, not {kind}")
    return subjects.cast(pa.string())
