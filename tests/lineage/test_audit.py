"""The audit read back from events: what reached a model, what was stopped, and through which runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from airflow_phi_guard.lineage.audit import (
    AllModelsQuery,
    ColumnQuery,
    EventLogError,
    EventLogSource,
    EventSource,
    ModelQuery,
    WindowQuery,
    answer,
    audit_all,
    audit_column,
    audit_model,
    audit_window,
    parse_instant,
    read_events,
    render_column_text,
    render_json,
    render_text,
)
from airflow_phi_guard.lineage.build import lineage_for_report, lineage_for_start
from airflow_phi_guard.lineage.emit import emit_run
from airflow_phi_guard.policy.loader import parse_policy
from airflow_phi_guard.policy.models import Treatment
from airflow_phi_guard.report import ColumnDecision, Verdict
from tests.conftest import DEMO_POLICY
from tests.lineage.conftest import (
    COLUMNS,
    DEMO_AS_OF,
    GOVERNED,
    LITE_MODEL,
    POLICY_TEXT,
    SOURCE,
    T0,
    TRAINING_TIME,
    demo_policy_columns,
    make_report,
)
from tests.lineage.conftest import airflow_task_event as _airflow_task_event
from tests.lineage.conftest import append_events as _append

SOURCE_URI = f"file://{SOURCE}"


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
        # A training run takes its digest, bases, counts and method from the run that produced its input.
        assert runs[1].model_dump() == {
            **runs[0].model_dump(),
            "run_id": training["run"]["runId"],
            "event_time": training["eventTime"],
            "job": "default/phi_guard_readmission_training.train",
            "role": "consumer",
            "read_from": governance,
        }
        assert (runs[1].policy_digest, runs[1].consent_bases, runs[1].rows_admitted) == (
            policy.digest,
            ["research-authorization", "irb-waiver"],
            7,
        )

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
        # The issue's keys, and the digests of the policies of the runs (issue 6).
        assert set(document) == {"model", "reached", "stopped", "runs", "policy_digests"}
        assert document["policy_digests"] == [policy.digest]
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
            # issue 6: the job and its role, the policy, method, consent counts and risk of each run
            "job",
            "role",
            "read_from",
            "policy_name",
            "policy_version",
            "deidentification_method",
            "consent_as_of",
            "rows_read",
            "rows_excluded",
            "admitted_rows_by_basis",
            "admitted_subjects_by_basis",
            "risk",
            # the Safe Harbor verdict of the phiGuard_deidentification facet (issue 6)
            "safe_harbor_status",
            "safe_harbor_breaches",
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


class TestRunFigures:
    """Per run: the consent counts, the method and the policy, from the run's own facets (issue 6)."""

    def test_a_run_carries_its_consent_counts_method_and_policy(self, policy, events_path):
        _govern(policy, events_path)
        (run,) = audit_model(read_events(events_path), "readmission-risk").runs
        # make_report: 10 rows read, 7 admitted, 2 without a record and 1 opted out, judged at 2024-06-30
        assert (run.rows_read, run.rows_admitted, run.rows_excluded) == (
            10,
            7,
            {"no-record": 2, "opted-out": 1},
        )
        assert run.consent_as_of == "2024-06-30"
        assert (run.policy_name, run.policy_version) == ("readmission-risk", 1)
        assert run.deidentification_method == "expert-determination"

    def test_counts_per_basis_and_risk_are_absent_until_an_event_carries_them(self, policy, events_path):
        _govern(policy, events_path)
        (run,) = audit_model(read_events(events_path), "readmission-risk").runs
        assert (run.admitted_rows_by_basis, run.admitted_subjects_by_basis, run.risk) == (None, None, None)
        assert "not recorded" in render_text(audit_model(read_events(events_path), "readmission-risk"))

    @pytest.mark.parametrize(
        ("where", "risk"),
        [
            # A risk object in the policy facet, or a risk facet of its own: either is read.
            ("policy", {"k": 5, "classes": 120, "unique_share": 0.0, "missing": "null-is-a-value"}),
            ("facet", {"k": 11, "l": 2}),
        ],
    )
    def test_counts_per_basis_and_risk_are_read_when_present(self, policy, events_path, where, risk):
        _govern(policy, events_path)
        events = read_events(events_path)
        complete = events[-1]
        facets = complete["run"]["facets"]
        facets["phiGuard_consent"]["admittedRowsByBasis"] = {"research-authorization": 5, "irb-waiver": 2}
        facets["phiGuard_consent"]["admittedSubjectsByBasis"] = {"research-authorization": 3, "irb-waiver": 1}
        nested = {
            **risk,
            "perClass": [1, 2],
            "_producer": "x",
        }  # neither a list nor a private key is a figure
        if where == "policy":
            facets["phiGuard_policy"]["risk"] = nested
        else:
            facets["phiGuard_risk"] = nested
        (run,) = audit_model(events, "readmission-risk").runs
        assert run.admitted_rows_by_basis == {"research-authorization": 5, "irb-waiver": 2}
        assert run.admitted_subjects_by_basis == {"research-authorization": 3, "irb-waiver": 1}
        assert run.risk == risk

    def test_two_policy_versions_give_two_digests_in_order(self, policy, events_path):
        version_two = parse_policy(POLICY_TEXT.replace("version: 1", "version: 2"))
        _govern(policy, events_path, at=T0)
        _govern(version_two, events_path, at=T0 + timedelta(hours=2))
        audit = audit_model(read_events(events_path), "readmission-risk")
        assert audit.policy_digests == [policy.digest, version_two.digest]


