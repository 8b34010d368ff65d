"""The training-data datasheet (EU AI Act Article 10, Annex IV(2)(d)) built from lineage alone: the demo's
answers come from its policy file and from events the product wrote; nothing from the data gets in."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime

import pytest
import yaml

from airflow_phi_guard.cli import main
from airflow_phi_guard.exceptions import ModelNotInLineageError
from airflow_phi_guard.lineage.archive import LineageArchive
from airflow_phi_guard.lineage.audit import ModelQuery, read_events
from airflow_phi_guard.lineage.build import validation_lineage
from airflow_phi_guard.lineage.datasheet import (
    NOT_RECORDED,
    build_datasheet,
    md,
    render_html,
    render_markdown,
)
from airflow_phi_guard.lineage.emit import emit_run
from airflow_phi_guard.quality.validate import ExpectationOutcome, ValidationStatistics, ValidationSummary
from tests.cli_fixtures import (
    MODEL_NAME,
    MODEL_VERSION,
    PSEUDONYM_KEY,
    REACHED,
    STOPPED,
    Workspace,
    canaries,
    source_rows,
)
from tests.conftest import DEMO_POLICY
from tests.lineage.conftest import DEMO_AS_OF, MODEL_FILE, demo_policy_columns

#: What the validation run below records: two expectations met, one not (names and columns only).
OUTCOMES = (
    ExpectationOutcome("expect_table_columns_to_match_set", None, True),
    ExpectationOutcome("expect_column_values_to_match_regex", "ZIP3", True),
    ExpectationOutcome("expect_column_values_to_be_between", "AGE", False),
)


@pytest.fixture(scope="session")
def demo(demo_lineage):
    """The demo's events, written once a session by tests/lineage/conftest.py through `phi-guard apply`."""
    return demo_lineage


@pytest.fixture(scope="module")
def demo_policy() -> dict:
    return yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validated(demo, tmp_path_factory):
    """A copy of the demo's events with a validation run of its governed set, as the validation operator
    emits it (the assertions of a summary, through the product's lineage builder and emitter)."""
    events = tmp_path_factory.mktemp("datasheet") / "events.jsonl"
    shutil.copyfile(demo.events, events)
    summary = ValidationSummary(
        success=False,
        suite_name="readmission-risk",
        results=OUTCOMES,
        data_docs_index="/data/docs/index.html",
        statistics=ValidationStatistics(evaluated=3, successful=2, unsuccessful=1),
    )
    at = datetime(2029, 6, 1, tzinfo=UTC)
    lineage = validation_lineage(demo.governed, summary)
    run_id = emit_run(
        lineage,
        lineage,
        events_path=events,
        job_namespace="default",
        job_name="phi_guard_readmission_training.validate_training_set",
        succeeded=False,
        started_at=at,
        ended_at=at,
    )
    return events, run_id


@pytest.fixture(scope="module")
def sheet(validated, demo_policy):
    events, _run_id = validated
    model = demo_policy["model"]
    return build_datasheet(read_events(events), model["name"], str(model["version"]))


