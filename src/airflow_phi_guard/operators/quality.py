"""The operator that validates a governed dataset with the Great Expectations suite its policy implies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey

    from airflow_phi_guard.quality.suite import RiskCheck
    from airflow_phi_guard.quality.validate import ValidationSummary


class DataDocsLink(BaseOperatorLink):
    """The "Data Docs" button of a validation task: the page of its validation result, or the site's index.

    Airflow asks for the link once the task has finished, passed or failed, and keeps it in XCom; the page
    holds counts and names only. Without ``data_docs_base_url`` the link is a ``file://`` address on the
    worker, which a browser opens only where the folder is mounted.
    """

    name = "Data Docs"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        if not isinstance(operator, GovernedDatasetValidationOperator):
            return ""
        return operator.data_docs_url()


class GovernedDatasetValidationOperator(BaseOperator):
    """Validate the dataset a :class:`PhiPolicyOperator` published and build Data Docs for a privacy reviewer.

    The suite follows from the policy and the governance report (see ``docs/data-docs.md``): the columns are
    exactly the allowlisted ones, kept values hold no identifier the product's detectors find, ZIP3 values
    are existing prefixes with the restricted ones as 000, ages at most 90, pseudonyms never missing, and
    k-anonymity over declared quasi-identifiers at least ``k_min``. Results hold counts, never cell values,
    so nothing from the data reaches XCom or Data Docs. A failed expectation fails the task without retry
    and withdraws the governed dataset, so that no later task trains on a set that could not be shown to
    meet its policy. The task's "Data Docs" extra link opens its validation page.

    :param report_path: the governance report the policy task wrote. (templated)
    :param data_docs_dir: where to build the Data Docs site (``index.html``). (templated)
    :param gx_project_dir: the Great Expectations project folder for suites and results. (templated)
    :param suite_path: a suite generated from the policy (``expectations/<policy>.json``) to run instead
        of the one derived from the report; refused when it was made from another policy digest.
        (templated)
    :param quasi_identifiers: output columns to check k-anonymity over, with ``k_min``; the suite of a
        generated file takes them from the policy.
    :param k_min: the fewest rows every equivalence class over ``quasi_identifiers`` must hold.
    :param data_docs_base_url: where ``data_docs_dir`` is served (``https://.../data-docs``), for the
        "Data Docs" link; a ``file://`` link by default.

    The results are also emitted as the OpenLineage ``dataQualityAssertions`` facet of the governed
    dataset: one assertion per expectation, its column and whether it was met. The START event already
    names the governed dataset with its ``documentation`` facet (the suite and the Data Docs site), since
    some lineage servers keep only a run's first event; the assertions come with COMPLETE or FAIL.
    """

    template_fields: Sequence[str] = ("report_path", "data_docs_dir", "gx_project_dir", "suite_path")
    ui_color = "#f3ecd9"
    operator_extra_links = (DataDocsLink(),)

    def __init__(
        self,
        *,
        report_path: str,
        data_docs_dir: str,
        gx_project_dir: str,
        suite_path: str | None = None,
        quasi_identifiers: Sequence[str] = (),
        k_min: int | None = None,
        data_docs_base_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.report_path = report_path
        self.data_docs_dir = data_docs_dir
        self.gx_project_dir = gx_project_dir
        self.suite_path = suite_path
        self.quasi_identifiers = tuple(quasi_identifiers)
        self.k_min = k_min
        self.data_docs_base_url = data_docs_base_url
        if bool(self.quasi_identifiers) != (k_min is not None):
            raise ValueError("quasi_identifiers and k_min go together: give both or neither")
        self._summary: ValidationSummary | None = None
        self._dataset: str | None = None

    def data_docs_url(self) -> str:
        """The address of this run's validation page (the site's index before a run), for the extra link."""
        site = Path(self.data_docs_dir).resolve()
        page = Path(self._summary.data_docs_page) if self._summary and self._summary.data_docs_page else None
        target = page if page is not None else site / "index.html"
        if self.data_docs_base_url:
            try:
                relative = target.relative_to(site).as_posix()
            except ValueError:
                relative = "index.html"
            return f"{self.data_docs_base_url.rstrip('/')}/{relative}"
        return target.as_uri()

    def _risk(self) -> RiskCheck | None:
        from airflow_phi_guard.quality.suite import RiskCheck

        if not self.quasi_identifiers or self.k_min is None:
            return None
        return RiskCheck(self.quasi_identifiers, self.k_min)

    def execute(self, context: Context) -> dict[str, object]:
        from airflow_phi_guard.exceptions import PolicyViolationError
        from airflow_phi_guard.quality.validate import raise_for_failures, validate_governed_dataset
        from airflow_phi_guard.report import GovernanceReport

        report = GovernanceReport.model_validate_json(Path(self.report_path).read_text(encoding="utf-8"))
        if not report.published or report.output is None:
            raise AirflowFailException(
                f"the governance report at {self.report_path} shows nothing was published, so there is "
                "nothing to validate; resolve the refusals it lists and run the policy task again"
            )
        self._dataset = report.output

        try:
            self._summary = validate_governed_dataset(
                report.output,
                report,
                suite_name=_suite_name(report),
                data_docs_dir=self.data_docs_dir,
                gx_project_dir=self.gx_project_dir,
                suite_path=self.suite_path,
                risk=self._risk(),
            )
            self.log.info(
                "suite %s: %d expectation(s), %d failed; Data Docs at %s",
                self._summary.suite_name,
                len(self._summary.results),
                len(self._summary.failures),
                self._summary.data_docs_index,
            )
            raise_for_failures(self._summary, self.report_path)
        except PolicyViolationError as violation:
            self._unpublish(report.output)
            raise AirflowFailException(str(violation)) from None
        except Exception as error:
            # A check that could not run proves nothing, so the set is withdrawn all the same. An error from
            # inside Great Expectations or Arrow may quote a value in its message: only its class is named.
            self._unpublish(report.output)
            raise AirflowFailException(
                f"validation could not run ({type(error).__name__}; its message is withheld because it may "
                f"quote cell values); the governed set was withdrawn; see {self.report_path}"
            ) from None
        return self._summary.to_dict()

    def _unpublish(self, dataset: str) -> None:
        # A set that failed its checks must not be read by a later task or run, so it is withdrawn; the
        # engine can publish it again from the same inputs once the cause is fixed.
        Path(dataset).unlink(missing_ok=True)
        self.log.warning("withdrew the governed dataset %s because it failed validation", dataset)

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        """The set to be validated, from the governance report, with the link to its Data Docs site.

        Nothing is evaluated yet, so no assertion. A report that cannot be read, or that shows nothing
        published, gives a START without datasets: the task itself fails on it, with the reason.
        """
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import InputDataset

        from airflow_phi_guard.lineage.build import data_docs_facet
        from airflow_phi_guard.lineage.datasets import dataset_identity
        from airflow_phi_guard.report import GovernanceReport

        try:
            report = GovernanceReport.model_validate_json(Path(self.report_path).read_text(encoding="utf-8"))
        except Exception as error:
            # Lineage never fails the task; a validation error of the report may quote its content.
            self.log.warning(
                "no dataset on the OpenLineage START event: the governance report at %s could not be read "
                "(%s)",
                self.report_path,
                type(error).__name__,
            )
            return OperatorLineage()
        if not report.published or report.output is None:
            return OperatorLineage()
        identity = dataset_identity(report.output)
        governed = InputDataset(
            namespace=identity.namespace,
            name=identity.name,
            facets={"documentation": data_docs_facet(_suite_name(report), self.data_docs_url())},
        )
        return OperatorLineage(inputs=[governed])

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        from airflow.providers.openlineage.extractors import OperatorLineage

        from airflow_phi_guard.lineage.build import validation_lineage

        if self._summary is None or self._dataset is None:
            return OperatorLineage()
        parts = validation_lineage(self._dataset, self._summary, data_docs_url=self.data_docs_url())
        return OperatorLineage(
            inputs=list(parts.inputs), run_facets=dict(parts.run_facets), job_facets=dict(parts.job_facets)
        )

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import InputDataset

        from airflow_phi_guard.lineage.datasets import dataset_identity

        if self._summary is None and self._dataset is not None:
            # The validation could not run: the FAIL still names the set it was to check (and withdrew),
            # with no assertion, since none was evaluated.
            identity = dataset_identity(self._dataset)
            return OperatorLineage(inputs=[InputDataset(namespace=identity.namespace, name=identity.name)])
        return self.get_openlineage_facets_on_complete(task_instance)


def _suite_name(report: Any) -> str:
    """The suite, checkpoint and data asset name of a governance report's validation."""
    return f"{report.policy.name}-v{report.policy.version}"
