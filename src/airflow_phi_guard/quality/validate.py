"""Validation of a governed dataset against its policy's suite, with value-free results and Data Docs.

A validation runs the suite through a Great Expectations checkpoint of a file-backed project under
``gx_project_dir``, asking for :data:`~airflow_phi_guard.quality.results.RESULT_FORMAT` (counts, never a
value), and passes every result through :func:`~airflow_phi_guard.quality.results.scrub_result`: should GX
have recorded anything beyond counts, the result is rewritten in the store and its Data Docs page rebuilt
before this module returns, and a warning says how many results had to be cut. An expectation that
raises is caught by GX, which keeps the exception's message and traceback with the result; a message can
quote a value, so it is withheld the same way and the expectation counts as failed.

The Data Docs site is a filesystem site whose index is ``<data_docs_dir>/index.html``; after every build
its pages are pointed at the copies of their styles and scripts that the product ships
(:mod:`airflow_phi_guard.quality.data_docs`), so that they render on a machine without network. The
suite page carries the run's consent counts as its notes (numbers, the as-of date and the bases; never
an id). The suites, checkpoints and value-free results stay in the project between runs, so the index
lists the history of every validation. Two validations must not share a project folder at the same time:
GX rewrites its configuration file on every run without a lock. GX 1.24 sends no usage statistics;
analytics are switched off anyway, in the environment before GX is imported and in the project's
configuration, for versions that would.

A dataset of several Parquet row groups (or files) is validated one row group at a time, so memory is
bounded by the largest row group rather than the dataset: the first group runs through the checkpoint,
the others through a GX validator of the same suite, and the results are added up per expectation
(counts summed, success only when every group met it) into the one result that is stored and rendered.
k-anonymity is not additive over row groups, so its rows are reduced, group by group, to the equivalence
classes with their row counts, and the check runs once on that table, whose size is the number of
classes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa

from airflow_phi_guard.exceptions import QualityCheckFailedError, name_some
from airflow_phi_guard.quality.results import RESULT_FORMAT, scrub_result
from airflow_phi_guard.quality.suite import (
    IDENTIFIERS_EXPECTATION,
    K_ANONYMITY_EXPECTATION,
    ExpectationSpec,
    RiskCheck,
    build_expectation_suite,
    check_output_types,
    expectations_for_policy,
    suite_parameters,
)
from airflow_phi_guard.report import GovernanceReport

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.data_context import FileDataContext

log = logging.getLogger(__name__)

#: The name of the Data Docs site in the GX project.
DATA_DOCS_SITE = "phi_guard"
#: The pandas data source that holds one dataframe asset per suite.
DATA_SOURCE = "phi_guard"
#: The column of row counts in the table of equivalence classes that k-anonymity is checked on.
CLASS_ROWS_COLUMN = "__phi_guard_rows"

_WITHHELD = "withheld by airflow-phi-guard: an exception message may quote a cell value"
_PRODUCT_TYPES = (
    "expect_table_columns_to_match_allowlist",
    "expect_column_values_to_contain_no_identifiers",
    "expect_column_values_to_be_valid_zip3",
    "expect_column_ages_to_be_capped",
    "expect_table_k_anonymity_to_be_at_least",
    "expect_column_subjects_to_have_admitted_consent",
)


class ExpectationOutcome(NamedTuple):
    """Whether one expectation was met, without anything it observed.

    :param expectation_type: the GX expectation, e.g. ``expect_column_values_to_not_match_regex``.
    :param column: the column it checked, or None for a table-level expectation.
    :param success: whether it was met; an expectation that raised counts as not met.
    :param identifier: the Safe Harbor letter the expectation keeps out, when it is about one; for the
        identifier check, the letters it found, comma-separated.
    :param unexpected_count: the values that failed it, when it counts values.
    :param missing_count: the missing values it skipped, when it counts values.
    """

    expectation_type: str
    column: str | None
    success: bool
    identifier: str | None = None
    unexpected_count: int | None = None
    missing_count: int | None = None


@dataclass(frozen=True)
class ValidationStatistics:
    """How many expectations were evaluated, met and not met.

    :param evaluated: expectations run.
    :param successful: expectations met.
    :param unsuccessful: expectations not met, those that raised included.
    """

    evaluated: int
    successful: int
    unsuccessful: int


@dataclass(frozen=True)
class ValidationSummary:
    """The outcome of validating a governed dataset: names, flags and counts, never a value.

    :param success: whether every expectation was met.
    :param suite_name: the suite that was run.
    :param results: one outcome per expectation, in the order of the suite's specs.
    :param data_docs_index: the ``index.html`` of the Data Docs site.
    :param statistics: the expectation counts.
    :param data_docs_page: the Data Docs page of this validation result, when GX named it.
    """

    success: bool
    suite_name: str
    results: tuple[ExpectationOutcome, ...]
    data_docs_index: str
    statistics: ValidationStatistics
    data_docs_page: str | None = None

    @property
    def failures(self) -> tuple[ExpectationOutcome, ...]:
        """The expectations that were not met."""
        return tuple(outcome for outcome in self.results if not outcome.success)

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain data, small enough for XCom."""
        return {
            "success": self.success,
            "suite_name": self.suite_name,
            "results": [outcome._asdict() for outcome in self.results],
            "data_docs_index": self.data_docs_index,
            "data_docs_page": self.data_docs_page,
            "statistics": {
                "evaluated": self.statistics.evaluated,
                "successful": self.statistics.successful,
                "unsuccessful": self.statistics.unsuccessful,
            },
        }


