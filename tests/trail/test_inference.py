"""Inference audit logging (164.312(b)): each batch in the trail and in lineage, with no value."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.recipients import parse_recipient_registry
from airflow_phi_guard.trail.anchors import verify_trail
from airflow_phi_guard.trail.fingerprint import dataset_fingerprint
from airflow_phi_guard.trail.inference import inference_audit
from airflow_phi_guard.trail.store import JsonlTrail
from tests.lineage.openlineage_validation import validate_event

CANARY_SUBJECT = "CANARY-SUBJ-7781"

#: A vendor whose business associate agreement permits inference on PHI through 2026.
ACME_REGISTRY = parse_recipient_registry(
    """
recipients:
  acme-ai:
    name: Acme AI
    destinations: [https://api.acme-ai.example]
    region: us-east-1
    baa: {id: BAA-ACME-1, signed: 2026-01-01, effective: 2026-01-01, expires: 2027-01-01,
          permitted_uses: [inference], data: phi}
"""
)
CANARY_SSN = "999-77-8812"


@pytest.fixture(autouse=True)
def _lineage_on(monkeypatch):
    monkeypatch.delenv("OPENLINEAGE_DISABLED", raising=False)


@pytest.fixture
def scored_input(tmp_path: Path) -> Path:
    path = tmp_path / "governed.parquet"
    table = pa.table(
        {
            "PATIENT": [CANARY_SUBJECT, "CANARY-SUBJ-7782", "CANARY-SUBJ-7783"],
            "SSN": [CANARY_SSN, "999-77-8813", "999-77-8814"],
            "AGE": [61, 44, 90],
            "GENDER": ["F", "M", "F"],
        }
    )
    pq.write_table(table, path)
    return path


def _score(source: Path, output: Path) -> int:
    table = pq.read_table(source, columns=["AGE"])
    scores = pa.table({"score": pa.array([age / 100 for age in table["AGE"].to_pylist()])})
    pq.write_table(scores, output)
    return scores.num_rows


def test_a_batch_is_recorded_with_fingerprints_identifier_columns_and_counts(tmp_path, scored_input):
    trail, output, events = tmp_path / "trail.jsonl", tmp_path / "scores.parquet", tmp_path / "events.jsonl"

    with inference_audit(
        "readmission-risk",
        "1",
        scored_input,
        trail=trail,
        output=output,
        events=events,
        recipient="acme-ai",
        recipients=ACME_REGISTRY,
        run_date=date(2026, 6, 1),
    ) as batch:
        batch.rows_out = _score(scored_input, output)

    # the vendor's gate decision first (tests/recipients/test_inference_gate.py), then the batch
    gate, record = [json.loads(line) for line in trail.read_text(encoding="utf-8").splitlines()]
    assert (gate["kind"], gate["verdict"]) == ("gate-decision", "passed")
    assert record["kind"] == "inference"
    assert record["verdict"] == "logged"
    assert record["details"]["model"] == "readmission-risk"
    assert record["details"]["model_version"] == "1"
    assert record["details"]["recipient"] == "acme-ai"
    # by name: PATIENT a unique code (R), SSN (G), AGE (C: ages over 89 are identifiers); GENDER is none
    assert record["details"]["identifier_columns"] == ["AGE", "PATIENT", "SSN"]
    assert record["counts"] == {"rows_in": 3, "rows_out": 3}
    assert record["input_fingerprint"] == dataset_fingerprint(scored_input)
    assert record["output_fingerprint"] == dataset_fingerprint(output)
    assert record["details"]["seconds"] >= 0

    start, complete = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    names = [dataset["name"] for dataset in complete["inputs"]]
    assert names[0] == "model:readmission-risk/1"  # the model is an input
    assert names[1].endswith("governed.parquet")
    assert complete["outputs"][0]["name"].endswith("scores.parquet")
    assert complete["run"]["facets"]["phiGuard_trail"]["sequence"] == 2
    assert complete["run"]["facets"]["phiGuard_trail"]["digest"] == record["digest"]
    validate_event(complete)
    assert verify_trail(JsonlTrail(trail), [events]).intact


def test_a_failed_batch_is_recorded_as_failed_and_its_error_propagates(tmp_path, scored_input):
    trail = tmp_path / "trail.jsonl"

    with (
        pytest.raises(RuntimeError, match="model server down"),
        inference_audit("readmission-risk", "1", scored_input, trail=trail),
    ):
        raise RuntimeError("model server down")

    (record,) = [json.loads(line) for line in trail.read_text(encoding="utf-8").splitlines()]
    assert record["verdict"] == "failed"
    assert record["output_fingerprint"] is None


def test_the_scan_finds_identifiers_by_value_too(tmp_path, scored_input):
    renamed = tmp_path / "renamed.parquet"
    table = pq.read_table(scored_input).rename_columns(["PATIENT", "misc", "AGE", "GENDER"])
    pq.write_table(table, renamed)

    with inference_audit("m", "1", renamed, trail=tmp_path / "trail.jsonl", identifiers="scan"):
        pass

    record = json.loads((tmp_path / "trail.jsonl").read_text(encoding="utf-8"))
    # "misc" holds SSNs: found by value, not by name
    assert "misc" in record["details"]["identifier_columns"]


def test_no_value_reaches_the_trail_the_events_or_the_log(tmp_path, scored_input, caplog):
    trail, output, events = tmp_path / "trail.jsonl", tmp_path / "scores.parquet", tmp_path / "events.jsonl"
    caplog.set_level("DEBUG")

    with inference_audit(
        "m", "1", scored_input, trail=trail, output=output, events=events, identifiers="scan"
    ):
        _score(scored_input, output)

    text = trail.read_text(encoding="utf-8") + events.read_text(encoding="utf-8") + caplog.text
    for canary in (CANARY_SUBJECT, CANARY_SSN, "CANARY-SUBJ-7782", "999-77-8813"):
        assert canary not in text
