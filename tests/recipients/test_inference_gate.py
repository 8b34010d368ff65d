"""Scoring data with a vendor's model is a disclosure: the gate judges it before the batch, into the trail."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_phi_guard.exceptions import RecipientNotPermittedError, RecipientRegistryUnavailableError
from airflow_phi_guard.operators.inference import BatchInferenceOperator
from airflow_phi_guard.recipients import parse_recipient_registry
from airflow_phi_guard.trail.anchors import verify_trail
from airflow_phi_guard.trail.inference import inference_audit
from airflow_phi_guard.trail.store import JsonlTrail

REGISTRY_TEXT = """
recipients:
  inference-vendor:
    name: Model API whose agreement permits inference
    destinations: [https://api.inference.example]
    region: us-east-1
    baa:
      id: BAA-INF-1
      signed: 2026-01-01
      effective: 2026-01-01
      expires: 2027-01-01
      permitted_uses: [inference]
      data: phi
  training-vendor:
    name: Cloud trainer whose agreement permits model training only
    destinations: [s3://trainer/]
    region: us-east-2
    baa:
      id: BAA-TRAIN-2
      signed: 2026-01-01
      effective: 2026-01-01
      expires: 2028-01-01
      permitted_uses: [model-training]
      data: phi
  deid-vendor:
    name: Model API whose agreement covers de-identified data only
    destinations: [https://api.deid.example]
    region: EU
    baa:
      id: BAA-DEID-3
      signed: 2026-01-01
      effective: 2026-01-01
      expires: 2028-01-01
      permitted_uses: [inference]
      data: deidentified-only
  no-baa-vendor:
    name: Model API without an agreement
    destinations: [https://api.no-baa.example]
    region: us-west-2
"""
REGISTRY = parse_recipient_registry(REGISTRY_TEXT, "recipients.yaml")
RUN = date(2026, 6, 1)

CANARY_SUBJECT = "CANARY-SUBJ-9301"
CANARY_SSN = "999-93-0202"

# (recipient, input, run date, allowed, sections the decision must cite, agreement recorded)
# The input is PHI unless a governance report of the run that published it shows Safe Harbor met.
RULES = [
    # PHI to the vendor whose BAA is in force and permits inference (164.502(e), 164.504(e))
    ("inference-vendor", "phi", RUN, True, {"164.502(e)", "164.504(e)"}, "BAA-INF-1"),
    # its first day counts ...
    ("inference-vendor", "phi", date(2026, 1, 1), True, {"164.504(e)"}, "BAA-INF-1"),
    # ... the day before it does not
    ("inference-vendor", "phi", date(2025, 12, 31), False, {"164.504(e)"}, "BAA-INF-1"),
    # the expiry day is the first day it no longer holds
    ("inference-vendor", "phi", date(2027, 1, 1), False, {"164.504(e)"}, "BAA-INF-1"),
    # a BAA for model training does not permit inference (164.504(e)(2)(i))
    ("training-vendor", "phi", RUN, False, {"164.504(e)(2)(i)"}, "BAA-TRAIN-2"),
    # a BAA for de-identified data only refuses PHI (164.504(e)(2))
    ("deid-vendor", "phi", RUN, False, {"164.504(e)(2)"}, "BAA-DEID-3"),
    # no BAA: PHI may not go (164.502(e)(1))
    ("no-baa-vendor", "phi", RUN, False, {"164.502(e)(1)"}, None),
    # a recipient the registry does not list is refused whatever the data
    ("unlisted-vendor", "phi", RUN, False, {"164.502(e)"}, None),
    # Safe Harbor output is not PHI: no agreement needed (164.502(d)(2))
    ("no-baa-vendor", "safe-harbor", RUN, True, {"164.502(d)(2)"}, None),
    # a Safe Harbor report of another dataset says nothing of this input: PHI, refused
    ("no-baa-vendor", "report-of-another-set", RUN, False, {"164.502(e)(1)"}, None),
    # a report whose run refused publishes nothing: the input counts as PHI
    ("no-baa-vendor", "refused-report", RUN, False, {"164.502(e)(1)"}, None),
]


@pytest.fixture
def scored_input(tmp_path: Path) -> Path:
    path = tmp_path / "governed.parquet"
    table = pa.table({"PATIENT": [CANARY_SUBJECT, "CANARY-SUBJ-9302"], "SSN": [CANARY_SSN, "999-93-0203"]})
    pq.write_table(table.append_column("AGE", pa.array([61, 44])), path)
    return path


def _report(tmp_path: Path, scored_input: Path, kind: str) -> Path | None:
    """A governance report for the input kind of a rule row, or None for plain PHI."""
    if kind == "phi":
        return None
    output = tmp_path / "other.parquet" if kind == "report-of-another-set" else scored_input
    report = {
        "verdict": "refused" if kind == "refused-report" else "published",
        "policy": {"name": "safe-harbor-policy", "digest": "sha256:" + "1" * 64},
        "purpose": "model-training",
        "output": str(output),
        "safe_harbor": {"status": "met"},
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    return path


def _records(trail: Path) -> list[dict]:
    return [json.loads(line) for line in trail.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(("recipient", "kind", "run_date", "allowed", "sections", "agreement"), RULES)
def test_inference_gate_rule_table(
    tmp_path, scored_input, recipient, kind, run_date, allowed, sections, agreement
):
    trail, output = tmp_path / "trail.jsonl", tmp_path / "scores.parquet"
    scored = []

    def run() -> None:
        with inference_audit(
            "readmission-risk",
            "1",
            scored_input,
            trail=trail,
            output=output,
            recipient=recipient,
            recipients=REGISTRY,
            run_date=run_date,
            governance_report=_report(tmp_path, scored_input, kind),
        ) as batch:
            scored.append(True)
            pq.write_table(pa.table({"score": [0.1, 0.2]}), output)
            batch.rows_out = 2

    if allowed:
        run()
    else:
        with pytest.raises(RecipientNotPermittedError) as caught:
            run()
        assert recipient in str(caught.value)

    records = _records(trail)
    gate = records[0]
    assert gate["kind"] == "gate-decision"
    assert gate["verdict"] == ("passed" if allowed else "refused")
    assert (gate["details"]["recipient"], gate["details"]["agreement"]) == (recipient, agreement)
    assert sections <= set(gate["details"]["rule"].split(", "))
    if allowed:
        # the batch ran after the decision, and is logged after it
        assert scored == [True]
        assert [record["kind"] for record in records] == ["gate-decision", "inference"]
        assert records[1]["details"]["recipient"] == recipient
    else:
        # refused before the model saw a row: nothing scored, nothing written, only the refusal recorded
        assert scored == []
        assert not output.exists()
        assert len(records) == 1
    assert verify_trail(JsonlTrail(trail)).intact
    for canary in (CANARY_SUBJECT, CANARY_SSN):
        assert canary not in trail.read_text(encoding="utf-8")


def test_a_vendor_model_without_a_registry_is_refused_and_recorded(tmp_path: Path, scored_input: Path):
    trail = tmp_path / "trail.jsonl"

    with (
        pytest.raises(RecipientNotPermittedError, match="no recipient registry was given"),
        inference_audit("m", "1", scored_input, trail=trail, recipient="inference-vendor"),
    ):
        pytest.fail("the batch must not run")

    (record,) = _records(trail)
    assert (record["kind"], record["verdict"]) == ("gate-decision", "refused")


# (report file content, what is wrong with it): none of them can show the input is de-identified, so the
# input counts as PHI and a vendor without an agreement is refused (fail closed), never an error of the code.
MALFORMED_REPORTS = [
    # JSON, but a list, not an object
    (json.dumps([{"safe_harbor": {"status": "met"}}, CANARY_SUBJECT]), "list"),
    # JSON, but a bare string
    (json.dumps(CANARY_SUBJECT), "str"),
    # an object whose policy is not an object
    (json.dumps({"verdict": "published", "policy": CANARY_SUBJECT, "safe_harbor": {"status": "met"}}), None),
    # an object whose policy digest is not text
    (
        json.dumps(
            {
                "verdict": "published",
                "policy": {"name": "p", "digest": 7},
                "purpose": "model-training",
                "safe_harbor": {"status": "met"},
                "output": CANARY_SSN,
            }
        ),
        None,
    ),
    # an object whose Safe Harbor status is not text
    (
        json.dumps(
            {"verdict": "published", "policy": {"name": "p"}, "safe_harbor": {"status": [CANARY_SSN]}}
        ),
        None,
    ),
]


@pytest.mark.parametrize(
    ("content", "json_type"),
    MALFORMED_REPORTS,
    ids=["list", "string", "policy-not-object", "digest-not-text", "status-not-text"],
)
def test_a_report_that_is_no_governance_report_counts_as_phi(
    tmp_path, scored_input, caplog, content, json_type
):
    trail, report = tmp_path / "trail.jsonl", tmp_path / "report.json"
    report.write_text(content)

    with (
        caplog.at_level("WARNING", logger="airflow_phi_guard.trail.inference"),
        pytest.raises(RecipientNotPermittedError, match=r"164\.502"),
        inference_audit(
            "m",
            "1",
            scored_input,
            trail=trail,
            recipient="no-baa-vendor",
            recipients=REGISTRY,
            run_date=RUN,
            governance_report=report,
        ),
    ):
        pytest.fail("the batch must not run")

    (record,) = _records(trail)
    assert (record["kind"], record["verdict"]) == ("gate-decision", "refused")
    warnings = [entry.getMessage() for entry in caplog.records if entry.levelname == "WARNING"]
    assert any("the input counts as PHI" in message for message in warnings)
    if json_type is not None:
        assert any(f"of type {json_type}" in message for message in warnings)
    for canary in (CANARY_SUBJECT, CANARY_SSN):
        assert canary not in caplog.text
        assert canary not in trail.read_text(encoding="utf-8")


def test_an_internal_model_is_not_gated(tmp_path: Path, scored_input: Path):
    trail = tmp_path / "trail.jsonl"
    with inference_audit("m", "1", scored_input, trail=trail):
        pass
    assert [record["kind"] for record in _records(trail)] == ["inference"]


def _operator(tmp_path: Path, scored_input: Path, recipient: str | None) -> BatchInferenceOperator:
    registry = tmp_path / "recipients.yaml"
    registry.write_text(REGISTRY_TEXT)

    def score(input_path: str, output_path: str) -> int:
        ages = pq.read_table(input_path, columns=["AGE"])["AGE"].to_pylist()
        pq.write_table(pa.table({"score": [age / 100 for age in ages]}), output_path)
        return len(ages)

    return BatchInferenceOperator(
        task_id="score",
        model_name="readmission-risk",
        model_version="1",
        input_path=str(scored_input),
        output_path=str(tmp_path / "scores.parquet"),
        trail_path=str(tmp_path / "trail.jsonl"),
        score=score,
        recipient=recipient,
        recipients_path=str(registry),
        run_date="2026-06-01",
    )


class TestBatchInferenceOperator:
    def test_a_vendor_without_a_baa_fails_the_task_without_retry(self, tmp_path, scored_input):
        operator = _operator(tmp_path, scored_input, "no-baa-vendor")

        with pytest.raises(AirflowFailException) as caught:
            operator.execute(context={"run_id": "manual__2026-06-01"})

        message = str(caught.value)
        assert "recipient no-baa-vendor has no business associate agreement" in message
        assert "164.502(e)(1)" in message
        assert not (tmp_path / "scores.parquet").exists()
        (record,) = _records(tmp_path / "trail.jsonl")
        assert (record["kind"], record["verdict"], record["task_id"]) == ("gate-decision", "refused", "score")
        assert record["run_id"] == "manual__2026-06-01"
        for canary in (CANARY_SUBJECT, CANARY_SSN):
            assert canary not in message

    def test_a_vendor_whose_baa_permits_inference_scores(self, tmp_path, scored_input):
        operator = _operator(tmp_path, scored_input, "inference-vendor")

        summary = operator.execute(context={})

        assert summary["trail_sequence"] == 2
        kinds = [(record["kind"], record["verdict"]) for record in _records(tmp_path / "trail.jsonl")]
        assert kinds == [("gate-decision", "passed"), ("inference", "logged")]

    def test_an_unreadable_registry_file_is_a_refused_decision_in_the_trail(self, tmp_path, scored_input):
        operator = _operator(tmp_path, scored_input, "inference-vendor")
        Path(operator.recipients_path).write_text(f"recipients: [{CANARY_SUBJECT}\n")

        with pytest.raises(AirflowFailException, match="bad recipient registry") as caught:
            operator.execute(context={"run_id": "manual__2026-06-01"})

        assert not (tmp_path / "scores.parquet").exists()
        (record,) = _records(tmp_path / "trail.jsonl")
        assert (record["kind"], record["verdict"]) == ("gate-decision", "refused")
        assert (record["task_id"], record["run_id"]) == ("score", "manual__2026-06-01")
        assert record["details"]["recipient"] == "inference-vendor"
        assert record["details"]["agreement"] is None
        assert "164.502(e)" in record["details"]["rule"]
        assert verify_trail(JsonlTrail(tmp_path / "trail.jsonl")).intact
        for canary in (CANARY_SUBJECT, CANARY_SSN):
            assert canary not in str(caught.value)
            assert canary not in (tmp_path / "trail.jsonl").read_text(encoding="utf-8")

    def test_an_unreachable_registry_database_is_recorded_and_stays_retryable(
        self, tmp_path, scored_input, monkeypatch
    ):
        # nothing listens on port 1: the database cannot be reached, which a retry may heal
        monkeypatch.setenv("AIRFLOW_CONN_PHI_GUARD_TEST_NO_SERVER", "postgres://postgres@127.0.0.1:1/test")
        operator = _operator(tmp_path, scored_input, "inference-vendor")
        operator.recipients_path = None
        operator.recipient_registry_conn_id = "phi_guard_test_no_server"
        operator.recipient_registry_table = "recipients"

        with pytest.raises(RecipientRegistryUnavailableError):
            operator.execute(context={})

        assert not (tmp_path / "scores.parquet").exists()
        (record,) = _records(tmp_path / "trail.jsonl")
        assert (record["kind"], record["verdict"]) == ("gate-decision", "refused")

    def test_the_gate_fields_are_templated(self):
        for field in (
            "recipient",
            "recipients_path",
            "recipient_registry_conn_id",
            "report_path",
            "run_date",
        ):
            assert field in BatchInferenceOperator.template_fields
