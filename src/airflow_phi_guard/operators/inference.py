"""The operator that runs one batch of model inference over a dataset and records it in the audit trail."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_phi_guard.recipients.models import RecipientRegistry
    from airflow_phi_guard.trail.records import RunIds


class BatchInferenceOperator(BaseOperator):
    """Score a dataset with a model and audit-log the batch (45 CFR 164.312(b)).

    The batch runs inside :func:`~airflow_phi_guard.trail.inference.inference_audit`: the audit trail gets
    a record of kind ``inference`` with the model's name and version, the input's fingerprint, its
    identifier columns by name (or by scan), the row counts, the output's fingerprint, the recipient and
    the timing; the task's OpenLineage events name the model and the input as inputs, the predictions as
    output, and the record in the ``phiGuard_trail`` facet. Nothing of the data reaches XCom or lineage:
    the task returns the record's sequence, digest and counts.

    When the model is served by a vendor (``recipient``), scoring discloses the input to it: the recipient
    gate judges the disclosure first, for the use ``inference`` on the run date, and records its decision
    in the trail. A recipient without a business associate agreement in force that permits inference (or
    one the registry does not list, or no registry at all) fails the task without retry, before the model
    sees a row; an unreachable registry database leaves it retryable. A registry that cannot be read is
    recorded in the trail as a refused gate decision before the task fails.

    :param model_name: the model's name, as the policy and the audit know it.
    :param model_version: the model's version.
    :param input_path: the dataset scored. (templated)
    :param output_path: where the predictions are written. (templated)
    :param trail_path: the audit trail, a JSONL path or a PostgreSQL URL. (templated)
    :param score: called as ``score(input_path, output_path)``; writes the predictions and may return their
        row count. Imported lazily by the DAG author: the operator reads no data at parse time.
    :param model_path: the model artifact, for the model's input dataset in lineage. (templated)
    :param recipient: the recipient's id in the registry when the model is a vendor API. (templated)
    :param recipients_path: the recipient registry (YAML); by default ``[phi_guard] recipient_registry`` or
        the ``PHI_GUARD_RECIPIENT_REGISTRY`` environment variable. Read only with a ``recipient``.
        (templated)
    :param recipient_registry_conn_id: instead of a file, the Airflow connection of the database that holds
        the registry table (:class:`~airflow_phi_guard.operators.hooks.RecipientRegistryHook`). (templated)
    :param recipient_registry_table: the registry table in that database. (templated)
    :param report_path: the governance report of the run that published the input; only its Safe Harbor
        verdict lets the input go to a recipient without an agreement, else it counts as PHI. (templated)
    :param run_date: the date the agreement is judged on, ``YYYY-MM-DD``; the logical date by default.
        (templated)
    :param identifiers: ``names`` (reads no row) or ``scan`` (names and values).
    """

    template_fields: Sequence[str] = (
        "input_path",
        "output_path",
        "trail_path",
        "model_path",
        "recipient",
        "recipients_path",
        "recipient_registry_conn_id",
        "recipient_registry_table",
        "report_path",
        "run_date",
    )
    ui_color = "#e4eef7"

    def __init__(
        self,
        *,
        model_name: str,
        model_version: str,
        input_path: str,
        output_path: str,
        trail_path: str,
        score: Callable[[str, str], int | None],
        model_path: str | None = None,
        recipient: str | None = None,
        recipients_path: str | None = None,
        recipient_registry_conn_id: str | None = None,
        recipient_registry_table: str | None = None,
        report_path: str | None = None,
        run_date: str = "{{ ds }}",
        identifiers: str = "names",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.model_version = model_version
        self.input_path = input_path
        self.output_path = output_path
        self.trail_path = trail_path
        self.score = score
        self.model_path = model_path
        self.recipient = recipient
        self.recipients_path = recipients_path
        self.recipient_registry_conn_id = recipient_registry_conn_id
        self.recipient_registry_table = recipient_registry_table
        self.report_path = report_path
        self.run_date = run_date
        self.identifiers = identifiers
        self._record: Any = None
        self._scored = False

    def execute(self, context: Context) -> dict[str, object]:
        from airflow_phi_guard.exceptions import RecipientNotPermittedError
        from airflow_phi_guard.trail.inference import inference_audit
        from airflow_phi_guard.trail.records import RunIds

        recipient = self.recipient or None
        run_id = context.get("run_id")
        ids = RunIds(dag_id=self.dag_id if self.has_dag() else None, task_id=self.task_id, run_id=run_id)
        recipients = self._recipients(recipient, ids) if recipient else None

        batch = None
        try:
            with inference_audit(
                self.model_name,
                self.model_version,
                self.input_path,
                trail=self.trail_path,
                output=self.output_path,
                model_uri=self.model_path,
                recipient=recipient,
                recipients=recipients,
                run_date=date.fromisoformat(self.run_date) if recipient else None,
                governance_report=self.report_path or None,
                identifiers=self.identifiers,
                ids=ids,
            ) as batch:
                rows_out = self.score(os.fspath(self.input_path), os.fspath(self.output_path))
                if rows_out is not None:
                    batch.rows_out = rows_out
        except RecipientNotPermittedError as refusal:
            # Retrying cannot give the vendor an agreement; the refusal is already in the trail.
            raise AirflowFailException(
                f"model {self.model_name} {self.model_version} may not score {self.input_path}: "
                + "; ".join(refusal.refusals)
            ) from None
        finally:
            # A batch that raised has its record too (outcome failed): the FAIL event names it.
            if batch is not None:
                self._record = batch.record
        self._scored = True
        self.log.info(
            "model %s %s scored %s row(s); trail sequence %d",
            self.model_name,
            self.model_version,
            batch.rows_in,
            self._record.sequence,
        )
        return {
            "model": self.model_name,
            "model_version": self.model_version,
            "trail_sequence": self._record.sequence,
            "trail_digest": self._record.digest,
            "counts": dict(self._record.counts),
            "identifier_columns": len(batch.identifier_columns),
        }

    def _recipients(self, recipient: str, ids: RunIds) -> RecipientRegistry | None:
        """The recipient registry; one that cannot be read is a refused gate decision in the trail first,
        then the task fails with the error as it was (an unreachable database stays retryable)."""
        from airflow_phi_guard.operators.recipients import resolve_recipient_registry
        from airflow_phi_guard.trail.inference import refuse_unreadable_registry

        try:
            return resolve_recipient_registry(
                self.recipients_path,
                self.recipient_registry_conn_id,
                self.recipient_registry_table,
                configured=True,
            )
        except Exception as error:
            try:
                refuse_unreadable_registry(
                    self.trail_path,
                    self.model_name,
                    self.model_version,
                    self.input_path,
                    recipient,
                    date.fromisoformat(self.run_date),
                    error,
                    governance_report=self.report_path or None,
                    ids=ids,
                )
            except Exception as append_error:
                self.log.error(
                    "the refusal of model %s %s for an unreadable recipient registry could not be recorded "
                    "in the audit trail (%s)",
                    self.model_name,
                    self.model_version,
                    type(append_error).__name__,
                )
            raise

    def _lineage(self) -> OperatorLineage:
        from airflow.providers.openlineage.extractors import OperatorLineage

        from airflow_phi_guard.trail.inference import inference_lineage
        from airflow_phi_guard.trail.store import open_trail

        trail = open_trail(self.trail_path).display_name if self._record is not None else None
        parts: Any = inference_lineage(
            self.model_name,
            self.model_version,
            self.input_path,
            self.output_path if self._scored else None,
            self.model_path,
            trail,
            self._record,
        )
        return OperatorLineage(
            inputs=list(parts.inputs), outputs=list(parts.outputs), run_facets=dict(parts.run_facets)
        )

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        return self._lineage()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        return self._lineage()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        return self._lineage()