def validate_governed_dataset(
    dataset_path: str | os.PathLike[str],
    report: GovernanceReport,
    *,
    suite_name: str,
    data_docs_dir: str | os.PathLike[str],
    gx_project_dir: str | os.PathLike[str],
    suite_path: str | os.PathLike[str] | None = None,
    risk: RiskCheck | None = None,
) -> ValidationSummary:
    """Validate a governed Parquet dataset against its policy's suite, and build Data Docs.

    A validation that fails does not raise: the summary says so, and :func:`raise_for_failures` turns it
    into an error.

    :param dataset_path: the governed Parquet file (or folder of files) the report's run published.
    :param report: the governance report of that run.
    :param suite_name: the name of the suite, its checkpoint and its data asset in the GX project.
    :param data_docs_dir: the folder of the Data Docs site; its index is ``<data_docs_dir>/index.html``.
    :param gx_project_dir: the folder of the file-backed GX project, created when missing.
    :param suite_path: a suite file generated from the policy (``expectations/<policy>.json``) to run;
        by default the suite is derived from the report, which gives the same checks.
    :param risk: the quasi-identifiers and ``k_min`` to check, for a suite derived from the report.
    :raises ValueError: when the report is not of a published run, or the suite file was made from another
        policy than the report's, or GX did not build all of its expectations.
    :raises QualityCheckFailedError: when a column's type does not fit its treatment, or, for a suite
        derived from the report, the report records no bands or bounds of a generalised column, so that no
        suite can judge its values.
    """
    from airflow_phi_guard.engine.source import open_source

    # a partitioned set is read with its partition columns, in the order and types it was written with
    dataset = open_source(dataset_path)
    parameters: dict[str, Any] = {}
    if suite_path is None:
        specs = expectations_for_policy(report, dataset.schema, risk=risk)
    else:
        from airflow_phi_guard.quality.policy_suites import load_suite

        # The suite file holds the policy's bands and bounds, so a report that records none still validates.
        check_output_types(report, dataset.schema)
        loaded = load_suite(suite_path)
        if loaded.policy_digest != report.policy.digest:
            raise ValueError(
                f"the suite {suite_path} was generated from policy digest {loaded.policy_digest}, but "
                f"the set was governed under {report.policy.digest}; run 'phi-guard expectations "
                "generate' again"
            )
        specs, parameters = list(loaded.specs), suite_parameters(report)

    summary = run_expectations(
        _batches(dataset),
        specs,
        suite_name=suite_name,
        data_docs_dir=data_docs_dir,
        gx_project_dir=gx_project_dir,
        run_name=f"{report.policy.name}-v{report.policy.version}",
        suite_meta={
            "phi_guard": {
                "policy": report.policy.name,
                "policy_version": report.policy.version,
                "policy_digest": report.policy.digest,
                "method": report.method.value,
            }
        },
        suite_notes=consent_notes(report),
        parameters=parameters,
    )
    log.info(
        "validated the governed dataset of policy %s (digest %s) against suite %s: "
        "%d of %d expectations met; Data Docs at %s",
        report.policy.name,
        report.policy.digest,
        suite_name,
        summary.statistics.successful,
        summary.statistics.evaluated,
        summary.data_docs_index,
    )
    return summary


