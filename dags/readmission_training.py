"""Example DAG: govern an EHR extract for the 30-day readmission model, validate it, train, and trace it.

A raw encounter extract (every Synthea column, PHI included) and a consent registry go in; the policy in
``policies/readmission_risk.yaml`` admits consented records, keeps or reduces only the columns the model
needs, and publishes the governed set, Safe Harbor de-identified (surrogate patient codes from a private
mapping, a k-anonymity gate); Great Expectations validates it; a scikit-learn model is trained on it. A
second task governs the same extract under ``policies/readmission_risk_expert.yaml``: expert
determination, keyed pseudonyms and per-patient date shifts, reported as not Safe Harbor. OpenLineage
events record which PHI reached the model, in which treatment, under which consent. The expert set, still
PHI, is then exported to two vendors of ``recipients.yaml``, each behind a recipient gate: Northwind, whose
business associate agreement permits model training, receives it; Acme, without an agreement, is refused
and its upload skipped.

Secrets come from Airflow connections, never from the files: ``phi_guard_pseudonym_key``,
``phi_guard_date_shift_key`` and ``phi_guard_manifest_key`` (the subject manifest, so that
``phi-guard impact`` can answer for the runs); ``scripts/run-demo`` makes them once per machine. The
surrogate mapping is a private Parquet file, ``PHI_GUARD_DEMO_SURROGATE_MAPPING``, kept outside the
published output.

Run it with ``make demo``, which sets ``PHI_GUARD_DEMO_OUTPUT`` and the OpenLineage file transport;
``PHI_GUARD_DEMO_SYNTHEA`` points it at another Synthea export.

The registry is a CSV file by default. Define the Airflow connection ``phi_guard_consent`` (a PostgreSQL
database, e.g. ``AIRFLOW_CONN_PHI_GUARD_CONSENT=postgres://postgres@127.0.0.1:5432/test``) and the same
registry is loaded into the table ``PHI_GUARD_DEMO_CONSENT_TABLE`` (``phi_guard_demo.consent_registry``)
and read from there instead: switching one connection moves the registry into the database.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Asset, task

from airflow_phi_guard.lineage.datasets import asset_uri
from airflow_phi_guard.operators.inference import BatchInferenceOperator
from airflow_phi_guard.operators.policy import PhiPolicyOperator
from airflow_phi_guard.operators.quality import GovernedDatasetValidationOperator
from airflow_phi_guard.operators.recipients import RecipientGateOperator

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
SYNTHEA = Path(os.environ.get("PHI_GUARD_DEMO_SYNTHEA", PROJECT / "data" / "synthea-nebraska")).resolve()
OUTPUT = Path(os.environ.get("PHI_GUARD_DEMO_OUTPUT", PROJECT / "demo-output")).resolve()

RAW_EXTRACT = OUTPUT / "raw" / "encounter_extract.parquet"
CONSENT_REGISTRY = OUTPUT / "raw" / "consent_registry.csv"
GOVERNED = OUTPUT / "governed" / "readmission_risk.parquet"
REPORT = OUTPUT / "reports" / "readmission_risk.json"
EXPERT_GOVERNED = OUTPUT / "governed" / "readmission_risk_expert.parquet"
EXPERT_REPORT = OUTPUT / "reports" / "readmission_risk_expert.json"
# The means of re-identification of the surrogate codes: private, never published, kept across runs.
SURROGATE_MAPPING = Path(
    os.environ.get("PHI_GUARD_DEMO_SURROGATE_MAPPING", OUTPUT / "private" / "surrogate_mapping.parquet")
).resolve()
MODEL = OUTPUT / "models" / "readmission-risk-1.joblib"
# Who receives governed sets, and under which business associate agreement (recipients.yaml).
RECIPIENTS = HERE / "recipients.yaml"
# The expert-determination set is still PHI: Northwind has an agreement for it, Acme has none.
NORTHWIND_EXPORT = "s3://northwind-labelling-inbound/readmission/readmission_risk_expert.parquet"
ACME_EXPORT = "s3://acme-models-inbound/readmission/readmission_risk_expert.parquet"
# Stands in for the vendors' buckets: an upload is a copy under outbox/<bucket>/<key>.
OUTBOX = OUTPUT / "outbox"
SCORES = OUTPUT / "scores" / "readmission_risk_scores.parquet"
# The hash-chained audit trail of the inference batches (``phi-guard trail verify``).
AUDIT_TRAIL = OUTPUT / "audit-trail.jsonl"

CONSENT_CONN_ID = "phi_guard_consent"
CONSENT_TABLE = os.environ.get("PHI_GUARD_DEMO_CONSENT_TABLE", "phi_guard_demo.consent_registry")
# Decided when the task runs, not when the DAG is parsed: the connection names the database if it exists.
_IN_DATABASE = f"conn.get('{CONSENT_CONN_ID}')"


def _score(governed: str, scores: str) -> int:
    """Batch inference of the demo: the trained model scores the governed set (audit-logged by the task)."""
    import sys

    sys.path.insert(0, str(HERE))
    from demo_training import score_readmission_model

    return score_readmission_model(MODEL, governed, scores)


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
        registry = write_demo_consent_registry(
            SYNTHEA / "patients.csv", CONSENT_REGISTRY, date.fromisoformat(as_of)
        )
        _load_into_database_if_connected(registry)

    govern = PhiPolicyOperator(
        task_id="govern_training_set",
        policy_path=str(HERE / "policies" / "readmission_risk.yaml"),
        input_path=str(RAW_EXTRACT),
        consent_path=f"{{{{ '' if {_IN_DATABASE} else '{CONSENT_REGISTRY}' }}}}",
        consent_conn_id=f"{{{{ '{CONSENT_CONN_ID}' if {_IN_DATABASE} else '' }}}}",
        consent_table=CONSENT_TABLE,
        output_path=str(GOVERNED),
        report_path=str(REPORT),
        surrogate_mapping_path=str(SURROGATE_MAPPING),
        trail_path=str(AUDIT_TRAIL),
        recipients_path=str(RECIPIENTS),
    )

    govern_expert = PhiPolicyOperator(
        task_id="govern_expert_determination_set",
        policy_path=str(HERE / "policies" / "readmission_risk_expert.yaml"),
        input_path=str(RAW_EXTRACT),
        consent_path=f"{{{{ '' if {_IN_DATABASE} else '{CONSENT_REGISTRY}' }}}}",
        consent_conn_id=f"{{{{ '{CONSENT_CONN_ID}' if {_IN_DATABASE} else '' }}}}",
        consent_table=CONSENT_TABLE,
        output_path=str(EXPERT_GOVERNED),
        report_path=str(EXPERT_REPORT),
        trail_path=str(AUDIT_TRAIL),
        recipients_path=str(RECIPIENTS),
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

    score = BatchInferenceOperator(
        task_id="score_governed_set",
        model_name="readmission-risk",
        model_version="1",
        model_path=str(MODEL),
        input_path=str(GOVERNED),
        output_path=str(SCORES),
        trail_path=str(AUDIT_TRAIL),
        score=_score,
    )

    def export_to(recipient: str, destination: str):
        """An export of the expert-determination set, behind the recipient gate of its destination."""
        gate = RecipientGateOperator(
            task_id=f"gate_export_to_{recipient}",
            destination=destination,
            report_path=str(EXPERT_REPORT),
            recipients_path=str(RECIPIENTS),
            # The demo's refused export is expected: its gate records the refusal and skips the upload, so
            # that the run shows both answers and still succeeds. In production, leave the default, fail.
            on_refusal="skip",
        )

        @task(
            task_id=f"export_to_{recipient}",
            inlets=[Asset(asset_uri(EXPERT_GOVERNED))],
            outlets=[Asset(destination)],
        )
        def export() -> str:
            """Stand in for the upload: copy the governed set into the outbox folder of the bucket."""
            import shutil
            from urllib.parse import urlsplit

            parts = urlsplit(destination)
            target = OUTBOX / parts.netloc / parts.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(EXPERT_GOVERNED, target)
            return str(target)

        gate >> export()
        return gate

    inputs = prepare_inputs("{{ ds }}")
    inputs >> govern >> validate >> train_model() >> score
    inputs >> govern_expert >> [export_to("northwind", NORTHWIND_EXPORT), export_to("acme", ACME_EXPORT)]


def _load_into_database_if_connected(registry) -> None:
    """Stand in for the hospital's consent database: load the registry when the connection is defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from demo_consent import load_demo_consent_registry

    try:
        connection = BaseHook.get_connection(CONSENT_CONN_ID)
    except AirflowNotFoundException:
        return
    database = connection.get_hook().get_conn()
    try:
        load_demo_consent_registry(registry, database, CONSENT_TABLE)
    finally:
        database.close()
