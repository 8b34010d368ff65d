"""The value checks of ``age-band`` and ``top-bottom-code`` outputs: every band is one the policy declares,
every coded number lies within the declared bounds, from the policy or from the report of a real run, and a
planted raw age or an uncoded number fails its check without reaching a stored result or a Data Docs page."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.engine.executor import govern
from airflow_phi_guard.exceptions import QualityCheckFailedError
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.policy import parse_policy
from airflow_phi_guard.policy.models import Treatment
from airflow_phi_guard.quality.policy_suites import suite_path, write_policy_suites
from airflow_phi_guard.quality.results import find_planted_values
from airflow_phi_guard.quality.suite import expectations_for_policy, expectations_from_policy
from airflow_phi_guard.quality.validate import (
    ValidationSummary,
    raise_for_failures,
    validate_governed_dataset,
)
from airflow_phi_guard.report import ColumnDecision, GovernanceReport
from tests.quality.conftest import make_report

IN_SET = "expect_column_values_to_be_in_set"
BETWEEN = "expect_column_values_to_be_between"
AS_OF = date(2026, 12, 1)
SUBJECTS = [f"subject-{i:02d}" for i in range(12)]

#: A Safe Harbor policy whose outputs are a surrogate code, an age band and a top- and bottom-coded income.
POLICY = """\
name: banded-risk
version: 1
purpose: model-training
model: {name: banded-risk, version: "1"}
recipient: internal-ml-platform
subject: PATIENT
consent:
  bases: [research-authorization]
deidentification:
  method: safe-harbor
  attestation: {by: "J. Doe, Privacy Officer", date: 2026-11-30, statement: "No actual knowledge."}
columns:
  PATIENT:   {treatment: surrogate, namespace: patient, as: PATIENT_KEY, justification: "split"}
  BIRTHDATE: {treatment: age-band, bands: [0, 18, 65, 90], as: AGE_BAND, justification: "predictor"}
  INCOME:    {treatment: top-bottom-code, bottom: 10000, top: 200000, justification: "predictor"}
