"""Example DAG: govern an EHR extract for the 30-day readmission model, validate it, train, and trace it.

A raw encounter extract (every Synthea column, PHI included) and a consent registry go in; the policy in
``policies/readmission_risk.yaml`` admits consented records, keeps or reduces only the columns the model
needs, and publishes the governed set; Great Expectations validates it; a scikit-learn model is trained
on it. OpenLineage events record which PHI reached the model, in which treatment, under which consent.

Run it with ``make demo``, which sets ``PHI_GUARD_DEMO_OUTPUT`` and the OpenLineage file transport;
``PHI_GUARD_DEMO_SYNTHEA`` points it at another Synthea export.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Asset, task

from airflow_phi_guard.lineage.datasets import asset_uri
from airflow_phi_guard.operators.policy import PhiPolicyOperator
from airflow_phi_guard.operators.quality import GovernedDatasetValidationOperator

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
SYNTHEA = Path(os.environ.get("PHI_GUARD_DEMO_SYNTHEA", PROJECT / "data" / "synthea-nebraska")).resolve()
OUTPUT = Path(os.environ.get("PHI_GUARD_DEMO_OUTPUT", PROJECT / "demo-output")).resolve()

RAW_EXTRACT = OUTPUT / "raw" / "encounter_extract.parquet"
CONSENT_REGISTRY = OUTPUT / "raw" / "consent_registry.csv"
GOVERNED = OUTPUT / "governed" / "readmission_risk.parquet"
REPORT = OUTPUT / "reports" / "readmission_risk.json"
MODEL = OUTPUT / "models" / "readmission-risk-1.joblib"

with DAG(
    dag_id="phi_guard_readmission_training",
    description="Govern, validate and train the readmission risk model on the Synthea extract",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["phi-guard", "example"],
    doc_md=__doc__,
):

    @task(outlets=[Asset(asset_uri(RAW_EXTRACT)), Asset(asset_uri(CONSENT_REGISTRY))])
    def prepare_inputs(as_of: str) -> None:
        """Stand in for the warehouse: write the raw extract and the consent registry."""
        import sys
        from datetime import date

        sys.path.insert(0, str(HERE))
        from demo_consent import write_demo_consent_registry
        from demo_extract import write_encounter_extract

        write_encounter_extract(SYNTHEA, RAW_EXTRACT)
        write_demo_consent_registry(SYNTHEA / "patients.csv", CONSENT_REGISTRY, date.fromisoformat(as_of))

    govern = PhiPolicyOperator(
        task_id="govern_training_set",
        policy_path=str(HERE / "policies" / "readmission_risk.yaml"),
        input_path=str(RAW_EXTRACT),
        consent_path=str(CONSENT_REGISTRY),
        output_path=str(GOVERNED),
        report_path=str(REPORT),
    )

    validate = GovernedDatasetValidationOperator(
        task_id="validate_training_set",
        report_path=str(REPORT),
        data_docs_dir=str(OUTPUT / "data-docs"),
        gx_project_dir=str(OUTPUT / "gx"),
    )

    @task(inlets=[Asset(asset_uri(GOVERNED))], outlets=[Asset(asset_uri(MODEL))])
    def train_model() -> dict[str, float]:
        """Train the readmission model on the governed set only, splitting by patient."""
        import sys

        sys.path.insert(0, str(HERE))
        from demo_training import train_readmission_model

        return train_readmission_model(GOVERNED, MODEL)

    prepare_inputs("{{ ds }}") >> govern >> validate >> train_model()
