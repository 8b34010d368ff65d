"""The suite a governed dataset must pass: one check per rule of the issue and REGULATORY.md, from the report
and the schema alone, with no Great Expectations except where the GX suite itself is built."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from airflow_phi_guard.exceptions import QualityCheckFailedError
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.values import DETECTORS
from airflow_phi_guard.policy.models import DeidentificationMethod, Treatment
from airflow_phi_guard.quality.suite import (
    KEPT_STRING_PATTERNS,
    PSEUDONYM_PATTERN,
    ZIP3_PATTERN,
    ExpectationSpec,
    build_expectation_suite,
    describe_output_columns,
    expectations_for_policy,
)
from airflow_phi_guard.report import ColumnDecision, Verdict
from tests.quality.conftest import ALLOWLISTED, governed_table, make_report, pseudonym

D = SafeHarborIdentifier.TELEPHONE_NUMBER
F = SafeHarborIdentifier.EMAIL_ADDRESS
G = SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER

#: The identifiers the product finds by value, B to O (issue 3): kept text is checked for each of them.
#: A, P, Q and R have no value detector (names are found as known values, R by column name).
VALUE_LETTERS = "BCDEFGHIJKLMNO"
_KEPT_TEXT_CHECKS = [
    ("expect_column_values_to_not_match_regex", {"regex": KEPT_STRING_PATTERNS[SafeHarborIdentifier(letter)]})
    for letter in VALUE_LETTERS
]


def _specs_for(treatment: Treatment, arrow_type: pa.DataType) -> list[ExpectationSpec]:
    """The column checks for one published column ``OUT`` (the table-level check left out)."""
    report = make_report((ColumnDecision(source="SRC", output="OUT", identifier=None, treatment=treatment),))
    specs = expectations_for_policy(report, pa.schema([("OUT", arrow_type)]))
    return [spec for spec in specs if spec.column == "OUT"]


@pytest.mark.parametrize(
    ("treatment", "arrow_type", "expected"),
    [
        # zip3: the first three digits, restricted prefixes as 000 (164.514(b)(2)(i)(B)).
        (Treatment.ZIP3, pa.string(), [("expect_column_values_to_match_regex", {"regex": "^[0-9]{3}$"})]),
        # age: whole years, 90 meaning "90 or older" for everyone over 89 (issue; 164.514(b)(2)(i)(C)).
        (
            Treatment.AGE,
            pa.int32(),
            [("expect_column_values_to_be_between", {"min_value": 0, "max_value": 90})],
        ),
        # birth-year: null when over 89 at the reference date 2026-12-01, so the earliest kept birth year
        # is 1936 (born 1936-12-02 is 89 that day) and none is after the reference year.
        (
            Treatment.BIRTH_YEAR,
            pa.int32(),
            [("expect_column_values_to_be_between", {"min_value": 1936, "max_value": 2026})],
        ),
        # year: a calendar year, not a whole date such as 20240115.
        (
            Treatment.YEAR,
            pa.int64(),
            [("expect_column_values_to_be_between", {"min_value": 1800, "max_value": 2100})],
        ),
        # pseudonymize: HMAC-SHA256 in hex, 64 lowercase digits.
        (
            Treatment.PSEUDONYMIZE,
            pa.string(),
            [("expect_column_values_to_match_regex", {"regex": "^[0-9a-f]{64}$"})],
        ),
        # keep, text: none of the identifiers found by value, B to O (issue 3, "Enforcement uses it").
        (Treatment.KEEP, pa.string(), _KEPT_TEXT_CHECKS),
        # keep, text in other layouts: scanned the same way.
        (
            Treatment.KEEP,
            pa.large_string(),
            [
                ("expect_column_values_to_not_match_regex", {"regex": KEPT_STRING_PATTERNS[x]})
                for x in VALUE_LETTERS
            ],
        ),
        (
            Treatment.KEEP,
            pa.dictionary(pa.int32(), pa.string()),
            [
                ("expect_column_values_to_not_match_regex", {"regex": KEPT_STRING_PATTERNS[x]})
                for x in VALUE_LETTERS
            ],
        ),
        # keep, numbers: a number cannot hold these patterns, so there is nothing to scan.
        (Treatment.KEEP, pa.int64(), []),
        (Treatment.KEEP, pa.float64(), []),
    ],
)
def test_each_treatment_gets_the_check_of_its_rule(treatment, arrow_type, expected):
    specs = _specs_for(treatment, arrow_type)

    assert [(spec.expectation_type, dict(spec.kwargs)) for spec in specs] == [
        (expectation_type, {"column": "OUT", **kwargs}) for expectation_type, kwargs in expected
    ]


def test_kept_text_checks_name_the_identifier_they_keep_out():
    specs = _specs_for(Treatment.KEEP, pa.string())

    assert [spec.identifier.value for spec in specs] == list(VALUE_LETTERS)
    assert all(f"identifier {spec.identifier.value}" in spec.meaning for spec in specs)


def test_the_column_set_is_exactly_the_allowlisted_outputs(report):
    table_check = expectations_for_policy(report, governed_table().schema)[0]

    assert table_check.expectation_type == "expect_table_columns_to_match_set"
    # Dropped columns (SSN, FIRST) have no output, so they are not in the set.
    assert table_check.kwargs["column_set"] == ALLOWLISTED
    # exact_match=False would let an extra column pass.
    assert table_check.kwargs["exact_match"] is True
    assert table_check.column is None


def test_an_extra_column_in_the_data_does_not_widen_the_allowlist(report):
    specs = expectations_for_policy(report, governed_table(SSN=["999-12-3456"] * 4).schema)

    assert specs[0].kwargs["column_set"] == ALLOWLISTED
    assert "SSN" not in {spec.column for spec in specs}


def test_an_allowlisted_column_missing_from_the_data_stays_in_the_set_without_column_checks():
    report = make_report(
        (
            ColumnDecision(source="ZIP", output="ZIP3", identifier=None, treatment=Treatment.ZIP3),
            ColumnDecision(source="AGE", output="AGE", identifier=None, treatment=Treatment.AGE),
        )
    )

    specs = expectations_for_policy(report, pa.schema([("AGE", pa.int32())]))

    assert specs[0].kwargs["column_set"] == ("ZIP3", "AGE")
    # A check on a column that is not there would raise inside GX; the set check already fails.
    assert {spec.column for spec in specs[1:]} == {"AGE"}


@pytest.mark.parametrize(
    ("treatment", "arrow_type", "needs"),
    [
        (Treatment.ZIP3, pa.int32(), "text"),  # a ZIP3 of 681 as a number would lose 021's zero
        (Treatment.PSEUDONYMIZE, pa.binary(), "text"),
        (Treatment.AGE, pa.string(), "integers"),
        (Treatment.AGE, pa.float64(), "integers"),  # 45.5 is no age in whole years
        (Treatment.BIRTH_YEAR, pa.date32(), "integers"),  # a whole date where only the year may stay
        (Treatment.YEAR, pa.timestamp("s"), "integers"),
    ],
)
def test_a_column_whose_type_does_not_fit_its_treatment_is_refused(treatment, arrow_type, needs):
    report = make_report((ColumnDecision(source="SRC", output="OUT", identifier=None, treatment=treatment),))

    with pytest.raises(QualityCheckFailedError) as raised:
        expectations_for_policy(report, pa.schema([("OUT", arrow_type)]))

    assert f"OUT ({treatment.value} needs {needs}, found {arrow_type})" in str(raised.value)


def test_a_refused_run_has_nothing_to_validate():
    report = make_report(verdict=Verdict.REFUSED)

    with pytest.raises(ValueError, match="nothing was published"):
        expectations_for_policy(report, pa.schema([("AGE", pa.int32())]))


def test_output_columns_carry_treatment_source_and_type(report):
    schema = pa.schema([("PATIENT_KEY", pa.string()), ("AGE", pa.int32()), ("INCOME", pa.int64())])

    columns = {column.name: column for column in describe_output_columns(report, schema)}

    assert set(columns) == {"PATIENT_KEY", "AGE", "INCOME"}
    key, age = columns["PATIENT_KEY"], columns["AGE"]
    assert (key.source, key.treatment, key.is_string, key.is_integer) == (
        "PATIENT",
        Treatment.PSEUDONYMIZE,
        True,
        False,
    )
    assert (age.source, age.treatment, age.is_string, age.is_integer) == (
        "BIRTHDATE",
        Treatment.AGE,
        False,
        True,
    )


# The kept-text patterns are the value detectors' own (phi/values.py), so that the engine's scan and the
# suite agree; these rows restate the forms the issue names, searched the way GX does (anywhere in a value).
@pytest.mark.parametrize(
    ("value", "identifier"),
    [
        ("CANARY-SSN 123-45-6789", G),
        ("123 45 6789", G),
        ("call 402-555-0199 after 5pm", D),
        ("(402) 555-0199", D),
        ("+14025550199", D),
        ("contact: alice368@example.org.", F),
    ],
)
def test_kept_text_patterns_find_the_identifiers(value, identifier):
    found = {letter for letter, pattern in KEPT_STRING_PATTERNS.items() if re.search(pattern, value)}

    assert found == {identifier}


@pytest.mark.parametrize(
    "value",
    [
        "Well child visit (procedure)",
        "410620009",  # a SNOMED code stored as text
        "982192b6-6843-4011-ef46-32caaf87d8a9",  # a UUID
        "83.87",  # money
    ],
)
def test_kept_text_patterns_leave_ordinary_text_alone(value):
    assert not any(re.search(pattern, value) for pattern in KEPT_STRING_PATTERNS.values())


def test_every_value_detector_is_in_the_suite():
    for detector in DETECTORS:
        assert f"(?:{detector.pattern})" in KEPT_STRING_PATTERNS[detector.identifier]


@pytest.mark.parametrize(
    ("value", "matches"),
    [
        ("681", True),
        ("000", True),  # a restricted prefix
        ("021", True),  # a leading zero kept
        ("6813", False),  # four digits
        ("68", False),
        ("68131", False),  # the whole ZIP
        ("68a", False),
    ],
)
def test_zip3_pattern(value, matches):
    assert bool(re.search(ZIP3_PATTERN, value)) is matches


@pytest.mark.parametrize(
    ("value", "matches"),
    [
        (pseudonym("a"), True),
        (pseudonym("a").upper(), False),
        (pseudonym("a")[:63], False),
        (pseudonym("a") + "0", False),
        ("982192b6-6843-4011-ef46-32caaf87d8a9", False),  # the source UUID itself
    ],
)
def test_pseudonym_pattern(value, matches):
    assert bool(re.search(PSEUDONYM_PATTERN, value)) is matches


def test_a_spec_is_a_read_only_value():
    spec = ExpectationSpec("expect_table_columns_to_match_set", {"column_set": ["A", "B"]}, "exact columns")

    with pytest.raises(TypeError):
        spec.kwargs["column_set"] = ["A"]  # type: ignore[index]
    assert spec.kwargs["column_set"] == ("A", "B")
    assert spec.to_dict() == {
        "expectation_type": "expect_table_columns_to_match_set",
        "kwargs": {"column_set": ["A", "B"]},
        "meaning": "exact columns",
        "identifier": None,
    }
    assert spec.gx_class_name == "ExpectTableColumnsToMatchSet"


def test_the_gx_suite_holds_one_expectation_per_spec(report):
    schema = pa.schema([("ZIP3", pa.string()), ("DESCRIPTION", pa.string())])
    specs = expectations_for_policy(report, schema)

    suite = build_expectation_suite("readmission-risk-v1", specs, meta={"phi_guard": {"policy": "p"}})

    # Read from the expectations themselves: GX leaves arguments at their default out of the configuration.
    assert [
        (expectation.expectation_type, {key: getattr(expectation, key) for key in spec.kwargs})
        for expectation, spec in zip(suite.expectations, specs, strict=True)
    ] == [(spec.expectation_type, spec.to_dict()["kwargs"]) for spec in specs]
    assert suite.expectations[0].exact_match is True
    configurations = [expectation.configuration for expectation in suite.expectations]
    assert [c.meta["phi_guard"]["identifier"] for c in configurations] == [None, "B", *VALUE_LETTERS]
    assert [c.meta["phi_guard"]["position"] for c in configurations] == list(range(len(specs)))
    assert suite.meta["phi_guard"] == {"policy": "p"}


def test_an_unknown_expectation_is_refused():
    spec = ExpectationSpec("expect_column_values_to_be_wishful", {"column": "A"}, "no such check")

    with pytest.raises(ValueError, match="expect_column_values_to_be_wishful"):
        build_expectation_suite("s", [spec])


def test_a_limited_data_set_may_keep_dates_and_zip_codes_in_text(report):
    # 164.514(e): a limited data set keeps dates and ZIP codes, but no other postal address element
    limited = report.model_copy(update={"method": DeidentificationMethod.LIMITED_DATA_SET})
    specs = expectations_for_policy(limited, pa.schema([("ZIP3", pa.string()), ("DESCRIPTION", pa.string())]))
    kept_text = [spec for spec in specs if spec.column == "DESCRIPTION"]

    assert [spec.identifier.value for spec in kept_text] == [
        letter for letter in VALUE_LETTERS if letter != "C"
    ]
    street = next(spec for spec in kept_text if spec.identifier.value == "B")
    assert re.search(street.kwargs["regex"], "lives at 406 Kohler Camp")
    assert not re.search(street.kwargs["regex"], "ZIP 68504")
