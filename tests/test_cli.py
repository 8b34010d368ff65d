"""The ``phi-guard`` command through its real entry point: exit codes, report, events, audit and plan, and
that no planted value leaves the data through any of them.

Expected values come from the issue's CLI, report and audit sections and from REGULATORY.md; the inputs
are in tests/cli_fixtures.py. Most runs call ``airflow_phi_guard.cli.main`` in-process; the installed
console script is run as a subprocess for the exit codes and for what a real process prints.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.cli import main
from airflow_phi_guard.engine.source import CSV_INFERENCE_BLOCK_BYTES, open_source
from tests.cli_fixtures import (
    AS_OF,
    CONSENT,
    MODEL_NAME,
    MODEL_VERSION,
    OUTPUT_COLUMNS,
    POLICY,
    PSEUDONYM_KEY,
    REACHED,
    ROWS_AT_AS_OF,
    STOPPED,
    Workspace,
    canaries,
    edited,
    source_rows,
    with_note,
    with_phone,
)
from tests.lineage.openlineage_validation import validate_event

#: The issue's name for the variable; spelled out rather than imported, so that a rename fails here.
KEY_VARIABLE = "PHI_GUARD_PSEUDONYM_KEY"

#: The console script of the installed package, beside the interpreter running the tests.
CONSOLE_SCRIPT = Path(sys.executable).with_name("phi-guard")

#: The report's top-level keys, as the issue lists them.
REPORT_KEYS = {"verdict", "policy", "input", "output", "method", "rows", "columns", "findings", "refusals"}

#: Every column of the report under POLICY: (source, identifier, treatment, output).
REPORT_COLUMNS = {*REACHED, *{(source, letter, "drop", None) for source, letter in STOPPED}}


@dataclass(frozen=True)
class Outcome:
    """What one command run returned and printed."""

    code: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, PSEUDONYM_KEY)
    # OPENLINEAGE_DISABLED in a developer's shell would silently leave every event log empty
    monkeypatch.delenv("OPENLINEAGE_DISABLED", raising=False)
    # Rich lays tables out for the terminal; a wide one keeps each column name and treatment on one line
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture
def phi_guard(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], Outcome]:
    """Run ``main`` in-process with the given arguments, capturing what it prints."""

    def run(arguments: list[str]) -> Outcome:
        capsys.readouterr()
        code = main(arguments)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def _report(workspace: Workspace) -> dict[str, Any]:
    return json.loads(workspace.report.read_text(encoding="utf-8"))


def _events(workspace: Workspace) -> list[dict[str, Any]]:
    return [json.loads(line) for line in workspace.events.read_text(encoding="utf-8").splitlines() if line]


def _assert_nothing_published(workspace: Workspace) -> None:
    assert not workspace.output.exists()
    # no temporary file left beside it either
    folder = workspace.output.parent
    assert (sorted(path.name for path in folder.iterdir()) if folder.exists() else []) == []


def _pseudonym(subject: str) -> str:
    # the issue: HMAC-SHA256, hex
    return hmac.new(PSEUDONYM_KEY.encode(), subject.encode(), hashlib.sha256).hexdigest()


def _without(rows: list[dict[str, str]], column: str) -> list[dict[str, str]]:
    return [{name: value for name, value in row.items() if name != column} for row in rows]


def _plan_row(stdout: str, *cells: str) -> bool:
    """Whether one line of the plan shows these cells, in this order, each as a whole word."""
    pattern = r".*".join(rf"(?<![\w-]){re.escape(cell)}(?![\w-])" for cell in cells)
    return any(re.search(pattern, line) for line in stdout.splitlines())


class TestPublished:
    @pytest.mark.parametrize("suffix", [".csv", ".parquet"])
    def test_exit_0_publishes_the_governed_set_and_writes_the_report(self, workspace, phi_guard, suffix):
        source = workspace.write(suffix=suffix)

        outcome = phi_guard(workspace.apply_arguments(source))

        assert outcome.code == 0
        governed = pq.read_table(workspace.output)
        assert set(governed.column_names) == OUTPUT_COLUMNS
        assert governed.num_rows == ROWS_AT_AS_OF["admitted"]
        report = _report(workspace)
        assert report.keys() >= REPORT_KEYS
        assert report["verdict"] == "published"
        assert set(report["policy"]) == {"name", "version", "digest"}
        assert (report["policy"]["name"], report["policy"]["version"]) == ("cli-readmission", 2)
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", report["policy"]["digest"])
        assert report["input"] == str(source.resolve())
        assert report["output"] == str(workspace.output.resolve())
        assert report["method"] == "expert-determination"
        assert report["rows"] == ROWS_AT_AS_OF
        for column in report["columns"]:
            assert {"source", "output", "identifier", "treatment"} <= column.keys()
        assert {
            (column["source"], column["identifier"], column["treatment"], column["output"])
            for column in report["columns"]
        } == REPORT_COLUMNS
        assert (report["findings"], report["refusals"]) == ([], [])
        assert "published" in outcome.stdout

    def test_the_pseudonym_key_comes_from_the_environment(self, workspace, phi_guard):
        assert phi_guard(workspace.apply_arguments(workspace.write())).code == 0

        keys = pq.read_table(workspace.output)["PATIENT_KEY"].to_pylist()
        # admitted at AS_OF: 0001 and 0002 (cli_fixtures.CONSENT)
        assert sorted(keys) == sorted(_pseudonym(f"CANARY-SUBJ-000{number}") for number in (1, 2))

    @pytest.mark.parametrize(
        ("as_of", "admitted"),
        [
            # 0003's grant starts on 2026-12-10, so it is not yet valid; 0001 (born 1961-07-23) is 65 and
            # 0002 (born 1936-12-15) is 89
            (AS_OF, {"CANARY-SUBJ-0001": 65, "CANARY-SUBJ-0002": 89}),
            # after 2026-12-15 0002 is over 89, so 90 ("90 or older"); 0003 (born 1990-02-28) is 36
            ("2026-12-20", {"CANARY-SUBJ-0001": 65, "CANARY-SUBJ-0002": 90, "CANARY-SUBJ-0003": 36}),
        ],
    )
    def test_as_of_is_the_reference_date_of_consent_and_ages(self, workspace, phi_guard, as_of, admitted):
        outcome = phi_guard(workspace.apply_arguments(workspace.write(), as_of=as_of))

        assert outcome.code == 0
        governed = pq.read_table(workspace.output)
        by_key = dict(zip(governed["PATIENT_KEY"].to_pylist(), governed["AGE"].to_pylist(), strict=True))
        assert by_key == {_pseudonym(subject): age for subject, age in admitted.items()}
        assert _report(workspace)["rows"]["admitted"] == len(admitted)


def _undeclared_column(workspace: Workspace) -> list[str]:
    rows = [{**row, "MRN": f"CANARY-MRN-{number}"} for number, row in enumerate(source_rows())]
    return workspace.apply_arguments(workspace.write(rows=rows))


def _kept_note(note: str) -> Callable[[Workspace], list[str]]:
    return lambda workspace: workspace.apply_arguments(workspace.write(rows=with_note(source_rows(), note)))


def _subject_column_missing(workspace: Workspace) -> list[str]:
    return workspace.apply_arguments(workspace.write(rows=_without(source_rows(), "PATIENT")))


def _no_consent_option(workspace: Workspace) -> list[str]:
    return workspace.apply_arguments(workspace.write(consent=None), without=("--consent",))


def _consent_file_missing(workspace: Workspace) -> list[str]:
    return workspace.apply_arguments(workspace.write(consent=None), consent=str(workspace.root / "none.csv"))


def _consent_text(text: str) -> Callable[[Workspace], list[str]]:
    return lambda workspace: workspace.apply_arguments(workspace.write(consent=text))


class TestRefused:
    @pytest.mark.parametrize(
        ("prepare", "named", "findings"),
        [
            # a column the policy does not declare (undeclared: refuse): named, never its values
            pytest.param(_undeclared_column, ["MRN"], [], id="undeclared-column"),
            # a kept string column holding an SSN (G), a phone number (D), an email address (F): named by
            # column and letter, one planted value each
            pytest.param(_kept_note("ssn 123-45-6789 on file"), ["NOTE", "G"], [("NOTE", "G", 1)], id="ssn"),
            pytest.param(
                _kept_note("call 402-555-0143 after 5"), ["NOTE", "D"], [("NOTE", "D", 1)], id="phone"
            ),
            pytest.param(
                _kept_note("mail jane.roe@example.org"), ["NOTE", "F"], [("NOTE", "F", 1)], id="email"
            ),
            # the subject column missing: consent cannot be checked
            pytest.param(_subject_column_missing, ["PATIENT"], [], id="subject-column-missing"),
            # the consent registry missing: no --consent, or a path where no file is
            pytest.param(_no_consent_option, ["consent registry"], [], id="no-consent-option"),
            pytest.param(_consent_file_missing, ["consent registry"], [], id="consent-file-missing"),
            # a malformed registry: a required column missing, a basis that is none of the issue's
            pytest.param(
                _consent_text("subject_id,purposes\nCANARY-SUBJ-0001,model-training\n"),
                ["consent registry", "basis"],
                [],
                id="consent-column-missing",
            ),
            pytest.param(
                _consent_text(edited(CONSENT, "irb-waiver,model", "verbal-ok,model")),
                ["consent registry"],
                [],
                id="consent-unknown-basis",
            ),
        ],
    )
    def test_exit_3_publishes_nothing_and_reports_refused(
        self, workspace, phi_guard, prepare, named, findings
    ):
        outcome = phi_guard(prepare(workspace))

        assert outcome.code == 3
        _assert_nothing_published(workspace)
        report = _report(workspace)
        assert report["verdict"] == "refused"
        assert report["output"] is None
        assert report["refusals"]
        refusals = " ".join(report["refusals"])
        for name in named:
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", refusals), name
        found = [(item["column"], item["identifier"], item["count"]) for item in report["findings"]]
        assert found == findings
        assert "refused" in outcome.stdout
        # and the command does not say that anything was published
        assert all("nothing" in line for line in outcome.stdout.splitlines() if "published" in line)

    def test_exit_3_when_the_policy_pseudonymizes_and_no_key_is_set(self, workspace, phi_guard, monkeypatch):
        monkeypatch.delenv(KEY_VARIABLE)

        outcome = phi_guard(workspace.apply_arguments(workspace.write()))

        assert outcome.code == 3
        _assert_nothing_published(workspace)
        report = _report(workspace)
        assert report["verdict"] == "refused"
        assert any("pseudonym" in refusal for refusal in report["refusals"])

    @pytest.mark.parametrize("command", ["apply", "plan"])
    def test_names_in_brackets_are_printed_as_they_are(self, workspace, phi_guard, command):
        # Column names such as dose[/day] are common in extracts; printed as console markup, "[red]"
        # vanished and "[/day]" raised an error while the refusal was being reported.
        rows = [{**row, "dose[/day]": "1", "x[red]y": "2"} for row in source_rows()]
        source = workspace.write(rows=rows)
        arguments = workspace.apply_arguments(source)
        if command == "plan":
            arguments = ["plan", "--policy", str(workspace.policy), "--input", str(source)]

        outcome = phi_guard(arguments)

        assert outcome.code == 3
        assert "dose[/day]" in outcome.stderr
        assert "x[red]y" in outcome.stderr

    def test_an_empty_key_is_no_key(self, workspace, phi_guard, monkeypatch):
        monkeypatch.setenv(KEY_VARIABLE, "")

        assert phi_guard(workspace.apply_arguments(workspace.write())).code == 3
        _assert_nothing_published(workspace)


class TestUsage:
    @pytest.mark.parametrize(
        ("old", "new", "key", "at"),
        [
            # an unknown key
            pytest.param(
                "recipient: internal-ml-platform\n",
                "retention: 6y\nrecipient: internal-ml-platform\n",
                "retention",
                "retention:",
                id="unknown-key",
            ),
            # an unknown treatment
            pytest.param(
                "GENDER:    {treatment: keep",
                "GENDER:    {treatment: mask",
                "columns.GENDER.treatment",
                "GENDER:",
                id="unknown-treatment",
            ),
            # an unknown basis, and consent to treatment, which is no basis for training
            pytest.param("irb-waiver]", "verbal-ok]", "consent.bases", "bases:", id="unknown-basis"),
            pytest.param(
                "irb-waiver]", "treatment-consent]", "consent.bases", "bases:", id="treatment-consent"
            ),
            # a missing justification
            pytest.param(
                ', justification: "predictor"}\n  NOTE',
                "}\n  NOTE",
                "columns.GENDER.justification",
                "GENDER:",
                id="missing-justification",
            ),
        ],
    )
    def test_exit_2_for_a_bad_policy_naming_file_key_and_line(self, workspace, phi_guard, old, new, key, at):
        policy = edited(POLICY, old, new)
        source = workspace.write(policy=policy)
        # the issue: an error names the file, the key and the line (here, the line of the entry at fault)
        line = next(
            number for number, text in enumerate(policy.splitlines(), 1) if text.lstrip().startswith(at)
        )

        outcome = phi_guard(workspace.apply_arguments(source))

        assert outcome.code == 2
        assert f"{workspace.policy}:{line}" in outcome.stderr
        assert key in outcome.stderr
        _assert_nothing_published(workspace)
        assert not workspace.report.exists()

    @pytest.mark.parametrize(
        ("arguments", "mentioned"),
        [
            # --as-of must be YYYY-MM-DD, and a real date
            ({"as_of": "2026-13-01"}, "--as-of"),
            ({"as_of": "01/12/2026"}, "--as-of"),
            ({"as_of": "yesterday"}, "--as-of"),
            # a required option missing
            ({"without": ("--output",)}, "--output"),
            ({"without": ("--policy",)}, "--policy"),
            ({"without": ("--input",)}, "--input"),
        ],
    )
    def test_exit_2_for_bad_arguments(self, workspace, phi_guard, arguments, mentioned):
        source = workspace.write()

        outcome = phi_guard(workspace.apply_arguments(source, **arguments))

        assert outcome.code == 2
        assert mentioned in outcome.stderr
        _assert_nothing_published(workspace)
        assert not workspace.report.exists()

    @pytest.mark.parametrize("arguments", [[], ["publish"], ["audit"], ["plan", "--policy", "p.yaml"]])
    def test_exit_2_without_a_command_or_its_required_options(self, phi_guard, arguments):
        assert phi_guard(arguments).code == 2


class TestErrors:
    @pytest.mark.parametrize("suffix", [".csv", ".parquet"])
    def test_exit_1_for_an_input_that_does_not_exist(self, workspace, phi_guard, suffix):
        workspace.write()
        missing = workspace.root / f"nowhere{suffix}"

        outcome = phi_guard(workspace.apply_arguments(missing))

        assert outcome.code == 1
        assert str(missing) in outcome.stderr
        _assert_nothing_published(workspace)
        assert not workspace.report.exists()

    def test_exit_1_for_an_input_whose_bytes_are_not_parquet(self, workspace, phi_guard):
        workspace.write()
        source = workspace.source(".parquet")
        source.write_bytes(b"PAR1 these bytes are not a Parquet file")

        outcome = phi_guard(workspace.apply_arguments(source))

        assert outcome.code == 1
        _assert_nothing_published(workspace)
        assert not workspace.report.exists()


class TestEvents:
    @pytest.mark.parametrize(
        ("rows", "code", "closing"),
        [
            (source_rows(), 0, "COMPLETE"),
            # the phone number in a kept column refuses the run
            (with_phone(source_rows()), 3, "FAIL"),
        ],
    )
    def test_a_run_appends_start_then_its_outcome(self, workspace, phi_guard, rows, code, closing):
        assert phi_guard(workspace.apply_arguments(workspace.write(rows=rows))).code == code

        events = _events(workspace)
        assert [event["eventType"] for event in events] == ["START", closing]
        assert events[0]["run"]["runId"] == events[1]["run"]["runId"]
        for event in events:
            validate_event(event)

    def test_an_error_closes_the_run_with_fail(self, workspace, phi_guard):
        workspace.write()
        source = workspace.source(".parquet")
        source.write_bytes(b"not parquet")

        assert phi_guard(workspace.apply_arguments(source)).code == 1

        events = _events(workspace)
        assert [event["eventType"] for event in events] == ["START", "FAIL"]
        for event in events:
            validate_event(event)

    def test_two_runs_append_four_events(self, workspace, phi_guard):
        assert phi_guard(workspace.apply_arguments(workspace.write())).code == 0
        assert phi_guard(workspace.apply_arguments(workspace.write(rows=with_phone(source_rows())))).code == 3

        events = _events(workspace)
        assert [event["eventType"] for event in events] == ["START", "COMPLETE", "START", "FAIL"]
        run_ids = [event["run"]["runId"] for event in events]
        assert run_ids[0] == run_ids[1] != run_ids[2] == run_ids[3]
        for event in events:
            validate_event(event)


def _audit(phi_guard, workspace: Workspace, *options: str) -> Outcome:
    return phi_guard(["audit", "--events", str(workspace.events), *options])


class TestAudit:
    def test_json_names_what_reached_the_model_what_was_stopped_and_the_run(self, workspace, phi_guard):
        source = workspace.write()
        assert phi_guard(workspace.apply_arguments(source)).code == 0
        report = _report(workspace)

        outcome = _audit(phi_guard, workspace, "--model", MODEL_NAME, "--format", "json")

        assert outcome.code == 0
        answer = json.loads(outcome.stdout)
        assert answer["model"] == {"name": MODEL_NAME, "version": MODEL_VERSION}
        assert {
            (item["column"], item["identifier"], item["treatment"], item["output_column"])
            for item in answer["reached"]
        } == REACHED
        assert {(item["column"], item["identifier"]) for item in answer["stopped"]} == STOPPED
        # the OpenLineage naming of a local file: namespace file, name its absolute path
        source_uri = f"file://{source.resolve()}"
        assert {item["dataset"] for item in [*answer["reached"], *answer["stopped"]]} == {source_uri}
        [run] = answer["runs"]
        assert run["run_id"] == _events(workspace)[-1]["run"]["runId"]
        assert run["policy_digest"] == report["policy"]["digest"]
        assert run["rows_admitted"] == report["rows"]["admitted"] == ROWS_AT_AS_OF["admitted"]
        assert run["consent_bases"] == ["research-authorization", "irb-waiver"]

    @pytest.mark.parametrize(
        ("model", "reaches"),
        [
            # NAME:VERSION names one version of the model: the policy's, or another one
            (f"{MODEL_NAME}:{MODEL_VERSION}", True),
            (f"{MODEL_NAME}:99", False),
            ("another-model", False),
        ],
    )
    def test_model_name_and_version_select_the_runs(self, workspace, phi_guard, model, reaches):
        assert phi_guard(workspace.apply_arguments(workspace.write())).code == 0

        answer = json.loads(_audit(phi_guard, workspace, "--model", model, "--format", "json").stdout)

        assert bool(answer["reached"]) is reaches
        assert len(answer["runs"]) == (1 if reaches else 0)

    def test_without_model_every_model_is_audited(self, workspace, phi_guard):
        assert phi_guard(workspace.apply_arguments(workspace.write())).code == 0

        answers = json.loads(_audit(phi_guard, workspace, "--format", "json").stdout)

        assert [answer["model"] for answer in answers] == [{"name": MODEL_NAME, "version": MODEL_VERSION}]

    def test_text_mentions_the_reached_and_the_stopped_columns(self, workspace, phi_guard):
        assert phi_guard(workspace.apply_arguments(workspace.write())).code == 0

        outcome = _audit(phi_guard, workspace, "--model", MODEL_NAME)

        assert outcome.code == 0
        assert MODEL_NAME in outcome.stdout
        words = set(re.findall(r"[\w-]+", outcome.stdout))
        for column, _letter, treatment, output in REACHED:
            assert {column, treatment, output} <= words
        for column, _letter in STOPPED:
            assert column in words

    def test_a_refused_run_reaches_nothing(self, workspace, phi_guard):
        assert phi_guard(workspace.apply_arguments(workspace.write(rows=with_phone(source_rows())))).code == 3

        answer = json.loads(_audit(phi_guard, workspace, "--model", MODEL_NAME, "--format", "json").stdout)
        text = _audit(phi_guard, workspace, "--model", MODEL_NAME).stdout

        assert answer["model"] == {"name": MODEL_NAME, "version": MODEL_VERSION}
        assert (answer["reached"], answer["runs"]) == ([], [])
        # the renamed outputs, which the text would show only for a column that reached the model
        for column, _letter, _treatment, output in REACHED:
            assert output == column or output not in text

    def test_a_refused_run_after_a_published_one_adds_no_run(self, workspace, phi_guard):
        assert phi_guard(workspace.apply_arguments(workspace.write())).code == 0
        digest = _report(workspace)["policy"]["digest"]
        assert phi_guard(workspace.apply_arguments(workspace.write(rows=with_phone(source_rows())))).code == 3

        answer = json.loads(_audit(phi_guard, workspace, "--model", MODEL_NAME, "--format", "json").stdout)

        assert [run["policy_digest"] for run in answer["runs"]] == [digest]
        assert {item["column"] for item in answer["reached"]} == {column for column, *_ in REACHED}


class TestPlan:
    def test_shows_each_column_and_reads_no_row(self, workspace, phi_guard, monkeypatch):
        # A phone number in the kept NOTE refuses an apply; the plan does not see it because it reads no
        # row, and it needs neither a consent registry nor the pseudonym key.
        monkeypatch.delenv(KEY_VARIABLE)
        source = workspace.write(rows=with_phone(source_rows()), consent=None)

        outcome = phi_guard(["plan", "--policy", str(workspace.policy), "--input", str(source)])

        assert outcome.code == 0
        for column, letter, treatment, output in REACHED:
            assert _plan_row(outcome.stdout, column, *([letter] if letter else []), treatment, output), column
        for column, letter in STOPPED:
            assert _plan_row(outcome.stdout, column, letter, "drop"), column
        assert not workspace.output.exists()

    @pytest.mark.parametrize(
        ("rows", "named"),
        [
            ([{**row, "MRN": "CANARY-MRN"} for row in source_rows()], "MRN"),
            (_without(source_rows(), "PATIENT"), "PATIENT"),
        ],
    )
    def test_exit_3_when_the_plan_would_refuse(self, workspace, phi_guard, rows, named):
        source = workspace.write(rows=rows, suffix=".parquet")

        outcome = phi_guard(["plan", "--policy", str(workspace.policy), "--input", str(source)])

        assert outcome.code == 3
        assert named in outcome.stderr

    def test_exit_2_for_a_bad_policy_and_1_for_a_missing_input(self, workspace, phi_guard):
        source = workspace.write(policy=edited(POLICY, "version: 2\n", "version: 2\nowner: me\n"))

        assert phi_guard(["plan", "--policy", str(workspace.policy), "--input", str(source)]).code == 2
        workspace.write()
        missing = ["plan", "--policy", str(workspace.policy), "--input", str(workspace.root / "none.csv")]
        assert phi_guard(missing).code == 1


def _leaks(texts: dict[str, str], planted: set[str]) -> dict[str, list[str]]:
    """Which planted values appear where; empty when nothing leaked."""
    found = {where: sorted(value for value in planted if value in text) for where, text in texts.items()}
    return {where: values for where, values in found.items() if values}


def _written_records(workspace: Workspace, *inputs: Path) -> dict[str, str]:
    """Every file the command wrote, except the governed set itself, by name."""
    skip = {path.resolve() for path in (*inputs, workspace.policy, workspace.consent, workspace.output)}
    return {
        str(path.relative_to(workspace.root)): path.read_text(encoding="utf-8", errors="replace")
        for path in sorted(workspace.root.rglob("*"))
        if path.is_file() and path.resolve() not in skip
    }


class TestCanaries:
    @pytest.mark.parametrize("suffix", [".csv", ".parquet"])
    @pytest.mark.parametrize(
        ("rows", "code"),
        [
            pytest.param(source_rows(), 0, id="published"),
            pytest.param(with_phone(source_rows()), 3, id="refused"),
        ],
    )
    def test_no_planted_value_leaves_the_data(self, workspace, phi_guard, caplog, rows, code, suffix):
        caplog.set_level(logging.DEBUG)
        source = workspace.write(suffix=suffix, rows=rows)
        planted = canaries(rows)

        outcomes = {
            "apply": phi_guard(workspace.apply_arguments(source)),
            "audit text": _audit(phi_guard, workspace),
            "audit json": _audit(phi_guard, workspace, "--format", "json"),
            "plan": phi_guard(["plan", "--policy", str(workspace.policy), "--input", str(source)]),
        }

        assert outcomes["apply"].code == code
        if code:
            _assert_nothing_published(workspace)
        records = _written_records(workspace, source)
        assert {"records/report.json", "records/events.jsonl"} <= records.keys()
        texts = {"logs": caplog.text, **records}
        for name, outcome in outcomes.items():
            texts |= {f"{name} stdout": outcome.stdout, f"{name} stderr": outcome.stderr}
        assert _leaks(texts, planted) == {}

    def test_a_csv_cell_that_breaks_the_inferred_type_is_withheld(self, workspace, phi_guard, caplog):
        # Past the block Arrow infers CSV types from, an integer column holds text in row 20000. Arrow's
        # own message quotes that cell; the command must fail (exit 1) without repeating it.
        caplog.set_level(logging.DEBUG)
        policy = edited(POLICY, "  SSN:", '  LOS_DAYS:  {treatment: keep, justification: "label"}\n  SSN:')
        padding = "x" * (CSV_INFERENCE_BLOCK_BYTES // 19_000)
        rows = []
        for number, row in enumerate(source_rows() * 4000, start=1):
            cell = "CANARY-BADCELL" if number == 20_000 else str(number % 30)
            rows.append({**row, "LOS_DAYS": cell, "NOTE": row["NOTE"] + padding})
        source = workspace.write(rows=rows, policy=policy)
        assert source.stat().st_size > CSV_INFERENCE_BLOCK_BYTES
        with pytest.raises(pa.ArrowInvalid, match="CANARY-BADCELL"):
            open_source(source).to_table(columns=["LOS_DAYS"])
        planted = canaries(source_rows()) | {"CANARY-BADCELL"}

        outcome = phi_guard(workspace.apply_arguments(source))

        assert outcome.code == 1
        _assert_nothing_published(workspace)
        assert [event["eventType"] for event in _events(workspace)] == ["START", "FAIL"]
        texts = {"stdout": outcome.stdout, "stderr": outcome.stderr, "logs": caplog.text}
        assert _leaks({**texts, **_written_records(workspace, source)}, planted) == {}


def _console_script_case(workspace: Workspace, case: str) -> list[str]:
    if case == "published":
        return workspace.apply_arguments(workspace.write())
    if case == "refused":
        return workspace.apply_arguments(workspace.write(rows=with_phone(source_rows())))
    if case == "bad policy":
        return workspace.apply_arguments(workspace.write(policy=edited(POLICY, "subject:", "subjects:")))
    if case == "bad arguments":
        return workspace.apply_arguments(workspace.write(), as_of="2026-02-30")
    assert case == "not parquet"
    workspace.write()
    workspace.source(".parquet").write_bytes(b"not parquet")
    return workspace.apply_arguments(workspace.source(".parquet"))


class TestConsoleScript:
    @pytest.mark.parametrize(
        ("case", "code"),
        [
            ("published", 0),
            ("refused", 3),
            ("bad policy", 2),
            # 2026 has no 30 February
            ("bad arguments", 2),
            ("not parquet", 1),
        ],
    )
    def test_the_installed_command_exits_with_the_contract_code(self, workspace, case, code):
        assert CONSOLE_SCRIPT.is_file(), "the package is not installed in this environment"
        arguments = _console_script_case(workspace, case)
        environment = {**os.environ, KEY_VARIABLE: PSEUDONYM_KEY, "COLUMNS": "200"}
        environment.pop("OPENLINEAGE_DISABLED", None)

        process = subprocess.run(
            [str(CONSOLE_SCRIPT), *arguments],
            capture_output=True,
            text=True,
            env=environment,
            cwd=workspace.root,
            timeout=120,
            check=False,
        )

        assert process.returncode == code, process.stdout + process.stderr
        assert workspace.output.exists() is (code == 0)
        assert "Traceback" not in process.stderr
        # what a real process prints, its logging included, leaks nothing either
        planted = canaries(with_phone(source_rows()))
        texts = {"stdout": process.stdout, "stderr": process.stderr}
        texts |= _written_records(workspace, workspace.source(), workspace.source(".parquet"))
        assert _leaks(texts, planted) == {}
