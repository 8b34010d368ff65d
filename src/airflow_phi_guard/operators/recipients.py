"""The operator that gates an export: may this governed set go to this destination, under the registry."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_phi_guard.recipients.gate import GateDecision, Release
    from airflow_phi_guard.recipients.models import RecipientRegistry

#: What a refusal does to the task: fail it without retry, or skip it and, with it, the export after it.
ON_REFUSAL = ("fail", "skip")


def configured_registry_path() -> str | None:
    """The recipient registry the deployment names: ``[phi_guard] recipient_registry`` in the Airflow
    configuration, else the ``PHI_GUARD_RECIPIENT_REGISTRY`` environment variable, else None."""
    from airflow.configuration import conf

    from airflow_phi_guard.recipients.registry import RECIPIENT_REGISTRY_VARIABLE

    return conf.get("phi_guard", "recipient_registry", fallback=None) or os.environ.get(
        RECIPIENT_REGISTRY_VARIABLE
    )


class RecipientGateOperator(BaseOperator):
    """Put in front of an export task: pass only if the governed set may go to the destination.

    It reads the governance report (a file, or the policy task's XCom summary), finds the recipient that
    owns the destination in the recipient registry, and applies the gate
    (:func:`~airflow_phi_guard.recipients.gate.decide`): Safe Harbor output may go anywhere; anything still
    PHI only to a recipient whose business associate agreement is in force on the run date, lets PHI flow
    and permits the policy's purpose, and for a sale of PHI only with a recorded authorization. A refusal
    fails the task without retry (retrying cannot heal it), naming the recipient, the agreement and the
    section of 45 CFR 164; an unreadable registry fails it too. The decision, names and dates only, is the
    task's XCom value (key ``gate_decision`` as well, also when refused).

    :param destination: the URI or path the export writes to. (templated)
    :param report_path: the governance report the policy task wrote. (templated)
    :param report_summary: instead of a report file, the policy task's XCom summary, e.g.
        ``"{{ ti.xcom_pull(task_ids='govern') }}"``, which names the policy's purpose.
        (templated)
    :param purpose: the policy's purpose, for a ``report_summary`` of an older version that names none.
        (templated)
    :param recipients_path: the recipient registry (YAML); by default ``[phi_guard] recipient_registry``
        or the ``PHI_GUARD_RECIPIENT_REGISTRY`` environment variable. (templated)
    :param run_date: the date agreements are judged on, ``YYYY-MM-DD``; the logical date by default.
        (templated)
    :param on_refusal: ``fail`` (default): the task fails without retry; ``skip``: the refusal is logged
        and recorded, and the task is skipped, so that the export after it is skipped too.
    """

    template_fields: Sequence[str] = (
        "destination",
        "report_path",
        "report_summary",
        "purpose",
        "recipients_path",
        "run_date",
    )
    ui_color = "#f3e6d8"

    def __init__(
        self,
        *,
        destination: str,
        report_path: str | None = None,
        report_summary: Mapping[str, Any] | str | None = None,
        purpose: str | None = None,
        recipients_path: str | None = None,
        run_date: str = "{{ ds }}",
        on_refusal: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_refusal not in ON_REFUSAL:
            raise ValueError(f"on_refusal must be one of {', '.join(ON_REFUSAL)}")
        self.destination = destination
        self.report_path = report_path
        self.report_summary = report_summary
        self.purpose = purpose
        self.recipients_path = recipients_path
        self.run_date = run_date
        self.on_refusal = on_refusal

    def execute(self, context: Context) -> dict[str, object]:
        from airflow_phi_guard.recipients.gate import decide

        release = self._release()
        registry = self._registry()

        decision = decide(release, self.destination, registry, date.fromisoformat(self.run_date))
        self._record(context, decision)

        if decision.allowed:
            self.log.info(
                "recipient gate: policy %s (%s data) may go to %s, recipient %s, agreement %s",
                decision.policy,
                decision.data,
                decision.destination,
                decision.recipient,
                decision.agreement,
            )
            return decision.summary()
        message = self._refusal_message(decision)
        if self.on_refusal == "skip":
            self.log.warning("%s; the export after this task is skipped", message)
            raise AirflowSkipException(message)
        raise AirflowFailException(message)

    def _release(self) -> Release:
        from airflow_phi_guard.recipients.gate import Release

        if bool(self.report_path) == bool(self.report_summary):
            raise AirflowFailException(
                "give the governance report as report_path or report_summary, one of them"
            )
        if self.report_path:
            try:
                with open(self.report_path, encoding="utf-8") as file:
                    return Release.from_report(json.load(file))
            except (OSError, ValueError) as error:
                # a report that cannot be read cannot show the data is de-identified: fail closed
                raise AirflowFailException(
                    f"governance report {self.report_path} cannot be read ({type(error).__name__}); nothing "
                    "may be exported without it"
                ) from None
        summary = self.report_summary
        if isinstance(summary, str):
            # a templated XCom pull renders as the dict's text unless the DAG renders native objects
            import ast

            try:
                summary = ast.literal_eval(summary)
            except (ValueError, SyntaxError):
                summary = None
        if not isinstance(summary, Mapping):
            raise AirflowFailException("report_summary is not the policy task's summary (a dict)")
        try:
            return Release.from_summary(summary, self.purpose or None)
        except ValueError as error:
            raise AirflowFailException(f"report_summary cannot be judged: {error}") from None

    def _registry(self) -> RecipientRegistry:
        from airflow_phi_guard.exceptions import RecipientRegistryError
        from airflow_phi_guard.recipients.registry import load_recipient_registry

        path = self.recipients_path or configured_registry_path()
        if not path:
            raise AirflowFailException(
                "no recipient registry: give recipients_path, or set [phi_guard] recipient_registry"
            )
        try:
            return load_recipient_registry(path)
        except RecipientRegistryError as error:
            raise AirflowFailException(f"bad recipient registry: {error}") from None

    def _record(self, context: Context, decision: GateDecision) -> None:
        """Push the decision to XCom, refused or not, so that a refusal stays on record."""
        task_instance = context.get("ti") if context else None
        if task_instance is not None:
            task_instance.xcom_push(key="gate_decision", value=decision.summary())

    def _refusal_message(self, decision: GateDecision) -> str:
        where = f" (report: {self.report_path})" if self.report_path else ""
        return (
            f"recipient gate refused the export of policy {decision.policy} to {decision.destination}: "
            + "; ".join(decision.refusals)
            + where
        )
