"""The event validator itself: it must reject what the schemas reject, or the lineage tests prove nothing."""

from __future__ import annotations

import copy

import pytest

from airflow_phi_guard.lineage.build import lineage_for_report
from airflow_phi_guard.lineage.emit import emit_run
from tests.lineage.conftest import make_report
from tests.lineage.openlineage_validation import EventValidationError, validate_event, validate_event_lines


@pytest.fixture
def complete_event(policy, tmp_path) -> dict:
    lineage = lineage_for_report(make_report(policy), policy)
    path = tmp_path / "events.jsonl"
    emit_run(lineage, lineage, events_path=path, job_namespace="phi-guard", job_name="apply", succeeded=True)
    return validate_event_lines(path)[1]


def _broken(event: dict, change) -> dict:
    event = copy.deepcopy(event)
    change(event)
    return event


def _output_facets(event: dict) -> dict:
    return event["outputs"][0]["facets"]


@pytest.mark.parametrize(
    ("case", "change", "message"),
    [
        # The envelope, against the core RunEvent.
        ("no run", lambda e: e.pop("run"), "'run' is a required property"),
        ("run id not a UUID", lambda e: e["run"].update(runId="run-1"), "is not a 'uuid'"),
        ("event time without time", lambda e: e.update(eventTime="2024-06-30"), "is not a 'date-time'"),
        ("unknown event type", lambda e: e.update(eventType="DONE"), "is not one of"),
        # A standard facet, against its official schema.
        (
            "schema field without name",
            lambda e: _output_facets(e)["schema"]["fields"][0].pop("name"),
            "'name'",
        ),
        ("lineage without fields", lambda e: _output_facets(e)["columnLineage"].pop("fields"), "'fields'"),
        # A phiGuard facet, against ours.
        (
            "unknown letter",
            lambda e: _output_facets(e)["phiGuard_columns"]["columns"][0].update(identifier="Z"),
            "'Z'",
        ),
        ("undeclared field", lambda e: _output_facets(e)["phiGuard_columns"].update(values=["x"]), "values"),
        ("bad digest", lambda e: e["run"]["facets"]["phiGuard_policy"].update(digest="md5:1"), "md5:1"),
        ("unknown reason", lambda e: e["run"]["facets"]["phiGuard_consent"]["excluded"].update(why=1), "why"),
        ("no _producer", lambda e: e["run"]["facets"]["phiGuard_policy"].pop("_producer"), "_producer"),
        # A phiGuard facet whose schema is not one we ship.
        (
            "foreign schema URL",
            lambda e: e["run"]["facets"]["phiGuard_policy"].update(_schemaURL="https://example.org/x.json"),
            "not a shipped phi-guard schema",
        ),
        # A facet under a key its schema does not give it.
        (
            "wrong key",
            lambda e: _output_facets(e).update(lineage=_output_facets(e).pop("columnLineage")),
            "not lineage",
        ),
    ],
)
def test_a_broken_event_is_rejected(complete_event, case, change, message):
    validate_event(complete_event)
    with pytest.raises(EventValidationError) as raised:
        validate_event(_broken(complete_event, change))
    assert message in str(raised.value)


def test_a_facet_with_a_foreign_schema_is_reported_unchecked(complete_event):
    event = _broken(
        complete_event,
        lambda e: e["run"]["facets"].update(
            airflow={
                "_producer": "https://airflow.apache.org",
                "_schemaURL": "https://example.org/AirflowRunFacet.json",
            }
        ),
    )
    assert validate_event(event) == ["run.facets.airflow"]
