"""Fixtures of the operator tests: a pseudonym key connection and a policy task over a small dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_phi_guard.operators.policy import PhiPolicyOperator
from tests.engine.test_executor import CONSENT, POLICY, _source


@pytest.fixture
def key_connection(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_PHI_GUARD_TEST_KEY", json.dumps({"conn_type": "generic", "password": "k" * 32})
    )
    return "phi_guard_test_key"


def make_policy_operator(tmp_path: Path, key_connection: str, **source_options) -> PhiPolicyOperator:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY % {"undeclared": "refuse"})
    consent = tmp_path / "consent.csv"
    consent.write_text(CONSENT)
    return PhiPolicyOperator(
        task_id="govern",
        policy_path=str(policy),
        input_path=str(_source(tmp_path, **source_options)),
        output_path=str(tmp_path / "out" / "governed.parquet"),
        consent_path=str(consent),
        report_path=str(tmp_path / "report.json"),
        as_of="2026-12-01",
        pseudonym_key_conn_id=key_connection,
    )