def consent_notes(report: GovernanceReport) -> str | None:
    """The run's consent counts as Markdown for the suite's Data Docs page: numbers and names, never an id.

    :param report: the governance report of the run.
    :returns: None when the report has no consent block.
    """
    consent = report.consent
    if consent is None:
        return None

    def listed(counts: Mapping[str, int]) -> str:
        return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"

    return "\n".join(
        [
            f"**Consent of this run**, judged on {consent.as_of.isoformat()}:",
            "",
            f"- admitted rows by basis: {listed(consent.admitted_rows_by_basis)}",
            f"- admitted subjects by basis: {listed(consent.admitted_subjects_by_basis)}",
            f"- excluded rows by reason: {listed(consent.excluded_rows_by_reason)}",
            f"- rows matched to the registry: {consent.rows_matched}",
        ]
    )


def run_expectations(
    data: pa.Table | Iterable[pa.Table],
    specs: Sequence[ExpectationSpec],
    *,
    suite_name: str,
    data_docs_dir: str | os.PathLike[str],
    gx_project_dir: str | os.PathLike[str],
    run_name: str | None = None,
    suite_meta: Mapping[str, Any] | None = None,
    suite_notes: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> ValidationSummary:
    """Run a suite of specs on data through a GX checkpoint that updates Data Docs; keep no value.

    :param data: the data to validate: one table, or its batches (row groups), validated one at a time.
    :param specs: the checks, e.g. from :func:`~airflow_phi_guard.quality.suite.expectations_for_policy`.
    :param suite_name: the name of the suite, its checkpoint and its data asset in the GX project.
    :param data_docs_dir: the folder of the Data Docs site; its index is ``<data_docs_dir>/index.html``.
    :param gx_project_dir: the folder of the file-backed GX project, created when missing.
    :param run_name: the name of the run in the results store and Data Docs.
    :param suite_meta: value-free facts to keep with the suite, such as the policy digest.
    :param suite_notes: Markdown for the suite's Data Docs page, e.g. from :func:`consent_notes`.
    :param parameters: values of the suite's parameters, e.g. from
        :func:`~airflow_phi_guard.quality.suite.suite_parameters`.
    """
    from airflow_phi_guard.quality.data_docs import make_offline

    batches = iter([data] if isinstance(data, pa.Table) else data)
    context = _open_project(Path(gx_project_dir), Path(data_docs_dir))
    # k-anonymity is judged once on the classes of the whole set, every other check per batch.
    risk_specs = [spec for spec in specs if spec.expectation_type == K_ANONYMITY_EXPECTATION]
    classes = _ClassCounts([list(spec.kwargs["quasi_identifiers"]) for spec in risk_specs])

    first = next(batches, None)
    if first is None:
        first = pa.table({})
    classes.add(first)
    suite = context.suites.add_or_update(
        build_expectation_suite(suite_name, specs, meta=suite_meta or {}, notes=suite_notes)
    )
    run = _Run(context, suite_name, suite, parameters or {})
    result, result_key = run.checkpoint(first, run_name)

    aggregated = _Aggregate(result)
    for batch in batches:
        classes.add(batch)
        aggregated.add(run.validate(batch))
    for position, spec in enumerate(specs):
        if spec.expectation_type == K_ANONYMITY_EXPECTATION:
            aggregated.replace(position, run.validate_classes(spec, position, classes))

    names = frozenset(first.column_names) | _named_columns(specs)
    cut, raised = _withhold_observations(result, names)
    if cut or raised or aggregated.changed:
        context.validation_results_store.set(result_key, result)
        context.build_data_docs(site_names=[DATA_DOCS_SITE], resource_identifiers=[result_key])
    make_offline(data_docs_dir)
    if cut:
        log.warning(
            "Great Expectations recorded more than counts in %d expectation result(s) of suite %s; "
            "they were cut from the results store and Data Docs",
            cut,
            suite_name,
        )
    if raised:
        log.warning(
            "%d expectation(s) of suite %s raised inside Great Expectations and count as failed; "
            "their messages were withheld",
            raised,
            suite_name,
        )

    summary = _summarise(result, len(specs), suite_name, Path(data_docs_dir).resolve() / "index.html")
    return dataclasses.replace(summary, data_docs_page=_page_of(context, result_key))


def _page_of(context: FileDataContext, result_key: Any) -> str | None:
    from urllib.parse import unquote, urlparse

    sites = context.get_docs_sites_urls(resource_identifier=result_key, site_name=DATA_DOCS_SITE)
    url = (sites[0].get("site_url") if sites else None) or ""
    return unquote(urlparse(url).path) if url.startswith("file://") else None


def raise_for_failures(summary: ValidationSummary, report_path: str | None = None) -> None:
    """Raise :class:`QualityCheckFailedError` when the validation failed, naming what failed.

    :param summary: the outcome of :func:`validate_governed_dataset`.
    :param report_path: where the governance report is, for the message.
    :raises QualityCheckFailedError: with one reason per failed expectation: its type, column and
        identifier letter, never a value.
    """
    if summary.success:
        return
    failed = [_describe(outcome) for outcome in summary.failures] or [
        "the suite failed without a failing expectation"
    ]
    raise QualityCheckFailedError(
        [
            f"the governed dataset failed suite '{summary.suite_name}': {name_some(failed)}; "
            f"see the Data Docs at {summary.data_docs_index}"
        ],
        report_path,
    )


def _describe(outcome: ExpectationOutcome) -> str:
    where = f" on {outcome.column}" if outcome.column else ""
    letter = f" (identifier {outcome.identifier})" if outcome.identifier else ""
    return f"{outcome.expectation_type}{where}{letter}"


def _open_project(gx_project_dir: Path, data_docs_dir: Path) -> FileDataContext:
    # Read at import by the GX versions that had a usage-statistics client; 1.24 has none.
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(gx_project_dir))
    context.config.analytics_enabled = False
    # Progress bars only clutter task logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.variables.save()

    site_config = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(data_docs_dir.resolve()),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    sites = context.list_data_docs_sites()
    # One site only: GX's default local site would keep a second copy of the docs inside the project.
    for other in [name for name in sites if name != DATA_DOCS_SITE]:
        context.delete_data_docs_site(other)
    if DATA_DOCS_SITE not in sites:
        context.add_data_docs_site(DATA_DOCS_SITE, site_config)
    elif sites[DATA_DOCS_SITE] != site_config:
        context.update_data_docs_site(DATA_DOCS_SITE, site_config)
    return context


