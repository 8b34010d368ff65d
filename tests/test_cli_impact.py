"""``phi-guard impact`` through the command line: the demo where subjects revoke after a published run, exit
codes, and that no planted value or patient id leaves the process.

The demo-level test is the issue's "Done when": ``apply`` runs twice on the bundled Synthea data, some
subjects the first run admitted revoke, opt out or are deleted from the registry between the runs, and
``impact`` must report exactly those counts for the first run and none for the run made after the change.
Which subjects the first run admitted is decided here by the README's rule, from the registry rows alone.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.cli import main
from tests.cli_fixtures import AS_OF, CONSENT, PSEUDONYM_KEY, Workspace, canaries, source_rows
from tests.conftest import DEMO_POLICY, REPO, SYNTHEA
from tests.lineage.openlineage_validation import validate_event

MANIFEST_KEY = "cli-manifest-key-not-a-secret-0123456789"
#: The issue's and README's names, spelled out so that a rename fails here.
MANIFEST_KEY_VARIABLE = "PHI_GUARD_MANIFEST_KEY"
PSEUDONYM_KEY_VARIABLE = "PHI_GUARD_PSEUDONYM_KEY"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PSEUDONYM_KEY_VARIABLE, PSEUDONYM_KEY)
    monkeypatch.setenv(MANIFEST_KEY_VARIABLE, MANIFEST_KEY)
    monkeypatch.delenv("OPENLINEAGE_DISABLED", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def phi_guard(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str, str]]:
    def run(arguments: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(arguments)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _load(name: str) -> ModuleType:
    specification = importlib.util.spec_from_file_location(name, REPO / "dags" / f"{name}.py")
    assert specification is not None and specification.loader is not None
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    return module


def _admitted_by_the_rule_alone(rows: list[dict[str, str]], patients: set[str]) -> list[str]:
    """Subjects with one research-authorization row for model-training, granted before 2026-12-01, never
    revoked and never expiring: admitted at 2026-12-01 by the README's rule, whatever else the demo holds."""
    by_subject: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_subject.setdefault(row["subject_id"], []).append(row)
    return sorted(
        subject
        for subject, records in by_subject.items()
        if subject in patients
        and len(records) == 1
        and records[0]["basis"] == "research-authorization"
        and "model-training" in records[0]["purposes"].split(";")
        and records[0]["granted_at"] <= "2026-12-01"
        and not records[0]["expires_at"]
        and not records[0]["revoked_at"]
    )


def test_impact_counts_the_subjects_who_revoked_after_a_published_run_on_the_demo(tmp_path, phi_guard):
    extract = _load("demo_extract").write_encounter_extract(SYNTHEA, tmp_path / "extract.parquet")
    first_registry = tmp_path / "consent-2026-12-01.csv"
    _load("demo_consent").write_demo_consent_registry(SYNTHEA / "patients.csv", first_registry)
    patients = set(pq.read_table(extract, columns=["PATIENT"]).column(0).drop_null().to_pylist())
    rows = list(csv.DictReader(io.StringIO(first_registry.read_text(encoding="utf-8"))))
    chosen = _admitted_by_the_rule_alone(rows, patients)
    assert len(chosen) >= 6
    revoking, opting_out, deleted = chosen[0:3], chosen[3:5], chosen[5]

    events = tmp_path / "events.jsonl"

    def apply(run: str, registry: Path, as_of: str) -> None:
        output = tmp_path / run / "readmission_risk.parquet"
        arguments = ["apply", "--policy", str(DEMO_POLICY), "--input", str(extract), "--output", str(output)]
        arguments += ["--consent", str(registry), "--as-of", as_of, "--events", str(events)]
        arguments += ["--surrogate-mapping", str(tmp_path / "private" / "surrogate-mapping.parquet")]
        code, out, err = phi_guard(arguments)
        assert code == 0, err
        assert "subject manifest of" in out

    apply("first", first_registry, "2026-12-01")

    # The next day: three revoke in writing (from 2026-12-02 on), two opt out, one is deleted.
    later = []
    for row in rows:
        if row["subject_id"] == deleted:
            continue
        if row["subject_id"] in revoking:
            row = {**row, "revoked_at": "2026-12-02"}
        later.append(row)
    for number, subject in enumerate(opting_out):
        later.append(
            {
                "subject_id": subject,
                "basis": "opt-out",
                "purposes": "",
                "granted_at": "2026-12-02",
                "expires_at": "",
                "revoked_at": "",
                "reference": f"OPT-LATER-{number}",
            }
        )
    later_registry = tmp_path / "consent-2026-12-02.csv"
    with later_registry.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(later)

    apply("second", later_registry, "2026-12-02")

    arguments = ["impact", "--events", str(events), "--consent", str(later_registry), "--as-of", "2026-12-02"]
    code, out, err = phi_guard([*arguments, "--format", "json"])
    assert code == 0, err
    answer = json.loads(out)
    runs = {Path(run["output"]).parent.name: run for run in answer["runs"]}
    assert set(runs) == {"first", "second"}
    first, second = runs["first"], runs["second"]
    assert first["model"] == {"name": "readmission-risk", "version": "1"}
    assert first["excluded"] == {"no-record": 1, "revoked": 3, "opted-out": 2}
    assert first["affected"] == 6
    assert first["still_admitted"] == first["subjects"] - 6
    assert second["excluded"] == {}
    assert second["affected"] == 0
    assert second["still_admitted"] == second["subjects"]
    assert answer["models"] == [
        {
            "model": {"name": "readmission-risk", "version": "1"},
            "runs": 2,
            "affected_runs": 1,
            "unanswered_runs": 0,
        }
    ]

    code, text, err = phi_guard(arguments)
    assert code == 0, err
    assert "Model readmission-risk version 1: 1 of 2 run(s)" in text

    # Patient ids never leave the process: not in the answer, the events or the manifests.
    leaked = [out, text, err, events.read_text(encoding="utf-8")]
    leaked += [path.read_bytes().decode("latin-1") for path in tmp_path.glob("*/*.subjects.parquet")]
    for patient in chosen:
        assert not any(patient in text for text in leaked)
    for line in events.read_text(encoding="utf-8").splitlines():
        validate_event(json.loads(line))


