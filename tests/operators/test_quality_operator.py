"""The validation operator: a set that meets its policy passes; one that does not fails and is withdrawn."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_phi_guard.operators.quality import GovernedDatasetValidationOperator
from tests.operators.conftest import make_policy_operator

PLANTED = "call 402-555-0199"


def _governed(tmp_path: Path, key_connection: str) -> Path:
    policy_task = make_policy_operator(tmp_path, key_connection)
    policy_task.execute(context={})
    return Path(policy_task.report_path)


def _validation(tmp_path: Path, report: Path) -> GovernedDatasetValidationOperator:
    return GovernedDatasetValidationOperator(
        task_id="validate",
        report_path=str(report),
        data_docs_dir=str(tmp_path / "data-docs"),
        gx_project_dir=str(tmp_path / "gx"),
    )


def test_a_set_that_meets_its_policy_passes(tmp_path: Path, key_connection: str):
    report = _governed(tmp_path, key_connection)

    summary = _validation(tmp_path, report).execute(context={})

    assert summary["success"] is True
    assert (tmp_path / "data-docs" / "index.html").is_file()


def test_a_set_that_fails_validation_is_withdrawn(tmp_path: Path, key_connection: str):
    report = _governed(tmp_path, key_connection)
    governed = Path(json.loads(report.read_text())["output"])
    table = pq.read_table(governed)
    # a phone number slipped into kept text after publication, as a later edit of the file might do
    notes = pc.binary_join_element_wise(table["NOTE"], pa.scalar(PLANTED), " ")
    pq.write_table(table.set_column(table.schema.get_field_index("NOTE"), "NOTE", notes), governed)

    with pytest.raises(AirflowFailException) as caught:
        _validation(tmp_path, report).execute(context={})

    assert "NOTE" in str(caught.value)
    assert PLANTED not in str(caught.value)
    assert not governed.exists()
    for page in (tmp_path / "data-docs").rglob("*.html"):
        assert "402-555-0199" not in page.read_text()


def test_a_check_that_cannot_run_withdraws_the_set_and_fails_without_retry(
    tmp_path: Path, key_connection: str
):
    report = _governed(tmp_path, key_connection)
    governed = Path(json.loads(report.read_text())["output"])
    table = pq.read_table(governed)
    # AGE stored as text: the age check cannot be evaluated on it, so nothing proves the ages are capped
    ages = pc.cast(table["AGE"], pa.string())
    pq.write_table(table.set_column(table.schema.get_field_index("AGE"), "AGE", ages), governed)

    with pytest.raises(AirflowFailException):
        _validation(tmp_path, report).execute(context={})

    assert not governed.exists()
