"""The scan operator: a report, a value-free summary, the inventory as lineage, no planted value anywhere."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException
from openlineage.client.event_v2 import RunState

from airflow_phi_guard.exceptions import DataProcessingError
from airflow_phi_guard.operators.scan import PhiScanOperator
from airflow_phi_guard.phi.inventory import ScanReport
from tests.lineage.openlineage_validation import run_event, validate_event

ROWS = 10

#: Synthetic identifiers planted in the dataset; none may leave it. UUIDs as Synthea's patient keys, names,
#: Synthea-style SSNs (area 999), an email address, and a phone number and a name copied into a note.
PATIENT_IDS = [f"5c1a9e4{row}-3b7d-4f2e-9a61-0d8c2b7e4f1{row}" for row in range(ROWS)]
CANARIES = (
    *PATIENT_IDS,
    "Zebulon",
    "Quennell",
    "999-49-3983",
    "999-73-1042",
    "zebulon.canary@example.org",
    "402-555-0199",
)

#: Each column of the dataset and what it is, by REGULATORY.md and the issue: a column's name decides its
#: identity (Synthea SSNs in area 999 included), the patient key is R, a SNOMED code and an amount are
#: no identifiers.
EXPECTED_LETTERS = {"Id": "R", "FIRST": "A", "SSN": "G", "EMAIL": "F", "CODE": None, "BASE_COST": None}


def _columns(note: bool) -> dict[str, pa.Array]:
    columns = {
        "Id": pa.array(PATIENT_IDS),
        "FIRST": pa.array(["Zebulon", "Quennell"] * (ROWS // 2)),
        "SSN": pa.array(["999-49-3983", "999-73-1042"] * (ROWS // 2)),
        "EMAIL": pa.array(["zebulon.canary@example.org"] * ROWS),
        # Synthea's CODE: a nine-digit SNOMED code, which is no SSN.
        "CODE": pa.array(["314529007"] * ROWS),
        "BASE_COST": pa.array([129.16] * ROWS),
    }
    if note:
        columns["NOTE"] = pa.array(["Zebulon called from 402-555-0199 about a refill"] + ["no change"] * 9)
    return columns


def _dataset(tmp_path: Path, *, note: bool = False) -> Path:
    path = tmp_path / "extract" / "patients.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(_columns(note)), path)
    return path


def _operator(tmp_path: Path, input_path: Path | str, **kwargs) -> PhiScanOperator:
    return PhiScanOperator(
        task_id="scan",
        input_path=str(input_path),
        report_path=str(tmp_path / "reports" / "scan.json"),
        **kwargs,
    )


def _event(lineage, state: RunState) -> dict:
    return run_event(lineage, state, "dag.scan")


@pytest.fixture
def task_log(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """Everything the task logged: Airflow 3's ``self.log`` is structlog, which prints unless Airflow's
    task runner routes it, so the captured output is read together with the standard logging records."""
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def text() -> str:
        captured = capsys.readouterr()
        seen.extend([captured.out, captured.err])
        return caplog.text + "".join(seen)

    return text


def _assert_no_canary(text: str, where: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"a planted value reached {where}"


def _raising(error: BaseException):
    def scan_dataset(*args, **kwargs):
        raise error

    return scan_dataset


class TestPhiScanOperatorConstruction:
    def test_the_paths_are_templated(self, tmp_path: Path):
        operator = PhiScanOperator(
            task_id="scan",
            input_path="{{ params.root }}/extract.csv",
            report_path="{{ params.root }}/{{ ds }}.json",
        )

        operator.render_template_fields(context={"ds": "2026-12-01", "params": {"root": "/data"}})

        assert (operator.input_path, operator.report_path) == ("/data/extract.csv", "/data/2026-12-01.json")

    @pytest.mark.parametrize(
        "sample_rows",
        [
            # A sample must hold at least one row; a flag is no count.
            0,
            -5,
            True,
        ],
    )
    def test_a_sample_without_rows_is_refused_when_the_dag_is_parsed(self, tmp_path: Path, sample_rows):
        with pytest.raises(ValueError, match="sample_rows"):
            _operator(tmp_path, tmp_path / "in.parquet", sample_rows=sample_rows)

    def test_the_provider_lists_the_operator_module(self):
        from airflow_phi_guard import get_provider_info

        (operators,) = get_provider_info()["operators"]
        assert "airflow_phi_guard.operators.scan" in operators["python-modules"]


class TestPhiScanOperatorExecute:
    def test_returns_a_value_free_summary_with_columns_per_letter(self, tmp_path: Path):
        source = _dataset(tmp_path)
        operator = _operator(tmp_path, source)

        summary = operator.execute(context={})

        assert summary == {
            "input": str(source.resolve()),
            "report": operator.report_path,
            "rows_scanned": ROWS,
            "sample_rows": None,
            "columns": len(EXPECTED_LETTERS),
            "identifier_columns": 4,
            "columns_by_identifier": {"A": 1, "F": 1, "G": 1, "R": 1},
        }

    def test_writes_the_scan_report_with_every_column_s_verdict(self, tmp_path: Path):
        operator = _operator(tmp_path, _dataset(tmp_path))

        operator.execute(context={})

        report = ScanReport.model_validate_json(Path(operator.report_path).read_text(encoding="utf-8"))
        assert {verdict.column: verdict.identifier for verdict in report.columns} == EXPECTED_LETTERS
        assert report.rows_scanned == ROWS

    def test_the_report_replaces_an_earlier_one_and_leaves_no_temporary_file(self, tmp_path: Path):
        operator = _operator(tmp_path, _dataset(tmp_path))
        report = Path(operator.report_path)
        report.parent.mkdir(parents=True)
        report.write_text("an earlier scan")

        operator.execute(context={})

        assert ScanReport.model_validate_json(report.read_text(encoding="utf-8")).rows_scanned == ROWS
        assert sorted(path.name for path in report.parent.iterdir()) == ["scan.json"]

    def test_a_sample_limits_the_rows_scanned(self, tmp_path: Path):
        summary = _operator(tmp_path, _dataset(tmp_path), sample_rows=3).execute(context={})

        assert (summary["rows_scanned"], summary["sample_rows"]) == (3, 3)

    def test_finding_identifiers_does_not_fail_the_task(self, tmp_path: Path):
        """A scan describes a raw extract; refusing identifiers is the policy task's job, not the scan's."""
        summary = _operator(tmp_path, _dataset(tmp_path, note=True)).execute(context={})

        assert summary["identifier_columns"] >= 4

    def test_logs_one_line_per_identifier_column_and_one_for_the_scan(self, tmp_path: Path, task_log):
        operator = _operator(tmp_path, _dataset(tmp_path))

        operator.execute(context={})

        log = task_log()
        for column, letter in EXPECTED_LETTERS.items():
            assert (f"column {column}: identifier {letter} " in log) is (letter is not None)
        assert "4 of 6 column(s) are identifiers (A: 1, F: 1, G: 1, R: 1)" in log

    def test_no_planted_value_reaches_xcom_the_report_the_facets_or_the_log(self, tmp_path: Path, task_log):
        operator = _operator(tmp_path, _dataset(tmp_path, note=True))
        start = _event(operator.get_openlineage_facets_on_start(), RunState.START)

        summary = operator.execute(context={})
        complete = _event(operator.get_openlineage_facets_on_complete(task_instance=None), RunState.COMPLETE)

        _assert_no_canary(json.dumps(summary), "the XCom summary")
        _assert_no_canary(Path(operator.report_path).read_text(encoding="utf-8"), "the scan report")
        _assert_no_canary(json.dumps(start), "the START event")
        _assert_no_canary(json.dumps(complete), "the COMPLETE event")
        log = task_log()
        assert "column FIRST: identifier A" in log  # the log was captured, so its silence means something
        _assert_no_canary(log, "the task log")


class TestPhiScanOperatorFailure:
    def test_an_unparsable_extract_fails_without_retry_and_quotes_no_row(self, tmp_path: Path, task_log):
        # Arrow's CSV parser quotes the whole row it cannot parse, planted values included.
        source = tmp_path / "extract.csv"
        source.write_text("Id,SSN\nx1,999-49-3983\ny2,999-73-1042,Zebulon,402-555-0199\n")
        operator = _operator(tmp_path, source)

        with pytest.raises(AirflowFailException) as caught:
            operator.execute(context={})

        _assert_no_canary("".join(traceback.format_exception(caught.value)), "the task's exception")
        _assert_no_canary(task_log(), "the task log")
        assert not Path(operator.report_path).exists()

    @pytest.mark.parametrize(
        "error",
        [
            # Errors from inside Arrow or the scan whose message may quote a value.
            pa.ArrowInvalid("CSV conversion error to int64: invalid value '999-49-3983'"),
            ValueError("could not convert 'Zebulon'"),
            KeyError("402-555-0199"),
            RuntimeError("unexpected 'zebulon.canary@example.org'"),
        ],
    )
    def test_an_error_that_may_quote_a_value_fails_without_retry_naming_its_class_only(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task_log, error
    ):
        monkeypatch.setattr("airflow_phi_guard.phi.inventory.scan_dataset", _raising(error))
        operator = _operator(tmp_path, _dataset(tmp_path))

        with pytest.raises(AirflowFailException) as caught:
            operator.execute(context={})

        assert type(error).__name__ in str(caught.value)
        _assert_no_canary("".join(traceback.format_exception(caught.value)), "the task's exception")
        _assert_no_canary(task_log(), "the task log")

    def test_an_io_error_stays_retryable_and_quotes_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ):
        monkeypatch.setattr(
            "airflow_phi_guard.phi.inventory.scan_dataset", _raising(OSError("read failed near 999-49-3983"))
        )
        operator = _operator(tmp_path, _dataset(tmp_path))

        with pytest.raises(DataProcessingError) as caught:
            operator.execute(context={})

        assert caught.value.retryable
        assert not isinstance(caught.value, AirflowFailException)
        _assert_no_canary("".join(traceback.format_exception(caught.value)), "the task's exception")

    def test_a_missing_input_stays_retryable(self, tmp_path: Path):
        """An upstream task may not have written the extract yet; a later try may find it."""
        with pytest.raises(DataProcessingError) as caught:
            _operator(tmp_path, tmp_path / "not-yet-written.parquet").execute(context={})

        assert caught.value.retryable

    @pytest.mark.parametrize(
        ("retryable", "expected"),
        [
            # I/O may heal on retry, a value that does not fit its column's type will not.
            (True, DataProcessingError),
            (False, AirflowFailException),
        ],
    )
    def test_a_data_processing_error_keeps_its_retry_decision(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retryable, expected
    ):
        error = DataProcessingError("extract.csv", "ArrowInvalid", retryable=retryable)
        monkeypatch.setattr("airflow_phi_guard.phi.inventory.scan_dataset", _raising(error))

        with pytest.raises(expected) as caught:
            _operator(tmp_path, _dataset(tmp_path)).execute(context={})

        assert isinstance(caught.value, AirflowFailException) is (not retryable)
        assert "withheld" in str(caught.value)


class TestPhiScanOperatorLineage:
    def test_start_names_the_input_alone_and_validates(self, tmp_path: Path):
        source = _dataset(tmp_path)

        event = _event(_operator(tmp_path, source).get_openlineage_facets_on_start(), RunState.START)

        validate_event(event)
        assert [(dataset["namespace"], dataset["name"]) for dataset in event["inputs"]] == [
            ("file", str(source.resolve()))
        ]
        assert event["inputs"][0].get("facets", {}) == {}
        assert event["outputs"] == []

    def test_complete_puts_the_inventory_on_the_input_and_publishes_no_dataset(self, tmp_path: Path):
        source = _dataset(tmp_path)
        operator = _operator(tmp_path, source)
        operator.execute(context={})

        event = _event(operator.get_openlineage_facets_on_complete(task_instance=None), RunState.COMPLETE)

        validate_event(event)
        assert event["outputs"] == []
        (scanned,) = event["inputs"]
        assert (scanned["namespace"], scanned["name"]) == ("file", str(source.resolve()))
        assert set(scanned["facets"]) == {"schema", "tags", "phiGuard_inventory"}
        inventory = scanned["facets"]["phiGuard_inventory"]
        assert {
            column["name"]: column.get("identifier") for column in inventory["columns"]
        } == EXPECTED_LETTERS
        assert inventory["rowsScanned"] == ROWS

    def test_the_input_s_tags_name_each_identifier_column_by_field(self, tmp_path: Path):
        operator = _operator(tmp_path, _dataset(tmp_path))
        operator.execute(context={})

        tags = _event(operator.get_openlineage_facets_on_complete(task_instance=None), RunState.COMPLETE)[
            "inputs"
        ][0]["facets"]["tags"]["tags"]

        assert {tag["field"]: tag["value"] for tag in tags} == {
            column: letter for column, letter in EXPECTED_LETTERS.items() if letter is not None
        }
        assert {(tag["key"], tag["source"]) for tag in tags} == {("safe-harbor-identifier", "PHI_GUARD")}

    def test_the_input_s_schema_has_the_dataset_s_arrow_types(self, tmp_path: Path):
        operator = _operator(tmp_path, _dataset(tmp_path))
        operator.execute(context={})

        fields = _event(operator.get_openlineage_facets_on_complete(task_instance=None), RunState.COMPLETE)[
            "inputs"
        ][0]["facets"]["schema"]["fields"]

        assert [(field["name"], field["type"]) for field in fields] == [
            ("Id", "string"),
            ("FIRST", "string"),
            ("SSN", "string"),
            ("EMAIL", "string"),
            ("CODE", "string"),
            ("BASE_COST", "double"),
        ]

    def test_a_scan_that_could_not_run_fails_with_the_bare_input(self, tmp_path: Path):
        source = tmp_path / "extract.csv"
        source.write_text("Id,SSN\nx1,999-49-3983\ny2,999-73-1042,Zebulon,402-555-0199\n")
        operator = _operator(tmp_path, source)
        with pytest.raises(AirflowFailException):
            operator.execute(context={})

        event = _event(operator.get_openlineage_facets_on_failure(task_instance=None), RunState.FAIL)

        validate_event(event)
        assert [dataset.get("facets", {}) for dataset in event["inputs"]] == [{}]
        assert event["outputs"] == []

    def test_a_scan_whose_report_could_not_be_written_still_reports_its_inventory(self, tmp_path: Path):
        operator = _operator(tmp_path, _dataset(tmp_path))
        # the report's folder is taken by a file, so the report cannot be written
        (tmp_path / "reports").write_text("")
        with pytest.raises(OSError):  # noqa: PT011 - which OSError depends on the platform
            operator.execute(context={})

        event = _event(operator.get_openlineage_facets_on_failure(task_instance=None), RunState.FAIL)

        validate_event(event)
        assert "phiGuard_inventory" in event["inputs"][0]["facets"]

    def test_lineage_never_fails_a_scan_whose_schema_cannot_be_read_again(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task_log
    ):
        def unreadable(path):
            raise OSError("gone")

        monkeypatch.setattr("airflow_phi_guard.engine.source.open_source", unreadable)
        monkeypatch.setattr(
            "airflow_phi_guard.phi.inventory.scan_dataset",
            lambda path, sample_rows=None: ScanReport(
                input=str(path), rows_scanned=0, sample_rows=sample_rows, columns=[]
            ),
        )
        operator = _operator(tmp_path, _dataset(tmp_path))

        operator.execute(context={})
        event = _event(operator.get_openlineage_facets_on_complete(task_instance=None), RunState.COMPLETE)

        validate_event(event)
        assert "could not read the schema" in task_log()
