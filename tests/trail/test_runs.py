"""Governance runs in the trail: each run recorded once its report is final, its head in the run's lineage,
and ``phi-guard trail verify`` checking chain and lineage against each other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_phi_guard.cli import EXIT_PUBLISHED, EXIT_REFUSED, main
from airflow_phi_guard.trail.fingerprint import dataset_fingerprint
from tests.cli_fixtures import PSEUDONYM_KEY, ROWS_AT_AS_OF, Workspace, canaries, source_rows
from tests.lineage.openlineage_validation import validate_event


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.delenv("OPENLINEAGE_DISABLED", raising=False)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def _trail(workspace: Workspace) -> Path:
    return workspace.root / "records" / "audit-trail.jsonl"


def _records(workspace: Workspace) -> list[dict]:
    return [json.loads(line) for line in _trail(workspace).read_text(encoding="utf-8").splitlines()]


def _events(workspace: Workspace) -> list[dict]:
    return [json.loads(line) for line in workspace.events.read_text(encoding="utf-8").splitlines() if line]


def _apply(workspace: Workspace, source: Path, **options: str) -> int:
    return main(workspace.apply_arguments(source, trail=str(_trail(workspace)), **options))


def test_published_and_refused_runs_are_recorded_with_their_heads_in_lineage(workspace, capsys):
    source = workspace.write()
    assert _apply(workspace, source) == EXIT_PUBLISHED
    output_fingerprint = dataset_fingerprint(workspace.output)
    # a refused run (which withdraws the earlier set): no consent registry given, so nothing can be admitted
    assert main(
        [*workspace.apply_arguments(source, without=("--consent",)), "--trail", str(_trail(workspace))]
    )
    records = _records(workspace)

    assert [(record["sequence"], record["kind"], record["verdict"]) for record in records] == [
        (1, "governance-run", "published"),
        (2, "governance-run", "refused"),
    ]
    published, refused = records
    assert published["input_fingerprint"] == dataset_fingerprint(source)
    assert published["output_fingerprint"] == output_fingerprint is not None
    assert refused["output_fingerprint"] is None
    assert published["counts"]["rows_read"] == ROWS_AT_AS_OF["read"]
    assert published["counts"]["rows_admitted"] == ROWS_AT_AS_OF["admitted"]
    assert published["policy_digest"].startswith("sha256:")

    finals = [event for event in _events(workspace) if event["eventType"] in ("COMPLETE", "FAIL")]
    heads = [event["run"]["facets"]["phiGuard_trail"] for event in finals]
    assert [(head["sequence"], head["digest"]) for head in heads] == [
        (record["sequence"], record["digest"]) for record in records
    ]
    for event in finals:
        validate_event(event)


def test_trail_and_records_carry_no_value(workspace, capsys):
    source = workspace.write()
    _apply(workspace, source)
    main(["trail", "verify", "--trail", str(_trail(workspace)), "--events", str(workspace.events)])
    printed = capsys.readouterr()

    text = _trail(workspace).read_text(encoding="utf-8") + printed.out + printed.err
    leaked = {value for value in canaries(source_rows()) if value in text}
    assert leaked == set()


def test_verify_with_events_catches_a_cut_tail(workspace, capsys):
    source = workspace.write()
    for _ in range(3):
        assert _apply(workspace, source) == EXIT_PUBLISHED
    lines = _trail(workspace).read_text(encoding="utf-8").splitlines()
    _trail(workspace).write_text("\n".join(lines[:2]) + "\n", encoding="utf-8")
    capsys.readouterr()

    assert main(["trail", "verify", "--trail", str(_trail(workspace))]) == EXIT_PUBLISHED
    assert "intact" in capsys.readouterr().out

    code = main(["trail", "verify", "--trail", str(_trail(workspace)), "--events", str(workspace.events)])
    out = capsys.readouterr().out
    assert code == EXIT_REFUSED
    assert "record 3 (sequence 3): head-missing" in out


def test_verify_exits_3_and_names_an_edited_record(workspace, capsys):
    source = workspace.write()
    for _ in range(3):
        _apply(workspace, source)
    lines = _trail(workspace).read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace('"verdict":"published"', '"verdict":"refused"')
    _trail(workspace).write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()

    code = main(["trail", "verify", "--trail", str(_trail(workspace)), "--format", "json"])
    verification = json.loads(capsys.readouterr().out)

    assert code == EXIT_REFUSED
    assert [(problem["kind"], problem["record"]) for problem in verification["problems"]] == [("edited", 2)]


def test_a_run_whose_record_cannot_be_written_is_withdrawn(workspace, capsys):
    source = workspace.write()
    # a directory where the trail file should be: the append fails
    _trail(workspace).mkdir(parents=True)

    code = _apply(workspace, source)

    assert code != EXIT_PUBLISHED
    assert not workspace.output.exists()
