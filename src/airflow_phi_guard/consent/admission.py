"""The admission rules: which rows of a dataset a consent registry admits for a purpose at an as-of date.

A row is admitted when its subject has a record whose basis the policy accepts, whose purposes cover the
policy's purpose (:mod:`airflow_phi_guard.consent.purposes`), with ``granted_at <= as_of``,
``as_of < expires_at`` (or no expiry) and ``as_of < revoked_at`` (or no revocation), and the subject has
no opt-out in force. An opt-out is in force when it was granted at or before the as-of date and not
revoked by then (``as_of < revoked_at``); it beats every grant. An opt-out's purposes and expiry are not
consulted: an objection covers every use and does not lapse by itself, so only a revocation ends it
(fail closed). With several records per subject, any valid grant admits, any opt-out in force excludes,
and a revocation ends only the record it is written on, so a newer grant after it admits again. Dates
compare by the registry's rule, the calendar date as recorded
(:data:`~airflow_phi_guard.consent.registry.DATE_RULE`).

:func:`decide` states the rule for one subject's :class:`ConsentRecord` objects, to be read and tested;
:class:`ConsentAdmission` applies the same rule to a whole registry at once with ``pyarrow.compute``
and numpy (a score per record, then one maximum per subject over the registry's subject grouping), and
admits the rows of each batch through a hash table of the registry's subjects built once, so that a
batch costs in proportion to its own rows. Subject ids on both sides
are normalised the same way (:func:`normalize_subject_ids`, the policy's ``consent.subject_ids``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_phi_guard.arrow_types import holds_ids
from airflow_phi_guard.consent.purposes import codes_mask, covering_codes, purpose_code
from airflow_phi_guard.consent.registry import (
    ConsentRecord,
    ConsentRegistry,
    SubjectGrouping,
    contradictory_subjects,
    hash_text,
)
from airflow_phi_guard.exceptions import ConsentRegistryError
from airflow_phi_guard.policy.models import (
    NON_ADMITTING_BASES,
    ConsentBasis,
    DigitIds,
    SubjectIdNormalization,
    UuidCase,
)


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

#: The default normalisation of subject ids: trimmed, UUIDs case-folded, digits compared as written.
DEFAULT_NORMALIZATION = SubjectIdNormalization()

# Decisions travel as small integers: 0 admits, n > 0 is the n-th reason.
_REASONS = tuple(ExclusionReason)
_ADMITTED = 0
_CODE = {reason: position + 1 for position, reason in enumerate(_REASONS)}
# A record's stage is how many checks of CHECK_ORDER it passed; a grant that passed all admits.
_ALL_PASSED = len(CHECK_ORDER)
_STAGE_REASON = np.array([_CODE[reason] for reason in CHECK_ORDER] + [_ADMITTED], dtype=np.int8)
_NO_RANK = np.int8(127)
# A record's score folds its decision into one number, so that one maximum per subject decides it: a
# stage of CHECK_ORDER below _ADMITTING, an admitting grant from _ADMITTING on (the earlier its basis in
# the policy's order, the higher), an opt-out in force above everything.
_ADMITTING = np.int8(16)
_OPTED_OUT_SCORE = np.int8(100)
_BASES = tuple(ConsentBasis)
# A slot of the subject index: a subject's hash and its position + 1 (0 marks an empty slot).
_SLOT = np.dtype([("hash", "<u8"), ("position", "<u8")])
_UUID = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"


def opt_out_in_force(record: ConsentRecord, as_of: date) -> bool:
    """Whether a record is an opt-out that excludes its subject at the as-of date.

    :param record: any record; only an ``opt-out`` can be in force.
    :param as_of: the date of the decision.
    """
    if record.basis is not ConsentBasis.OPT_OUT:
        return False
    return record.granted_at <= as_of and (record.revoked_at is None or as_of < record.revoked_at)


def record_exclusion(
    record: ConsentRecord,
    bases: Collection[ConsentBasis],
    purpose: str,
    as_of: date,
    covering: Collection[str] | None = None,
) -> ExclusionReason | None:
    """The first check of :data:`CHECK_ORDER` that a single grant fails, or None when it admits.

    Opt-outs are not judged here (see :func:`opt_out_in_force`); as a grant, an opt-out's basis is never
    accepted, and neither is ``treatment-consent``, whatever ``bases`` says.

    :param record: the record to judge.
    :param bases: the bases the policy accepts.
    :param purpose: the policy's purpose.
    :param as_of: the date of the decision.
    :param covering: the PurposeOfUse codes that cover the purpose; by default the vocabulary's.
    """
    covering = covering_codes(purpose) if covering is None else covering
    if record.basis in NON_ADMITTING_BASES or record.basis not in bases:
        return ExclusionReason.BASIS_NOT_ACCEPTED
    if not any(purpose_code(item) in covering for item in record.purposes):
        return ExclusionReason.PURPOSE_NOT_COVERED
    if as_of < record.granted_at:
        return ExclusionReason.NOT_YET_VALID
    if record.expires_at is not None and record.expires_at <= as_of:
        return ExclusionReason.EXPIRED
    if record.revoked_at is not None and record.revoked_at <= as_of:
        return ExclusionReason.REVOKED
    return None


def decide(
    records: Iterable[ConsentRecord],
    bases: Collection[ConsentBasis],
    purpose: str,
    as_of: date,
    covering: Collection[str] | None = None,
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
    :param covering: the PurposeOfUse codes that cover the purpose; by default the vocabulary's.
    """
    records = tuple(records)
    covering = covering_codes(purpose) if covering is None else covering
    if not records:
        return ExclusionReason.NO_RECORD
    if any(opt_out_in_force(record, as_of) for record in records):
        return ExclusionReason.OPTED_OUT

    furthest: ExclusionReason | None = None
    for record in records:
        reason = record_exclusion(record, bases, purpose, as_of, covering)
        if reason is None:
            return None
        if furthest is None or CHECK_ORDER.index(reason) > CHECK_ORDER.index(furthest):
            furthest = reason
    return furthest


