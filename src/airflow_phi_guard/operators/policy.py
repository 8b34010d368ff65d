"""The operator that governs a dataset under a policy: minimum necessary, consent, de-identification, scan."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_phi_guard.engine.executor import GovernanceResult
    from airflow_phi_guard.policy.models import Policy


class PhiPolicyOperator(BaseOperator):
    """Apply a PHI policy to a dataset and publish the governed set only if every check passed.

    In one streaming pass it refuses undeclared columns, admits only records with a valid consent at the
    as-of date, applies each column's treatment, and scans kept text for identifiers. A refusal fails the
    task without retry (retrying cannot heal it) and publishes nothing; I/O errors stay retryable. The
    task returns a value-free summary to XCom and reports OpenLineage facets describing the decision.

    :param policy_path: the policy file (YAML).
    :param input_path: the source dataset, Parquet or CSV. (templated)
    :param output_path: the governed Parquet file to publish. (templated)
    :param consent_path: the consent registry, CSV or Parquet. (templated)
    :param as_of: reference date of consent and ages, ``YYYY-MM-DD``; the run's logical date by default.
        (templated)
    :param report_path: where to write the governance report (JSON). (templated)
    :param pseudonym_key_conn_id: the connection whose password is the pseudonym key.
    """

    template_fields: Sequence[str] = ("input_path", "output_path", "consent_path", "as_of", "report_path")
    ui_color = "#e8f0e3"

    def __init__(
        self,
        *,
        policy_path: str,
        input_path: str,
        output_path: str,
        consent_path: str | None,
        report_path: str,
        as_of: str = "{{ ds }}",
        pseudonym_key_conn_id: str = "phi_guard_pseudonym_key",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.policy_path = policy_path
        self.input_path = input_path
        self.output_path = output_path
        self.consent_path = consent_path
        self.report_path = report_path
        self.as_of = as_of
        self.pseudonym_key_conn_id = pseudonym_key_conn_id
        self._result: GovernanceResult | None = None

    def execute(self, context: Context) -> dict[str, object]:
        from airflow_phi_guard.engine.executor import govern
        from airflow_phi_guard.exceptions import DataProcessingError, PolicyError, PolicyViolationError
        from airflow_phi_guard.policy.models import Treatment

        policy = self._policy()
        key = self._pseudonym_key() if policy.uses(Treatment.PSEUDONYMIZE) else None

        try:
            self._result = govern(
                policy,
                self.input_path,
                self.output_path,
                consent=self.consent_path,
                as_of=date.fromisoformat(self.as_of),
                pseudonym_key=key,
            )
        except DataProcessingError as error:
            if error.retryable:
                raise
            raise AirflowFailException(str(error)) from None
        report = self._result.report
        self._result.write_report(self.report_path)
        self.log.info(
            "policy %s v%d (%s): %s, %d of %d row(s) admitted; report at %s",
            policy.name,
            policy.version,
            policy.digest,
            report.verdict.value,
            report.rows.admitted,
            report.rows.read,
            self.report_path,
        )

        try:
            self._result.raise_for_verdict(self.report_path)
        except (PolicyViolationError, PolicyError) as violation:
            raise AirflowFailException(str(violation)) from None
        return report.summary()

    def _policy(self) -> Policy:
        from airflow_phi_guard.exceptions import PolicyError
        from airflow_phi_guard.policy.loader import load_policy

        try:
            return load_policy(self.policy_path)
        except PolicyError as error:
            raise AirflowFailException(f"bad policy: {error}") from None

    def _pseudonym_key(self) -> bytes | None:
        from airflow_phi_guard.operators.hooks import PseudonymKeyHook

        return PseudonymKeyHook(self.pseudonym_key_conn_id).get_key()

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        from airflow_phi_guard.lineage.build import lineage_for_start
        from airflow_phi_guard.policy.loader import load_policy

        return _operator_lineage(
            lineage_for_start(
                load_policy(self.policy_path),
                input_path=self.input_path,
                output_path=self.output_path,
                consent_registry=self.consent_path,
                as_of=date.fromisoformat(self.as_of),
            )
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        from airflow_phi_guard.lineage.build import lineage_for_report

        if self._result is None:
            return self.get_openlineage_facets_on_start()
        # The policy the run enforced, not the file read again: it may have changed since.
        return _operator_lineage(
            lineage_for_report(
                self._result.report,
                self._result.plan.policy,
                input_schema=self._result.plan.schema,
                output_schema=self._result.output_schema,
            )
        )

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        return self.get_openlineage_facets_on_complete(task_instance)


def _operator_lineage(parts: Any) -> OperatorLineage:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(
        inputs=list(parts.inputs),
        outputs=list(parts.outputs),
        run_facets=dict(parts.run_facets),
        job_facets=dict(parts.job_facets),
    )
