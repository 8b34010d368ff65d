"""The recipient registry hook, and the operators reading their registry from PostgreSQL by connection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_phi_guard.exceptions import RecipientRegistryError, RecipientRegistryUnavailableError
from airflow_phi_guard.operators.hooks import RecipientRegistryHook
from airflow_phi_guard.operators.recipients import RecipientGateOperator
from airflow_phi_guard.recipients.sql import SqlRecipientSource
from tests.operators.conftest import make_policy_operator
from tests.recipients.conftest import DDL, _good_row, _unique
from tests.recipients.test_gate import REGISTRY

CANARY_PASSWORD = "CANARY-PASSWORD-7171"


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: str) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
    return conn_id


def _postgres_uri(sqlalchemy_url: str, password: str | None = None) -> str:
    uri = sqlalchemy_url.replace("postgresql+psycopg://", "postgres://", 1)
    return uri.replace("postgres@", f"postgres:{password}@", 1) if password else uri


def _own_type(password: str | None = None) -> str:
    """A connection of this package's type: the database as the schema field, as the UI form names it."""
    fields = {"conn_type": "phi_guard_recipient_registry", "host": "127.0.0.1", "port": 5432}
    fields |= {"login": "postgres", "schema": "test"} | ({"password": password} if password else {})
    return json.dumps(fields)


class TestRecipientRegistryHook:
    @pytest.mark.parametrize("kind", ["postgres", "own type"])
    def test_reads_the_same_registry_as_the_yaml_file(self, monkeypatch, postgres_url, registry_table, kind):
        value = _postgres_uri(postgres_url, CANARY_PASSWORD) if kind == "postgres" else _own_type()
        conn_id = _connection(monkeypatch, "phi_guard_test_recipients", value)

        source = RecipientRegistryHook(conn_id, table=registry_table).get_source()

        assert isinstance(source, SqlRecipientSource)
        assert source.display_name == f"postgres://127.0.0.1:5432/test.{registry_table}"
        assert CANARY_PASSWORD not in source.display_name + repr(source)
        assert source.read() == REGISTRY

    def test_a_connection_that_is_no_database_is_refused(self, monkeypatch):
        conn_id = _connection(monkeypatch, "phi_guard_test_generic", json.dumps({"conn_type": "generic"}))
        with pytest.raises(RecipientRegistryError, match="no SQL database hook"):
            RecipientRegistryHook(conn_id, table="recipients").get_source()


def _gate(tmp_path: Path, destination: str, **registry) -> RecipientGateOperator:
    report = tmp_path / "report.json"
    report.write_text(
        json.dumps(
            {
                "verdict": "published",
                "policy": {"name": "p", "digest": "sha256:" + "0" * 64},
                "purpose": "model-training",
                "safe_harbor": {"status": "not-met"},
            }
        )
    )
    return RecipientGateOperator(
        task_id="gate", destination=destination, report_path=str(report), run_date="2026-06-01", **registry
    )


class TestRecipientGateOperatorWithAConnection:
    # PHI (expert determination) to the vendor whose BAA permits model training on 2026-06-01: passes;
    # to the vendor without a BAA: fails without retry (164.502(e)(1))
    def test_the_rule_from_the_table(self, tmp_path, monkeypatch, postgres_url, registry_table):
        conn_id = _connection(monkeypatch, "phi_guard_test_recipients", _postgres_uri(postgres_url))
        options = {"recipient_registry_conn_id": conn_id, "recipient_registry_table": registry_table}

        passed = _gate(tmp_path, "s3://baa-vendor/inbound/set.parquet", **options).execute(context={})
        with pytest.raises(AirflowFailException, match="no-baa-vendor has no business associate agreement"):
            _gate(tmp_path, "https://api.no-baa.example/v1", **options).execute(context={})

        assert (passed["allowed"], passed["agreement"]) == (True, "BAA-VENDOR-7")

    def test_an_unreachable_database_leaves_the_task_retryable(self, tmp_path, monkeypatch):
        down = f"postgres://postgres:{CANARY_PASSWORD}@127.0.0.1:1/test"
        conn_id = _connection(monkeypatch, "phi_guard_test_down", down)
        operator = _gate(
            tmp_path, "s3://x/y", recipient_registry_conn_id=conn_id, recipient_registry_table="recipients"
        )

        # not AirflowFailException: Airflow retries an ordinary exception
        with pytest.raises(RecipientRegistryUnavailableError) as caught:
            operator.execute(context={})
        assert CANARY_PASSWORD not in str(caught.value)

    def test_a_file_and_a_connection_together_are_refused(self, tmp_path: Path):
        operator = _gate(
            tmp_path,
            "s3://x/y",
            recipients_path=str(tmp_path / "recipients.yaml"),
            recipient_registry_conn_id="phi_guard_test_recipients",
            recipient_registry_table="recipients",
        )
        with pytest.raises(AirflowFailException, match="not both"):
            operator.execute(context={})

    def test_a_connection_needs_its_table(self, tmp_path: Path):
        operator = _gate(tmp_path, "s3://x/y", recipient_registry_conn_id="phi_guard_test_recipients")
        with pytest.raises(AirflowFailException, match="needs recipient_registry_table"):
            operator.execute(context={})

    def test_the_registry_fields_are_templated(self):
        for field in ("recipient_registry_conn_id", "recipient_registry_table"):
            assert field in RecipientGateOperator.template_fields


class TestPhiPolicyOperatorWithARegistryConnection:
    def test_the_policys_recipient_with_its_baa_in_the_table_publishes(
        self, tmp_path, key_connection, monkeypatch, postgres_url, registry_table
    ):
        # The operator fixtures' policy names internal-ml-platform; the table lists it with a BAA for
        # model training in force from 2026-01-01, and the run's as-of date is 2026-12-01: it publishes.
        conn_id = _connection(monkeypatch, "phi_guard_test_recipients", _postgres_uri(postgres_url))
        operator = make_policy_operator(tmp_path, key_connection)
        operator.recipient_registry_conn_id = conn_id
        operator.recipient_registry_table = registry_table

        summary = operator.execute(context={})

        assert summary["verdict"] == "published"

    def test_a_recipient_the_table_does_not_list_refuses_the_run(
        self, tmp_path, key_connection, monkeypatch, postgres_url, postgres_schema
    ):
        table = postgres_schema.create_table(_unique("other_recipients"), DDL, [_good_row("some-vendor")])
        operator = make_policy_operator(tmp_path, key_connection)
        operator.recipient_registry_conn_id = _connection(
            monkeypatch, "phi_guard_test_recipients", _postgres_uri(postgres_url)
        )
        operator.recipient_registry_table = table

        # the registry is the list of those the covered entity discloses to (164.502(e))
        with pytest.raises(
            AirflowFailException, match="internal-ml-platform is not in the recipient registry"
        ):
            operator.execute(context={})
        assert not Path(operator.output_path).exists()

    def test_an_unreachable_registry_publishes_nothing_and_stays_retryable(
        self, tmp_path, key_connection, monkeypatch
    ):
        down = f"postgres://postgres:{CANARY_PASSWORD}@127.0.0.1:1/test"
        operator = make_policy_operator(tmp_path, key_connection)
        operator.recipient_registry_conn_id = _connection(monkeypatch, "phi_guard_test_down", down)
        operator.recipient_registry_table = "recipients"

        with pytest.raises(RecipientRegistryUnavailableError) as caught:
            operator.execute(context={})

        assert CANARY_PASSWORD not in str(caught.value)
        assert not Path(operator.output_path).exists()
