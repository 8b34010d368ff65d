"""The Safe Harbor verdict: each published column judged by 45 CFR 164.514(b)(2)(i), residual finds, and the
attestation of 164.514(b)(2)(ii) that only a person can give."""

from __future__ import annotations

import datetime

import pytest

from airflow_phi_guard.deid.verdict import NOTICE, SafeHarborStatus, safe_harbor_verdict
from airflow_phi_guard.phi.identifiers import A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, P, Q, R
from airflow_phi_guard.policy.models import SafeHarborAttestation, Treatment
from airflow_phi_guard.report import ColumnDecision, Finding

T = Treatment
ATTESTED = SafeHarborAttestation(
    by="R. Reviewer, Privacy Officer",
    date=datetime.date(2026, 11, 30),
    statement="We have no actual knowledge that the remaining information could identify a patient.",
)


def published(source, identifier, treatment, output=None):
    out = None if treatment is T.DROP else (output or source)
    return ColumnDecision(source=source, output=out, identifier=identifier, treatment=treatment)


# One published column at a time: (source column, its identifier, its treatment, whether Safe Harbor allows
# it). The answers are the rule's (REGULATORY.md, Safe Harbor table).
COLUMNS = [
    ("FIRST", A, T.KEEP, False),  # A names: removed
    ("FIRST", A, T.DROP, True),
    ("ADDRESS", B, T.KEEP, False),  # B: removed, except the ZIP3 rule
    ("ZIP", B, T.ZIP3, True),
    ("ZIP", B, T.KEEP, False),
    ("START", C, T.YEAR, True),  # C: the year of a date may stay
    ("START", C, T.KEEP, False),
    ("BIRTHDATE", C, T.YEAR, False),  # the birth year of a person over 89 must be suppressed
    ("BIRTHDATE", C, T.BIRTH_YEAR, True),  # birth-year suppresses it
    ("BIRTHDATE", C, T.AGE, True),  # ages of 90 and over become one category
    ("PHONE", D, T.KEEP, False),
    ("FAX", E, T.KEEP, False),
    ("EMAIL", F, T.KEEP, False),
    ("SSN", G, T.KEEP, False),
    ("MRN", H, T.KEEP, False),
    ("MRN", H, T.PSEUDONYMIZE, False),  # a hashed MRN is not de-identified
    ("MEMBER_ID", I, T.KEEP, False),
    ("ACCOUNT", J, T.KEEP, False),
    ("DRIVERS", K, T.KEEP, False),
    ("VIN", L, T.KEEP, False),
    ("DEVICE_UDI", M, T.KEEP, False),
    ("HOMEPAGE", N, T.KEEP, False),
    ("IP", O, T.KEEP, False),
    ("FINGERPRINT", P, T.KEEP, False),
    ("PHOTO", Q, T.KEEP, False),
    ("PATIENT", R, T.KEEP, False),
    ("PATIENT", R, T.PSEUDONYMIZE, False),  # HMAC is derived from the id: no 164.514(c) code
    ("PATIENT", R, T.DROP, True),
    ("DESCRIPTION", None, T.KEEP, True),  # not an identifier column; its values are scanned
    ("CODE", None, T.PSEUDONYMIZE, True),
]


@pytest.mark.parametrize(("source", "identifier", "treatment", "allowed"), COLUMNS)
def test_each_identifier_column_is_judged_by_the_rule(source, identifier, treatment, allowed):
    verdict = safe_harbor_verdict([published(source, identifier, treatment)], [], ATTESTED)

    assert verdict.met is allowed
    if not allowed:
        (breach,) = verdict.breaches
        assert (breach.column, breach.identifier) == (source, identifier)
        assert breach.rule


def test_a_pseudonym_breach_gives_the_reason_of_164_514_c():
    verdict = safe_harbor_verdict([published("PATIENT", R, T.PSEUDONYMIZE, "PATIENT_KEY")], [], ATTESTED)

    (breach,) = verdict.breaches
    assert breach.output == "PATIENT_KEY"
    assert "164.514(c)" in breach.rule and "derived from the identifier" in breach.rule


def test_a_residual_identifier_in_text_breaks_safe_harbor_with_its_column_and_letter():
    columns = [published("DESCRIPTION", None, T.KEEP)]

    verdict = safe_harbor_verdict(columns, [Finding(column="DESCRIPTION", identifier=G, count=2)], ATTESTED)

    assert verdict.status is SafeHarborStatus.NOT_MET
    (breach,) = verdict.breaches
    assert (breach.column, breach.identifier, breach.output) == ("DESCRIPTION", G, None)
    assert "2 value(s)" in breach.rule


# The status from the two conditions: (i) the data (breaches or none), (ii) the person's attestation.
STATUS = [
    ([], None, SafeHarborStatus.AWAITING_ATTESTATION),  # never assumed
    ([], ATTESTED, SafeHarborStatus.MET),
    ([("SSN", G, T.KEEP)], ATTESTED, SafeHarborStatus.NOT_MET),  # an attestation cannot heal the data
    ([("SSN", G, T.KEEP)], None, SafeHarborStatus.NOT_MET),
]


@pytest.mark.parametrize(("columns", "attestation", "status"), STATUS)
def test_the_status_needs_both_conditions(columns, attestation, status):
    decisions = [published(*column) for column in columns] + [published("CODE", None, T.KEEP)]

    verdict = safe_harbor_verdict(decisions, [], attestation)

    assert verdict.status is status
    assert verdict.attestation == attestation


def test_every_breach_is_listed_not_only_the_first():
    columns = [
        published("SSN", G, T.KEEP),
        published("ZIP", B, T.KEEP),
        published("PATIENT", R, T.PSEUDONYMIZE),
    ]

    verdict = safe_harbor_verdict(columns, [], None)

    assert [(breach.column, breach.identifier) for breach in verdict.breaches] == [
        ("SSN", G),
        ("ZIP", B),
        ("PATIENT", R),
    ]


def test_the_verdict_says_it_is_not_legal_advice():
    verdict = safe_harbor_verdict([], [], None)

    assert verdict.notice == NOTICE
    assert "not legal advice" in verdict.model_dump_json()
