"""The Great Expectations custom expectations of the product: the checks of a governed dataset GX lacks.

Importing this module imports Great Expectations and registers, with GX's registry, six expectations and
the metrics behind them; it is imported lazily (:func:`airflow_phi_guard.quality.suite.register_expectations`)
so that parsing a DAG stays cheap. Each expectation asks its question with the product's own parts, not a
second implementation: the value detectors (:func:`~airflow_phi_guard.phi.detectors.scan_values`), the ZIP3
tables (:mod:`airflow_phi_guard.deid.zip3`), the risk accumulator (:mod:`airflow_phi_guard.deid.risk`) and
the consent admission (:mod:`airflow_phi_guard.consent.admission`).

Every metric returns counts, column names and identifier letters, never a cell value or a subject id, so a
result stays value-free whatever result format is asked for; the renderers turn the counts into the
sentences of Data Docs. Nulls are stated per check: a missing value is counted as missing and is never
unexpected, except for the consent check, where a row without a subject cannot show a consent.

Metrics are computed on Arrow arrays made from the batch's pandas frame, so that a column read with NumPy
dtypes (an integer column with nulls becomes ``float64``) and one read with Arrow dtypes give the same
answer: integer-valued floats count as whole numbers, as their logical type is.
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from great_expectations.compatibility import pydantic
from great_expectations.core.suite_parameters import SuiteParameterDict
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import BatchExpectation
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider
from great_expectations.render import LegacyDiagnosticRendererType, LegacyRendererType
from great_expectations.render.components import RenderedStringTemplateContent
from great_expectations.render.renderer.renderer import renderer

from airflow_phi_guard.arrow_types import holds_text
from airflow_phi_guard.phi.detectors import DETECTORS, ValueDetector, scan_values

#: The library metadata GX asks of an expectation; these are the product's, not GX's.
_LIBRARY_METADATA: dict[str, Any] = {
    "maturity": "production",
    "tags": ["airflow-phi-guard", "hipaa"],
    "contributors": ["@airflow-phi-guard"],
    "requirements": [],
    "has_full_test_suite": True,
    "manually_reviewed_code": True,
}


def _arrow_column(frame: Any, column: str) -> pa.Array:
    """One column of the batch's pandas frame as an Arrow array, NaN read as missing."""
    series = frame[column]
    array = pa.array(series, from_pandas=True)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _arrow_table(frame: Any, columns: list[str]) -> pa.Table:
    return pa.Table.from_pandas(frame[list(columns)], preserve_index=False)


def _count(mask: pa.Array) -> int:
    return int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)


def _whole_numbers(values: pa.Array) -> tuple[pa.Array | None, int]:
    """Integer values of a numeric column and how many non-null values are not whole numbers.

    :returns: the values as int64 (non-whole ones null), or None when the column is not numeric.
    """
    if pa.types.is_integer(values.type):
        return values.cast(pa.int64()), 0
    if pa.types.is_floating(values.type):
        whole = pc.equal(pc.floor(values), values)
        fractional = _count(pc.invert(whole))
        kept = pc.if_else(whole, values, pa.scalar(None, values.type))
        return pc.cast(kept, pa.int64(), safe=False), fractional
    return None, 0


