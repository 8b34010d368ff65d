"""The inventory of a scan as lineage: the phiGuard_inventory facet, its schema, and the input's tags."""

from __future__ import annotations

from typing import get_args

import attr
import pyarrow as pa
import pytest
from openlineage.client.event_v2 import RunState

from airflow_phi_guard.lineage.facets import (
    FACET_CLASSES,
    SCHEMA_BASE_URL,
    PhiGuardInventoryColumn,
    PhiGuardInventoryDatasetFacet,
    PhiGuardInventoryEvidence,
    facet_schemas,
)
from airflow_phi_guard.lineage.inventory import inventory_lineage, inventory_lineage_for_start
from airflow_phi_guard.phi.detectors import Confidence
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.inventory import ColumnVerdict, Evidence, ScanReport
from tests.lineage.openlineage_validation import (
    CORE_ID,
    EventValidationError,
    run_event,
    validate_event,
    validate_instance,
)

NAME = "PhiGuardInventoryDatasetFacet"
KEY = "phiGuard_inventory"
SCHEMA_ID = f"{SCHEMA_BASE_URL}1-0-0/{NAME}.json"
SOURCE = "/data/extract/patients.parquet"
BASE_FIELDS = {"_producer", "_schemaURL", "_deleted"}

A = SafeHarborIdentifier.NAMES
D = SafeHarborIdentifier.TELEPHONE_NUMBER
F = SafeHarborIdentifier.EMAIL_ADDRESS
G = SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER
N = SafeHarborIdentifier.WEB_URL
R = SafeHarborIdentifier.OTHER_UNIQUE_IDENTIFIER


def _name(identifier: SafeHarborIdentifier) -> Evidence:
    return Evidence(source="name", detector=None, identifier=identifier, rate=None, matches=None)


def _value(detector: str, identifier: SafeHarborIdentifier, matches: int, confidence: Confidence) -> Evidence:
    rate = matches / 200
    return Evidence(
        source="value",
        detector=detector,
        identifier=identifier,
        confidence=confidence,
        rate=rate,
        matches=matches,
    )


def _known(identifier: SafeHarborIdentifier, matches: int) -> Evidence:
    return Evidence(
        source="known-values",
        detector=None,
        identifier=identifier,
        confidence=Confidence.HIGH,
        rate=matches / 200,
        matches=matches,
    )


#: A scan of 200 rows as the issue describes its verdicts: the SSN column is G by its name although its
#: Synthea values (area 999) validate only at low confidence; the email column is F although some of its
#: values also look like URLs (N, the runner-up); a note holds a phone number and a patient's name copied
#: from FIRST (known values); a SNOMED code column and an amount are no identifier at all.
VERDICTS = [
    ColumnVerdict(
        column="Id",
        identifier=R,
        confidence=Confidence.HIGH,
        evidence=[_name(R), _value("uuid", R, 200, Confidence.MEDIUM)],
        runner_up=None,
        rows_scanned=200,
        matches=200,
    ),
    ColumnVerdict(
        column="FIRST",
        identifier=A,
        confidence=Confidence.HIGH,
        evidence=[_name(A)],
        runner_up=None,
        rows_scanned=200,
        matches=0,
    ),
    ColumnVerdict(
        column="SSN",
        identifier=G,
        confidence=Confidence.HIGH,
        evidence=[_name(G), _value("ssn", G, 200, Confidence.LOW)],
        runner_up=None,
        rows_scanned=200,
        matches=200,
    ),
    ColumnVerdict(
        column="EMAIL",
        identifier=F,
        confidence=Confidence.HIGH,
        evidence=[
            _name(F),
            _value("email", F, 200, Confidence.HIGH),
            _value("url", N, 50, Confidence.MEDIUM),
        ],
        runner_up=N,
        rows_scanned=200,
        matches=200,
    ),
    ColumnVerdict(
        column="NOTE",
        identifier=D,
        confidence=Confidence.LOW,
        evidence=[_value("nanp-phone", D, 2, Confidence.HIGH), _known(A, 1)],
        runner_up=A,
        rows_scanned=200,
        matches=2,
    ),
    ColumnVerdict(
        column="CODE",
        identifier=None,
        confidence=None,
        evidence=[],
        runner_up=None,
        rows_scanned=200,
        matches=0,
    ),
    ColumnVerdict(
        column="BASE_COST",
        identifier=None,
        confidence=None,
        evidence=[],
        runner_up=None,
        rows_scanned=200,
        matches=0,
    ),
]

