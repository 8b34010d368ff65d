"""The expectation suite a governed dataset must pass, derived from its policy or its governance report.

The suite restates, as Great Expectations checks that run on the published data, what the policy promised:
the output columns are exactly the allowlisted ones (none added, none missing), kept values hold none of
the identifiers the product's value detectors find, ZIP3 values are existing prefixes with every
restricted one written ``000``, ages stop at 90, years are calendar years, birth years stop where Safe
Harbor suppresses them, age bands are the labels of the declared bands, top- and bottom-coded numbers lie
within the declared bounds, pseudonyms are keyed hashes and never missing, and, when the policy declares
quasi-identifiers, every equivalence class holds at least ``k_min`` rows. Each check is first an
:class:`ExpectationSpec`, a plain value that a test or a reviewer can read without Great Expectations;
:func:`build_expectation_suite` turns the specs into a GX ``ExpectationSuite`` and is the only place here
that imports Great Expectations, lazily, so that parsing a DAG stays cheap. The checks GX lacks are the
product's own expectations (:mod:`airflow_phi_guard.quality.expectations`), registered before a suite is
built or loaded.

The bands and bounds come from the policy, or, for a suite derived from a report, from its column
decisions, which record them (numbers only); a report that lacks them is refused rather than validated
with less. A ``date-shift`` output gets no value check: a shifted date is a plausible date, and whether it
moved by the subject's shift can only be told beside the original.

Nulls: GX's map expectations (regex, range, set) skip missing values and report their count beside the
unexpected one; the product's expectations do the same and say so in Data Docs. A column that must not
miss a value, the subject's pseudonym, gets ``expect_column_values_to_not_be_null``.

Types are judged from the Arrow schema, not by Great Expectations: its type expectations misjudge pandas'
nullable and Arrow-backed dtypes (an ``int32`` column fails ``expect_column_values_to_be_in_type_list``
with ``int32`` in the list under pandas 3), so a column whose type does not fit its treatment is refused
here, before any value is read; the product's expectations read values by their logical type.

A suite derived from a policy alone (:func:`expectations_from_policy`, for ``phi-guard expectations
generate``) does not know the run's reference date, so the birth-year bounds are GX suite parameters
(:data:`REFERENCE_YEAR_PARAMETER`, :data:`OLDEST_BIRTH_YEAR_PARAMETER`) that :func:`suite_parameters`
fills from a governance report.
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
from airflow_phi_guard.phi.values import DETECTORS
from airflow_phi_guard.policy.models import DeidentificationMethod, Treatment
from airflow_phi_guard.report import ColumnDecision, GovernanceReport

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

    from airflow_phi_guard.policy.models import ColumnPolicy, Policy

#: A pseudonym: HMAC-SHA256 written as 64 lowercase hexadecimal digits.
PSEUDONYM_PATTERN = r"^[0-9a-f]{64}$"
#: The output forms of the treatments that write text of a fixed shape: a surrogate code (128 random
#: bits as 32 lowercase hex digits), a month (``2021-03``), a quarter (``2021-Q1``), a State code (``NE``).
TEXT_FORMS: Mapping[Treatment, tuple[str, str]] = MappingProxyType(
    {
        Treatment.SURROGATE: (r"^[0-9a-f]{32}$", "surrogate codes only (32 lowercase hex digits)"),
        Treatment.MONTH: (r"^[0-9]{4}-(0[1-9]|1[0-2])$", "months only, year and month (2021-03)"),
        Treatment.QUARTER: (r"^[0-9]{4}-Q[1-4]$", "quarters only, year and quarter (2021-Q1)"),
        Treatment.STATE: (r"^[A-Z]{2}$", "two-letter State codes only"),
    }
)
#: The top age category: everyone over 89 is 90, "90 or older" (164.514(b)(2)(i)(C)).
TOP_AGE = 90
#: Safe Harbor suppresses the birth year of anyone over 89 at the reference date; the earliest birth year
#: that may remain is that of a person who turns 90 the day after it, ``as_of.year - 90``.
OLDEST_KEPT_BIRTH_YEAR_OFFSET = 90
#: A ``year`` output is a calendar year of a clinical record, not a whole date (``20240115``), a day count
#: or a two-digit year: these bounds hold every record of living memory and nothing of those shapes.
EARLIEST_PLAUSIBLE_YEAR = 1800
LATEST_PLAUSIBLE_YEAR = 2100
#: The suite parameters of a suite generated from a policy alone, filled from a report at run time.
REFERENCE_YEAR_PARAMETER = "reference_year"
OLDEST_BIRTH_YEAR_PARAMETER = "oldest_kept_birth_year"

ALLOWLIST_EXPECTATION = "expect_table_columns_to_match_allowlist"
IDENTIFIERS_EXPECTATION = "expect_column_values_to_contain_no_identifiers"
ZIP3_EXPECTATION = "expect_column_values_to_be_valid_zip3"
AGES_EXPECTATION = "expect_column_ages_to_be_capped"
K_ANONYMITY_EXPECTATION = "expect_table_k_anonymity_to_be_at_least"
CONSENT_EXPECTATION = "expect_column_subjects_to_have_admitted_consent"


@dataclass(frozen=True)
class OutputColumn:
    """One published column of a governed dataset, as the suite needs to know it.

    :param name: the output column.
    :param source: the source column it was made from.
    :param treatment: the treatment that made it.
    :param is_string: whether its Arrow type holds text (plain, large, view or dictionary-encoded).
    :param is_integer: whether its Arrow type is an integer type.
    :param arrow_type: the Arrow type, written out, for messages.
    :param is_number: whether its Arrow type is an integer, floating-point or decimal type.
    """

    name: str
    source: str
    treatment: Treatment
    is_string: bool
    is_integer: bool
    arrow_type: str
    is_number: bool = False


@dataclass(frozen=True)
class ColumnCoding:
    """The declared parameters of a generalisation that the check of its output needs: numbers only.

    :param bands: for ``age-band``, the ages that start each band; the check expects their labels.
    :param bottom: for ``top-bottom-code``, the lowest value published, or None for no bottom coding.
    :param top: for ``top-bottom-code``, the highest value published, or None for no top coding.
    """

    bands: tuple[int, ...] | None = None
    bottom: int | float | None = None
    top: int | float | None = None

    @classmethod
    def of(cls, declared: ColumnPolicy | ColumnDecision) -> ColumnCoding:
        """The coding of a policy's column (``ColumnPolicy``) or a report's (``ColumnDecision``)."""
        bands = declared.bands
        return cls(tuple(bands) if bands is not None else None, declared.bottom, declared.top)


@dataclass(frozen=True)
class ExpectationSpec:
    """One check of the suite, independent of Great Expectations.

    :param expectation_type: the GX expectation, in its snake-case name (``expect_column_values_to_...``).
    :param kwargs: its arguments: column names, patterns, bounds and suite parameters, never a data value.
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
        """The class that implements the check, in GX or in :mod:`airflow_phi_guard.quality.expectations`."""
        return "".join(part.capitalize() for part in self.expectation_type.split("_"))

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-ready data, e.g. to show a reviewer the suite a policy implies."""
        return {
            "expectation_type": self.expectation_type,
            "kwargs": {key: _as_list(value) for key, value in self.kwargs.items()},
            "meaning": self.meaning,
            "identifier": self.identifier.value if self.identifier else None,
        }


@dataclass(frozen=True)
class RiskCheck:
    """The k-anonymity a governed dataset must show, when the policy declares quasi-identifiers.

    :param quasi_identifiers: the output columns someone could link to other sources.
    :param k_min: the fewest rows every equivalence class must hold.
    """

    quasi_identifiers: tuple[str, ...]
    k_min: int


def describe_output_columns(report: GovernanceReport, schema: pa.Schema) -> tuple[OutputColumn, ...]:
    """The published columns of a governed dataset: treatment from the report, type from the schema.

    Only columns that the report says were published and that the schema holds are described; a column
    missing from either side is caught by the allowlist expectation, not here.

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
                is_number=_is_number(arrow_type),
            )
        )
    return tuple(columns)