class _ProductTableMetric(TableMetricProvider):
    """A metric over the whole batch that hands an Arrow view of it to :meth:`measure`."""

    @classmethod
    def measure(cls, frame: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(
        cls,  # noqa: N805 - GX binds metric functions to the provider class
        execution_engine: PandasExecutionEngine,
        metric_domain_kwargs: dict,
        metric_value_kwargs: dict,
        metrics: dict[str, Any],
        runtime_configuration: dict,
    ) -> dict[str, Any]:
        frame, _, _ = execution_engine.get_compute_domain(
            metric_domain_kwargs, domain_type="table", accessor_keys=None
        )
        return cls.measure(frame, dict(metric_value_kwargs))


class ColumnIdentifierCounts(_ProductTableMetric):
    """Per Safe Harbor letter, how many values of a text column hold that identifier."""

    metric_name = "phi_guard.column.identifier_counts"
    value_keys = ("column", "detectors")

    @classmethod
    def measure(cls, frame: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        values = _arrow_column(frame, arguments["column"])
        detectors = detectors_named(arguments.get("detectors") or ())
        found = scan_values(values, detectors) if holds_text(values.type) else {}
        return {
            "element_count": len(values),
            "missing_count": values.null_count,
            "scanned": holds_text(values.type),
            "found": {identifier.value: count for identifier, count in found.items()},
        }


class ColumnZip3Counts(_ProductTableMetric):
    """How many values of a column are no ZIP3, an unknown prefix, or a restricted prefix kept."""

    metric_name = "phi_guard.column.zip3_counts"
    value_keys = ("column", "vintage")

    @classmethod
    def measure(cls, frame: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        from airflow_phi_guard.deid.zip3 import restricted_prefixes, zip3_state_table

        values = _arrow_column(frame, arguments["column"])
        present = len(values) - values.null_count
        if not holds_text(values.type):
            return {"element_count": len(values), "missing_count": values.null_count, "malformed": present}
        text = values.cast(pa.string()) if not pa.types.is_string(values.type) else values
        three_digits = pc.match_substring_regex(text, r"^[0-9]{3}$")
        known = pc.is_in(text, value_set=pa.array(sorted(set(zip3_state_table().prefixes) | {"000"})))
        restricted = pc.is_in(text, value_set=pa.array(sorted(restricted_prefixes(arguments["vintage"]))))
        return {
            "element_count": len(values),
            "missing_count": values.null_count,
            "malformed": _count(pc.invert(three_digits)),
            "unknown_prefix": _count(pc.and_(three_digits, pc.invert(known))),
            "restricted_kept": _count(restricted),
        }


class ColumnAgeCounts(_ProductTableMetric):
    """How many values of an age column are above the top category, negative, or not whole years."""

    metric_name = "phi_guard.column.age_counts"
    value_keys = ("column", "top_age")

    @classmethod
    def measure(cls, frame: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        values = _arrow_column(frame, arguments["column"])
        numbers, fractional = _whole_numbers(values)
        counts = {"element_count": len(values), "missing_count": values.null_count}
        if numbers is None:
            return {**counts, "not_a_number": len(values) - values.null_count}
        return {
            **counts,
            "above_top_age": _count(pc.greater(numbers, int(arguments["top_age"]))),
            "negative": _count(pc.less(numbers, 0)),
            "not_whole_years": fractional,
        }


class TableKAnonymity(_ProductTableMetric):
    """The k of the batch over its declared quasi-identifiers, measured by the product's risk accumulator."""

    metric_name = "phi_guard.table.k_anonymity"
    value_keys = ("quasi_identifiers", "k_min", "row_count_column")

    @classmethod
    def measure(cls, frame: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        from airflow_phi_guard.deid.risk import RiskAccumulator, RiskThresholds

        quasi_identifiers = list(arguments["quasi_identifiers"])
        missing = [name for name in quasi_identifiers if name not in frame.columns]
        if missing:
            return {"missing_columns": missing}
        weights = arguments.get("row_count_column")
        if weights:
            # A table of equivalence classes with their row counts, as the batch-wise validation of a
            # large set builds it: k is the smallest count, its classes those below k_min.
            table = _arrow_table(frame, [*quasi_identifiers, weights])
            sizes = table.column(weights)
            rows = int(pc.sum(sizes).as_py() or 0)
            return {
                "rows": rows,
                "classes": table.num_rows,
                "k": pc.min(sizes).as_py(),
                "classes_below_k": _count(pc.less(sizes, int(arguments["k_min"]))),
            }
        accumulator = RiskAccumulator(
            RiskThresholds(quasi_identifiers=tuple(quasi_identifiers), k_min=int(arguments["k_min"]))
        )
        accumulator.add(_arrow_table(frame, quasi_identifiers))
        risk = accumulator.measure()
        return {
            "rows": risk.rows,
            "classes": risk.classes,
            "k": risk.k,
            "classes_below_k": risk.classes_below_k,
        }


class ColumnConsentAdmission(_ProductTableMetric):
    """How many rows and subjects of the batch the consent registry admits, by basis and by reason."""

    metric_name = "phi_guard.column.consent_admission"
    value_keys = ("column", "consent_registry", "bases", "purpose", "as_of", "purposes_covering")

    @classmethod
    def measure(cls, frame: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        from airflow_phi_guard.consent.admission import ConsentAdmission
        from airflow_phi_guard.consent.sources import read_consent_registry

        admission = ConsentAdmission(
            read_consent_registry(arguments["consent_registry"]),
            arguments["bases"],
            arguments["purpose"],
            date.fromisoformat(str(arguments["as_of"])),
            purposes_covering=arguments.get("purposes_covering") or (),
        )
        _, _ = admission.admit(_arrow_column(frame, arguments["column"]))
        counts = admission.counts()
        return {
            "rows": len(frame),
            "rows_admitted": counts.rows_admitted,
            "rows_excluded": {reason.value: rows for reason, rows in counts.rows_excluded.items()},
            "subjects_admitted": counts.subjects_admitted,
            "admitted_subjects_by_basis": {
                basis.value: subjects for basis, subjects in counts.admitted_subjects_by_basis.items()
            },
        }


def detectors_named(names: Any) -> tuple[ValueDetector, ...]:
    """The built-in detectors of the given names, every one when none is named.

    :raises ValueError: for a name no built-in detector has, so that a suite cannot scan for less than it
        says.
    """
    names = list(names)
    unknown = sorted(set(names) - {detector.name for detector in DETECTORS})
    if unknown:
        raise ValueError(f"no built-in value detector is named {', '.join(unknown)}")
    return tuple(detector for detector in DETECTORS if not names or detector.name in names)


def _template(template: str, params: dict[str, Any], runtime_configuration: dict | None) -> list:
    styling = (runtime_configuration or {}).get("styling")
    return [
        RenderedStringTemplateContent(
            content_block_type="string_template",
            string_template={"template": template, "params": params, "styling": styling},
        )
    ]


class _ProductExpectation(BatchExpectation):
    """What the product's expectations share: library metadata, a sentence per check and per result."""

    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA

    @classmethod
    def sentence(cls, kwargs: dict[str, Any]) -> str:
        """What the check guarantees, as Data Docs print it; only arguments, never data."""
        raise NotImplementedError

    @classmethod
    def observation(cls, result: dict[str, Any]) -> str:
        """What the check found, in counts, as the validation page prints it."""
        details = result.get("details") or {}
        return ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in details.items()) or "-"

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(
        cls, configuration: Any = None, result: Any = None, runtime_configuration: dict | None = None, **_
    ) -> list:
        kwargs = dict(configuration.kwargs) if configuration else {}
        return _template(cls.sentence(kwargs), {}, runtime_configuration)

    @classmethod
    @renderer(renderer_type=LegacyDiagnosticRendererType.OBSERVED_VALUE)
    def _diagnostic_observed_value_renderer(
        cls, configuration: Any = None, result: Any = None, runtime_configuration: dict | None = None, **_
    ) -> str:
        if result is None or not result.result:
            return "--"
        return cls.observation(result.result)


class ExpectTableColumnsToMatchAllowlist(_ProductExpectation):
    """The table's columns are exactly the policy's allowlisted outputs: none added, none missing.

    GX's ``expect_table_columns_to_match_set`` with ``exact_match=False`` passes a table with an extra SSN
    column, since it only asks that the listed columns exist; this check fails it, and one that lacks an
    allowlisted output too. The result names the extra and missing columns (names, never values).
    """

    allowlist: list[str] | SuiteParameterDict = pydantic.Field(
        description="The output columns the policy allows, in output order."
    )

    metric_dependencies = ("table.columns",)
    success_keys = ("allowlist",)
    args_keys = ("allowlist",)

    @classmethod
    def sentence(cls, kwargs: dict[str, Any]) -> str:
        allowed = ", ".join(kwargs.get("allowlist") or [])
        return f"The table has exactly the allowlisted columns, none added and none missing: {allowed}."

    @classmethod
    def observation(cls, result: dict[str, Any]) -> str:
        details = result.get("details") or {}
        extra, missing = details.get("extra") or [], details.get("missing") or []
        if not extra and not missing:
            return "exactly the allowlisted columns"
        return f"extra: {', '.join(extra) or 'none'}; missing: {', '.join(missing) or 'none'}"

    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ) -> dict[str, Any]:
        allowlist = list(self._get_success_kwargs()["allowlist"])
        columns = list(metrics["table.columns"])
        extra = [name for name in columns if name not in allowlist]
        missing = [name for name in allowlist if name not in columns]
        return {
            "success": not extra and not missing,
            "result": {"observed_value": len(columns), "details": {"extra": extra, "missing": missing}},
        }


class ExpectColumnValuesToContainNoIdentifiers(_ProductExpectation):
    """No value of the column holds an identifier that the product's value detectors find.

    Runs :func:`airflow_phi_guard.phi.detectors.scan_values` with the built-in detectors named (all of them
    when none is named; a limited data set leaves out those of the elements it may keep). Missing values are
    counted as missing and hold nothing. A column that is not text is reported as not scanned and passes: the
    detectors read text, and a number column (an SSN stored as an integer) is caught by its name and the
    policy, not here.
    """

    column: str = pydantic.Field(description="The column whose values are scanned.")
    detectors: list[str] = pydantic.Field(
        default_factory=list, description="Names of the built-in value detectors to run; all when empty."
    )

    metric_dependencies = (ColumnIdentifierCounts.metric_name,)
    success_keys = ("detectors",)
    domain_keys = ("batch_id", "column")
    args_keys = ("column", "detectors")

    @classmethod
    def sentence(cls, kwargs: dict[str, Any]) -> str:
        found = detectors_named(kwargs.get("detectors") or ())
        letters = ", ".join(dict.fromkeys(detector.identifier.value for detector in found))
        return (
            f"No value of {kwargs.get('column')} holds an identifier the product's detectors find "
            f"(letters {letters}); missing values hold none."
        )

    @classmethod
    def observation(cls, result: dict[str, Any]) -> str:
        details = result.get("details") or {}
        found = details.get("found") or {}
        scanned = "" if details.get("scanned", True) else " (not text: not scanned)"
        listed = ", ".join(f"{letter}: {count}" for letter, count in found.items()) or "none"
        return f"identifiers found: {listed}; missing: {result.get('missing_count', 0)}{scanned}"

    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ) -> dict[str, Any]:
        counts = metrics[ColumnIdentifierCounts.metric_name]
        found = counts["found"]
        return {
            "success": not found,
            "result": {
                "observed_value": sum(found.values()),
                "element_count": counts["element_count"],
                "missing_count": counts["missing_count"],
                "details": {"found": dict(found), "scanned": counts["scanned"]},
            },
        }


def _unexpected_counts_result(metric: dict[str, int]) -> dict[str, Any]:
    """The result of a check whose metric counts unexpected values by kind beside the element and missing
    counts: it succeeds when no kind has any; counts only, never a value."""
    counts = dict(metric)
    element_count, missing_count = counts.pop("element_count"), counts.pop("missing_count")
    return {
        "success": not any(counts.values()),
        "result": {
            "observed_value": sum(counts.values()),
            "element_count": element_count,
            "missing_count": missing_count,
            "details": counts,
        },
    }


class ExpectColumnValuesToBeValidZip3(_ProductExpectation):
    """Every value is a three-digit ZIP prefix that exists, and no restricted prefix of the vintage is kept.

    45 CFR 164.514(b)(2)(i)(B): a prefix whose ZIP codes hold 20,000 people or fewer becomes ``000``. The
    restricted prefixes come from the vintage's table (:func:`~airflow_phi_guard.deid.zip3.vintage_record`
    names its source and digest); the prefixes that exist from the product's ZIP3 State table. Missing
    values are counted as missing and pass: the treatment writes null for a missing or non-US code.
    """

    column: str = pydantic.Field(description="The ZIP3 column.")
    vintage: str | SuiteParameterDict = pydantic.Field(description="The Census vintage of the list.")

    metric_dependencies = (ColumnZip3Counts.metric_name,)
    success_keys = ("vintage",)
    domain_keys = ("batch_id", "column")
    args_keys = ("column", "vintage")

    @classmethod
    def sentence(cls, kwargs: dict[str, Any]) -> str:
        return (
            f"{kwargs.get('column')} holds existing three-digit ZIP prefixes only, and every prefix "
            f"restricted under {kwargs.get('vintage')} is written 000."
        )

    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ) -> dict[str, Any]:
        return _unexpected_counts_result(metrics[ColumnZip3Counts.metric_name])


class ExpectColumnAgesToBeCapped(_ProductExpectation):
    """Every age is a whole number of years from 0 to the top category, 90 meaning "90 or older".

    45 CFR 164.514(b)(2)(i)(C): all ages over 89 are aggregated into one category. A value read as a float
    (an integer column with nulls under NumPy dtypes) counts by its logical value; a fraction is unexpected.
    Missing values are counted as missing and pass: a suppressed age is null.
    """

    column: str = pydantic.Field(description="The age column.")
    top_age: int | SuiteParameterDict = pydantic.Field(
        default=90, description="The top category, which stands for itself and every age above it."
    )

    metric_dependencies = (ColumnAgeCounts.metric_name,)
    success_keys = ("top_age",)
    domain_keys = ("batch_id", "column")
    args_keys = ("column", "top_age")

    @classmethod
    def sentence(cls, kwargs: dict[str, Any]) -> str:
        top = kwargs.get("top_age", 90)
        return (
            f"{kwargs.get('column')} is an age in whole years from 0 to {top}, {top} meaning {top} or older."
        )

    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ) -> dict[str, Any]:
        return _unexpected_counts_result(metrics[ColumnAgeCounts.metric_name])


class ExpectTableKAnonymityToBeAtLeast(_ProductExpectation):
    """Every equivalence class over the declared quasi-identifiers holds at least ``k_min`` rows.

    Measured by :class:`airflow_phi_guard.deid.risk.RiskAccumulator`, whose rule for missing values holds
    (:data:`airflow_phi_guard.deid.risk.MISSING_VALUES_RULE`): a missing value is a value of its own. With
    ``row_count_column`` the batch is a table of classes with their row counts instead of rows. The result
    holds k and counts of rows and classes; a missing quasi-identifier column fails the check.
    """

    quasi_identifiers: list[str] | SuiteParameterDict = pydantic.Field(
        description="The output columns someone could link to other sources."
    )
    k_min: int | SuiteParameterDict = pydantic.Field(description="Fewest rows of every class.")
    row_count_column: str | None = pydantic.Field(
        default=None, description="When the batch holds classes: the column of their row counts."
    )

    metric_dependencies = (TableKAnonymity.metric_name,)
    success_keys = ("quasi_identifiers", "k_min", "row_count_column")
    args_keys = ("quasi_identifiers", "k_min")

    @classmethod
    def sentence(cls, kwargs: dict[str, Any]) -> str:
        names = ", ".join(kwargs.get("quasi_identifiers") or [])
        return (
            f"Every group of rows alike in {names} holds at least {kwargs.get('k_min')} rows (k-anonymity)."
        )

    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ) -> dict[str, Any]:
        counts = dict(metrics[TableKAnonymity.metric_name])
        if "missing_columns" in counts:
            return {"success": False, "result": {"observed_value": None, "details": counts}}
        k_min = int(self._get_success_kwargs()["k_min"])
        k = counts["k"]
        return {
            # An empty set has no class to be too small.
            "success": k is None or k >= k_min,
            "result": {"observed_value": k, "details": counts},
        }


