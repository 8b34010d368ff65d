"""The Safe Harbor verdict of a published dataset: whether it meets 45 CFR 164.514(b)(2), and what breaks it.

Safe Harbor has two conditions. The first, 164.514(b)(2)(i), is about the data: every one of the 18
identifiers is removed, except what the rule itself allows (the year of a date, the first three digits
of a ZIP code under the ZIP3 rule, a re-identification code that meets 164.514(c)). The product checks it
from the run's decisions: each published column's identifier and treatment, and the residual
identifiers its value scan found. The second, 164.514(b)(2)(ii), is that the covered entity has no
actual knowledge that what remains could identify a person. Software cannot know that; a person states
it in the policy (``deidentification.attestation``), and the verdict records the statement, never
assumes it.

The verdict is computed for every published run, whatever method the policy declares: a dataset that
rests on an expert determination or a data use agreement is reported as not Safe Harbor, with the
columns and letters that make it so, instead of being taken for de-identified.

A verdict is a statement of what the product checked, not legal advice; :data:`NOTICE` says so wherever a
verdict is printed.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from airflow_phi_guard.deid.methods import treatment_refusal
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.policy.models import DeidentificationMethod, SafeHarborAttestation, Treatment

#: Printed beside every verdict (REGULATORY.md: the product must say so where it prints one).
NOTICE = (
    "This verdict states what airflow-phi-guard checked against 45 CFR 164.514(b)(2); it is not legal advice."
)


class SafeHarborStatus(StrEnum):
    """Where a published dataset stands against the two conditions of Safe Harbor."""

    MET = "met"
    AWAITING_ATTESTATION = "awaiting-attestation"
    NOT_MET = "not-met"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SafeHarborBreach(_Record):
    """One thing in the published dataset that Safe Harbor does not allow, named by column and letter."""

    column: str = Field(description="The source column.")
    output: str | None = Field(description="The published column, or None for a finding in text.")
    identifier: SafeHarborIdentifier = Field(description="The Safe Harbor letter the breach is about.")
    rule: str = Field(description="Why Safe Harbor does not allow it, with the section; never a value.")


class SafeHarborVerdict(_Record):
    """Whether the published dataset meets Safe Harbor, and everything that stands in the way."""

    status: SafeHarborStatus
    breaches: list[SafeHarborBreach] = Field(
        default_factory=list, description="Every column and letter that breaks 164.514(b)(2)(i)."
    )
    attestation: SafeHarborAttestation | None = Field(
        default=None,
        description="The person's statement of no actual knowledge (164.514(b)(2)(ii)), as the policy "
        "records it; None when none was given.",
    )
    notice: str = NOTICE

    @property
    def met(self) -> bool:
        return self.status is SafeHarborStatus.MET


class _ColumnDecision(BaseModel):
    """What the verdict needs of a column decision (report.ColumnDecision has these fields)."""

    source: str
    output: str | None
    identifier: SafeHarborIdentifier | None
    treatment: Treatment


class _Finding(BaseModel):
    """What the verdict needs of a residual finding (report.Finding has these fields)."""

    column: str
    identifier: SafeHarborIdentifier
    count: int


def safe_harbor_verdict(
    columns: Iterable[object],
    findings: Iterable[object],
    attestation: SafeHarborAttestation | None,
) -> SafeHarborVerdict:
    """Judge a published dataset against Safe Harbor.

    :param columns: the run's column decisions (``report.ColumnDecision``): source, output, identifier
        and treatment of every source column.
    :param findings: the residual identifiers the value scan found in published columns
        (``report.Finding``); a published run normally has none, but a verdict never assumes it.
    :param attestation: the policy's statement of no actual knowledge, or None.
    """
    breaches = [
        *(_column_breach(_ColumnDecision.model_validate(column, from_attributes=True)) for column in columns),
        *(_finding_breach(_Finding.model_validate(finding, from_attributes=True)) for finding in findings),
    ]
    found = [breach for breach in breaches if breach is not None]
    if found:
        status = SafeHarborStatus.NOT_MET
    elif attestation is None:
        status = SafeHarborStatus.AWAITING_ATTESTATION
    else:
        status = SafeHarborStatus.MET
    return SafeHarborVerdict(status=status, breaches=found, attestation=attestation)


def _column_breach(column: _ColumnDecision) -> SafeHarborBreach | None:
    if column.output is None or column.identifier is None:
        return None
    rule = treatment_refusal(
        column.source, column.identifier, column.treatment, DeidentificationMethod.SAFE_HARBOR
    )
    if rule is None:
        return None
    return SafeHarborBreach(
        column=column.source, output=column.output, identifier=column.identifier, rule=rule
    )


def _finding_breach(finding: _Finding) -> SafeHarborBreach | None:
    if finding.count <= 0:
        return None
    rule = (
        f"{finding.count} value(s) of column {finding.column} still hold identifier "
        f"{finding.identifier.letter} ({finding.identifier.description}), which 164.514(b)(2)(i) removes"
    )
    return SafeHarborBreach(column=finding.column, output=None, identifier=finding.identifier, rule=rule)
