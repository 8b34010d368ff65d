"""The suite a governed dataset must pass: one check per rule of the issue and REGULATORY.md, from the report
and the schema (or the policy) alone, with no Great Expectations except where the GX suite itself is built."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from airflow_phi_guard.exceptions import QualityCheckFailedError
from airflow_phi_guard.phi.values import DETECTORS
from airflow_phi_guard.policy.models import DeidentificationMethod, Treatment
from airflow_phi_guard.quality import suite
from airflow_phi_guard.quality.suite import (
    PSEUDONYM_PATTERN,
    ExpectationSpec,
    RiskCheck,
    build_expectation_suite,
    describe_output_columns,
    expectations_for_policy,
    suite_parameters,
)
from airflow_phi_guard.report import ColumnDecision, Verdict
from tests.quality.conftest import ALLOWLISTED, governed_table, make_report, pseudonym

NO_IDENTIFIERS = "expect_column_values_to_contain_no_identifiers"


def _specs_for(treatment: Treatment, arrow_type: pa.DataType) -> list[ExpectationSpec]:
    """The column checks for one published column ``OUT`` (the table-level check left out)."""
    report = make_report((ColumnDecision(source="SRC", output="OUT", identifier=None, treatment=treatment),))
    specs = expectations_for_policy(report, pa.schema([("OUT", arrow_type)]))
    return [spec for spec in specs if spec.column == "OUT"]


@pytest.mark.parametrize(
    ("treatment", "arrow_type", "expected"),
    [
        # zip3: an existing prefix, restricted prefixes of the report's vintage as 000 (164.514(b)(2)(i)(B)).
        (
            Treatment.ZIP3,
            pa.string(),
            [("expect_column_values_to_be_valid_zip3", {"vintage": "census-2020"})],
        ),
        # age: whole years, 90 meaning "90 or older" for everyone over 89 (issue; 164.514(b)(2)(i)(C)).
        (Treatment.AGE, pa.int32(), [("expect_column_ages_to_be_capped", {"top_age": 90})]),
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
        # pseudonymize: HMAC-SHA256 in hex, 64 lowercase digits; never missing, since the regex check skips
        # nulls and a report does not say which pseudonym is the subject's, so every one is a required key.
        (
            Treatment.PSEUDONYMIZE,
            pa.string(),
            [
                ("expect_column_values_to_not_be_null", {}),
                ("expect_column_values_to_match_regex", {"regex": "^[0-9a-f]{64}$"}),
            ],
        ),
        # keep: every detector of the product scans the values (issue 3, "Enforcement uses it"); an empty
        # list means all of them, whatever the layout of the text.
        (Treatment.KEEP, pa.string(), [(NO_IDENTIFIERS, {"detectors": ()})]),
        (Treatment.KEEP, pa.large_string(), [(NO_IDENTIFIERS, {"detectors": ()})]),
        (Treatment.KEEP, pa.dictionary(pa.int32(), pa.string()), [(NO_IDENTIFIERS, {"detectors": ()})]),
        # keep, numbers: checked too, so that a column read as text by another reader is never skipped;
        # the check reports a number column as not scanned.
        (Treatment.KEEP, pa.int64(), [(NO_IDENTIFIERS, {"detectors": ()})]),
    ],
)
def test_each_treatment_gets_the_check_of_its_rule(treatment, arrow_type, expected):
    specs = _specs_for(treatment, arrow_type)

    assert [(spec.expectation_type, dict(spec.kwargs)) for spec in specs] == [
        (expectation_type, {"column": "OUT", **kwargs}) for expectation_type, kwargs in expected
    ]


def test_the_subjects_pseudonym_is_required_not_null():
    # A regex check skips missing values, so a pseudonym column of nulls would pass it: the subject's
    # pseudonym gets its own not-null check (issue: "required columns get a not-null check").
    specs = [spec for spec in expectations_for_policy(make_report(), governed_table().schema)]

    assert [spec.expectation_type for spec in specs if spec.column == "PATIENT_KEY"] == [
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_match_regex",
    ]
    assert [
        spec.column for spec in specs if spec.expectation_type == "expect_column_values_to_not_be_null"
    ] == ["PATIENT_KEY"]


def test_k_anonymity_is_checked_when_quasi_identifiers_are_declared():
    risk = RiskCheck(("AGE", "ZIP3"), 5)

    specs = expectations_for_policy(make_report(), governed_table().schema, risk=risk)

    assert specs[-1].expectation_type == "expect_table_k_anonymity_to_be_at_least"
    assert dict(specs[-1].kwargs) == {"quasi_identifiers": ("AGE", "ZIP3"), "k_min": 5}
    assert "expect_table_k_anonymity_to_be_at_least" not in {
        spec.expectation_type for spec in expectations_for_policy(make_report(), governed_table().schema)
    }


def test_the_table_holds_exactly_the_allowlisted_outputs(report):
    table_check = expectations_for_policy(report, governed_table().schema)[0]

    assert table_check.expectation_type == "expect_table_columns_to_match_allowlist"
    # Dropped columns (SSN, FIRST) have no output, so they are not in the allowlist.
    assert table_check.kwargs["allowlist"] == ALLOWLISTED
    assert table_check.column is None


def test_an_extra_column_in_the_data_does_not_widen_the_allowlist(report):
    specs = expectations_for_policy(report, governed_table(SSN=["999-12-3456"] * 4).schema)

    assert specs[0].kwargs["allowlist"] == ALLOWLISTED
    assert "SSN" not in {spec.column for spec in specs}


def test_an_allowlisted_column_missing_from_the_data_stays_in_the_allowlist():
    report = make_report(
        (
            ColumnDecision(source="ZIP", output="ZIP3", identifier=None, treatment=Treatment.ZIP3),
            ColumnDecision(source="AGE", output="AGE", identifier=None, treatment=Treatment.AGE),
        )
    )

    specs = expectations_for_policy(report, pa.schema([("AGE", pa.int32())]))

    assert specs[0].kwargs["allowlist"] == ("ZIP3", "AGE")


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
    configurations = [expectation.configuration for expectation in suite.expectations]
    assert [c.meta["phi_guard"]["position"] for c in configurations] == list(range(len(specs)))
    assert suite.meta["phi_guard"] == {"policy": "p"}


def test_an_unknown_expectation_is_refused():
    spec = ExpectationSpec("expect_column_values_to_be_wishful", {"column": "A"}, "no such check")

    with pytest.raises(ValueError, match="expect_column_values_to_be_wishful"):
        build_expectation_suite("s", [spec])


def test_a_limited_data_set_may_keep_zip_codes_and_dates_in_text(report):
    # 164.514(e): a limited data set keeps dates and ZIP codes, but no other postal address element
    limited = report.model_copy(update={"method": DeidentificationMethod.LIMITED_DATA_SET})
    specs = expectations_for_policy(limited, pa.schema([("ZIP3", pa.string()), ("DESCRIPTION", pa.string())]))
    (kept_text,) = [spec for spec in specs if spec.column == "DESCRIPTION"]

    names = set(kept_text.kwargs["detectors"])
    by_name = {detector.name: detector for detector in DETECTORS}
    assert "zip-code" not in names
    assert not [name for name in names if by_name[name].identifier.value == "C"]
    assert "street-address" in names
    assert any(by_name[name].identifier.value == "G" for name in names)  # SSNs are never kept


def test_suite_parameters_give_the_birth_year_bounds_of_the_reference_date(report):
    # A suite generated from the policy alone reads these at run time: 2026-12-01 gives 1936 and 2026.
    assert suite_parameters(report) == {"reference_year": 2026, "oldest_kept_birth_year": 1936}


def test_the_pseudonym_pattern_is_a_full_match():
    assert re.fullmatch(PSEUDONYM_PATTERN[1:-1], pseudonym("a"))


def test_the_reports_risk_measurement_brings_its_k_check():
    from airflow_phi_guard.deid.risk import BelowK, ReidentificationRisk

    measured = ReidentificationRisk(
        quasi_identifiers=("AGE", "ZIP3"),
        sensitive=(),
        k_min=5,
        l_min=None,
        below_k=BelowK.SUPPRESS,
        rows=100,
        k=5,
        classes=12,
        classes_below_k=3,
        unique_share=0.0,
        l=None,
        classes_below_l=0,
        suppressed_rows=4,
        rows_with_missing_quasi_identifier=0,
    )
    report = make_report().model_copy(update={"risk": measured})

    specs = expectations_for_policy(report, governed_table().schema)

    assert (specs[-1].expectation_type, dict(specs[-1].kwargs)) == (
        "expect_table_k_anonymity_to_be_at_least",
        {"quasi_identifiers": ("AGE", "ZIP3"), "k_min": 5},
    )


# The output forms of the treatments that write text of a fixed shape, with values the rule accepts and
# refuses: a surrogate code is 128 random bits in hex (deid/surrogate.py), a month and a quarter keep the
# year (deid/generalize.py), a State is its two-letter USPS code.
FORMS = [
    (Treatment.SURROGATE, "3f2b8c1e4d5a4b6c8d7e9f0a1b2c3d4e", True),
    (Treatment.SURROGATE, "3F2B8C1E4D5A4B6C8D7E9F0A1B2C3D4E", False),
    (Treatment.SURROGATE, "a" * 64, False),  # an HMAC pseudonym is no surrogate code
    (Treatment.SURROGATE, "4d7a3e9c-1f2b-4c5d-8e6f-7a8b9c0d1e2f", False),  # nor is the patient's UUID
    (Treatment.MONTH, "2021-03", True),
    (Treatment.MONTH, "2021-13", False),
    (Treatment.MONTH, "2021-03-14", False),  # a whole date
    (Treatment.QUARTER, "2021-Q1", True),
    (Treatment.QUARTER, "2021-Q5", False),
    (Treatment.STATE, "NE", True),
    (Treatment.STATE, "Nebraska", False),
    (Treatment.STATE, "68504", False),  # a ZIP code
]


@pytest.mark.parametrize(("treatment", "value", "accepted"), FORMS)
def test_text_forms_of_treatments_accept_only_their_output(treatment, value, accepted):
    (spec,) = suite._column_expectations("OUT", treatment, 2026, "census-2020", [])

    assert spec.expectation_type == "expect_column_values_to_match_regex"
    assert (re.search(spec.kwargs["regex"], value) is not None) is accepted