#: The most rows validated in one batch: a row group larger than this is read in slices of it, so that a
#: file written as one huge row group is not read whole.
VALIDATION_BATCH_ROWS = 250_000


def _batches(dataset: Any, batch_rows: int = VALIDATION_BATCH_ROWS) -> Iterator[pa.Table]:
    """The dataset one batch at a time: a row group, or a slice of at most ``batch_rows`` rows of one.

    Memory is bounded by ``batch_rows``, not by the dataset or its largest row group. The dataset's schema
    fills in the partition columns, which a fragment holds in its path, not its file. A dataset without
    files (a partitioned set that published no row) gives one empty batch of its schema, so that its
    columns and types are still checked.
    """
    any_fragment = False
    for fragment in dataset.get_fragments():
        any_fragment = True
        empty = True
        for group in fragment.split_by_row_group():
            for batch in group.to_batches(schema=dataset.schema, batch_size=batch_rows):
                if batch.num_rows:
                    empty = False
                    yield pa.Table.from_batches([batch], schema=dataset.schema)
        if empty:
            yield dataset.schema.empty_table()
    if not any_fragment:
        yield dataset.schema.empty_table()


def _named_columns(specs: Sequence[ExpectationSpec]) -> frozenset[str]:
    names: set[str] = set()
    for spec in specs:
        for key in ("allowlist", "quasi_identifiers"):
            names.update(spec.kwargs.get(key) or ())
        if spec.column:
            names.add(spec.column)
    return frozenset(names)


