"""The expectation suite a governed dataset must pass, derived from its governance report and schema.

The suite restates, as Great Expectations checks that run on the published data, what the policy promised:
the output columns are exactly the allowlisted ones, kept strings carry none of the identifiers that the
value detectors find (SSN, telephone number, email address), ZIP3 values are three digits, ages stop at
90, years are calendar years, birth years stop where Safe Harbor suppresses them, and pseudonyms are keyed
hashes. Each check is first an :class:`ExpectationSpec`, a plain value that a test or a reviewer can read
without Great Expectations; :func:`build_expectation_suite` turns the specs into a GX ``ExpectationSuite``
and is the only place here that imports Great Expectations, lazily, so that parsing a DAG stays cheap.

Types are judged from the Arrow schema, not by Great Expectations: its type expectations misjudge pandas'
nullable and Arrow-backed dtypes (an ``int32`` column fails ``expect_column_values_to_be_in_type_list``
with ``int32`` in the list under pandas 3), so a column whose type does not fit its treatment is refused
here, before any value is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from airflow_phi_guard.arrow_types import holds_text
from airflow_phi_guard.deid.methods import text_detectors
from airflow_phi_guard.exceptions import QualityCheckFailedError, name_some
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.values import DETECTORS, ValueDetector
from airflow_phi_guard.policy.models import Treatment
from airflow_phi_guard.report import GovernanceReport

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite


def _patterns_by_identifier(detectors: Sequence[ValueDetector]) -> Mapping[SafeHarborIdentifier, str]:
    # One expectation per identifier, its detectors joined by alternation: the engine's scan, too, counts a
    # value once per identifier whichever of its detectors matched.
    patterns: dict[SafeHarborIdentifier, list[str]] = {}
    for detector in detectors:
        patterns.setdefault(detector.identifier, []).append(f"(?:{detector.pattern})")
    return MappingProxyType({identifier: "|".join(group) for identifier, group in patterns.items()})


#: The identifiers a kept string column must not contain, each with the pattern that finds it: the
#: patterns of the engine's value detectors, so that its scan and this suite cannot disagree. They are RE2
#: patterns, which Python's ``re`` reads the same way; Great Expectations searches them anywhere in a
#: value (pandas ``str.contains``).
KEPT_STRING_PATTERNS: Mapping[SafeHarborIdentifier, str] = _patterns_by_identifier(DETECTORS)

#: A ZIP3 value: the first three digits, or ``000`` for a restricted prefix (164.514(b)(2)(i)(B)).
ZIP3_PATTERN = r"^[0-9]{3}$"
#: A pseudonym: HMAC-SHA256 written as 64 lowercase hexadecimal digits.
PSEUDONYM_PATTERN = r"^[0-9a-f]{64}$"
#: The top age category: everyone over 89 is 90, "90 or older" (164.514(b)(2)(i)(C)).
TOP_AGE = 90
#: Safe Harbor suppresses the birth year of anyone over 89 at the reference date; the earliest birth year
#: that may remain is that of a person who turns 90 the day after it, ``as_of.year - 90``.
OLDEST_KEPT_BIRTH_YEAR_OFFSET = 90
#: A ``year`` output is a calendar year of a clinical record, not a whole date (``20240115``), a day count
#: or a two-digit year: these bounds hold every record of living memory and nothing of those shapes.
EARLIEST_PLAUSIBLE_YEAR = 1800
LATEST_PLAUSIBLE_YEAR = 2100


@dataclass(frozen=True)
class OutputColumn:
    """One published column of a governed dataset, as the suite needs to know it.

    :param name: the output column.
    :param source: the source column it was made from.
    :param treatment: the treatment that made it.
    :param is_string: whether its Arrow type holds text (plain, large, view or dictionary-encoded).
    :param is_integer: whether its Arrow type is an integer type.
    :param arrow_type: the Arrow type, written out, for messages.
    """

    name: str
    source: str
    treatment: Treatment
    is_string: bool
    is_integer: bool
    arrow_type: str


@dataclass(frozen=True)
class ExpectationSpec:
    """One check of the suite, independent of Great Expectations.

    :param expectation_type: the GX expectation, in its snake-case name (``expect_column_values_to_...``).
    :param kwargs: its arguments: column names, patterns and bounds, never a data value.
    :param meaning: what the check guarantees, in the words of the policy, for a reviewer and Data Docs.
    :param identifier: the Safe Harbor identifier the check keeps out, when it is about one.
    """

    expectation_type: str
    kwargs: Mapping[str, Any]
    meaning: str
    identifier: SafeHarborIdentifier | None = None

    def __post_init__(self) -> None:
        # A read-only copy, so that the spec shown to a reviewer is the spec that runs.
        frozen = {key: _as_tuple(value) for key, value in self.kwargs.items()}
        object.__setattr__(self, "kwargs", MappingProxyType(frozen))

    @property
    def column(self) -> str | None:
        """The column the check is about, or None for a check of the whole table."""
        return self.kwargs.get("column")

    @property
    def gx_class_name(self) -> str:
        """The class of ``great_expectations.expectations`` that implements the check."""
        return "".join(part.capitalize() for part in self.expectation_type.split("_"))

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-ready data, e.g. to show a reviewer the suite a policy implies."""
        return {
            "expectation_type": self.expectation_type,
            "kwargs": {key: _as_list(value) for key, value in self.kwargs.items()},
            "meaning": self.meaning,
            "identifier": self.identifier.value if self.identifier else None,
        }


