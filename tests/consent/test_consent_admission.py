"""Tests of the admission rules: one row per rule of issue 2's "Consent registry" section."""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from airflow_phi_guard.consent.admission import (
    ConsentAdmission,
    ExclusionReason,
    _build_table,
    _SubjectIndex,
    decide,
    opt_out_in_force,
)
from airflow_phi_guard.consent.purposes import PURPOSE_OF_USE_SYSTEM
from airflow_phi_guard.consent.registry import ConsentRecord, ConsentRegistry, hash_text, registry_from_table
from airflow_phi_guard.exceptions import ConsentRegistryError
from airflow_phi_guard.policy.models import ConsentBasis, DigitIds, SubjectIdNormalization, UuidCase

AS_OF = date(2026, 12, 1)
DAY = timedelta(days=1)
BASES = (ConsentBasis.RESEARCH_AUTHORIZATION, ConsentBasis.IRB_WAIVER)
PURPOSE = "model-training"


def grant(
    basis: str = "research-authorization",
    purposes: tuple[str, ...] = ("research", "model-training"),
    granted_at: date = AS_OF - 100 * DAY,
    expires_at: date | None = None,
    revoked_at: date | None = None,
    subject_id: str = "subject-1",
    reference: str | None = None,
) -> ConsentRecord:
    return ConsentRecord(
        subject_id=subject_id,
        basis=basis,
        purposes=purposes,
        granted_at=granted_at,
        expires_at=expires_at,
        revoked_at=revoked_at,
        reference=reference,
    )


def opt_out(granted_at: date = AS_OF - 10 * DAY, revoked_at: date | None = None) -> ConsentRecord:
    return grant("opt-out", ("model-training",), granted_at, revoked_at=revoked_at)


class TestExclusionReason:
    def test_values_are_the_issue_words(self) -> None:
        assert [reason.value for reason in ExclusionReason] == [
            "no-subject-id",
            "no-record",
            "basis-not-accepted",
            "purpose-not-covered",
            "not-yet-valid",
            "expired",
            "revoked",
            "opted-out",
        ]


