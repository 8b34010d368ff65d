"""Tests of the admission rules: one row per rule of issue 2's "Consent registry" section."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pyarrow as pa
import pytest

from airflow_phi_guard.consent.admission import (
    ConsentAdmission,
    ExclusionReason,
    decide,
    opt_out_in_force,
)
from airflow_phi_guard.consent.registry import ConsentRecord, ConsentRegistry
from airflow_phi_guard.policy.models import ConsentBasis

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
) -> ConsentRecord:
    return ConsentRecord(
        subject_id=subject_id,
        basis=basis,
        purposes=purposes,
        granted_at=granted_at,
        expires_at=expires_at,
        revoked_at=revoked_at,
        reference="AUTH-000001",
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
    return ConsentRegistry(source="test", records=records)


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
