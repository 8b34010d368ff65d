"""The validation operator: a set that meets its policy passes; one that does not fails and is withdrawn."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

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


def test_the_data_docs_link_names_the_validation_page(tmp_path: Path, key_connection: str):
    report = _governed(tmp_path, key_connection)
    validation = _validation(tmp_path, report)
    (link,) = validation.operator_extra_links

    before = link.get_link(validation, ti_key=None)
    validation.execute(context={})
    after = link.get_link(validation, ti_key=None)

    assert link.name == "Data Docs"
    assert before == (tmp_path / "data-docs" / "index.html").resolve().as_uri()
    assert after.startswith((tmp_path / "data-docs" / "validations").resolve().as_uri())
    assert after.endswith(".html")
    page = Path(unquote(urlparse(after).path))
    assert page.is_file()


def test_the_data_docs_link_uses_the_served_address_when_given(tmp_path: Path, key_connection: str):
    report = _governed(tmp_path, key_connection)
    validation = GovernedDatasetValidationOperator(
        task_id="validate",
        report_path=str(report),
        data_docs_dir=str(tmp_path / "data-docs"),
        gx_project_dir=str(tmp_path / "gx"),
        data_docs_base_url="https://docs.example.org/data-docs/",
    )
    validation.execute(context={})

    link = validation.operator_extra_links[0].get_link(validation, ti_key=None)

    assert link.startswith("https://docs.example.org/data-docs/validations/")
    assert link.endswith(".html")


def test_the_link_is_serialized_with_the_dag():
    from airflow.serialization.serialized_objects import OperatorSerialization

    validation = GovernedDatasetValidationOperator(
        task_id="validate", report_path="r.json", data_docs_dir="docs", gx_project_dir="gx"
    )

    serialized = OperatorSerialization.serialize_operator(validation)

    assert serialized["_operator_extra_links"] == {"Data Docs": "_link_DataDocsLink"}


def test_results_are_the_data_quality_assertions_facet_without_values(tmp_path: Path, key_connection: str):
    report = _governed(tmp_path, key_connection)
    governed = Path(json.loads(report.read_text())["output"])
    table = pq.read_table(governed)
    notes = pc.binary_join_element_wise(table["NOTE"], pa.scalar(PLANTED), " ")
    pq.write_table(table.set_column(table.schema.get_field_index("NOTE"), "NOTE", notes), governed)
    validation = _validation(tmp_path, report)

    with pytest.raises(AirflowFailException):
        validation.execute(context={})
    lineage = validation.get_openlineage_facets_on_failure(task_instance=None)

    (dataset,) = lineage.inputs
    facet = dataset.inputFacets["dataQualityAssertions"]
    failed = [(a.assertion, a.column) for a in facet.assertions if not a.success]
    assert failed == [("expect_column_values_to_contain_no_identifiers", "NOTE")]
    assert len(facet.assertions) > 1
    assert "402-555-0199" not in json.dumps([vars(a) for a in facet.assertions])


def test_k_anonymity_below_the_threshold_fails_the_task(tmp_path: Path, key_connection: str):
    report = _governed(tmp_path, key_connection)
    validation = GovernedDatasetValidationOperator(
        task_id="validate",
        report_path=str(report),
        data_docs_dir=str(tmp_path / "data-docs"),
        gx_project_dir=str(tmp_path / "gx"),
        quasi_identifiers=["PATIENT_KEY"],
        k_min=1000,
    )

    with pytest.raises(AirflowFailException, match="expect_table_k_anonymity_to_be_at_least"):
        validation.execute(context={})


def test_quasi_identifiers_need_k_min():
    with pytest.raises(ValueError, match="quasi_identifiers and k_min go together"):
        GovernedDatasetValidationOperator(
            task_id="validate",
            report_path="r.json",
            data_docs_dir="docs",
            gx_project_dir="gx",
            quasi_identifiers=["AGE"],
        )


def test_a_validation_that_could_not_run_still_names_its_set_on_fail(tmp_path: Path, key_connection: str):
    """FAIL carries what the run knew: the set it was to check, with no assertion since none ran."""
    report = _governed(tmp_path, key_connection)
    governed = Path(json.loads(report.read_text())["output"])
    governed.write_bytes(b"not parquet")
    validation = _validation(tmp_path, report)

    with pytest.raises(AirflowFailException, match="validation could not run"):
        validation.execute(context={})
    lineage = validation.get_openlineage_facets_on_failure(task_instance=None)

    (dataset,) = lineage.inputs
    assert (dataset.namespace, dataset.name) == ("file", str(governed.resolve()))
    assert not dataset.inputFacets


def test_the_documentation_facet_links_the_served_data_docs(tmp_path: Path, key_connection: str):
    report = _governed(tmp_path, key_connection)
    validation = GovernedDatasetValidationOperator(
        task_id="validate",
        report_path=str(report),
        data_docs_dir=str(tmp_path / "data-docs"),
        gx_project_dir=str(tmp_path / "gx"),
        data_docs_base_url="https://docs.example.org/data-docs/",
    )
    validation.execute(context={})

    (dataset,) = validation.get_openlineage_facets_on_complete(task_instance=None).inputs

    description = dataset.facets["documentation"].description
    assert f"<{validation.data_docs_url()}>" in description
    assert validation.data_docs_url().startswith("https://docs.example.org/data-docs/validations/")
