"""The audit read back from events: what reached a model, what was stopped, and through which runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_phi_guard.lineage.audit import (
    EventLogError,
    audit_all,
    audit_model,
    read_events,
    render_json,
    render_text,
)
from airflow_phi_guard.lineage.build import lineage_for_report, lineage_for_start
from airflow_phi_guard.lineage.emit import emit_run, new_run_id
from airflow_phi_guard.policy.loader import parse_policy
from airflow_phi_guard.policy.models import Treatment
from airflow_phi_guard.report import ColumnDecision, Verdict
from tests.lineage.conftest import COLUMNS, GOVERNED, POLICY_TEXT, SOURCE, make_report

T0 = datetime(2024, 7, 1, 9, 0, tzinfo=UTC)
SOURCE_URI = f"file://{SOURCE}"
MODEL_FILE = "/data/models/readmission-risk.pkl"


def _govern(policy, path, *, at=T0, **report_args) -> str:
    """Emit a governance run of ``policy`` (START, then COMPLETE or FAIL) and return its run id."""
    report = make_report(policy, **report_args)
    return emit_run(
        lineage_for_start(policy, input_path=report.input, output_path=report.output),
        lineage_for_report(report, policy),
        events_path=path,
        job_namespace="phi-guard",
        job_name=f"apply.{policy.name}",
        succeeded=report.published,
        started_at=at,
        ended_at=at + timedelta(minutes=1),
    )


def _airflow_task_event(
    event_type="COMPLETE", *, at=T0 + timedelta(hours=1), inputs=None, run_id=None
) -> dict:
    """A task event as the Airflow OpenLineage provider writes it, with facets the audit does not know."""
    return {
        "eventType": event_type,
        "eventTime": at.isoformat(),
        "producer": "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {
            "runId": run_id or new_run_id(),
            "facets": {
                "airflow": {"_producer": "x", "_schemaURL": "y", "dag": {"dag_id": "d"}, "task": [1, 2]},
                "processing_engine": {"name": "Airflow", "version": "3.3.2"},
            },
        },
        "job": {"namespace": "default", "name": "phi_guard_readmission_training.train"},
        "inputs": [{"namespace": "file", "name": GOVERNED, "facets": {}}] if inputs is None else inputs,
        "outputs": [{"namespace": "file", "name": MODEL_FILE}],
    }


def _append(path, *events) -> None:
    with path.open("a", encoding="utf-8") as stream:
        for event in events:
            stream.write(json.dumps(event) + "\n")


@pytest.fixture
def events_path(tmp_path):
    return tmp_path / "events.jsonl"


class TestReached:
    def test_reached_columns_are_the_published_ones_with_treatment_and_output_name(self, policy, events_path):
        _govern(policy, events_path)
        audit = audit_model(read_events(events_path), "readmission-risk")
        assert [(c.dataset, c.column, c.identifier, c.treatment, c.output_column) for c in audit.reached] == [
            # The issue's example answer: BIRTHDATE as AGE, ZIP as ZIP3, PATIENT pseudonymized.
            (SOURCE_URI, "BIRTHDATE", "C", "age", "AGE"),
            (SOURCE_URI, "GENDER", None, "keep", "GENDER"),
            (SOURCE_URI, "PATIENT", "R", "pseudonymize", "PATIENT"),
            (SOURCE_URI, "START", "C", "year", "START_YEAR"),
            (SOURCE_URI, "ZIP", "B", "zip3", "ZIP"),
        ]

    def test_stopped_columns_are_the_dropped_ones_undeclared_included(self, policy, events_path):
        _govern(policy, events_path)
        audit = audit_model(read_events(events_path), "readmission-risk")
        assert [(c.dataset, c.column, c.identifier) for c in audit.stopped] == [
            (SOURCE_URI, "DRIVERS", "K"),
            (SOURCE_URI, "FIRST", "A"),
            (SOURCE_URI, "SSN", "G"),
        ]

    def test_the_model_is_named_with_its_version(self, policy, events_path):
        _govern(policy, events_path)
        audit = audit_model(read_events(events_path), "readmission-risk")
        assert (audit.model.name, audit.model.version) == ("readmission-risk", "1")

    def test_a_governed_set_reaches_its_model_before_any_training_run(self, policy, events_path):
        run_id = _govern(policy, events_path)
        (run,) = audit_model(read_events(events_path), "readmission-risk").runs
        assert (run.run_id, run.policy_digest, run.consent_bases, run.rows_admitted) == (
            run_id,
            policy.digest,
            ["research-authorization", "irb-waiver"],
            7,
        )
        # The time of the COMPLETE event, not of START.
        assert run.event_time == (T0 + timedelta(minutes=1)).isoformat()


class TestRefused:
    def test_a_refused_run_reaches_nothing(self, policy, events_path):
        run_id = _govern(policy, events_path, verdict=Verdict.REFUSED)
        audit = audit_model(read_events(events_path), "readmission-risk")
        assert (audit.reached, audit.stopped, audit.runs) == ([], [], [])
        assert audit.refused_runs == [run_id]
        assert "reached nothing" in render_text(audit)

    def test_a_refused_run_adds_nothing_to_a_published_one(self, policy, events_path):
        published = _govern(policy, events_path)
        _govern(policy, events_path, verdict=Verdict.REFUSED, at=T0 + timedelta(hours=2))
        audit = audit_model(read_events(events_path), "readmission-risk")
        assert [run.run_id for run in audit.runs] == [published]

    def test_a_published_verdict_on_a_fail_event_reaches_nothing(self, policy, events_path):
        """Only COMPLETE events count: a run that failed after deciding is not known to have published."""
        report = make_report(policy)
        emit_run(
            lineage_for_start(policy),
            lineage_for_report(report, policy),
            events_path=events_path,
            job_namespace="phi-guard",
            job_name="apply",
            succeeded=False,
        )
        assert audit_model(read_events(events_path), "readmission-risk").reached == []


class TestTrainingRuns:
    def test_a_training_run_that_read_the_governed_set_is_listed(self, policy, events_path):
        governance = _govern(policy, events_path)
        training = _airflow_task_event()
        _append(events_path, _airflow_task_event("START", run_id=training["run"]["runId"]), training)
        runs = audit_model(read_events(events_path), "readmission-risk").runs
        assert [run.run_id for run in runs] == [governance, training["run"]["runId"]]
        # A training run takes its digest, bases and admitted rows from the run that produced its input.
        assert runs[1].model_dump() == {
            "run_id": training["run"]["runId"],
            "event_time": training["eventTime"],
            "policy_digest": policy.digest,
            "consent_bases": ["research-authorization", "irb-waiver"],
            "rows_admitted": 7,
        }

    def test_a_training_run_on_another_dataset_is_not_listed(self, policy, events_path):
        governance = _govern(policy, events_path)
        _append(
            events_path, _airflow_task_event(inputs=[{"namespace": "file", "name": "/data/other.parquet"}])
        )
        assert [run.run_id for run in audit_model(read_events(events_path), "readmission-risk").runs] == [
            governance
        ]

    def test_a_run_that_only_read_the_set_and_wrote_nothing_is_not_listed(self, policy, events_path):
        # a validation task reads the governed set but makes nothing from it that could reach a model
        governance = _govern(policy, events_path)
        validation = _airflow_task_event()
        validation["outputs"] = []
        _append(events_path, validation)
        assert [run.run_id for run in audit_model(read_events(events_path), "readmission-risk").runs] == [
            governance
        ]

    def test_a_failed_training_run_is_not_listed(self, policy, events_path):
        governance = _govern(policy, events_path)
        _append(events_path, _airflow_task_event("FAIL"))
        assert [run.run_id for run in audit_model(read_events(events_path), "readmission-risk").runs] == [
            governance
        ]

    def test_the_link_survives_percent_encoding_of_the_name(self, policy, tmp_path, events_path):
        governed = "/data/governed/readmission risk.parquet"
        _govern(policy, events_path, governed=governed)
        encoded = [{"namespace": "file", "name": governed.replace(" ", "%20")}]
        training = _airflow_task_event(inputs=encoded)
        _append(events_path, training)
        runs = audit_model(read_events(events_path), "readmission-risk").runs
        assert training["run"]["runId"] in [run.run_id for run in runs]

    def test_a_training_run_is_attributed_to_the_latest_run_that_wrote_its_input(self, policy, events_path):
        """Two governance runs wrote the same file under different policy versions; each training run read
        the file as it was at its time."""
        version_two = parse_policy(POLICY_TEXT.replace("version: 1", "version: 2"))
        _govern(policy, events_path, at=T0)
        early = _airflow_task_event(at=T0 + timedelta(hours=1))
        _append(events_path, early)
        _govern(version_two, events_path, at=T0 + timedelta(hours=2))
        late = _airflow_task_event(at=T0 + timedelta(hours=3))
        _append(events_path, late)
        digests = {
            run.run_id: run.policy_digest
            for run in audit_model(read_events(events_path), "readmission-risk").runs
        }
        assert digests[early["run"]["runId"]] == policy.digest
        assert digests[late["run"]["runId"]] == version_two.digest


class TestSeveralRuns:
    def test_reached_is_the_union_and_a_column_reached_anywhere_is_not_stopped(self, policy, events_path):
        first_kept = [
            column
            if column.source != "FIRST"
            else ColumnDecision(
                source="FIRST", output="FIRST", identifier=column.identifier, treatment=Treatment.KEEP
            )
            for column in COLUMNS
        ]
        _govern(policy, events_path)
        _govern(policy, events_path, columns=first_kept, at=T0 + timedelta(hours=1))
        audit = audit_model(read_events(events_path), "readmission-risk")
        assert ("FIRST", "keep", "FIRST") in {(c.column, c.treatment, c.output_column) for c in audit.reached}
        assert [c.column for c in audit.stopped] == ["DRIVERS", "SSN"]
        assert len(audit.runs) == 2

    def test_the_same_column_in_two_runs_is_listed_once(self, policy, events_path):
        _govern(policy, events_path)
        _govern(policy, events_path, at=T0 + timedelta(hours=1))
        audit = audit_model(read_events(events_path), "readmission-risk")
        assert len(audit.reached) == 5
        assert len(audit.stopped) == 3


class TestModels:
    @pytest.fixture
    def two_models(self, policy, events_path):
        other = parse_policy(
            POLICY_TEXT.replace("name: readmission-risk\n", "name: sepsis-alert\n").replace(
                'model: {name: readmission-risk, version: "1"}', 'model: {name: sepsis-alert, version: "3"}'
            )
        )
        _govern(policy, events_path)
        _govern(other, events_path, governed="/data/governed/sepsis.parquet", at=T0 + timedelta(hours=1))
        return read_events(events_path)

    def test_another_models_runs_do_not_count(self, two_models):
        audit = audit_model(two_models, "readmission-risk")
        assert len(audit.runs) == 1
        assert {run.policy_digest for run in audit.runs} != {
            run.policy_digest for run in audit_model(two_models, "sepsis-alert").runs
        }

    def test_a_version_selects_only_its_runs(self, two_models):
        assert audit_model(two_models, "sepsis-alert", "3").runs
        assert audit_model(two_models, "sepsis-alert", "4").runs == []

    def test_audit_all_lists_every_model(self, two_models):
        assert [(audit.model.name, audit.model.version) for audit in audit_all(two_models)] == [
            ("readmission-risk", "1"),
            ("sepsis-alert", "3"),
        ]

    def test_an_unknown_model_is_said_to_be_unknown(self, two_models):
        audit = audit_model(two_models, "no-such-model")
        assert (audit.known, audit.reached, audit.stopped, audit.runs) == (False, [], [], [])
        assert "No governance run" in render_text(audit)


@pytest.mark.parametrize(
    "event",
    [
        # Events from other producers, or broken ones: the audit reads what it needs and ignores the rest.
        {},
        {"eventType": "COMPLETE"},
        {"eventType": "COMPLETE", "run": "not an object"},
        {"eventType": "COMPLETE", "run": {"runId": 7}},
        {"eventType": "COMPLETE", "run": {"runId": "r1", "facets": {"phiGuard_policy": "text"}}},
        {"eventType": "COMPLETE", "run": {"runId": "r2", "facets": {"phiGuard_policy": {"model": 3}}}},
        {
            "eventType": "COMPLETE",
            "run": {
                "runId": "r3",
                "facets": {"phiGuard_policy": {"verdict": "published", "model": {"name": "m"}}},
            },
            "outputs": [
                {"namespace": "file", "name": "/x", "facets": {"phiGuard_columns": {"columns": [None, 1]}}}
            ],
        },
        {"eventType": "COMPLETE", "run": {"runId": "r4"}, "inputs": "not a list"},
        {
            "eventType": "COMPLETE",
            "run": {"runId": "r5"},
            "inputs": [None, {"namespace": 1}],
            "eventTime": "soon",
        },
        {
            "eventType": "COMPLETE",
            "run": {"runId": "r6"},
            "inputs": [{"namespace": "file", "name": GOVERNED}],
        },
        {"eventType": "COMPLETE", "run": {"runId": "r7"}, "eventTime": "2024-07-01T10:00:00", "inputs": []},
    ],
)
def test_foreign_or_broken_events_never_crash_the_audit(policy, events_path, event):
    _govern(policy, events_path)
    _append(events_path, event)
    events = read_events(events_path)
    audit = audit_model(events, "readmission-risk")
    assert len(audit.reached) == 5
    audit_all(events)
    render_text(audit)


class TestReadEvents:
    def test_blank_lines_are_skipped(self, tmp_path):
        path = tmp_path / "events.jsonl"
        path.write_text('\n{"a": 1}\n   \n{"b": 2}\n\n', encoding="utf-8")
        assert read_events(path) == [{"a": 1}, {"b": 2}]

    def test_a_broken_line_is_named_by_its_number(self, tmp_path):
        path = tmp_path / "events.jsonl"
        path.write_text('{"a": 1}\n\n{"b": "canary-value\n', encoding="utf-8")
        with pytest.raises(EventLogError) as raised:
            read_events(path)
        assert raised.value.line == 3
        assert f"{path}:3:" in str(raised.value)
        # The line's content is not repeated: an event log is not supposed to hold values, but a broken
        # line may be anything.
        assert "canary-value" not in str(raised.value)

    def test_a_line_that_is_not_an_object_is_an_error(self, tmp_path):
        path = tmp_path / "events.jsonl"
        path.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
        with pytest.raises(EventLogError, match=":2: a JSON list"):
            read_events(path)

    def test_a_missing_log_is_an_error(self, tmp_path):
        with pytest.raises(EventLogError, match="cannot read the event log"):
            read_events(tmp_path / "missing.jsonl")

    def test_the_error_is_a_value_error(self):
        assert issubclass(EventLogError, ValueError)


class TestRendering:
    def test_audit_json_has_exactly_the_issue_s_keys(self, policy, events_path):
        _govern(policy, events_path)
        _append(events_path, _airflow_task_event())
        document = json.loads(render_json(audit_model(read_events(events_path), "readmission-risk")))
        assert set(document) == {"model", "reached", "stopped", "runs"}
        assert set(document["model"]) == {"name", "version"}
        assert {key for column in document["reached"] for key in column} == {
            "dataset",
            "column",
            "identifier",
            "treatment",
            "output_column",
        }
        assert {key for column in document["stopped"] for key in column} == {
            "dataset",
            "column",
            "identifier",
        }
        assert {key for run in document["runs"] for key in run} == {
            "run_id",
            "event_time",
            "policy_digest",
            "consent_bases",
            "rows_admitted",
        }

    def test_json_of_several_audits_is_a_list(self, policy, events_path):
        _govern(policy, events_path)
        document = json.loads(render_json(audit_all(read_events(events_path))))
        assert [audit["model"]["name"] for audit in document] == ["readmission-risk"]

    def test_text_shows_reached_and_stopped_columns_and_runs(self, policy, events_path):
        run_id = _govern(policy, events_path)
        text = render_text(audit_model(read_events(events_path), "readmission-risk"))
        for expected in (
            "readmission-risk version 1",
            "BIRTHDATE",
            "AGE",
            "pseudonymize",
            "zip3",
            "SSN",
            run_id,
        ):
            assert expected in text
        assert "social security numbers" in text
        assert "not legal advice" in text
