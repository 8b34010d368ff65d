"""Synthetic governed datasets and the governance reports that describe them, for the quality tests."""

from __future__ import annotations

import hashlib
from datetime import date

import pyarrow as pa
import pytest

from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.policy.models import DeidentificationMethod, Treatment
from airflow_phi_guard.report import ColumnDecision, GovernanceReport, PolicyIdentity, Verdict

AS_OF = date(2026, 12, 1)

#: What the engine decided for a governed-looking set: every treatment once, two dropped columns.
DECISIONS = (
    ColumnDecision(
        source="PATIENT",
        output="PATIENT_KEY",
        identifier=SafeHarborIdentifier.OTHER_UNIQUE_IDENTIFIER,
        treatment=Treatment.PSEUDONYMIZE,
    ),
    ColumnDecision(
        source="BIRTHDATE", output="AGE", identifier=SafeHarborIdentifier.DATES, treatment=Treatment.AGE
    ),
    ColumnDecision(
        source="MOTHER_BIRTHDATE",
        output="MOTHER_BIRTH_YEAR",
        identifier=SafeHarborIdentifier.DATES,
        treatment=Treatment.BIRTH_YEAR,
    ),
    ColumnDecision(
        source="START",
        output="ENCOUNTER_YEAR",
        identifier=SafeHarborIdentifier.DATES,
        treatment=Treatment.YEAR,
    ),
    ColumnDecision(
        source="ZIP",
        output="ZIP3",
        identifier=SafeHarborIdentifier.GEOGRAPHIC_SUBDIVISION,
        treatment=Treatment.ZIP3,
    ),
    ColumnDecision(source="DESCRIPTION", output="DESCRIPTION", identifier=None, treatment=Treatment.KEEP),
    ColumnDecision(source="GENDER", output="GENDER", identifier=None, treatment=Treatment.KEEP),
    ColumnDecision(source="INCOME", output="INCOME", identifier=None, treatment=Treatment.KEEP),
    ColumnDecision(
        source="SSN",
        output=None,
        identifier=SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER,
        treatment=Treatment.DROP,
    ),
    ColumnDecision(
        source="FIRST", output=None, identifier=SafeHarborIdentifier.NAMES, treatment=Treatment.DROP
    ),
)

#: The published columns, in output order.
ALLOWLISTED = (
    "PATIENT_KEY",
    "AGE",
    "MOTHER_BIRTH_YEAR",
    "ENCOUNTER_YEAR",
    "ZIP3",
    "DESCRIPTION",
    "GENDER",
    "INCOME",
)


def make_report(
    decisions: tuple[ColumnDecision, ...] = DECISIONS,
    *,
    verdict: Verdict = Verdict.PUBLISHED,
    as_of: date = AS_OF,
) -> GovernanceReport:
    """A governance report of a published run of a synthetic policy."""
    return GovernanceReport(
        verdict=verdict,
        policy=PolicyIdentity(name="readmission-risk", version=1, digest="sha256:" + "0" * 64),
        purpose="model-training",
        model={"name": "readmission-risk", "version": "1"},
        recipient="internal-ml-platform",
        input="raw/encounters.parquet",
        output="governed/encounters.parquet" if verdict is Verdict.PUBLISHED else None,
        method=DeidentificationMethod.EXPERT_DETERMINATION,
        zip3_vintage="census-2020",
        as_of=as_of,
        consent_registry="consent.csv",
        consent_bases=["research-authorization", "irb-waiver"],
        columns=list(decisions),
    )


def pseudonym(text: str) -> str:
    """A stand-in for an HMAC-SHA256 pseudonym: 64 lowercase hex digits."""
    return hashlib.sha256(text.encode()).hexdigest()


def governed_table(**replace: pa.Array | list) -> pa.Table:
    """A governed-looking table that passes the suite, with some columns replaced or added.

    Ages include the top category 90 and birth years the earliest one Safe Harbor keeps at ``AS_OF``
    (1936), so that the bounds themselves are shown to pass; nulls stand where a treatment suppresses.

    :param replace: column name to values; a name not in the table adds a column.
    """
    columns: dict[str, pa.Array] = {
        "PATIENT_KEY": pa.array([pseudonym("a"), pseudonym("b"), pseudonym("c"), pseudonym("d")]),
        "AGE": pa.array([0, 42, 90, None], pa.int32()),
        "MOTHER_BIRTH_YEAR": pa.array([1936, 1960, None, 2026], pa.int32()),
        "ENCOUNTER_YEAR": pa.array([2019, 2020, 2024, 2026], pa.int32()),
        "ZIP3": pa.array(["681", "000", None, "021"]),
        "DESCRIPTION": pa.array(
            ["Well child visit (procedure)", "Body mass index 30+ - obesity (finding)", None, "410620009"]
        ),
        "GENDER": pa.array(["F", "M", "F", None]),
        "INCOME": pa.array([52000, 31000, None, 87000], pa.int64()),
    }
    for name, values in replace.items():
        columns[name] = values if isinstance(values, pa.Array) else pa.array(values)
    return pa.table(columns)


@pytest.fixture
def report() -> GovernanceReport:
    return make_report()
