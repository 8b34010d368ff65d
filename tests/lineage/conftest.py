"""Fixtures of the lineage tests: a policy, and governance reports built by hand as the engine writes them."""

from __future__ import annotations

from datetime import date

import pytest

from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.policy.loader import parse_policy
from airflow_phi_guard.policy.models import Policy, Treatment
from airflow_phi_guard.report import (
    ColumnDecision,
    Finding,
    GovernanceReport,
    PolicyIdentity,
    RowCounts,
    Verdict,
)

POLICY_TEXT = """\
name: readmission-risk
version: 1
purpose: model-training
model: {name: readmission-risk, version: "1"}
recipient: internal-ml-platform
subject: PATIENT
undeclared: drop
consent:
  bases: [research-authorization, irb-waiver]
deidentification:
  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD (biostatistics)"
    determined: 2000-01-01
    report: ED-TEST-1
    expires: 2099-01-01
  zip3_vintage: census-2020
columns:
  PATIENT:   {treatment: pseudonymize, justification: "groups encounters per patient"}
  BIRTHDATE: {treatment: age, as: AGE, justification: "predictor"}
  ZIP:       {treatment: zip3, justification: "region"}
  START:     {treatment: year, as: START_YEAR, justification: "season of the encounter"}
  GENDER:    {treatment: keep, justification: "predictor"}
  SSN:       {treatment: drop, justification: "not needed"}
  FIRST:     {treatment: drop, justification: "not needed"}
"""

SOURCE = "/data/extract/encounters.parquet"
GOVERNED = "/data/governed/readmission.parquet"
REGISTRY = "/data/consent/registry.csv"

#: What the engine decides for each column of the source under POLICY_TEXT; DRIVERS is undeclared and
#: dropped under `undeclared: drop`. The letters are those of REGULATORY.md's table.
COLUMNS = [
    ColumnDecision(
        source="PATIENT",
        output="PATIENT",
        identifier=SafeHarborIdentifier.OTHER_UNIQUE_IDENTIFIER,
        treatment=Treatment.PSEUDONYMIZE,
    ),
    ColumnDecision(
        source="BIRTHDATE", output="AGE", identifier=SafeHarborIdentifier.DATES, treatment=Treatment.AGE
    ),
    ColumnDecision(
        source="ZIP",
        output="ZIP",
        identifier=SafeHarborIdentifier.GEOGRAPHIC_SUBDIVISION,
        treatment=Treatment.ZIP3,
    ),
    ColumnDecision(
        source="START", output="START_YEAR", identifier=SafeHarborIdentifier.DATES, treatment=Treatment.YEAR
    ),
    ColumnDecision(source="GENDER", output="GENDER", identifier=None, treatment=Treatment.KEEP),
    ColumnDecision(
        source="SSN",
        output=None,
        identifier=SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER,
        treatment=Treatment.DROP,
    ),
    ColumnDecision(
        source="FIRST", output=None, identifier=SafeHarborIdentifier.NAMES, treatment=Treatment.DROP
    ),
    ColumnDecision(
        source="DRIVERS",
        output=None,
        identifier=SafeHarborIdentifier.CERTIFICATE_OR_LICENSE_NUMBER,
        treatment=Treatment.DROP,
        declared=False,
    ),
]


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY_TEXT, "readmission_risk.yaml")


def make_report(
    policy: Policy,
    *,
    verdict: Verdict = Verdict.PUBLISHED,
    source: str = SOURCE,
    governed: str | None = GOVERNED,
    registry: str | None = REGISTRY,
    admitted: int = 7,
    columns: list[ColumnDecision] | None = None,
    findings: list[Finding] | None = None,
    refusals: list[str] | None = None,
) -> GovernanceReport:
    """A governance report as the engine writes it for ``policy``; refused reports name no output."""
    published = verdict is Verdict.PUBLISHED
    return GovernanceReport(
        verdict=verdict,
        policy=PolicyIdentity(name=policy.name, version=policy.version, digest=policy.digest),
        purpose=policy.purpose,
        model={"name": policy.model.name, "version": policy.model.version},
        recipient=policy.recipient,
        input=source,
        output=governed if published else None,
        method=policy.deidentification.method,
        zip3_vintage=policy.deidentification.zip3_vintage.value,
        as_of=date(2024, 6, 30),
        consent_registry=registry,
        consent_bases=[basis.value for basis in policy.consent.bases],
        pseudonym_key_fingerprint="0123456789abcdef",
        rows=RowCounts(read=10, admitted=admitted, excluded={"no-record": 2, "opted-out": 10 - admitted - 2}),
        columns=list(COLUMNS if columns is None else columns),
        findings=list(findings or []),
        refusals=list(refusals or ([] if published else ["column NOTE: 3 value(s) contain identifier G"])),
    )
