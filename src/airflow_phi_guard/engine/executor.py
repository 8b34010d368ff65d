"""The Arrow executor: carries out a plan in one streaming pass and publishes only if every check passed."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_phi_guard.consent.admission import ConsentAdmission
from airflow_phi_guard.consent.sources import ConsentSource
from airflow_phi_guard.deid.risk import RiskAccumulator
from airflow_phi_guard.deid.surrogate import MappingStore
from airflow_phi_guard.engine.common import (
    ColumnTreatment,
    Keys,
    Tally,
    arrow_errors,
    column_treatments,
    commit_surrogates,
    mapping_store,
    measure_batch,
    output_schema,
    preflight,
    publish,
    recipient_refusals,
    record_in_trail,
    refusals_from,
    report_builder,
    risk_gate,
    scan_column,
    withdraw,
)
from airflow_phi_guard.engine.paths import DEFAULT_PARTITION_K_MIN, PartitionSubjects, staging_guard
from airflow_phi_guard.engine.plan import Plan, Refusal, make_plan
from airflow_phi_guard.engine.source import (
    Source,
    open_source,
    partition_refusals,
    remove_tree,
    source_inputs,
    source_location,
    write_partitioned,
)
from airflow_phi_guard.exceptions import (
    InvalidValuesError,
    PartitionNotPermittedError,
    PolicyViolationError,
    ReidentificationRiskError,
    SurrogateMappingError,
)
from airflow_phi_guard.phi.known import KnownValues
from airflow_phi_guard.policy.models import Policy
from airflow_phi_guard.recipients.models import RecipientRegistry
from airflow_phi_guard.report import (
    GovernanceReport,
    Verdict,
)
from airflow_phi_guard.trail.chain import TrailHead
from airflow_phi_guard.trail.records import RunIds
from airflow_phi_guard.trail.store import AuditTrail

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 64 * 1024


@dataclass(frozen=True)
class GovernanceResult:
    """A run's report, with the refusals behind a ``refused`` verdict as error classes.

    :param report: the governance report, published or refused.
    :param plan: the plan the run carried out.
    :param refusals: why nothing was published; empty when the verdict is ``published``.
    """

    report: GovernanceReport
    plan: Plan
    refusals: tuple[Refusal, ...] = ()
    #: the run's record in the audit trail (sequence and digest), None when no trail was configured
    trail_head: TrailHead | None = None

    @property
    def output_schema(self) -> pa.Schema:
        """The schema of the governed set: the published columns, under their output names and types."""
        return output_schema(self.plan)

    def write_report(self, path: str | os.PathLike[str]) -> None:
        """Write the governance report; if that fails, withdraw the published set, which needs its record.

        :param path: where to write the report (JSON).
        :raises OSError: the report could not be written.
        """
        try:
            self.report.write(path)
        except OSError:
            if self.report.output is not None:
                withdraw(Path(self.report.output), because="its governance report could not be written")
            raise

    def raise_for_verdict(self, report_path: str | None = None) -> None:
        """Raise the refusal's error when nothing was published.

        :param report_path: where the caller wrote the full report, for the message.
        :raises PolicyViolationError: or the subclass that stands for the first refusal.
        """
        if self.report.published:
            return
        kinds = {refusal.error for refusal in self.refusals}
        error = kinds.pop() if len(kinds) == 1 else PolicyViolationError
        raise error([refusal.message for refusal in self.refusals], report_path)


def govern(
    policy: Policy,
    source: Source,
    output: str | os.PathLike[str],
    *,
    consent: ConsentSource | str | os.PathLike[str] | None,
    as_of: date,
    pseudonym_key: bytes | None = None,
    manifest_key: bytes | None = None,
    date_shift_key: bytes | None = None,
    surrogate_mapping: MappingStore | str | os.PathLike[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    recipients: RecipientRegistry | None = None,
    trail: AuditTrail | str | os.PathLike[str] | None = None,
    trail_ids: RunIds | None = None,
    partition_by: Sequence[str] = (),
) -> GovernanceResult:
    """Apply ``policy`` to ``source`` and publish the governed set at ``output`` only if every check passed.

    One streaming pass: read the planned columns, admit rows by consent, treat, scan kept text for
    identifiers, write Parquet to a hidden temporary file beside ``output``; rename it into place at the
    end, or delete it when anything was refused. I/O errors propagate (a retry may heal them); refusals
    are returned in the result (a retry cannot). With a manifest key, the keyed hashes of the admitted
    subjects are published beside the output (:func:`~airflow_phi_guard.consent.manifest.manifest_path`),
    together with it or not at all; without one, no manifest is written and the report's ``manifest`` is
    None, so revocation impact cannot answer for the run.

    :param policy: the policy to enforce.
    :param source: the source dataset: a Parquet or CSV file, a folder of either (hive partitions become
        columns, judged by the plan like any other), a glob pattern, or a list of files
        (:func:`~airflow_phi_guard.engine.source.open_source`).
    :param output: the Parquet file to publish, or the folder when ``partition_by`` is given.
    :param consent: the consent registry: a source (consent/sources.py), or the path or fsspec URL of a
        CSV or Parquet file; without one nothing can be admitted.
    :param as_of: reference date of consent and of ages.
    :param pseudonym_key: the key of the ``pseudonymize`` treatment, from a secret, never the policy.
    :param manifest_key: the key of the subject manifest's hashes, from a secret apart from the pseudonym
        key; None writes no manifest.
    :param date_shift_key: the key of the ``date-shift`` treatment, from a secret, never the policy.
    :param surrogate_mapping: the private mapping of ``surrogate`` codes: a Parquet file (locked for the
        whole run) or a store such as :class:`~airflow_phi_guard.deid.surrogate.SqlMappingStore`. New codes
        are written to it only when the run publishes, before the output is renamed into place.
    :param batch_rows: rows per record batch, which bounds memory.
    :param recipients: the recipient registry; with one, the policy's ``recipient`` must be listed in it
        (checked before rows are read) and, once the verdict is known, have what the output needs
        (:func:`~airflow_phi_guard.recipients.gate.decide_for_recipient`), or nothing is published.
    :param trail: the audit trail (a store, a JSONL path or a database URL) to record the run in, published
        or refused, once its report is final; None records nothing. A run whose record cannot be appended
        is withdrawn and the error raised: a published set needs its record.
    :param trail_ids: the DAG, task and run ids for the trail record.
    :param partition_by: output columns to publish the set hive-partitioned by (``year=2020/part-0.parquet``
        under ``output``), outermost first; a column whose values must not name folders is refused before
        rows are read (:func:`~airflow_phi_guard.engine.source.partition_refusals`). The folders are
        written only after every check passed, beside ``output``, and renamed into place.
    """
    source_path, output_path = source_location(source), Path(output).resolve()
    keys = Keys(pseudonym_key, manifest_key, date_shift_key)
    with arrow_errors(source_path), mapping_store(policy, surrogate_mapping) as store:
        result = _govern(
            policy,
            source,
            source_path,
            output_path,
            consent,
            as_of,
            keys,
            store,
            batch_rows,
            recipients,
            partition_by=tuple(partition_by),
        )
    return record_in_trail(result, trail, trail_ids)


def _govern(
    policy: Policy,
    source: Source,
    source_path: Path,
    output_path: Path,
    consent: ConsentSource | str | os.PathLike[str] | None,
    as_of: date,
    keys: Keys,
    store: MappingStore | None,
    batch_rows: int,
    recipients: RecipientRegistry | None = None,
    *,
    partition_by: tuple[str, ...] = (),
) -> GovernanceResult:
    dataset = open_source(source)
    inputs = source_inputs(source)
    plan = make_plan(policy, dataset.schema)
    admission, refusals, deidentified = preflight(
        plan, consent, as_of, keys, store, recipients, inputs=inputs, output=output_path
    )
    refusals.extend(partition_refusals(plan, partition_by))
    report = report_builder(policy, plan, source_path, consent, as_of, keys, deidentified, refusals)

    tally = Tally()
    if refusals:
        withdraw(output_path)
        log.info("policy %s refused the input before reading rows: %d refusal(s)", policy.name, len(refusals))
        return GovernanceResult(report(Verdict.REFUSED, tally, None), plan, tuple(refusals))

    assert admission is not None
    treat = column_treatments(plan, as_of, keys, deidentified.codes)
    thresholds = policy.deidentification.risk_thresholds
    accumulator = RiskAccumulator(thresholds) if thresholds is not None else None
    # Folder names are seen by whoever lists the folder: each must stand for at least k_min people.
    folders = (
        PartitionSubjects(
            partition_by,
            thresholds.quasi_identifiers if thresholds is not None else (),
            thresholds.k_min if thresholds is not None else DEFAULT_PARTITION_K_MIN,
        )
        if partition_by
        else None
    )
    temporary = output_path.with_name(f".{output_path.name}.{uuid.uuid4().hex}.tmp")
    partitions = temporary.with_name(f"{temporary.name}.partitions")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with staging_guard(output_path, inputs):
        try:
            schema = output_schema(plan)
            with pq.ParquetWriter(temporary, schema) as writer:
                batches = dataset.to_batches(
                    columns=plan.read_columns,
                    batch_size=batch_rows,
                    # Arrow's threaded scan reads ahead of a pass slower than the read without a bound (its
                    # readahead limits do not hold it back): 1 GB and more after a few files. Read in this
                    # thread, a batch at a time, the memory stays bounded by the batch size.
                    use_threads=False,
                )
                # Known shortcoming: batches are governed one at a time in this thread, so the pass uses one
                # core where a bare pyarrow read and write uses all: at 1 to 30 million rows it takes 2.4 to 3
                # times as long (benchmarks/scale.py). Governing two batches at once on a thread pool (Arrow's
                # kernels release the GIL), writing them in order, would close much of the gap. The peak
                # memory (0.8 to 1.2 GB there) is mostly mimalloc's retained pages beside 250 to 470 MB of
                # live Arrow buffers; jemalloc (ARROW_DEFAULT_MEMORY_POOL) held a 10 million row run to 728
                # MB.
                for batch in batches:
                    governed = _govern_batch(batch, plan, schema, admission, treat, tally, folders)
                    # Once the run is sure to be refused, scanning goes on for complete counts, but no more
                    # data is written, not even to the hidden temporary file.
                    if governed is not None and not tally.refused:
                        writer.write_batch(governed)
                        if accumulator is not None:
                            measure_batch(accumulator, governed, tally)
            refusals.extend(refusals_from(tally))
            if not refusals and accumulator is not None:
                refusals.extend(risk_gate(accumulator, temporary, batch_rows, tally, deidentified))
            if not refusals and accumulator is not None and tally.admitted == tally.suppressed:
                refusals.append(_no_rows_refusal(thresholds.k_min))
            if not refusals and folders is not None:
                small = (
                    accumulator.classes_below_k() if accumulator is not None and tally.suppressed else None
                )
                problem = folders.problem(small)
                if problem is not None:
                    refusals.append(_small_folders_refusal(problem))
            if not refusals and recipients is not None:
                # the output's Safe Harbor verdict decides whether the recipient needs an agreement
                candidate = report(Verdict.PUBLISHED, tally, output_path)
                refusals.extend(recipient_refusals(policy, candidate, recipients, as_of))
            if not refusals:
                refusals.extend(commit_surrogates(deidentified))
            if refusals:
                withdraw(output_path)
                log.info(
                    "policy %s refused the data after %d row(s): %d refusal(s)",
                    policy.name,
                    tally.read,
                    len(refusals),
                )
                return GovernanceResult(report(Verdict.REFUSED, tally, None), plan, tuple(refusals))
            if partition_by:
                # Values name folders only once every check passed, so a refused run never wrote one; the
                # second pass over the output is the price of that (and keeps the risk gate's suppression,
                # which rewrites one file, as it is).
                write_partitioned(temporary, partitions, partition_by, batch_rows=batch_rows)
            manifest = publish(partitions if partition_by else temporary, output_path, tally, keys.manifest)
        finally:
            temporary.unlink(missing_ok=True)
            remove_tree(partitions)

    log.info(
        "policy %s (%s) published %d of %d row(s), %d column(s)",
        policy.name,
        policy.digest,
        tally.admitted - tally.suppressed,
        tally.read,
        len(plan.published),
    )
    return GovernanceResult(report(Verdict.PUBLISHED, tally, output_path, manifest), plan)


def _no_rows_refusal(k_min: int) -> Refusal:
    return Refusal(
        ReidentificationRiskError,
        f"re-identification risk: no row remains to publish, so k cannot be shown to reach k_min {k_min}; "
        "nothing was published: check the consent registry, the as-of date and the input",
    )


def _small_folders_refusal(problem: str) -> Refusal:
    return Refusal(
        PartitionNotPermittedError,
        f"{problem}; nothing was published: partition by a coarser column, or publish unpartitioned",
    )


def _govern_batch(
    batch: pa.RecordBatch,
    plan: Plan,
    schema: pa.Schema,
    admission: ConsentAdmission,
    treat: dict[str, ColumnTreatment],
    tally: Tally,
    folders: PartitionSubjects | None = None,
) -> pa.RecordBatch | None:
    tally.read += batch.num_rows
    # Known values come from every row read, excluded ones too: a name is PHI in any note it appears in.
    known = KnownValues.from_batch(batch, plan.known_value_columns) if plan.known_value_columns else None
    tally.admission, tally.subject = admission, plan.policy.subject
    admitted, excluded = admission.admit(batch.column(plan.policy.subject))
    tally.excluded.update({str(reason): count for reason, count in excluded.items() if count})
    batch = batch.filter(admitted)
    tally.admitted += batch.num_rows

    for column in plan.kept_text:
        scan_column(column, batch.column(column.source), plan.text_detectors, known, tally)

    arrays = []
    for column in plan.published:
        values = batch.column(column.source)
        try:
            arrays.append(treat[column.source](values, batch))
        except InvalidValuesError as error:
            previous = tally.invalid.get(column.source)
            count = error.count + (previous.count if previous else 0)
            tally.invalid[column.source] = InvalidValuesError(count, error.expected)
        except SurrogateMappingError as error:
            tally.failures.extend(Refusal(SurrogateMappingError, reason) for reason in error.refusals)
            return None
    if tally.invalid or tally.failures:
        return None
    governed = pa.RecordBatch.from_arrays(arrays, schema=schema)
    if folders is not None and not tally.refused:
        folders.add(governed, batch.column(plan.policy.subject))
    return governed
