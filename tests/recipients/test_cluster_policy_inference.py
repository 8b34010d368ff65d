"""The cluster policy judges a batch inference task whose model a vendor serves, in a real DAG folder.

Scoring discloses the input to the recipient serving the model (45 CFR 164.502(e)), so its agreement must
permit inference; the DagBag applies every installed task policy as the DAG processor does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

PROJECT = Path(__file__).resolve().parents[2]
SAFE_HARBOR_POLICY = PROJECT / "dags" / "policies" / "readmission_risk.yaml"

REGISTRY = """\
recipients:
  inference-vendor:
    name: Model API whose agreement permits inference
    destinations: [https://api.inference.example]
    region: us-east-1
    baa: {id: BAA-INF-1, signed: 2020-01-01, effective: 2020-01-01, expires: 2099-01-01,
          permitted_uses: [inference], data: phi}
  training-vendor:
    name: Cloud trainer whose agreement permits model training only
    destinations: [s3://trainer/]
    region: us-east-2
    baa: {id: BAA-TRAIN-2, signed: 2020-01-01, effective: 2020-01-01, expires: 2099-01-01,
          permitted_uses: [model-training], data: phi}
  no-baa-vendor:
    name: Model API without an agreement
    destinations: [https://api.no-baa.example]
    region: us-west-2
"""

DAG_FILE = """\
from datetime import datetime

from airflow.sdk import DAG

from airflow_phi_guard.operators.inference import BatchInferenceOperator
from airflow_phi_guard.operators.policy import PhiPolicyOperator


def score(input_path, output_path):
    return 0


with DAG(dag_id="%(dag_id)s", schedule=None, start_date=datetime(2026, 1, 1)):
    govern = PhiPolicyOperator(
        task_id="govern",
        policy_path="%(policy)s",
        input_path="%(folder)s/raw.parquet",
        output_path="%(folder)s/governed.parquet",
        consent_path="%(folder)s/consent.csv",
        report_path="%(folder)s/report.json",
    )
    govern >> BatchInferenceOperator(
        task_id="score",
        model_name="readmission-risk",
        model_version="1",
        input_path="%(folder)s/%(input)s",
        output_path="%(folder)s/scores.parquet",
        trail_path="%(folder)s/trail.jsonl",
        score=score,
        recipient=%(recipient)r,
        report_path=%(report)r,
    )
"""

# (recipient, scored input, its report, refused): the rule's answer for the scoring task a DAG declares
CASES = [
    # raw input is PHI; a vendor without a BAA may not receive it (164.502(e)(1))
    ("no-baa-vendor", "raw.parquet", None, True),
    # a vendor whose BAA permits inference: loads
    ("inference-vendor", "raw.parquet", None, False),
    # a BAA for model training only does not permit inference (164.504(e)(2)(i))
    ("training-vendor", "raw.parquet", None, True),
    # a recipient the registry does not list is refused
    ("unlisted-vendor", "raw.parquet", None, True),
    # the Safe Harbor policy's output (attested), with that run's report: not PHI, loads (164.502(d)(2))
    ("no-baa-vendor", "governed.parquet", "report.json", False),
    # the same output without its report is taken for PHI, as the operator takes it at run time
    ("no-baa-vendor", "governed.parquet", None, True),
    # a templated recipient is rendered only when the task runs: judged by the operator then, not here
    ("{{ params.vendor }}", "raw.parquet", None, False),
]


@pytest.fixture
def dag_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    registry = tmp_path / "recipients.yaml"
    registry.write_text(REGISTRY)
    monkeypatch.setenv("PHI_GUARD_RECIPIENT_REGISTRY", str(registry))
    return folder


@pytest.mark.parametrize(("recipient", "scored", "report", "refused"), CASES)
def test_a_scoring_task_is_judged_when_parsed(dag_folder: Path, recipient, scored, report, refused):
    text = DAG_FILE % {
        "dag_id": "scoring_dag",
        "folder": dag_folder.parent,
        "policy": SAFE_HARBOR_POLICY,
        "input": scored,
        "recipient": recipient,
        "report": str(dag_folder.parent / report) if report else None,
    }
    (dag_folder / "scoring_dag.py").write_text(text)

    bag = DagBag(dag_folder=str(dag_folder))

    assert ("scoring_dag" not in bag.dags) is refused
    errors = list(bag.import_errors.values())
    if refused:
        (error,) = errors
        assert "AirflowClusterPolicyViolation" in error
        assert f"recipient {recipient}" in error
    else:
        assert errors == []
