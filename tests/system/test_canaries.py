"""Leak nothing: canary values planted in every PHI column of the source must appear in no log, exception,
XCom value, lineage event, report, Data Docs page, audit answer or model, published run or refused."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import SYNTHEA
from tests.system.demo_runner import DemoRun, run_demo

pytestmark = pytest.mark.system

CANARY = "CANARY"
PLANTED_SSN = "123-45-6789"

#: Patient columns that hold identifiers, each given a unique canary per patient.
PATIENT_IDENTIFIER_COLUMNS = (
    "PREFIX",
    "FIRST",
    "LAST",
    "SUFFIX",
    "MAIDEN",
    "SSN",
    "DRIVERS",
    "PASSPORT",
    "BIRTHPLACE",
    "ADDRESS",
    "CITY",
    "COUNTY",
)


def _rewrite(path: Path, change) -> None:
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        fields, rows = reader.fieldnames, [change(row) for row in reader]
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _plant(folder: Path, description: str) -> Path:
    """Copy the Synthea export with canaries in every identifier column and in the kept free text."""
    shutil.copytree(SYNTHEA, folder)
    patient_ids: dict[str, str] = {}
    encounter_ids: dict[str, str] = {}

    def patient(row: dict[str, str]) -> dict[str, str]:
        number = len(patient_ids)
        patient_ids[row["Id"]] = row["Id"] = f"{CANARY}-PATIENT-{number:04d}"
        for column in PATIENT_IDENTIFIER_COLUMNS:
            row[column] = f"{CANARY}{column}{number:04d}"
        return row

    def encounter(row: dict[str, str]) -> dict[str, str]:
        encounter_ids[row["Id"]] = row["Id"] = f"{CANARY}-ENCOUNTER-{len(encounter_ids):05d}"
        row["PATIENT"] = patient_ids[row["PATIENT"]]
        row["DESCRIPTION"] = description
        return row

    def condition(row: dict[str, str]) -> dict[str, str]:
        row["PATIENT"] = patient_ids[row["PATIENT"]]
        row["ENCOUNTER"] = encounter_ids[row["ENCOUNTER"]]
        return row

    _rewrite(folder / "patients.csv", patient)
    _rewrite(folder / "encounters.csv", encounter)
    _rewrite(folder / "conditions.csv", condition)
    return folder


#: The private surrogate mapping holds each patient id beside its code: like the raw extract it is PHI by
#: design (the means of re-identification, 164.514(c)(2)), kept apart from the published output.
SURROGATE_MAPPING = "surrogate-mapping.parquet"


def _files_outside_the_data(run: DemoRun) -> list[Path]:
    """Every file the run wrote except the raw PHI inputs, the private surrogate mapping and the governed
    set itself."""
    files = [
        path for path in run.airflow_home.rglob("*") if path.is_file() and path.name != SURROGATE_MAPPING
    ]
    for path in run.output.rglob("*"):
        if path.is_file() and "raw" not in path.relative_to(run.output).parts and path.suffix != ".parquet":
            files.append(path)
    return files


def _assert_absent(run: DemoRun, needles: tuple[str, ...]) -> None:
    assert _files_outside_the_data(run), "the run wrote nothing to search"
    for needle in needles:
        assert needle not in run.console, f"{needle!r} in the console output"
        for path in _files_outside_the_data(run):
            assert needle.encode() not in path.read_bytes(), f"{needle!r} in {path}"


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    workdir = tmp_path_factory.mktemp("canary-published")
    run = run_demo(workdir, synthea=_plant(workdir / "synthea", f"Routine visit {CANARY}TEXT"))
    assert run.returncode == 0, run.console[-4000:]
    return run


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    workdir = tmp_path_factory.mktemp("canary-refused")
    return run_demo(workdir, synthea=_plant(workdir / "synthea", f"{CANARY}NOTE ssn {PLANTED_SSN} on file"))


def test_a_published_run_leaks_no_canary(published: DemoRun):
    _assert_absent(published, (CANARY,))


def test_the_governed_set_holds_canaries_only_in_the_kept_free_text(published: DemoRun):
    table = pq.read_table(published.output / "governed" / "readmission_risk.parquet")
    for name in table.column_names:
        values = [str(value) for value in table[name].to_pylist()]
        if name == "DESCRIPTION":  # kept, and the planted text holds no identifier: it may stay
            assert all(f"{CANARY}TEXT" in value for value in values)
        else:
            assert not any(CANARY in value for value in values), name


def test_a_refused_run_fails_publishes_nothing_and_leaks_no_canary(refused: DemoRun):
    assert refused.returncode != 0
    assert not (refused.output / "governed" / "readmission_risk.parquet").exists()
    report = json.loads((refused.output / "reports" / "readmission_risk.json").read_text())
    assert report["verdict"] == "refused"
    assert any("DESCRIPTION" in reason and "G" in reason for reason in report["refusals"])
    _assert_absent(refused, (CANARY, PLANTED_SSN))


def test_the_refused_run_still_emits_its_fail_event_with_the_decision(refused: DemoRun):
    events = [json.loads(line) for line in refused.events.read_text().splitlines() if line.strip()]
    failed = [
        event
        for event in events
        if event["eventType"] == "FAIL" and event["job"]["name"].endswith(".govern_training_set")
    ]
    assert failed
    assert "phiGuard_policy" in failed[0]["run"]["facets"]


def test_the_surrogate_mapping_holds_patient_ids_and_codes_only(published: DemoRun):
    """The mapping is private, yet it keeps nothing but what it must: the patient ids and their codes."""
    mapping = pq.read_table(published.airflow_home / SURROGATE_MAPPING)

    assert mapping.column_names == ["namespace", "identifier", "code"]
    assert set(mapping["namespace"].to_pylist()) == {"patient"}
    assert all(
        identifier.startswith(f"{CANARY}-PATIENT-") for identifier in mapping["identifier"].to_pylist()
    )
    governed = pq.read_table(published.output / "governed" / "readmission_risk.parquet")
    assert not any(CANARY in code for code in governed["PATIENT_KEY"].to_pylist())
