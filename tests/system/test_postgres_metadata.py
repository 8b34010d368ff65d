"""The example DAG with Airflow's metadata database on PostgreSQL, as the docker stack runs it: the run is
recorded there, and it governs, validates and traces its data as it does on the embedded SQLite."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO
from tests.system.demo_runner import DemoRun, run_demo

pytestmark = pytest.mark.system

DAG_ID = "phi_guard_readmission_training"
COMPOSE_FILE = REPO / "docker" / "docker-compose.yaml"

#: The demo's tasks and the state each must end in (README, "What the demo shows"): Acme has no business
#: associate agreement, so its gate refuses and skips, and the upload after it is skipped with it.
EXPECTED_TASK_STATES = {
    "prepare_inputs": "success",
    "govern_training_set": "success",
    "govern_expert_determination_set": "success",
    "validate_training_set": "success",
    "train_model": "success",
    "score_governed_set": "success",
    "gate_export_to_northwind": "success",
    "export_to_northwind": "success",
    "gate_export_to_acme": "skipped",
    "export_to_acme": "skipped",
}


def _stack_driver() -> str:
    """The SQLAlchemy driver of the stack's metadata URL, so that Airflow talks to PostgreSQL as there."""
    import sqlalchemy

    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    url = compose["x-airflow-common"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    return sqlalchemy.engine.make_url(url).drivername


@pytest.fixture(scope="module")
def metadata_url(postgres_url: str) -> Iterator[str]:
    """A fresh database on the test server for Airflow's metadata, dropped afterwards.

    :param postgres_url: the test server (an unreachable one errors the tests, never skips them).
    """
    import sqlalchemy

    name = f"phi_guard_airflow_{uuid.uuid4().hex[:10]}"
    server = sqlalchemy.engine.make_url(postgres_url)
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(drivername=_stack_driver(), database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            # FORCE: a connection Airflow left open must not keep the database alive.
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def demo(metadata_url: str, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", metadata_url)
        run = run_demo(tmp_path_factory.mktemp("demo-postgres-metadata"))
    assert run.returncode == 0, run.console[-4000:]
    return run


def _query(url: str, statement: str, **parameters: Any) -> list[tuple[Any, ...]]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sqlalchemy.text(statement), parameters)]
    finally:
        engine.dispose()


def _events(run: DemoRun) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.events.read_text().splitlines() if line.strip()]


def test_the_run_and_its_tasks_are_recorded_in_postgresql(demo: DemoRun, metadata_url: str):
    runs = _query(metadata_url, "SELECT run_id, state FROM dag_run WHERE dag_id = :dag", dag=DAG_ID)
    assert len(runs) == 1
    assert runs[0][1] == "success"

    states = _query(
        metadata_url,
        "SELECT task_id, state FROM task_instance WHERE dag_id = :dag AND run_id = :run",
        dag=DAG_ID,
        run=runs[0][0],
    )
    assert dict(states) == EXPECTED_TASK_STATES
    # the metadata went to PostgreSQL only: Airflow made no SQLite database beside it
    assert not (demo.airflow_home / "airflow.db").exists()


def test_the_governed_set_is_published_with_the_decisions_of_the_embedded_run(demo: DemoRun):
    # the figures the README gives for the bundled data at 2026-12-01: the metadata database moves nothing
    report = json.loads((demo.output / "reports" / "readmission_risk.json").read_text())
    assert report["verdict"] == "published"
    assert report["rows"]["read"] == 7584
    assert report["rows"]["admitted"] == 5132
    assert report["rows"]["suppressed"] == 9
    assert len(report["rows"]["excluded"]) == 8
    assert pq.read_metadata(demo.output / "governed" / "readmission_risk.parquet").num_rows == 5123
    assert (demo.output / "data-docs" / "index.html").is_file()
    assert (demo.output / "models" / "readmission-risk-1.joblib").is_file()


def test_the_lineage_is_that_of_the_run_recorded_in_postgresql(demo: DemoRun, metadata_url: str):
    [(run_id,)] = _query(metadata_url, "SELECT run_id FROM dag_run WHERE dag_id = :dag", dag=DAG_ID)
    events = _events(demo)

    task_events = [event for event in events if "airflow" in event["run"]["facets"]]
    assert {event["run"]["facets"]["airflow"]["dagRun"]["run_id"] for event in task_events} == {run_id}
    # every task that ran completed (a refused gate skips, which the provider reports as COMPLETE)
    started = {event["job"]["name"] for event in task_events if event["eventType"] == "START"}
    completed = {event["job"]["name"] for event in task_events if event["eventType"] == "COMPLETE"}
    assert not [event for event in events if event["eventType"] == "FAIL"]
    assert started == completed
    assert {
        f"{DAG_ID}.{task}" for task, state in EXPECTED_TASK_STATES.items() if state == "success"
    } <= completed

    [governed] = [
        event
        for event in task_events
        if event["eventType"] == "COMPLETE" and event["job"]["name"] == f"{DAG_ID}.govern_training_set"
    ]
    outputs = {dataset["name"] for dataset in governed["outputs"]}
    assert str((demo.output / "governed" / "readmission_risk.parquet").resolve()) in outputs

    [dag_complete] = [event for event in events if event["job"]["name"] == DAG_ID]
    assert dag_complete["run"]["facets"]["airflowDagRun"]["dagRun"]["run_id"] == run_id
    assert dag_complete["run"]["facets"]["airflowState"]["dagRunState"] == "success"
