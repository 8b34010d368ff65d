"""Lineage built from a governance report: datasets, standard and phiGuard facets, published or refused."""

from __future__ import annotations

import logging
from datetime import date

import pyarrow as pa
import pytest
from openlineage.client.serde import Serde

from airflow_phi_guard.lineage.build import lineage_for_report, lineage_for_start, validation_lineage
from airflow_phi_guard.policy.loader import parse_policy
from airflow_phi_guard.quality.validate import ExpectationOutcome, ValidationStatistics, ValidationSummary
from airflow_phi_guard.report import Verdict
from tests.lineage.conftest import GOVERNED, POLICY_TEXT, REGISTRY, SOURCE, make_report

INPUT_SCHEMA = pa.schema(
    [
        ("PATIENT", pa.string()),
        ("BIRTHDATE", pa.date32()),
        ("ZIP", pa.string()),
        ("START", pa.timestamp("us", tz="UTC")),
        ("GENDER", pa.string()),
        ("SSN", pa.string()),
        ("FIRST", pa.string()),
        ("DRIVERS", pa.string()),
    ]
)


def _dict(value) -> dict:
    return Serde.to_dict(value)


def _published(policy, **kwargs):
    return lineage_for_report(make_report(policy), policy, input_schema=INPUT_SCHEMA, **kwargs)


