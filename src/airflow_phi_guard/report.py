"""The governance report: the one record of what a run decided, in names, counts and digests only.

Everything downstream (lineage facets, Great Expectations suites, the XCom summary, the CLI output) is
built from this record, so it must never hold a cell value, a row or a subject id.
"""

from __future__ import annotations

import json
import os
from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from airflow_phi_guard.deid.risk import ReidentificationRisk
from airflow_phi_guard.deid.verdict import SafeHarborVerdict
from airflow_phi_guard.files import write_text_atomically
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.policy.models import (
    DataUseAgreement,
    DeidentificationMethod,
    ExpertDetermination,
    SubjectIdNormalization,
    Treatment,
)

REPORT_FORMAT_VERSION = 1


class Verdict(StrEnum):
    """Whether the governed dataset was published."""

    PUBLISHED = "published"
    REFUSED = "refused"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PolicyIdentity(_Record):
    """Which policy decided, pinned by the digest of its content."""

    name: str
    version: int
    digest: str


class RowCounts(_Record):
    """Rows read from the input, admitted by consent, and excluded by reason."""

    read: int = 0
    admitted: int = 0
    excluded: dict[str, int] = Field(default_factory=dict, description="Exclusion reason to row count.")
    suppressed: int = Field(
        default=0,
        description="Admitted rows removed because their equivalence class was smaller than k_min "
        "(below_k: suppress); the output holds admitted minus suppressed rows.",
    )


class ColumnDecision(_Record):
    """What happened to one source column."""

    source: str
    output: str | None = Field(description="The output column, or None when the column was not published.")
    identifier: SafeHarborIdentifier | None = Field(description="Safe Harbor letter, A to R, or None.")
    treatment: Treatment
    declared: bool = Field(default=True, description="False for an input column the policy does not name.")
    bands: tuple[int, ...] | None = Field(
        default=None,
        description="For age-band: the ages that start each band, as the policy declares them; the checks "
        "of the published set derive the band labels from them.",
    )
    bottom: int | float | None = Field(
        default=None,
        description="For top-bottom-code: the lowest value published, as the policy declares it.",
    )
    top: int | float | None = Field(
        default=None,
        description="For top-bottom-code: the highest value published, as the policy declares it.",
    )


class Finding(_Record):
    """Values of a published column that still contain an identifier, counted."""

    column: str
    identifier: SafeHarborIdentifier
    count: int


class SubjectManifestRecord(_Record):
    """The manifest of a published run's admitted subjects, as keyed hashes beside the governed dataset."""

    path: str = Field(description="The manifest file, beside the governed dataset.")
    digest: str = Field(description="SHA-256 of the manifest file, ``sha256:<hex>``.")
    key_fingerprint: str = Field(description="A keyed fingerprint of the manifest key, never the key.")
    subjects: int = Field(description="How many distinct admitted subjects the manifest holds.")
    subject_ids: SubjectIdNormalization = Field(
        default_factory=SubjectIdNormalization,
        description="How the subject ids were normalised before they were hashed.",
    )


class SurrogateNamespace(_Record):
    """The codes of one surrogate namespace in a run: counts only, never an identifier or a code."""

    namespace: str
    known_codes: int = Field(description="Codes the mapping held when the run began.")
    new_codes: int = Field(description="People who got a code for the first time in this run.")


class SurrogateMappingRecord(_Record):
    """Which private mapping of surrogate codes a run used (164.514(c)): where it is, and the counts."""

    store: str = Field(description="The mapping's location, a path or a database URL without password.")
    namespaces: list[SurrogateNamespace] = Field(default_factory=list)
    committed: bool = Field(
        default=False, description="Whether the run's new codes were written: only when it was published."
    )


class DateShiftRecord(_Record):
    """How a run shifted dates: the window and which key, never the key or a shift."""

    window_days: int = Field(description="Each subject's shift lies within plus or minus this many days.")
    key_fingerprint: str = Field(description="A keyed fingerprint of the date shift key, never the key.")
    columns: list[str] = Field(description="The source columns whose dates were shifted.")


