"""The phiGuard_deidentification run facet of real engine runs: it carries the Safe Harbor verdict, the risk
with its k, the ZIP3 vintage, the date shift and the surrogate mapping; every event validates against the
official schemas and ours, and no cell value, subject id, code or key reaches it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.lineage.build import lineage_for_report
from airflow_phi_guard.lineage.facets import DEIDENTIFICATION_FACET
from tests.engine.test_deidentification import (
    EXPERT_DETERMINATION,
    SAFE_HARBOR,
    SHIFT_KEY,
    SUBJECTS,
    TestExpertDeterminationRun,
    TestSafeHarborRun,
    policy_text,
    run,
    source,
)
from tests.lineage.openlineage_validation import run_event, validate_event


def _event(result, state: str = "COMPLETE") -> dict:
    lineage = lineage_for_report(
        result.report, result.plan.policy, input_schema=result.plan.schema, output_schema=result.output_schema
    )
    event = run_event(lineage, state, "apply.deid-test")
    assert validate_event(event) == []
    return event


def _assert_value_free(event: dict, *secrets: str) -> None:
    text = json.dumps(event)
    for value in (*SUBJECTS, *secrets):
        assert value not in text


def test_a_safe_harbor_run_records_its_verdict_its_k_and_its_mapping(tmp_path: Path):
    result, output = TestSafeHarborRun()._run(tmp_path)
    event = _event(result)
    facet = event["run"]["facets"][DEIDENTIFICATION_FACET]

    assert facet["method"] == "safe-harbor"
    assert facet["safeHarbor"]["status"] == "met"
    assert facet["safeHarbor"]["attestation"]["by"] == "J. Doe, Privacy Officer"
    assert "not legal advice" in facet["safeHarbor"]["notice"]
    assert facet["surrogateMapping"]["namespaces"] == [
        {"namespace": "patient", "knownCodes": 0, "newCodes": 12}
    ]
    assert facet["surrogateMapping"]["committed"] is True
    codes = pq.read_table(output)["PATIENT_KEY"].to_pylist()
    _assert_value_free(event, *codes)


def test_the_risk_block_carries_k_classes_and_suppressed_rows(tmp_path: Path):
    table = source(tmp_path, GENDER=pa.array(["F"] * 6 + ["M"] * 4 + ["X"] * 2))
    columns = {
        "PATIENT": 'treatment: drop, justification: "x"',
        "GENDER": 'treatment: keep, justification: "x"',
    }
    text = policy_text(
        "  method: safe-harbor\n  quasi_identifiers: [GENDER]\n  k_min: 3\n  below_k: suppress", columns
    )
    result, _ = run(tmp_path, text, table)

    risk = _event(result)["run"]["facets"][DEIDENTIFICATION_FACET]["risk"]

    assert {
        key: risk[key] for key in ("k", "kMin", "classes", "classesBelowK", "suppressedRows", "rows")
    } == {
        "k": 4,
        "kMin": 3,
        "classes": 2,
        "classesBelowK": 1,
        "suppressedRows": 2,
        "rows": 10,
    }
    assert risk["quasiIdentifiers"] == ["GENDER"]


def test_an_expert_determination_run_records_the_determination_and_the_shift(tmp_path: Path):
    result, _ = TestExpertDeterminationRun()._run(tmp_path)
    event = _event(result)
    facet = event["run"]["facets"][DEIDENTIFICATION_FACET]

    assert facet["safeHarbor"]["status"] == "not-met"
    assert {(breach["column"], breach["identifier"]) for breach in facet["safeHarbor"]["breaches"]} >= {
        ("PATIENT", "R"),
        ("ADMITTED", "C"),
    }
    assert facet["expertDetermination"] == {
        "expert": "A. Expert, PhD",
        "determined": "2026-01-15",
        "report": "ED-2026-1",
        "expires": "2027-01-15",
    }
    assert facet["dateShift"]["windowDays"] == 30
    assert len(facet["dateShift"]["keyFingerprint"]) == 16
    _assert_value_free(event, SHIFT_KEY.decode())


@pytest.mark.parametrize("key", [None, b"canary-key-9f3e"])
def test_a_refused_run_records_the_method_and_no_verdict(tmp_path: Path, key):
    result, _ = TestExpertDeterminationRun()._run(tmp_path, date_shift_key=key)
    event = _event(result, "FAIL")
    facet = event["run"]["facets"][DEIDENTIFICATION_FACET]

    assert facet["method"] == "expert-determination"
    assert "safeHarbor" not in facet and "risk" not in facet
    assert "dateShift" not in facet  # no usable key, so no fingerprint to record
    _assert_value_free(event, "canary-key-9f3e")


def test_a_zip3_run_records_the_vintage_with_its_source_and_digest(tmp_path: Path):
    table = source(tmp_path, ZIP=pa.array(["68504"] * 12))
    columns = {"PATIENT": 'treatment: drop, justification: "x"', "ZIP": 'treatment: zip3, justification: "x"'}
    result, _ = run(tmp_path, policy_text(EXPERT_DETERMINATION, columns), table)

    zip3 = _event(result)["run"]["facets"][DEIDENTIFICATION_FACET]["zip3"]

    assert zip3["vintage"] == "census-2020"
    assert zip3["restrictedPrefixes"] == 18
    assert "HRSA" in zip3["source"] and len(zip3["sha256"]) == 64


def test_the_safe_harbor_attestation_is_optional_in_the_facet(tmp_path: Path):
    result, _ = TestSafeHarborRun()._run(tmp_path, deidentification=SAFE_HARBOR.splitlines()[0])
    facet = _event(result)["run"]["facets"][DEIDENTIFICATION_FACET]

    assert facet["safeHarbor"]["status"] == "awaiting-attestation"
    assert "attestation" not in facet["safeHarbor"]
