"""The trail records of each kind of decision, built from names, counts and digests only."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from airflow_phi_guard.report import GovernanceReport
from airflow_phi_guard.trail.chain import RecordKind, TrailEntry, TrailRecord
from airflow_phi_guard.trail.fingerprint import dataset_fingerprint
from airflow_phi_guard.trail.store import AuditTrail, open_trail


@dataclass(frozen=True)
class RunIds:
    """Where a decision was taken in Airflow: DAG, task and run ids (None outside Airflow)."""

    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None


def _store(trail: AuditTrail | str | os.PathLike[str]) -> AuditTrail:
    return open_trail(trail) if isinstance(trail, str | os.PathLike) else trail


def record_run(
    trail: AuditTrail | str | os.PathLike[str],
    report: GovernanceReport,
    *,
    ids: RunIds | None = None,
    at: datetime | None = None,
) -> TrailRecord:
    """Append the record of a governance run, published or refused, from its final report.

    :param trail: the trail, or its path or URL.
    :param report: the run's governance report.
    :param ids: the Airflow DAG, task and run ids, when the run is a task.
    :param at: the time to record, UTC now by default.
    """
    ids = ids or RunIds()
    counts = {"rows_read": report.rows.read, "rows_admitted": report.rows.admitted}
    counts["rows_suppressed"] = report.rows.suppressed
    counts |= {f"excluded_{reason}": count for reason, count in sorted(report.rows.excluded.items())}
    counts["findings"] = sum(finding.count for finding in report.findings)
    entry = TrailEntry(
        kind=RecordKind.GOVERNANCE_RUN,
        verdict=report.verdict.value,
        policy_digest=report.policy.digest,
        input_fingerprint=dataset_fingerprint(report.input),
        output_fingerprint=dataset_fingerprint(report.output) if report.published else None,
        counts=counts,
        dag_id=ids.dag_id,
        task_id=ids.task_id,
        run_id=ids.run_id,
        details={
            "policy": report.policy.name,
            "policy_version": report.policy.version,
            "purpose": report.purpose,
            "model": report.model.get("name"),
            "model_version": report.model.get("version"),
            "recipient": report.recipient,
            "method": report.method.value,
            "input": report.input,
            "output": report.output,
            "refusals": len(report.refusals),
        },
    )
    return _store(trail).append(entry, at=at)


def append_decision(
    trail: AuditTrail | str | os.PathLike[str],
    *,
    passed: bool,
    recipient: str | None,
    agreement: str | None,
    rule: str,
    destination: str | None = None,
    policy_digest: str | None = None,
    dataset: str | os.PathLike[str] | None = None,
    dag_id: str | None = None,
    task_id: str | None = None,
    run_id: str | None = None,
    at: datetime | None = None,
) -> TrailRecord:
    """Append the record of a gate decision: which recipient, under which agreement and rule, passed or not.

    :param trail: the trail, or its path or URL.
    :param passed: whether the gate let the data go.
    :param recipient: the recipient's id in the registry; None when no recipient owns the destination.
    :param agreement: the BAA's id, None when the recipient has none.
    :param rule: the rule that decided (e.g. ``164.502(e)``), by id.
    :param destination: the destination URI the gate judged (names only: a bucket, a host).
    :param policy_digest: the digest of the policy whose output was judged.
    :param dataset: the dataset sent, fingerprinted when it is a local file.
    :param dag_id: the Airflow DAG id.
    :param task_id: the Airflow task id.
    :param run_id: the Airflow run id.
    :param at: the time to record, UTC now by default.
    """
    entry = TrailEntry(
        kind=RecordKind.GATE_DECISION,
        verdict="passed" if passed else "refused",
        policy_digest=policy_digest,
        input_fingerprint=dataset_fingerprint(dataset),
        dag_id=dag_id,
        task_id=task_id,
        run_id=run_id,
        details={"recipient": recipient, "agreement": agreement, "rule": rule, "destination": destination},
    )
    return _store(trail).append(entry, at=at)


def record_inference(
    trail: AuditTrail | str | os.PathLike[str],
    *,
    model: str,
    version: str,
    input_fingerprint: str | None,
    output_fingerprint: str | None,
    identifier_columns: Sequence[str],
    counts: Mapping[str, int],
    seconds: float,
    recipient: str | None = None,
    outcome: str = "logged",
    dag_id: str | None = None,
    task_id: str | None = None,
    run_id: str | None = None,
    at: datetime | None = None,
) -> TrailRecord:
    """Append the record of one inference batch (164.312(b)).

    :param trail: the trail, or its path or URL.
    :param model: the model's name.
    :param version: the model's version.
    :param input_fingerprint: the input dataset's fingerprint.
    :param output_fingerprint: the output's fingerprint, None when nothing was written.
    :param identifier_columns: the input columns that are identifiers, by name.
    :param counts: row counts by name (``rows_in``, ``rows_out``).
    :param seconds: how long the batch took.
    :param recipient: the vendor's recipient id when the model is a vendor API.
    :param outcome: ``logged`` for a batch that completed, ``failed`` for one that raised.
    :param dag_id: the Airflow DAG id.
    :param task_id: the Airflow task id.
    :param run_id: the Airflow run id.
    :param at: the time to record, UTC now by default.
    """
    entry = TrailEntry(
        kind=RecordKind.INFERENCE,
        verdict=outcome,
        input_fingerprint=input_fingerprint,
        output_fingerprint=output_fingerprint,
        counts=dict(counts),
        dag_id=dag_id,
        task_id=task_id,
        run_id=run_id,
        details={
            "model": model,
            "model_version": version,
            "identifier_columns": sorted(identifier_columns),
            "recipient": recipient,
            "seconds": round(seconds, 3),
        },
    )
    return _store(trail).append(entry, at=at)
