"""Validation of a governed dataset against its policy's suite, with value-free results and Data Docs.

Great Expectations records what it finds in three places: the result it returns, the validation results
store, and the Data Docs rendered from it. Its result formats differ in how much of the data they copy
there, for map expectations such as the regex and range checks of this suite:

- ``BASIC`` adds counts and ``partial_unexpected_list``: up to 20 failing cell values, verbatim;
- ``SUMMARY`` (the GX default) adds ``partial_unexpected_counts`` (failing values with their counts) and
  ``partial_unexpected_index_list`` (row indexes);
- ``COMPLETE`` adds ``unexpected_list`` (every failing value) and ``unexpected_index_list``;
- ``BOOLEAN_ONLY`` keeps only ``success``: GX empties every expectation's ``result`` in one place
  (``Expectation.validate_``), whatever the kind of expectation.

A counts-only variant exists (``BASIC`` with ``exclude_unexpected_values``), but only map expectations
honour that flag; an aggregate expectation still reports its ``observed_value``, which for a column
minimum or maximum is a cell value. A suite that grows such an expectation would then leak without any
change here, so this module uses ``BOOLEAN_ONLY`` and its only counts are of expectations (evaluated,
met, not met). The governance report already counts the findings per column and identifier.

An expectation that raises is caught by GX, which keeps the exception's message and traceback with the
result; a message can quote a value. The suite is built so that none should raise (types are checked
from the Arrow schema first), and should one raise all the same, its details are withheld: the stored
result is rewritten without them and its Data Docs page rebuilt before this module returns, and the
expectation counts as failed.

The GX project is file-backed under ``gx_project_dir``: the suites, checkpoints and value-free validation
results stay there between runs, so the Data Docs index lists the history of every validation, not only
the last one. Its Data Docs site is a filesystem site whose index is ``<data_docs_dir>/index.html``.
Two validations must not share a project folder at the same time: GX rewrites its configuration file on
every run without a lock.
GX 1.24 sends no usage statistics; analytics are switched off anyway, in the environment before GX is
imported and in the project's configuration, for versions that would.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_phi_guard.exceptions import QualityCheckFailedError, name_some
from airflow_phi_guard.quality.suite import ExpectationSpec, build_expectation_suite, expectations_for_policy
from airflow_phi_guard.report import GovernanceReport

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.data_context import FileDataContext

log = logging.getLogger(__name__)

#: The only result format used: it keeps success flags and drops every observed or unexpected value.
RESULT_FORMAT = "BOOLEAN_ONLY"
#: The name of the Data Docs site in the GX project.
DATA_DOCS_SITE = "phi_guard"
#: The pandas data source that holds one dataframe asset per suite.
DATA_SOURCE = "phi_guard"

_WITHHELD = "withheld by airflow-phi-guard: an exception message may quote a cell value"


class ExpectationOutcome(NamedTuple):
    """Whether one expectation was met, without anything it observed.

    :param expectation_type: the GX expectation, e.g. ``expect_column_values_to_not_match_regex``.
    :param column: the column it checked, or None for a table-level expectation.
    :param success: whether it was met; an expectation that raised counts as not met.
    :param identifier: the Safe Harbor letter the expectation keeps out, when it is about one.
    """

    expectation_type: str
    column: str | None
    success: bool
    identifier: str | None = None


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
    """

    success: bool
    suite_name: str
    results: tuple[ExpectationOutcome, ...]
    data_docs_index: str
    statistics: ValidationStatistics

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
) -> ValidationSummary:
    """Validate a governed Parquet dataset against the suite its report implies, and build Data Docs.

    A validation that fails does not raise: the summary says so, and :func:`raise_for_failures` turns it
    into an error.

    :param dataset_path: the governed Parquet file (or folder of files) the report's run published.
    :param report: the governance report of that run.
    :param suite_name: the name of the suite, its checkpoint and its data asset in the GX project.
    :param data_docs_dir: the folder of the Data Docs site; its index is ``<data_docs_dir>/index.html``.
    :param gx_project_dir: the folder of the file-backed GX project, created when missing.
    :raises ValueError: when the report is not of a published run.
    :raises QualityCheckFailedError: when a column's type does not fit its treatment, so that no suite
        can judge its values.
    """
    table = pq.read_table(dataset_path)
    specs = expectations_for_policy(report, table.schema)
    summary = run_expectations(
        table,
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


def run_expectations(
    table: pa.Table,
    specs: Sequence[ExpectationSpec],
    *,
    suite_name: str,
    data_docs_dir: str | os.PathLike[str],
    gx_project_dir: str | os.PathLike[str],
    run_name: str | None = None,
    suite_meta: Mapping[str, Any] | None = None,
) -> ValidationSummary:
    """Run a suite of specs on a table through a GX checkpoint that updates Data Docs; keep no value.

    :param table: the data to validate.
    :param specs: the checks, e.g. from :func:`~airflow_phi_guard.quality.suite.expectations_for_policy`.
    :param suite_name: the name of the suite, its checkpoint and its data asset in the GX project.
    :param data_docs_dir: the folder of the Data Docs site; its index is ``<data_docs_dir>/index.html``.
    :param gx_project_dir: the folder of the file-backed GX project, created when missing.
    :param run_name: the name of the run in the results store and Data Docs.
    :param suite_meta: value-free facts to keep with the suite, such as the policy digest.
    """
    context = _open_project(Path(gx_project_dir), Path(data_docs_dir))
    result, result_key = _run_checkpoint(context, suite_name, specs, suite_meta or {}, table, run_name)

    observed, raised = _withhold_observations(result)
    if observed or raised:
        context.validation_results_store.set(result_key, result)
        context.build_data_docs(site_names=[DATA_DOCS_SITE], resource_identifiers=[result_key])
    if observed:
        log.warning(
            "Great Expectations returned observations for %d expectation(s) of suite %s under %s; "
            "they were withheld from the results store and Data Docs",
            observed,
            suite_name,
            RESULT_FORMAT,
        )
    if raised:
        log.warning(
            "%d expectation(s) of suite %s raised inside Great Expectations and count as failed; "
            "their messages were withheld",
            raised,
            suite_name,
        )

    return _summarise(result, len(specs), suite_name, Path(data_docs_dir).resolve() / "index.html")


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


def _run_checkpoint(
    context: FileDataContext,
    suite_name: str,
    specs: Sequence[ExpectationSpec],
    suite_meta: Mapping[str, Any],
    table: pa.Table,
    run_name: str | None,
) -> tuple[ExpectationSuiteValidationResult, Any]:
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    suite = context.suites.add_or_update(build_expectation_suite(suite_name, specs, meta=suite_meta))

    # The dataframe is handed to the run, never to a definition, so no store keeps it.
    sources = context.data_sources.all()
    source = _get_or_add(sources, DATA_SOURCE, lambda: context.data_sources.add_pandas(DATA_SOURCE))
    assets = {asset.name: asset for asset in source.assets}
    asset = _get_or_add(assets, suite_name, lambda: source.add_dataframe_asset(suite_name))
    batch_definition = _get_or_add(
        {definition.name: definition for definition in asset.batch_definitions},
        "whole-dataset",
        lambda: asset.add_batch_definition_whole_dataframe("whole-dataset"),
    )
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite_name, data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=suite_name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data-docs", site_names=[DATA_DOCS_SITE])],
            result_format=RESULT_FORMAT,
        )
    )

    # The whole table is held as one pandas frame, unlike the engine's bounded streaming pass; validating
    # one batch per Parquet row group and combining the outcomes would bound the memory of this step too.
    frame = table.to_pandas()
    run_id = RunIdentifier(run_name=run_name)
    with warnings.catch_warnings():
        # The detectors' patterns group their alternatives; pandas warns that it will not return the groups.
        warnings.filterwarnings("ignore", message="This pattern is interpreted as a regular expression")
        checkpoint_result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)
    ((result_key, result),) = checkpoint_result.run_results.items()
    return result, result_key


