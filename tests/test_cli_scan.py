"""``phi-guard scan`` and ``phi-guard policy init`` through the command's entry point: the issue's done-when
checks on the repository's Synthea files, the JSON and text outputs, progress only on a terminal, the
draft file, and that no planted value reaches standard output, standard error or a written file.

Expected letters are the issue's, as tests/phi/test_names.py lists them for every Synthea column.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.cli import main
from airflow_phi_guard.exceptions import PolicyError
from airflow_phi_guard.policy.loader import load_policy, parse_policy
from tests.conftest import SYNTHEA
from tests.phi.test_names import SYNTHEA_COLUMNS

#: The keys of each column of the JSON output, as the issue lists them, plus the runner-up.
COLUMN_KEYS = {"column", "identifier", "confidence", "evidence", "rows_scanned", "matches", "runner_up"}


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rich lays tables out for the terminal; a wide one keeps each row on one line
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def phi_guard(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    def run(*arguments: str) -> Outcome:
        capsys.readouterr()
        code = main(list(arguments))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def _letters(document: dict[str, Any]) -> dict[str, str | None]:
    return {column["column"]: column["identifier"] for column in document["columns"]}


class TestDoneWhen:
    @pytest.mark.parametrize("table", ["patients", "encounters", "conditions"])
    def test_scan_names_every_identifier_column_with_its_letter_and_nothing_else(self, phi_guard, table):
        outcome = phi_guard("scan", "--input", str(SYNTHEA / f"{table}.csv"), "--format", "json")

        assert outcome.code == 0
        expected = {
            column: letter.letter if letter else None for column, letter in SYNTHEA_COLUMNS[table].items()
        }
        assert _letters(outcome.json()) == expected

    @pytest.mark.parametrize(
        ("table", "keys"),
        [("encounters", {"Id", "PATIENT"}), ("conditions", {"PATIENT", "ENCOUNTER"})],
    )
    def test_the_uuid_keys_are_r_and_codes_amounts_descriptions_and_organisations_are_not(
        self, phi_guard, table, keys
    ):
        document = phi_guard("scan", "--input", str(SYNTHEA / f"{table}.csv"), "--format", "json").json()
        letters = _letters(document)

        assert {column for column, letter in letters.items() if letter == "R"} == keys
        for column in (
            "CODE",
            "DESCRIPTION",
            "ORGANIZATION",
            "PROVIDER",
            "PAYER",
            "TOTAL_CLAIM_COST",
            "REASONCODE",
        ):
            if column in letters:
                assert letters[column] is None, column


class TestScan:
    def test_json_columns_carry_the_issues_keys(self, phi_guard):
        document = phi_guard("scan", "--input", str(SYNTHEA / "patients.csv"), "--format", "json").json()

        assert document["rows_scanned"] == 111  # the data rows of patients.csv
        for column in document["columns"]:
            assert set(column) >= COLUMN_KEYS
            assert column["rows_scanned"] == 111
        ssn = next(column for column in document["columns"] if column["column"] == "SSN")
        assert ssn["identifier"] == "G" and ssn["confidence"] == "high"
        assert ssn["evidence"][0]["source"] == "name"

    def test_sample_rows_limits_the_rows_scanned(self, phi_guard):
        outcome = phi_guard(
            "scan", "--input", str(SYNTHEA / "encounters.csv"), "--format", "json", "--sample-rows", "25"
        )
        document = outcome.json()
        assert (document["rows_scanned"], document["sample_rows"]) == (25, 25)
        assert {column["rows_scanned"] for column in document["columns"]} == {25}

    @pytest.mark.parametrize("rows", ["0", "-3", "many"])
    def test_sample_rows_must_be_a_positive_number(self, phi_guard, rows):
        outcome = phi_guard("scan", "--input", str(SYNTHEA / "patients.csv"), "--sample-rows", rows)
        assert outcome.code == 2

    def test_text_is_a_table_with_each_column_and_its_letter(self, phi_guard):
        outcome = phi_guard("scan", "--input", str(SYNTHEA / "conditions.csv"))

        assert outcome.code == 0
        rows = {
            line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in outcome.stdout.splitlines()
            if line.count("│") > 3
        }
        assert rows == {
            "START": "C",
            "STOP": "C",
            "PATIENT": "R",
            "ENCOUNTER": "R",
            "CODE": "-",
            "DESCRIPTION": "-",
        }
        assert "4 of 6 column(s) hold an identifier" in outcome.stdout

    def test_no_progress_on_standard_error_when_it_is_no_terminal(self, phi_guard):
        outcome = phi_guard("scan", "--input", str(SYNTHEA / "encounters.csv"), "--format", "json")
        assert outcome.stderr == ""

    def test_progress_on_standard_error_when_it_is_a_terminal(self, monkeypatch, capsys):
        terminal = _Terminal()
        monkeypatch.setattr("sys.stderr", terminal)

        code = main(["scan", "--input", str(SYNTHEA / "encounters.csv"), "--format", "json"])

        assert code == 0
        assert "rows" in terminal.getvalue()
        # standard output is still the JSON alone
        assert json.loads(capsys.readouterr().out)["rows_scanned"] == 7584

    def test_a_missing_input_is_named(self, phi_guard, tmp_path):
        missing = tmp_path / "nowhere.csv"
        outcome = phi_guard("scan", "--input", str(missing))
        assert outcome.code == 1
        assert str(missing) in outcome.stderr


class TestPolicyInit:
    def test_to_standard_output_a_draft_that_loads_once_filled(self, phi_guard):
        outcome = phi_guard("policy", "init", "--input", str(SYNTHEA / "encounters.csv"))

        assert outcome.code == 0
        assert outcome.stdout.startswith("# DRAFT")
        with pytest.raises(PolicyError, match="determination"):
            parse_policy(outcome.stdout)
        policy = parse_policy(_reviewed(outcome.stdout))
        assert policy.subject == "PATIENT"
        assert "draft policy encounters" in outcome.stderr

    def test_to_a_file_with_the_options(self, phi_guard, tmp_path):
        output = tmp_path / "policies" / "draft.yaml"

        outcome = phi_guard(
            "policy", "init", "--input", str(SYNTHEA / "conditions.csv"), "--output", str(output),
            "--name", "condition-model", "--purpose", "research", "--recipient", "research-team",
        )  # fmt: skip

        assert outcome.code == 0
        assert f"written to {output}" in outcome.stdout
        output.write_text(_reviewed(output.read_text()))
        policy = load_policy(output)
        assert (policy.name, policy.purpose, policy.recipient) == (
            "condition-model",
            "research",
            "research-team",
        )
        assert sorted(path.name for path in output.parent.iterdir()) == ["draft.yaml"]  # no partial file left

    def test_an_existing_policy_is_not_replaced_without_force(self, phi_guard, tmp_path):
        output = tmp_path / "policy.yaml"
        output.write_text("# a reviewed policy\n")
        arguments = ("policy", "init", "--input", str(SYNTHEA / "conditions.csv"), "--output", str(output))

        refused = phi_guard(*arguments)
        assert refused.code == 2
        assert output.read_text() == "# a reviewed policy\n"

        forced = phi_guard(*arguments, "--force")
        assert forced.code == 0
        assert output.read_text().startswith("# DRAFT")


class TestNoValueLeaves:
    """Canaries in every identifier column, in a note and in a comment; none may leave through the command."""

    CANARIES = {
        "PATIENT": "CANARY-SUBJ-0001",
        "FIRST": "Zyxwanda913",
        "LAST": "Qorvath477",
        "SSN": "999-61-4417",
        "PHONE": "402-555-0143",
        "EMAIL": "q.canary@example.org",
        "mrn": "CANARYMRN004217",
        "ADDRESS": "977 Canarybird Lane",
    }
    NOTE = "Zyxwanda913 Qorvath477 seen; call 402-555-0143, ssn 999-61-4417, mrn CANARYMRN004217"

    @pytest.fixture
    def extract(self, tmp_path: Path) -> Path:
        path = tmp_path / "extract.parquet"
        columns = {name: [value] * 3 for name, value in self.CANARIES.items()}
        columns["NOTE"] = [self.NOTE, "stable", None]
        columns["GENDER"] = ["F", "M", "F"]
        pq.write_table(pa.table(columns), path)
        return path

    def _assert_clean(self, *texts: str) -> None:
        for text in texts:
            for canary in [*self.CANARIES.values(), self.NOTE, "Canarybird"]:
                assert canary not in text
                assert canary.lower() not in text.lower()
                assert canary.replace("-", "") not in text

    @pytest.mark.parametrize("output_format", ["text", "json"])
    def test_scan(self, phi_guard, extract, output_format):
        outcome = phi_guard("scan", "--input", str(extract), "--format", output_format)

        assert outcome.code == 0
        self._assert_clean(outcome.stdout, outcome.stderr)

    def test_scan_flags_the_note_by_value_and_known_values(self, phi_guard, extract):
        note = next(
            column
            for column in phi_guard("scan", "--input", str(extract), "--format", "json").json()["columns"]
            if column["column"] == "NOTE"
        )

        assert note["identifier"] is not None
        assert {item["source"] for item in note["evidence"]} == {"value", "known-values"}

    def test_scan_with_progress(self, monkeypatch, capsys, extract):
        terminal = _Terminal()
        monkeypatch.setattr("sys.stderr", terminal)

        assert main(["scan", "--input", str(extract)]) == 0

        self._assert_clean(capsys.readouterr().out, terminal.getvalue())

    def test_policy_init(self, phi_guard, extract, tmp_path):
        to_stdout = phi_guard("policy", "init", "--input", str(extract))
        output = tmp_path / "draft.yaml"
        to_file = phi_guard("policy", "init", "--input", str(extract), "--output", str(output))

        assert (to_stdout.code, to_file.code) == (0, 0)
        self._assert_clean(
            to_stdout.stdout, to_stdout.stderr, to_file.stdout, to_file.stderr, output.read_text()
        )
        assert "NOTE: {treatment: drop" in output.read_text()  # its values hold identifiers


class _Terminal(io.StringIO):
    """Standard error as a terminal would be: Rich draws its progress bar there."""

    def isatty(self) -> bool:
        return True


def _reviewed(draft: str) -> str:
    """A draft as its reviewer completes it: every justification written, the determination it claims
    recorded."""
    draft = draft.replace('justification: ""', 'justification: "reviewed"')
    # the draft writes the determination's entries empty, for the reviewer to fill in
    written = {"expert": '"A. Expert"', "determined": "2026-01-15", "report": "ED-1", "expires": "2099-01-01"}
    for key, value in written.items():
        draft = draft.replace(f'    {key}: ""\n', f"    {key}: {value}\n")
    return draft
