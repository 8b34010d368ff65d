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
