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


def configured_trail(trail_path: str | None) -> str | None:
    """The audit trail of a task: its own ``trail_path``, else ``[phi_guard] trail`` in the Airflow
    configuration, else None."""
    from airflow.configuration import conf

    return trail_path or conf.get("phi_guard", "trail", fallback="") or None


def resolve_recipient_registry(
    path: str | None, conn_id: str | None, table: str | None, *, configured: bool
) -> RecipientRegistry | None:
    """The registry an operator names: a YAML file, or a table of a database connection, never both.

    An empty string counts as not given, so that a template can choose between them.

    :param path: the registry file (YAML).
    :param conn_id: instead, the connection of the database that holds the registry table
        (:class:`~airflow_phi_guard.operators.hooks.RecipientRegistryHook`).
    :param table: the registry table in that database, ``table`` or ``schema.table``.
    :param configured: whether, without either, the deployment's registry is read
        (:func:`configured_registry_path`); None is returned when there is none.
    :raises AirflowFailException: both are given, a table is missing or misplaced, or the registry is
        unusable; retrying cannot heal any of these.
    :raises RecipientRegistryUnavailableError: the registry's database cannot be reached, which a retry may
        heal (an ordinary exception, so Airflow retries it).
    """
    from airflow_phi_guard.exceptions import RecipientRegistryError
    from airflow_phi_guard.operators.hooks import RecipientRegistryHook
    from airflow_phi_guard.recipients.registry import load_recipient_registry

    path, conn_id, table = path or None, conn_id or None, table or None
    if path and conn_id:
        raise AirflowFailException(
            "give the recipient registry as recipients_path or recipient_registry_conn_id, not both: which "
            "one holds the agreements must not be a guess"
        )
    if conn_id is None and table is not None:
        raise AirflowFailException("recipient_registry_table belongs with recipient_registry_conn_id")
    if conn_id is not None and table is None:
        raise AirflowFailException("recipient_registry_conn_id needs recipient_registry_table")
    try:
        if conn_id is not None:
            return RecipientRegistryHook(conn_id, table=table).get_source().read()
        path = path or (configured_registry_path() if configured else None)
        return load_recipient_registry(path) if path else None
    except RecipientRegistryError as error:
        raise AirflowFailException(f"bad recipient registry: {error}") from None