# The policy accepts research-authorization and irb-waiver for model-training at 2026-12-01.
# Each row: what the subject's records are, and the decision the issue's rule gives (None = admitted).
DECISIONS = [
    # A record whose basis is accepted, whose purposes include the policy's, and which is in force.
    pytest.param([grant()], None, id="research-authorization-in-force"),
    pytest.param([grant("irb-waiver", ("model-training",))], None, id="irb-waiver-in-force"),
    # No record at all.
    pytest.param([], ExclusionReason.NO_RECORD, id="no-record"),
    # granted_at <= as_of: the day of the grant counts.
    pytest.param([grant(granted_at=AS_OF)], None, id="granted-on-as-of-admitted"),
    pytest.param([grant(granted_at=AS_OF + DAY)], ExclusionReason.NOT_YET_VALID, id="granted-day-after"),
    # as_of < expires_at: the day of expiry no longer counts.
    pytest.param([grant(expires_at=AS_OF)], ExclusionReason.EXPIRED, id="expires-on-as-of-expired"),
    pytest.param([grant(expires_at=AS_OF + DAY)], None, id="expires-day-after-admitted"),
    pytest.param([grant(expires_at=AS_OF - DAY)], ExclusionReason.EXPIRED, id="expired-before"),
    # as_of < revoked_at: revocation takes effect on its day.
    pytest.param([grant(revoked_at=AS_OF)], ExclusionReason.REVOKED, id="revoked-on-as-of-revoked"),
    pytest.param([grant(revoked_at=AS_OF + DAY)], None, id="revoked-day-after-admitted"),
    pytest.param([grant(revoked_at=AS_OF - DAY)], ExclusionReason.REVOKED, id="revoked-before"),
    # A basis the policy does not accept; consent to treatment is never one.
    pytest.param(
        [grant("treatment-consent", ("model-training",))],
        ExclusionReason.BASIS_NOT_ACCEPTED,
        id="treatment-consent-alone",
    ),
    pytest.param([grant("limited-data-set")], ExclusionReason.BASIS_NOT_ACCEPTED, id="limited-data-set"),
    pytest.param(
        [grant("health-care-operations")], ExclusionReason.BASIS_NOT_ACCEPTED, id="health-care-operations"
    ),
    pytest.param([grant("business-associate")], ExclusionReason.BASIS_NOT_ACCEPTED, id="business-associate"),
    # Purposes that do not include the policy's purpose.
    pytest.param(
        [grant(purposes=("registry-research",))], ExclusionReason.PURPOSE_NOT_COVERED, id="other-purpose"
    ),
    # An opt-out in force (granted at or before as-of, not revoked by then) beats every grant.
    pytest.param([opt_out()], ExclusionReason.OPTED_OUT, id="opt-out-alone"),
    pytest.param([grant(), opt_out()], ExclusionReason.OPTED_OUT, id="opt-out-beats-valid-grant"),
    pytest.param(
        [grant(), grant("opt-out", ("newsletters",))],
        ExclusionReason.OPTED_OUT,
        id="opt-out-covers-every-use",
    ),
    pytest.param([grant(), grant("opt-out", ())], ExclusionReason.OPTED_OUT, id="opt-out-listing-no-purpose"),
    pytest.param([grant(), opt_out(granted_at=AS_OF)], ExclusionReason.OPTED_OUT, id="opt-out-on-as-of"),
    pytest.param([grant(), opt_out(granted_at=AS_OF + DAY)], None, id="opt-out-day-after-not-in-force"),
    pytest.param(
        [grant(), opt_out(granted_at=AS_OF - 30 * DAY, revoked_at=AS_OF - DAY)],
        None,
        id="opt-out-revoked-before-not-in-force",
    ),
    pytest.param(
        [grant(), opt_out(granted_at=AS_OF - 30 * DAY, revoked_at=AS_OF)],
        None,
        id="opt-out-revoked-on-as-of-not-in-force",
    ),
    pytest.param(
        [grant(), opt_out(revoked_at=AS_OF + DAY)], ExclusionReason.OPTED_OUT, id="opt-out-revoked-later"
    ),
    pytest.param(
        [grant("treatment-consent"), opt_out()], ExclusionReason.OPTED_OUT, id="opted-out-named-over-basis"
    ),
    # Any admitting record admits: a revocation followed by a newer grant.
    pytest.param(
        [
            grant(granted_at=AS_OF - 900 * DAY, revoked_at=AS_OF - 400 * DAY),
            grant(granted_at=AS_OF - 30 * DAY),
        ],
        None,
        id="revoked-then-granted-again",
    ),
    pytest.param([grant("treatment-consent"), grant()], None, id="treatment-consent-beside-grant"),
    # Several records, none admitting: the one that got furthest (basis, purpose, not-yet-valid,
    # expired, revoked) names the reason.
    pytest.param(
        [grant("treatment-consent"), grant(expires_at=AS_OF - DAY)],
        ExclusionReason.EXPIRED,
        id="furthest-expired-over-basis",
    ),
    pytest.param(
        [grant(expires_at=AS_OF - DAY), grant("treatment-consent")],
        ExclusionReason.EXPIRED,
        id="furthest-independent-of-order",
    ),
    pytest.param(
        [grant(purposes=("registry-research",)), grant("irb-waiver", granted_at=AS_OF + DAY)],
        ExclusionReason.NOT_YET_VALID,
        id="furthest-not-yet-valid-over-purpose",
    ),
    pytest.param(
        [grant("limited-data-set"), grant(purposes=("registry-research",))],
        ExclusionReason.PURPOSE_NOT_COVERED,
        id="furthest-purpose-over-basis",
    ),
    pytest.param(
        [grant(expires_at=AS_OF - DAY), grant("irb-waiver", revoked_at=AS_OF - DAY)],
        ExclusionReason.REVOKED,
        id="furthest-revoked-over-expired",
    ),
    # One record that fails two checks reports the first it fails.
    pytest.param(
        [grant(expires_at=AS_OF - DAY, revoked_at=AS_OF - 2 * DAY)],
        ExclusionReason.EXPIRED,
        id="expired-and-revoked-record",
    ),
    # An opt-out that is not in force is no grant either.
    pytest.param(
        [opt_out(granted_at=AS_OF - 30 * DAY, revoked_at=AS_OF - DAY)],
        ExclusionReason.BASIS_NOT_ACCEPTED,
        id="withdrawn-opt-out-alone",
    ),
]


@pytest.mark.parametrize(("records", "expected"), DECISIONS)
def test_decide(records: list[ConsentRecord], expected: ExclusionReason | None) -> None:
    assert decide(records, BASES, PURPOSE, AS_OF) == expected