class TestPublishedRun:
    def test_inputs_are_the_source_then_the_consent_registry(self, policy):
        lineage = _published(policy)
        assert [(dataset.namespace, dataset.name) for dataset in lineage.inputs] == [
            ("file", SOURCE),
            ("file", REGISTRY),
        ]

    def test_the_output_is_the_governed_dataset(self, policy):
        lineage = _published(policy)
        assert [(dataset.namespace, dataset.name) for dataset in lineage.outputs] == [("file", GOVERNED)]
        assert set(lineage.outputs[0].facets) == {
            "schema",
            "columnLineage",
            "tags",
            "ownership",
            "documentation",
            "phiGuard_columns",
        }

    def test_the_source_schema_lists_every_source_column_with_its_arrow_type(self, policy):
        fields = _dict(_published(policy).inputs[0].facets["schema"])["fields"]
        assert [(field["name"], field["type"], field["ordinal_position"]) for field in fields] == [
            ("PATIENT", "string", 1),
            ("BIRTHDATE", "date32[day]", 2),
            ("ZIP", "string", 3),
            ("START", "timestamp[us, tz=UTC]", 4),
            ("GENDER", "string", 5),
            ("SSN", "string", 6),
            ("FIRST", "string", 7),
            ("DRIVERS", "string", 8),
        ]

    def test_the_source_tags_each_identifier_column_with_its_letter(self, policy):
        tags = _dict(_published(policy).inputs[0].facets["tags"])["tags"]
        assert {tag["field"]: tag["value"] for tag in tags} == {
            "PATIENT": "R",
            "BIRTHDATE": "C",
            "ZIP": "B",
            "START": "C",
            "SSN": "G",
            "FIRST": "A",
            "DRIVERS": "K",
        }

    @pytest.mark.parametrize(
        ("output", "source", "subtype", "masking"),
        [
            # OpenLineage column lineage: DIRECT/IDENTITY when the value is copied, DIRECT/TRANSFORMATION
            # otherwise; masking true where the treatment changed the values (issue 2, "Lineage").
            ("PATIENT", "PATIENT", "TRANSFORMATION", True),  # pseudonymize
            ("AGE", "BIRTHDATE", "TRANSFORMATION", True),  # age, renamed with `as`
            ("ZIP", "ZIP", "TRANSFORMATION", True),  # zip3
            ("START_YEAR", "START", "TRANSFORMATION", True),  # year, renamed
            ("GENDER", "GENDER", "IDENTITY", False),  # keep
        ],
    )
    def test_column_lineage_maps_each_output_field_to_its_source_field(
        self, policy, output, source, subtype, masking
    ):
        fields = _dict(_published(policy).outputs[0].facets["columnLineage"])["fields"]
        (input_field,) = fields[output]["inputFields"]
        assert (input_field["namespace"], input_field["name"], input_field["field"]) == (
            "file",
            SOURCE,
            source,
        )
        (transformation,) = input_field["transformations"]
        assert transformation["type"] == "DIRECT"
        assert transformation["subtype"] == subtype
        assert transformation["masking"] is masking

    def test_column_lineage_has_no_field_for_a_dropped_column(self, policy):
        fields = _dict(_published(policy).outputs[0].facets["columnLineage"])["fields"]
        assert set(fields) == {"PATIENT", "AGE", "ZIP", "START_YEAR", "GENDER"}

    def test_consent_filters_the_whole_dataset_by_the_subject_and_the_registry(self, policy):
        dataset = _dict(_published(policy).outputs[0].facets["columnLineage"])["dataset"]
        filters = {(field["name"], field["field"]) for field in dataset}
        assert (SOURCE, "PATIENT") in filters
        assert {(REGISTRY, "subject_id"), (REGISTRY, "basis"), (REGISTRY, "purposes")} <= filters
        assert all(
            t["type"] == "INDIRECT" and t["subtype"] == "FILTER"
            for f in dataset
            for t in f["transformations"]
        )

    def test_columns_facet_lists_output_columns_with_source_letter_and_treatment(self, policy):
        facet = _dict(_published(policy).outputs[0].facets["phiGuard_columns"])
        assert facet["sourceDataset"] == {"namespace": "file", "name": SOURCE}
        assert facet["columns"] == [
            {"name": "PATIENT", "source": "PATIENT", "identifier": "R", "treatment": "pseudonymize"},
            {"name": "AGE", "source": "BIRTHDATE", "identifier": "C", "treatment": "age"},
            {"name": "ZIP", "source": "ZIP", "identifier": "B", "treatment": "zip3"},
            {"name": "START_YEAR", "source": "START", "identifier": "C", "treatment": "year"},
            # Not an identifier: the letter is absent (the client drops nulls from events).
            {"name": "GENDER", "source": "GENDER", "treatment": "keep"},
        ]

    def test_columns_facet_lists_dropped_columns_undeclared_ones_included(self, policy):
        facet = _dict(_published(policy).outputs[0].facets["phiGuard_columns"])
        assert facet["dropped"] == [
            {"source": "SSN", "identifier": "G", "declared": True},
            {"source": "FIRST", "identifier": "A", "declared": True},
            # Undeclared, dropped under `undeclared: drop`: listed as dropped too.
            {"source": "DRIVERS", "identifier": "K", "declared": False},
        ]

    def test_columns_facet_counts_findings_by_column_and_letter(self, policy):
        from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
        from airflow_phi_guard.report import Finding

        report = make_report(
            policy,
            findings=[Finding(column="GENDER", identifier=SafeHarborIdentifier.EMAIL_ADDRESS, count=2)],
        )
        facet = _dict(lineage_for_report(report, policy).outputs[0].facets["phiGuard_columns"])
        assert facet["findings"] == [{"column": "GENDER", "identifier": "F", "count": 2}]

    def test_policy_facet_holds_the_policy_and_the_verdict(self, policy):
        facet = _dict(_published(policy).run_facets["phiGuard_policy"])
        assert {key: value for key, value in facet.items() if not key.startswith("_")} == {
            "name": "readmission-risk",
            "version": 1,
            "digest": policy.digest,
            "purpose": "model-training",
            "model": {"name": "readmission-risk", "version": "1"},
            "recipient": "internal-ml-platform",
            "method": "expert-determination",
            "zip3Vintage": "census-2020",
            "consentBases": ["research-authorization", "irb-waiver"],
            "asOf": "2024-06-30",
            "verdict": "published",
            "refusals": [],
            "pseudonymKeyFingerprint": "0123456789abcdef",
        }

    def test_consent_facet_counts_rows_by_reason(self, policy):
        facet = _dict(_published(policy).run_facets["phiGuard_consent"])
        assert {key: value for key, value in facet.items() if not key.startswith("_")} == {
            "asOf": "2024-06-30",
            "bases": ["research-authorization", "irb-waiver"],
            "registry": {"namespace": "file", "name": REGISTRY},
            "rowsRead": 10,
            "rowsAdmitted": 7,
            "excluded": {"no-record": 2, "opted-out": 1},
        }

    def test_governed_schema_comes_from_the_output_schema_when_given(self, policy):
        output_schema = pa.schema([("PATIENT", pa.string()), ("AGE", pa.int32())])
        fields = _dict(_published(policy, output_schema=output_schema).outputs[0].facets["schema"])["fields"]
        assert [(field["name"], field["type"]) for field in fields] == [
            ("PATIENT", "string"),
            ("AGE", "int32"),
        ]

    def test_without_output_schema_only_a_kept_column_has_a_type(self, policy):
        fields = _dict(_published(policy).outputs[0].facets["schema"])["fields"]
        assert {field["name"]: field.get("type") for field in fields} == {
            "PATIENT": None,
            "AGE": None,
            "ZIP": None,
            "START_YEAR": None,
            "GENDER": "string",
        }


class TestRefusedRun:
    def test_a_refused_run_has_no_output_at_all(self, policy):
        lineage = lineage_for_report(
            make_report(policy, verdict=Verdict.REFUSED), policy, input_schema=INPUT_SCHEMA
        )
        assert lineage.outputs == []

    def test_a_refused_run_still_names_its_inputs_and_its_refusals(self, policy):
        report = make_report(policy, verdict=Verdict.REFUSED, refusals=["undeclared columns: NOTE"])
        lineage = lineage_for_report(report, policy)
        assert [dataset.name for dataset in lineage.inputs] == [SOURCE, REGISTRY]
        facet = _dict(lineage.run_facets["phiGuard_policy"])
        assert facet["verdict"] == "refused"
        assert facet["refusals"] == ["undeclared columns: NOTE"]