def expectations_for_policy(
    report: GovernanceReport,
    schema: pa.Schema,
    *,
    subject: str | None = None,
    risk: RiskCheck | None = None,
) -> list[ExpectationSpec]:
    """The suite that the governed dataset of ``report`` must pass, as specs.

    :param report: the governance report of a published run; its columns carry the policy's decisions.
    :param schema: the Arrow schema of the published dataset.
    :param subject: the policy's subject column, whose pseudonym must never be missing. A report does not
        name it, so when it is not given every pseudonymized output is required: a pseudonym is a join key,
        and a missing one cannot group a subject's rows.
    :param risk: the quasi-identifiers and ``k_min`` to check; by default those the report's risk
        measurement names, when the policy declared them.
    :raises ValueError: when the report is not of a published run, so there is no dataset to check.
    :raises QualityCheckFailedError: when a column's type does not fit its treatment, or the report does
        not record the bands or bounds of a generalised column, so no expectation could judge its values.
    """
    check_output_types(report, schema)
    published = [(d.output, d.source, d.treatment) for d in report.columns if d.output is not None]
    coding = {d.output: ColumnCoding.of(d) for d in report.columns if d.output is not None}
    measured = getattr(report, "risk", None)
    if risk is None and measured is not None:
        # The run measured k over the policy's quasi-identifiers: the published set must still show it.
        risk = RiskCheck(tuple(measured.quasi_identifiers), int(measured.k_min))
    return expectations_for_columns(
        published,
        method=report.method,
        zip3_vintage=report.zip3_vintage,
        reference_year=report.as_of.year,
        required=_required_outputs(published, subject),
        risk=risk,
        coding=coding,
    )