def test_treatment_consent_never_admits_even_when_listed() -> None:
    """decide() is fail closed on its own: a basis that cannot admit does not, whatever it is given."""
    record = grant("treatment-consent")
    assert (
        decide([record], {ConsentBasis.TREATMENT_CONSENT}, PURPOSE, AS_OF)
        is ExclusionReason.BASIS_NOT_ACCEPTED
    )


def test_opt_out_expiry_does_not_end_it() -> None:
    """The issue ends an opt-out only by revocation; an expiry date on it is not consulted."""
    record = grant("opt-out", ("model-training",), AS_OF - 30 * DAY, expires_at=AS_OF - DAY)
    assert opt_out_in_force(record, AS_OF)
    assert decide([grant(), record], BASES, PURPOSE, AS_OF) is ExclusionReason.OPTED_OUT


def test_an_accepted_basis_of_the_policy_admits() -> None:
    """limited-data-set admits under a policy that accepts it."""
    records = [grant("limited-data-set")]
    assert decide(records, {ConsentBasis.LIMITED_DATA_SET}, PURPOSE, AS_OF) is None


def registry(*records: ConsentRecord) -> ConsentRegistry:
    return ConsentRegistry.from_records("test", records)


class TestConsentAdmission:
    def test_admit_maps_a_batch_to_a_mask_and_counts(self) -> None:
        admission = ConsentAdmission(
            registry(
                grant(subject_id="admitted"),
                grant(subject_id="expired", expires_at=AS_OF - DAY),
                grant(subject_id="opted"),
                opt_out().model_copy(update={"subject_id": "opted"}),
            ),
            BASES,
            PURPOSE,
            AS_OF,
        )
        subjects = pa.array(["admitted", " admitted\t", None, "", "   ", "stranger", "expired", "opted"])

        mask, counts = admission.admit(subjects)

        assert mask.to_pylist() == [True, True, False, False, False, False, False, False]
        assert counts == {
            ExclusionReason.NO_SUBJECT_ID: 3,
            ExclusionReason.NO_RECORD: 1,
            ExclusionReason.EXPIRED: 1,
            ExclusionReason.OPTED_OUT: 1,
        }
        assert list(counts) == [reason for reason in ExclusionReason if reason in counts]

    def test_every_row_is_admitted_or_counted_once(self) -> None:
        admission = ConsentAdmission(registry(grant(subject_id="a")), BASES, PURPOSE, AS_OF)
        subjects = pa.array(["a", "b", None, "a", "c"] * 7)
        mask, counts = admission.admit(subjects)
        assert mask.true_count + sum(counts.values()) == len(subjects)
        assert mask.null_count == 0

    def test_integer_subjects_compare_as_text(self) -> None:
        admission = ConsentAdmission(
            registry(grant(subject_id="42"), grant(subject_id="7", basis="treatment-consent")),
            BASES,
            PURPOSE,
            AS_OF,
        )
        mask, counts = admission.admit(pa.array([42, 7, 8, None], pa.int64()))
        assert mask.to_pylist() == [True, False, False, False]
        assert counts == {
            ExclusionReason.NO_SUBJECT_ID: 1,
            ExclusionReason.NO_RECORD: 1,
            ExclusionReason.BASIS_NOT_ACCEPTED: 1,
        }

    def test_chunked_and_dictionary_columns(self) -> None:
        admission = ConsentAdmission(registry(grant(subject_id="a")), BASES, PURPOSE, AS_OF)
        chunked = pa.chunked_array([pa.array(["a", "b"]), pa.array(["a"])])
        mask, counts = admission.admit(chunked)
        assert isinstance(mask, pa.BooleanArray)
        assert mask.to_pylist() == [True, False, True]
        assert counts == {ExclusionReason.NO_RECORD: 1}
        mask, _ = admission.admit(pa.array(["b", "a"]).dictionary_encode())
        assert mask.to_pylist() == [False, True]

    def test_empty_registry_admits_nobody(self) -> None:
        admission = ConsentAdmission(registry(), BASES, PURPOSE, AS_OF)
        mask, counts = admission.admit(pa.array(["a", None]))
        assert mask.to_pylist() == [False, False]
        assert counts == {ExclusionReason.NO_SUBJECT_ID: 1, ExclusionReason.NO_RECORD: 1}

    def test_empty_batch(self) -> None:
        admission = ConsentAdmission(registry(grant()), BASES, PURPOSE, AS_OF)
        mask, counts = admission.admit(pa.array([], pa.string()))
        assert len(mask) == 0
        assert counts == {}

    def test_decision_for(self) -> None:
        admission = ConsentAdmission(
            registry(grant(subject_id="a"), grant(subject_id="b", granted_at=AS_OF + DAY)),
            BASES,
            PURPOSE,
            AS_OF,
        )
        assert admission.decision_for(" a ") is None
        assert admission.decision_for("b") is ExclusionReason.NOT_YET_VALID
        assert admission.decision_for("z") is ExclusionReason.NO_RECORD
        assert admission.decision_for(" ") is ExclusionReason.NO_SUBJECT_ID

    def test_datetime_as_of_counts_on_its_date(self) -> None:
        admission = ConsentAdmission(
            registry(grant(granted_at=AS_OF)), BASES, PURPOSE, datetime(2026, 12, 1, 23, 59)
        )
        assert admission.as_of == AS_OF
        assert admission.decision_for("subject-1") is None

    @pytest.mark.parametrize(
        ("bases", "purpose"),
        [
            # Consent to treatment is no basis for training, and an opt-out is an objection.
            pytest.param(
                [ConsentBasis.RESEARCH_AUTHORIZATION, ConsentBasis.TREATMENT_CONSENT], PURPOSE, id="tc"
            ),
            pytest.param([ConsentBasis.OPT_OUT], PURPOSE, id="opt-out"),
            pytest.param([], PURPOSE, id="no-basis"),
            pytest.param(BASES, "  ", id="no-purpose"),
        ],
    )
    def test_refuses_arguments_that_could_not_admit_rightly(
        self, bases: list[ConsentBasis], purpose: str
    ) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - the messages differ per case
            ConsentAdmission(registry(grant()), bases, purpose, AS_OF)

    def test_refuses_a_subject_column_that_is_neither_text_nor_integers(self) -> None:
        admission = ConsentAdmission(registry(grant()), BASES, PURPOSE, AS_OF)
        with pytest.raises(TypeError, match="double"):
            admission.admit(pa.array([1.0, 2.0]))


