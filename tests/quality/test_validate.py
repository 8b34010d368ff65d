"""Validation of governed datasets with Great Expectations: each rule fails on its own violation, Data Docs
are built, and no planted value reaches the summary, the logs, the results store or the Data Docs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.exceptions import QualityCheckFailedError
from airflow_phi_guard.quality.results import COUNT_FIELDS, RESULT_FORMAT, find_planted_values
from airflow_phi_guard.quality.suite import ExpectationSpec, RiskCheck
from airflow_phi_guard.quality.validate import (
    ValidationSummary,
    raise_for_failures,
    run_expectations,
    validate_governed_dataset,
)
from airflow_phi_guard.report import ConsentSummary
from tests.quality.conftest import ALLOWLISTED, governed_table, make_report, pseudonym

ALLOWLIST = "expect_table_columns_to_match_allowlist"
NO_IDENTIFIERS = "expect_column_values_to_contain_no_identifiers"
VALID_ZIP3 = "expect_column_values_to_be_valid_zip3"
CAPPED_AGES = "expect_column_ages_to_be_capped"
K_ANONYMITY = "expect_table_k_anonymity_to_be_at_least"

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gx_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """One GX project and one Data Docs site shared by the module's validations, as a deployment would."""
    root = tmp_path_factory.mktemp("gx")
    return root / "project", root / "data-docs"


def _validate(
    table: pa.Table,
    folder: Path,
    gx_dirs: tuple[Path, Path],
    suite_name: str,
    *,
    risk: RiskCheck | None = None,
    row_group_size: int | None = None,
    report=None,
) -> ValidationSummary:
    dataset = folder / f"{suite_name}.parquet"
    pq.write_table(table, dataset, row_group_size=row_group_size)
    project, docs = gx_dirs
    return validate_governed_dataset(
        dataset,
        report or make_report(),
        suite_name=suite_name,
        data_docs_dir=docs,
        gx_project_dir=project,
        risk=risk,
    )


def _failed(summary: ValidationSummary) -> set[tuple[str, str | None, str | None]]:
    return {(outcome.expectation_type, outcome.column, outcome.identifier) for outcome in summary.failures}


def test_a_governed_dataset_passes(tmp_path, gx_dirs):
    summary = _validate(governed_table(), tmp_path, gx_dirs, "passes")

    assert summary.success
    assert summary.failures == ()
    # The allowlist, the pseudonym's not-null and format checks, one per other reduced column (4), and
    # one identifier scan per kept column (DESCRIPTION, GENDER, INCOME).
    assert summary.statistics.evaluated == 1 + 2 + 4 + 3
    assert (summary.statistics.successful, summary.statistics.unsuccessful) == (10, 0)
    assert summary.results[0][:4] == (ALLOWLIST, None, True, None)
    raise_for_failures(summary)