class TestDemo:
    def test_the_model_and_its_provenance(self, sheet, demo, demo_policy):
        assert (sheet.model.name, sheet.model.version) == (
            demo_policy["model"]["name"],
            str(demo_policy["model"]["version"]),
        )
        (source,) = sheet.sources
        assert source.uri == f"file://{demo.extract}"
        # the demo policy declares every column of the extract
        assert source.columns == len(demo_policy["columns"])
        # letters of REGULATORY.md's table: dates C, SSN G, names A, geography B
        assert {
            name: source.identifier_columns.get(name) for name in ("BIRTHDATE", "SSN", "FIRST", "ZIP")
        } == {
            "BIRTHDATE": "C",
            "SSN": "G",
            "FIRST": "A",
            "ZIP": "B",
        }
        (run,) = sheet.governance_runs
        assert (run.source, run.governed) == (source.uri, [f"file://{demo.governed}"])
        assert (run.policy_name, run.policy_version) == (demo_policy["name"], demo_policy["version"])
        assert run.job == f"phi-guard/apply.{demo_policy['name']}"

    def test_the_purpose_of_this_use_and_the_unrecorded_original_purpose(self, sheet, demo_policy):
        (run,) = sheet.governance_runs
        assert (run.purpose, run.recipient) == (demo_policy["purpose"], demo_policy["recipient"])
        assert any("original purpose" in gap for gap in sheet.gaps)
        assert "Original purpose of collection (Article 10(2)(b)): **not recorded**" in render_markdown(sheet)

    def test_the_preparation_is_the_policy_s_columns_and_treatments(self, sheet, demo_policy):
        kept, dropped = demo_policy_columns()
        assert {(c.column, c.treatment, c.output_column) for c in sheet.reached} == kept
        assert {c.column for c in sheet.stopped} == dropped
        (run,) = sheet.governance_runs
        assert run.published_columns == len(kept)
        assert run.zip3_vintage == demo_policy["deidentification"]["zip3_vintage"]
        text = render_markdown(sheet)
        for column, treatment, output in kept:
            assert any(
                f"| {md(column)} |" in line and f"| {md(treatment)} | {md(output)} |" in line
                for line in text.splitlines()
            ), column

    def test_consent_bases_and_counts(self, sheet, demo, demo_policy):
        (run,) = sheet.governance_runs
        assert run.consent_bases == demo_policy["consent"]["bases"]
        assert run.consent_as_of == DEMO_AS_OF
        # the README's demo: 7,584 encounters read, each admitted or excluded under one reason
        assert run.rows_read == 7584
        assert (run.rows_admitted, run.rows_excluded) == (
            demo.report["rows"]["admitted"],
            demo.report["rows"]["excluded"],
        )
        assert sum(run.admitted_rows_by_basis.values()) == run.rows_admitted
        assert set(run.admitted_rows_by_basis) <= set(demo_policy["consent"]["bases"])
        assert run.consent_registry.endswith("/consent.csv")

    def test_the_de_identification_method_and_risk_as_the_policy_declares_them(self, sheet, demo_policy):
        (run,) = sheet.governance_runs
        policy = demo_policy["deidentification"]
        assert run.method == policy["method"]
        if "k_min" in policy:
            # below_k: suppress leaves no class under k_min, so the k achieved is at least k_min
            assert policy["below_k"] == "suppress" and run.risk["k"] >= policy["k_min"]
            assert run.risk["quasiIdentifiers"] == ", ".join(policy["quasi_identifiers"])
        else:
            assert run.risk is None

    def test_the_training_run_and_what_it_wrote(self, sheet, demo):
        (training,) = sheet.downstream_runs
        assert training.run_id == demo.training_run
        assert training.read_from == sheet.governance_runs[0].run_id
        assert training.wrote == [f"file://{MODEL_FILE}"]

    def test_validation_results_are_the_assertions_the_validation_run_recorded(self, sheet, validated, demo):
        _events, run_id = validated
        (validation,) = sheet.validations
        assert (validation.run_id, validation.dataset) == (run_id, f"file://{demo.governed}")
        assert [(a.assertion, a.column, a.success) for a in validation.assertions] == [
            (outcome.expectation_type, outcome.column, outcome.success) for outcome in OUTCOMES
        ]
        assert (
            f"Validation run {run_id} of file://{demo.governed} recorded 1 unmet expectation(s)."
            in sheet.gaps
        )
        assert "2 of 3 expectation(s) met" in render_markdown(sheet)

    def test_without_a_validation_run_validation_is_a_gap(self, demo, demo_policy):
        model = demo_policy["model"]
        sheet = build_datasheet(read_events(demo.events), model["name"], str(model["version"]))
        assert sheet.validations == []
        assert (
            f"No validation result is recorded for the governed dataset file://{demo.governed}." in sheet.gaps
        )
        assert f"Validation: **{NOT_RECORDED}** in these events." in render_markdown(sheet)

    def test_the_html_is_the_markdown_rendered_with_the_graph(self, sheet, validated):
        events, _run_id = validated
        page = render_html(sheet, read_events(events))
        assert page.startswith("<!DOCTYPE html>") and "default-src 'none'" in page
        assert "<h2>4. Consent bases and counts</h2>" in page
        assert "<td>BIRTHDATE</td>" in page
        assert page.count('<g class="node model"') == 1 and "<script" not in page


