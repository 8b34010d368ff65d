"""Every kind of event the product emits, from the CLI and from Airflow, on success and on failure, checked
against the official OpenLineage schemas and the shipped phiGuard schemas.

The CLI's events are read back from the event log `phi-guard apply --events` wrote. Airflow's are the
operators' lineage methods wrapped in a RunEvent as the provider's adapter does, after its redactor.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException
from openlineage.client.event_v2 import RunState

from airflow_phi_guard.operators.inference import BatchInferenceOperator
from airflow_phi_guard.operators.quality import GovernedDatasetValidationOperator
from tests.lineage.openlineage_validation import run_event, validate_event, validate_event_lines
from tests.operators.conftest import make_policy_operator

#: A phone number planted in kept free text: the scan refuses the run; it must appear in no event.
PLANTED = "call 402-555-0199"
#: The subject ids and SSN of tests/engine/test_executor.py's source, which no event may carry.
CANARIES = ("999-49-3983", "402-555-0199")

#: Each kind of event, by emitter, outcome and state, with the phiGuard facets it must carry (so that
#: a kind whose facets went missing fails here rather than validating vacuously).
KINDS = {
    ("cli", "published", "START"): {"phiGuard_policy", "phiGuard_deidentification"},
    ("cli", "published", "COMPLETE"): {"phiGuard_policy", "phiGuard_consent", "phiGuard_deidentification"},
    ("cli", "refused", "START"): {"phiGuard_policy", "phiGuard_deidentification"},
    ("cli", "refused", "FAIL"): {"phiGuard_policy", "phiGuard_consent", "phiGuard_deidentification"},
    ("cli", "error", "START"): {"phiGuard_policy", "phiGuard_deidentification"},
    ("cli", "error", "FAIL"): {"phiGuard_policy", "phiGuard_deidentification"},
    ("airflow-policy", "published", "START"): {"phiGuard_policy", "phiGuard_deidentification"},
    ("airflow-policy", "published", "COMPLETE"): {
        "phiGuard_policy",
        "phiGuard_consent",
        "phiGuard_deidentification",
    },
    ("airflow-policy", "refused", "FAIL"): {
        "phiGuard_policy",
        "phiGuard_consent",
        "phiGuard_deidentification",
    },
    ("airflow-validation", "passed", "START"): set(),
    ("airflow-validation", "passed", "COMPLETE"): set(),
    ("airflow-validation", "failed", "FAIL"): set(),
    ("airflow-validation", "could-not-run", "FAIL"): set(),
    ("airflow-inference", "scored", "START"): set(),
    ("airflow-inference", "scored", "COMPLETE"): {"phiGuard_trail"},
    ("airflow-inference", "failed", "START"): set(),
    ("airflow-inference", "failed", "FAIL"): set(),
}


def _score(input_path: str, output_path: str) -> int:
    """A model that scores by age; it reads only AGE."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ages = pq.read_table(input_path, columns=["AGE"])["AGE"].to_pylist()
    pq.write_table(pa.table({"score": [age / 100 for age in ages]}), output_path)
    return len(ages)


def _broken_model(input_path: str, output_path: str) -> int:
    raise RuntimeError("the model server went away")