INPUT_SCHEMA = pa.schema(
    [
        ("Id", pa.string()),
        ("FIRST", pa.string()),
        ("SSN", pa.string()),
        ("EMAIL", pa.string()),
        ("NOTE", pa.large_string()),
        ("CODE", pa.int64()),
        ("BASE_COST", pa.float64()),
    ]
)


def _report(columns: list[ColumnVerdict] = VERDICTS, *, sample_rows: int | None = None) -> ScanReport:
    return ScanReport(input=SOURCE, rows_scanned=200, sample_rows=sample_rows, columns=list(columns))


def _event(lineage, state: RunState) -> dict:
    return run_event(lineage, state, "dag.scan")


def _input_facets(report: ScanReport, **kwargs) -> dict:
    (source,) = _event(inventory_lineage(report, **kwargs), RunState.COMPLETE)["inputs"]
    return source["facets"]


class TestInventoryLineage:
    def test_start_and_complete_events_validate_against_the_official_and_shipped_schemas(self):
        for lineage, state in (
            (inventory_lineage_for_start(SOURCE), RunState.START),
            (inventory_lineage(_report()), RunState.COMPLETE),
            (inventory_lineage(_report(sample_rows=50), input_schema=INPUT_SCHEMA), RunState.COMPLETE),
        ):
            validate_event(_event(lineage, state))

    def test_a_scan_reads_its_input_and_publishes_no_dataset(self):
        lineage = inventory_lineage(_report())
        assert [(dataset.namespace, dataset.name) for dataset in lineage.inputs] == [("file", SOURCE)]
        assert lineage.outputs == []
        assert lineage.run_facets == {}

    def test_the_input_carries_schema_tags_and_the_inventory(self):
        assert set(_input_facets(_report())) == {"schema", "tags", KEY}

    def test_start_names_the_input_alone(self):
        lineage = inventory_lineage_for_start(SOURCE)
        assert [(dataset.namespace, dataset.name, dataset.facets) for dataset in lineage.inputs] == [
            ("file", SOURCE, {})
        ]
        assert lineage.outputs == []

    @pytest.mark.parametrize(
        ("location", "namespace", "name"),
        [
            # Named as the OpenLineage naming spec and the Airflow provider name a dataset (lineage.datasets).
            ("/data/extract/patients.parquet", "file", "/data/extract/patients.parquet"),
            ("file:///data/extract/patients.csv", "file", "/data/extract/patients.csv"),
            ("s3://ehr-raw/extract/patients.parquet", "s3://ehr-raw", "extract/patients.parquet"),
        ],
    )
    def test_the_input_is_named_as_the_naming_spec_names_it(self, location, namespace, name):
        report = ScanReport(input=location, rows_scanned=0, sample_rows=None, columns=[])
        for lineage in (inventory_lineage(report), inventory_lineage_for_start(location)):
            assert [(dataset.namespace, dataset.name) for dataset in lineage.inputs] == [(namespace, name)]

    def test_the_inventory_holds_each_column_s_letter_confidence_runner_up_and_evidence(self):
        inventory = _input_facets(_report())[KEY]
        assert inventory["rowsScanned"] == 200
        assert "sampleRows" not in inventory
        assert inventory["columns"] == [
            {
                "name": "Id",
                "identifier": "R",
                "confidence": "high",
                "evidence": [
                    {"source": "name", "identifier": "R"},
                    {
                        "source": "value",
                        "detector": "uuid",
                        "identifier": "R",
                        "confidence": "medium",
                        "rate": 1.0,
                    },
                ],
            },
            {
                "name": "FIRST",
                "identifier": "A",
                "confidence": "high",
                "evidence": [{"source": "name", "identifier": "A"}],
            },
            {
                "name": "SSN",
                "identifier": "G",
                "confidence": "high",
                "evidence": [
                    {"source": "name", "identifier": "G"},
                    {
                        "source": "value",
                        "detector": "ssn",
                        "identifier": "G",
                        "confidence": "low",
                        "rate": 1.0,
                    },
                ],
            },
            {
                "name": "EMAIL",
                "identifier": "F",
                "confidence": "high",
                "runnerUp": "N",
                "evidence": [
                    {"source": "name", "identifier": "F"},
                    {
                        "source": "value",
                        "detector": "email",
                        "identifier": "F",
                        "confidence": "high",
                        "rate": 1.0,
                    },
                    {
                        "source": "value",
                        "detector": "url",
                        "identifier": "N",
                        "confidence": "medium",
                        "rate": 0.25,
                    },
                ],
            },
            {
                "name": "NOTE",
                "identifier": "D",
                "confidence": "low",
                "runnerUp": "A",
                "evidence": [
                    {
                        "source": "value",
                        "detector": "nanp-phone",
                        "identifier": "D",
                        "confidence": "high",
                        "rate": 0.01,
                    },
                    {"source": "known-values", "identifier": "A", "confidence": "high", "rate": 0.005},
                ],
            },
            {"name": "CODE", "evidence": []},
            {"name": "BASE_COST", "evidence": []},
        ]

    def test_a_sampled_scan_says_how_many_rows_it_was_limited_to(self):
        assert _input_facets(_report(sample_rows=50))[KEY]["sampleRows"] == 50

    def test_evidence_carries_rates_but_not_match_counts(self):
        """The report keeps the counts; the facet says how much matched as a share, per the issue."""
        for column in _input_facets(_report())[KEY]["columns"]:
            for evidence in column["evidence"]:
                assert set(evidence) <= {"source", "detector", "identifier", "confidence", "rate"}

    def test_tags_name_each_identifier_column_by_field_and_letter(self):
        assert _input_facets(_report())["tags"]["tags"] == [
            {"key": "safe-harbor-identifier", "value": letter, "source": "PHI_GUARD", "field": column}
            for column, letter in [("Id", "R"), ("FIRST", "A"), ("SSN", "G"), ("EMAIL", "F"), ("NOTE", "D")]
        ]

    def test_a_dataset_without_identifiers_has_no_tags_facet(self):
        report = _report([verdict for verdict in VERDICTS if verdict.identifier is None])
        assert set(_input_facets(report)) == {"schema", KEY}

    def test_the_schema_lists_the_report_s_columns_in_order_without_types(self):
        fields = _input_facets(_report())["schema"]["fields"]
        assert [(field["name"], field.get("type"), field["ordinal_position"]) for field in fields] == [
            (verdict.column, None, position) for position, verdict in enumerate(VERDICTS, start=1)
        ]

    def test_the_schema_takes_arrow_types_when_the_dataset_s_schema_is_given(self):
        fields = _input_facets(_report(), input_schema=INPUT_SCHEMA)["schema"]["fields"]
        assert [(field["name"], field["type"]) for field in fields] == [
            ("Id", "string"),
            ("FIRST", "string"),
            ("SSN", "string"),
            ("EMAIL", "string"),
            ("NOTE", "large_string"),
            ("CODE", "int64"),
            ("BASE_COST", "double"),
        ]


