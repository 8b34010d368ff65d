"""The demo DAG with its registry in PostgreSQL: one connection switches it, the decisions stay the same."""

from __future__ import annotations

import json

import pytest

from tests.conftest import PostgresSchema
from tests.system.demo_runner import run_demo

pytestmark = pytest.mark.system


def test_defining_the_consent_connection_moves_the_registry_into_postgresql(
    tmp_path, monkeypatch: pytest.MonkeyPatch, postgres_schema: PostgresSchema
):
    table = f"{postgres_schema.name}.demo_consent_registry"
    airflow_uri = postgres_schema.url.replace("postgresql+psycopg://", "postgres://", 1)
    monkeypatch.setenv("AIRFLOW_CONN_PHI_GUARD_CONSENT", airflow_uri)
    monkeypatch.setenv("PHI_GUARD_DEMO_CONSENT_TABLE", table)

    run = run_demo(tmp_path)

    assert run.returncode == 0, run.console[-4000:]
    report = json.loads((run.output / "reports" / "readmission_risk.json").read_text())
    assert report["verdict"] == "published"
    assert report["consent_registry"] == f"postgres://127.0.0.1:5432/test.{table}"
    # the same registry as the file of the default run, so the same decisions (test_readmission_dag.py)
    assert report["rows"]["read"] == 7584
    assert set(report["rows"]["excluded"]) == {
        "no-subject-id",
        "no-record",
        "basis-not-accepted",
        "purpose-not-covered",
        "not-yet-valid",
        "expired",
        "revoked",
        "opted-out",
    }
    events = [json.loads(line) for line in run.events.read_text().splitlines() if line.strip()]
    governed = [event for event in events if event["job"]["name"].endswith(".govern_training_set")]
    inputs = {(dataset["namespace"], dataset["name"]) for event in governed for dataset in event["inputs"]}
    assert ("postgres://127.0.0.1:5432", f"test.{table}") in inputs