def normalize_subject_ids(
    subjects: pa.Array | pa.ChunkedArray, rule: SubjectIdNormalization = DEFAULT_NORMALIZATION
) -> pa.Array:
    """Subject ids in the form in which the dataset and the registry are compared.

    Always trimmed of whitespace, integers as their decimal text; then, by the rule, ids in the 8-4-4-4-12
    hex form of a UUID in lower case (``uuid_case: fold``), and ids of digits only without leading zeros
    (``digits: integer``, so ``00042`` is ``42``; ``0`` stays ``0``). Null stays null.

    :param subjects: text or integer ids.
    :param rule: the policy's normalisation.
    :raises TypeError: the ids are neither text nor integers.
    """
    text = pc.utf8_trim_whitespace(_subject_text(subjects))
    if rule.uuid_case is UuidCase.FOLD:
        # Only an id with an upper-case ASCII letter can change, so the UUID pattern runs only when the
        # column has one (lower-case UUIDs, the common form, cost one comparison).
        lowered = pc.ascii_lower(text)
        if not pc.all(pc.fill_null(pc.equal(lowered, text), True)).as_py():
            is_uuid = pc.fill_null(pc.match_substring_regex(text, _UUID), False)
            text = pc.if_else(is_uuid, lowered, text)
    if rule.digits is DigitIds.INTEGER and pc.any(pc.starts_with(text, "0")).as_py():
        text = pc.replace_substring_regex(text, pattern=r"^0+(\d+)$", replacement=r"\1")
    return text


@dataclass(frozen=True)
class AdmissionCounts:
    """What an admission decided over the batches it was given so far: counts only, never ids.

    :param rows_admitted: rows admitted.
    :param rows_excluded: excluded rows per reason, in the order of :class:`ExclusionReason`, listing
        only reasons that occurred.
    :param rows_matched: rows whose subject has a record in the registry, admitted or not.
    :param admitted_rows_by_basis: admitted rows per basis of the grant that admitted them; when several
        grants of a subject admit, the basis listed first among the policy's bases counts.
    :param admitted_subjects_by_basis: distinct registry subjects seen in the dataset and admitted, by
        the same basis.
    :param subjects_seen: distinct registry subjects that occurred in the dataset.
    :param registry_subjects: distinct subjects of the registry, after normalisation.
    """

    rows_admitted: int
    rows_excluded: dict[ExclusionReason, int]
    rows_matched: int
    admitted_rows_by_basis: dict[ConsentBasis, int]
    admitted_subjects_by_basis: dict[ConsentBasis, int]
    subjects_seen: int
    registry_subjects: int

    @property
    def subjects_admitted(self) -> int:
        """Distinct registry subjects seen in the dataset and admitted."""
        return sum(self.admitted_subjects_by_basis.values())