# One row per rule: the violation planted in an otherwise governed dataset, and the one check it must fail.
@pytest.mark.parametrize(
    ("replace", "failure"),
    [
        # An extra column: the output columns must be exactly the allowlisted ones; GX's own
        # expect_table_columns_to_match_set(exact_match=False) would pass it (test_expectations.py).
        ({"SSN": ["999-12-3456", None, None, None]}, (ALLOWLIST, None, None)),
        # A kept column holding an SSN, a telephone number, an email address: the detectors find them.
        (
            {"DESCRIPTION": ["Well child visit", "SSN 123-45-6789", None, "x"]},
            (NO_IDENTIFIERS, "DESCRIPTION", "G"),
        ),
        ({"GENDER": ["F", "call 402-555-0199", "M", None]}, (NO_IDENTIFIERS, "GENDER", "D")),
        ({"DESCRIPTION": ["alice368@example.org", None, None, "x"]}, (NO_IDENTIFIERS, "DESCRIPTION", "F")),
        # ZIP3 values are three digits: four is a ZIP that was not truncated.
        ({"ZIP3": ["681", "6813", None, "000"]}, (VALID_ZIP3, "ZIP3", "B")),
        # 036 holds 20,000 people or fewer under Census 2020: it must have become 000.
        ({"ZIP3": ["681", "036", None, "000"]}, (VALID_ZIP3, "ZIP3", "B")),
        # 001 is no prefix of any ZIP code.
        ({"ZIP3": ["681", "001", None, "000"]}, (VALID_ZIP3, "ZIP3", "B")),
        # Ages stop at 90, "90 or older".
        ({"AGE": pa.array([30, 95, None, 2], pa.int32())}, (CAPPED_AGES, "AGE", "C")),
        # A birth year of 1935 at the reference date 2026-12-01 belongs to someone at least 90: suppressed.
        (
            {"MOTHER_BIRTH_YEAR": pa.array([1935, 1960, None, 2000], pa.int32())},
            ("expect_column_values_to_be_between", "MOTHER_BIRTH_YEAR", "C"),
        ),
        # A year that kept month and day.
        (
            {"ENCOUNTER_YEAR": pa.array([20240115, 2020, 2021, 2022], pa.int32())},
            ("expect_column_values_to_be_between", "ENCOUNTER_YEAR", "C"),
        ),
        # A pseudonym column that holds the source id instead of its keyed hash.
        (
            {
                "PATIENT_KEY": [
                    pseudonym("a"),
                    "982192b6-6843-4011-ef46-32caaf87d8a9",
                    pseudonym("c"),
                    pseudonym("d"),
                ]
            },
            ("expect_column_values_to_match_regex", "PATIENT_KEY", None),
        ),
    ],
    ids=[
        "extra-column",
        "ssn",
        "phone",
        "email",
        "zip3-four-digits",
        "zip3-restricted-kept",
        "zip3-unknown",
        "age-95",
        "birth-year",
        "year",
        "pseudonym",
    ],
)
def test_each_violation_fails_its_check(replace, failure, tmp_path, gx_dirs, request):
    summary = _validate(governed_table(**replace), tmp_path, gx_dirs, request.node.callspec.id)

    assert not summary.success
    assert _failed(summary) == {failure}
    assert summary.statistics.unsuccessful == 1


def test_a_missing_column_fails_the_allowlist(tmp_path, gx_dirs):
    table = governed_table().drop_columns(["GENDER"])

    summary = _validate(table, tmp_path, gx_dirs, "missing-column")

    # The allowlist names it; the scan of a column that is not there cannot run and fails too.
    assert (ALLOWLIST, None, None) in _failed(summary)
    assert {outcome.column for outcome in summary.failures} <= {None, "GENDER"}


def test_a_type_that_does_not_fit_its_treatment_is_refused_before_gx_runs(tmp_path, gx_dirs):
    table = governed_table(AGE=["42", "90", None, "1"])

    with pytest.raises(QualityCheckFailedError, match=r"AGE \(age needs integers, found string\)"):
        _validate(table, tmp_path, gx_dirs, "misfit")


def test_raise_for_failures_names_checks_columns_and_letters(tmp_path, gx_dirs):
    table = governed_table(ZIP3=["6813", None, None, None], SSN=[None, None, None, None])
    summary = _validate(table, tmp_path, gx_dirs, "named")

    with pytest.raises(QualityCheckFailedError) as raised:
        raise_for_failures(summary, report_path="governed/report.json")

    message = str(raised.value)
    assert ALLOWLIST in message
    assert f"{VALID_ZIP3} on ZIP3 (identifier B)" in message
    assert summary.data_docs_index in message
    assert raised.value.report_path == "governed/report.json"
    assert "6813" not in message


def test_data_docs_are_built_into_the_given_folder(tmp_path, gx_dirs):
    summary = _validate(governed_table(), tmp_path, gx_dirs, "data-docs")
    project, docs = gx_dirs

    index = docs / "index.html"
    assert summary.data_docs_index == str(index.resolve())
    assert index.is_file()
    assert "data-docs" in index.read_text()  # the suite is listed
    assert list((docs / "validations" / "data-docs").rglob("*.html"))
    assert (docs / "expectations" / "data-docs.html").is_file()
    # One site only: GX's default site inside the project would be a second copy to keep clean (GX still
    # lays out its empty folder).
    assert not [path for path in (project / "gx" / "uncommitted").rglob("*.html")]