class ConsentSummary(_Record):
    """How consent admitted rows: the rules applied and the counts per basis, never a subject id."""

    as_of: date = Field(description="The date on which every consent record was judged.")
    date_rule: str = Field(description="How registry dates and timestamps are compared, by name.")
    subject_id_normalization: str = Field(description="How subject ids of both sides were normalised.")
    subject_ids: SubjectIdNormalization = Field(
        default_factory=SubjectIdNormalization, description="The same normalisation, as the policy states it."
    )
    purpose_codes: list[str] = Field(
        description="The HL7 v3 PurposeOfUse codes whose records covered the policy's purpose."
    )
    registry_records: int | None = Field(default=None, description="Records of the registry, when read.")
    registry_subjects: int | None = Field(default=None, description="Distinct subjects of the registry.")
    subjects_matched: int = Field(default=0, description="Registry subjects that occur in the dataset.")
    rows_matched: int = Field(default=0, description="Rows whose subject has a registry record.")
    admitted_rows_by_basis: dict[str, int] = Field(
        default_factory=dict,
        description="Admitted rows per basis of the grant that admitted them (the policy's first basis "
        "among several that admit).",
    )
    admitted_subjects_by_basis: dict[str, int] = Field(
        default_factory=dict, description="Distinct admitted subjects per basis, counted the same way."
    )
    excluded_rows_by_reason: dict[str, int] = Field(
        default_factory=dict, description="Excluded rows per exclusion reason."
    )


class GovernanceReport(_Record):
    """The outcome of applying a policy to one dataset."""

    format_version: int = REPORT_FORMAT_VERSION
    verdict: Verdict
    policy: PolicyIdentity
    purpose: str
    model: dict[str, str] = Field(description="The model the policy prepares data for: name and version.")
    recipient: str
    input: str
    output: str | None = Field(description="Where the governed dataset was published; None when refused.")
    method: DeidentificationMethod
    zip3_vintage: str
    as_of: date = Field(description="Reference date of consent and of ages.")
    consent_registry: str | None
    consent_bases: list[str]
    pseudonym_key_fingerprint: str | None = Field(
        default=None, description="A keyed fingerprint of the pseudonym key, never the key itself."
    )
    zip3: dict[str, str | int] | None = Field(
        default=None,
        description="The ZIP3 list applied: vintage, source, how many restricted prefixes, and the SHA-256 "
        "of its data file; None when no column takes zip3.",
    )
    date_shift: DateShiftRecord | None = Field(
        default=None, description="The date shift, if any column takes it."
    )
    surrogate_mapping: SurrogateMappingRecord | None = Field(
        default=None, description="The private mapping of surrogate codes, if any column takes surrogate."
    )
    expert_determination: ExpertDetermination | None = Field(
        default=None, description="The expert determination the run rests on (164.514(b)(1)), as recorded."
    )
    data_use_agreement: DataUseAgreement | None = Field(
        default=None, description="The data use agreement the run discloses under (164.514(e)(4))."
    )
    risk: ReidentificationRisk | None = Field(
        default=None,
        description="k-anonymity and l-diversity measured over the declared quasi-identifiers on the rows "
        "published; None when the policy declares none or the run was refused before it was measured.",
    )
    safe_harbor: SafeHarborVerdict | None = Field(
        default=None,
        description="Whether the published output meets Safe Harbor (164.514(b)(2)), with every column and "
        "letter that breaks it; None when nothing was published. Not legal advice.",
    )
    manifest: SubjectManifestRecord | None = Field(
        default=None,
        description="The subject manifest written beside the output; None when the run published nothing or "
        "had no manifest key, in which case revocation impact cannot be answered for it.",
    )
    rows: RowCounts = Field(default_factory=RowCounts)
    consent: ConsentSummary | None = Field(
        default=None, description="The consent rules applied and the admissions per basis."
    )
    columns: list[ColumnDecision] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    refusals: list[str] = Field(default_factory=list)

    @property
    def published(self) -> bool:
        return self.verdict is Verdict.PUBLISHED

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON, atomically, creating the folder if needed."""
        write_text_atomically(path, self.to_json())

    def summary(self) -> dict[str, object]:
        """The small, value-free dict an Airflow task returns to XCom."""
        return {
            "verdict": self.verdict.value,
            "policy": self.policy.name,
            "policy_version": self.policy.version,
            "policy_digest": self.policy.digest,
            "purpose": self.purpose,
            "as_of": self.as_of.isoformat(),
            "output": self.output,
            "rows_read": self.rows.read,
            "rows_admitted": self.rows.admitted,
            "rows_excluded": dict(self.rows.excluded),
            "findings": len(self.findings),
            "rows_suppressed": self.rows.suppressed,
            "safe_harbor": self.safe_harbor.status.value if self.safe_harbor else None,
            "k": self.risk.k if self.risk else None,
        }
