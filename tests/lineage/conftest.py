"""Fixtures of the lineage tests: a policy, and governance reports built by hand as the engine writes them."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from airflow_phi_guard.lineage.emit import new_run_id
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.policy.loader import parse_policy
from airflow_phi_guard.policy.models import Policy, Treatment
from airflow_phi_guard.report import (
    ColumnDecision,
    Finding,
    GovernanceReport,
    PolicyIdentity,
    RowCounts,
    Verdict,
)
from tests.cli_fixtures import edited
from tests.conftest import DEMO_POLICY, REPO, SYNTHEA

POLICY_TEXT = """\
name: readmission-risk
version: 1
purpose: model-training
model: {name: readmission-risk, version: "1"}
recipient: internal-ml-platform
subject: PATIENT
undeclared: drop
consent:
  bases: [research-authorization, irb-waiver]
deidentification:
  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD (biostatistics)"
    determined: 2000-01-01
    report: ED-TEST-1
    expires: 2099-01-01
  zip3_vintage: census-2020
columns:
  PATIENT:   {treatment: pseudonymize, justification: "groups encounters per patient"}
  BIRTHDATE: {treatment: age, as: AGE, justification: "predictor"}
  ZIP:       {treatment: zip3, justification: "region"}
  START:     {treatment: year, as: START_YEAR, justification: "season of the encounter"}
  GENDER:    {treatment: keep, justification: "predictor"}
  SSN:       {treatment: drop, justification: "not needed"}
  FIRST:     {treatment: drop, justification: "not needed"}