def test_the_project_disables_analytics_and_stores_counts_only(tmp_path, gx_dirs, caplog):
    with caplog.at_level(logging.WARNING, logger="airflow_phi_guard"):
        _validate(governed_table(AGE=pa.array([95, 96, 97, 98], pa.int32())), tmp_path, gx_dirs, "stored")
    project, _ = gx_dirs

    # Nothing had to be cut after the run: GX stored counts only in the first place.
    assert "were cut" not in caplog.text

    config = (project / "gx" / "great_expectations.yml").read_text()
    assert "analytics_enabled: false" in config
    stored = list((project / "gx" / "uncommitted" / "validations" / "stored").rglob("*.json"))
    assert stored
    for path in stored:
        for expectation_result in json.loads(path.read_text())["results"]:
            # No partial_unexpected_list, partial_unexpected_counts, index list or unexpected rows.
            assert set(expectation_result["result"]) <= COUNT_FIELDS | {"observed_value", "details"}
            if expectation_result["expectation_config"]["type"] == CAPPED_AGES:
                assert expectation_result["result"]["details"]["above_top_age"] == 4


def test_the_result_format_asks_for_counts_without_values():
    assert RESULT_FORMAT == {
        "result_format": "SUMMARY",
        "partial_unexpected_count": 0,
        "exclude_unexpected_values": True,
        "include_unexpected_rows": False,
        "return_unexpected_index_query": False,
    }


def test_the_result_format_keeps_missing_and_unexpected_counts_and_no_value():
    # A regex check skips missing values: under the product's format the result says how many were
    # missing beside how many failed, and holds no failing value.
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    batch = context.data_sources.add_pandas("counts").add_dataframe_asset("counts")
    definition = batch.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name="counts"))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToMatchRegex(column="ZIP3", regex="^[0-9]{3}$"))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="counts", data=definition, suite=suite)
    )

    frame = pa.table({"ZIP3": ["681", "CANARY-4242", None, None]}).to_pandas()
    result = validation.run(batch_parameters={"dataframe": frame}, result_format=dict(RESULT_FORMAT))

    counts = result.results[0].result
    assert (counts["element_count"], counts["missing_count"], counts["unexpected_count"]) == (4, 2, 1)
    assert "CANARY-4242" not in json.dumps(result.to_json_dict())


def test_gx_summary_format_would_copy_failing_values():
    # Why BOOLEAN_ONLY: under GX's default format a failing value is copied into the result. Should a GX
    # release stop doing this, the reasoning in validate.py can be revisited.
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    batch = context.data_sources.add_pandas("leak").add_dataframe_asset("leak")
    definition = batch.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name="leak"))
    suite.add_expectation(
        gx.expectations.ExpectColumnValuesToBeBetween(column="AGE", min_value=0, max_value=90)
    )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="leak", data=definition, suite=suite)
    )

    result = validation.run(
        batch_parameters={"dataframe": pa.table({"AGE": [4242]}).to_pandas()}, result_format="SUMMARY"
    )

    assert result.results[0].result["partial_unexpected_list"] == [4242]


# Canary values, one per kind of column, each unique enough that finding it anywhere means it leaked.
CANARIES = {
    "DESCRIPTION": "CANARY-SSN 123-45-6789",
    "GENDER": "CANARY-PHONE 402-555-0187",
    "ZIP3": "CANARY-ZIP-31337",
    "PATIENT_KEY": "CANARY-PSEUDONYM-5e1f",
    "SSN": "CANARY-EXTRA 987-65-4329",
}
CANARY_NUMBERS = {"AGE": 9876543, "ENCOUNTER_YEAR": 31415926}


def _files_containing(folder: Path, needles: list[str]) -> dict[str, list[str]]:
    return {
        str(Path(path).relative_to(folder)): hits
        for path, hits in find_planted_values([folder], needles).items()
    }