class TestInventorySchema:
    """The shipped schema of phiGuard_inventory, held to the conventions of the other phiGuard facets."""

    @staticmethod
    def _document() -> dict:
        return facet_schemas()[SCHEMA_ID]

    def _own_branch(self) -> dict:
        return self._document()["$defs"][NAME]["allOf"][1]

    def test_the_facet_is_registered_under_its_key(self):
        assert FACET_CLASSES[KEY] is PhiGuardInventoryDatasetFacet

    def test_the_schema_url_is_the_versioned_id_with_a_pointer_to_the_definition(self):
        assert PhiGuardInventoryDatasetFacet._get_schema() == f"{SCHEMA_ID}#/$defs/{NAME}"
        assert "/1-0-0/" in SCHEMA_ID

    def test_the_definition_builds_on_the_core_dataset_facet(self):
        assert self._document()["$defs"][NAME]["allOf"][0] == {"$ref": f"{CORE_ID}#/$defs/DatasetFacet"}

    def test_the_document_names_the_facet_key(self):
        assert self._document()["properties"] == {KEY: {"$ref": f"#/$defs/{NAME}"}}

    @pytest.mark.parametrize(
        ("cls", "definition"),
        [
            # Each attrs class against the schema object it serialises to.
            (PhiGuardInventoryDatasetFacet, None),
            (PhiGuardInventoryColumn, "PhiGuardInventoryColumn"),
            (PhiGuardInventoryEvidence, "PhiGuardInventoryEvidence"),
        ],
    )
    def test_class_fields_are_exactly_the_schema_properties(self, cls, definition):
        schema = self._own_branch() if definition is None else self._document()["$defs"][definition]
        declared = set(schema["properties"]) - BASE_FIELDS
        assert {field.name for field in attr.fields(cls)} - BASE_FIELDS == declared
        assert set(schema["required"]) <= declared

    def test_every_object_refuses_undeclared_fields(self):
        """A field the schema does not describe could carry a value, so every object closes its fields."""
        definitions = self._document()["$defs"]
        assert self._own_branch()["additionalProperties"] is False
        for name in ("PhiGuardInventoryColumn", "PhiGuardInventoryEvidence"):
            assert definitions[name]["additionalProperties"] is False

    def test_every_property_has_a_description(self):
        def undescribed(schema: object, where: str) -> list[str]:
            if isinstance(schema, list):
                return [
                    hit for index, item in enumerate(schema) for hit in undescribed(item, f"{where}/{index}")
                ]
            if not isinstance(schema, dict):
                return []
            found = [
                f"{where}/properties/{name}"
                for name, value in (schema.get("properties") or {}).items()
                if not (isinstance(value, dict) and value.get("description"))
            ]
            return found + [
                hit for key, item in schema.items() for hit in undescribed(item, f"{where}/{key}")
            ]

        assert undescribed(self._document()["$defs"], "") == []

    @pytest.mark.parametrize(
        ("definition", "field", "expected"),
        [
            # The 18 identifiers of 164.514(b)(2)(i), by letter (REGULATORY.md).
            ("SafeHarborIdentifier", None, list("ABCDEFGHIJKLMNOPQR")),
            # The three confidences of the issue-3 contract, LOW < MEDIUM < HIGH.
            ("PhiGuardInventoryColumn", "confidence", ["low", "medium", "high"]),
            ("PhiGuardInventoryEvidence", "confidence", ["low", "medium", "high"]),
            # The three sources of evidence of the contract: the name, a value detector, known values.
            ("PhiGuardInventoryEvidence", "source", ["name", "value", "known-values"]),
        ],
    )
    def test_vocabularies_are_the_contract_s(self, definition, field, expected):
        schema = self._document()["$defs"][definition]
        assert (schema if field is None else schema["properties"][field])["enum"] == expected

    @pytest.mark.parametrize(
        ("definition", "field", "vocabulary"),
        [
            # The schema's vocabularies are those of the models the facet is built from.
            ("PhiGuardInventoryColumn", "confidence", {level.value for level in Confidence}),
            ("PhiGuardInventoryEvidence", "confidence", {level.value for level in Confidence}),
            (
                "PhiGuardInventoryEvidence",
                "source",
                set(get_args(Evidence.model_fields["source"].annotation)),
            ),
        ],
    )
    def test_the_schema_s_vocabularies_are_those_of_the_scan_models(self, definition, field, vocabulary):
        assert set(self._document()["$defs"][definition]["properties"][field]["enum"]) == vocabulary

    @pytest.mark.parametrize(
        ("tamper", "problem"),
        [
            # A column that grew a field for sample values: the leak the closed schema exists to stop.
            (lambda column: column.update(values=["999-49-3983"]), "Additional properties"),
            # A letter outside A to R.
            (lambda column: column.update(identifier="S"), "is not one of"),
            # A rate is a share, never a count.
            (lambda column: column["evidence"][1].update(rate=200), "maximum"),
        ],
    )
    def test_the_schema_refuses_a_tampered_facet(self, tamper, problem):
        inventory = _input_facets(_report())[KEY]
        tamper(inventory["columns"][2])
        with pytest.raises(EventValidationError, match=problem):
            validate_instance(inventory, PhiGuardInventoryDatasetFacet._get_schema(), "inventory")