"""

SOURCE = "/data/extract/encounters.parquet"
GOVERNED = "/data/governed/readmission.parquet"
REGISTRY = "/data/consent/registry.csv"

#: What the engine decides for each column of the source under POLICY_TEXT; DRIVERS is undeclared and
#: dropped under `undeclared: drop`. The letters are those of REGULATORY.md's table.
COLUMNS = [
    ColumnDecision(
        source="PATIENT",
        output="PATIENT",
        identifier=SafeHarborIdentifier.OTHER_UNIQUE_IDENTIFIER,
        treatment=Treatment.PSEUDONYMIZE,
    ),
    ColumnDecision(
        source="BIRTHDATE", output="AGE", identifier=SafeHarborIdentifier.DATES, treatment=Treatment.AGE
    ),
    ColumnDecision(
        source="ZIP",
        output="ZIP",
        identifier=SafeHarborIdentifier.GEOGRAPHIC_SUBDIVISION,
        treatment=Treatment.ZIP3,
    ),
    ColumnDecision(
        source="START", output="START_YEAR", identifier=SafeHarborIdentifier.DATES, treatment=Treatment.YEAR
    ),
    ColumnDecision(source="GENDER", output="GENDER", identifier=None, treatment=Treatment.KEEP),
    ColumnDecision(
        source="SSN",
        output=None,
        identifier=SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER,
        treatment=Treatment.DROP,
    ),
    ColumnDecision(
        source="FIRST", output=None, identifier=SafeHarborIdentifier.NAMES, treatment=Treatment.DROP
    ),
    ColumnDecision(
        source="DRIVERS",
        output=None,
        identifier=SafeHarborIdentifier.CERTIFICATE_OR_LICENSE_NUMBER,
        treatment=Treatment.DROP,
        declared=False,
    ),
]


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY_TEXT, "readmission_risk.yaml")


def make_report(
    policy: Policy,
    *,
    verdict: Verdict = Verdict.PUBLISHED,
    source: str = SOURCE,
    governed: str | None = GOVERNED,
    registry: str | None = REGISTRY,
    admitted: int = 7,
    columns: list[ColumnDecision] | None = None,
    findings: list[Finding] | None = None,
    refusals: list[str] | None = None,
) -> GovernanceReport:
    """A governance report as the engine writes it for ``policy``; refused reports name no output."""
    published = verdict is Verdict.PUBLISHED
    return GovernanceReport(
        verdict=verdict,
        policy=PolicyIdentity(name=policy.name, version=policy.version, digest=policy.digest),
        purpose=policy.purpose,
        model={"name": policy.model.name, "version": policy.model.version},
        recipient=policy.recipient,
        input=source,
        output=governed if published else None,
        method=policy.deidentification.method,
        zip3_vintage=policy.deidentification.zip3_vintage.value,
        as_of=date(2024, 6, 30),
        consent_registry=registry,
        consent_bases=[basis.value for basis in policy.consent.bases],
        pseudonym_key_fingerprint="0123456789abcdef",
        rows=RowCounts(read=10, admitted=admitted, excluded={"no-record": 2, "opted-out": 10 - admitted - 2}),
        columns=list(COLUMNS if columns is None else columns),
        findings=list(findings or []),
        refusals=list(refusals or ([] if published else ["column NOTE: 3 value(s) contain identifier G"])),
    )


#: When the hand-written events of the audit tests happen.
T0 = datetime(2024, 7, 1, 9, 0, tzinfo=UTC)
#: The model file a training task writes, in the hand-written Airflow events.
MODEL_FILE = "/data/models/readmission-risk.pkl"


def airflow_task_event(
    event_type="COMPLETE", *, at=T0 + timedelta(hours=1), inputs=None, run_id=None
) -> dict:
    """A task event as the Airflow OpenLineage provider writes it, with facets the audit does not know."""
    return {
        "eventType": event_type,
        "eventTime": at.isoformat(),
        "producer": "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {
            "runId": run_id or new_run_id(),
            "facets": {
                "airflow": {"_producer": "x", "_schemaURL": "y", "dag": {"dag_id": "d"}, "task": [1, 2]},
                "processing_engine": {"name": "Airflow", "version": "3.3.2"},
            },
        },
        "job": {"namespace": "default", "name": "phi_guard_readmission_training.train"},
        "inputs": [{"namespace": "file", "name": GOVERNED, "facets": {}}] if inputs is None else inputs,
        "outputs": [{"namespace": "file", "name": MODEL_FILE}],
    }


def append_events(path, *events) -> None:
    with path.open("a", encoding="utf-8") as stream:
        for event in events:
            stream.write(json.dumps(event) + "\n")


# The demo: real events written by `phi-guard apply --events` with the demo's policy on the demo's extract,
# and a second model whose policy is the demo's with ZIP dropped. Expected answers are read from the
# policy files, never from the audit.

DEMO_AS_OF = "2026-12-01"
LITE_MODEL = ("readmission-risk-lite", "2")
#: When the demo's training run read the governed set (after both governance runs, which run now).
TRAINING_TIME = "2030-01-01T00:00:00+00:00"


@dataclass(frozen=True)
class DemoLineage:
    """The event log and what produced it."""

    events: Path
    extract: Path
    governed: Path
    lite_governed: Path
    report: dict
    training_run: str
    validation_run: str


def _lite_policy_text() -> str:
    """The demo policy for another model, with ZIP dropped instead of reduced to ZIP3."""
    text = DEMO_POLICY.read_text(encoding="utf-8")
    text = edited(text, "name: readmission-risk\n", f"name: {LITE_MODEL[0]}\n")
    text = edited(
        text,
        'model: {name: readmission-risk, version: "1"}',
        f'model: {{name: {LITE_MODEL[0]}, version: "{LITE_MODEL[1]}"}}',
    )
    (zip_line,) = [line for line in text.splitlines() if line.startswith("  ZIP:")]
    text = edited(text, "quasi_identifiers: [AGE, GENDER, ZIP3]", "quasi_identifiers: [AGE, GENDER]")
    return edited(text, zip_line, '  ZIP: {treatment: drop, justification: "Not needed by the lite model."}')


def _load_dag_module(name: str):
    specification = importlib.util.spec_from_file_location(name, REPO / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def demo_lineage(tmp_path_factory) -> DemoLineage:
    """Two `phi-guard apply --events` runs on the demo extract (the demo policy, then the lite one), a
    validation that only reads the first set, and a training run (as Airflow's provider writes it) that
    reads it and writes the model."""
    from airflow_phi_guard.cli import main

    root = tmp_path_factory.mktemp("demo-lineage")
    extract = _load_dag_module("demo_extract").write_encounter_extract(SYNTHEA, root / "extract.parquet")
    registry = root / "consent.csv"
    _load_dag_module("demo_consent").write_demo_consent_registry(SYNTHEA / "patients.csv", registry)
    lite_policy = root / "readmission_risk_lite.yaml"
    lite_policy.write_text(_lite_policy_text(), encoding="utf-8")
    events = root / "events.jsonl"
    governed, lite_governed = root / "governed" / "readmission_risk.parquet", root / "lite" / "lite.parquet"

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_GUARD_PSEUDONYM_KEY", "audit-test-key-not-a-secret-0123456789")
        patch.delenv("PHI_GUARD_MANIFEST_KEY", raising=False)
        patch.delenv("OPENLINEAGE_DISABLED", raising=False)
        for policy_path, output, report in (
            (DEMO_POLICY, governed, "report.json"),
            (lite_policy, lite_governed, "lite.json"),
        ):
            arguments = [
                "apply",
                "--policy",
                str(policy_path),
                "--input",
                str(extract),
                "--output",
                str(output),
            ]
            arguments += ["--consent", str(registry), "--as-of", DEMO_AS_OF, "--events", str(events)]
            arguments += ["--surrogate-mapping", str(root / "private" / "surrogate-mapping.parquet")]
            assert main([*arguments, "--report", str(root / report)]) == 0

    governed_dataset = [{"namespace": "file", "name": str(governed.resolve()), "facets": {}}]
    validation = airflow_task_event(at=datetime.fromisoformat(TRAINING_TIME), inputs=governed_dataset)
    validation["outputs"] = []
    training = airflow_task_event(at=datetime.fromisoformat(TRAINING_TIME), inputs=governed_dataset)
    append_events(events, validation, training)
    return DemoLineage(
        events=events,
        extract=extract.resolve(),
        governed=governed.resolve(),
        lite_governed=lite_governed.resolve(),
        report=json.loads((root / "report.json").read_text(encoding="utf-8")),
        training_run=training["run"]["runId"],
        validation_run=validation["run"]["runId"],
    )


def demo_policy_columns(path: Path = DEMO_POLICY) -> tuple[set[tuple[str, str, str]], set[str]]:
    """What a policy file says reaches its model: (column, treatment, output column), and what it drops."""
    columns = yaml.safe_load(path.read_text(encoding="utf-8"))["columns"]
    kept = {
        (name, entry["treatment"], entry.get("as", name))
        for name, entry in columns.items()
        if entry["treatment"] != "drop"
    }
    return kept, {name for name, entry in columns.items() if entry["treatment"] == "drop"}