def _inference_operator(folder: Path, score) -> BatchInferenceOperator:
    """A batch over a set whose key column holds the canaries, as a governed set never would."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    source = folder / "governed.parquet"
    pq.write_table(pa.table({"PATIENT_KEY": list(CANARIES), "AGE": [40, 72]}), source)
    model = folder / "model.joblib"
    model.write_bytes(b"not really a model")
    return BatchInferenceOperator(
        task_id="score",
        model_name="readmission-risk",
        model_version="1",
        input_path=str(source),
        output_path=str(folder / "scores.parquet"),
        trail_path=str(folder / "audit-trail.jsonl"),
        model_path=str(model),
        score=score,
    )


def _materials(tmp_path: Path, **source_options) -> PhiPolicyMaterials:
    operator = make_policy_operator(tmp_path, "phi_guard_test_key", **source_options)
    return PhiPolicyMaterials(operator)


class PhiPolicyMaterials:
    """The policy, source and registry files a policy task reads, for the CLI to read the same."""

    def __init__(self, operator) -> None:
        self.operator = operator

    def cli_arguments(self, events: Path, *, input_path: str | None = None) -> list[str]:
        task = self.operator
        return [
            "apply",
            "--policy",
            task.policy_path,
            "--input",
            input_path or task.input_path,
            "--output",
            task.output_path,
            "--consent",
            task.consent_path,
            "--as-of",
            task.as_of,
            "--events",
            str(events),
        ]


def _cli_events(tmp_path: Path, outcome: str) -> list[dict]:
    from airflow_phi_guard.cli import main

    folder = tmp_path / f"cli-{outcome}"
    folder.mkdir()
    materials = _materials(folder, notes=[PLANTED] * 10) if outcome == "refused" else _materials(folder)
    events = folder / "events.jsonl"
    missing = str(folder / "no-such-extract.parquet") if outcome == "error" else None
    try:
        code = main(materials.cli_arguments(events, input_path=missing))
    except Exception:
        code = None
    assert (code == 0) == (outcome == "published")
    return validate_event_lines(events)


def _airflow_event(lineage, state: RunState, job: str) -> dict:
    """The event as the provider's adapter sends it: built, then passed through its redactor."""
    from airflow.providers.openlineage.utils.utils import OpenLineageRedactor

    try:
        from airflow.sdk._shared.secrets_masker import SecretsMasker
    except ImportError:  # older task SDKs
        from airflow.sdk.execution_time.secrets_masker import SecretsMasker

    event = run_event(lineage, state, job)
    redacted = OpenLineageRedactor.from_masker(SecretsMasker()).redact(copy.deepcopy(event), max_depth=20)
    validate_event(redacted)
    return redacted


@pytest.fixture
def events_by_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str, str], dict]:
    monkeypatch.setenv(
        "AIRFLOW_CONN_PHI_GUARD_TEST_KEY", json.dumps({"conn_type": "generic", "password": "k" * 32})
    )
    monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", "k" * 32)
    monkeypatch.delenv("PHI_GUARD_MANIFEST_KEY", raising=False)
    monkeypatch.delenv("OPENLINEAGE_DISABLED", raising=False)
    found: dict[tuple[str, str, str], dict] = {}

    for outcome in ("published", "refused", "error"):
        for event in _cli_events(tmp_path, outcome):
            found[("cli", outcome, event["eventType"])] = event

    for folder in ("airflow", "airflow-refused"):
        (tmp_path / folder).mkdir()
    published = make_policy_operator(tmp_path / "airflow", "phi_guard_test_key")
    found[("airflow-policy", "published", "START")] = _airflow_event(
        published.get_openlineage_facets_on_start(), RunState.START, "dag.govern"
    )
    published.execute(context={})
    found[("airflow-policy", "published", "COMPLETE")] = _airflow_event(
        published.get_openlineage_facets_on_complete(None), RunState.COMPLETE, "dag.govern"
    )
    refused = make_policy_operator(tmp_path / "airflow-refused", "phi_guard_test_key", notes=[PLANTED] * 10)
    with pytest.raises(AirflowFailException):
        refused.execute(context={})
    found[("airflow-policy", "refused", "FAIL")] = _airflow_event(
        refused.get_openlineage_facets_on_failure(None), RunState.FAIL, "dag.govern"
    )

    # One GX project for every validation, as a deployment has.
    def validation(report: str, name: str) -> GovernedDatasetValidationOperator:
        return GovernedDatasetValidationOperator(
            task_id="validate",
            report_path=report,
            data_docs_dir=str(tmp_path / "data-docs"),
            gx_project_dir=str(tmp_path / "gx"),
        )

    passed = validation(published.report_path, "passed")
    found[("airflow-validation", "passed", "START")] = _airflow_event(
        passed.get_openlineage_facets_on_start(), RunState.START, "dag.validate"
    )
    passed.execute(context={})
    found[("airflow-validation", "passed", "COMPLETE")] = _airflow_event(
        passed.get_openlineage_facets_on_complete(None), RunState.COMPLETE, "dag.validate"
    )
    governed = Path(published.output_path)
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(governed)
    notes = pc.binary_join_element_wise(table["NOTE"], pa.scalar(PLANTED), " ")
    pq.write_table(table.set_column(table.schema.get_field_index("NOTE"), "NOTE", notes), governed)
    failed = validation(published.report_path, "failed")
    with pytest.raises(AirflowFailException):
        failed.execute(context={})
    found[("airflow-validation", "failed", "FAIL")] = _airflow_event(
        failed.get_openlineage_facets_on_failure(None), RunState.FAIL, "dag.validate"
    )
    governed.write_bytes(b"not parquet")
    broken = validation(published.report_path, "broken")
    with pytest.raises(AirflowFailException):
        broken.execute(context={})
    found[("airflow-validation", "could-not-run", "FAIL")] = _airflow_event(
        broken.get_openlineage_facets_on_failure(None), RunState.FAIL, "dag.validate"
    )

    scored = _inference_operator(tmp_path / "inference", _score)
    found[("airflow-inference", "scored", "START")] = _airflow_event(
        scored.get_openlineage_facets_on_start(), RunState.START, "dag.score"
    )
    scored.execute(context={"run_id": "manual__2026-12-01"})
    found[("airflow-inference", "scored", "COMPLETE")] = _airflow_event(
        scored.get_openlineage_facets_on_complete(None), RunState.COMPLETE, "dag.score"
    )
    failed_batch = _inference_operator(tmp_path / "inference-failed", _broken_model)
    found[("airflow-inference", "failed", "START")] = _airflow_event(
        failed_batch.get_openlineage_facets_on_start(), RunState.START, "dag.score"
    )
    with pytest.raises(RuntimeError):
        failed_batch.execute(context={"run_id": "manual__2026-12-01"})
    found[("airflow-inference", "failed", "FAIL")] = _airflow_event(
        failed_batch.get_openlineage_facets_on_failure(None), RunState.FAIL, "dag.score"
    )
    return found