def describe_output_columns(report: GovernanceReport, schema: pa.Schema) -> tuple[OutputColumn, ...]:
    """The published columns of a governed dataset: treatment from the report, type from the schema.

    Only columns that the report says were published and that the schema holds are described; a column
    missing from either side is caught by the column-set expectation, not here.

    :param report: the governance report of the run that wrote the dataset.
    :param schema: the Arrow schema of the published dataset.
    """
    columns = []
    for decision in report.columns:
        if decision.output is None or decision.output not in schema.names:
            continue
        arrow_type = schema.field(decision.output).type
        columns.append(
            OutputColumn(
                name=decision.output,
                source=decision.source,
                treatment=decision.treatment,
                is_string=holds_text(arrow_type),
                is_integer=pa.types.is_integer(arrow_type),
                arrow_type=str(arrow_type),
            )
        )
    return tuple(columns)


def expectations_for_policy(report: GovernanceReport, schema: pa.Schema) -> list[ExpectationSpec]:
    """The suite that the governed dataset of ``report`` must pass, as specs.

    :param report: the governance report of a published run; its columns carry the policy's decisions.
    :param schema: the Arrow schema of the published dataset.
    :raises ValueError: when the report is not of a published run, so there is no dataset to check.
    :raises QualityCheckFailedError: when a column's type does not fit its treatment, so no expectation
        could judge its values.
    """
    if not report.published:
        raise ValueError(
            f"the governance report of policy '{report.policy.name}' has verdict '{report.verdict.value}': "
            "nothing was published, so there is nothing to validate"
        )
    allowlisted = [decision.output for decision in report.columns if decision.output is not None]
    return expectations_for_output_columns(
        allowlisted,
        describe_output_columns(report, schema),
        reference_year=report.as_of.year,
        kept_text_patterns=_patterns_by_identifier(text_detectors(report.method)),
    )


def expectations_for_output_columns(
    allowlisted: Sequence[str],
    output_columns: Sequence[OutputColumn],
    *,
    reference_year: int,
    kept_text_patterns: Mapping[SafeHarborIdentifier, str] = KEPT_STRING_PATTERNS,
) -> list[ExpectationSpec]:
    """The suite for a dataset whose allowlisted outputs and published columns are known.

    :param allowlisted: every output column the policy allows, in output order.
    :param output_columns: the published columns, with treatment and type.
    :param reference_year: the year of the reference date of ages and birth years.
    :param kept_text_patterns: the identifiers kept text must not hold under the policy's method, each
        with its pattern; every detector's by default.
    :raises QualityCheckFailedError: when a column's type does not fit its treatment.
    """
    _refuse_misfit_types(output_columns)

    specs = [
        ExpectationSpec(
            "expect_table_columns_to_match_set",
            # exact_match=False would let an extra column, an SSN say, pass as long as the allowed ones exist.
            {"column_set": list(allowlisted), "exact_match": True},
            "The dataset has exactly the columns the policy allows: none missing, none added.",
        )
    ]
    for column in output_columns:
        specs.extend(_column_expectations(column, reference_year, kept_text_patterns))
    return specs


