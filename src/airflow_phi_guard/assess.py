"""The AI risk assessment of one model, from its lineage and the audit trail: four checks, pass or fail.

``phi-guard assess --model NAME`` answers, for a model, which PHI reached it and in which treatment (the
audit of :mod:`airflow_phi_guard.lineage.audit`), under which consent bases and with which exclusions, how
its training data was de-identified and at which re-identification risk, which recipients got it and
whether each has a business associate agreement in force, and whether its inference is audit-logged; then
the four priorities as explicit checks:

- ``baa``: every governance run whose output is still PHI (anything but Safe Harbor ``met``) went to a
  recipient whose BAA was in force at the run's consent date and permits PHI and the policy's purpose
  (164.502(e)); Safe Harbor output needs none. Fails without a recipient registry when any output is PHI.
- ``deidentification``: every run documents its route: Safe Harbor ``met`` (with attestation), an expert
  determination recorded (164.514(b)(1)), or a data use agreement for a limited data set (164.514(e)).
- ``inference-logging``: the trail holds at least one inference record of the model and verifies intact
  (164.312(b)). Fails without a trail.
- ``risk-assessment``: every run measured re-identification risk over declared quasi-identifiers, and no
  open finding is of high severity.

Findings are ranked high, then medium, then low. Names, counts and digests only, never a value. Not legal
advice.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_phi_guard.lineage.audit import ModelAudit, ReachedColumn, audit_model
from airflow_phi_guard.trail.chain import RecordKind

NOTICE = "This assessment states what airflow-phi-guard recorded and checked; it is not legal advice."


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


_RANK = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2}


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Finding(_Record):
    severity: Severity
    check: str
    message: str


class Check(_Record):
    name: str
    passed: bool
    detail: str


class RecipientStatus(_Record):
    recipient: str
    in_registry: bool
    baa: str | None = Field(description="The agreement's id, or None.")
    baa_in_force: bool | None = Field(description="In force at the run's consent date; None when unknown.")
    phi_allowed: bool | None = None
    permits_purpose: bool | None = Field(default=None, description="Whether the BAA permits the purpose.")
    needed: bool = Field(description="Whether the data it got is still PHI, so that a BAA is needed.")


class RunAssessment(_Record):
    run_id: str
    policy: str | None
    method: str | None
    safe_harbor: str | None
    k: int | None
    k_min: int | None
    documented: bool
    recipient: str | None
    consent_bases: list[str]
    rows_admitted: int | None
    rows_excluded: dict[str, int]


class InferenceLog(_Record):
    trail: str | None
    batches: int
    failed: int
    last_recorded_at: str | None
    trail_intact: bool | None
    identifier_columns: list[str]


class Assessment(_Record):
    model: str
    version: str | None
    known: bool
    phi_reached: list[ReachedColumn]
    runs: list[RunAssessment]
    recipients: list[RecipientStatus]
    inference: InferenceLog
    findings: list[Finding]
    checks: list[Check]
    notice: str = NOTICE

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def assess(
    events: Sequence[Mapping[str, Any]],
    model: str,
    version: str | None = None,
    *,
    trail: Any = None,
    recipients: Any = None,
) -> Assessment:
    """Assess a model from its lineage events, the audit trail and the recipient registry.

    :param events: the OpenLineage events (an event log's, or the archive's for the model).
    :param model: the model's name.
    :param version: its version; every version when None.
    :param trail: an :class:`~airflow_phi_guard.trail.store.AuditTrail`, or None.
    :param recipients: a :class:`~airflow_phi_guard.recipients.models.RecipientRegistry`, or None.
    """
    audit: ModelAudit = audit_model(events, model, version)
    facets = _run_facets(events)
    runs = [_run(run, facets.get(run.run_id, {})) for run in audit.runs if run.role == "governance"]
    statuses = _recipients(runs, facets, recipients)
    inference = _inference(trail, model, version)
    findings = _findings(audit, runs, statuses, inference, recipients is not None)
    checks = _checks(audit, runs, statuses, inference, findings, recipients is not None)
    phi = [column for column in audit.reached if column.identifier is not None]
    return Assessment(
        model=model,
        version=version,
        known=audit.known,
        phi_reached=phi,
        runs=runs,
        recipients=statuses,
        inference=inference,
        findings=sorted(findings, key=lambda finding: (_RANK[finding.severity], finding.check)),
        checks=checks,
    )


def _run_facets(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    by_run: dict[str, dict[str, Any]] = {}
    for event in events:
        run = event.get("run") or {}
        if event.get("eventType") in ("COMPLETE", "FAIL") and isinstance(run.get("runId"), str):
            by_run.setdefault(run["runId"], {}).update(run.get("facets") or {})
    return by_run


def _run(run: Any, facets: Mapping[str, Any]) -> RunAssessment:
    policy = facets.get("phiGuard_policy") or {}
    deid = facets.get("phiGuard_deidentification") or {}
    risk = deid.get("risk") or {}
    method = run.deidentification_method or deid.get("method")
    if method == "safe-harbor":
        documented = run.safe_harbor_status == "met"
    elif method == "expert-determination":
        documented = bool(deid.get("expertDetermination"))
    elif method == "limited-data-set":
        documented = bool(deid.get("dataUseAgreement"))
    else:
        documented = False
    return RunAssessment(
        run_id=run.run_id,
        policy=run.policy_name,
        method=method,
        safe_harbor=run.safe_harbor_status,
        k=risk.get("k"),
        k_min=risk.get("kMin"),
        documented=documented,
        recipient=policy.get("recipient"),
        consent_bases=list(run.consent_bases),
        rows_admitted=run.rows_admitted,
        rows_excluded=dict(run.rows_excluded),
    )


def _recipients(
    runs: Sequence[RunAssessment], facets: Mapping[str, Mapping[str, Any]], registry: Any
) -> list[RecipientStatus]:
    statuses: dict[str, RecipientStatus] = {}
    for run in runs:
        if run.recipient is None:
            continue
        needed = run.safe_harbor != "met"
        policy = facets.get(run.run_id, {}).get("phiGuard_policy") or {}
        on = date.fromisoformat(policy["asOf"]) if policy.get("asOf") else None
        entry = registry.recipients.get(run.recipient) if registry is not None else None
        baa = entry.baa if entry is not None else None
        status = RecipientStatus(
            recipient=run.recipient,
            in_registry=entry is not None,
            baa=baa.id if baa is not None else None,
            baa_in_force=(baa.in_force(on) if baa is not None and on is not None else None),
            phi_allowed=(baa.data.value == "phi") if baa is not None else None,
            permits_purpose=baa.permits(policy["purpose"])
            if baa is not None and policy.get("purpose")
            else None,
            needed=needed or (run.recipient in statuses and statuses[run.recipient].needed),
        )
        statuses[run.recipient] = status
    return sorted(statuses.values(), key=lambda status: status.recipient)


def _inference(trail: Any, model: str, version: str | None) -> InferenceLog:
    if trail is None:
        return InferenceLog(
            trail=None, batches=0, failed=0, last_recorded_at=None, trail_intact=None, identifier_columns=[]
        )
    batches, failed, last, columns = 0, 0, None, set()
    for text in trail.stored():
        try:
            record = json.loads(text)
        except ValueError:
            continue
        details = record.get("details") or {}
        if record.get("kind") != RecordKind.INFERENCE.value or details.get("model") != model:
            continue
        if version is not None and details.get("model_version") != version:
            continue
        batches += 1
        failed += record.get("verdict") == "failed"
        last = record.get("recorded_at")
        columns.update(details.get("identifier_columns") or [])
    return InferenceLog(
        trail=trail.display_name,
        batches=batches,
        failed=failed,
        last_recorded_at=last,
        trail_intact=trail.verify().intact,
        identifier_columns=sorted(columns),
    )


def _findings(
    audit: ModelAudit,
    runs: Sequence[RunAssessment],
    recipients: Sequence[RecipientStatus],
    inference: InferenceLog,
    have_registry: bool,
) -> list[Finding]:
    findings = []
    if not audit.known:
        findings.append(
            Finding(severity=Severity.HIGH, check="lineage", message="no governance run names it")
        )
    for run in runs:
        if not run.documented:
            findings.append(
                Finding(
                    severity=Severity.HIGH,
                    check="deidentification",
                    message=f"run {run.run_id}: {run.method or 'no'} de-identification without its record "
                    f"(Safe Harbor {run.safe_harbor or 'not recorded'})",
                )
            )
        if run.k is None:
            findings.append(
                Finding(
                    severity=Severity.MEDIUM,
                    check="risk-assessment",
                    message=f"run {run.run_id}: no re-identification risk measured, no quasi-identifiers",
                )
            )
        elif run.k_min is not None and run.k < run.k_min:
            findings.append(
                Finding(
                    severity=Severity.HIGH,
                    check="risk-assessment",
                    message=f"run {run.run_id}: k {run.k} below k_min {run.k_min}",
                )
            )
        excluded = sum(run.rows_excluded.values())
        if excluded:
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(run.rows_excluded.items()))
            findings.append(
                Finding(
                    severity=Severity.LOW,
                    check="consent",
                    message=f"run {run.run_id}: {excluded} row(s) excluded for consent gaps ({reasons})",
                )
            )
    for status in recipients:
        if not status.needed:
            continue
        if not have_registry:
            problem = "no recipient registry was given to show a BAA"
        elif not status.in_registry:
            problem = "not in the recipient registry"
        elif status.baa is None:
            problem = "has no BAA"
        elif not status.baa_in_force:
            problem = f"BAA {status.baa} not in force at the run date"
        elif not status.phi_allowed:
            problem = f"BAA {status.baa} permits de-identified data only"
        elif not status.permits_purpose:
            problem = f"BAA {status.baa} does not permit the policy's purpose"
        else:
            continue
        findings.append(
            Finding(
                severity=Severity.HIGH,
                check="baa",
                message=f"recipient {status.recipient} got PHI and {problem}",
            )
        )
    if inference.trail is None:
        findings.append(
            Finding(severity=Severity.HIGH, check="inference-logging", message="no audit trail given")
        )
    elif inference.batches == 0:
        findings.append(
            Finding(severity=Severity.HIGH, check="inference-logging", message="no inference batch is logged")
        )
    elif inference.trail_intact is False:
        findings.append(
            Finding(
                severity=Severity.HIGH,
                check="inference-logging",
                message="the audit trail does not verify (run `phi-guard trail verify`)",
            )
        )
    if inference.failed:
        findings.append(
            Finding(
                severity=Severity.LOW,
                check="inference-logging",
                message=f"{inference.failed} inference batch(es) failed",
            )
        )
    return findings


def _checks(
    audit: ModelAudit,
    runs: Sequence[RunAssessment],
    recipients: Sequence[RecipientStatus],
    inference: InferenceLog,
    findings: Sequence[Finding],
    have_registry: bool,
) -> list[Check]:
    def failing(check: str) -> list[Finding]:
        return [
            finding for finding in findings if finding.check == check and finding.severity is not Severity.LOW
        ]

    baa = failing("baa")
    deid = failing("deidentification")
    logging_ = failing("inference-logging")
    risk = failing("risk-assessment") + [
        f for f in findings if f.severity is Severity.HIGH and f.check != "risk-assessment"
    ]
    needed = [status.recipient for status in recipients if status.needed]
    return [
        Check(
            name="baa",
            passed=audit.known and not baa,
            detail=(
                f"{len(baa)} recipient(s) of PHI without a BAA in force"
                if baa
                else f"BAA in force for {', '.join(needed)}"
                if needed
                else "every output was Safe Harbor de-identified: no BAA needed"
            ),
        ),
        Check(
            name="deidentification",
            passed=bool(runs) and not deid,
            detail=f"{sum(run.documented for run in runs)} of {len(runs)} run(s) documented",
        ),
        Check(
            name="inference-logging",
            passed=not logging_,
            detail=f"{inference.batches} batch(es) logged in {inference.trail or 'no trail'}",
        ),
        Check(
            name="risk-assessment",
            passed=bool(runs) and not risk,
            detail=f"{sum(run.k is not None for run in runs)} of {len(runs)} run(s) measured k; "
            f"{sum(f.severity is Severity.HIGH for f in findings)} high finding(s)",
        ),
    ]


def render_text(assessment: Assessment) -> str:
    """The assessment for a terminal."""
    lines = [
        f"AI risk assessment of model {assessment.model}"
        + (f":{assessment.version}" if assessment.version else "")
    ]
    for check in assessment.checks:
        lines.append(f"  [{'pass' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
    lines.append("PHI that reached the model:")
    lines.extend(
        f"  {column.column} ({column.identifier}) as {column.treatment} -> {column.output_column}"
        for column in assessment.phi_reached
    )
    lines.append("Runs:")
    for run in assessment.runs:
        lines.append(
            f"  {run.run_id}: policy {run.policy}, {run.method}, Safe Harbor {run.safe_harbor}, k {run.k}, "
            f"bases {', '.join(run.consent_bases)}, {run.rows_admitted} row(s) admitted, "
            f"recipient {run.recipient}"
        )
    lines.append("Recipients:")
    for status in assessment.recipients:
        lines.append(
            f"  {status.recipient}: BAA {status.baa or 'none'}, in force {status.baa_in_force}, "
            f"needed {status.needed}"
        )
    inference = assessment.inference
    lines.append(
        f"Inference: {inference.batches} batch(es) logged, {inference.failed} failed, trail "
        f"{inference.trail or 'none'}, intact {inference.trail_intact}"
    )
    lines.append("Findings:")
    lines.extend(
        f"  {finding.severity}: {finding.check}: {finding.message}" for finding in assessment.findings
    )
    lines.append(assessment.notice)
    return "\n".join(lines) + "\n"


def render_json(assessment: Assessment) -> str:
    return assessment.model_dump_json(indent=2) + "\n"


def render_html(assessment: Assessment) -> str:
    """A self-contained page, every text escaped."""
    escape = html.escape
    checks = "".join(
        f"<tr><td>{escape(check.name)}</td><td class='{'pass' if check.passed else 'fail'}'>"
        f"{'pass' if check.passed else 'fail'}</td><td>{escape(check.detail)}</td></tr>"
        for check in assessment.checks
    )
    findings = "".join(
        f"<li><b>{escape(finding.severity)}</b> {escape(finding.check)}: {escape(finding.message)}</li>"
        for finding in assessment.findings
    )
    phi = "".join(
        f"<li>{escape(column.column)} ({escape(column.identifier or '')}) as {escape(column.treatment)}</li>"
        for column in assessment.phi_reached
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>AI risk assessment</title>"
        "<style>.pass{color:green}.fail{color:#b00}</style></head><body>"
        f"<h1>AI risk assessment of {escape(assessment.model)}</h1>"
        f"<table><tr><th>check</th><th>result</th><th>detail</th></tr>{checks}</table>"
        f"<h2>PHI that reached the model</h2><ul>{phi}</ul><h2>Findings</h2><ul>{findings}</ul>"
        f"<p>{escape(assessment.notice)}</p></body></html>\n"
    )


def load_events(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    from airflow_phi_guard.lineage.audit import read_events

    return [event for path in paths for event in read_events(path)]
