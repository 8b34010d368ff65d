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

    from airflow_phi_guard.consent.sources import ConsentSource
    from airflow_phi_guard.engine.executor import GovernanceResult
    from airflow_phi_guard.policy.models import Policy
    from airflow_phi_guard.recipients import RecipientRegistry


class PhiPolicyOperator(BaseOperator):
    """Apply a PHI policy to a dataset and publish the governed set only if every check passed.

    In one streaming pass it refuses undeclared columns, admits only records with a valid consent at the
    as-of date, applies each column's treatment, and scans kept text for identifiers. A refusal fails the
    task without retry (retrying cannot heal it) and publishes nothing; I/O errors stay retryable. The
    task returns a value-free summary to XCom and reports OpenLineage facets describing the decision.

    :param policy_path: the policy file (YAML); a relative path is read from ``[phi_guard] policy_folder``
        when the Airflow configuration sets it.
    :param input_path: the source dataset: a Parquet or CSV file, a folder of them (hive partitions become
        columns, to be declared like any other), a glob pattern, or a list of files. (templated)
    :param output_path: the governed Parquet file to publish, or its folder with ``partition_by``.
        (templated)
    :param partition_by: output columns to publish the set hive-partitioned by, outermost first. Folder
        names are outside the dataset, so a column that is an identifier kept as it is, a pseudonym or
        surrogate, a shifted date, kept text or the subject column is refused before rows are read.
    :param consent_path: the consent registry, CSV or Parquet: a local path or an fsspec URL. (templated)
    :param consent_conn_id: instead of a file, the Airflow connection of a SQL database holding the
        registry (:class:`~airflow_phi_guard.operators.hooks.ConsentRegistryHook`), with ``consent_table``
        or ``consent_query``. Give exactly one of ``consent_path`` and ``consent_conn_id``; an empty
        string counts as not given, so a template can choose between them. (templated)
    :param consent_table: the registry table in that database, ``table`` or ``schema.table``. (templated)
    :param consent_query: instead of a table, a query returning the registry's columns. (templated)
    :param as_of: reference date of consent and ages, ``YYYY-MM-DD``; the run's logical date by default.
        (templated)
    :param report_path: where to write the governance report (JSON). (templated)
    :param pseudonym_key_conn_id: the connection whose password is the pseudonym key.
    :param manifest_key_conn_id: the connection whose password is the subject manifest key, which must
        differ from the pseudonym key; without it no manifest is written beside the output, and
        ``phi-guard impact`` cannot answer for the run.
    :param date_shift_key_conn_id: the connection whose password is the key of the ``date-shift``
        treatment (at least 32 bytes); read only when the policy shifts dates.
    :param surrogate_mapping_path: the private Parquet mapping of ``surrogate`` codes, locked for the run;
        kept like the source data and never published. (templated)
    :param surrogate_mapping_conn_id: instead of a file, the Airflow connection of a SQL database (any
        ``DbApiHook``, through its SQLAlchemy engine) holding the mapping in ``surrogate_mapping_table``.
        (templated)
    :param surrogate_mapping_table: the mapping table in that database, ``table`` or ``schema.table``;
        created if it does not exist. (templated)
    :param trail_path: the audit trail the run is recorded in (a JSONL file, or a PostgreSQL URL with
        ``#schema.table``); its head goes into the run's lineage. None records in ``[phi_guard] trail`` when
        the Airflow configuration sets it, and nothing otherwise. (templated)
    :param recipients_path: the recipient registry (YAML); with it, the run refuses a policy whose
        recipient it does not list or lacks what the data needs (a BAA in force for the purpose).
        (templated)
    :param recipient_registry_conn_id: instead of a file, the Airflow connection of the database that holds
        the registry table (:class:`~airflow_phi_guard.operators.hooks.RecipientRegistryHook`); give at
        most one of ``recipients_path`` and this. An unreachable database leaves the task retryable.
        (templated)
    :param recipient_registry_table: the registry table in that database, ``table`` or ``schema.table``.
        (templated)
    :param engine: ``arrow`` (the default) runs the plan in this worker's process; ``spark`` runs the same
        plan on Spark (:func:`~airflow_phi_guard.engine.spark.govern_spark`), with the same output and
        report, for a Parquet input given as one path; it publishes a folder of Parquet parts.
    :param spark_conn_id: with ``engine="spark"``, the connection of type ``spark`` whose host (and port)
        is the master URL (:class:`~airflow_phi_guard.operators.hooks.SparkSessionHook`).
    """

    template_fields: Sequence[str] = (
        "input_path",
        "output_path",
        "consent_path",
        "consent_conn_id",
        "consent_table",
        "consent_query",
        "as_of",
        "report_path",
        "surrogate_mapping_path",
        "surrogate_mapping_conn_id",
        "surrogate_mapping_table",
        "trail_path",
        "recipients_path",
        "recipient_registry_conn_id",
        "recipient_registry_table",
    )
    ui_color = "#e8f0e3"

    def __init__(
        self,
        *,
        policy_path: str,
        input_path: str | Sequence[str],
        output_path: str,
        consent_path: str | None = None,
        consent_conn_id: str | None = None,
        consent_table: str | None = None,
        consent_query: str | None = None,
        report_path: str,
        as_of: str = "{{ ds }}",
        pseudonym_key_conn_id: str = "phi_guard_pseudonym_key",
        manifest_key_conn_id: str = "phi_guard_manifest_key",
        date_shift_key_conn_id: str = "phi_guard_date_shift_key",
        surrogate_mapping_path: str | None = None,
        surrogate_mapping_conn_id: str | None = None,
        surrogate_mapping_table: str | None = None,
        trail_path: str | None = None,
        recipients_path: str | None = None,
        recipient_registry_conn_id: str | None = None,
        recipient_registry_table: str | None = None,
        partition_by: Sequence[str] = (),
        engine: str = "arrow",
        spark_conn_id: str = "spark_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if engine not in ("arrow", "spark"):
            raise ValueError(f"engine must be 'arrow' or 'spark', not {engine!r}")
        self.engine = engine
        self.spark_conn_id = spark_conn_id
        self.policy_path = policy_path
        self.input_path = input_path
        self.output_path = output_path
        self.consent_path = consent_path
        self.consent_conn_id = consent_conn_id
        self.consent_table = consent_table
        self.consent_query = consent_query
        self.report_path = report_path
        self.as_of = as_of
        self.pseudonym_key_conn_id = pseudonym_key_conn_id
        self.manifest_key_conn_id = manifest_key_conn_id
        self.date_shift_key_conn_id = date_shift_key_conn_id
        self.surrogate_mapping_path = surrogate_mapping_path
        self.surrogate_mapping_conn_id = surrogate_mapping_conn_id
        self.surrogate_mapping_table = surrogate_mapping_table
        self.trail_path = trail_path
        self.recipients_path = recipients_path
        self.recipient_registry_conn_id = recipient_registry_conn_id
        self.recipient_registry_table = recipient_registry_table
        self.partition_by = list(partition_by)
        self._result: GovernanceResult | None = None

    def execute(self, context: Context) -> dict[str, object]:
        from airflow_phi_guard.engine.executor import govern
        from airflow_phi_guard.exceptions import (
            DataProcessingError,
            PolicyError,
            PolicyViolationError,
            SourceDatasetError,
        )
        from airflow_phi_guard.policy.models import Treatment
        from airflow_phi_guard.trail.records import RunIds

        policy = self._policy()
        key = self._pseudonym_key() if policy.uses(Treatment.PSEUDONYMIZE) else None
        date_shift_key = self._date_shift_key() if policy.uses(Treatment.DATE_SHIFT) else None
        surrogate_mapping = self._surrogate_mapping() if policy.uses(Treatment.SURROGATE) else None

        arguments: dict[str, Any] = {
            "consent": self._consent(),
            "as_of": date.fromisoformat(self.as_of),
            "pseudonym_key": key,
            "manifest_key": self._manifest_key(),
            "date_shift_key": date_shift_key,
            "surrogate_mapping": surrogate_mapping,
            "recipients": self._recipients(),
            "trail": self._trail(),
            "trail_ids": RunIds(self.dag_id, self.task_id, context.get("run_id")),
        }
        try:
            if self.engine == "spark":
                from airflow_phi_guard.engine.spark import govern_spark
                from airflow_phi_guard.operators.hooks import SparkSessionHook

                spark = SparkSessionHook(self.spark_conn_id).get_session(
                    app_name=f"{self.dag_id}.{self.task_id}"
                )
                self._result = govern_spark(
                    policy,
                    self.input_path,
                    self.output_path,
                    spark=spark,
                    partition_by=self.partition_by,
                    **arguments,
                )
            else:
                self._result = govern(
                    policy, self.input_path, self.output_path, partition_by=self.partition_by, **arguments
                )
        except DataProcessingError as error:
            if error.retryable:
                raise
            raise AirflowFailException(str(error)) from None
        except SourceDatasetError as error:
            # a source of the wrong kind stays wrong on retry
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

    def _recipients(self) -> RecipientRegistry | None:
        from airflow_phi_guard.operators.recipients import resolve_recipient_registry

        return resolve_recipient_registry(
            self.recipients_path,
            self.recipient_registry_conn_id,
            self.recipient_registry_table,
            configured=False,
        )

    def _policy(self) -> Policy:
        from airflow_phi_guard.exceptions import PolicyError
        from airflow_phi_guard.policy.loader import load_policy

        try:
            return load_policy(self.policy_file())
        except PolicyError as error:
            raise AirflowFailException(f"bad policy: {error}") from None

    def policy_file(self) -> str:
        """The policy file: ``policy_path``, under ``[phi_guard] policy_folder`` when it is relative. The
        cluster policy reads the same file."""
        import os

        from airflow.configuration import conf

        folder = conf.get("phi_guard", "policy_folder", fallback="")
        if folder and not os.path.isabs(self.policy_path):
            return os.path.join(folder, self.policy_path)
        return self.policy_path

    def _trail(self) -> str | None:
        """The audit trail of the run: ``trail_path``, else ``[phi_guard] trail``, else none."""
        from airflow_phi_guard.operators.recipients import configured_trail

        return configured_trail(self.trail_path)

    def _consent(self) -> ConsentSource | str | None:
        """The registry the task reads: the connection's database, or the file; never both, never a guess."""
        from airflow_phi_guard.exceptions import PolicyViolationError
        from airflow_phi_guard.operators.hooks import ConsentRegistryHook

        path, conn_id = self.consent_path or None, self.consent_conn_id or None
        if path and conn_id:
            raise AirflowFailException(
                "give the consent registry as consent_path or consent_conn_id, not both: which one holds "
                "the permissions must not be a guess"
            )
        if conn_id is None:
            return path
        try:
            return ConsentRegistryHook(
                conn_id, table=self.consent_table or None, query=self.consent_query or None
            ).get_source()
        except PolicyViolationError as error:
            raise AirflowFailException(str(error)) from None

    def _consent_name(self) -> str | None:
        """The registry's display name for lineage; a connection is not opened, only described."""
        from airflow_phi_guard.consent.sources import consent_display_name

        consent = self._consent()
        return consent_display_name(consent) if consent is not None else None

    def _manifest_key(self) -> bytes | None:
        from airflow_phi_guard.operators.hooks import ManifestKeyHook

        return ManifestKeyHook(self.manifest_key_conn_id).get_key()

    def _date_shift_key(self) -> bytes | None:
        """The date shift key, the password of its connection; None when the connection does not exist
        (the engine then refuses the run), while any other failure of the lookup stays retryable."""
        from airflow_phi_guard.operators.hooks import DateShiftKeyHook

        return DateShiftKeyHook(self.date_shift_key_conn_id).get_key()

    def _surrogate_mapping(self) -> Any:
        """The surrogate mapping: the Parquet file, or the table of a SQL connection; never both."""
        from airflow_phi_guard.deid.surrogate import SqlMappingStore
        from airflow_phi_guard.operators.hooks import sql_database_hook

        path, conn_id = self.surrogate_mapping_path or None, self.surrogate_mapping_conn_id or None
        if path and conn_id:
            raise AirflowFailException(
                "give the surrogate mapping as surrogate_mapping_path or surrogate_mapping_conn_id, not both"
            )
        if conn_id is None:
            return path
        if not self.surrogate_mapping_table:
            raise AirflowFailException("surrogate_mapping_conn_id needs surrogate_mapping_table")
        hook, _ = sql_database_hook(conn_id, "surrogate mapping", AirflowFailException)
        return SqlMappingStore(hook.get_sqlalchemy_engine(), self.surrogate_mapping_table)

    def _pseudonym_key(self) -> bytes | None:
        from airflow_phi_guard.operators.hooks import PseudonymKeyHook

        return PseudonymKeyHook(self.pseudonym_key_conn_id).get_key()

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        from airflow_phi_guard.engine.source import source_location
        from airflow_phi_guard.lineage.build import lineage_for_start
        from airflow_phi_guard.policy.loader import load_policy

        return _operator_lineage(
            lineage_for_start(
                load_policy(self.policy_file()),
                input_path=source_location(self.input_path),
                output_path=self.output_path,
                consent_registry=self._consent_name(),
                as_of=date.fromisoformat(self.as_of),
            )
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        from airflow_phi_guard.lineage.build import lineage_for_report

        if self._result is None:
            return self.get_openlineage_facets_on_start()
        trail = None
        trail_path = self._trail()
        if trail_path and self._result.trail_head is not None:
            from airflow_phi_guard.lineage.build import trail_facet
            from airflow_phi_guard.trail.store import open_trail

            trail = trail_facet(open_trail(trail_path).display_name, self._result.trail_head)
        # The policy the run enforced, not the file read again: it may have changed since.
        return _operator_lineage(
            lineage_for_report(
                self._result.report,
                self._result.plan.policy,
                input_schema=self._result.plan.schema,
                output_schema=self._result.output_schema,
                trail=trail,
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