def test_the_scrubber_finds_a_planted_value_in_any_file_and_escape(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"v": 'CANARY "quoted" 123-45-6789'}))
    (tmp_path / "b.html").write_text("<td>CANARY &lt;b&gt;</td>")
    (tmp_path / "c.txt").write_text("nothing here")

    found = find_planted_values([tmp_path], ['CANARY "quoted" 123-45-6789', "CANARY <b>", "absent"])

    assert found == {
        str(tmp_path / "a.json"): ['CANARY "quoted" 123-45-6789'],
        str(tmp_path / "b.html"): ["CANARY <b>"],
    }


def test_canaries_reach_no_summary_log_store_or_data_docs(tmp_path, caplog):
    # Own GX folders, so that every file found is this run's.
    project, docs = tmp_path / "project", tmp_path / "data-docs"
    table = governed_table(
        **{column: [value, None, None, None] for column, value in CANARIES.items()},
        **{column: pa.array([value, 1, 2, 3], pa.int32()) for column, value in CANARY_NUMBERS.items()},
    )
    dataset = tmp_path / "governed.parquet"
    pq.write_table(table, dataset)
    needles = [
        *CANARIES.values(),
        "123-45-6789",
        "402-555-0187",
        "987-65-4329",
        *map(str, CANARY_NUMBERS.values()),
    ]
    assert all(_files_containing(tmp_path, [needle]) for needle in CANARIES.values())  # planted, findable

    with caplog.at_level(logging.DEBUG):
        summary = validate_governed_dataset(
            dataset,
            make_report(),
            suite_name="canary",
            data_docs_dir=docs,
            gx_project_dir=project,
            risk=RiskCheck(("ZIP3", "GENDER"), 2),
        )
    with pytest.raises(QualityCheckFailedError) as raised:
        raise_for_failures(summary)

    # Every planted column failed its check, so the values were seen.
    assert {outcome.column for outcome in summary.failures} >= {
        None,
        "DESCRIPTION",
        "GENDER",
        "ZIP3",
        "PATIENT_KEY",
        "AGE",
        "ENCOUNTER_YEAR",
    }
    texts = {
        "summary": repr(summary),
        "summary dict": json.dumps(summary.to_dict()),
        "exception": str(raised.value),
        "logs": caplog.text,
    }
    leaks = {where: [needle for needle in needles if needle in text] for where, text in texts.items()}
    assert leaks == {where: [] for where in texts}
    assert _files_containing(docs, needles) == {}
    assert _files_containing(project, needles) == {}
    # The format kept the values out by itself: nothing had to be cut after GX had written it.
    assert not [
        record
        for record in caplog.records
        if record.name.startswith("airflow_phi_guard") and record.levelno >= logging.WARNING
    ]
    # The scan reads these files: the column names, which may be shown, are found in them, and so are the
    # counts of the custom checks.
    assert _files_containing(docs, ["DESCRIPTION"])
    assert _files_containing(project, ["DESCRIPTION"])
    assert _files_containing(docs, ["above top age: 1"])


def test_an_expectation_that_raises_has_its_message_withheld(tmp_path, caplog):
    # pandas quotes the first value it cannot add up in its error, and GX keeps that message with the
    # result; the suite never asks for a mean, but a check that raises must not leak either way.
    project, docs = tmp_path / "project", tmp_path / "data-docs"
    table = pa.table({"BLOB": pa.array([b"CANARY-BLOB-1", b"CANARY-BLOB-2"])})
    spec = ExpectationSpec(
        "expect_column_mean_to_be_between", {"column": "BLOB", "min_value": 0, "max_value": 1}, ""
    )

    summary = run_expectations(table, [spec], suite_name="raises", data_docs_dir=docs, gx_project_dir=project)

    assert [outcome[:4] for outcome in summary.results] == [
        ("expect_column_mean_to_be_between", "BLOB", False, None)
    ]
    assert not summary.success
    assert _files_containing(docs, ["CANARY-BLOB", "Traceback"]) == {}
    assert _files_containing(project, ["CANARY-BLOB", "Traceback"]) == {}
    page = next((docs / "validations" / "raises").rglob("*.html")).read_text()
    assert "withheld by airflow-phi-guard" in page
    assert "1 expectation(s) of suite raises raised inside Great Expectations" in caplog.text


