"""The operator that scans a dataset for Safe Harbor identifiers and publishes its inventory as lineage."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_phi_guard.files import write_text_atomically

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_phi_guard.lineage.build import RunLineage
    from airflow_phi_guard.phi.inventory import ScanReport


class PhiScanOperator(BaseOperator):
    """Scan a dataset by column name and by value, and record which of its columns are identifiers.

    Each column gets one Safe Harbor letter (or none), a confidence, a runner-up and its evidence: the
    detectors that matched and their match rates. The task writes that scan report as JSON, returns a
    value-free summary to XCom (rows scanned, columns per letter), and reports the inventory to
    OpenLineage on its input dataset, as the ``phiGuard_inventory`` facet and as ``tags`` entries with
    ``field``, so that a lineage server shows which columns of a raw extract are identifiers. A scan
    publishes no data, so its lineage has no output. Finding identifiers is the point of a scan and
    does not fail the task; a scan that cannot run does, without retry unless the cause was I/O.

    :param input_path: the dataset to scan, Parquet or CSV. (templated)
    :param report_path: where to write the scan report (JSON). (templated)
    :param sample_rows: scan at most this many rows; the whole dataset by default.
    """

    template_fields: Sequence[str] = ("input_path", "report_path")
    ui_color = "#e3ecf0"

    def __init__(
        self, *, input_path: str, report_path: str, sample_rows: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if sample_rows is not None and (isinstance(sample_rows, bool) or sample_rows < 1):
            raise ValueError(f"sample_rows must be a positive number of rows or None, not {sample_rows!r}")
        self.input_path = input_path
        self.report_path = report_path
        self.sample_rows = sample_rows
        self._report: ScanReport | None = None
        self._input_schema: pa.Schema | None = None

    def execute(self, context: Context) -> dict[str, object]:
        self._report = self._scan()
        self._input_schema = self._schema_for_lineage()

        write_text_atomically(self.report_path, self._report.to_json())
        self._log_verdicts(self._report)
        return _summary(self._report, self.report_path)

    def _scan(self) -> ScanReport:
        from airflow_phi_guard.exceptions import DataProcessingError, PhiGuardError
        from airflow_phi_guard.phi.inventory import scan_dataset

        try:
            return scan_dataset(self.input_path, sample_rows=self.sample_rows)
        except DataProcessingError as error:
            if error.retryable:
                raise
            raise AirflowFailException(str(error)) from None
        except PhiGuardError as error:
            # This package's own errors name columns, letters and counts, never values.
            raise AirflowFailException(str(error)) from None
        except OSError as error:
            # Storage that is not reachable yet may be on the next try; Arrow's I/O messages are withheld
            # all the same, as its readers quote the text they failed on.
            raise DataProcessingError(self.input_path, type(error).__name__, retryable=True) from None
        except Exception as error:
            # Any other failure (Arrow's CSV parser quotes the row it could not parse) is named by its class
            # only; ``from None`` keeps the original message out of the task log's traceback too.
            raise AirflowFailException(
                f"the scan of {self.input_path} could not run ({type(error).__name__}; its message is "
                "withheld because it may quote cell values); inspect the data where PHI may be seen"
            ) from None

    def _schema_for_lineage(self) -> pa.Schema | None:
        from airflow_phi_guard.engine.source import open_source

        # Field types make the lineage's schema facet more useful, but lineage must never fail a scan
        # that succeeded: without them the facet names the columns alone.
        try:
            return open_source(self.input_path).schema
        except Exception as error:
            self.log.warning(
                "could not read the schema of %s for lineage (%s)", self.input_path, type(error).__name__
            )
            return None

    def _log_verdicts(self, report: ScanReport) -> None:
        for verdict in report.columns:
            if verdict.identifier is None:
                continue
            self.log.info(
                "column %s: identifier %s at %s confidence (runner-up %s), %d of %d row(s) matched by value",
                verdict.column,
                verdict.identifier.letter,
                verdict.confidence.value if verdict.confidence is not None else "unknown",
                verdict.runner_up.letter if verdict.runner_up is not None else "none",
                verdict.matches,
                verdict.rows_scanned,
            )
        letters = _columns_by_identifier(report)
        self.log.info(
            "scanned %s: %d row(s)%s, %d of %d column(s) are identifiers (%s); report at %s",
            self.input_path,
            report.rows_scanned,
            f" (sample of at most {report.sample_rows})" if report.sample_rows is not None else "",
            sum(letters.values()),
            len(report.columns),
            ", ".join(f"{letter}: {count}" for letter, count in letters.items()) or "none",
            self.report_path,
        )

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        from airflow_phi_guard.lineage.inventory import inventory_lineage_for_start

        return _operator_lineage(inventory_lineage_for_start(self.input_path))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        from airflow_phi_guard.lineage.inventory import inventory_lineage

        if self._report is None:
            return self.get_openlineage_facets_on_start()
        return _operator_lineage(inventory_lineage(self._report, input_schema=self._input_schema))

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        # A scan that finished before the task failed (its report could not be written, say) still
        # describes its input truly, so the FAIL event carries the inventory as COMPLETE would.
        return self.get_openlineage_facets_on_complete(task_instance)


def _summary(report: ScanReport, report_path: str) -> dict[str, object]:
    """The small, value-free dict a scan task returns to XCom: counts of rows and of columns per letter."""
    letters = _columns_by_identifier(report)
    return {
        "input": report.input,
        "report": report_path,
        "rows_scanned": report.rows_scanned,
        "sample_rows": report.sample_rows,
        "columns": len(report.columns),
        "identifier_columns": sum(letters.values()),
        "columns_by_identifier": letters,
    }


def _columns_by_identifier(report: ScanReport) -> dict[str, int]:
    """How many columns the scan judged to be each identifier, by letter in alphabetical order."""
    letters = Counter(
        verdict.identifier.letter for verdict in report.columns if verdict.identifier is not None
    )
    return dict(sorted(letters.items()))


def _operator_lineage(parts: RunLineage) -> OperatorLineage:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(
        inputs=list(parts.inputs),
        outputs=list(parts.outputs),
        run_facets=dict(parts.run_facets),
        job_facets=dict(parts.job_facets),
    )
