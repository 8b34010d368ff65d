"""Tests of the demo's consent registry generator: coverage of every basis and reason, and determinism."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from airflow_phi_guard.consent.admission import ConsentAdmission, ExclusionReason, record_exclusion
from airflow_phi_guard.consent.registry import ConsentRegistry, registry_from_table
from airflow_phi_guard.consent.sources import read_consent_registry
from airflow_phi_guard.policy.models import ConsentBasis

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "dags" / "demo_consent.py"
PATIENTS = REPO / "data" / "synthea-nebraska" / "patients.csv"

# The demo policy and date, as issue 2 and the brief state them.
AS_OF = date(2026, 12, 1)
BASES = (ConsentBasis.RESEARCH_AUTHORIZATION, ConsentBasis.IRB_WAIVER)
PURPOSE = "model-training"

# Every reason a registry can cause; no-subject-id comes from the dataset, not the registry.
REGISTRY_REASONS = [reason for reason in ExclusionReason if reason is not ExclusionReason.NO_SUBJECT_ID]


def load_generator() -> ModuleType:
    specification = importlib.util.spec_from_file_location("demo_consent", GENERATOR)
    assert specification is not None
    assert specification.loader is not None
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load_generator()


@pytest.fixture(scope="module")
def patient_ids() -> pa.Array:
    table = pa_csv.read_csv(PATIENTS, convert_options=pa_csv.ConvertOptions(column_types={"Id": pa.string()}))
    return table.column("Id").combine_chunks()


@pytest.fixture(scope="module")
def demo_registry(generator: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> ConsentRegistry:
    path = tmp_path_factory.mktemp("consent") / "consent.csv"
    generator.write_demo_consent_registry(PATIENTS, path, AS_OF)
    return read_consent_registry(path)


def test_demo_constants_are_the_issue_ones(generator: ModuleType) -> None:
    assert generator.DEMO_AS_OF == AS_OF
    assert tuple(generator.DEMO_BASES) == BASES
    assert generator.DEMO_PURPOSE == PURPOSE


def test_synthea_has_the_expected_patients(patient_ids: pa.Array) -> None:
    assert len(patient_ids) == 111
    assert len(set(patient_ids.to_pylist())) == 111


def test_every_basis_occurs(demo_registry: ConsentRegistry) -> None:
    bases = Counter(record.basis for record in demo_registry.records)
    assert set(bases) == set(ConsentBasis)


def test_every_registry_reason_occurs_and_about_70_percent_are_admitted(
    demo_registry: ConsentRegistry, patient_ids: pa.Array
) -> None:
    mask, counts = ConsentAdmission(demo_registry, BASES, PURPOSE, AS_OF).admit(patient_ids)

    for reason in REGISTRY_REASONS:
        assert counts.get(reason, 0) >= 1, reason
    assert ExclusionReason.NO_SUBJECT_ID not in counts
    assert 0.65 <= mask.true_count / len(patient_ids) <= 0.75
    assert mask.true_count + sum(counts.values()) == len(patient_ids)


def test_every_admitted_patient_has_a_research_authorization_or_waiver_for_training(
    demo_registry: ConsentRegistry, patient_ids: pa.Array
) -> None:
    admission = ConsentAdmission(demo_registry, BASES, PURPOSE, AS_OF)
    for patient in patient_ids.to_pylist():
        if admission.decision_for(patient) is None:
            records = demo_registry.records_for(patient)
            assert any(record.basis in BASES and PURPOSE in record.purposes for record in records)


def test_the_scenarios_the_issue_asks_for_occur(
    demo_registry: ConsentRegistry, patient_ids: pa.Array
) -> None:
    admission = ConsentAdmission(demo_registry, BASES, PURPOSE, AS_OF)
    seen: set[str] = set()
    for patient in patient_ids.to_pylist():
        records = demo_registry.records_for(patient)
        decision = admission.decision_for(patient)
        grants = [record for record in records if not record.is_opt_out]
        in_force = [record for record in grants if record_exclusion(record, BASES, PURPOSE, AS_OF) is None]
        if decision is ExclusionReason.OPTED_OUT and in_force:
            seen.add("opt-out beside a valid grant")
        if decision is None and any(r.revoked_at is not None and r.revoked_at <= AS_OF for r in grants):
            seen.add("revocation followed by a newer valid grant")
        if decision is ExclusionReason.BASIS_NOT_ACCEPTED and {r.basis for r in records} == {
            ConsentBasis.TREATMENT_CONSENT
        }:
            seen.add("treatment-consent only")
        if decision is ExclusionReason.PURPOSE_NOT_COVERED and any(
            r.basis is ConsentBasis.RESEARCH_AUTHORIZATION and PURPOSE not in r.purposes for r in records
        ):
            seen.add("research authorization without model-training")
    assert seen == {
        "opt-out beside a valid grant",
        "revocation followed by a newer valid grant",
        "treatment-consent only",
        "research authorization without model-training",
    }


def test_references_are_synthetic_document_ids(demo_registry: ConsentRegistry) -> None:
    references = [record.reference for record in demo_registry.records]
    assert all(reference is not None and re.fullmatch(r"[A-Z]+-\d{6}", reference) for reference in references)
    assert len(set(references)) == len(references)


def test_same_input_gives_byte_identical_files(generator: ModuleType, tmp_path: Path) -> None:
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    generator.write_demo_consent_registry(PATIENTS, first, AS_OF)
    generator.write_demo_consent_registry(PATIENTS, second, AS_OF)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes().startswith(
        b"subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference\n"
    )


def test_assignment_depends_on_the_ids_not_their_order(generator: ModuleType, patient_ids: pa.Array) -> None:
    ids = patient_ids.to_pylist()
    forward = generator.build_demo_consent_registry(ids, AS_OF).drop_columns(["reference"])
    backward = generator.build_demo_consent_registry(list(reversed(ids)), AS_OF).drop_columns(["reference"])
    key = [(name, "ascending") for name in ("subject_id", "basis", "granted_at")]
    assert forward.sort_by(key).equals(backward.sort_by(key))


def test_table_is_in_the_registry_format(generator: ModuleType, patient_ids: pa.Array) -> None:
    table = generator.build_demo_consent_registry(patient_ids.to_pylist(), AS_OF)
    assert table.schema.field("purposes").type == pa.list_(pa.string())
    registry = registry_from_table(table, "demo")
    assert len(registry) == table.num_rows


def test_a_small_cohort_still_covers_every_reason(generator: ModuleType) -> None:
    """With as many patients as scenarios, every scenario, and so every reason and basis, occurs."""
    ids = [f"synthetic-{number:03d}" for number in range(len(generator.SCENARIOS))]
    registry = registry_from_table(generator.build_demo_consent_registry(ids, AS_OF), "small")
    _, counts = ConsentAdmission(registry, BASES, PURPOSE, AS_OF).admit(pa.array(ids))
    assert set(counts) == set(REGISTRY_REASONS)
    assert {record.basis for record in registry.records} == set(ConsentBasis)


def test_imports_without_airflow() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('demo_consent', {str(GENERATOR)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "loaded = [name for name in sys.modules if name == 'airflow' or name.startswith('airflow.')]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_runs_as_a_script(tmp_path: Path) -> None:
    target = tmp_path / "out" / "consent.csv"
    subprocess.run([sys.executable, str(GENERATOR), str(PATIENTS), str(target), "2026-12-01"], check=True)
    assert len(read_consent_registry(target)) > 0
