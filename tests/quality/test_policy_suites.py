"""Suites generated from policies: the committed ones match their policies, drift is caught, and a suite file
is loaded whole or refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.cli import main
from airflow_phi_guard.policy.loader import load_policy, parse_policy
from airflow_phi_guard.quality.policy_suites import (
    drifted_suites,
    load_suite,
    policy_suite_document,
    suite_path,
    write_policy_suites,
)
from airflow_phi_guard.quality.suite import build_expectation_suite, expectations_for_columns
from airflow_phi_guard.quality.validate import validate_governed_dataset
from tests.conftest import MINIMAL_POLICY
from tests.quality.conftest import governed_table, make_report

REPO = Path(__file__).resolve().parents[2]
POLICIES = sorted((REPO / "dags" / "policies").glob("*.yaml"))


def test_the_committed_suites_match_their_policies():
    # The drift test of the issue: a policy changed without 'phi-guard expectations generate' fails here.
    assert POLICIES
    policies = [load_policy(path) for path in POLICIES]

    assert drifted_suites(policies, REPO / "expectations") == []


def test_a_changed_policy_is_drift(tmp_path):
    policy = parse_policy(MINIMAL_POLICY)
    write_policy_suites([policy], tmp_path)
    widened = parse_policy(
        MINIMAL_POLICY.replace("SSN:       {treatment: drop", "SSN:       {treatment: keep")
    )

    (drift,) = drifted_suites([widened], tmp_path)

    assert drift.startswith("readmission-risk: ")
    assert "differs from the suite the policy implies" in drift


def test_a_missing_suite_is_drift(tmp_path):
    (drift,) = drifted_suites([parse_policy(MINIMAL_POLICY)], tmp_path)

    assert "no suite at" in drift


def test_the_generated_suite_pins_the_policy_and_restates_its_rules():
    policy = parse_policy(MINIMAL_POLICY)

    document = json.loads(policy_suite_document(policy))

    assert document["name"] == "readmission-risk-v1"
    assert document["meta"]["phi_guard"]["policy_digest"] == policy.digest
    types = [(item["type"], item["kwargs"].get("column")) for item in document["expectations"]]
    assert types == [
        ("expect_table_columns_to_match_allowlist", None),
        ("expect_column_values_to_not_be_null", "PATIENT"),
        ("expect_column_values_to_match_regex", "PATIENT"),
        ("expect_column_ages_to_be_capped", "AGE"),
        ("expect_column_values_to_be_valid_zip3", "ZIP"),
    ]
    assert document["expectations"][0]["kwargs"]["allowlist"] == ["PATIENT", "AGE", "ZIP"]
    assert "id" not in document  # no random ids: the file changes only with the policy


def test_the_cli_writes_and_checks_the_suites(tmp_path, capsys):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(MINIMAL_POLICY)
    out = tmp_path / "expectations"

    assert main(["expectations", "generate", "--policy", str(policy_file), "--output-dir", str(out)]) == 0
    assert (out / "readmission-risk.json").is_file()
    assert (
        main(["expectations", "generate", "--policy", str(policy_file), "--output-dir", str(out), "--check"])
        == 0
    )

    policy_file.write_text(MINIMAL_POLICY.replace("version: 1", "version: 2"))
    assert (
        main(["expectations", "generate", "--policy", str(policy_file), "--output-dir", str(out), "--check"])
        == 1
    )
    assert "drifted:" in capsys.readouterr().err


def test_a_suite_naming_an_unknown_expectation_is_refused(tmp_path):
    document = json.loads(policy_suite_document(parse_policy(MINIMAL_POLICY)))
    document["expectations"].append(
        {"type": "expect_column_values_to_be_wishful", "kwargs": {"column": "AGE"}}
    )
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(document))

    with pytest.raises(ValueError, match="built 5 of the 6 expectations") as refused:
        load_suite(path)

    assert "built 5 of the 6 expectations" in str(refused.value)
    assert "not built: expect_column_values_to_be_wishful" in str(refused.value)


def test_a_committed_suite_loads_whole_in_a_fresh_interpreter():
    # Nothing imported the product's expectations before: load_suite must, or GX drops them all.
    path = suite_path(REPO / "expectations", load_policy(POLICIES[0]))
    listed = len(json.loads(path.read_text())["expectations"])
    code = (
        "from airflow_phi_guard.quality.policy_suites import load_suite; "
        f"print(len(load_suite({str(path)!r}).specs))"
    )

    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert int(completed.stdout.strip().splitlines()[-1]) == listed


def _suite_file(tmp_path: Path, report, digest: str) -> Path:
    # The suite of the report's columns as the generator writes it: birth-year bounds as parameters.
    published = [(d.output, d.source, d.treatment) for d in report.columns if d.output is not None]
    specs = expectations_for_columns(
        published,
        method=report.method,
        zip3_vintage=report.zip3_vintage,
        reference_year=None,
        required=["PATIENT_KEY"],
    )
    suite = build_expectation_suite("from-file", specs, meta={"phi_guard": {"policy_digest": digest}})
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite.to_json_dict()))
    return path


def test_a_suite_file_runs_with_the_reports_parameters_like_the_derived_suite(tmp_path):
    report = make_report()
    dataset = tmp_path / "governed.parquet"
    pq.write_table(governed_table(), dataset)
    folders = {"data_docs_dir": tmp_path / "docs", "gx_project_dir": tmp_path / "gx"}

    derived = validate_governed_dataset(dataset, report, suite_name="derived", **folders)
    from_file = validate_governed_dataset(
        dataset,
        report,
        suite_name="from-file",
        suite_path=_suite_file(tmp_path, report, report.policy.digest),
        **folders,
    )

    assert derived.success and from_file.success
    assert [outcome[:3] for outcome in from_file.results] == [outcome[:3] for outcome in derived.results]


def test_a_suite_file_of_another_policy_digest_is_refused(tmp_path):
    report = make_report()
    dataset = tmp_path / "governed.parquet"
    pq.write_table(governed_table(), dataset)

    with pytest.raises(ValueError, match="generated from policy digest sha256:other"):
        validate_governed_dataset(
            dataset,
            report,
            suite_name="other",
            data_docs_dir=tmp_path / "docs",
            gx_project_dir=tmp_path / "gx",
            suite_path=_suite_file(tmp_path, report, "sha256:other"),
        )


def _load_dag_module(name: str):
    import importlib.util

    specification = importlib.util.spec_from_file_location(name, REPO / "dags" / f"{name}.py")
    assert specification is not None and specification.loader is not None
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    return module


def test_the_committed_suites_pass_on_the_demo_output(tmp_path):
    # Each demo policy governs the bundled Synthea extract as the example DAG does; the set it publishes
    # must pass the committed suite of its policy, with the parameters of its report.
    from datetime import date

    from airflow_phi_guard.engine.executor import govern
    from tests.conftest import SYNTHEA

    extract = _load_dag_module("demo_extract").write_encounter_extract(SYNTHEA, tmp_path / "extract.parquet")
    registry = tmp_path / "consent.csv"
    _load_dag_module("demo_consent").write_demo_consent_registry(SYNTHEA / "patients.csv", registry)
    assert len(POLICIES) == 2

    for path in POLICIES:
        policy = load_policy(path)
        output = tmp_path / f"{policy.name}.parquet"
        result = govern(
            policy,
            extract,
            output,
            consent=registry,
            as_of=date(2026, 12, 1),
            pseudonym_key=b"p" * 32,
            date_shift_key=b"d" * 32,
            surrogate_mapping=tmp_path / "private" / "surrogate-mapping.parquet",
        )
        assert result.report.published, result.refusals

        summary = validate_governed_dataset(
            output,
            result.report,
            suite_name=policy.name,
            data_docs_dir=tmp_path / "docs",
            gx_project_dir=tmp_path / "gx",
            suite_path=suite_path(REPO / "expectations", policy),
        )

        assert summary.success, (policy.name, summary.failures)
        assert summary.statistics.evaluated == len(
            load_suite(suite_path(REPO / "expectations", policy)).specs
        )
