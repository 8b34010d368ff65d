"""The hooks' shared parts: the SQL database hook of a connection, and the Spark session of a connection."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk.exceptions import AirflowFailException

from airflow_phi_guard.operators.hooks import SparkSessionHook, sql_database_hook

CANARY_PASSWORD = "CANARY-HOOK-PASSWORD-4242"


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: dict) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))
    return conn_id


class RefusedError(Exception):
    pass


# (connection type, own type of the caller, hook class expected, or None when the connection is refused)
HOOK_CASES = [
    # this package's registry type names a PostgreSQL database by its standard fields
    ("phi_guard_consent_registry", "phi_guard_consent_registry", PostgresHook),
    # a postgres connection is read through its own provider's hook, whatever the caller's own type
    ("postgres", "phi_guard_recipient_registry", PostgresHook),
    ("postgres", None, PostgresHook),
    # a connection type without a SQL hook cannot hold a table
    ("generic", "phi_guard_consent_registry", None),
    # another caller's own type means nothing to a caller without one
    ("phi_guard_consent_registry", None, None),
]


@pytest.mark.parametrize(("conn_type", "own_type", "expected"), HOOK_CASES)
def test_the_sql_hook_of_a_connection(monkeypatch, conn_type, own_type, expected):
    fields = {"conn_type": conn_type, "host": "127.0.0.1", "port": 5432, "login": "postgres"}
    conn_id = _connection(monkeypatch, "phi_guard_test_sql", fields | {"password": CANARY_PASSWORD})

    if expected is None:
        with pytest.raises(RefusedError) as caught:
            sql_database_hook(conn_id, "test registry", RefusedError, own_type=own_type)
        message = str(caught.value)
        assert f"test registry connection {conn_id} is of type {conn_type}" in message
        assert "no SQL database hook" in message
        assert CANARY_PASSWORD not in message
    else:
        hook, connection = sql_database_hook(conn_id, "test registry", RefusedError, own_type=own_type)
        assert isinstance(hook, expected)
        assert connection.conn_type == conn_type


def test_a_surrogate_mapping_connection_without_a_sql_hook_fails_without_retry(monkeypatch, tmp_path: Path):
    from airflow_phi_guard.operators.policy import PhiPolicyOperator

    conn_id = _connection(monkeypatch, "phi_guard_test_mapping_generic", {"conn_type": "generic"})
    operator = PhiPolicyOperator(
        task_id="govern",
        policy_path="p.yaml",
        input_path="i",
        output_path="o",
        report_path="r",
        surrogate_mapping_conn_id=conn_id,
        surrogate_mapping_table="surrogate_mapping",
    )

    with pytest.raises(AirflowFailException, match=r"surrogate mapping connection .* no SQL database hook"):
        operator._surrogate_mapping()


@pytest.fixture(scope="module")
def local_spark() -> Iterator[object]:
    """A local session on two cores; stopped afterwards only when this module started it."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    from airflow_phi_guard.engine.spark import local_session

    running = SparkSession.getActiveSession()
    session = local_session("phi-guard-hook-tests")
    yield session
    if running is None:
        session.stop()
        if SparkContext._gateway is not None:
            SparkContext._gateway.shutdown()
            SparkContext._gateway = None
            SparkContext._jvm = None


class TestSparkSessionHook:
    def test_the_python_workers_and_the_driver_run_this_interpreter(self, monkeypatch, local_spark):
        monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
        monkeypatch.delenv("PYSPARK_DRIVER_PYTHON", raising=False)
        conn_id = _connection(monkeypatch, "phi_guard_test_spark", {"conn_type": "spark", "host": "local[2]"})

        SparkSessionHook(conn_id).get_session()

        assert os.environ["PYSPARK_PYTHON"] == sys.executable
        assert os.environ["PYSPARK_DRIVER_PYTHON"] == sys.executable

    def test_the_log_names_the_master_of_the_session_it_returns(self, monkeypatch, capsys, local_spark):
        running = local_spark.sparkContext.master
        other = "local[1]" if running != "local[1]" else "local[2]"
        conn_id = _connection(monkeypatch, "phi_guard_test_spark", {"conn_type": "spark", "host": other})

        session = SparkSessionHook(conn_id).get_session()

        # getOrCreate returned the session this process already runs, on its own master
        assert session.sparkContext.master == running
        logged = capsys.readouterr()
        output = logged.out + logged.err
        assert f"Spark session on master {other}" not in output
        assert f"names Spark master {other}, but this process already runs a session on master {running}" in (
            output
        )
