"""The cluster policy, installed through the ``airflow.policy`` entry point, judging a real DAG folder.

The DagBag parses the files as the DAG processor does and applies every installed task policy; a refused
task makes its file an import error. The expert-determination policy's output is PHI, the Safe Harbor
policy's (with its attestation) is not (REGULATORY.md, "Business associates").
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from tests.engine.test_executor import POLICY

PROJECT = Path(__file__).resolve().parents[2]
SAFE_HARBOR_POLICY = PROJECT / "dags" / "policies" / "readmission_risk.yaml"

REGISTRY = """\
recipients:
  no-baa-vendor:
    name: Vendor without an agreement
    destinations: [s3://no-baa-vendor/]
    region: us-west-2
  baa-vendor:
    name: Vendor with an agreement
    destinations: [s3://baa-vendor/inbound]
    region: us-east-2
    baa:
      id: BAA-VENDOR-7
      signed: 2020-01-01
      effective: 2020-01-01
      expires: 2099-01-01
      permitted_uses: [model-training]
      data: phi
"""

DAG_FILE = """\
from datetime import datetime

from airflow.sdk import DAG, Asset, task

from airflow_phi_guard.lineage.datasets import asset_uri
from airflow_phi_guard.operators.policy import PhiPolicyOperator

GOVERNED = "%(folder)s/governed.parquet"

with DAG(dag_id="%(dag_id)s", schedule=None, start_date=datetime(2026, 1, 1)):
    govern = PhiPolicyOperator(
        task_id="govern",
        policy_path="%(policy)s",
        input_path="%(folder)s/raw.parquet",
        output_path=GOVERNED,
        consent_path="%(folder)s/consent.csv",
        report_path="%(folder)s/report.json",
    )

    @task(inlets=[Asset(asset_uri(GOVERNED))], outlets=[Asset("%(outlet)s")])
    def export():
        pass

    govern >> export()
"""

EXTRA_DAG_FILE = """\
from datetime import datetime

from airflow.sdk import DAG, Asset, task

with DAG(dag_id="by_extra", schedule=None, start_date=datetime(2026, 1, 1)):

    @task(
        inlets=[Asset("s3://hospital/governed/x.parquet", extra={"phi_guard_policy": "%(policy)s"})],
        outlets=[Asset("s3://no-baa-vendor/x.parquet")],
    )
    def export():
        pass

    export()
"""


def test_the_policy_is_installed_through_its_entry_point():
    (entry,) = [entry for entry in entry_points(group="airflow.policy") if entry.name == "phi_guard"]
    assert entry.value == "airflow_phi_guard.operators.cluster_policy"


@pytest.fixture
def dag_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    (tmp_path / "expert.yaml").write_text(POLICY % {"undeclared": "refuse"})
    registry = tmp_path / "recipients.yaml"
    registry.write_text(REGISTRY)
    monkeypatch.setenv("PHI_GUARD_RECIPIENT_REGISTRY", str(registry))
    return folder


def write_dag(folder: Path, dag_id: str, policy: Path, outlet: str) -> None:
    text = DAG_FILE % {"folder": folder, "dag_id": dag_id, "policy": policy, "outlet": outlet}
    (folder / f"{dag_id}.py").write_text(text)


# (policy, outlet, refused): the rule's answer for each export a DAG declares
CASES = [
    # expert determination (PHI) to a vendor without a BAA: refused at parse time (164.502(e)(1))
    ("expert", "s3://no-baa-vendor/export/set.parquet", True),
    # expert determination (PHI) to a vendor whose BAA permits model training: loads
    ("expert", "s3://baa-vendor/inbound/set.parquet", False),
    # Safe Harbor with attestation (not PHI) to the vendor without a BAA: loads (164.502(d)(2))
    ("safe-harbor", "s3://no-baa-vendor/export/set.parquet", False),
    # PHI to an outlet no recipient owns: not judged at parse time, the gate judges it at run time
    ("expert", "s3://somewhere-else/set.parquet", False),
]


@pytest.mark.parametrize(("policy", "outlet", "refused"), CASES)
def test_a_dag_folder_is_judged_when_parsed(dag_folder: Path, policy: str, outlet: str, refused: bool):
    policy_path = dag_folder.parent / "expert.yaml" if policy == "expert" else SAFE_HARBOR_POLICY
    write_dag(dag_folder, "export_dag", policy_path, outlet)

    bag = DagBag(dag_folder=str(dag_folder))

    assert ("export_dag" not in bag.dags) is refused
    errors = list(bag.import_errors.values())
    if refused:
        (error,) = errors
        assert "AirflowClusterPolicyViolation" in error
        assert "no-baa-vendor" in error
        assert "agreement: none" in error
        assert "164.502(e)(1)" in error
    else:
        assert errors == []


@pytest.mark.parametrize(("policy", "refused"), [("expert.yaml", True), ("readmission_risk.yaml", False)])
def test_a_relative_policy_path_is_read_from_the_policy_folder(
    dag_folder: Path, monkeypatch: pytest.MonkeyPatch, policy: str, refused: bool
):
    # The operator reads a relative policy_path from [phi_guard] policy_folder; the cluster policy must
    # judge the same file: the Safe Harbor policy's set may go to the vendor without a BAA, the expert
    # determination's may not, for want of an agreement (not because the file could not be read).
    folder = dag_folder.parent / "policies"
    folder.mkdir()
    (folder / "expert.yaml").write_text((dag_folder.parent / "expert.yaml").read_text())
    (folder / "readmission_risk.yaml").write_text(SAFE_HARBOR_POLICY.read_text())
    monkeypatch.setenv("AIRFLOW__PHI_GUARD__POLICY_FOLDER", str(folder))
    write_dag(dag_folder, "export_dag", Path(policy), "s3://no-baa-vendor/export/set.parquet")

    bag = DagBag(dag_folder=str(dag_folder))

    assert ("export_dag" not in bag.dags) is refused
    if refused:
        (error,) = bag.import_errors.values()
        assert "agreement: none" in error
        assert "cannot be read" not in error
    else:
        assert bag.import_errors == {}


def test_an_inlet_names_its_policy_in_its_extra(dag_folder: Path):
    policy = dag_folder.parent / "expert.yaml"
    (dag_folder / "by_extra.py").write_text(EXTRA_DAG_FILE % {"policy": policy})

    bag = DagBag(dag_folder=str(dag_folder))

    assert "by_extra" not in bag.dags
    assert "no-baa-vendor" in next(iter(bag.import_errors.values()))


def test_without_a_registry_nothing_is_judged(dag_folder: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PHI_GUARD_RECIPIENT_REGISTRY")
    write_dag(dag_folder, "export_dag", dag_folder.parent / "expert.yaml", "s3://no-baa-vendor/x.parquet")

    assert "export_dag" in DagBag(dag_folder=str(dag_folder)).dags


def test_an_unreadable_registry_refuses_the_export(dag_folder: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PHI_GUARD_RECIPIENT_REGISTRY", str(dag_folder / "missing.yaml"))
    write_dag(dag_folder, "export_dag", dag_folder.parent / "expert.yaml", "s3://baa-vendor/inbound/x")

    bag = DagBag(dag_folder=str(dag_folder))

    assert "export_dag" not in bag.dags
    assert "recipient registry cannot be used" in next(iter(bag.import_errors.values()))


def test_the_demo_dag_folder_with_the_demo_registry(monkeypatch: pytest.MonkeyPatch):
    """The demo exports its expert set (PHI) to Acme, which has no BAA: with the policy configured, the
    demo DAG itself is refused when parsed, naming that task and recipient."""
    monkeypatch.setenv("PHI_GUARD_RECIPIENT_REGISTRY", str(PROJECT / "dags" / "recipients.yaml"))

    bag = DagBag(dag_folder=str(PROJECT / "dags"))

    assert "phi_guard_readmission_training" not in bag.dags
    (error,) = bag.import_errors.values()
    assert "task export_to_acme" in error
    assert "recipient acme-model-api has no business associate agreement" in error