def test_every_kind_of_event_is_emitted_validates_and_carries_its_facets(events_by_kind):
    """Each event above was validated as it was collected; here: every kind was seen, with its facets."""
    assert set(events_by_kind) == set(KINDS)
    for kind, facets in KINDS.items():
        event = events_by_kind[kind]
        assert facets <= set(event["run"]["facets"]), kind
        text = json.dumps(event)
        for canary in CANARIES:
            assert canary not in text, kind


def test_fail_carries_what_the_run_decided(events_by_kind):
    """A refused run's FAIL has the verdict and its reasons, and the counts of consent so far; no output."""
    for emitter in ("cli", "airflow-policy"):
        event = events_by_kind[(emitter, "refused", "FAIL")]
        policy = event["run"]["facets"]["phiGuard_policy"]
        assert policy["verdict"] == "refused" and policy["refusals"]
        assert event["run"]["facets"]["phiGuard_consent"]["rowsRead"] > 0
        assert event["outputs"] == []
    # an error before any decision: the FAIL still says which policy and method the run was under
    error = events_by_kind[("cli", "error", "FAIL")]["run"]["facets"]
    assert "verdict" not in error["phiGuard_policy"]
    # the failed validation names the failed expectation, the one that could not run names its set only
    (failed,) = events_by_kind[("airflow-validation", "failed", "FAIL")]["inputs"]
    assertions = failed["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert ("expect_column_values_to_contain_no_identifiers", "NOTE") in {
        (assertion["assertion"], assertion.get("column"))
        for assertion in assertions
        if not assertion["success"]
    }
    (unrun,) = events_by_kind[("airflow-validation", "could-not-run", "FAIL")]["inputs"]
    assert unrun["name"] == failed["name"] and not unrun.get("inputFacets")


def test_the_key_facets_of_start_are_those_of_complete(events_by_kind):
    """Some servers keep only the first event: START says which policy, model and method, and the output's
    tags, ownership and documentation, as COMPLETE does."""
    for emitter in ("cli", "airflow-policy"):
        start = events_by_kind[(emitter, "published", "START")]
        complete = events_by_kind[(emitter, "published", "COMPLETE")]
        for field in ("name", "version", "digest", "model", "method", "consentBases"):
            assert (
                start["run"]["facets"]["phiGuard_policy"][field]
                == (complete["run"]["facets"]["phiGuard_policy"][field])
            )
        assert (
            start["run"]["facets"]["phiGuard_deidentification"]["method"]
            == (complete["run"]["facets"]["phiGuard_deidentification"]["method"])
        )
        (start_output,), (complete_output,) = start["outputs"], complete["outputs"]
        assert (start_output["namespace"], start_output["name"]) == (
            complete_output["namespace"],
            complete_output["name"],
        )
        for key in ("tags", "ownership", "documentation"):
            assert start_output["facets"][key] == complete_output["facets"][key], (emitter, key)


def _identity(dataset: dict) -> tuple[str, str]:
    return dataset["namespace"], dataset["name"]


