"""The recipient gate operator, on a report the policy operator really wrote (expert determination: PHI)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_phi_guard.cli import EXIT_PUBLISHED, main
from airflow_phi_guard.exceptions import AuditTrailError
from airflow_phi_guard.operators.recipients import RecipientGateOperator
from airflow_phi_guard.trail.store import open_trail
from tests.conftest import PostgresSchema
from tests.engine.test_executor import SUBJECTS
from tests.operators.conftest import make_policy_operator

REGISTRY = """\
recipients:
  no-baa-vendor:
    name: Vendor without an agreement
    destinations: [s3://no-baa-vendor/]
    region: us-west-2
  baa-vendor:
    name: Vendor with an agreement
    destinations: [s3://baa-vendor/inbound]
    region: us-east-2
    baa:
      id: BAA-VENDOR-7
      signed: 2026-01-01
      effective: 2026-01-01
      expires: 2027-01-01
      permitted_uses: [model-training]
      data: phi
"""


@pytest.fixture
def governed(tmp_path: Path, key_connection: str) -> tuple[Path, Path, dict]:
    policy_task = make_policy_operator(tmp_path, key_connection)
    summary = policy_task.execute(context={})
    registry = tmp_path / "recipients.yaml"
    registry.write_text(REGISTRY)
    return Path(policy_task.report_path), registry, summary


def gate(report: Path, registry: Path, destination: str, **options) -> RecipientGateOperator:
    return RecipientGateOperator(
        task_id="gate",
        destination=destination,
        report_path=str(report),
        recipients_path=str(registry),
        run_date="2026-12-01",
        **options,
    )


class TestRecipientGateExecute:
    def test_phi_to_a_vendor_with_a_baa_passes(self, governed):
        report, registry, _ = governed
        assert json.loads(report.read_text())["safe_harbor"]["status"] == "not-met"

        decision = gate(report, registry, "s3://baa-vendor/inbound/set.parquet").execute(context={})

        assert decision["allowed"] is True
        assert (decision["recipient"], decision["agreement"]) == ("baa-vendor", "BAA-VENDOR-7")

    def test_phi_to_a_vendor_without_a_baa_fails_without_retry_and_names_no_value(self, governed):
        report, registry, _ = governed

        with pytest.raises(AirflowFailException) as failure:
            gate(report, registry, "s3://no-baa-vendor/x.parquet").execute(context={})

        message = str(failure.value)
        assert "no-baa-vendor" in message
        assert "agreement: none" in message
        assert "164.502(e)(1)" in message
        for subject in SUBJECTS:
            assert str(subject) not in message

    def test_skip_mode_skips_and_records_the_refusal(self, governed):
        report, registry, _ = governed
        pushed = {}

        class TaskInstance:
            def xcom_push(self, key, value):
                pushed[key] = value

        with pytest.raises(AirflowSkipException):
            gate(report, registry, "s3://no-baa-vendor/x", on_refusal="skip").execute(
                context={"ti": TaskInstance()}
            )
        assert pushed["gate_decision"]["allowed"] is False

    def test_the_xcom_summary_decides_the_same(self, governed):
        _, registry, summary = governed

        operator = RecipientGateOperator(
            task_id="gate",
            destination="s3://no-baa-vendor/x",
            report_summary=str(summary),
            purpose="model-training",
            recipients_path=str(registry),
            run_date="2026-12-01",
        )
        with pytest.raises(AirflowFailException, match="no-baa-vendor"):
            operator.execute(context={})

    def test_a_summary_that_is_no_dict_fails_closed(self, governed):
        _, registry, _ = governed

        operator = RecipientGateOperator(
            task_id="gate",
            destination="s3://baa-vendor/inbound/x",
            report_summary="not a summary",
            purpose="model-training",
            recipients_path=str(registry),
            run_date="2026-12-01",
        )
        with pytest.raises(AirflowFailException, match="not the policy task's summary"):
            operator.execute(context={})

    def test_an_unreadable_report_fails_closed(self, governed, tmp_path):
        _, registry, _ = governed

        with pytest.raises(AirflowFailException, match="cannot be read"):
            gate(tmp_path / "missing.json", registry, "s3://baa-vendor/inbound/x").execute(context={})

    def test_a_bad_registry_fails_with_its_line(self, governed, tmp_path):
        report, _, _ = governed
        bad = tmp_path / "bad.yaml"
        bad.write_text(REGISTRY.replace("region: us-east-2", "regoin: us-east-2"))

        with pytest.raises(AirflowFailException, match=r"bad.yaml:9: key 'recipients.baa-vendor.regoin'"):
            gate(report, bad, "s3://baa-vendor/inbound/x").execute(context={})

    def test_the_registry_comes_from_the_environment(self, governed, monkeypatch):
        report, registry, _ = governed
        monkeypatch.setenv("PHI_GUARD_RECIPIENT_REGISTRY", str(registry))

        operator = RecipientGateOperator(
            task_id="gate",
            destination="s3://baa-vendor/inbound/x",
            report_path=str(report),
            run_date="2026-12-01",
        )
        assert operator.execute(context={})["allowed"] is True


def _records(trail: Path) -> list[dict]:
    return [json.loads(line) for line in trail.read_text(encoding="utf-8").splitlines() if line]


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


class TestRecipientGateTrail:
    """Issue 8: every gate decision, passed or refused, is in the audit trail, not only in XCom."""

    def test_a_refused_and_an_allowed_decision_each_land_in_the_trail(self, governed, tmp_path):
        report, registry, _ = governed
        trail = tmp_path / "records" / "audit-trail.jsonl"
        output = Path(json.loads(report.read_text())["output"])
        context = {"run_id": "manual__2026-12-01"}

        with pytest.raises(AirflowFailException):
            gate(report, registry, "s3://no-baa-vendor/x.parquet", trail_path=str(trail)).execute(context)
        allowed = gate(report, registry, "s3://baa-vendor/inbound/set.parquet", trail_path=str(trail))
        decision = allowed.execute(context)

        refused_record, passed_record = _records(trail)
        assert refused_record["kind"] == passed_record["kind"] == "gate-decision"
        assert refused_record["verdict"] == "refused"
        assert refused_record["details"]["recipient"] == "no-baa-vendor"
        assert refused_record["details"]["agreement"] is None
        assert "164.502(e)(1)" in refused_record["details"]["rule"]
        assert passed_record["verdict"] == "passed"
        assert passed_record["details"]["recipient"] == "baa-vendor"
        assert passed_record["details"]["agreement"] == "BAA-VENDOR-7"
        assert passed_record["details"]["destination"] == "s3://baa-vendor/inbound/set.parquet"
        for record in (refused_record, passed_record):
            # the governed set that would be sent, by its bytes; and the run it belongs to
            assert record["input_fingerprint"] == _sha256(output)
            assert (record["task_id"], record["run_id"]) == ("gate", "manual__2026-12-01")
        assert (decision["trail_sequence"], decision["trail_digest"]) == (
            passed_record["sequence"],
            passed_record["digest"],
        )
        assert main(["trail", "verify", "--trail", str(trail)]) == EXIT_PUBLISHED
        text = trail.read_text(encoding="utf-8")
        for subject in SUBJECTS:
            assert str(subject) not in text

    def test_a_skipped_refusal_is_in_the_trail_and_in_xcom(self, governed, tmp_path):
        report, registry, _ = governed
        trail = tmp_path / "trail.jsonl"
        pushed = {}

        class TaskInstance:
            def xcom_push(self, key, value):
                pushed[key] = value

        operator = gate(report, registry, "s3://no-baa-vendor/x", on_refusal="skip", trail_path=str(trail))
        with pytest.raises(AirflowSkipException):
            operator.execute(context={"ti": TaskInstance()})

        (record,) = _records(trail)
        assert (record["kind"], record["verdict"]) == ("gate-decision", "refused")
        assert pushed["gate_decision"]["trail_sequence"] == record["sequence"]

    def test_the_configured_trail_records_a_task_without_trail_path(self, governed, tmp_path, monkeypatch):
        report, registry, _ = governed
        trail = tmp_path / "configured-trail.jsonl"
        monkeypatch.setenv("AIRFLOW__PHI_GUARD__TRAIL", str(trail))

        gate(report, registry, "s3://baa-vendor/inbound/x").execute(context={})

        (record,) = _records(trail)
        assert (record["kind"], record["verdict"]) == ("gate-decision", "passed")

    def test_an_allowed_decision_that_cannot_be_recorded_fails_the_task(self, governed, tmp_path):
        report, registry, _ = governed
        trail = tmp_path / "trail.jsonl"
        trail.write_text("not a record\n", encoding="utf-8")

        with pytest.raises(AuditTrailError):
            gate(report, registry, "s3://baa-vendor/inbound/x", trail_path=str(trail)).execute(context={})
        assert trail.read_text(encoding="utf-8") == "not a record\n"

    def test_decisions_land_in_a_postgresql_trail(self, governed, postgres_schema: PostgresSchema):
        report, registry, _ = governed
        trail = f"{postgres_schema.url}#{postgres_schema.name}.gate_trail_{uuid.uuid4().hex[:8]}"

        with pytest.raises(AirflowFailException):
            gate(report, registry, "s3://no-baa-vendor/x", trail_path=trail).execute(context={})
        gate(report, registry, "s3://baa-vendor/inbound/x", trail_path=trail).execute(context={})

        verdicts = [json.loads(line)["verdict"] for line in open_trail(trail).stored()]
        assert verdicts == ["refused", "passed"]
        assert main(["trail", "verify", "--trail", trail]) == EXIT_PUBLISHED