class TestWindow:
    """--since/--until: what reached any model through runs completed in [since, until)."""

    @pytest.fixture
    def two_runs(self, policy, events_path):
        """Run 1 completes at T0+1min, run 2 (another model) at T0+2h+1min, a training run on run 1's set at
        T0+5h."""
        other = parse_policy(
            POLICY_TEXT.replace("name: readmission-risk\n", "name: sepsis-alert\n").replace(
                'model: {name: readmission-risk, version: "1"}', 'model: {name: sepsis-alert, version: "3"}'
            )
        )
        first = _govern(policy, events_path, at=T0)
        second = _govern(
            other, events_path, governed="/data/governed/sepsis.parquet", at=T0 + timedelta(hours=2)
        )
        training = _airflow_task_event(at=T0 + timedelta(hours=5))
        _append(events_path, training)
        return first, second, training["run"]["runId"]

    @pytest.mark.parametrize(
        ("since", "until", "expected"),
        [
            # (hours after T0 or None, expected {model: run roles})
            (None, None, {"readmission-risk": ["governance", "consumer"], "sepsis-alert": ["governance"]}),
            (0, 1, {"readmission-risk": ["governance"]}),
            (1, 3, {"sepsis-alert": ["governance"]}),
            # the training run in the window: the model was trained on run 1's output then
            (4, 6, {"readmission-risk": ["consumer"]}),
            (6, None, {}),
            # the bound is the COMPLETE time, T0+1min: a window ending at it excludes the run
            (None, 1 / 60, {}),
        ],
    )
    def test_models_and_runs_in_the_window(self, two_runs, events_path, since, until, expected):
        at = lambda hours: None if hours is None else T0 + timedelta(hours=hours)  # noqa: E731
        answer = audit_window(read_events(events_path), at(since), at(until))
        assert {model.model.name: [run.role for run in model.runs] for model in answer.models} == expected

    def test_a_training_run_in_the_window_brings_the_columns_of_what_it_read(self, two_runs, events_path):
        first, _second, training = two_runs
        answer = audit_window(read_events(events_path), T0 + timedelta(hours=4), None)
        (model,) = answer.models
        assert [(run.run_id, run.read_from) for run in model.runs] == [(training, first)]
        # what POLICY_TEXT lets through, as TestReached has it
        assert {c.column for c in model.reached} == {"BIRTHDATE", "GENDER", "PATIENT", "START", "ZIP"}
        assert {c.column for c in model.stopped} == {"DRIVERS", "FIRST", "SSN"}

    def test_an_event_without_a_readable_time_is_in_no_bounded_window(self, policy, events_path):
        _govern(policy, events_path)
        events = read_events(events_path)
        for event in events:
            event["eventTime"] = "soon"
        assert audit_window(events, T0 - timedelta(days=1), None).models == []
        assert len(audit_window(events, None, None).models) == 1

    @pytest.mark.parametrize(
        ("text", "end", "expected"),
        [
            # a date starts at its midnight in UTC; as the end of a window, the day is included
            ("2026-12-01", False, datetime(2026, 12, 1, tzinfo=UTC)),
            ("2026-12-31", True, datetime(2027, 1, 1, tzinfo=UTC)),
            # a timestamp is that instant; without an offset, UTC
            ("2026-12-01T10:30:00+02:00", True, datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
            ("2026-12-01T10:30:00", False, datetime(2026, 12, 1, 10, 30, tzinfo=UTC)),
        ],
    )
    def test_window_bounds(self, text, end, expected):
        assert parse_instant(text, end=end) == expected

    def test_json_names_the_window(self, two_runs, events_path):
        document = json.loads(render_json(audit_window(read_events(events_path), T0, None)))
        assert document["since"] == T0.isoformat() and document["until"] is None
        assert [model["model"]["name"] for model in document["models"]] == [
            "readmission-risk",
            "sepsis-alert",
        ]


class TestColumn:
    """--dataset/--column: every model a source column reached, in which treatment, through which runs."""

    @pytest.fixture
    def two_models(self, policy, events_path):
        """readmission-risk keeps ZIP as zip3; sepsis-alert drops ZIP and keeps GENDER (from one source)."""
        other = parse_policy(
            POLICY_TEXT.replace("name: readmission-risk\n", "name: sepsis-alert\n").replace(
                'model: {name: readmission-risk, version: "1"}', 'model: {name: sepsis-alert, version: "3"}'
            )
        )
        zip_dropped = [
            column
            if column.source != "ZIP"
            else ColumnDecision(
                source="ZIP", output=None, identifier=column.identifier, treatment=Treatment.DROP
            )
            for column in COLUMNS
        ]
        first = _govern(policy, events_path)
        second = _govern(
            other,
            events_path,
            governed="/data/governed/sepsis.parquet",
            columns=zip_dropped,
            at=T0 + timedelta(hours=1),
        )
        training = _airflow_task_event(at=T0 + timedelta(hours=2))
        _append(events_path, training)
        return first, second, training["run"]["runId"]

    def test_a_column_reached_one_model_and_was_stopped_before_the_other(self, two_models, events_path):
        first, _second, training = two_models
        answer = audit_column(read_events(events_path), SOURCE_URI, "ZIP")
        assert (answer.dataset, answer.column, answer.identifier) == (SOURCE_URI, "ZIP", "B")
        assert [(r.model.name, r.model.version, r.treatment, r.output_column) for r in answer.reached] == [
            ("readmission-risk", "1", "zip3", "ZIP")
        ]
        # the governance run, then the training run that read its output
        assert [(run.run_id, run.role) for run in answer.reached[0].runs] == [
            (first, "governance"),
            (training, "consumer"),
        ]
        assert [(model.name, model.version) for model in answer.stopped] == [("sepsis-alert", "3")]

    def test_a_column_every_model_dropped_reached_none(self, two_models, events_path):
        answer = audit_column(read_events(events_path), SOURCE_URI, "SSN")
        assert answer.reached == []
        assert [model.name for model in answer.stopped] == ["readmission-risk", "sepsis-alert"]
        assert "It reached no model" in render_column_text(answer)

    def test_a_column_kept_by_both_models_lists_both(self, two_models, events_path):
        answer = audit_column(read_events(events_path), SOURCE_URI, "GENDER")
        assert [(r.model.name, r.treatment) for r in answer.reached] == [
            ("readmission-risk", "keep"),
            ("sepsis-alert", "keep"),
        ]
        assert answer.stopped == []

    @pytest.mark.parametrize("name", [SOURCE_URI, SOURCE, f"file/{SOURCE}", f"file://{SOURCE}"])
    def test_the_dataset_may_be_named_as_uri_path_or_namespace_and_name(self, two_models, events_path, name):
        assert audit_column(read_events(events_path), name, "ZIP").reached

    def test_another_dataset_or_an_unknown_column_reaches_nothing(self, two_models, events_path):
        events = read_events(events_path)
        assert audit_column(events, "file:///data/other.parquet", "ZIP").reached == []
        # names are exact: the column is ZIP, not zip
        assert audit_column(events, SOURCE_URI, "zip").reached == []


class TestEventLogSource:
    def test_answer_reads_the_log_for_each_query(self, policy, events_path):
        _govern(policy, events_path)
        source = EventLogSource((events_path,))
        assert isinstance(source, EventSource)
        assert answer(source, ModelQuery("readmission-risk")) == audit_model(
            read_events(events_path), "readmission-risk"
        )
        assert [a.model.name for a in answer(source, AllModelsQuery())] == ["readmission-risk"]
        assert answer(source, ColumnQuery(SOURCE_URI, "ZIP")).reached
        assert answer(source, WindowQuery(T0, None)).models

    def test_the_same_event_in_two_logs_is_one_run(self, policy, tmp_path, events_path):
        _govern(policy, events_path)
        copy = tmp_path / "copy.jsonl"
        copy.write_text(events_path.read_text(encoding="utf-8"), encoding="utf-8")
        (run,) = answer(EventLogSource((events_path, copy)), ModelQuery("readmission-risk")).runs
        assert run.rows_admitted == 7


class TestDemo:
    def test_the_model_audit_answers_the_demo_policy(self, demo_lineage):
        audit = audit_model(read_events(demo_lineage.events), "readmission-risk", "1")
        kept, dropped = demo_policy_columns()
        assert {(c.column, c.treatment, c.output_column) for c in audit.reached} == kept
        assert {c.column for c in audit.stopped} == dropped
        assert {c.dataset for c in [*audit.reached, *audit.stopped]} == {f"file://{demo_lineage.extract}"}
        # identifier letters of REGULATORY.md's table: dates C, geography B, SSN G, names A
        letters = {c.column: c.identifier for c in [*audit.reached, *audit.stopped]}
        assert (letters["BIRTHDATE"], letters["ZIP"], letters["SSN"], letters["FIRST"]) == (
            "C",
            "B",
            "G",
            "A",
        )

    def test_the_model_audit_gives_each_run_its_consent_counts_method_and_digest(self, demo_lineage):
        audit = audit_model(read_events(demo_lineage.events), "readmission-risk", "1")
        policy = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))
        report = demo_lineage.report
        governance, training = audit.runs
        assert (governance.role, training.role) == ("governance", "consumer")
        assert training.run_id == demo_lineage.training_run and training.read_from == governance.run_id
        assert training.event_time == TRAINING_TIME
        for run in (governance, training):
            assert run.consent_bases == policy["consent"]["bases"]
            assert run.deidentification_method == policy["deidentification"]["method"]
            assert run.policy_digest == report["policy"]["digest"]
            assert run.consent_as_of == DEMO_AS_OF
            # the README's demo: 7,584 encounters read, each admitted or excluded under one reason
            assert run.rows_read == 7584
            assert run.rows_admitted + sum(run.rows_excluded.values()) == 7584
            assert (run.rows_admitted, run.rows_excluded) == (
                report["rows"]["admitted"],
                report["rows"]["excluded"],
            )
        assert audit.policy_digests == [report["policy"]["digest"]]

    def test_the_model_audit_reads_risk_and_the_safe_harbor_verdict(self, demo_lineage, capsys):
        """From the demo policy: k-anonymity over its quasi-identifiers with suppression below k_min, so
        the published k is at least k_min; Safe Harbor with a recorded attestation, so the verdict is met
        (164.514(b)(2)(ii))."""
        from airflow_phi_guard.cli import main

        policy = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))["deidentification"]
        governance, training = audit_model(read_events(demo_lineage.events), "readmission-risk", "1").runs
        for run in (governance, training):
            assert run.risk["kMin"] == policy["k_min"] and run.risk["belowK"] == policy["below_k"]
            assert run.risk["k"] >= policy["k_min"]
            assert run.risk["classesBelowK"] >= 0 and run.risk["classes"] >= 1
            assert (run.safe_harbor_status, run.safe_harbor_breaches) == ("met", 0)
        capsys.readouterr()
        assert main(["audit", "--events", str(demo_lineage.events), "--model", "readmission-risk:1"]) == 0
        text = capsys.readouterr().out
        assert "not recorded" not in text
        assert "kMin" in text and "Safe Harbor" in text and " met" in text

    @pytest.mark.parametrize(
        ("column", "reached", "stopped"),
        [
            # From the two policy files: the demo keeps ZIP as ZIP3 (zip3), the lite policy drops it;
            # both turn BIRTHDATE into AGE and replace PATIENT by a surrogate code; both drop SSN and FIRST.
            ("ZIP", {("readmission-risk", "1", "zip3", "ZIP3")}, {LITE_MODEL}),
            (
                "BIRTHDATE",
                {("readmission-risk", "1", "age", "AGE"), (*LITE_MODEL, "age", "AGE")},
                set(),
            ),
            (
                "PATIENT",
                {
                    ("readmission-risk", "1", "surrogate", "PATIENT_KEY"),
                    (*LITE_MODEL, "surrogate", "PATIENT_KEY"),
                },
                set(),
            ),
            ("SSN", set(), {("readmission-risk", "1"), LITE_MODEL}),
            ("FIRST", set(), {("readmission-risk", "1"), LITE_MODEL}),
        ],
    )
    def test_the_column_audit_answers_the_demo_policies(self, demo_lineage, column, reached, stopped):
        answer = audit_column(read_events(demo_lineage.events), f"file://{demo_lineage.extract}", column)
        assert {
            (r.model.name, r.model.version, r.treatment, r.output_column) for r in answer.reached
        } == reached
        assert {(model.name, model.version) for model in answer.stopped} == stopped
        for reach in answer.reached:
            # the training run read only the demo model's set
            consumers = [run.run_id for run in reach.runs if run.role == "consumer"]
            assert consumers == (
                [demo_lineage.training_run] if reach.model.name == "readmission-risk" else []
            )

    def test_the_window_audit_answers_the_demo(self, demo_lineage):
        events = read_events(demo_lineage.events)
        kept, _dropped = demo_policy_columns()
        before_training = audit_window(events, None, datetime.fromisoformat(TRAINING_TIME))
        assert {(m.model.name, m.model.version) for m in before_training.models} == {
            ("readmission-risk", "1"),
            LITE_MODEL,
        }
        # only the training run is in a window around it; what it trained on is the demo policy's columns
        (training,) = audit_window(events, datetime.fromisoformat(TRAINING_TIME), None).models
        assert [run.role for run in training.runs] == ["consumer"]
        assert {(c.column, c.treatment, c.output_column) for c in training.reached} == kept

    def test_the_command_answers_all_three_queries(self, demo_lineage, capsys):
        from airflow_phi_guard.cli import main

        def audit(*options: str) -> str:
            capsys.readouterr()
            assert main(["audit", "--events", str(demo_lineage.events), *options]) == 0
            return capsys.readouterr().out

        kept, _dropped = demo_policy_columns()
        model = json.loads(audit("--model", "readmission-risk:1", "--format", "json"))
        assert {(c["column"], c["treatment"], c["output_column"]) for c in model["reached"]} == kept
        column = json.loads(
            audit("--dataset", str(demo_lineage.extract), "--column", "ZIP", "--format", "json")
        )
        assert [(r["model"]["name"], r["treatment"]) for r in column["reached"]] == [
            ("readmission-risk", "zip3")
        ]
        window = json.loads(audit("--since", TRAINING_TIME, "--format", "json"))
        assert [m["model"]["name"] for m in window["models"]] == ["readmission-risk"]
        # a window with --model keeps that model only; --until a date includes that day
        both = json.loads(audit("--until", "2029-12-31", "--model", LITE_MODEL[0], "--format", "json"))
        assert [m["model"]["name"] for m in both["models"]] == [LITE_MODEL[0]]
        text = audit("--dataset", f"file://{demo_lineage.extract}", "--column", "ZIP")
        assert "readmission-risk" in text and "zip3" in text and "Stopped before" in text
        assert "Window from" in audit("--since", "2029-01-01")

    @pytest.mark.parametrize(
        "options",
        [
            ["--dataset", "x.parquet"],
            ["--column", "ZIP"],
            ["--dataset", "x.parquet", "--column", "ZIP", "--model", "readmission-risk"],
            ["--dataset", "x.parquet", "--column", "ZIP", "--since", "2026-01-01"],
        ],
    )
    def test_the_command_refuses_mismatched_options(self, demo_lineage, options, capsys):
        from airflow_phi_guard.cli import main

        assert main(["audit", "--events", str(demo_lineage.events), *options]) == 2

    @pytest.mark.parametrize(
        "options", [["--since", "last tuesday"], [], ["--events", "a", "--archive", "b"]]
    )
    def test_the_command_refuses_a_bad_window_or_source(self, options, tmp_path):
        from airflow_phi_guard.cli import main

        base = [] if "--events" in options or not options else ["--events", str(tmp_path / "e.jsonl")]
        assert main(["audit", *base, *options]) == 2
