"""The Airflow operators: a refusal fails without retry, XCom carries no value, lineage facets validate."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException
from openlineage.client.event_v2 import RunState

from tests.lineage.openlineage_validation import run_event, validate_event
from tests.operators.conftest import make_policy_operator

CANARIES = ("p-admitted", "p-waiver", "999-49-3983", "402-555-0199")


def _event(lineage, state: RunState) -> dict:
    return run_event(lineage, state, "dag.govern")


class TestPhiPolicyOperatorExecute:
    def test_publishes_and_returns_a_value_free_summary(self, tmp_path: Path, key_connection: str):
        operator = make_policy_operator(tmp_path, key_connection)

        summary = operator.execute(context={})

        assert summary["verdict"] == "published"
        assert summary["rows_read"] == 10 and summary["rows_admitted"] == 2
        assert pq.read_table(operator.output_path).num_rows == 2
        assert json.loads(Path(operator.report_path).read_text())["verdict"] == "published"
        serialized = json.dumps(summary)
        for canary in CANARIES:
            assert canary not in serialized

    def test_a_refusal_fails_the_task_without_retry_and_names_no_value(
        self, tmp_path: Path, key_connection: str
    ):
        operator = make_policy_operator(tmp_path, key_connection, notes=["call 402-555-0199"] * 10)

        with pytest.raises(AirflowFailException) as caught:
            operator.execute(context={})

        assert "NOTE" in str(caught.value)
        for canary in CANARIES:
            assert canary not in str(caught.value)
        assert not Path(operator.output_path).exists()
        assert json.loads(Path(operator.report_path).read_text())["verdict"] == "refused"

    def test_a_missing_key_connection_refuses_pseudonymize(self, tmp_path: Path):
        operator = make_policy_operator(tmp_path, "phi_guard_no_such_connection")

        with pytest.raises(AirflowFailException, match="pseudonym key"):
            operator.execute(context={})
        assert not Path(operator.output_path).exists()


class TestPhiPolicyOperatorLineage:
    def test_start_complete_and_failure_facets_validate(self, tmp_path: Path, key_connection: str):
        operator = make_policy_operator(tmp_path, key_connection)
        start = operator.get_openlineage_facets_on_start()
        operator.execute(context={})
        complete = operator.get_openlineage_facets_on_complete(task_instance=None)

        for lineage, state in ((start, RunState.START), (complete, RunState.COMPLETE)):
            event = _event(lineage, state)
            validate_event(event)
            assert "phiGuard_policy" in event["run"]["facets"]
            for canary in CANARIES:
                assert canary not in json.dumps(event)
        outputs = _event(complete, RunState.COMPLETE)["outputs"]
        assert [output["name"] for output in outputs] == [str(Path(operator.output_path).resolve())]
        assert "phiGuard_columns" in outputs[0]["facets"]

    def test_a_refused_run_reports_its_decision_on_failure(self, tmp_path: Path, key_connection: str):
        operator = make_policy_operator(tmp_path, key_connection, notes=["call 402-555-0199"] * 10)
        with pytest.raises(AirflowFailException):
            operator.execute(context={})

        event = _event(operator.get_openlineage_facets_on_failure(task_instance=None), RunState.FAIL)

        validate_event(event)
        assert event["run"]["facets"]["phiGuard_policy"]["verdict"] == "refused"
        assert event["outputs"] == []


def test_complete_lineage_describes_the_policy_that_was_enforced(tmp_path: Path, key_connection: str):
    operator = make_policy_operator(tmp_path, key_connection)
    operator.execute(context={})
    enforced = json.loads(Path(operator.report_path).read_text())["policy"]["digest"]
    # the policy file changes after the run, before lineage is collected
    policy_file = Path(operator.policy_path)
    policy_file.write_text(policy_file.read_text().replace("version: 3", "version: 4"))

    event = _event(operator.get_openlineage_facets_on_complete(task_instance=None), RunState.COMPLETE)

    assert event["run"]["facets"]["phiGuard_policy"]["digest"] == enforced
    assert event["run"]["facets"]["phiGuard_policy"]["version"] == 3


class TestPhiPolicyOperatorDeidentification:
    """Issue 5: the date shift key from a connection, the surrogate mapping from a path or a SQL
    connection."""

    def _operator(self, tmp_path: Path, text: str, **parameters):
        from airflow_phi_guard.operators.policy import PhiPolicyOperator
        from tests.engine.test_deidentification import BIRTHS, CONSENT, INCOMES, ZIPS, source

        policy = tmp_path / "policy.yaml"
        policy.write_text(text)
        consent = tmp_path / "consent.csv"
        consent.write_text(CONSENT)
        return PhiPolicyOperator(
            task_id="govern",
            policy_path=str(policy),
            input_path=str(source(tmp_path, BIRTHDATE=BIRTHS, ZIP=ZIPS, INCOME=INCOMES)),
            output_path=str(tmp_path / "out" / "governed.parquet"),
            consent_path=str(consent),
            report_path=str(tmp_path / "report.json"),
            as_of="2026-12-01",
            **parameters,
        )

    def _safe_harbor(self) -> str:
        from tests.engine.test_deidentification import SAFE_HARBOR, policy_text, safe_harbor_columns

        return policy_text(SAFE_HARBOR, safe_harbor_columns())

    def test_surrogate_codes_from_a_parquet_mapping_and_the_verdict_in_xcom(self, tmp_path: Path):
        mapping = tmp_path / "private" / "mapping.parquet"
        operator = self._operator(tmp_path, self._safe_harbor(), surrogate_mapping_path=str(mapping))

        summary = operator.execute(context={})

        assert summary["verdict"] == "published" and summary["safe_harbor"] == "met"
        assert pq.read_table(mapping).num_rows == 12

    def test_surrogate_codes_from_a_sql_connection(self, tmp_path: Path, monkeypatch, postgres_schema):
        import sqlalchemy

        url = postgres_schema.url.replace("postgresql+psycopg://", "postgres://")
        monkeypatch.setenv("AIRFLOW_CONN_PHI_GUARD_TEST_MAPPING", url)
        table = f"{postgres_schema.name}.surrogate_mapping"
        operator = self._operator(
            tmp_path,
            self._safe_harbor(),
            surrogate_mapping_conn_id="phi_guard_test_mapping",
            surrogate_mapping_table=table,
        )

        summary = operator.execute(context={})

        assert summary["verdict"] == "published"
        engine = sqlalchemy.create_engine(postgres_schema.url, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}")).scalar() == 12

    def test_no_mapping_fails_the_task_without_retry(self, tmp_path: Path):
        operator = self._operator(tmp_path, self._safe_harbor())

        with pytest.raises(AirflowFailException, match="no surrogate mapping"):
            operator.execute(context={})
        assert not Path(operator.output_path).exists()

    @pytest.mark.parametrize(("password", "published"), [(None, False), ("s" * 32, True)])
    def test_the_date_shift_key_comes_from_its_connection(
        self, tmp_path: Path, monkeypatch, password, published
    ):
        from tests.engine.test_deidentification import EXPERT_DETERMINATION, policy_text

        if password is not None:
            monkeypatch.setenv(
                "AIRFLOW_CONN_PHI_GUARD_TEST_SHIFT",
                json.dumps({"conn_type": "generic", "password": password}),
            )
        text = policy_text(
            f"{EXPERT_DETERMINATION}\n  date_shift_window_days: 10",
            {
                "PATIENT": 'treatment: drop, justification: "x"',
                "BIRTHDATE": 'treatment: date-shift, justification: "x"',
                "ZIP": 'treatment: drop, justification: "x"',
                "INCOME": 'treatment: drop, justification: "x"',
            },
        )
        operator = self._operator(tmp_path, text, date_shift_key_conn_id="phi_guard_test_shift")

        if published:
            assert operator.execute(context={})["verdict"] == "published"
        else:
            with pytest.raises(AirflowFailException, match="date shift key"):
                operator.execute(context={})