class TestCommand:
    def test_markdown_and_html_are_written_to_the_output(self, validated, sheet, demo, tmp_path):
        events, _run_id = validated
        model = f"{sheet.model.name}:{sheet.model.version}"
        for form, render in (("markdown", render_markdown), ("html", None)):
            output = tmp_path / f"datasheet.{form}"
            arguments = ["datasheet", "--events", str(events), "--model", model, "--format", form]
            assert main([*arguments, "--output", str(output)]) == 0
            expected = render(sheet) if render else render_html(sheet, read_events(events))
            assert output.read_text(encoding="utf-8") == expected

    def test_an_unknown_model_is_an_error(self, demo, capsys):
        assert main(["datasheet", "--events", str(demo.events), "--model", "no-such-model:9"]) == 1
        assert "no-such-model version 9" in capsys.readouterr().err
        with pytest.raises(ModelNotInLineageError):
            build_datasheet(read_events(demo.events), "no-such-model")

    def test_the_archive_gives_the_validations_of_the_log(self, validated, demo_policy, postgres_schema):
        """A validation writes nothing; the archive's model query returns it all the same."""
        events, run_id = validated
        model = demo_policy["model"]
        table = f"{postgres_schema.name}.datasheet_{uuid.uuid4().hex[:8]}"
        with LineageArchive(postgres_schema.url, table) as archive:
            archive.load([events])
            from_archive = build_datasheet(
                archive.events_for(ModelQuery(model["name"], str(model["version"]))),
                model["name"],
                str(model["version"]),
            )
        assert [validation.run_id for validation in from_archive.validations] == [run_id]
        assert from_archive == build_datasheet(read_events(events), model["name"], str(model["version"]))

    def test_the_archive_gives_the_log_s_datasheet(self, demo, demo_policy, postgres_schema, tmp_path):
        model = demo_policy["model"]
        table = f"{postgres_schema.name}.datasheet_{uuid.uuid4().hex[:8]}"
        with LineageArchive(postgres_schema.url, table) as archive:
            archive.load([demo.events])
            from_archive = build_datasheet(
                archive.events_for(ModelQuery(model["name"], str(model["version"]))),
                model["name"],
                str(model["version"]),
            )
        assert from_archive == build_datasheet(read_events(demo.events), model["name"], str(model["version"]))
        output = tmp_path / "datasheet.md"
        arguments = ["datasheet", "--archive", postgres_schema.url, "--archive-table", table]
        assert (
            main([*arguments, "--model", f"{model['name']}:{model['version']}", "--output", str(output)]) == 0
        )
        assert output.read_text(encoding="utf-8") == render_markdown(from_archive)


@pytest.fixture
def published(tmp_path, monkeypatch) -> Workspace:
    """One `phi-guard apply --events` run of the CLI fixtures, with a canary in every identifier cell."""
    monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.delenv("PHI_GUARD_MANIFEST_KEY", raising=False)
    monkeypatch.delenv("OPENLINEAGE_DISABLED", raising=False)
    workspace = Workspace(tmp_path)
    assert main(workspace.apply_arguments(workspace.write())) == 0
    return workspace