def check_output_types(report: GovernanceReport, schema: pa.Schema) -> tuple[OutputColumn, ...]:
    """The published columns of a governed dataset, once it is known that their values can be judged.

    :param report: the governance report of the run that wrote the dataset.
    :param schema: the Arrow schema of the published dataset.
    :raises ValueError: when the report is not of a published run, so there is no dataset to check.
    :raises QualityCheckFailedError: when a column's type does not fit its treatment.
    """
    if not report.published:
        raise ValueError(
            f"the governance report of policy '{report.policy.name}' has verdict '{report.verdict.value}': "
            "nothing was published, so there is nothing to validate"
        )
    output_columns = describe_output_columns(report, schema)
    _refuse_misfit_types(output_columns)
    return output_columns


def expectations_from_policy(policy: Policy, *, risk: RiskCheck | None = None) -> list[ExpectationSpec]:
    """The suite a policy implies for its governed datasets, read from the policy file alone.

    The same checks as :func:`expectations_for_policy` gives for a run of the policy, except that the
    birth-year bounds are suite parameters (the reference date is a run's), and no column type is known.

    :param policy: the policy.
    :param risk: the quasi-identifiers and ``k_min``; when not given, read from the policy's
        ``deidentification.quasi_identifiers`` and ``k_min`` if it declares them.
    """
    published = [
        (output, source, column.treatment)
        for source, column in policy.columns.items()
        if (output := policy.output_name(source)) is not None
    ]
    if risk is None:
        declared = getattr(policy.deidentification, "quasi_identifiers", None)
        k_min = getattr(policy.deidentification, "k_min", None)
        risk = RiskCheck(tuple(declared), int(k_min)) if declared and k_min else None
    return expectations_for_columns(
        published,
        method=policy.deidentification.method,
        zip3_vintage=policy.deidentification.zip3_vintage.value,
        reference_year=None,
        required=_required_outputs(published, policy.subject),
        risk=risk,
        coding={
            output: ColumnCoding.of(column)
            for source, column in policy.columns.items()
            if (output := policy.output_name(source)) is not None
        },
    )