# ---- Issue 4: the vectorised admission, held to the per-record rule and to the issue's rules ----


_PURPOSE_CHOICES = [
    ("model-training",),
    ("research", "model-training"),
    ("research",),
    ("HRESCH",),
    (f"{PURPOSE_OF_USE_SYSTEM}|MLTRAINING",),
    ("treatment",),
    ("quality-improvement", "model-training"),
]


def _random_registry(seed: int, subjects: int) -> list[ConsentRecord]:
    chooser = random.Random(seed)
    records: list[ConsentRecord] = []
    for number in range(subjects):
        for version in range(chooser.randint(0, 4)):
            basis = chooser.choice(list(ConsentBasis))
            granted = AS_OF + chooser.randint(-40, 10) * DAY
            # granted_at differs per record of a subject, so no two contradict
            granted += version * 1000 * DAY * (1 if chooser.random() < 0.5 else -1)
            end = granted + chooser.randint(0, 60) * DAY
            records.append(
                ConsentRecord(
                    subject_id=f"s-{number}",
                    basis=basis,
                    purposes=chooser.choice(_PURPOSE_CHOICES)
                    if chooser.random() < 0.9 or basis != "opt-out"
                    else (),
                    granted_at=granted,
                    expires_at=end if chooser.random() < 0.3 else None,
                    revoked_at=end + chooser.randint(0, 5) * DAY if chooser.random() < 0.3 else None,
                )
            )
    return records


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("widened", [(), ("HRESCH",)], ids=["default-purposes", "widened-to-HRESCH"])
def test_vectorised_decisions_equal_the_per_record_rule(seed: int, widened: tuple[str, ...]) -> None:
    """Property-style: on a seeded random registry, ConsentAdmission decides every subject as decide()."""
    records = _random_registry(seed, subjects=150)
    bases = random.Random(seed).sample(
        [b for b in ConsentBasis if b not in ("opt-out", "treatment-consent")], 2
    )
    admission = ConsentAdmission(
        ConsentRegistry.from_records("random", records), bases, PURPOSE, AS_OF, purposes_covering=widened
    )
    covering = admission.covering
    for number in range(150):
        subject = f"s-{number}"
        own = [record for record in records if record.subject_id == subject]
        assert admission.decision_for(subject) == decide(own, bases, PURPOSE, AS_OF, covering), subject


