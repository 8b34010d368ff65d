"""The scale benchmark's data generator: deterministic per seed, identifiers and consent at stated rates."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pa_dataset
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import generate  # noqa: E402

ROWS = 6_000
# Several generation batches and buckets, so that patients cross batch boundaries.
SMALL = {"batch_rows": 1_700, "buckets": 3}

# The rates benchmarks/generate.py documents, written out here: the test holds the generator to them.
DRIVERS_RATE = 0.75
PASSPORT_RATE = 0.6
NO_RESEARCH_CONSENT_SHARE = 0.08
REVOKED_SHARE = 0.05
TREATMENT_ONLY_SHARE = 0.07
TEXT_RATE = 0.03
PLANTED_TEXT = re.compile(r"^(SSN 999-\d\d-\d{4}|call 402-4\d\d-\d{4}|write to p\d{7}@example\.org)$")


def _extract(folder: Path) -> pa.Table:
    return pa_dataset.dataset(folder / "extract", format="parquet").to_table()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> generate.GeneratedSet:
    return generate.generate(ROWS, seed=11, out=tmp_path_factory.mktemp("first"), **SMALL)


def test_same_seed_gives_the_same_digest_and_bytes(generated: generate.GeneratedSet, tmp_path: Path) -> None:
    again = generate.generate(ROWS, seed=11, out=tmp_path, **SMALL)

    assert again.manifest["digest"] == generated.manifest["digest"]
    first = sorted(path.relative_to(generated.folder) for path in generated.folder.rglob("*.parquet"))
    second = sorted(path.relative_to(again.folder) for path in again.folder.rglob("*.parquet"))
    assert first == second
    assert all((generated.folder / name).read_bytes() == (again.folder / name).read_bytes() for name in first)


def test_another_seed_gives_another_digest(generated: generate.GeneratedSet, tmp_path: Path) -> None:
    other = generate.generate(ROWS, seed=12, out=tmp_path, **SMALL)

    assert other.manifest["digest"] != generated.manifest["digest"]


def test_the_set_is_partitioned_into_many_files_with_the_demo_columns(
    generated: generate.GeneratedSet,
) -> None:
    files = sorted((generated.folder / "extract").rglob("*.parquet"))
    table = _extract(generated.folder)

    assert len(files) > SMALL["buckets"]
    assert {path.parent.name for path in files} == {
        f"bucket-{index:02d}" for index in range(SMALL["buckets"])
    }
    assert table.num_rows == ROWS
    # the demo policy declares every column of the demo's extract; the generated set has the same ones
    policy_columns = re.findall(
        r"^  ([A-Z_0-9]+):", (ROOT / "dags/policies/readmission_risk.yaml").read_text(), re.M
    )
    assert sorted(table.column_names) == sorted(policy_columns)
    assert pc.count_distinct(table["ENCOUNTER"]).as_py() == ROWS


def test_identifiers_are_planted_for_the_stated_share_of_patients(generated: generate.GeneratedSet) -> None:
    table = _extract(generated.folder)
    patients = pc.count_distinct(table["PATIENT"]).as_py()
    per_patient = table.group_by("PATIENT").aggregate(
        [
            ("SSN", "count_distinct"),
            ("DRIVERS", "count"),
            ("PASSPORT", "count"),
            ("DRIVERS", "count_distinct"),
        ]
    )

    assert table["PATIENT"].null_count == 0
    assert table["SSN"].null_count == 0
    # a patient's identifiers are the same on every one of their rows
    assert pc.max(per_patient["SSN_count_distinct"]).as_py() == 1
    assert pc.max(per_patient["DRIVERS_count_distinct"]).as_py() <= 1
    with_drivers = pc.sum(pc.greater(per_patient["DRIVERS_count"], 0)).as_py()
    with_passport = pc.sum(pc.greater(per_patient["PASSPORT_count"], 0)).as_py()
    assert with_drivers == math.floor(DRIVERS_RATE * patients)
    assert with_passport == math.floor(PASSPORT_RATE * patients)
    assert all(re.fullmatch(r"999-\d\d-\d{4}", ssn) for ssn in pc.unique(table["SSN"]).to_pylist())


def test_the_consent_registry_has_one_record_per_patient_at_the_stated_shares(
    generated: generate.GeneratedSet,
) -> None:
    table = _extract(generated.folder)
    registry = pq.read_table(generated.folder / "consent.parquet")
    patients = pc.count_distinct(table["PATIENT"]).as_py()
    rows = registry.to_pylist()

    assert registry.num_rows == patients
    assert set(registry["subject_id"].to_pylist()) == set(table["PATIENT"].to_pylist())
    no_research = [
        row
        for row in rows
        if row["basis"] == "research-authorization" and "model-training" not in row["purposes"]
    ]
    revoked = [row for row in rows if row["revoked_at"] is not None]
    treatment_only = [row for row in rows if row["basis"] == "treatment-consent"]
    assert len(no_research) == math.floor(NO_RESEARCH_CONSENT_SHARE * patients)
    assert len(revoked) == math.floor(REVOKED_SHARE * patients)
    assert all(row["revoked_at"] < generate.AS_OF for row in revoked)
    assert len(treatment_only) == math.floor(TREATMENT_ONLY_SHARE * patients)
    assert all(row["granted_at"] < generate.AS_OF for row in rows)


def test_identifiers_in_free_text_at_the_stated_share_of_rows(tmp_path: Path) -> None:
    planted = generate.generate(ROWS, seed=11, out=tmp_path, text_identifier_rate=TEXT_RATE, **SMALL)
    clean = generate.generate(ROWS, seed=11, out=tmp_path, **SMALL)

    texts = _extract(planted.folder)["REASONDESCRIPTION"].to_pylist()
    untouched = _extract(clean.folder)["REASONDESCRIPTION"].to_pylist()
    assert sum(1 for text in texts if text and PLANTED_TEXT.match(text)) == math.floor(TEXT_RATE * ROWS)
    assert not any(text and PLANTED_TEXT.match(text) for text in untouched)
