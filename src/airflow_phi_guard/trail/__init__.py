"""The hash-chained audit trail of every decision: governance runs, gate decisions, inference batches."""

from __future__ import annotations

from airflow_phi_guard.trail.chain import (
    RecordKind,
    TrailEntry,
    TrailHead,
    TrailProblem,
    TrailRecord,
    TrailVerification,
)
from airflow_phi_guard.trail.records import RunIds, append_decision, record_inference, record_run
from airflow_phi_guard.trail.store import AuditTrail, JsonlTrail, open_trail

__all__ = [
    "AuditTrail",
    "JsonlTrail",
    "RecordKind",
    "RunIds",
    "TrailEntry",
    "TrailHead",
    "TrailProblem",
    "TrailRecord",
    "TrailVerification",
    "append_decision",
    "open_trail",
    "record_inference",
    "record_run",
]