class RecipientGateOperator(BaseOperator):
    """Put in front of an export task: pass only if the governed set may go to the destination.

    It reads the governance report (a file, or the policy task's XCom summary), finds the recipient that
    owns the destination in the recipient registry, and applies the gate
    (:func:`~airflow_phi_guard.recipients.gate.decide`): Safe Harbor output may go anywhere; anything still
    PHI only to a recipient whose business associate agreement is in force on the run date, lets PHI flow
    and permits the policy's purpose, and for a sale of PHI only with a recorded authorization. A refusal
    fails the task without retry (retrying cannot heal it), naming the recipient, the agreement and the
    section of 45 CFR 164; an unreadable registry fails it too. Every decision, passed or refused, is
    appended to the audit trail as a record of kind ``gate-decision`` (recipient, agreement, sections,
    destination, policy digest and the governed set's fingerprint) when the task has a trail; a decision
    that cannot be appended fails the task, so nothing is exported unrecorded. The decision, names and
    dates only, with the record's sequence and digest, is the task's XCom value (key ``gate_decision`` as
    well, also when refused).

    :param destination: the URI or path the export writes to. (templated)
    :param report_path: the governance report the policy task wrote. (templated)
    :param report_summary: instead of a report file, the policy task's XCom summary, e.g.
        ``"{{ ti.xcom_pull(task_ids='govern') }}"``, which names the policy's purpose.
        (templated)
    :param purpose: the policy's purpose, for a ``report_summary`` of an older version that names none.
        (templated)
    :param recipients_path: the recipient registry (YAML); by default ``[phi_guard] recipient_registry``
        or the ``PHI_GUARD_RECIPIENT_REGISTRY`` environment variable. (templated)
    :param recipient_registry_conn_id: instead of a file, the Airflow connection of the database that holds
        the registry table (:class:`~airflow_phi_guard.operators.hooks.RecipientRegistryHook`); an
        unreachable database leaves the task retryable. (templated)
    :param recipient_registry_table: the registry table in that database, ``table`` or ``schema.table``.
        (templated)
    :param run_date: the date agreements are judged on, ``YYYY-MM-DD``; the logical date by default.
        (templated)
    :param on_refusal: ``fail`` (default): the task fails without retry; ``skip``: the refusal is logged
        and recorded, and the task is skipped, so that the export after it is skipped too.
    :param trail_path: the audit trail the decision is appended to (a JSONL file, or a PostgreSQL URL with
        ``#schema.table``). None records in ``[phi_guard] trail`` when the Airflow configuration sets it,
        and in XCom only otherwise. (templated)
    """

    template_fields: Sequence[str] = (
        "destination",
        "report_path",
        "report_summary",
        "purpose",
        "recipients_path",
        "recipient_registry_conn_id",
        "recipient_registry_table",
        "run_date",
        "trail_path",
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
        recipient_registry_conn_id: str | None = None,
        recipient_registry_table: str | None = None,
        run_date: str = "{{ ds }}",
        on_refusal: str = "fail",
        trail_path: str | None = None,
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
        self.recipient_registry_conn_id = recipient_registry_conn_id
        self.recipient_registry_table = recipient_registry_table
        self.run_date = run_date
        self.on_refusal = on_refusal
        self.trail_path = trail_path

    def execute(self, context: Context) -> dict[str, object]:
        from airflow_phi_guard.recipients.gate import decide

        release, governed = self._release()
        registry = self._registry()

        decision = decide(release, self.destination, registry, date.fromisoformat(self.run_date))
        summary = {**decision.summary(), **self._append_to_trail(context, decision, governed)}
        self._record(context, summary)

        if decision.allowed:
            self.log.info(
                "recipient gate: policy %s (%s data) may go to %s, recipient %s, agreement %s",
                decision.policy,
                decision.data,
                decision.destination,
                decision.recipient,
                decision.agreement,
            )
            return summary
        message = self._refusal_message(decision)
        if self.on_refusal == "skip":
            self.log.warning("%s; the export after this task is skipped", message)
            raise AirflowSkipException(message)
        raise AirflowFailException(message)

    def _release(self) -> tuple[Release, str | None]:
        """What the governed set is, and where the run published it (the report's ``output``)."""
        from airflow_phi_guard.recipients.gate import Release

        if bool(self.report_path) == bool(self.report_summary):
            raise AirflowFailException(
                "give the governance report as report_path or report_summary, one of them"
            )
        if self.report_path:
            try:
                with open(self.report_path, encoding="utf-8") as file:
                    report = json.load(file)
                return Release.from_report(report), _output(report)
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
            return Release.from_summary(summary, self.purpose or None), _output(summary)
        except ValueError as error:
            raise AirflowFailException(f"report_summary cannot be judged: {error}") from None

    def _registry(self) -> RecipientRegistry:
        registry = resolve_recipient_registry(
            self.recipients_path,
            self.recipient_registry_conn_id,
            self.recipient_registry_table,
            configured=True,
        )
        if registry is None:
            raise AirflowFailException(
                "no recipient registry: give recipients_path or recipient_registry_conn_id, or set "
                "[phi_guard] recipient_registry"
            )
        return registry

    def _trail(self) -> str | None:
        """The audit trail of the decision (:func:`configured_trail`)."""
        return configured_trail(self.trail_path)

    def _append_to_trail(
        self, context: Context, decision: GateDecision, governed: str | None
    ) -> dict[str, object]:
        """Append the decision to the audit trail, passed or refused; the record's sequence and digest.

        :raises AuditTrailError: the trail refused the append; the task fails, and nothing is exported.
        """
        trail = self._trail()
        if trail is None:
            return {}
        from airflow_phi_guard.trail.records import append_decision

        try:
            record = append_decision(
                trail,
                passed=decision.allowed,
                # None when no recipient owns the destination; the record says so rather than guess one.
                recipient=decision.recipient,
                agreement=decision.agreement,
                rule=", ".join(decision.rules),
                destination=decision.destination,
                policy_digest=decision.policy_digest,
                dataset=governed,
                dag_id=self.dag_id,
                task_id=self.task_id,
                run_id=context.get("run_id") if context else None,
            )
        except Exception as error:
            self.log.error(
                "recipient gate: the decision on policy %s to %s (%s) could not be appended to the audit "
                "trail (%s); nothing may be exported unrecorded",
                decision.policy,
                decision.destination,
                "passed" if decision.allowed else "refused",
                type(error).__name__,
            )
            raise
        self.log.info("recipient gate: decision appended to the audit trail, sequence %d", record.sequence)
        return {"trail_sequence": record.sequence, "trail_digest": record.digest}

    def _record(self, context: Context, summary: Mapping[str, object]) -> None:
        """Push the decision to XCom, refused or not, so that a refusal stays on record."""
        task_instance = context.get("ti") if context else None
        if task_instance is not None:
            task_instance.xcom_push(key="gate_decision", value=dict(summary))

    def _refusal_message(self, decision: GateDecision) -> str:
        where = f" (report: {self.report_path})" if self.report_path else ""
        return (
            f"recipient gate refused the export of policy {decision.policy} to {decision.destination}: "
            + "; ".join(decision.refusals)
            + where
        )


def _output(report: Mapping[str, Any]) -> str | None:
    """The governed set a report or summary names as its output, fingerprinted in the trail record."""
    output = report.get("output")
    return output if isinstance(output, str) and output else None
