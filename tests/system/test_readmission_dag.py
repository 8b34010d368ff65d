"""The main job end to end: `make demo`'s script runs the example DAG for real and the audit answers from
its lineage."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.lineage.openlineage_validation import validate_event
from tests.system.demo_runner import DemoRun, run_demo

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    run = run_demo(tmp_path_factory.mktemp("demo"))
    assert run.returncode == 0, run.console[-4000:]
    return run


def test_the_demo_leaves_every_promised_result(demo: DemoRun):
    for relative in (
        "governed/readmission_risk.parquet",
        "reports/readmission_risk.json",
        "data-docs/index.html",
        "lineage/events.jsonl",
        "audit.txt",
        "audit.json",
        "models/readmission-risk-1.joblib",
        "governed/readmission_risk_expert.parquet",
        "reports/readmission_risk_expert.json",
    ):
        assert (demo.output / relative).is_file(), relative
    assert "audit.txt" in demo.console and "data-docs/index.html" in demo.console


def test_the_governed_set_holds_only_the_allowlisted_treated_columns(demo: DemoRun):
    table = pq.read_table(demo.output / "governed" / "readmission_risk.parquet")
    report = json.loads((demo.output / "reports" / "readmission_risk.json").read_text())

    published = [column["output"] for column in report["columns"] if column["output"]]
    assert sorted(table.column_names) == sorted(published)
    for identifier_column in (
        "SSN",
        "FIRST",
        "LAST",
        "ADDRESS",
        "CITY",
        "LAT",
        "LON",
        "BIRTHDATE",
        "PATIENT",
    ):
        assert identifier_column not in table.column_names
    assert max(table["AGE"].to_pylist()) <= 90
    assert all(value is None or len(value) == 3 for value in table["ZIP3"].to_pylist())
    # two Synthea patients live in ZIP 69210: prefix 692 is restricted in every vintage
    assert "692" not in set(table["ZIP3"].to_pylist())


def test_every_exclusion_reason_is_seen_in_the_demo(demo: DemoRun):
    report = json.loads((demo.output / "reports" / "readmission_risk.json").read_text())
    assert set(report["rows"]["excluded"]) == {
        "no-subject-id",
        "no-record",
        "basis-not-accepted",
        "purpose-not-covered",
        "not-yet-valid",
        "expired",
        "revoked",
        "opted-out",
    }
    assert report["rows"]["read"] == 7584  # every Synthea encounter
    assert report["rows"]["admitted"] + sum(report["rows"]["excluded"].values()) == 7584


def test_the_audit_names_what_reached_the_model_and_what_stopped(demo: DemoRun):
    audit = json.loads((demo.output / "audit.json").read_text())

    assert audit["model"] == {"name": "readmission-risk", "version": "1"}
    reached = {entry["column"]: entry for entry in audit["reached"]}
    assert (reached["BIRTHDATE"]["treatment"], reached["BIRTHDATE"]["output_column"]) == ("age", "AGE")
    assert (reached["ZIP"]["treatment"], reached["ZIP"]["output_column"]) == ("zip3", "ZIP3")
    # a random surrogate code from the private mapping (164.514(c)), never a code derived from the id
    assert reached["PATIENT"]["treatment"] == "surrogate"
    assert reached["BIRTHDATE"]["identifier"] == "C" and reached["ZIP"]["identifier"] == "B"
    stopped = {entry["column"]: entry["identifier"] for entry in audit["stopped"]}
    for column, letter in {"SSN": "G", "FIRST": "A", "LAST": "A", "ADDRESS": "B", "DRIVERS": "K"}.items():
        assert stopped[column] == letter
    assert not set(reached) & set(stopped)

    report = json.loads((demo.output / "reports" / "readmission_risk.json").read_text())
    runs = audit["runs"]
    events = [json.loads(line) for line in demo.events.read_text().splitlines() if line.strip()]
    run_ids = {event["job"]["name"].rpartition(".")[2]: event["run"]["runId"] for event in events}
    # the governance run and the training run that read its output; the validation only read it
    # the training and the scoring task read the governed set and wrote from it (a model, scores)
    assert {run["run_id"] for run in runs} == {
        run_ids["govern_training_set"],
        run_ids["train_model"],
        run_ids["score_governed_set"],
    }
    assert report["policy"]["digest"] in {run["policy_digest"] for run in runs}
    assert report["rows"]["admitted"] in {run["rows_admitted"] for run in runs}
    assert {basis for run in runs for basis in run["consent_bases"]} == {
        "research-authorization",
        "irb-waiver",
    }
    text = (demo.output / "audit.txt").read_text()
    assert "BIRTHDATE" in text and "SSN" in text


def test_the_training_task_is_in_the_lineage_with_the_model_as_its_output(demo: DemoRun):
    events = [json.loads(line) for line in demo.events.read_text().splitlines() if line.strip()]
    training = [event for event in events if event["job"]["name"].endswith(".train_model")]
    assert training, "no event of the training task"
    complete = next(event for event in training if event["eventType"] == "COMPLETE")
    assert [output["name"] for output in complete["outputs"]] == [
        str(demo.output / "models" / "readmission-risk-1.joblib")
    ]
    assert [entry["name"] for entry in complete["inputs"]] == [
        str(demo.output / "governed" / "readmission_risk.parquet")
    ]


def test_every_event_the_demo_wrote_validates_against_the_openlineage_schemas(demo: DemoRun):
    lines = [line for line in demo.events.read_text().splitlines() if line.strip()]
    assert len(lines) >= 10  # START and an end event for the DAG and each of its five tasks
    for line in lines:
        validate_event(json.loads(line))


def test_the_demo_output_is_reported_safe_harbor_de_identified_with_its_k(demo: DemoRun):
    report = json.loads((demo.output / "reports" / "readmission_risk.json").read_text())

    assert report["method"] == "safe-harbor"
    # the policy's attestation is a sample the README tells users to replace; with it the verdict is met
    assert report["safe_harbor"]["status"] == "met" and report["safe_harbor"]["breaches"] == []
    risk = report["risk"]
    assert risk["quasi_identifiers"] == ["AGE", "GENDER", "ZIP3"]
    assert risk["k"] >= risk["k_min"] == 5
    table = pq.read_table(demo.output / "governed" / "readmission_risk.parquet")
    assert table.num_rows == report["rows"]["admitted"] - report["rows"]["suppressed"]
    assert report["rows"]["suppressed"] == risk["suppressed_rows"]
    assert "Safe Harbor met" in demo.console and f"k {risk['k']} over AGE, GENDER, ZIP3" in demo.console
    # the codes come from the private mapping, which is not in the published output folder
    mapping = demo.airflow_home / "surrogate-mapping.parquet"
    assert set(table["PATIENT_KEY"].to_pylist()) <= set(pq.read_table(mapping)["code"].to_pylist())
    assert not list(demo.output.rglob("surrogate-mapping.parquet"))


def test_the_second_policy_is_labelled_expert_determination_not_safe_harbor(demo: DemoRun):
    report = json.loads((demo.output / "reports" / "readmission_risk_expert.json").read_text())

    assert report["method"] == "expert-determination"
    assert report["expert_determination"]["report"]
    assert report["safe_harbor"]["status"] == "not-met"
    breaches = {(breach["column"], breach["identifier"]) for breach in report["safe_harbor"]["breaches"]}
    assert breaches == {("START", "C"), ("PATIENT", "R")}  # shifted dates and keyed pseudonyms
    assert report["date_shift"]["window_days"] == 30 and report["pseudonym_key_fingerprint"]
    table = pq.read_table(demo.output / "governed" / "readmission_risk_expert.parquet")
    assert str(table.schema.field("ENCOUNTER_DATE").type) == "date32[day]"


def test_both_runs_write_their_subject_manifest_for_revocation_impact(demo: DemoRun):
    for name in ("readmission_risk", "readmission_risk_expert"):
        report = json.loads((demo.output / "reports" / f"{name}.json").read_text())
        assert report["manifest"] is not None, name
        assert report["manifest"]["subjects"] > 0


def test_impact_answers_for_the_demo_runs_with_the_key_the_readme_names(demo: DemoRun):
    """The README's "Revocation impact" command, on the demo's own events, registry and manifest key."""
    import os
    import subprocess

    from tests.conftest import REPO

    key = (demo.airflow_home / "manifest.key").read_text().strip()
    completed = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "phi-guard"),
            "impact",
            "--events",
            str(demo.events),
            "--consent",
            str(demo.output / "raw" / "consent_registry.csv"),
            "--as-of",
            "2026-12-01",
            "--format",
            "json",
        ],
        env={**os.environ, "PHI_GUARD_MANIFEST_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    answer = json.loads(completed.stdout)
    assert len(answer["runs"]) == 2  # the Safe Harbor set and the expert determination set
    assert key not in completed.stdout + completed.stderr


def test_the_expert_set_goes_to_the_vendor_with_a_baa_and_not_to_the_one_without(demo: DemoRun):
    """Issue 8: the demo shows a refused export to a vendor without a BAA and an allowed one with it."""
    outbox = demo.output / "outbox"
    exported = outbox / "northwind-labelling-inbound" / "readmission" / "readmission_risk_expert.parquet"

    assert exported.is_file()
    assert not (outbox / "acme-models-inbound").exists()
    # the gate CLI's answers in the demo's console: the vendor, the agreement and the rule
    assert "recipient acme-model-api has no business associate agreement (agreement: none)" in demo.console
    assert "allowed: policy readmission-risk-expert (phi)" in demo.console
    assert "recipient northwind-labelling, agreement BAA-2026-014" in demo.console