# Several records per subject, through the vectorised path: (records, expected decision).
SEVERAL_RECORDS = [
    # any valid grant admits
    pytest.param(
        [grant("treatment-consent"), grant(purposes=("registry-research",)), grant("irb-waiver")],
        None,
        id="any-valid-grant-admits",
    ),
    # any opt-out in force excludes
    pytest.param([grant(), grant("irb-waiver", ("model-training",)), opt_out()], "opted-out", id="opt-out"),
    # a revocation ends only the record it revokes
    pytest.param(
        [grant(revoked_at=AS_OF - DAY), grant("irb-waiver", ("model-training",), AS_OF - 200 * DAY)],
        None,
        id="revocation-ends-only-its-record",
    ),
    # a new grant after a revocation admits again
    pytest.param(
        [
            grant(granted_at=AS_OF - 500 * DAY, revoked_at=AS_OF - 100 * DAY),
            grant(granted_at=AS_OF - 50 * DAY),
        ],
        None,
        id="new-grant-after-revocation",
    ),
    pytest.param(
        [grant(granted_at=AS_OF - 500 * DAY, revoked_at=AS_OF - 100 * DAY), grant(granted_at=AS_OF + DAY)],
        # the revoked record got further through the checks than the grant not yet in force
        "revoked",
        id="new-grant-not-yet-in-force",
    ),
    # a withdrawn opt-out no longer excludes
    pytest.param(
        [grant(), opt_out(granted_at=AS_OF - 30 * DAY, revoked_at=AS_OF - DAY)], None, id="withdrawn-opt-out"
    ),
    # research alone does not cover model training under the default mapping
    pytest.param([grant(purposes=("research",))], "purpose-not-covered", id="research-not-training"),
    pytest.param([grant(purposes=("HRESCH",))], "purpose-not-covered", id="HRESCH-not-training"),
    pytest.param(
        [grant(purposes=(f"{PURPOSE_OF_USE_SYSTEM}|MLTRAINING",))], None, id="MLTRAINING-with-system"
    ),
]


@pytest.mark.parametrize(("records", "expected"), SEVERAL_RECORDS)
def test_several_records_per_subject(records: list[ConsentRecord], expected: str | None) -> None:
    admission = ConsentAdmission(registry(*records), BASES, PURPOSE, AS_OF)
    mask, counts = admission.admit(pa.array(["subject-1"]))
    assert mask.to_pylist() == [expected is None]
    assert counts == ({} if expected is None else {ExclusionReason(expected): 1})


def test_a_policy_that_widens_to_research_admits_a_research_consent() -> None:
    records = [grant(purposes=("research",))]
    narrow = ConsentAdmission(registry(*records), BASES, PURPOSE, AS_OF)
    wide = ConsentAdmission(registry(*records), BASES, PURPOSE, AS_OF, purposes_covering=("HRESCH",))
    assert narrow.decision_for("subject-1") is ExclusionReason.PURPOSE_NOT_COVERED
    assert wide.decision_for("subject-1") is None


UUID_LOWER = "3f2b8c1e-9d4a-4e6b-8a7c-1b2c3d4e5f60"
UUID_UPPER = UUID_LOWER.upper()
DEFAULT = SubjectIdNormalization()
# Subject id normalisation, the same on both sides: (registry id, dataset id, rule, matched?).
NORMALISATION = [
    pytest.param(" p-1 ", "p-1\t", DEFAULT, True, id="trimmed"),
    pytest.param(UUID_UPPER, UUID_LOWER, DEFAULT, True, id="uuid-case-folded"),
    pytest.param(UUID_LOWER, f" {UUID_UPPER} ", DEFAULT, True, id="uuid-case-folded-and-trimmed"),
    pytest.param(
        UUID_UPPER, UUID_LOWER, SubjectIdNormalization(uuid_case=UuidCase.EXACT), False, id="uuid-exact"
    ),
    # Only UUIDs are case-folded: other ids keep their case.
    pytest.param("MRN-ABC", "mrn-abc", DEFAULT, False, id="other-ids-keep-case"),
    # Digits compare as written by default; 'integer' ignores leading zeros.
    pytest.param("00042", "42", DEFAULT, False, id="digits-as-text"),
    pytest.param(
        "00042", "42", SubjectIdNormalization(digits=DigitIds.INTEGER), True, id="digits-as-integer"
    ),
    pytest.param("0", "000", SubjectIdNormalization(digits=DigitIds.INTEGER), True, id="zero-as-integer"),
    pytest.param("A0042", "A42", SubjectIdNormalization(digits=DigitIds.INTEGER), False, id="not-all-digits"),
]