class ExpectColumnSubjectsToHaveAdmittedConsent(_ProductExpectation):
    """Every row's subject has a consent the registry admits for the purpose at the as-of date.

    The engine's consent admission decides (:class:`~airflow_phi_guard.consent.admission.ConsentAdmission`
    with the policy's bases and purpose). The check needs the subject ids the registry knows, so it runs on a
    set that still holds them: the pre-publication set of a run, not the governed set, whose subjects are
    keyed pseudonyms that no registry can be matched against. A row without a subject is excluded, so it fails
    the check. The result holds counts per basis and per reason, never an id.
    """

    column: str = pydantic.Field(description="The subject column, as the registry names subjects.")
    consent_registry: str = pydantic.Field(
        description="The registry: a file, a database URL or a FHIR export."
    )
    bases: list[str] = pydantic.Field(description="The consent bases the policy accepts, in its order.")
    purpose: str = pydantic.Field(description="The policy's purpose.")
    as_of: str | SuiteParameterDict = pydantic.Field(description="The date of the decision, ISO 8601.")
    purposes_covering: list[str] = pydantic.Field(default_factory=list, description="Purposes also accepted.")

    metric_dependencies = (ColumnConsentAdmission.metric_name,)
    success_keys = ("consent_registry", "bases", "purpose", "as_of", "purposes_covering")
    domain_keys = ("batch_id", "column")
    args_keys = ("column", "consent_registry", "bases", "purpose", "as_of")

    @classmethod
    def sentence(cls, kwargs: dict[str, Any]) -> str:
        bases = ", ".join(kwargs.get("bases") or [])
        return (
            f"Every subject of {kwargs.get('column')} has a consent admitted for {kwargs.get('purpose')} on "
            f"{kwargs.get('as_of')} under one of: {bases}."
        )

    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ) -> dict[str, Any]:
        counts = dict(metrics[ColumnConsentAdmission.metric_name])
        excluded = counts["rows"] - counts["rows_admitted"]
        return {
            "success": excluded == 0,
            "result": {"observed_value": excluded, "element_count": counts["rows"], "details": counts},
        }


#: The product's expectations by their snake-case type, as suites name them.
PRODUCT_EXPECTATIONS: dict[str, type] = {
    expectation.expectation_type: expectation
    for expectation in (
        ExpectTableColumnsToMatchAllowlist,
        ExpectColumnValuesToContainNoIdentifiers,
        ExpectColumnValuesToBeValidZip3,
        ExpectColumnAgesToBeCapped,
        ExpectTableKAnonymityToBeAtLeast,
        ExpectColumnSubjectsToHaveAdmittedConsent,
    )
}