def expectations_for_columns(
    published: Sequence[tuple[str, str, Treatment]],
    *,
    method: DeidentificationMethod,
    zip3_vintage: str,
    reference_year: int | None,
    required: Sequence[str] = (),
    risk: RiskCheck | None = None,
    coding: Mapping[str, ColumnCoding] | None = None,
) -> list[ExpectationSpec]:
    """The suite for a dataset whose published columns and treatments are known.

    :param published: per allowlisted output, in output order: its name, source column and treatment.
    :param method: the de-identification method, which decides what kept text may hold.
    :param zip3_vintage: the Census vintage of the ZIP3 list.
    :param reference_year: the year of the reference date of ages and birth years; None for suite
        parameters filled at run time.
    :param required: outputs that must never miss a value.
    :param risk: the k-anonymity to check, if any.
    :param coding: per output, the declared bands or bounds of an ``age-band`` or ``top-bottom-code``
        column.
    :raises QualityCheckFailedError: when an ``age-band`` or ``top-bottom-code`` output has no bands or
        bounds in ``coding``, so its values could not be judged.
    """
    coding = dict(coding or {})
    _refuse_uncoded(published, coding)
    allowlist = [output for output, _, _ in published]
    specs = [
        ExpectationSpec(
            ALLOWLIST_EXPECTATION,
            # Not expect_table_columns_to_match_set(exact_match=False), which passes an extra SSN column.
            {"allowlist": allowlist},
            "The dataset has exactly the columns the policy allows: none missing, none added.",
        )
    ]
    detector_names = [detector.name for detector in text_detectors(method, DETECTORS)]
    every_detector = len(detector_names) == len(DETECTORS)
    for output, _, treatment in published:
        if output in required:
            specs.append(
                ExpectationSpec(
                    "expect_column_values_to_not_be_null",
                    {"column": output},
                    f"{output} names the subject of every row: it is never missing.",
                )
            )
        specs.extend(
            _column_expectations(
                output,
                treatment,
                reference_year,
                zip3_vintage,
                [] if every_detector else detector_names,
                coding.get(output, ColumnCoding()),
            )
        )
    if risk is not None:
        specs.append(
            ExpectationSpec(
                K_ANONYMITY_EXPECTATION,
                {"quasi_identifiers": list(risk.quasi_identifiers), "k_min": risk.k_min},
                f"Every group of rows alike in {', '.join(risk.quasi_identifiers)} holds at least "
                f"{risk.k_min} rows.",
            )
        )
    return specs


def consent_expectation(
    subject: str,
    consent_registry: str,
    bases: Sequence[str],
    purpose: str,
    as_of: str,
    purposes_covering: Sequence[str] = (),
) -> ExpectationSpec:
    """The check that every subject of a set has an admitted consent, for a set that holds subject ids.

    A governed set holds only keyed pseudonyms of its subjects, which no registry can be matched against;
    this check runs on the pre-publication set of a run (the rows the engine admitted, before treatment).

    :param subject: the subject column.
    :param consent_registry: the registry, as :func:`~airflow_phi_guard.consent.sources.read_consent_registry`
        reads it.
    :param bases: the policy's consent bases, in its order.
    :param purpose: the policy's purpose.
    :param as_of: the date of the decision, ISO 8601.
    :param purposes_covering: purposes the policy also accepts.
    """
    return ExpectationSpec(
        CONSENT_EXPECTATION,
        {
            "column": subject,
            "consent_registry": consent_registry,
            "bases": list(bases),
            "purpose": purpose,
            "as_of": as_of,
            "purposes_covering": list(purposes_covering),
        },
        f"Every subject of {subject} has a consent admitted for {purpose} on {as_of}.",
    )


def suite_parameters(report: GovernanceReport) -> dict[str, int]:
    """The values of the suite parameters of a policy-generated suite, for the run of ``report``.

    :param report: the governance report of the run whose dataset is validated.
    """
    return {
        REFERENCE_YEAR_PARAMETER: report.as_of.year,
        OLDEST_BIRTH_YEAR_PARAMETER: report.as_of.year - OLDEST_KEPT_BIRTH_YEAR_OFFSET,
    }


def register_expectations() -> Mapping[str, type]:
    """Import the product's GX expectations, which registers them with GX; returns them by type.

    GX builds an expectation from a suite file only when its class was imported: one that was not is logged
    and dropped, and the suite then checks less than its file says.
    """
    from airflow_phi_guard.quality.expectations import PRODUCT_EXPECTATIONS

    return PRODUCT_EXPECTATIONS