@pytest.mark.parametrize(("registry_id", "dataset_id", "rule", "matched"), NORMALISATION)
def test_subject_ids_are_normalised_alike_on_both_sides(
    registry_id: str, dataset_id: str, rule: SubjectIdNormalization, matched: bool
) -> None:
    admission = ConsentAdmission(
        registry(grant(subject_id=registry_id)), BASES, PURPOSE, AS_OF, subject_ids=rule
    )
    assert admission.decision_for(dataset_id) is (None if matched else ExclusionReason.NO_RECORD)


def test_integer_dataset_ids_match_text_registry_ids_under_integer_digits() -> None:
    rule = SubjectIdNormalization(digits=DigitIds.INTEGER)
    admission = ConsentAdmission(registry(grant(subject_id="0042")), BASES, PURPOSE, AS_OF, subject_ids=rule)
    mask, _ = admission.admit(pa.array([42, 43], pa.int64()))
    assert mask.to_pylist() == [True, False]


def test_normalisation_that_merges_contradictory_records_refuses_the_registry() -> None:
    """'00042' and '42' are one subject under digits: integer; their two versions of one grant contradict."""
    records = [grant(subject_id="00042"), grant(subject_id="42", expires_at=AS_OF + 9 * DAY)]
    ConsentAdmission(registry(*records), BASES, PURPOSE, AS_OF)  # distinct subjects as text: fine
    with pytest.raises(ConsentRegistryError, match="1 subject\\(s\\) have contradictory records once ids"):
        ConsentAdmission(
            registry(*records),
            BASES,
            PURPOSE,
            AS_OF,
            subject_ids=SubjectIdNormalization(digits=DigitIds.INTEGER),
        )


class TestCounts:
    def _admission(self) -> ConsentAdmission:
        return ConsentAdmission(
            registry(
                grant(
                    subject_id="both"
                ),  # research authorization and waiver: the policy's first basis counts
                grant("irb-waiver", ("model-training",), subject_id="both"),
                grant("irb-waiver", ("model-training",), subject_id="waiver"),
                grant(subject_id="research"),
                grant(subject_id="never-seen"),
                grant(subject_id="expired", expires_at=AS_OF - DAY),
            ),
            BASES,
            PURPOSE,
            AS_OF,
        )

    def test_rows_and_subjects_per_basis_accumulate_over_batches(self) -> None:
        admission = self._admission()
        admission.admit(pa.array(["both", "both", "waiver", "stranger"]))
        admission.admit(pa.array(["both", "research", None, "expired", "expired"]))

        counts = admission.counts()
        assert counts.rows_admitted == 5
        assert counts.admitted_rows_by_basis == {
            ConsentBasis.RESEARCH_AUTHORIZATION: 4,  # 3 x both, 1 x research
            ConsentBasis.IRB_WAIVER: 1,
        }
        assert counts.admitted_subjects_by_basis == {
            ConsentBasis.RESEARCH_AUTHORIZATION: 2,
            ConsentBasis.IRB_WAIVER: 1,
        }
        assert counts.rows_excluded == {
            ExclusionReason.NO_SUBJECT_ID: 1,
            ExclusionReason.NO_RECORD: 1,
            ExclusionReason.EXPIRED: 2,
        }
        assert counts.rows_matched == 7
        assert (counts.subjects_seen, counts.subjects_admitted, counts.registry_subjects) == (4, 3, 5)

    def test_the_first_basis_of_the_policy_names_a_subject_admitted_by_several(self) -> None:
        records = [grant(subject_id="both"), grant("irb-waiver", ("model-training",), subject_id="both")]
        order = (ConsentBasis.IRB_WAIVER, ConsentBasis.RESEARCH_AUTHORIZATION)
        admission = ConsentAdmission(registry(*records), order, PURPOSE, AS_OF)
        admission.admit(pa.array(["both"]))
        assert admission.counts().admitted_rows_by_basis == {
            ConsentBasis.IRB_WAIVER: 1,
            ConsentBasis.RESEARCH_AUTHORIZATION: 0,
        }

    def test_admitted_subjects_are_the_seen_and_admitted_ones_normalised(self) -> None:
        admission = ConsentAdmission(
            registry(grant(subject_id=UUID_UPPER), grant(subject_id="b"), grant(subject_id="c")),
            BASES,
            PURPOSE,
            AS_OF,
        )
        admission.admit(pa.array([UUID_LOWER, "b", "b", "z"]))
        assert sorted(admission.admitted_subjects().to_pylist()) == [UUID_LOWER, "b"]

    def test_decision_for_counts_nothing(self) -> None:
        admission = self._admission()
        admission.decision_for("both")
        assert admission.counts().rows_admitted == 0
        assert admission.admitted_subjects().to_pylist() == []


