"""The consent registry hook, and the policy operator reading its registry from PostgreSQL by connection."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_phi_guard.consent.sql import SqlConsentSource
from airflow_phi_guard.exceptions import ConsentRegistryError, ConsentRegistryUnavailableError
from airflow_phi_guard.operators.hooks import ConsentRegistryHook
from tests.conftest import PostgresSchema
from tests.engine.test_executor import CONSENT
from tests.operators.conftest import make_policy_operator

COLUMNS = (
    "subject_id text, basis text, purposes text[], granted_at text, expires_at text, revoked_at text, "
    "reference text"
)
CANARY_PASSWORD = "CANARY-PASSWORD-9191"


@pytest.fixture(scope="module")
def registry_table(postgres_schema: PostgresSchema) -> str:
    """The operator fixtures' registry (tests/engine/test_executor.py CONSENT) as a PostgreSQL table."""
    rows = [
        (row["subject_id"], row["basis"], row["purposes"].split(";") if row["purposes"] else [],
         row["granted_at"], row["expires_at"] or None, row["revoked_at"] or None, row["reference"])
        for row in csv.DictReader(io.StringIO(CONSENT))
    ]  # fmt: skip
    return postgres_schema.create_table(f"operator_{uuid.uuid4().hex[:8]}", COLUMNS, rows)


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, url: str) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", url)
    return conn_id


def _postgres_uri(sqlalchemy_url: str, password: str | None = None) -> str:
    """The Airflow connection URI of the test server: postgres:// without SQLAlchemy's driver suffix."""
    uri = sqlalchemy_url.replace("postgresql+psycopg://", "postgres://", 1)
    return uri.replace("postgres@", f"postgres:{password}@", 1) if password else uri


class TestConsentRegistryHook:
    def test_reads_the_registry_through_the_connections_own_hook(
        self, monkeypatch, postgres_url: str, registry_table: str
    ):
        conn_id = _connection(
            monkeypatch, "phi_guard_test_consent", _postgres_uri(postgres_url, CANARY_PASSWORD)
        )

        source = ConsentRegistryHook(conn_id, table=registry_table).get_source()

        assert isinstance(source, SqlConsentSource)
        # named as the postgres provider names the database for OpenLineage, never with the password
        assert source.display_name == f"postgres://127.0.0.1:5432/test.{registry_table}"
        assert CANARY_PASSWORD not in source.display_name + repr(source)
        assert len(source.read()) == 9  # the rows of CONSENT

    def test_a_connection_that_is_no_database_is_refused(self, monkeypatch):
        conn_id = _connection(monkeypatch, "phi_guard_test_generic", json.dumps({"conn_type": "generic"}))
        with pytest.raises(ConsentRegistryError, match="no SQL database hook"):
            ConsentRegistryHook(conn_id, table="registry").get_source()


class TestPhiPolicyOperatorWithAConsentConnection:
    def test_publishes_from_the_postgresql_registry(
        self, tmp_path: Path, key_connection: str, monkeypatch, postgres_url: str, registry_table: str
    ):
        conn_id = _connection(monkeypatch, "phi_guard_test_consent", _postgres_uri(postgres_url))
        operator = make_policy_operator(tmp_path, key_connection)
        operator.consent_path, operator.consent_conn_id, operator.consent_table = (
            None,
            conn_id,
            registry_table,
        )

        summary = operator.execute(context={})

        # the same admission as from the same registry in a CSV file (test_policy_operator.py)
        assert summary["verdict"] == "published"
        assert (summary["rows_read"], summary["rows_admitted"]) == (10, 2)
        assert pq.read_table(operator.output_path).num_rows == 2
        report = json.loads(Path(operator.report_path).read_text())
        assert report["consent_registry"] == f"postgres://127.0.0.1:5432/test.{registry_table}"

    def test_an_unreachable_database_leaves_the_task_retryable(
        self, tmp_path: Path, key_connection: str, monkeypatch
    ):
        conn_id = _connection(
            monkeypatch, "phi_guard_test_down", f"postgres://postgres:{CANARY_PASSWORD}@127.0.0.1:1/test"
        )
        operator = make_policy_operator(tmp_path, key_connection)
        operator.consent_path, operator.consent_conn_id, operator.consent_table = None, conn_id, "registry"

        # not AirflowFailException: Airflow retries an ordinary exception
        with pytest.raises(ConsentRegistryUnavailableError) as caught:
            operator.execute(context={})

        assert CANARY_PASSWORD not in str(caught.value)
        assert not Path(operator.output_path).exists()

    def test_a_file_and_a_connection_together_are_refused(self, tmp_path: Path, key_connection: str):
        operator = make_policy_operator(tmp_path, key_connection)
        operator.consent_conn_id, operator.consent_table = "phi_guard_test_consent", "registry"

        with pytest.raises(AirflowFailException, match="not both"):
            operator.execute(context={})
        assert not Path(operator.output_path).exists()

    def test_the_consent_fields_are_templated(self):
        from airflow_phi_guard.operators.policy import PhiPolicyOperator

        for name in ("consent_path", "consent_conn_id", "consent_table", "consent_query"):
            assert name in PhiPolicyOperator.template_fields