def _get_or_add(existing: Mapping[str, Any], name: str, add: Any) -> Any:
    return existing[name] if name in existing else add()


def _withhold_observations(result: ExpectationSuiteValidationResult) -> tuple[int, int]:
    """Blank what GX observed or raised in each expectation result.

    :returns: how many results held observations, and how many held an exception.
    """
    observed = raised = 0
    for expectation_result in result.results:
        if expectation_result.result:
            # BOOLEAN_ONLY leaves this empty; should a GX release fill it, it is not passed on.
            expectation_result.result = {}
            observed += 1
        if _raised(expectation_result.exception_info):
            expectation_result.exception_info = {
                "raised_exception": True,
                "exception_message": _WITHHELD,
                "exception_traceback": _WITHHELD,
            }
            expectation_result.success = False
            raised += 1
    if observed or raised:
        result.success = all(expectation_result.success for expectation_result in result.results)
    return observed, raised


def _raised(exception_info: Mapping[str, Any] | None) -> bool:
    # GX keeps one flat record, or one record per failed metric keyed by the metric's id.
    if not exception_info:
        return False
    if "raised_exception" in exception_info:
        return bool(exception_info["raised_exception"])
    return any(isinstance(info, Mapping) and info.get("raised_exception") for info in exception_info.values())


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
                identifier=marks.get("identifier"),
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