class ConsentAdmission:
    """The decisions of one registry for one policy's bases and purpose at one as-of date.

    Built once per run; :meth:`admit` is then called per batch and accumulates the counts of
    :meth:`counts` and the seen subjects of :meth:`admitted_subjects` (one flag per registry subject,
    not a set of ids, so memory does not grow with the dataset).

    :param registry: the consent records.
    :param bases: the bases the policy accepts, in the policy's order (which names the basis of a subject
        admitted by several); ``treatment-consent`` and ``opt-out`` are refused.
    :param purpose: the policy's purpose, a product name or a PurposeOfUse code.
    :param as_of: the date of the decision; a ``datetime`` counts on its calendar date as recorded.
    :param purposes_covering: purposes the policy explicitly accepts as covering its own, beyond the
        vocabulary's default (``consent.purposes_covering``).
    :param subject_ids: the normalisation of subject ids (``consent.subject_ids``), on both sides.
    :raises ValueError: no basis, a basis that cannot admit, an empty purpose or one outside the
        vocabulary.
    :raises ConsentRegistryError: the normalisation makes records of the registry contradict each other.
    """

    def __init__(
        self,
        registry: ConsentRegistry,
        bases: Iterable[ConsentBasis],
        purpose: str,
        as_of: date,
        *,
        purposes_covering: Iterable[str] = (),
        subject_ids: SubjectIdNormalization = DEFAULT_NORMALIZATION,
    ) -> None:
        self.registry = registry
        self.bases_in_order = tuple(dict.fromkeys(ConsentBasis(basis) for basis in bases))
        self.bases = frozenset(self.bases_in_order)
        self.purpose = purpose.strip()
        self.as_of = as_of.date() if isinstance(as_of, datetime) else as_of
        self.normalization = subject_ids
        self._check_arguments()
        self.covering = covering_codes(self.purpose, purposes_covering)

        grouping, score = self._record_checks()
        # Per subject, the highest score of its records: any opt-out in force, else the admitting grant
        # of the policy's earliest basis, else the furthest stage; one unbuffered maximum, no sort.
        best = np.zeros(len(grouping.subjects), dtype=np.int8)
        np.maximum.at(best, grouping.group, score)
        del score
        opted = best == _OPTED_OUT_SCORE
        admitted = (best >= _ADMITTING) & ~opted
        stage_reason = _STAGE_REASON[np.minimum(best, _ALL_PASSED)]
        self._subject_ids = grouping.subjects
        self._codes = np.where(
            opted, np.int8(_CODE[ExclusionReason.OPTED_OUT]), np.where(admitted, _ADMITTED, stage_reason)
        ).astype(np.int8)
        self._ranks = np.where(admitted, _ADMITTING + len(self.bases_in_order) - 1 - best, _NO_RANK).astype(
            np.int8
        )
        del best, opted, admitted, stage_reason
        self._index = _SubjectIndex(grouping.subjects)

        self._seen = np.zeros(len(self._subject_ids), dtype=bool)
        self._rows_by_code = np.zeros(len(_REASONS) + 1, dtype=np.int64)
        self._rows_by_rank = np.zeros(len(self.bases_in_order), dtype=np.int64)
        self._rows_matched = 0

    def _check_arguments(self) -> None:
        if not self.bases:
            raise ValueError("no consent basis is accepted, so no row could be admitted")
        refused = sorted(basis.value for basis in self.bases & NON_ADMITTING_BASES)
        if refused:
            raise ValueError(f"{', '.join(refused)} cannot admit a record for training")
        if not self.purpose:
            raise ValueError("the purpose is empty")

    def _record_checks(self) -> tuple[SubjectGrouping, np.ndarray]:
        """The records grouped by normalised subject, and per record its score (see ``_ADMITTING``)."""
        table = self.registry.table
        grouping = self.registry.grouping
        # The normalisation runs over the distinct ids, not over every record, and regroups the
        # records only when it changed an id.
        subjects = normalize_subject_ids(grouping.subjects, self.normalization)
        if len(subjects) and not pc.all(pc.equal(subjects, grouping.subjects)).as_py():
            encoded = pc.dictionary_encode(subjects)
            merged = SubjectGrouping(
                subjects=encoded.dictionary, group=encoded.indices.to_numpy()[grouping.group]
            )
            # Ids that were distinct as written may now be one subject, whose records can contradict.
            if len(merged.subjects) < len(grouping.subjects):
                contradictions = contradictory_subjects(table, merged)
                if contradictions:
                    raise ConsentRegistryError(
                        [
                            f"consent registry {self.registry.source} is malformed: {contradictions} "
                            "subject(s) have contradictory records once ids are normalised "
                            f"({self.normalization.rule}); fix those records or declare another "
                            "consent.subject_ids"
                        ]
                    )
            grouping = merged
        del subjects

        as_of = pa.scalar(self.as_of, pa.date32())
        basis = table.column("basis")
        granted, expires, revoked = (
            table.column(name) for name in ("granted_at", "expires_at", "revoked_at")
        )
        accepted = pa.array(
            [_BASES.index(basis) for basis in self.bases if basis not in NON_ADMITTING_BASES], pa.int8()
        )
        started = pc.less_equal(granted, as_of)
        not_revoked = pc.fill_null(pc.less(as_of, revoked), True)
        passes = [
            pc.is_in(basis, value_set=accepted),
            pc.not_equal(pc.bit_wise_and(table.column("purpose_mask"), codes_mask(self.covering)), 0),
            started,
            pc.fill_null(pc.less(as_of, expires), True),
            not_revoked,
        ]
        # The stage is the length of the run of passed checks from the first one.
        stage = np.zeros(len(basis), dtype=np.int8)
        passed_so_far = np.ones(len(basis), dtype=bool)
        for check in passes:
            passed_so_far &= _numpy(check)
            stage += passed_so_far
        opt_out = _numpy(pc.equal(basis, _BASES.index(ConsentBasis.OPT_OUT)))
        opted = opt_out & _numpy(started) & _numpy(not_revoked)

        score_of_basis = np.zeros(len(_BASES), dtype=np.int8)
        for position, accepted_basis in enumerate(self.bases_in_order):
            score_of_basis[_BASES.index(accepted_basis)] = (
                _ADMITTING + len(self.bases_in_order) - 1 - position
            )
        score = np.where(stage == _ALL_PASSED, score_of_basis[_numpy(basis).astype(np.intp)], stage)
        return grouping, np.where(opted, _OPTED_OUT_SCORE, score).astype(np.int8)

    def _codes_for(self, subjects: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """The decision code of every row, and the registry position of its subject (-1 when none)."""
        normalized = normalize_subject_ids(subjects, self.normalization)
        blank = pc.fill_null(pc.equal(pc.utf8_length(normalized), 0), True).to_numpy(zero_copy_only=False)
        positions = self._index.positions(normalized)
        positions[blank] = -1
        found = positions >= 0
        codes = np.full(len(positions), _CODE[ExclusionReason.NO_RECORD], dtype=np.int8)
        codes[found] = self._codes[positions[found]]
        codes[blank] = _CODE[ExclusionReason.NO_SUBJECT_ID]
        return codes, positions

    def decision_for(self, subject_id: str) -> ExclusionReason | None:
        """The decision for one subject, without counting it: None admits; unknown or blank ids get theirs.

        :param subject_id: the subject, normalised like any dataset id.
        """
        codes, _ = self._codes_for(pa.array([subject_id], pa.string()))
        code = int(codes[0])
        return None if code == _ADMITTED else _REASONS[code - 1]

    def admit(
        self, subjects: pa.Array | pa.ChunkedArray
    ) -> tuple[pa.BooleanArray, dict[ExclusionReason, int]]:
        """Admit the rows of a batch by their subject column, and add them to the counts.

        :param subjects: the subject column, text or integers (integers compare as their decimal text).
        :returns: a mask, true where a row is admitted (never null), and the number of excluded rows
            per reason, in the order of :class:`ExclusionReason`, listing only reasons that occurred.
        :raises TypeError: the column is neither text nor integers.
        """
        codes, positions = self._codes_for(subjects)
        found = positions >= 0
        admitted = codes == _ADMITTED

        self._seen[positions[found]] = True
        self._rows_matched += int(np.count_nonzero(found))
        by_code = np.bincount(codes, minlength=len(_REASONS) + 1)
        self._rows_by_code += by_code
        self._rows_by_rank += np.bincount(
            self._ranks[positions[admitted]], minlength=len(self.bases_in_order)
        )[: len(self.bases_in_order)]

        counts = {reason: int(by_code[_CODE[reason]]) for reason in _REASONS if by_code[_CODE[reason]]}
        return pa.array(admitted, pa.bool_()), counts

    def join_table(self) -> pa.Table:
        """The registry's subjects for admission by a join instead of :meth:`admit`: the normalised id
        (``subject``), its position (``position``) for :meth:`admit_joined`, and whether it is admitted
        (``admitted``). PHI, keep it in."""
        return pa.table(
            {
                "subject": self._subject_ids,
                "position": pa.array(np.arange(len(self._subject_ids), dtype=np.int64)),
                "admitted": pa.array(self._codes == _ADMITTED, pa.bool_()),
            }
        )

    def admit_joined(
        self, positions: np.ndarray, rows: np.ndarray, *, unmatched_rows: int, blank_rows: int
    ) -> dict[ExclusionReason, int]:
        """Add to the counts rows that a join with :meth:`join_table` admitted, as :meth:`admit` would.

        :param positions: registry positions that occurred, each once.
        :param rows: how many rows of the dataset had the subject at the same place of ``positions``.
        :param unmatched_rows: rows with an id the registry does not hold.
        :param blank_rows: rows without an id (missing, or blank once normalised).
        :returns: the number of excluded rows per reason, like :meth:`admit`.
        """
        positions = np.asarray(positions, dtype=np.intp)
        rows = np.asarray(rows, dtype=np.int64)
        codes = self._codes[positions]
        admitted = codes == _ADMITTED

        self._seen[positions] = True
        self._rows_matched += int(rows.sum())
        by_code = np.bincount(codes, weights=rows, minlength=len(_REASONS) + 1).astype(np.int64)
        by_code[_CODE[ExclusionReason.NO_RECORD]] += unmatched_rows
        by_code[_CODE[ExclusionReason.NO_SUBJECT_ID]] += blank_rows
        self._rows_by_code += by_code
        self._rows_by_rank += np.bincount(
            self._ranks[positions[admitted]], weights=rows[admitted], minlength=len(self.bases_in_order)
        )[: len(self.bases_in_order)].astype(np.int64)
        return {reason: int(by_code[_CODE[reason]]) for reason in _REASONS if by_code[_CODE[reason]]}

    def counts(self) -> AdmissionCounts:
        """The counts accumulated by :meth:`admit` so far."""
        admitted = self._seen & (self._codes == _ADMITTED)
        subjects_by_rank = np.bincount(self._ranks[admitted], minlength=len(self.bases_in_order))
        return AdmissionCounts(
            rows_admitted=int(self._rows_by_code[_ADMITTED]),
            rows_excluded={
                reason: int(self._rows_by_code[_CODE[reason]])
                for reason in _REASONS
                if self._rows_by_code[_CODE[reason]]
            },
            rows_matched=self._rows_matched,
            admitted_rows_by_basis={
                basis: int(self._rows_by_rank[rank]) for rank, basis in enumerate(self.bases_in_order)
            },
            admitted_subjects_by_basis={
                basis: int(subjects_by_rank[rank]) for rank, basis in enumerate(self.bases_in_order)
            },
            subjects_seen=int(np.count_nonzero(self._seen)),
            registry_subjects=len(self._subject_ids),
        )

    def admitted_subjects(self) -> pa.Array:
        """The normalised ids of registry subjects that :meth:`admit` saw and admitted; PHI, keep it in."""
        admitted = self._seen & (self._codes == _ADMITTED)
        return self._subject_ids.filter(pa.array(admitted, pa.bool_()))


class _SubjectIndex:
    """Positions of ids among the distinct registry subjects: a hash table built once, O(batch) lookups.

    ``pc.index_in`` would rebuild its hash table of every registry subject for each batch. This table
    holds each subject's 64-bit hash (:func:`~airflow_phi_guard.consent.registry.hash_text`) by linear
    probing from a home slot named by the hash's top bits, built with one sort and probed with
    vectorised numpy steps; a lookup costs a hash and a probe or two per row, then an exact comparison
    with the candidate's text, so a hash collision can never match the wrong subject. When two registry
    subjects share a hash under every seed tried, the index falls back to ``index_in`` per batch.

    :param subjects: the distinct subject ids.
    """

    # A load of at most 3/4 keeps the probe runs short (one or two probes on average).
    _LOAD = 0.75
    _SEEDS = 3

    def __init__(self, subjects: pa.Array) -> None:
        self._subjects = subjects
        self._seed = 0
        self._table: np.ndarray | None = None
        self._shift = np.uint64(0)
        if not len(subjects):
            return
        bits = max(4, int(np.ceil(np.log2(len(subjects) / self._LOAD))))
        self._shift = np.uint64(64 - bits)
        for seed in range(self._SEEDS):
            table = _build_table(hash_text(subjects, seed), self._shift)
            if table is not None:
                self._seed, self._table = seed, table
                return

    def positions(self, values: pa.Array) -> np.ndarray:
        """The position of every value among the subjects, -1 where it is absent or null."""
        if not len(values) or not len(self._subjects):
            return np.full(len(values), -1, dtype=np.int64)
        if self._table is None:
            found = pc.index_in(values, value_set=self._subjects)
            return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)

        hashes = hash_text(values, self._seed)
        probe = (hashes >> self._shift).astype(np.intp)
        # The first probe settles most rows at once; only the rest of a probe run goes round the loop,
        # which ends at an empty slot (the table ends with one).
        rows = self._table[probe]
        held = rows["position"].astype(np.int64) - 1
        hit = (held >= 0) & (rows["hash"] == hashes)
        positions = np.where(hit, held, -1)
        pending = np.flatnonzero((held >= 0) & ~hit)
        probe = probe[pending] + 1
        while len(pending):
            rows = self._table[probe]
            held = rows["position"].astype(np.int64) - 1
            hit = (held >= 0) & (rows["hash"] == hashes[pending])
            positions[pending[hit]] = held[hit]
            going_on = (held >= 0) & ~hit
            pending, probe = pending[going_on], probe[going_on] + 1

        # The text itself decides: a hash match with another id is no match. Known shortcoming: this take
        # of each row's candidate id from the registry's subjects is a random read of text, about a third
        # of admit() at ten million rows; comparing the 64-bit words hash_text already read would be
        # cheaper, at the price of keeping the subjects' words beside their text.
        found = positions >= 0
        same = pc.equal(pc.take(self._subjects, pa.array(np.where(found, positions, 0))), values)
        found &= pc.fill_null(same, False).to_numpy(zero_copy_only=False)
        positions[~found] = -1
        return positions