def build_expectation_suite(
    name: str,
    specs: Sequence[ExpectationSpec],
    *,
    meta: Mapping[str, Any] | None = None,
    notes: str | None = None,
) -> ExpectationSuite:
    """A Great Expectations suite holding one expectation per spec.

    Each expectation carries its spec's meaning as Data Docs notes, and in its ``meta`` the meaning, the
    identifier letter and the spec's position, so that a result can be told apart from the others on the
    same column and put back in the order of the specs (GX reports results in an order of its own).

    :param name: the suite's name.
    :param specs: the checks, e.g. from :func:`expectations_for_policy`.
    :param meta: value-free facts to keep with the suite, such as the policy digest.
    :param notes: Markdown shown on the suite's Data Docs page, e.g. the run's consent counts.
    :raises ValueError: for a spec whose expectation neither GX nor the product implements, or one GX did
        not keep.
    """
    import great_expectations as gx

    product = register_expectations()
    expectations = []
    for position, spec in enumerate(specs):
        expectation_class = product.get(spec.expectation_type) or getattr(
            gx.expectations, spec.gx_class_name, None
        )
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

    suite = gx.ExpectationSuite(name=name, expectations=expectations, meta=dict(meta or {}), notes=notes)
    # GX logs and skips an expectation it cannot take; a suite with a check missing would pass too much.
    if len(suite.expectations) != len(expectations):
        raise ValueError(f"Great Expectations kept {len(suite.expectations)} of {len(expectations)} checks")
    return suite


def _required_outputs(published: Sequence[tuple[str, str, Treatment]], subject: str | None) -> list[str]:
    return [
        output
        for output, source, treatment in published
        if treatment is Treatment.PSEUDONYMIZE and (subject is None or source == subject)
    ]


def _column_expectations(
    name: str,
    treatment: Treatment,
    reference_year: int | None,
    zip3_vintage: str,
    detector_names: list[str],
    coding: ColumnCoding = ColumnCoding(),
) -> list[ExpectationSpec]:
    if treatment is Treatment.KEEP:
        return [
            ExpectationSpec(
                IDENTIFIERS_EXPECTATION,
                {"column": name, "detectors": detector_names},
                f"Kept values of {name} hold no identifier the product's detectors find.",
            )
        ]
    if treatment is Treatment.ZIP3:
        return [
            ExpectationSpec(
                ZIP3_EXPECTATION,
                {"column": name, "vintage": zip3_vintage},
                f"{name} holds existing three-digit ZIP prefixes only, those restricted under {zip3_vintage} "
                "as 000.",
                SafeHarborIdentifier.GEOGRAPHIC_SUBDIVISION,
            )
        ]
    if treatment is Treatment.AGE:
        return [
            ExpectationSpec(
                AGES_EXPECTATION,
                {"column": name, "top_age": TOP_AGE},
                f"{name} is an age in whole years from 0 to {TOP_AGE}, {TOP_AGE} meaning {TOP_AGE} or older.",
                SafeHarborIdentifier.DATES,
            )
        ]
    if treatment is Treatment.BIRTH_YEAR:
        if reference_year is None:
            oldest: Any = {"$PARAMETER": OLDEST_BIRTH_YEAR_PARAMETER}
            latest: Any = {"$PARAMETER": REFERENCE_YEAR_PARAMETER}
            bounds = "from the reference year less 90 to the reference year"
        else:
            oldest, latest = reference_year - OLDEST_KEPT_BIRTH_YEAR_OFFSET, reference_year
            bounds = f"from {oldest} to {latest}"
        return [
            ExpectationSpec(
                "expect_column_values_to_be_between",
                {"column": name, "min_value": oldest, "max_value": latest},
                f"{name} is a birth year {bounds}: the birth year of anyone over 89 at the reference date "
                "is suppressed.",
                SafeHarborIdentifier.DATES,
            )
        ]
    if treatment is Treatment.YEAR:
        return [
            ExpectationSpec(
                "expect_column_values_to_be_between",
                {"column": name, "min_value": EARLIEST_PLAUSIBLE_YEAR, "max_value": LATEST_PLAUSIBLE_YEAR},
                f"{name} is a calendar year ({EARLIEST_PLAUSIBLE_YEAR} to {LATEST_PLAUSIBLE_YEAR}), "
                "not a whole date or a day count.",
                SafeHarborIdentifier.DATES,
            )
        ]
    if treatment is Treatment.PSEUDONYMIZE:
        return [
            ExpectationSpec(
                "expect_column_values_to_match_regex",
                {"column": name, "regex": PSEUDONYM_PATTERN},
                f"{name} holds keyed pseudonyms only (HMAC-SHA256, 64 lowercase hex digits).",
            )
        ]
    if treatment in TEXT_FORMS:
        pattern, form = TEXT_FORMS[treatment]
        return [
            ExpectationSpec(
                "expect_column_values_to_match_regex",
                {"column": name, "regex": pattern},
                f"{name} holds {form}.",
            )
        ]
    if treatment is Treatment.AGE_BAND and coding.bands is not None:
        # Imported here: the treatments load pyarrow.compute, which loads pandas.
        from airflow_phi_guard.deid.generalize import AgeBands

        labels = AgeBands(edges=coding.bands).labels
        return [
            ExpectationSpec(
                "expect_column_values_to_be_in_set",
                {"column": name, "value_set": list(labels)},
                f"{name} holds the labels of the declared age bands only ({', '.join(labels)}): no raw age "
                "and no other band.",
                SafeHarborIdentifier.DATES,
            )
        ]
    if treatment is Treatment.TOP_BOTTOM_CODE and (coding.bottom is not None or coding.top is not None):
        # Within the bounds is all the output shows: a value at a bound may be coded or may have been the
        # bound already, which only the original tells apart.
        bounds = {"min_value": coding.bottom, "max_value": coding.top}
        return [
            ExpectationSpec(
                "expect_column_values_to_be_between",
                {"column": name, **{key: bound for key, bound in bounds.items() if bound is not None}},
                f"{name} lies {_bounds_text(coding.bottom, coding.top)}: every value beyond a bound was "
                "written as the bound.",
            )
        ]
    # Known shortcoming: a date-shift output gets no check of its values (only the allowlist covers it):
    # any shifted date is a plausible date, and whether it moved by the subject's shift within the window
    # can only be judged beside the original, which the governed set does not hold.
    return []