def build_expectation_suite(
    name: str, specs: Sequence[ExpectationSpec], *, meta: Mapping[str, Any] | None = None
) -> ExpectationSuite:
    """A Great Expectations suite holding one expectation per spec.

    Each expectation carries its spec's meaning as Data Docs notes, and in its ``meta`` the meaning, the
    identifier letter and the spec's position, so that a result can be told apart from the others on the
    same column and put back in the order of the specs (GX reports results in an order of its own).

    :param name: the suite's name.
    :param specs: the checks, e.g. from :func:`expectations_for_policy`.
    :param meta: value-free facts to keep with the suite, such as the policy digest.
    """
    import great_expectations as gx

    expectations = []
    for position, spec in enumerate(specs):
        expectation_class = getattr(gx.expectations, spec.gx_class_name, None)
        if expectation_class is None:
            raise ValueError(f"Great Expectations has no expectation '{spec.expectation_type}'")
        expectations.append(
            expectation_class(
                **spec.to_dict()["kwargs"],
                notes=spec.meaning,
                meta={
                    "phi_guard": {
                        "meaning": spec.meaning,
                        "identifier": spec.identifier.value if spec.identifier else None,
                        "position": position,
                    }
                },
            )
        )

    suite = gx.ExpectationSuite(name=name, expectations=expectations, meta=dict(meta or {}))
    # GX logs and skips an expectation it cannot take; a suite with a check missing would pass too much.
    if len(suite.expectations) != len(expectations):
        raise ValueError(f"Great Expectations kept {len(suite.expectations)} of {len(expectations)} checks")
    return suite


def _column_expectations(
    column: OutputColumn, reference_year: int, kept_text_patterns: Mapping[SafeHarborIdentifier, str]
) -> list[ExpectationSpec]:
    name = column.name
    if column.treatment is Treatment.KEEP:
        if not column.is_string:
            return []
        return [
            ExpectationSpec(
                "expect_column_values_to_not_match_regex",
                {"column": name, "regex": pattern},
                f"Kept text in {name} contains no {identifier.description} (identifier {identifier.value}).",
                identifier,
            )
            for identifier, pattern in kept_text_patterns.items()
        ]
    if column.treatment is Treatment.ZIP3:
        return [
            ExpectationSpec(
                "expect_column_values_to_match_regex",
                {"column": name, "regex": ZIP3_PATTERN},
                f"{name} holds three-digit ZIP prefixes only, restricted ones as 000.",
                SafeHarborIdentifier.GEOGRAPHIC_SUBDIVISION,
            )
        ]
    if column.treatment is Treatment.AGE:
        return [
            ExpectationSpec(
                "expect_column_values_to_be_between",
                {"column": name, "min_value": 0, "max_value": TOP_AGE},
                f"{name} is an age in whole years from 0 to {TOP_AGE}, {TOP_AGE} meaning {TOP_AGE} or older.",
                SafeHarborIdentifier.DATES,
            )
        ]
    if column.treatment is Treatment.BIRTH_YEAR:
        oldest = reference_year - OLDEST_KEPT_BIRTH_YEAR_OFFSET
        return [
            ExpectationSpec(
                "expect_column_values_to_be_between",
                {"column": name, "min_value": oldest, "max_value": reference_year},
                f"{name} is a birth year from {oldest} to {reference_year}: the birth year of anyone over 89 "
                "at the reference date is suppressed.",
                SafeHarborIdentifier.DATES,
            )
        ]
    if column.treatment is Treatment.YEAR:
        return [
            ExpectationSpec(
                "expect_column_values_to_be_between",
                {"column": name, "min_value": EARLIEST_PLAUSIBLE_YEAR, "max_value": LATEST_PLAUSIBLE_YEAR},
                f"{name} is a calendar year ({EARLIEST_PLAUSIBLE_YEAR} to {LATEST_PLAUSIBLE_YEAR}), "
                "not a whole date or a day count.",
                SafeHarborIdentifier.DATES,
            )
        ]
    if column.treatment is Treatment.PSEUDONYMIZE:
        return [
            ExpectationSpec(
                "expect_column_values_to_match_regex",
                {"column": name, "regex": PSEUDONYM_PATTERN},
                f"{name} holds keyed pseudonyms only (HMAC-SHA256, 64 lowercase hex digits).",
            )
        ]
    return []


# Which Arrow types a treatment's output must have for its expectation to judge the values.
_NEEDS_TEXT = frozenset({Treatment.ZIP3, Treatment.PSEUDONYMIZE})
_NEEDS_INTEGER = frozenset({Treatment.AGE, Treatment.BIRTH_YEAR, Treatment.YEAR})


def _refuse_misfit_types(output_columns: Sequence[OutputColumn]) -> None:
    misfits = [
        f"{column.name} ({column.treatment.value} needs text, found {column.arrow_type})"
        for column in output_columns
        if column.treatment in _NEEDS_TEXT and not column.is_string
    ] + [
        f"{column.name} ({column.treatment.value} needs integers, found {column.arrow_type})"
        for column in output_columns
        if column.treatment in _NEEDS_INTEGER and not column.is_integer
    ]
    if misfits:
        raise QualityCheckFailedError(
            [
                "the governed dataset's column types do not fit their treatments, so their values cannot be "
                f"checked: {name_some(misfits)}; the dataset was not written by this policy's treatments"
            ]
        )


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
