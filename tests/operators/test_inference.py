"""The batch inference operator: the batch in the trail, value-free XCom, the model as a lineage input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_phi_guard.operators.inference import BatchInferenceOperator
from airflow_phi_guard.trail.fingerprint import dataset_fingerprint
from tests.lineage.openlineage_validation import validate_event

CANARIES = ("CANARY-SUBJ-5501", "CANARY-SUBJ-5502")


def _score(input_path: str, output_path: str) -> int:
    ages = pq.read_table(input_path, columns=["AGE"])["AGE"].to_pylist()
    pq.write_table(pa.table({"score": [age / 100 for age in ages]}), output_path)
    return len(ages)


def _operator(tmp_path: Path) -> BatchInferenceOperator:
    source = tmp_path / "governed.parquet"
    pq.write_table(pa.table({"PATIENT_KEY": list(CANARIES), "AGE": [40, 72]}), source)
    model = tmp_path / "model.joblib"
    model.write_bytes(b"not really a model")
    return BatchInferenceOperator(
        task_id="score",
        model_name="readmission-risk",
        model_version="1",
        input_path=str(source),
        output_path=str(tmp_path / "scores.parquet"),
        trail_path=str(tmp_path / "audit-trail.jsonl"),
        model_path=str(model),
        score=_score,
    )


def test_the_batch_is_recorded_and_xcom_holds_no_value(tmp_path: Path):
    operator = _operator(tmp_path)

    summary = operator.execute(context={"run_id": "manual__2026-12-01"})

    (record,) = [json.loads(line) for line in (tmp_path / "audit-trail.jsonl").read_text().splitlines()]
    assert record["kind"] == "inference"
    assert record["task_id"] == "score"
    assert record["run_id"] == "manual__2026-12-01"
    assert record["counts"] == {"rows_in": 2, "rows_out": 2}
    assert record["output_fingerprint"] == dataset_fingerprint(tmp_path / "scores.parquet")
    assert summary["trail_sequence"] == 1
    assert summary["trail_digest"] == record["digest"]
    for canary in CANARIES:
        assert canary not in json.dumps(summary)
        assert canary not in json.dumps(record)


def test_the_model_is_an_input_of_the_lineage_with_the_trail_head(tmp_path: Path):
    from openlineage.client.serde import Serde

    operator = _operator(tmp_path)
    operator.execute(context={})

    lineage = operator.get_openlineage_facets_on_complete(None)

    names = [dataset.name for dataset in lineage.inputs]
    assert names == [str(tmp_path / "model.joblib"), str(tmp_path / "governed.parquet")]
    assert [dataset.name for dataset in lineage.outputs] == [str(tmp_path / "scores.parquet")]
    facet = json.loads(Serde.to_json(lineage.run_facets["phiGuard_trail"]))
    assert facet["sequence"] == 1
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-12-01T00:00:00Z",
        "producer": "https://example.org/test",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": "01932d5c-7f6e-7d5b-9d3e-7a1c2b3d4e5f", "facets": {"phiGuard_trail": facet}},
        "job": {"namespace": "phi-guard", "name": "score"},
    }
    validate_event(event)