def _frame(table: pa.Table) -> Any:
    return table.to_pandas()


class _Run:
    """The GX objects of one validation: the checkpoint for the first batch, a validator for the rest."""

    def __init__(
        self,
        context: FileDataContext,
        suite_name: str,
        suite: Any,
        parameters: Mapping[str, Any],
    ) -> None:
        import great_expectations as gx

        self.context = context
        self.suite = suite
        self.parameters = dict(parameters)
        # The dataframe is handed to the run, never to a definition, so no store keeps it.
        # The data source is made anew for every validation: one read back from the project that an earlier
        # validation in this process saved is not bound to this context, and its batches then fail with
        # GX's MissingDataContextError. It holds no data, only the asset's name.
        if DATA_SOURCE in context.data_sources.all():
            context.data_sources.delete(DATA_SOURCE)
        source = context.data_sources.add_pandas(DATA_SOURCE)
        assets = {asset.name: asset for asset in source.assets}
        asset = _get_or_add(assets, suite_name, lambda: source.add_dataframe_asset(suite_name))
        self.batch_definition = _get_or_add(
            {definition.name: definition for definition in asset.batch_definitions},
            "whole-dataset",
            lambda: asset.add_batch_definition_whole_dataframe("whole-dataset"),
        )
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite_name, data=self.batch_definition, suite=suite)
        )
        self.checkpoint_ = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=suite_name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data-docs", site_names=[DATA_DOCS_SITE])],
                result_format=dict(RESULT_FORMAT),
            )
        )
        self.batch_suite = gx.ExpectationSuite(
            name=f"{suite_name}-batch",
            expectations=[
                expectation.configuration
                for expectation in suite.expectations
                if expectation.expectation_type != K_ANONYMITY_EXPECTATION
            ],
        )

    def checkpoint(
        self, table: pa.Table, run_name: str | None
    ) -> tuple[ExpectationSuiteValidationResult, Any]:
        from great_expectations.core.run_identifier import RunIdentifier

        with _quiet_patterns():
            checkpoint_result = self.checkpoint_.run(
                batch_parameters={"dataframe": _frame(table)},
                expectation_parameters=self.parameters or None,
                run_id=RunIdentifier(run_name=run_name),
            )
        ((result_key, result),) = checkpoint_result.run_results.items()
        return result, result_key

    def validate(self, table: pa.Table) -> ExpectationSuiteValidationResult:
        return self._validator(table).validate_expectation_suite(self.batch_suite, self.parameters or None)

    def validate_classes(self, spec: ExpectationSpec, position: int, classes: _ClassCounts) -> Any:
        import great_expectations as gx

        expectation = self.suite.expectations[position].configuration.to_domain_obj()
        weighted = type(expectation)(
            **{**expectation.configuration.kwargs, "row_count_column": CLASS_ROWS_COLUMN}
        )
        weighted.meta = expectation.meta
        suite = gx.ExpectationSuite(name="k-anonymity", expectations=[weighted.configuration])
        table = classes.table(list(spec.kwargs["quasi_identifiers"]))
        (result,) = self._validator(table).validate_expectation_suite(suite).results
        return result

    def _validator(self, table: pa.Table) -> Any:
        from great_expectations.validator.v1_validator import Validator

        return _QuietValidator(
            Validator(
                batch_definition=self.batch_definition,
                result_format=dict(RESULT_FORMAT),
                batch_parameters={"dataframe": _frame(table)},
            )
        )