def test_many_subjects_take_the_hash_index_and_decide_every_row() -> None:
    """A registry large enough for the index to matter: each of 20,000 subjects found, strangers not."""
    ids = [f"{number:08d}-subject" for number in range(20_000)]
    table = pa.table(
        {
            "subject_id": ids,
            "basis": ["irb-waiver"] * len(ids),
            "purposes": [["model-training"]] * len(ids),
            "granted_at": pa.array([AS_OF - DAY] * len(ids), pa.date32()),
            "expires_at": pa.array([None] * len(ids), pa.date32()),
            "revoked_at": pa.array([AS_OF if n % 3 == 0 else None for n in range(len(ids))], pa.date32()),
            "reference": [None] * len(ids),
        }
    )
    admission = ConsentAdmission(registry_from_table(table, "big"), BASES, PURPOSE, AS_OF)
    mask, counts = admission.admit(pa.array([*ids, "stranger", "00000000-subjec"]))
    assert mask.to_pylist() == [n % 3 != 0 for n in range(len(ids))] + [False, False]
    assert counts == {ExclusionReason.NO_RECORD: 2, ExclusionReason.REVOKED: 6667}


def test_ids_of_every_length_and_script_are_found_whatever_their_batch() -> None:
    """The hash of an id depends on the id alone, not on the longest id of its batch or on its script."""
    ids = ["a", "ab", "abcdefgh", "abcdefghi", "Zoë-ñ-7", "患者-0001", "x" * 70]
    admission = ConsentAdmission(registry(*(grant(subject_id=i) for i in ids)), BASES, PURPOSE, AS_OF)
    for subject in ids:
        assert admission.decision_for(subject) is None, subject
    mask, _ = admission.admit(pa.array([*reversed(ids), "abcdefg", "患者-0002"]))
    assert mask.to_pylist() == [True] * len(ids) + [False, False]


# ---- Issue 4, scale: the one-pass grouping and the subject index, held to the per-record rule ----


def _spelling(chooser: random.Random, number: int) -> tuple[str, str]:
    """A subject's id as the registry writes it and as a dataset may write it, in one of several forms."""
    form = chooser.randrange(4)
    if form == 0:  # a UUID, upper case in the registry, lower case and padded in the dataset
        text = str(uuid.UUID(int=number * 0x9E3779B97F4A7C15 + 1))
        return text.upper(), f" {text} "
    if form == 1:  # digits with leading zeros in the registry
        return f"{number:09d}", str(number)
    if form == 2:  # trailing whitespace in the registry
        return f"mrn-{number}\t", f"mrn-{number}"
    return f"Zoë-{number}", f"Zoë-{number}"  # multi-byte characters, compared as written


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("digits", [DigitIds.TEXT, DigitIds.INTEGER], ids=["digits-as-text", "integer"])
def test_a_large_random_registry_admits_every_row_as_the_per_record_rule(seed: int, digits: DigitIds) -> None:
    """3,000 subjects in four id forms, 0-4 records each, shuffled: every dataset row decided as decide()."""
    chooser = random.Random(1000 + seed)
    registry_ids: dict[int, str] = {}
    dataset_ids: dict[int, str] = {}
    own: dict[int, list[ConsentRecord]] = {}
    spelled: list[ConsentRecord] = []
    for template in _random_registry(seed, subjects=3000):
        number = int(template.subject_id.removeprefix("s-"))
        if number not in registry_ids:
            registry_ids[number], dataset_ids[number] = _spelling(chooser, number)
        own.setdefault(number, []).append(template)
        # The registry's raw spelling, untrimmed: registry_from_table does the reading.
        spelled.append(template.model_copy(update={"subject_id": registry_ids[number]}))
    chooser.shuffle(spelled)
    bases = (ConsentBasis.IRB_WAIVER, ConsentBasis.RESEARCH_AUTHORIZATION)
    admission = ConsentAdmission(
        ConsentRegistry.from_records("random", spelled),
        bases,
        PURPOSE,
        AS_OF,
        subject_ids=SubjectIdNormalization(digits=digits),
    )

    numbers = sorted(dataset_ids)
    rows = [dataset_ids[number] for number in numbers] + ["stranger-1", "stranger-2"]
    mask, excluded = admission.admit(pa.array(rows))

    expected: list[ExclusionReason | None] = []
    for number in numbers:
        # '000000042' and '42' are one subject only when digits compare as integers.
        matched = not registry_ids[number].isdigit() or digits is DigitIds.INTEGER
        expected.append(decide(own[number] if matched else [], bases, PURPOSE, AS_OF, admission.covering))
    expected += [ExclusionReason.NO_RECORD, ExclusionReason.NO_RECORD]
    assert mask.to_pylist() == [reason is None for reason in expected]
    assert excluded == {
        reason: expected.count(reason) for reason in ExclusionReason if expected.count(reason)
    }