def _run_python(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GX_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=environment,
        check=False,
    )


def test_importing_the_quality_modules_loads_neither_great_expectations_nor_pandas():
    completed = _run_python(
        """
        import json, sys
        import airflow_phi_guard.quality.suite, airflow_phi_guard.quality.validate
        heavy = sorted({name.split(".")[0] for name in sys.modules} & {"great_expectations", "pandas"})
        print(json.dumps(heavy))
        """,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == []


def test_validation_attempts_no_network_connection(tmp_path):
    # Every way out of the machine is refused and counted, from before GX is imported until Data Docs are
    # built; a validation that waited on the network would hit the timeout instead.
    pq.write_table(governed_table(), tmp_path / "governed.parquet")
    completed = _run_python(
        f"""
        import json, socket
        attempts = []

        def refuse(*args, **kwargs):
            attempts.append(repr(args[1:2] or args[:1]))
            raise OSError("network disabled by the test")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from airflow_phi_guard.quality.validate import validate_governed_dataset
        from tests.quality.conftest import make_report

        summary = validate_governed_dataset(
            {str(tmp_path / "governed.parquet")!r},
            make_report(),
            suite_name="offline",
            data_docs_dir={str(tmp_path / "data-docs")!r},
            gx_project_dir={str(tmp_path / "project")!r},
        )
        print(json.dumps({{"attempts": attempts, "success": summary.success}}))
        """,
        timeout=180,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == {"attempts": [], "success": True}
    assert (tmp_path / "data-docs" / "index.html").is_file()


def test_the_summary_lists_every_allowlisted_column_check_in_suite_order(tmp_path, gx_dirs):
    summary = _validate(governed_table(), tmp_path, gx_dirs, "ordered")

    columns = [outcome.column for outcome in summary.results[1:]]
    # GX reports results in an order of its own; the summary restores the suite's, which is output order.
    assert list(dict.fromkeys(columns)) == list(ALLOWLISTED)


def test_missing_values_are_counted_beside_unexpected_ones_and_a_required_column_fails(tmp_path, gx_dirs):
    keys = pa.array([pseudonym("a"), None, None, pseudonym("d")])
    zips = pa.array(["681", None, None, "6813"])

    summary = _validate(governed_table(PATIENT_KEY=keys, ZIP3=zips), tmp_path, gx_dirs, "nulls")

    by_check = {(outcome.expectation_type, outcome.column): outcome for outcome in summary.results}
    # The regex skips the two missing pseudonyms and passes; the not-null check of the key fails.
    regex = by_check[("expect_column_values_to_match_regex", "PATIENT_KEY")]
    assert (regex.success, regex.unexpected_count, regex.missing_count) == (True, 0, 2)
    not_null = by_check[("expect_column_values_to_not_be_null", "PATIENT_KEY")]
    assert (not_null.success, not_null.unexpected_count) == (False, 2)
    # A missing ZIP3 is missing, not malformed; the four-digit one is.
    zip3 = by_check[(VALID_ZIP3, "ZIP3")]
    assert (zip3.success, zip3.unexpected_count, zip3.missing_count) == (False, 1, 2)
    assert _failed(summary) == {
        ("expect_column_values_to_not_be_null", "PATIENT_KEY", None),
        (VALID_ZIP3, "ZIP3", "B"),
    }


def test_k_below_threshold_fails_the_k_anonymity_check(tmp_path, gx_dirs):
    # GENDER F, M, F and missing: the classes M and "missing" hold one row each, k = 1 < 2.
    summary = _validate(governed_table(), tmp_path, gx_dirs, "k-low", risk=RiskCheck(("GENDER",), 2))

    assert _failed(summary) == {(K_ANONYMITY, None, None)}


def test_k_at_threshold_passes(tmp_path, gx_dirs):
    table = governed_table(GENDER=["F", "F", "M", "M"])

    summary = _validate(table, tmp_path, gx_dirs, "k-ok", risk=RiskCheck(("GENDER",), 2))

    assert summary.success


def test_row_groups_are_validated_one_at_a_time_and_added_up(tmp_path, gx_dirs):
    # One row per group: no group alone has a class of two rows, the whole set has; and the counts of the
    # groups add up to those of the whole set.
    table = governed_table(GENDER=["F", "F", "M", "M"], ZIP3=["681", None, "6813", "036"])
    risk = RiskCheck(("GENDER",), 2)

    whole = _validate(table, tmp_path, gx_dirs, "whole", risk=risk)
    grouped = _validate(table, tmp_path, gx_dirs, "grouped", risk=risk, row_group_size=1)

    assert pq.ParquetFile(tmp_path / "grouped.parquet").num_row_groups == 4
    assert grouped.results == whole.results
    assert _failed(grouped) == {(VALID_ZIP3, "ZIP3", "B")}
    zip3 = next(outcome for outcome in grouped.results if outcome.column == "ZIP3")
    assert (zip3.unexpected_count, zip3.missing_count) == (2, 1)


def test_the_row_groups_are_read_one_at_a_time(tmp_path):
    import pyarrow.dataset as ds

    from airflow_phi_guard.quality.validate import _batches

    pq.write_table(pa.table({"A": list(range(10))}), tmp_path / "a.parquet", row_group_size=3)

    sizes = [batch.num_rows for batch in _batches(ds.dataset(tmp_path / "a.parquet", format="parquet"))]

    assert sizes == [3, 3, 3, 1]


def test_a_file_of_one_huge_row_group_is_read_in_bounded_slices(tmp_path):
    import pyarrow.dataset as ds

    from airflow_phi_guard.quality.validate import _batches

    table = pa.table({"A": list(range(10))})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=10)
    assert pq.ParquetFile(tmp_path / "a.parquet").num_row_groups == 1

    batches = list(_batches(ds.dataset(tmp_path / "a.parquet", format="parquet"), batch_rows=4))

    assert [batch.num_rows for batch in batches] == [4, 4, 2]
    assert pa.concat_tables(batches).equals(table)


def test_an_empty_file_is_one_empty_batch_with_the_schema(tmp_path):
    import pyarrow.dataset as ds

    from airflow_phi_guard.quality.validate import _batches

    schema = pa.schema([("A", pa.int64())])
    pq.write_table(schema.empty_table(), tmp_path / "a.parquet")

    batches = list(_batches(ds.dataset(tmp_path / "a.parquet", format="parquet")))

    assert [(batch.num_rows, batch.schema) for batch in batches] == [(0, schema)]


def test_the_suite_page_shows_the_runs_consent_counts(tmp_path, gx_dirs):
    consent = ConsentSummary(
        as_of="2026-12-01",
        date_rule="calendar date as recorded",
        subject_id_normalization="trimmed",
        purpose_codes=["HRESCH"],
        subjects_matched=97,
        rows_matched=4321,
        admitted_rows_by_basis={"research-authorization": 3998, "irb-waiver": 211},
        admitted_subjects_by_basis={"research-authorization": 88, "irb-waiver": 7},
        excluded_rows_by_reason={"revoked": 77, "no-record": 35},
    )
    report = make_report().model_copy(update={"consent": consent})

    _validate(governed_table(), tmp_path, gx_dirs, "consent-notes", report=report)

    page = (gx_dirs[1] / "expectations" / "consent-notes.html").read_text()
    for shown in (
        "2026-12-01",
        "research-authorization 3998",
        "irb-waiver 211",
        "research-authorization 88",
        "irb-waiver 7",
        "revoked 77",
        "no-record 35",
        "4321",
    ):
        assert shown in page


def test_the_same_suite_validates_again_in_one_process(tmp_path, gx_dirs):
    # A second validation of one suite in the same GX project and process (a scheduler's worker, a test
    # session) reads the project an earlier one saved; it must judge its own data, not fail to run.
    first = _validate(governed_table(), tmp_path, gx_dirs, "again")
    planted = governed_table(DESCRIPTION=["Well child visit", "SSN 123-45-6789", None, "x"])
    second = _validate(planted, tmp_path, gx_dirs, "again")

    assert first.success
    assert _failed(second) == {(NO_IDENTIFIERS, "DESCRIPTION", "G")}