def _workspace_run(workspace: Workspace, phi_guard, **options: str) -> None:
    source = workspace.write()
    code, _out, err = phi_guard(workspace.apply_arguments(source, **options))
    assert code == 0, err


def _impact(workspace: Workspace, *extra: str) -> list[str]:
    return ["impact", "--events", str(workspace.events), "--consent", str(workspace.consent), *extra]


class TestExitCodes:
    def test_exit_0_when_every_run_is_answered(self, tmp_path, phi_guard):
        workspace = Workspace(tmp_path)
        _workspace_run(workspace, phi_guard)
        code, out, _err = phi_guard(_impact(workspace, "--as-of", AS_OF))
        assert code == 0
        assert "Revocation impact at 2026-12-01" in out

    def test_exit_1_naming_the_run_when_a_run_cannot_be_answered(self, tmp_path, phi_guard, monkeypatch):
        workspace = Workspace(tmp_path)
        monkeypatch.delenv(MANIFEST_KEY_VARIABLE)
        _workspace_run(workspace, phi_guard)
        events = [json.loads(line) for line in workspace.events.read_text().splitlines()]
        run_id = events[-1]["run"]["runId"]
        code, out, err = phi_guard(_impact(workspace, "--as-of", AS_OF))
        assert code == 1
        assert f"{run_id}: no-manifest" in err
        assert "Not answered" in out

    def test_exit_2_for_a_bad_date(self, tmp_path, phi_guard):
        workspace = Workspace(tmp_path)
        code, _out, _err = phi_guard(_impact(workspace, "--as-of", "2026-13-01"))
        assert code == 2

    def test_exit_1_for_an_event_log_that_does_not_exist(self, tmp_path, phi_guard):
        workspace = Workspace(tmp_path)
        workspace.write()
        code, _out, err = phi_guard(_impact(workspace))
        assert code == 1
        assert "events.jsonl" in err


def test_no_planted_value_leaves_through_impact(tmp_path, phi_guard):
    workspace = Workspace(tmp_path)
    _workspace_run(workspace, phi_guard)
    # subject 0001 revokes later
    workspace.consent.write_text(
        CONSENT.replace("2020-01-01,,,CANARY-REF-0001", "2020-01-01,,2026-12-05,CANARY-REF-0001"),
        encoding="utf-8",
    )
    code, out, err = phi_guard(_impact(workspace, "--as-of", "2026-12-06", "--format", "json"))
    assert code == 0, err
    (run,) = json.loads(out)["runs"]
    assert run["excluded"] == {"revoked": 1}
    code, text, text_err = phi_guard(_impact(workspace, "--as-of", "2026-12-06"))
    for canary in canaries(source_rows()):
        for printed in (out, err, text, text_err):
            assert canary not in printed