"""
#: The labels README's table of treatments gives for bands [0, 18, 65, 90], in order.
LABELS = ("0-17", "18-64", "65-89", "90+")


def _decision(treatment: Treatment, **coding) -> ColumnDecision:
    return ColumnDecision(source="SRC", output="OUT", identifier=None, treatment=treatment, **coding)


def _column_specs(report: GovernanceReport, arrow_type: pa.DataType) -> list[tuple[str, dict, str | None]]:
    specs = expectations_for_policy(report, pa.schema([("OUT", arrow_type)]))
    return [
        (spec.expectation_type, dict(spec.kwargs), spec.identifier.letter if spec.identifier else None)
        for spec in specs
        if spec.column == "OUT"
    ]


# One row per declaration: the check its output gets, with the values the policy's rule gives.
@pytest.mark.parametrize(
    ("decision", "arrow_type", "expected"),
    [
        # age-band [0, 18, 65, 90]: the four labels the treatment writes, 90+ the one open top band, so
        # that a raw age (95) or another band (85-89) is unexpected; ages are letter C.
        (
            _decision(Treatment.AGE_BAND, bands=(0, 18, 65, 90)),
            pa.string(),
            [(IN_SET, {"column": "OUT", "value_set": LABELS}, "C")],
        ),
        # An open top band lower than 90 (65+), as Safe Harbor allows: the top label is 65+, not 90+.
        (
            _decision(Treatment.AGE_BAND, bands=(18, 65)),
            pa.large_string(),
            [(IN_SET, {"column": "OUT", "value_set": ("18-64", "65+")}, "C")],
        ),
        # top-bottom-code: every value beyond a bound becomes the bound, so the output lies within both.
        (
            _decision(Treatment.TOP_BOTTOM_CODE, bottom=10_000, top=200_000),
            pa.int64(),
            [(BETWEEN, {"column": "OUT", "min_value": 10_000, "max_value": 200_000}, None)],
        ),
        # Only a top: nothing is bounded below.
        (
            _decision(Treatment.TOP_BOTTOM_CODE, top=90),
            pa.int32(),
            [(BETWEEN, {"column": "OUT", "max_value": 90}, None)],
        ),
        # Only a bottom, on a floating-point column.
        (
            _decision(Treatment.TOP_BOTTOM_CODE, bottom=0.5),
            pa.float64(),
            [(BETWEEN, {"column": "OUT", "min_value": 0.5}, None)],
        ),
        (
            _decision(Treatment.TOP_BOTTOM_CODE, bottom=1, top=2),
            pa.decimal128(10, 2),
            [(BETWEEN, {"column": "OUT", "min_value": 1, "max_value": 2}, None)],
        ),
    ],
    ids=["age-band", "age-band-open-at-65", "top-and-bottom", "top-only", "bottom-only-float", "decimal"],
)
def test_each_generalisation_gets_the_check_of_its_declaration(decision, arrow_type, expected):
    assert _column_specs(make_report((decision,)), arrow_type) == expected


def test_the_policy_implies_the_same_checks_as_the_report_of_its_run():
    policy = parse_policy(POLICY)

    from_policy = {spec.column: spec for spec in expectations_from_policy(policy)}

    assert dict(from_policy["AGE_BAND"].kwargs) == {"column": "AGE_BAND", "value_set": LABELS}
    assert from_policy["AGE_BAND"].expectation_type == IN_SET
    assert from_policy["AGE_BAND"].identifier is SafeHarborIdentifier.DATES
    assert dict(from_policy["INCOME"].kwargs) == {
        "column": "INCOME",
        "min_value": 10_000,
        "max_value": 200_000,
    }
    assert from_policy["INCOME"].expectation_type == BETWEEN


@pytest.mark.parametrize("treatment", [Treatment.AGE_BAND, Treatment.TOP_BOTTOM_CODE])
def test_a_report_without_the_bands_or_bounds_is_refused_not_validated_with_less(treatment):
    # A report of an earlier release records no bands or bounds: the column would go unchecked.
    report = make_report((_decision(treatment),))
    arrow_type = pa.string() if treatment is Treatment.AGE_BAND else pa.int64()

    with pytest.raises(QualityCheckFailedError) as refused:
        expectations_for_policy(report, pa.schema([("OUT", arrow_type)]))

    assert f"records no bands or bounds of OUT ({treatment.value})" in str(refused.value)


@pytest.mark.parametrize(
    ("decision", "arrow_type", "needs"),
    [
        # An age-band column of integers holds raw ages, not band labels.
        (_decision(Treatment.AGE_BAND, bands=(0, 18, 65, 90)), pa.int32(), "text"),
        (_decision(Treatment.TOP_BOTTOM_CODE, top=90), pa.string(), "numbers"),
    ],
)
def test_a_column_whose_type_cannot_hold_the_treatments_output_is_refused(decision, arrow_type, needs):
    with pytest.raises(QualityCheckFailedError) as refused:
        expectations_for_policy(make_report((decision,)), pa.schema([("OUT", arrow_type)]))

    assert f"OUT ({decision.treatment.value} needs {needs}, found {arrow_type})" in str(refused.value)


# --- A real run of the engine, its output validated, then tampered with --------------------------------

BIRTHS = [date(1930, 1, 1), date(1936, 12, 1), date(1936, 12, 2), None, date(2015, 6, 1)] + [
    date(1990, 5, 5)
] * 7
INCOMES = [5, 20_000, 1_000_000, None, 10_000] + [50_000] * 7


@pytest.fixture(scope="module")
def governed(tmp_path_factory) -> tuple[Path, GovernanceReport, Path]:
    """A governed set of :data:`POLICY`, its report, and the suite file generated from the policy."""
    root = tmp_path_factory.mktemp("banded")
    source = root / "source.parquet"
    pq.write_table(
        pa.table(
            {
                "PATIENT": pa.array(SUBJECTS),
                "BIRTHDATE": pa.array(BIRTHS, pa.date32()),
                "INCOME": pa.array(INCOMES, pa.int64()),
            }
        ),
        source,
    )
    consent = root / "consent.csv"
    consent.write_text(
        "subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference\n"
        + "".join(
            f"{subject},research-authorization,model-training,2020-01-01,,,A-{subject}\n"
            for subject in SUBJECTS
        )
    )
    policy = parse_policy(POLICY)
    output = root / "governed.parquet"
    result = govern(
        policy, source, output, consent=consent, as_of=AS_OF, surrogate_mapping=root / "mapping.parquet"
    )
    assert result.report.published, result.refusals
    suites = root / "expectations"
    write_policy_suites([policy], suites)
    return output, result.report, suite_path(suites, policy)


def _validate(
    table: pa.Table, report: GovernanceReport, folder: Path, name: str, suite_file: Path | None = None
) -> ValidationSummary:
    dataset = folder / f"{name}.parquet"
    pq.write_table(table, dataset)
    return validate_governed_dataset(
        dataset,
        report,
        suite_name=name,
        data_docs_dir=folder / "data-docs",
        gx_project_dir=folder / "gx",
        suite_path=suite_file,
    )


def _failed(summary: ValidationSummary) -> set[tuple[str, str | None, str | None]]:
    return {(outcome.expectation_type, outcome.column, outcome.identifier) for outcome in summary.failures}


def _replaced(table: pa.Table, column: str, row: int, value) -> pa.Table:
    values = table[column].to_pylist()
    values[row] = value
    return table.set_column(
        table.schema.get_field_index(column), column, pa.array(values, table[column].type)
    )


def test_the_report_records_the_declared_bands_and_bounds(governed):
    _, report, _ = governed

    coded = {column.source: (column.bands, column.bottom, column.top) for column in report.columns}

    assert coded == {
        "PATIENT": (None, None, None),
        "BIRTHDATE": ((0, 18, 65, 90), None, None),
        "INCOME": (None, 10_000, 200_000),
    }
    # Numbers only, and the report reads back as it was written.
    assert GovernanceReport.model_validate_json(report.to_json()) == report


@pytest.mark.parametrize("route", ["report", "policy-suite"])
def test_the_governed_set_passes_both_its_derived_and_its_generated_suite(governed, route, tmp_path):
    output, report, suite_file = governed
    table = pq.read_table(output)
    # The run wrote the bands and bounds themselves (ages 96 and 90 as 90+, 5 and 1,000,000 coded), so
    # passing shows that the labels and bounds of the check are the treatment's own.
    assert set(table["AGE_BAND"].drop_null().to_pylist()) == {"90+", "65-89", "0-17", "18-64"}
    assert {10_000, 200_000} <= set(table["INCOME"].drop_null().to_pylist())

    summary = _validate(table, report, tmp_path, route, suite_file if route == "policy-suite" else None)

    assert summary.success, summary.failures
    checks = {(outcome.expectation_type, outcome.column) for outcome in summary.results}
    assert {(IN_SET, "AGE_BAND"), (BETWEEN, "INCOME")} <= checks
    by_column = {outcome.column: outcome for outcome in summary.results}
    # The missing age and income are counted as missing, not judged.
    assert (by_column["AGE_BAND"].missing_count, by_column["AGE_BAND"].unexpected_count) == (1, 0)
    assert (by_column["INCOME"].missing_count, by_column["INCOME"].unexpected_count) == (1, 0)


# One row per violation planted in the governed set: the one check it must fail, by either suite.
@pytest.mark.parametrize("route", ["report", "policy-suite"])
@pytest.mark.parametrize(
    ("column", "planted", "failure"),
    [
        # A raw age in place of its band: 95 is over 89, which only "90+" may stand for.
        ("AGE_BAND", "95", (IN_SET, "AGE_BAND", "C")),
        # A band the policy does not declare: 85-89 splits the 65-89 band.
        ("AGE_BAND", "85-89", (IN_SET, "AGE_BAND", "C")),
        # A value beyond the top bound that was not coded to it.
        ("INCOME", 1_000_000, (BETWEEN, "INCOME", None)),
        # And one below the bottom bound.
        ("INCOME", 5, (BETWEEN, "INCOME", None)),
    ],
    ids=["raw-age-95", "undeclared-band", "above-top", "below-bottom"],
)
def test_a_planted_value_fails_its_check_by_name(governed, column, planted, failure, route, tmp_path):
    output, report, suite_file = governed
    table = _replaced(pq.read_table(output), column, 0, planted)

    summary = _validate(table, report, tmp_path, route, suite_file if route == "policy-suite" else None)

    assert not summary.success
    assert _failed(summary) == {failure}
    (outcome,) = summary.failures
    assert outcome.unexpected_count == 1


#: Canary values, planted where a raw age and an uncoded number would be; unique enough that finding one
#: anywhere means it leaked.
CANARY_AGE = "CANARY-RAW-AGE-95-4e7b"
CANARY_INCOME = 918_273_645


def test_planted_values_reach_no_summary_log_stored_result_or_data_docs(governed, tmp_path, caplog):
    output, report, _ = governed
    table = _replaced(pq.read_table(output), "AGE_BAND", 1, CANARY_AGE)
    table = _replaced(table, "INCOME", 1, CANARY_INCOME)
    needles = [CANARY_AGE, str(CANARY_INCOME), f"{CANARY_INCOME:,}", f"{float(CANARY_INCOME)}"]
    project, docs = tmp_path / "gx", tmp_path / "data-docs"

    with caplog.at_level(logging.DEBUG):
        summary = _validate(table, report, tmp_path, "canary")
    with pytest.raises(QualityCheckFailedError) as raised:
        raise_for_failures(summary)

    # Both planted values were seen: each failed its check.
    assert _failed(summary) == {(IN_SET, "AGE_BAND", "C"), (BETWEEN, "INCOME", None)}
    texts = {
        "summary": json.dumps(summary.to_dict()),
        "exception": str(raised.value),
        "logs": caplog.text,
    }
    assert {where: [n for n in needles if n in text] for where, text in texts.items()} == {
        where: [] for where in texts
    }
    assert find_planted_values([project, docs], needles) == {}
    # The result format kept the values out by itself: nothing had to be cut after GX had written it.
    assert not [
        record
        for record in caplog.records
        if record.name.startswith("airflow_phi_guard") and record.levelno >= logging.WARNING
    ]
    # The scan reads what GX wrote: the declared labels, which are the policy's, are on the suite page.
    assert find_planted_values([docs], ["65-89"])
    assert find_planted_values([project], ["AGE_BAND"])