def test_without_a_registry_the_source_is_the_only_input(policy):
    lineage = lineage_for_report(make_report(policy, registry=None), policy)
    assert [dataset.name for dataset in lineage.inputs] == [SOURCE]
    assert "registry" not in _dict(lineage.run_facets["phiGuard_consent"])


def test_a_policy_that_changed_since_the_run_leaves_the_report_to_speak(policy, caplog):
    changed = parse_policy(POLICY_TEXT.replace("version: 1", "version: 2"))
    with caplog.at_level(logging.WARNING, logger="airflow_phi_guard.lineage.build"):
        lineage = lineage_for_report(make_report(policy), changed)
    assert "differs from the report's" in caplog.text
    assert _dict(lineage.run_facets["phiGuard_policy"])["digest"] == policy.digest
    dataset = _dict(lineage.outputs[0].facets["columnLineage"])["dataset"]
    assert (SOURCE, "PATIENT") not in {(field["name"], field["field"]) for field in dataset}


class TestStart:
    def test_start_carries_the_policy_without_a_verdict(self, policy):
        facet = _dict(lineage_for_start(policy).run_facets["phiGuard_policy"])
        assert facet["digest"] == policy.digest
        assert facet["model"] == {"name": "readmission-risk", "version": "1"}
        assert "verdict" not in facet
        assert "asOf" not in facet

    def test_start_has_no_consent_facet_since_nothing_was_counted(self, policy):
        assert set(lineage_for_start(policy).run_facets) == {"phiGuard_policy", "phiGuard_deidentification"}

    def test_start_carries_the_claimed_method_but_no_verdict_or_risk(self, policy):
        """Some servers keep only a run's first event: the method the policy claims is on START; the Safe
        Harbor verdict and the risk are decided by the run, so only COMPLETE or FAIL carry them."""
        facet = _dict(lineage_for_start(policy).run_facets["phiGuard_deidentification"])
        assert facet["method"] == policy.deidentification.method.value == "expert-determination"
        assert not {"safeHarbor", "risk"} & set(facet)

    def test_start_names_the_datasets_it_will_touch_with_the_output_s_key_facets(self, policy):
        lineage = lineage_for_start(
            policy,
            input_path=SOURCE,
            output_path=GOVERNED,
            consent_registry=REGISTRY,
            as_of=date(2024, 6, 30),
            input_schema=INPUT_SCHEMA,
        )
        assert [dataset.name for dataset in lineage.inputs] == [SOURCE, REGISTRY]
        assert set(lineage.inputs[0].facets) == {"schema"}
        (output,) = lineage.outputs
        # What the policy fixes before the run is on START; what the run decides (schema, columns) is not.
        assert (output.name, set(output.facets)) == (GOVERNED, {"tags", "ownership", "documentation"})
        complete = lineage_for_report(make_report(policy), policy).outputs[0].facets
        for key in ("tags", "ownership", "documentation"):
            assert _dict(output.facets[key]) == _dict(complete[key])
        assert _dict(output.facets["ownership"])["owners"] == [
            {"name": f"recipient:{policy.recipient}", "type": "RECIPIENT"}
        ]
        assert _dict(lineage.run_facets["phiGuard_policy"])["asOf"] == "2024-06-30"

    def test_start_from_the_policy_alone_names_no_dataset(self, policy):
        lineage = lineage_for_start(policy)
        assert (lineage.inputs, lineage.outputs) == ([], [])


def test_validation_lineage_records_each_expectation_without_values():
    summary = ValidationSummary(
        success=False,
        suite_name="readmission-risk-v1",
        results=(
            ExpectationOutcome("expect_table_columns_to_match_set", None, True),
            ExpectationOutcome("expect_column_values_to_not_match_regex", "GENDER", False, "G"),
        ),
        data_docs_index="/tmp/data-docs/index.html",
        statistics=ValidationStatistics(evaluated=2, successful=1, unsuccessful=1),
    )
    lineage = validation_lineage(GOVERNED, summary)
    (governed,) = lineage.inputs
    assert (governed.namespace, governed.name) == ("file", GOVERNED)
    facet = _dict(governed.inputFacets["dataQualityAssertions"])
    assert [
        {key: value for key, value in assertion.items() if key in ("assertion", "success", "column")}
        for assertion in facet["assertions"]
    ] == [
        {"assertion": "expect_table_columns_to_match_set", "success": True},
        {"assertion": "expect_column_values_to_not_match_regex", "success": False, "column": "GENDER"},
    ]
    assert not any("actual" in assertion or "expected" in assertion for assertion in facet["assertions"])
    # the standard documentation facet links the Data Docs site
    documentation = _dict(governed.facets["documentation"])
    assert "<file:///tmp/data-docs/index.html>" in documentation["description"]
    assert "readmission-risk-v1" in documentation["description"]
