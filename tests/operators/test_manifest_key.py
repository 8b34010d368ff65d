"""The policy operator's subject manifest key: from its own connection, apart from the pseudonym key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException
from openlineage.client.event_v2 import RunState

from airflow_phi_guard.consent.manifest import manifest_path
from tests.lineage.openlineage_validation import run_event, validate_event
from tests.operators.conftest import make_policy_operator


@pytest.fixture
def manifest_connection(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_PHI_GUARD_TEST_MANIFEST_KEY", json.dumps({"conn_type": "generic", "password": "m" * 32})
    )
    return "phi_guard_test_manifest_key"


def test_the_manifest_is_written_with_the_key_of_its_connection(
    tmp_path, key_connection, manifest_connection
):
    operator = make_policy_operator(tmp_path, key_connection)
    operator.manifest_key_conn_id = manifest_connection
    operator.execute(context={})

    report = json.loads(Path(operator.report_path).read_text())
    assert report["manifest"]["path"] == str(manifest_path(Path(operator.output_path).resolve()))
    # the test registry admits p-admitted and p-waiver at 2026-12-01
    assert report["manifest"]["subjects"] == 2
    event = run_event(operator.get_openlineage_facets_on_complete(None), RunState.COMPLETE, "dag.govern")
    validate_event(event)
    assert event["run"]["facets"]["phiGuard_consent"]["manifest"]["digest"] == report["manifest"]["digest"]


def test_without_the_connection_the_set_is_published_without_manifest(tmp_path, key_connection):
    operator = make_policy_operator(tmp_path, key_connection)
    operator.manifest_key_conn_id = "phi_guard_no_such_manifest_key"
    assert operator.execute(context={})["verdict"] == "published"
    assert json.loads(Path(operator.report_path).read_text())["manifest"] is None
    assert not manifest_path(Path(operator.output_path)).exists()


def test_the_pseudonym_key_as_manifest_key_fails_without_retry(tmp_path, key_connection):
    operator = make_policy_operator(tmp_path, key_connection)
    operator.manifest_key_conn_id = key_connection
    with pytest.raises(AirflowFailException, match="is the pseudonym key"):
        operator.execute(context={})
    assert not Path(operator.output_path).exists()