class TestLeaks:
    def test_no_planted_value_reaches_either_form(self, published):
        events = read_events(published.events)
        sheet = build_datasheet(events, MODEL_NAME, MODEL_VERSION)
        assert {(c.column, c.identifier, c.treatment, c.output_column) for c in sheet.reached} == REACHED
        assert {(c.column, c.identifier) for c in sheet.stopped} == STOPPED
        for text in (render_markdown(sheet), render_html(sheet, events)):
            assert sorted(value for value in canaries(source_rows()) if value in text) == []

    def test_every_string_from_the_events_is_made_inert(self, published):
        hostile = "<img src=x onerror=alert(1)>*[link](javascript:x)*"
        text = published.events.read_text(encoding="utf-8")
        text = text.replace('"source": "GENDER"', json.dumps({"source": hostile})[1:-1])
        published.events.write_text(text, encoding="utf-8")
        events = read_events(published.events)
        sheet = build_datasheet(events, MODEL_NAME, MODEL_VERSION)
        assert hostile in {column.column for column in sheet.reached}
        markdown = render_markdown(sheet)
        assert md(hostile) in markdown and hostile not in markdown
        page = render_html(sheet, events)
        assert "<img" not in page and "<a " not in page and "href" not in page
        assert page.count("<em>") == 1  # the disclaimer's, none from the name
        assert "&lt;img src=x onerror=alert(1)&gt;*[link](javascript:x)*" in page


class TestRecorded:
    """Risk figures and a de-identification verdict are shown when an event carries them, and said to be
    not recorded otherwise."""

    def _sheet(self, published, **blocks):
        """The datasheet of the events with every risk and verdict block removed, then ``blocks`` added
        to the de-identification facet of the COMPLETE event, as the engine writes them."""
        lines = []
        for line in published.events.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            facets = event["run"]["facets"]
            for name in ("phiGuard_risk", "phiGuard_deidentification"):
                facets.pop(name, None)
            policy = facets.get("phiGuard_policy")
            if policy is not None:
                for key in ("risk", "safeHarbor", "expertDetermination"):
                    policy.pop(key, None)
                if event["eventType"] == "COMPLETE" and blocks:
                    facets["phiGuard_deidentification"] = {"method": policy["method"], **blocks}
            lines.append(json.dumps(event))
        published.events.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return build_datasheet(read_events(published.events), MODEL_NAME, MODEL_VERSION)

    def test_absent_risk_and_verdict_are_not_recorded(self, published):
        sheet = self._sheet(published)
        (run,) = sheet.governance_runs
        assert (run.risk, run.safe_harbor) == (None, None)
        assert (
            f"governance run {run.run_id}: re-identification risk figures are {NOT_RECORDED}." in sheet.gaps
        )
        row = f"| {md(run.run_id)} | {md(run.method)} | {NOT_RECORDED} | {NOT_RECORDED} |"
        assert row in render_markdown(sheet)

    def test_present_risk_and_verdict_are_shown(self, published):
        sheet = self._sheet(
            published,
            risk={"k": 5, "kMin": 5, "suppressedRows": 0, "quasiIdentifiers": ["AGE", "GENDER"]},
            safeHarbor={
                "status": "not-met",
                "breaches": [{"column": "PATIENT", "identifier": "R", "rule": "x"}],
            },
            expertDetermination={"report": "ED-TEST-1", "expires": "2099-01-01"},
        )
        (run,) = sheet.governance_runs
        assert run.risk == {"k": 5, "kMin": 5, "suppressedRows": 0, "quasiIdentifiers": "AGE, GENDER"}
        assert run.safe_harbor == {"status": "not-met", "breaches": "PATIENT R"}
        assert run.records == {"expertDetermination": {"report": "ED-TEST-1", "expires": "2099-01-01"}}
        assert not any("risk figures" in gap or "expert determination" in gap for gap in sheet.gaps)
        text = render_markdown(sheet)
        # figures in name order, whatever order the event gave them in (an archive's JSONB has its own)
        assert "| k: 5; kMin: 5; quasiIdentifiers: AGE, GENDER; suppressedRows: 0 |" in text
        assert "- expertDetermination: expires: 2099-01-01; report: ED-TEST-1" in text

    def test_an_expert_determination_method_without_its_record_is_a_gap(self, published):
        sheet = self._sheet(published)
        (run,) = sheet.governance_runs
        assert run.method == "expert-determination"
        assert (
            f"governance run {run.run_id}: the expert determination the method rests on is not recorded."
            in (sheet.gaps)
        )