def _bounds_text(bottom: float | None, top: float | None) -> str:
    if bottom is not None and top is not None:
        return f"from {bottom} to {top}"
    return f"at least {bottom}" if bottom is not None else f"at most {top}"


def _refuse_uncoded(
    published: Sequence[tuple[str, str, Treatment]], coding: Mapping[str, ColumnCoding]
) -> None:
    uncoded = [
        f"{output} ({treatment.value})"
        for output, _, treatment in published
        if _lacks_coding(treatment, coding.get(output, ColumnCoding()))
    ]
    if uncoded:
        raise QualityCheckFailedError(
            [
                f"the report records no bands or bounds of {name_some(uncoded)}, so their values cannot be "
                "checked; govern the set again with a release whose report records them, or validate it with "
                "the suite generated from its policy"
            ]
        )


def _lacks_coding(treatment: Treatment, coding: ColumnCoding) -> bool:
    if treatment is Treatment.AGE_BAND:
        return coding.bands is None
    if treatment is Treatment.TOP_BOTTOM_CODE:
        return coding.bottom is None and coding.top is None
    return False


# Which Arrow types a treatment's output must have for its expectation to judge the values.
_NEEDS_TEXT = frozenset({Treatment.ZIP3, Treatment.PSEUDONYMIZE, Treatment.AGE_BAND, *TEXT_FORMS})
_NEEDS_INTEGER = frozenset({Treatment.AGE, Treatment.BIRTH_YEAR, Treatment.YEAR})
_NEEDS_NUMBER = frozenset({Treatment.TOP_BOTTOM_CODE})


def _refuse_misfit_types(output_columns: Sequence[OutputColumn]) -> None:
    misfits = (
        [
            f"{column.name} ({column.treatment.value} needs text, found {column.arrow_type})"
            for column in output_columns
            if column.treatment in _NEEDS_TEXT and not column.is_string
        ]
        + [
            f"{column.name} ({column.treatment.value} needs integers, found {column.arrow_type})"
            for column in output_columns
            if column.treatment in _NEEDS_INTEGER and not column.is_integer
        ]
        + [
            f"{column.name} ({column.treatment.value} needs numbers, found {column.arrow_type})"
            for column in output_columns
            if column.treatment in _NEEDS_NUMBER and not column.is_number
        ]
    )
    if misfits:
        raise QualityCheckFailedError(
            [
                "the governed dataset's column types do not fit their treatments, so their values cannot be "
                f"checked: {name_some(misfits)}; the dataset was not written by this policy's treatments"
            ]
        )


def _is_number(arrow_type: pa.DataType) -> bool:
    value_type = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    return (
        pa.types.is_integer(value_type) or pa.types.is_floating(value_type) or pa.types.is_decimal(value_type)
    )


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