def _build_table(hashes: np.ndarray, shift: np.uint64) -> np.ndarray | None:
    """Linear probing without wrap-around, built in one sort: per slot a hash and its position + 1.

    Sorted by hash, the subjects come in the order of their home slots (the hash's top bits), and
    linear probing puts each in the first free slot from its home on: ``max(home, previous slot + 1)``,
    one running maximum. The table holds every home slot and the last slot used, plus one empty slot
    that ends every probe run. A slot is one record of two words, so that a probe reads one cache line
    (numpy gathers the records of a structured array many times faster than the rows of a 2-D array).

    :param hashes: the hash of each distinct subject.
    :param shift: 64 minus the number of bits of a home slot.
    :returns: the table, or None when two subjects share a hash.
    """
    order = np.argsort(hashes)
    ordered = hashes[order]
    if np.any(ordered[1:] == ordered[:-1]):
        return None
    home = (ordered >> shift).astype(np.int64)
    steps = np.arange(len(home), dtype=np.int64)
    slots = np.maximum.accumulate(home - steps) + steps
    del home, steps
    homes = 1 << (64 - int(shift))
    table = np.zeros(max(homes, int(slots[-1]) + 1) + 1, dtype=_SLOT)
    table["hash"][slots] = ordered
    table["position"][slots] = order.astype(np.uint64) + np.uint64(1)
    return table


def _numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A null-free Arrow array as numpy."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_numpy(zero_copy_only=False)


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