def test_the_validation_s_start_names_its_set_and_data_docs(events_by_kind):
    """The validation's START names the set it validates, and links the suite's Data Docs, as COMPLETE
    does; the assertions come only once they were evaluated."""
    (start,) = events_by_kind[("airflow-validation", "passed", "START")]["inputs"]
    (complete,) = events_by_kind[("airflow-validation", "passed", "COMPLETE")]["inputs"]
    assert _identity(start) == _identity(complete)
    suite = complete["facets"]["documentation"]["description"].split(";")[0]
    assert start["facets"]["documentation"]["description"].split(";")[0] == suite
    assert "Data Docs: <" in start["facets"]["documentation"]["description"]
    assert "dataQualityAssertions" not in (start.get("inputFacets") or {})


def test_the_inference_s_events_name_the_model_the_input_and_the_trail(events_by_kind, tmp_path):
    """START already names the model and the set it scores (the key datasets); COMPLETE adds the
    predictions and the trail record of the batch; a failed batch writes no predictions."""
    start = events_by_kind[("airflow-inference", "scored", "START")]
    complete = events_by_kind[("airflow-inference", "scored", "COMPLETE")]
    model, scored = (tmp_path / "inference" / name for name in ("model.joblib", "governed.parquet"))
    assert [_identity(dataset) for dataset in start["inputs"]] == [
        ("file", str(model)),
        ("file", str(scored)),
    ]
    assert [_identity(dataset) for dataset in complete["inputs"]] == [
        _identity(dataset) for dataset in start["inputs"]
    ]
    assert [_identity(dataset) for dataset in complete["outputs"]] == [
        ("file", str(tmp_path / "inference" / "scores.parquet"))
    ]
    # the trail's first record is this batch's
    assert complete["run"]["facets"]["phiGuard_trail"]["sequence"] == 1
    failed = events_by_kind[("airflow-inference", "failed", "FAIL")]
    assert failed["outputs"] == []
    assert _identity(failed["inputs"][0]) == (
        "file",
        str(tmp_path / "inference-failed" / "model.joblib"),
    )


def test_the_failed_batch_s_fail_names_its_trail_record(events_by_kind, tmp_path):
    """FAIL carries what the run decided before it failed: the batch's record (verdict failed) is in the
    trail, so the event names it."""
    trail = (tmp_path / "inference-failed" / "audit-trail.jsonl").read_text(encoding="utf-8").splitlines()
    (record,) = [json.loads(line) for line in trail]
    assert record["verdict"] == "failed"
    facet = events_by_kind[("airflow-inference", "failed", "FAIL")]["run"]["facets"]["phiGuard_trail"]
    assert (facet["sequence"], facet["digest"]) == (record["sequence"], record["digest"])


def test_the_demo_s_events_validate(demo_lineage):
    """The demo policy's runs (surrogate codes, ZIP3, Safe Harbor with risk) and the lite policy's; the log
    also holds hand-written Airflow events with deliberately foreign facets, which are not the product's."""
    from airflow_phi_guard.lineage.audit import read_events
    from airflow_phi_guard.lineage.facets import PRODUCER

    ours = [event for event in read_events(demo_lineage.events) if event["producer"] == PRODUCER]
    for event in ours:
        validate_event(event)
    assert [event["eventType"] for event in ours] == ["START", "COMPLETE"] * 2
    assert all(event["run"]["facets"]["phiGuard_deidentification"]["risk"] for event in ours[1::2])


def test_a_validation_start_without_a_readable_report_names_nothing_and_quotes_nothing(
    tmp_path, caplog, capsys
):
    """Lineage never fails the task: a report that cannot be read gives a START without datasets, and the
    warning names the report and the error's class, never the report's content. (Airflow 3's ``self.log``
    prints unless a task runner routes it, so the output is read with the logging records.)"""
    report = tmp_path / "report.json"
    report.write_text('{"policy": "' + CANARIES[0] + '"', encoding="utf-8")
    operator = GovernedDatasetValidationOperator(
        task_id="validate",
        report_path=str(report),
        data_docs_dir=str(tmp_path / "data-docs"),
        gx_project_dir=str(tmp_path / "gx"),
    )
    with caplog.at_level("WARNING"):
        lineage = operator.get_openlineage_facets_on_start()
    assert (lineage.inputs, lineage.outputs, lineage.run_facets) == ([], [], {})
    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert str(report) in logged and "ValidationError" in logged
    assert CANARIES[0] not in logged
