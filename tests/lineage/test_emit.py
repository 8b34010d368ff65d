"""Events written through the OpenLineage client's file transport: valid, ordered, best effort, value-free."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.lineage.build import lineage_for_report, lineage_for_start
from airflow_phi_guard.lineage.emit import emit_event, emit_run, new_run_id
from airflow_phi_guard.policy.loader import parse_policy
from airflow_phi_guard.report import Verdict
from tests.lineage.conftest import GOVERNED, POLICY_TEXT, SOURCE, make_report
from tests.lineage.openlineage_validation import validate_event, validate_event_lines


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _run(policy, path, verdict=Verdict.PUBLISHED, run_id=None) -> str:
    report = make_report(policy, verdict=verdict)
    return emit_run(
        lineage_for_start(policy, input_path=SOURCE, output_path=GOVERNED),
        lineage_for_report(report, policy),
        events_path=path,
        job_namespace="phi-guard",
        job_name="apply.readmission-risk",
        succeeded=report.published,
        run_id=run_id,
    )


@pytest.mark.parametrize(
    ("verdict", "closing"),
    [
        # A run is one START and then one of COMPLETE, ABORT or FAIL (OpenLineage RunEvent.eventType);
        # a refused run failed.
        (Verdict.PUBLISHED, "COMPLETE"),
        (Verdict.REFUSED, "FAIL"),
    ],
)
def test_a_run_appends_start_then_its_closing_event(policy, tmp_path, verdict, closing):
    path = tmp_path / "lineage" / "events.jsonl"
    run_id = _run(policy, path, verdict)
    events = _lines(path)
    assert [event["eventType"] for event in events] == ["START", closing]
    assert {event["run"]["runId"] for event in events} == {run_id}
    assert {(event["job"]["namespace"], event["job"]["name"]) for event in events} == {
        ("phi-guard", "apply.readmission-risk")
    }


@pytest.mark.parametrize("verdict", [Verdict.PUBLISHED, Verdict.REFUSED])
def test_every_event_and_facet_validates_against_its_schema(policy, tmp_path, verdict):
    path = tmp_path / "events.jsonl"
    _run(policy, path, verdict)
    for event in validate_event_lines(path):
        # Every facet these events carry has a local schema: official or phi-guard's.
        assert validate_event(event) == []


def test_the_policy_facet_is_on_start_and_on_the_closing_event(policy, tmp_path):
    path = tmp_path / "events.jsonl"
    _run(policy, path)
    assert all("phiGuard_policy" in event["run"]["facets"] for event in _lines(path))


def test_runs_append_to_the_same_log(policy, tmp_path):
    path = tmp_path / "events.jsonl"
    first, second = _run(policy, path), _run(policy, path)
    assert first != second
    assert [event["run"]["runId"] for event in _lines(path)] == [first, first, second, second]


def test_event_time_and_run_id_are_the_callers(policy, tmp_path):
    path = tmp_path / "events.jsonl"
    run_id = new_run_id()
    moment = datetime(2024, 6, 30, 12, 0, tzinfo=UTC)
    assert emit_event(
        "START",
        lineage_for_start(policy),
        events_path=path,
        job_namespace="phi-guard",
        job_name="apply",
        run_id=run_id,
        event_time=moment,
    )
    (event,) = _lines(path)
    assert (event["run"]["runId"], event["eventTime"]) == (run_id, "2024-06-30T12:00:00+00:00")
    assert event["job"]["facets"]["jobType"]["integration"] == "PHI_GUARD"


@pytest.mark.parametrize(
    ("case", "event_type", "events_path"),
    [
        # The log cannot be written: its path is a folder.
        ("unwritable", "START", "{tmp}"),
        # The event cannot be built: no such run state.
        ("bad event", "FINISHED", "{tmp}/events.jsonl"),
        # The run id is not a UUID, which the client refuses.
        ("bad run id", "START", "{tmp}/events.jsonl"),
    ],
)
def test_lineage_never_fails_the_caller(policy, tmp_path, caplog, case, event_type, events_path):
    run_id = "not-a-uuid" if case == "bad run id" else new_run_id()
    with caplog.at_level(logging.DEBUG, logger="airflow_phi_guard.lineage.emit"):
        written = emit_event(
            event_type,
            lineage_for_start(policy),
            events_path=events_path.format(tmp=tmp_path),
            job_namespace="phi-guard",
            job_name="apply",
            run_id=run_id,
        )
    assert written is False
    (warning,) = [record for record in caplog.records if record.levelno == logging.WARNING]
    # The warning names the exception class; the traceback is kept for DEBUG.
    assert warning.exc_info is None
    assert warning.getMessage().endswith("Error)")
    assert any(record.levelno == logging.DEBUG and record.exc_info for record in caplog.records)


def test_a_disabled_client_is_reported_not_silent(policy, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    path = tmp_path / "events.jsonl"
    with caplog.at_level(logging.WARNING, logger="airflow_phi_guard.lineage.emit"):
        written = emit_event(
            "START",
            lineage_for_start(policy),
            events_path=path,
            job_namespace="n",
            job_name="j",
            run_id=new_run_id(),
        )
    assert written is False
    assert not path.exists()
    assert "OPENLINEAGE_DISABLED" in caplog.text


# The canary test: a synthetic extract with a planted, unmistakable value in every column, governed by
# the real engine; none of those values may appear anywhere in the events. Reports never hold values,
# so this guards against a future facet that copies one.

CANARY_POLICY = POLICY_TEXT + '  NOTES:     {treatment: keep, justification: "free-text triage note"}\n'

CANARIES = {
    "PATIENT": ["patient-canary-0001", "patient-canary-0002", "patient-canary-0003"],
    "BIRTHDATE": ["1931-04-17", "1958-11-23", "1987-02-09"],
    "ZIP": ["68504-9137", "68131-4402", "69361-2210"],
    "START": ["2019-03-11T08:15:00", "2020-07-29T17:40:00", "2021-12-02T06:05:00"],
    "GENDER": ["gender-canary-q", "gender-canary-r", "gender-canary-s"],
    "SSN": ["999-41-7733", "999-52-8844", "999-63-9955"],
    "FIRST": ["Zebulonia", "Quintavius", "Marigoldine"],
    "DRIVERS": ["S99988877", "S99977766", "S99966655"],
    "NOTES": ["triage-canary-alpha", "triage-canary-beta", "triage-canary-gamma"],
}
REGISTRY_CANARY = "registry-reference-canary"
EMAIL_CANARY = "zebulonia.canary@example.org"


def _extract(tmp_path, notes: list[str]) -> tuple[str, str]:
    columns = dict(CANARIES, NOTES=notes)
    table = pa.table(
        {
            **{
                name: pa.array(values)
                for name, values in columns.items()
                if name not in ("BIRTHDATE", "START")
            },
            "BIRTHDATE": pa.array([date.fromisoformat(value) for value in columns["BIRTHDATE"]]),
            "START": pa.array(
                [datetime.fromisoformat(value) for value in columns["START"]], pa.timestamp("s")
            ),
        }
    )
    source = tmp_path / "extract.parquet"
    pq.write_table(table, source)
    registry = tmp_path / "consent.csv"
    rows = ["subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference"]
    rows += [
        f"{subject},research-authorization,model-training,2020-01-01,,,{REGISTRY_CANARY}-{index}"
        for index, subject in enumerate(CANARIES["PATIENT"])
    ]
    registry.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(source), str(registry)


@pytest.mark.parametrize(
    ("notes", "verdict"),
    [
        (CANARIES["NOTES"], Verdict.PUBLISHED),
        # An email hidden in a kept column refuses the run (issue 2, "What is refused").
        ([EMAIL_CANARY, *CANARIES["NOTES"][1:]], Verdict.REFUSED),
    ],
)
def test_no_cell_value_reaches_an_event(tmp_path, notes, verdict):
    from airflow_phi_guard.engine.executor import govern

    policy = parse_policy(CANARY_POLICY)
    source, registry = _extract(tmp_path, notes)
    output = tmp_path / "governed.parquet"
    result = govern(
        policy,
        source,
        output,
        consent=registry,
        as_of=date(2024, 6, 30),
        pseudonym_key=b"canary-test-key-0123456789abcdefghij",
    )
    assert result.report.verdict is verdict

    path = tmp_path / "events.jsonl"
    emit_run(
        lineage_for_start(policy, input_path=source, output_path=str(output), consent_registry=registry),
        lineage_for_report(result.report, policy, input_schema=result.plan.schema),
        events_path=path,
        job_namespace="phi-guard",
        job_name="apply.canary",
        succeeded=result.report.published,
    )
    text = path.read_text(encoding="utf-8")
    planted = [value for values in CANARIES.values() for value in values] + [EMAIL_CANARY, REGISTRY_CANARY]
    # Dates are checked by their date part too: a facet that printed a timestamp differently would still
    # give itself away.
    planted += [value[:10] for value in CANARIES["START"]]
    assert [value for value in planted if value in text] == []
    # The test is meaningful only if the events describe those columns at all.
    assert all(column in text for column in CANARIES)
    validate_event_lines(path)