def test_admitted_rows_and_subjects_by_basis_follow_the_policy_order_at_scale() -> None:
    """Per basis counts, over many subjects with both bases: the policy's first accepted basis names them."""
    records = []
    for number in range(5000):
        if number % 2 == 0:
            records.append(grant(subject_id=f"p-{number}"))  # research-authorization
        if number % 3 == 0:
            records.append(grant("irb-waiver", ("model-training",), subject_id=f"p-{number}"))
    admission = ConsentAdmission(
        registry(*records), (ConsentBasis.IRB_WAIVER, ConsentBasis.RESEARCH_AUTHORIZATION), PURPOSE, AS_OF
    )
    admission.admit(pa.array([f"p-{number}" for number in range(5000)] * 2))
    waiver = sum(1 for number in range(5000) if number % 3 == 0)
    authorization_only = sum(1 for number in range(5000) if number % 2 == 0 and number % 3 != 0)
    counts = admission.counts()
    assert counts.admitted_subjects_by_basis == {
        ConsentBasis.IRB_WAIVER: waiver,
        ConsentBasis.RESEARCH_AUTHORIZATION: authorization_only,
    }
    assert counts.admitted_rows_by_basis == {
        ConsentBasis.IRB_WAIVER: 2 * waiver,
        ConsentBasis.RESEARCH_AUTHORIZATION: 2 * authorization_only,
    }


class TestSubjectIndex:
    """The hash table of registry subjects: built in one sort, exact whatever the hashes do."""

    def test_two_subjects_of_one_hash_refuse_the_table(self) -> None:
        assert _build_table(np.array([7, 3, 7], dtype=np.uint64), np.uint64(60)) is None

    def test_hashes_crowded_into_one_home_slot_are_all_found(self) -> None:
        """Long probe runs: 50 hashes share their top bits, so all start at the same slot."""
        hashes = np.arange(1, 51, dtype=np.uint64) | np.uint64(0xF << 60)
        table = _build_table(hashes, np.uint64(60))
        assert table is not None
        for position, value in enumerate(hashes):
            slot = int(value >> np.uint64(60))
            while table["hash"][slot] != value:
                assert table["position"][slot] != 0, "probe run ended before the hash"
                slot += 1
            assert int(table["position"][slot]) - 1 == position

    def test_without_a_table_lookups_fall_back_to_exact_set_lookup(self) -> None:
        subjects = pa.array(["a", "b", "c"])
        index = _SubjectIndex(subjects)
        index._table = None  # as when every seed gave two subjects one hash
        assert index.positions(pa.array(["c", "z", None, "a"])).tolist() == [2, -1, -1, 0]

    def test_a_stranger_sharing_a_subject_s_hash_is_not_that_subject(self) -> None:
        """The text decides: a forged table entry pointing a stranger's hash at a subject matches nothing."""
        subjects = pa.array(["alpha", "beta"])
        index = _SubjectIndex(subjects)
        stranger = hash_text(pa.array(["gamma"]), index._seed)[0]
        slot = int(stranger >> index._shift)
        index._table[slot] = (stranger, 1)  # "gamma"'s hash now names position 0, "alpha"
        assert index.positions(pa.array(["gamma"])).tolist() == [-1]