class _QuietValidator:
    def __init__(self, validator: Any) -> None:
        self.validator = validator

    def validate_expectation_suite(self, suite: Any, parameters: Mapping[str, Any] | None = None) -> Any:
        with _quiet_patterns():
            return self.validator.validate_expectation_suite(suite, dict(parameters) if parameters else None)


@contextmanager
def _quiet_patterns() -> Iterator[None]:
    # The patterns group their alternatives; pandas warns that it will not return the groups.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This pattern is interpreted as a regular expression")
        yield


class _ClassCounts:
    """The equivalence classes of the rows seen so far, with their row counts, per set of quasi-identifiers.

    Memory is bounded by the number of classes: each batch is reduced with Arrow's hash aggregation and
    merged into the classes so far. Missing values group with missing values, as the risk accumulator
    counts them (:data:`airflow_phi_guard.deid.risk.MISSING_VALUES_RULE`).
    """

    def __init__(self, keys: Sequence[Sequence[str]]) -> None:
        self._classes: dict[tuple[str, ...], pa.Table | None] = {tuple(names): None for names in keys}

    def add(self, batch: pa.Table) -> None:
        for names, so_far in self._classes.items():
            if not set(names) <= set(batch.column_names):
                continue
            ones = pa.repeat(pa.scalar(1, pa.int64()), batch.num_rows)
            counted = batch.select(list(names)).append_column(CLASS_ROWS_COLUMN, ones)
            merged = (
                counted if so_far is None else pa.concat_tables([so_far, counted], promote_options="default")
            )
            self._classes[names] = self._reduce(merged, names)

    def table(self, names: Sequence[str]) -> pa.Table:
        counted = self._classes.get(tuple(names))
        if counted is None:
            # No batch held the columns: the check finds them missing, as on the whole set.
            return pa.table({CLASS_ROWS_COLUMN: pa.array([], pa.int64())})
        return counted

    @staticmethod
    def _reduce(table: pa.Table, names: Sequence[str]) -> pa.Table:
        grouped = table.group_by(list(names), use_threads=False).aggregate([(CLASS_ROWS_COLUMN, "sum")])
        return grouped.rename_columns([*names, CLASS_ROWS_COLUMN]).select([*names, CLASS_ROWS_COLUMN])


class _Aggregate:
    """Adds the results of further batches into the first batch's result, expectation by expectation."""

    def __init__(self, result: ExpectationSuiteValidationResult) -> None:
        self.result = result
        self.changed = False
        self._by_position = {_position_in_suite(item): item for item in result.results}

    def add(self, other: ExpectationSuiteValidationResult) -> None:
        self.changed = True
        for item in other.results:
            mine = self._by_position.get(_position_in_suite(item))
            if mine is None:
                continue
            mine.success = bool(mine.success) and bool(item.success)
            if _raised(item.exception_info):
                mine.exception_info = item.exception_info
            mine.result = _added(mine.expectation_config.type, mine.result or {}, item.result or {})
        self.result.success = all(item.success for item in self.result.results)

    def replace(self, position: int, replacement: Any) -> None:
        self.changed = True
        mine = self._by_position.get(position)
        if mine is None:
            return
        mine.success = replacement.success
        mine.result = replacement.result
        mine.exception_info = replacement.exception_info
        self.result.success = all(item.success for item in self.result.results)


