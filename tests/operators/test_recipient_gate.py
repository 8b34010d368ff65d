"""The recipient gate operator, on a report the policy operator really wrote (expert determination: PHI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_phi_guard.operators.recipients import RecipientGateOperator
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