def _added(expectation_type: str, mine: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for key in set(mine) | set(other):
        if key.endswith("_percent") or key.startswith("unexpected_percent"):
            continue
        if key == "observed_value" and expectation_type == _PRODUCT_TYPES[0]:
            total[key] = mine.get(key)
            continue
        total[key] = _sum(mine.get(key), other.get(key))
    elements, missing = total.get("element_count"), total.get("missing_count")
    unexpected = total.get("unexpected_count")
    if isinstance(elements, int) and elements:
        if isinstance(missing, int):
            total["missing_percent"] = missing / elements * 100
        if isinstance(unexpected, int):
            total["unexpected_percent_total"] = unexpected / elements * 100
            present = elements - (missing or 0)
            total["unexpected_percent"] = unexpected / present * 100 if present else None
            total["unexpected_percent_nonmissing"] = total["unexpected_percent"]
    return total


def _sum(left: Any, right: Any) -> Any:
    if left is None:
        return right
    if right is None:
        return left
    if isinstance(left, bool) or isinstance(right, bool):
        return bool(left) and bool(right)
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left + right
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return {key: _sum(left.get(key), right.get(key)) for key in {**left, **right}}
    if isinstance(left, list) and isinstance(right, list):
        return list(dict.fromkeys([*left, *right]))
    return left


def _get_or_add(existing: Mapping[str, Any], name: str, add: Any) -> Any:
    return existing[name] if name in existing else add()


def _withhold_observations(
    result: ExpectationSuiteValidationResult, names: frozenset[str]
) -> tuple[int, int]:
    """Cut each expectation result down to counts, and blank what an expectation that raised left.

    :returns: how many results had more than counts, and how many held an exception.
    """
    cut = raised = 0
    for expectation_result in result.results:
        kept, removed = scrub_result(
            expectation_result.result,
            product_expectation=expectation_result.expectation_config.type in _PRODUCT_TYPES,
            names=names,
        )
        expectation_result.result = kept
        cut += bool(removed)
        if _raised(expectation_result.exception_info):
            expectation_result.exception_info = {
                "raised_exception": True,
                "exception_message": _WITHHELD,
                "exception_traceback": _WITHHELD,
            }
            expectation_result.success = False
            raised += 1
    if cut or raised:
        result.success = all(expectation_result.success for expectation_result in result.results)
    return cut, raised


def _raised(exception_info: Mapping[str, Any] | None) -> bool:
    # GX keeps one flat record, or one record per failed metric keyed by the metric's id.
    if not exception_info:
        return False
    if "raised_exception" in exception_info:
        return bool(exception_info["raised_exception"])
    return any(isinstance(info, Mapping) and info.get("raised_exception") for info in exception_info.values())


def _count_of(expectation_result: Any, field: str) -> int | None:
    value = (expectation_result.result or {}).get(field)
    if value is None and field == "unexpected_count":
        # The product's checks count what they found as their observed value.
        value = (expectation_result.result or {}).get("observed_value")
        if expectation_result.expectation_config.type in (_PRODUCT_TYPES[0], _PRODUCT_TYPES[4]):
            return None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _letters_found(expectation_result: Any) -> str | None:
    # The identifier check names no letter in advance: its result says which letters it found.
    if expectation_result.expectation_config.type != IDENTIFIERS_EXPECTATION:
        return None
    found = ((expectation_result.result or {}).get("details") or {}).get("found") or {}
    return ",".join(sorted(found)) or None


def _position_in_suite(expectation_result: Any) -> int:
    marks = (expectation_result.expectation_config.meta or {}).get("phi_guard", {})
    return int(marks.get("position", 0))


def _summarise(
    result: ExpectationSuiteValidationResult, expected: int, suite_name: str, index: Path
) -> ValidationSummary:
    outcomes = []
    for expectation_result in sorted(result.results, key=_position_in_suite):
        configuration = expectation_result.expectation_config
        marks = (configuration.meta or {}).get("phi_guard", {})
        outcomes.append(
            ExpectationOutcome(
                expectation_type=configuration.type,
                column=configuration.kwargs.get("column"),
                success=bool(expectation_result.success) and not _raised(expectation_result.exception_info),
                identifier=marks.get("identifier") or _letters_found(expectation_result),
                unexpected_count=_count_of(expectation_result, "unexpected_count"),
                missing_count=_count_of(expectation_result, "missing_count"),
            )
        )
    successful = sum(outcome.success for outcome in outcomes)
    return ValidationSummary(
        # A check that GX did not report is a check that did not pass.
        success=bool(result.success) and successful == len(outcomes) == expected,
        suite_name=suite_name,
        results=tuple(outcomes),
        data_docs_index=str(index),
        statistics=ValidationStatistics(
            evaluated=len(outcomes), successful=successful, unsuccessful=len(outcomes) - successful
        ),
    )
