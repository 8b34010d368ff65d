"""The Spark executor: the Arrow executor's plan, checks and treatments run on PySpark, to the same output."""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pa_dataset
import pyarrow.parquet as pq

from airflow_phi_guard.arrow_types import is_text
from airflow_phi_guard.consent.admission import ConsentAdmission
from airflow_phi_guard.consent.sources import ConsentSource
from airflow_phi_guard.deid.risk import (
    BelowK,
    ReidentificationRisk,
    RiskAccumulator,
    RiskThresholds,
    risk_refusals,
)
from airflow_phi_guard.deid.surrogate import MappingStore, normalized_identifiers
from airflow_phi_guard.engine.common import (
    ColumnTreatment,
    Deidentified,
    Keys,
    Tally,
    arrow_errors,
    column_treatments,
    commit_surrogates,
    mapping_store,
    output_schema,
    preflight,
    publish,
    recipient_refusals,
    record_in_trail,
    refusals_from,
    report_builder,
    scan_column,
    suppression_refusals,
    withdraw,
)
from airflow_phi_guard.engine.executor import (
    DEFAULT_BATCH_ROWS,
    GovernanceResult,
    _no_rows_refusal,
    _small_folders_refusal,
)
from airflow_phi_guard.engine.paths import DEFAULT_PARTITION_K_MIN, small_folders_problem, staging_guard
from airflow_phi_guard.engine.plan import ColumnPlan, Plan, Refusal, make_plan
from airflow_phi_guard.engine.source import (
    PARTITION_SCHEMA_FILE,
    open_source,
    partition_refusals,
    remove_tree,
)
from airflow_phi_guard.exceptions import (
    DataProcessingError,
    InvalidValuesError,
    ReidentificationRiskError,
    SourceDatasetError,
    SurrogateMappingError,
)
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.known import KnownValues
from airflow_phi_guard.policy.models import Policy, Treatment
from airflow_phi_guard.recipients.models import RecipientRegistry
from airflow_phi_guard.report import Verdict
from airflow_phi_guard.trail.records import RunIds
from airflow_phi_guard.trail.store import AuditTrail

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

#: Columns the executor adds to the rows for the consent join; the plan refuses no source name, so they
#: carry a prefix no extract uses.
_KEY = "__phi_guard_subject_key"
_BLANK = "__phi_guard_subject_blank"
_POSITION = "__phi_guard_registry_position"
_ADMITTED = "__phi_guard_admitted"
_SIZE = "__phi_guard_class_rows"

#: The session settings a run relies on, set for the run and restored after it:
#: - Arrow batches of the Arrow executor's size, so that known values are matched within batches of the
#:   same size (they are matched within a batch, see the README's known limitations);
#: - partition folder names read as text, never typed by guessing (``007`` would become 7, and a subject id
#:   ``00123`` the consent of ``123``); each batch is cast back to the types ``open_source`` gives them;
#: - ``INT64 TIMESTAMP(NANOS)`` columns read as their integer counts, which Spark cannot read otherwise;
#:   the cast back to the source's ``timestamp[ns]`` is exact.
_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"
_PARTITION_TYPES_CONF = "spark.sql.sources.partitionColumnTypeInference.enabled"
_NANOS_CONF = "spark.sql.legacy.parquet.nanosAsLong"

#: The advice of a retryable DataProcessingError, by which the driver tells a worker's I/O failure apart.
_RETRYABLE_ADVICE = "retry once the storage is reachable"
#: A worker's error as Spark quotes its Python traceback; only the class names are taken from it.
_WORKER_ERROR = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?(?P<name>[A-Za-z_]\w*(?:Error|Exception)): ", re.MULTILINE
)
_WORKER_CAUSE = re.compile(r"DataProcessingError: (?P<cause>[A-Za-z_]\w*) while processing ")
#: Java classes in a cause chain that mark a failure of storage or of the connection, which may heal.
_IO_CAUSE = re.compile(
    r"^(?:Caused by: )?(?:java\.io\.\w*(?:IOException|FileNotFoundException)|java\.net\.\w+Exception"
    r"|java\.nio\.file\.\w+Exception|org\.apache\.hadoop\.\S*(?:IOException|Exception))\b",
    re.MULTILINE,
)

#: What the value scan of a partition returns: counts only, never a value.
_COUNTS_SCHEMA = pa.schema(
    [("kind", pa.string()), ("column", pa.string()), ("detail", pa.string()), ("count", pa.int64())]
)
#: What a task of the write pass returns: its counts, the identifiers and unreadable values it found in the
#: rows it wrote (counts only), and the files it wrote.
_WRITTEN_SCHEMA = pa.schema(
    [
        ("partition", pa.int64()),
        ("read", pa.int64()),
        ("admitted", pa.int64()),
        ("rows", pa.int64()),
        ("counts", pa.list_(pa.struct(list(_COUNTS_SCHEMA)))),
        ("files", pa.list_(pa.string())),
    ]
)


def local_session(app_name: str = "phi-guard", *, partitions: int = 2) -> SparkSession:
    """A Spark session in local mode, as the tests and the CLI use it: two cores, few shuffle partitions,
    no UI, UTC as the session time zone, and the Python workers on this interpreter.

    :param app_name: the application's name.
    :param partitions: local cores and shuffle partitions.
    """
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return session_for(SparkSession.builder.master(f"local[{partitions}]"), app_name, partitions=partitions)


def session_for(builder: Any, app_name: str, *, partitions: int = 2) -> SparkSession:
    """Finish a session builder with the settings the executor relies on.

    :param builder: a ``SparkSession.Builder`` with its master set.
    :param app_name: the application's name.
    :param partitions: shuffle partitions.
    """
    session = (
        builder.appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.sql.session.timeZone", "UTC")
        # A failed Python worker's traceback is shown without Spark's own frames; the executor's workers
        # raise errors whose messages carry no values (see _value_free_errors).
        .config("spark.sql.execution.pyspark.udf.simplifiedTraceback.enabled", "true")
        # A speculative copy of a task could write parts after the driver listed them; the driver also
        # checks the folder against the returned attempts before publishing (see _check_parts).
        .config("spark.speculation", "false")
        .getOrCreate()
    )
    # INFO lines of Spark name files and stages, never rows; WARN keeps the output readable.
    session.sparkContext.setLogLevel("WARN")
    return session


def govern_spark(
    policy: Policy,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    spark: SparkSession,
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
    """Apply ``policy`` to a Parquet ``source`` on Spark, and publish the governed set at ``output`` only if
    every check passed; the parameters are those of :func:`~airflow_phi_guard.engine.executor.govern`.

    The plan, the checks before rows are read, the treatments (pyarrow functions run per Arrow batch with
    ``mapInArrow``), the value scan and the report are the Arrow executor's own, so that both give the same
    output and the same report. Spark reads the rows, admits them by a broadcast join with the consent
    registry, scans kept text in its workers (which return counts only), measures k and l with a
    ``groupBy`` of the treated quasi-identifiers (suppressing small classes by an anti-join) and, only when
    nothing was refused, treats and writes the rows in its workers as Parquet parts into a hidden folder
    beside ``output``, renamed into place at the end. No output row passes through the driver. As the Arrow
    executor does, it refuses partition folders of fewer than ``k_min`` distinct subjects (11 without risk
    thresholds) and a risk-gated run left with no row, and it writes under the Arrow executor's lock of the
    output's folder, removing a killed run's staging when no other run holds it.

    Unlike the Arrow executor, the governed set is always a folder of Parquet parts (with the schema file
    of a governed set, :data:`~airflow_phi_guard.engine.source.PARTITION_SCHEMA_FILE`), hive-partitioned
    when ``partition_by`` is given; :func:`~airflow_phi_guard.engine.source.open_source` and
    ``pyarrow.dataset`` read it back to the Arrow executor's schema and rows.

    :param spark: the session to run on (:func:`local_session`, or one built from an Airflow connection).
        Its workers write the parts, so they must see ``output``'s folder (local mode, or a shared file
        system).
    :raises SourceDatasetError: the source is not one Parquet path.
    :raises DataProcessingError: Spark failed, or the source changed while the run read it (retryable);
        its message names no value.
    """
    if not isinstance(source, str | os.PathLike):
        raise SourceDatasetError(
            "the list of files", "is not one path: the Spark engine reads one Parquet file or folder"
        )
    source_path, output_path = Path(source).resolve(), Path(output).resolve()
    if source_path.suffix.lower() == ".csv":
        raise SourceDatasetError(
            str(source_path), "is CSV and the Spark engine reads Parquet: convert it, or use the Arrow engine"
        )
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    keys = Keys(pseudonym_key, manifest_key, date_shift_key)
    settings = {_BATCH_CONF: str(batch_rows), _PARTITION_TYPES_CONF: "false", _NANOS_CONF: "true"}
    previous = {name: spark.conf.get(name, None) for name in settings}
    for name, value in settings.items():
        spark.conf.set(name, value)
    try:
        with arrow_errors(source_path), mapping_store(policy, surrogate_mapping) as store:
            result = _govern(
                spark,
                policy,
                source_path,
                output_path,
                consent,
                as_of,
                keys,
                store,
                recipients,
                tuple(partition_by),
            )
    except (PySparkException, Py4JError) as error:
        # Spark's message may quote a worker's traceback; only class names go on.
        raise _processing_error(error, source_path) from None
    finally:
        for name, value in previous.items():
            if value is None:
                spark.conf.unset(name)
            else:
                spark.conf.set(name, value)
    return record_in_trail(result, trail, trail_ids)


def _processing_error(error: Exception, source: Path) -> DataProcessingError:
    """The error of a failed Spark job, naming classes only: retryable when storage or the connection to
    Spark failed, not when Spark refused the query (``AnalysisException``) or a worker's code failed,
    unless the worker's own guard found an I/O error.

    :param error: what PySpark or py4j raised.
    :param source: the source dataset of the run.
    """
    import builtins

    from py4j.protocol import Py4JJavaError, Py4JNetworkError
    from pyspark.errors import AnalysisException, PythonException

    from airflow_phi_guard import exceptions

    if isinstance(error, Py4JNetworkError):
        return DataProcessingError(str(source), type(error).__name__, retryable=True)
    if isinstance(error, AnalysisException):
        return DataProcessingError(str(source), type(error).__name__, retryable=False)
    if isinstance(error, Py4JJavaError):
        text = str(error)
    else:
        text = f"{getattr(error, '_desc', '')}\n{getattr(error, '_stackTrace', '')}"
    if isinstance(error, PythonException) or "org.apache.spark.api.python.PythonException" in text:
        # A worker failed: its guard raised an error naming a class only, or one of the package's errors.
        cause = _WORKER_CAUSE.search(text)
        # only names of known error classes are taken from the text, which could quote anything else
        known = [
            match.group("name")
            for match in _WORKER_ERROR.finditer(text)
            if hasattr(exceptions, match.group("name")) or hasattr(builtins, match.group("name"))
        ]
        name = cause.group("cause") if cause else (known[-1] if known else type(error).__name__)
        retryable = cause is not None and _RETRYABLE_ADVICE in text[cause.end() :]
        return DataProcessingError(str(source), name, retryable=retryable)
    return DataProcessingError(str(source), type(error).__name__, retryable=bool(_IO_CAUSE.search(text)))


def _govern(
    spark: SparkSession,
    policy: Policy,
    source_path: Path,
    output_path: Path,
    consent: ConsentSource | str | os.PathLike[str] | None,
    as_of: date,
    keys: Keys,
    store: MappingStore | None,
    recipients: RecipientRegistry | None,
    partition_by: tuple[str, ...],
) -> GovernanceResult:
    from pyspark.sql import functions

    # Every pass reads the source again; what they read must be what the plan was made from.
    fingerprint = _fingerprint(source_path)
    plan = make_plan(policy, open_source(source_path).schema)
    admission, refusals, deidentified = preflight(
        plan, consent, as_of, keys, store, recipients, inputs=[source_path], output=output_path
    )
    refusals.extend(partition_refusals(plan, partition_by))
    report = report_builder(policy, plan, source_path, consent, as_of, keys, deidentified, refusals)

    def refused(tally: Tally, stage: str) -> GovernanceResult:
        withdraw(output_path)
        log.info("policy %s refused the input %s: %d refusal(s)", policy.name, stage, len(refusals))
        return GovernanceResult(report(Verdict.REFUSED, tally, None), plan, tuple(refusals))

    tally = Tally()
    if refusals:
        return refused(tally, "before reading rows")

    assert admission is not None
    where = str(source_path)
    rows = _joined(spark, source_path, plan, admission)
    _count_consent(rows, admission, policy.subject, tally)
    codes = _surrogate_lookups(rows, plan, deidentified, tally, where)
    if not tally.failures:
        _scan_counts(rows, plan, as_of, keys, codes, tally, where)
    thresholds = policy.deidentification.risk_thresholds
    if thresholds is not None and tally.read and not tally.refused:
        tally.failures.extend(_risk_column_failures(plan, thresholds))
    refusals.extend(refusals_from(tally))
    if refusals:
        return refused(tally, f"after {tally.read} row(s)")

    # Known shortcoming: the rows are not cached between passes, so no pass leaves the source's rows in
    # Spark's block manager, and the source is read once per pass. Spark still holds PHI outside the rows:
    # the registry's subject ids are broadcast to every executor (see _joined), and the surrogate
    # identifiers of the run with their codes, and the keys, travel in the closure of every task. A
    # cluster's executors, their memory and local disks, are therefore within the PHI boundary.
    published = rows
    expected = tally.admitted
    if thresholds is not None:
        admitted = rows.filter(functions.col(_ADMITTED))
        classes = _classes(admitted, plan, thresholds, as_of, keys, codes, where)
        risk = _measure(classes, thresholds)
        deidentified.risk = risk
        refusals.extend(Refusal(ReidentificationRiskError, reason) for reason in risk_refusals(risk))
        if refusals:
            return refused(tally, f"after {tally.read} row(s)")
        if risk.rows + risk.suppressed_rows != tally.admitted:
            # the classes were counted over other rows than the consent pass admitted
            raise _changed(source_path)
        if risk.suppressed_rows:
            # Known shortcoming: the write pass then reads the rows the anti-join left, so its own scan
            # takes known values from those rows only, not from every row read as the first pass does.
            published = _without_small_classes(admitted, classes, plan, thresholds, as_of, keys, codes, where)
        expected = risk.rows
        if risk.rows == 0:
            # nothing left to publish: k cannot be shown to reach k_min, as the Arrow executor refuses it
            refusals.append(_no_rows_refusal(thresholds.k_min))
            return refused(tally, f"after {tally.read} row(s)")
    if partition_by:
        # Folder names are seen by whoever lists the folder: each must stand for at least k_min people.
        # Known shortcoming: the count is one more pass over the source (treating the partition columns),
        # before the write pass reads it again.
        k_min = thresholds.k_min if thresholds is not None else DEFAULT_PARTITION_K_MIN
        problem = _small_folders(published, plan, partition_by, k_min, as_of, keys, codes, where)
        if problem is not None:
            refusals.append(_small_folders_refusal(problem))
            if deidentified.risk is not None and deidentified.risk.suppressed_rows:
                tally.suppressed = deidentified.risk.suppressed_rows
            return refused(tally, f"after {tally.read} row(s)")

    temporary = output_path.with_name(f".{output_path.name}.{uuid.uuid4().hex}.tmp")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    # The Arrow executor's lock of the output's folder: neither removes the other's live staging, and the
    # first run to find the folder free removes what a killed run of either engine left. Known shortcoming:
    # the driver takes it, so it holds only where the file system carries flock between the processes that
    # share the folder; the workers write under the driver's lock.
    with staging_guard(output_path, [source_path]):
        try:
            written = _write_parts(published, plan, as_of, keys, codes, temporary, partition_by, where)
            # The write pass scanned and checked the rows it wrote: what it found refuses the run, whatever
            # the earlier passes saw.
            _add_counts(tally, written.counts)
            refusals.extend(refusals_from(tally))
            if refusals:
                return refused(tally, f"after {tally.read} row(s), in the rows to be published")
            if _fingerprint(source_path) != fingerprint:
                raise _changed(source_path)
            if published is rows and (written.read, written.admitted) != (tally.read, tally.admitted):
                raise _changed(source_path)
            if deidentified.risk is not None and deidentified.risk.suppressed_rows:
                refusals.extend(suppression_refusals(deidentified.risk, tally.admitted - written.rows, tally))
            elif written.rows != expected:
                raise _changed(source_path)
            if not refusals and recipients is not None:
                candidate = report(Verdict.PUBLISHED, tally, output_path)
                refusals.extend(recipient_refusals(policy, candidate, recipients, as_of))
            if refusals:
                return refused(tally, f"after {tally.read} row(s)")
            _check_parts(temporary, written.files, source_path)
            refusals.extend(commit_surrogates(deidentified))
            if refusals:
                return refused(tally, f"after {tally.read} row(s)")
            manifest = publish(temporary, output_path, tally, keys.manifest)
        finally:
            remove_tree(temporary)

    log.info(
        "policy %s (%s) published %d of %d row(s), %d column(s), on Spark",
        policy.name,
        policy.digest,
        tally.admitted - tally.suppressed,
        tally.read,
        len(plan.published),
    )
    return GovernanceResult(report(Verdict.PUBLISHED, tally, output_path, manifest), plan)


def _changed(source: Path) -> DataProcessingError:
    """The error of a run whose passes read different data: the source changed while the run read it."""
    return DataProcessingError(str(source), "SourceChangedDuringRun", retryable=True)


def _fingerprint(source: Path) -> tuple[tuple[str, int, int, int, int], ...]:
    """The files of ``source`` (hidden and metadata files too) with their sizes, modification and change
    times and inodes: a file replaced, rewritten, added or removed between two calls changes it.

    :param source: a Parquet file or folder.
    """
    if source.is_file():
        paths = [source]
    else:
        paths = sorted(Path(root, name) for root, _, names in os.walk(source) for name in names)
    entries = []
    for path in paths:
        status = path.stat()
        entries.append(
            (
                str(path.relative_to(source)) if path != source else "",
                status.st_size,
                status.st_mtime_ns,
                status.st_ctime_ns,
                status.st_ino,
            )
        )
    return tuple(entries)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _joined(spark: SparkSession, source: Path, plan: Plan, admission: ConsentAdmission) -> DataFrame:
    """The planned columns of the source, each row with its registry position and admission, by a
    broadcast join on the normalised subject id (the registry is held in memory anyway).

    The session reads partition folder names as text (see :data:`_PARTITION_TYPES_CONF`); every pass
    casts a batch back to the types of the plan, which are ``open_source``'s, with :func:`_source_batch`.
    """
    from pyspark.sql import functions
    from pyspark.sql.types import BooleanType, StringType, StructField, StructType

    reader = spark.read.option("basePath", str(source)) if source.is_dir() else spark.read
    frame = reader.parquet(str(source)).select(*[functions.col(_quoted(name)) for name in plan.read_columns])
    keyed_schema = StructType(
        [*frame.schema.fields, StructField(_KEY, StringType()), StructField(_BLANK, BooleanType(), False)]
    )
    subject = plan.policy.subject
    rule = plan.policy.consent.subject_ids
    subject_type = plan.schema.field(subject).type
    where = str(source)

    def keyed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from airflow_phi_guard.consent.admission import normalize_subject_ids

        for batch in batches:
            with _value_free_errors(where):
                normalized = normalize_subject_ids(batch.column(subject).cast(subject_type), rule)
                blank = pc.fill_null(pc.equal(pc.utf8_length(normalized), 0), True)
                key = pc.if_else(blank, pa.scalar(None, pa.string()), normalized)
                yield pa.RecordBatch.from_arrays(
                    [*batch.columns, key, blank], names=[*batch.schema.names, _KEY, _BLANK]
                )

    table = admission.join_table().rename_columns([_KEY, _POSITION, _ADMITTED])
    registry = spark.createDataFrame(table)
    # Known shortcoming: the registry is always broadcast, so every executor holds its subject ids (PHI) and
    # the driver ships all of them: a registry of 10 million subjects is some hundreds of megabytes per
    # executor. The broadcast keeps the rows' partitions as read, which keeps known values matched within
    # the batches the Arrow executor sees; a shuffled join above a size threshold would lift the memory
    # bound at the price of that equality.
    return frame.mapInArrow(keyed, keyed_schema).join(functions.broadcast(registry), on=_KEY, how="left")


def _count_consent(rows: DataFrame, admission: ConsentAdmission, subject: str, tally: Tally) -> None:
    """The consent counts of the run as one aggregation: rows per registry position, unmatched, blank."""
    counts = rows.groupBy(_POSITION, _BLANK).count().toArrow()
    position = counts.column(_POSITION)
    number = counts.column("count").to_numpy()
    matched = pc.is_valid(position).to_numpy(zero_copy_only=False)
    blank = counts.column(_BLANK).to_numpy(zero_copy_only=False) & ~matched
    excluded = admission.admit_joined(
        position.filter(pc.is_valid(position)).to_numpy(),
        number[matched],
        unmatched_rows=int(number[~matched & ~blank].sum()),
        blank_rows=int(number[blank].sum()),
    )
    tally.read = int(number.sum())
    tally.admission, tally.subject = admission, subject
    tally.admitted = admission.counts().rows_admitted
    tally.excluded.update({str(reason): count for reason, count in excluded.items() if count})


@dataclass(frozen=True)
class _FrozenCodes:
    """The surrogate codes of one namespace for the identifiers of this run, looked up in the workers;
    drawn on the driver beforehand, so that a code is drawn once whichever worker meets the person."""

    identifiers: pa.Array
    codes: pa.Array
    store: str

    def codes_for(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        identifiers = normalized_identifiers(values)
        positions = pc.index_in(identifiers, value_set=self.identifiers)
        if pc.any(pc.and_(pc.is_null(positions), pc.is_valid(identifiers))).as_py():
            raise SurrogateMappingError(
                [f"surrogate mapping {self.store}: an identifier met no code drawn for the run; run again"]
            )
        return pc.take(self.codes, positions)


def _surrogate_lookups(
    rows: DataFrame, plan: Plan, deidentified: Deidentified, tally: Tally, where: str
) -> dict[str, _FrozenCodes]:
    """Draw, on the driver, the codes of every distinct identifier the admitted rows hold, per namespace."""
    from pyspark.sql import functions
    from pyspark.sql.types import StringType, StructField, StructType

    columns = [column for column in plan.published if column.treatment is Treatment.SURROGATE]
    by_namespace: dict[str, list[str]] = {}
    for column in columns:
        by_namespace.setdefault(plan.policy.columns[column.source].namespace or "", []).append(column.source)
    lookups: dict[str, _FrozenCodes] = {}
    schema = StructType([StructField("identifier", StringType())])
    for namespace, sources in sorted(by_namespace.items()):
        admitted = rows.filter(functions.col(_ADMITTED))
        parts = []
        for source in sources:
            source_type = plan.schema.field(source).type

            def normalized(batches: Iterator[pa.RecordBatch], source=source, source_type=source_type):
                for batch in batches:
                    with _value_free_errors(where):
                        values = normalized_identifiers(batch.column(0).cast(source_type))
                        yield pa.RecordBatch.from_arrays([values], names=["identifier"])

            parts.append(admitted.select(functions.col(_quoted(source))).mapInArrow(normalized, schema))
        union = parts[0]
        for part in parts[1:]:
            union = union.unionAll(part)
        distinct = (
            union.where(functions.col("identifier").isNotNull()).distinct().toArrow().column("identifier")
        )
        identifiers = distinct.combine_chunks().cast(pa.string())
        codes = deidentified.codes[namespace]
        try:
            drawn = codes.codes_for(identifiers)
        except SurrogateMappingError as error:
            tally.failures.extend(Refusal(SurrogateMappingError, reason) for reason in error.refusals)
            return {}
        lookups[namespace] = _FrozenCodes(identifiers, drawn, codes.store.describe())
    return lookups


def _source_batch(batch: pa.RecordBatch, plan: Plan) -> pa.RecordBatch:
    """A batch as Spark hands it, back in the source's Arrow types, which the treatments were made for."""
    names = plan.read_columns
    return pa.RecordBatch.from_arrays(
        [batch.column(name).cast(plan.schema.field(name).type) for name in names],
        schema=pa.schema([plan.schema.field(name) for name in names]),
    )


def _checked_batch(
    spark_batch: pa.RecordBatch, plan: Plan, schema: pa.Schema, treat: dict[str, ColumnTreatment]
) -> tuple[int, pa.RecordBatch | None, list[tuple[str, str, str, int]]]:
    """The value scan and the treatments' checks of one batch as Spark hands it, as the Arrow executor
    makes them: known values taken from every row of the batch, the admitted rows scanned and treated.

    :returns: the admitted rows' count, their governed batch (None when anything was found), and the
        counts of what was found: identifiers in kept text, values a treatment could not read, surrogate
        failures (counts, column names and rule texts only).
    """
    batch = _source_batch(spark_batch, plan)
    part = Tally()
    known = KnownValues.from_batch(batch, plan.known_value_columns) if plan.known_value_columns else None
    batch = batch.filter(pc.fill_null(spark_batch.column(_ADMITTED), False))
    for column in plan.kept_text:
        scan_column(column, batch.column(column.source), plan.text_detectors, known, part)
    arrays, failures = [], []
    for column in plan.published:
        try:
            arrays.append(treat[column.source](batch.column(column.source), batch))
        except InvalidValuesError as error:
            part.invalid[column.source] = error
        except SurrogateMappingError as error:
            failures.extend(error.refusals)
    counts = [
        ("finding", source_column, identifier.value, count)
        for (source_column, identifier), count in part.findings.items()
    ]
    counts += [("invalid", column, error.expected, error.count) for column, error in part.invalid.items()]
    counts += [("failure", "", reason, 1) for reason in failures]
    governed = None if counts else pa.RecordBatch.from_arrays(arrays, schema=schema)
    return batch.num_rows, governed, counts


def _add_counts(tally: Tally, counts: Sequence[tuple[str, str, str, int]]) -> None:
    """Add what the workers found (summed per kind, column and detail) to the run's counts."""
    for kind, column, detail, count in counts:
        if kind == "finding":
            tally.findings[(column, SafeHarborIdentifier(detail))] += count
        elif kind == "invalid":
            previous = tally.invalid.get(column)
            total = count + (previous.count if previous else 0)
            tally.invalid[column] = InvalidValuesError(total, detail)
        elif Refusal(SurrogateMappingError, detail) not in tally.failures:
            tally.failures.append(Refusal(SurrogateMappingError, detail))


def _scan_counts(
    rows: DataFrame,
    plan: Plan,
    as_of: date,
    keys: Keys,
    codes: dict[str, _FrozenCodes],
    tally: Tally,
    where: str,
) -> None:
    """The value scan and the treatments' checks in the workers, returning counts only: identifiers found
    in kept text (known values taken from every row of a batch, as in the Arrow executor), and values a
    treatment could not read."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    output = output_schema(plan)
    schema = StructType(
        [
            StructField("kind", StringType()),
            StructField("column", StringType()),
            StructField("detail", StringType()),
            StructField("count", LongType()),
        ]
    )

    def scan(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        treat = column_treatments(plan, as_of, keys, codes)  # type: ignore[arg-type]
        for spark_batch in batches:
            with _value_free_errors(where):
                _, _, counts = _checked_batch(spark_batch, plan, output, treat)
                yield pa.RecordBatch.from_pylist(
                    [dict(zip(_COUNTS_SCHEMA.names, row, strict=True)) for row in counts],
                    schema=_COUNTS_SCHEMA,
                )

    found = rows.mapInArrow(scan, schema).groupBy("kind", "column", "detail").sum("count").collect()
    _add_counts(tally, [tuple(row) for row in found])


def _risk_column_failures(plan: Plan, thresholds: RiskThresholds) -> list[Refusal]:
    """The risk measure's refusal of a declared column of a type it cannot compare exactly, as the Arrow
    executor meets it when the first batch is measured (the plan refuses undeclared ones already)."""
    try:
        RiskAccumulator(thresholds).add(output_schema(plan).empty_table())
    except ReidentificationRiskError as error:
        return [Refusal(ReidentificationRiskError, reason) for reason in error.refusals]
    return []


def _class_key_type(data_type: pa.DataType) -> pa.DataType:
    """The Arrow type an output value is compared as in Spark: one whose equality in Spark is the equality
    of Arrow's hashing (deid/risk.py), which compares the value's bits.

    Spark's grouping makes ``-0.0`` equal to ``0.0`` and every NaN equal, and it has no unsigned or
    nanosecond types; so floating point values are compared as their bit patterns, temporal values as
    their integer counts, and decimals as their text (one scale per column, so the text is exact).
    """
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    if pa.types.is_boolean(data_type):
        return pa.bool_()
    if is_text(data_type):
        return pa.string()
    if (
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_binary_view(data_type)
        or pa.types.is_fixed_size_binary(data_type)
    ):
        return pa.binary()
    if (
        pa.types.is_null(data_type)
        or pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or (pa.types.is_temporal(data_type) and data_type.bit_width in (32, 64))
    ):
        return pa.int64()
    return pa.string()


def _class_key(values: pa.Array) -> pa.Array:
    """``values`` as :func:`_class_key_type` compares them; a missing value stays missing."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary.take(values.indices)
    data_type = values.type
    target = _class_key_type(data_type)
    if pa.types.is_null(data_type):
        return pa.nulls(len(values), pa.int64())
    if pa.types.is_float16(data_type):
        # as risk.py hashes it: a half float is a float, exactly
        values, data_type = values.cast(pa.float32()), pa.float32()
    if target == pa.int64() and not pa.types.is_integer(data_type):
        bits = pa.int32() if data_type.bit_width == 32 else pa.int64()
        return values.view(bits).cast(pa.int64())
    if pa.types.is_uint64(data_type):
        return values.view(pa.int64())
    return values.cast(target)


def _class_columns(plan: Plan, thresholds: RiskThresholds) -> tuple[list[ColumnPlan], list[ColumnPlan]]:
    """The published columns of the quasi-identifiers and of the sensitive columns, in declared order."""
    by_output = {column.output: column for column in plan.published}
    return (
        [by_output[name] for name in thresholds.quasi_identifiers],
        [by_output[name] for name in thresholds.sensitive],
    )


def _with_class_keys(
    frame: DataFrame,
    plan: Plan,
    thresholds: RiskThresholds,
    as_of: date,
    keys: Keys,
    codes: dict[str, _FrozenCodes],
    where: str,
    *,
    keep_rows: bool,
) -> DataFrame:
    """The treated quasi-identifier (and sensitive) values of each row as Spark compares them exactly
    (:func:`_class_key`), computed in the workers by the Arrow executor's treatments; with ``keep_rows``,
    after the row's own columns, else alone and without the sensitive values."""
    from pyspark.sql.types import BinaryType, BooleanType, LongType, StringType, StructField, StructType

    spark_types = {pa.int64(): LongType(), pa.string(): StringType(), pa.binary(): BinaryType()}
    spark_types[pa.bool_()] = BooleanType()
    quasi_identifiers, sensitive = _class_columns(plan, thresholds)
    measured = [*quasi_identifiers] if keep_rows else [*quasi_identifiers, *sensitive]
    names = [_quasi_key(i) for i in range(len(quasi_identifiers))]
    if not keep_rows:
        names += [_sensitive_key(j) for j in range(len(sensitive))]
    output = output_schema(plan)
    fields = [
        StructField(name, spark_types[_class_key_type(output.field(column.output).type)])
        for name, column in zip(names, measured, strict=True)
    ]
    schema = StructType([*frame.schema.fields, *fields] if keep_rows else fields)

    def class_keys(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        treat = column_treatments(plan, as_of, keys, codes)  # type: ignore[arg-type]
        for spark_batch in batches:
            with _value_free_errors(where):
                batch = _source_batch(spark_batch, plan)
                arrays = [
                    _class_key(treat[column.source](batch.column(column.source), batch))
                    for column in measured
                ]
                if keep_rows:
                    arrays, all_names = [*spark_batch.columns, *arrays], [*spark_batch.schema.names, *names]
                else:
                    all_names = names
                yield pa.RecordBatch.from_arrays(arrays, names=all_names)

    return frame.mapInArrow(class_keys, schema)


def _classes(
    admitted: DataFrame,
    plan: Plan,
    thresholds: RiskThresholds,
    as_of: date,
    keys: Keys,
    codes: dict[str, _FrozenCodes],
    where: str,
) -> DataFrame:
    """The equivalence classes of the published rows, one row each: the quasi-identifier keys, the class
    size and, per sensitive column, its count of distinct values in the class.

    Spark's grouping puts missing values together, so a missing quasi-identifier is a value of its own, and
    its distinct count skips missing values, so a missing sensitive value adds no diversity: the rule of
    :data:`~airflow_phi_guard.deid.risk.MISSING_VALUES_RULE`.
    """
    from pyspark.sql import functions

    keyed = _with_class_keys(admitted, plan, thresholds, as_of, keys, codes, where, keep_rows=False)
    quasi = [_quasi_key(i) for i in range(len(thresholds.quasi_identifiers))]
    aggregations = [functions.count(functions.lit(1)).alias(_SIZE)]
    aggregations += [
        functions.count_distinct(functions.col(_sensitive_key(j))).alias(_distinct_key(j))
        for j in range(len(thresholds.sensitive))
    ]
    return keyed.groupBy(*quasi).agg(*aggregations)


def _measure(classes: DataFrame, thresholds: RiskThresholds) -> ReidentificationRisk:
    """The risk of the published rows, from one aggregation over the classes, with the fields and the rules
    of :meth:`~airflow_phi_guard.deid.risk.RiskAccumulator.measure`."""
    from functools import reduce

    from pyspark.sql import functions

    size = functions.col(_SIZE)
    small = size < thresholds.k_min
    kept = ~small if thresholds.below_k is BelowK.SUPPRESS else functions.lit(True)
    missing = reduce(
        lambda left, right: left | right,
        [functions.col(_quasi_key(i)).isNull() for i in range(len(thresholds.quasi_identifiers))],
    )

    def total(condition: Any, value: Any = 1) -> Any:
        return functions.sum(functions.when(condition, value).otherwise(0))

    aggregations = [
        total(small).alias("classes_below_k"),
        total(small, size).alias("rows_below_k"),
        total(kept).alias("classes"),
        total(kept, size).alias("rows"),
        functions.min(functions.when(kept, size)).alias("k"),
        total(kept & (size == 1)).alias("singletons"),
        total(kept & missing, size).alias("missing"),
    ]
    distinct = [functions.col(_distinct_key(j)) for j in range(len(thresholds.sensitive))]
    if distinct:
        least = functions.least(*distinct) if len(distinct) > 1 else distinct[0]
        aggregations.append(functions.min(functions.when(kept, least)).alias("l"))
        aggregations.append(total(kept & (least < thresholds.l_min)).alias("classes_below_l"))
    [row] = classes.agg(*aggregations).collect()
    counts = row.asDict()
    rows = counts["rows"] or 0
    classes_below_k = counts["classes_below_k"] or 0
    suppress = thresholds.below_k is BelowK.SUPPRESS and classes_below_k
    return ReidentificationRisk(
        quasi_identifiers=tuple(thresholds.quasi_identifiers),
        sensitive=tuple(thresholds.sensitive),
        k_min=thresholds.k_min,
        l_min=thresholds.l_min,
        below_k=thresholds.below_k,
        rows=rows,
        k=counts["k"],
        classes=counts["classes"] or 0,
        classes_below_k=classes_below_k,
        unique_share=(counts["singletons"] or 0) / rows if rows else 0.0,
        l=counts.get("l"),
        classes_below_l=counts.get("classes_below_l") or 0,
        suppressed_rows=(counts["rows_below_k"] or 0) if suppress else 0,
        rows_with_missing_quasi_identifier=counts["missing"] or 0,
    )


def _without_small_classes(
    admitted: DataFrame,
    classes: DataFrame,
    plan: Plan,
    thresholds: RiskThresholds,
    as_of: date,
    keys: Keys,
    codes: dict[str, _FrozenCodes],
    where: str,
) -> DataFrame:
    """``below_k: suppress`` in Spark: the admitted rows joined with the classes smaller than k_min on
    their quasi-identifier keys (a missing value matching a missing one), and only the unmatched kept."""
    from functools import reduce

    from pyspark.sql import functions

    quasi = [_quasi_key(i) for i in range(len(thresholds.quasi_identifiers))]
    keyed = _with_class_keys(admitted, plan, thresholds, as_of, keys, codes, where, keep_rows=True)
    small = classes.where(functions.col(_SIZE) < thresholds.k_min).select(
        *[functions.col(name).alias(f"{name}_small") for name in quasi]
    )
    matches = reduce(
        lambda left, right: left & right,
        [keyed[name].eqNullSafe(small[f"{name}_small"]) for name in quasi],
    )
    return keyed.join(small, on=matches, how="left_anti").drop(*quasi)


def _small_folders(
    published: DataFrame,
    plan: Plan,
    partition_by: tuple[str, ...],
    k_min: int,
    as_of: date,
    keys: Keys,
    codes: dict[str, _FrozenCodes],
    where: str,
) -> str | None:
    """Why the partition folders of the rows to be written may not be published (folders of fewer than
    ``k_min`` distinct subjects), or None: the treated partition values of each admitted row, computed in
    the workers, grouped by Spark with a distinct count of the subject column, and counted in one more
    aggregation, so that only two counts reach the driver.

    :param published: the rows the write pass will write, after any suppression (admitted or not).
    """
    from pyspark.sql import functions
    from pyspark.sql.types import BinaryType, BooleanType, LongType, StringType, StructField, StructType

    spark_types = {pa.int64(): LongType(), pa.string(): StringType(), pa.binary(): BinaryType()}
    spark_types[pa.bool_()] = BooleanType()
    by_output = {column.output: column for column in plan.published}
    columns = [by_output[name] for name in partition_by]
    names = [_folder_key(i) for i in range(len(columns))]
    output = output_schema(plan)
    subject = plan.policy.subject
    admitted = published.filter(functions.col(_ADMITTED))
    schema = StructType(
        [
            *(
                StructField(name, spark_types[_class_key_type(output.field(column.output).type)])
                for name, column in zip(names, columns, strict=True)
            ),
            admitted.schema[subject],
        ]
    )

    def folder_keys(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        treat = column_treatments(plan, as_of, keys, codes)  # type: ignore[arg-type]
        for spark_batch in batches:
            with _value_free_errors(where):
                batch = _source_batch(spark_batch, plan)
                arrays = [
                    _class_key(treat[column.source](batch.column(column.source), batch)) for column in columns
                ]
                yield pa.RecordBatch.from_arrays(
                    [*arrays, spark_batch.column(subject)], names=[*names, subject]
                )

    people = functions.count_distinct(functions.col(_quoted(subject))).alias(_SIZE)
    folders = admitted.mapInArrow(folder_keys, schema).groupBy(*names).agg(people)
    [row] = folders.agg(
        functions.sum(functions.when(functions.col(_SIZE) < k_min, 1).otherwise(0)).alias("small"),
        functions.count(functions.lit(1)).alias("folders"),
    ).collect()
    return small_folders_problem(row["small"] or 0, row["folders"] or 0, k_min)


@dataclass(frozen=True)
class _Written:
    """What the write pass returned: rows read, admitted and written, what its checks found in the rows it
    wrote (summed), and the files of the returned task attempts, relative to the folder."""

    read: int
    admitted: int
    rows: int
    counts: list[tuple[str, str, str, int]]
    files: frozenset[str]


def _write_parts(
    rows: DataFrame,
    plan: Plan,
    as_of: date,
    keys: Keys,
    codes: dict[str, _FrozenCodes],
    folder: Path,
    partition_by: tuple[str, ...],
    where: str,
) -> _Written:
    """Scan, check, treat and write the admitted rows in the workers into ``folder`` as Parquet parts of the
    output's exact Arrow schema (hive-partitioned by ``partition_by``, as the Arrow executor lays them
    out), with the schema file that marks a governed set.

    The pass runs the value scan and every treatment's check itself, over exactly the rows it writes, and
    returns what it found with its counts: the earlier scan pass read the source apart, so only these
    checks vouch for the rows written. A task that found anything writes no further batch.

    Each task attempt names its files apart; only the files of the attempts whose results Spark returned
    are kept, so a failed or repeated attempt leaves nothing behind. The workers must see ``folder`` where
    the driver does (local mode, or a file system shared by the cluster).
    """
    from pyspark import TaskContext
    from pyspark.sql.types import ArrayType, LongType, StringType, StructField, StructType

    schema = output_schema(plan)
    location = str(folder)
    partitioning = (
        pa_dataset.partitioning(pa.schema([schema.field(name) for name in partition_by]), flavor="hive")
        if partition_by
        else None
    )

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        context = TaskContext.get()
        partition = context.partitionId() if context else 0
        attempt = context.attemptNumber() if context else 0
        treat = column_treatments(plan, as_of, keys, codes)  # type: ignore[arg-type]
        files: list[str] = []
        found: Counter[tuple[str, str, str]] = Counter()
        read = admitted = written = 0

        def governed() -> Iterator[pa.RecordBatch]:
            nonlocal read, admitted, written
            for spark_batch in batches:
                rows_admitted, batch, counts = _checked_batch(spark_batch, plan, schema, treat)
                read += spark_batch.num_rows
                admitted += rows_admitted
                for kind, column, detail, count in counts:
                    found[(kind, column, detail)] += count
                # once anything was found the run is refused: scanning goes on for the counts, writing not
                if found or batch is None or batch.num_rows == 0:
                    continue
                written += batch.num_rows
                yield batch

        with _value_free_errors(where):
            if partitioning is None:
                path = os.path.join(location, f"part-{partition:05d}-{attempt}.parquet")
                writer = None
                try:
                    for batch in governed():
                        if writer is None:
                            writer = pq.ParquetWriter(path, schema)
                            files.append(os.path.basename(path))
                        writer.write_batch(batch)
                finally:
                    if writer is not None:
                        writer.close()
            else:
                pa_dataset.write_dataset(
                    governed(),
                    location,
                    schema=schema,
                    format="parquet",
                    partitioning=partitioning,
                    basename_template=f"part-{partition:05d}-{attempt}-{{i}}.parquet",
                    # the partition folders are shared by the tasks; each task's files are its own
                    existing_data_behavior="overwrite_or_ignore",
                    file_visitor=lambda file: files.append(os.path.relpath(file.path, location)),
                )
        counts = [
            {"kind": kind, "column": column, "detail": detail, "count": count}
            for (kind, column, detail), count in found.items()
        ]
        yield pa.RecordBatch.from_pylist(
            [
                {
                    "partition": partition,
                    "read": read,
                    "admitted": admitted,
                    "rows": written,
                    "counts": counts,
                    "files": files,
                }
            ],
            schema=_WRITTEN_SCHEMA,
        )

    count_type = StructType(
        [
            StructField("kind", StringType()),
            StructField("column", StringType()),
            StructField("detail", StringType()),
            StructField("count", LongType()),
        ]
    )
    result_schema = StructType(
        [
            StructField("partition", LongType()),
            StructField("read", LongType()),
            StructField("admitted", LongType()),
            StructField("rows", LongType()),
            StructField("counts", ArrayType(count_type)),
            StructField("files", ArrayType(StringType())),
        ]
    )
    folder.mkdir()
    # Known shortcoming: the workers write to the path the driver names, so a cluster needs a file system
    # that every node mounts at that path; an fsspec or pyarrow file system for object stores would lift it.
    results = rows.mapInArrow(write, result_schema).toArrow()
    kept = {name for names in results.column("files").to_pylist() for name in names}
    _remove_other_files(folder, kept)
    if not partition_by and not kept:
        # no row to publish: one empty part still carries the schema, as the Arrow executor's empty file
        pq.write_table(schema.empty_table(), folder / "part-00000.parquet")
        kept.add("part-00000.parquet")
    pq.write_metadata(schema, folder / PARTITION_SCHEMA_FILE)
    found: Counter[tuple[str, str, str]] = Counter()
    for task_counts in results.column("counts").to_pylist():
        for item in task_counts:
            found[(item["kind"], item["column"], item["detail"])] += item["count"]

    def total(name: str) -> int:
        return int(pc.sum(results.column(name)).as_py() or 0)

    return _Written(
        read=total("read"),
        admitted=total("admitted"),
        rows=total("rows"),
        counts=[(kind, column, detail, count) for (kind, column, detail), count in sorted(found.items())],
        files=frozenset({*kept, PARTITION_SCHEMA_FILE}),
    )


def _check_parts(folder: Path, files: frozenset[str], source: Path) -> None:
    """Fail unless ``folder`` holds exactly the files of the returned task attempts (and the schema file):
    a task attempt still running after its job, such as a speculative copy, could have added one.

    :raises DataProcessingError: another file is in the folder (retryable).
    """
    found = {
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    }
    if found != files:
        raise DataProcessingError(str(source), "UnexpectedTaskFiles", retryable=True)


def _remove_other_files(folder: Path, kept: set[str]) -> None:
    """Remove the files under ``folder`` that no returned task attempt wrote, and folders left empty; an
    error names ``folder`` only, since partition folders are named by values."""
    try:
        for root, folders, names in os.walk(folder, topdown=False):
            for name in names:
                path = os.path.join(root, name)
                if os.path.relpath(path, folder) not in kept:
                    os.unlink(path)
            for name in folders:
                path = os.path.join(root, name)
                if not os.listdir(path):
                    os.rmdir(path)
    except OSError as error:
        raise OSError(error.errno, "could not remove a part of a failed task attempt", str(folder)) from None


@contextmanager
def _value_free_errors(source: str) -> Iterator[None]:
    """Turn any error of a worker into a :class:`~airflow_phi_guard.exceptions.DataProcessingError` that
    names ``source`` and the error class only, retryable for an I/O error alone: Spark logs a failed task's
    traceback, and pyarrow's messages can quote the value that failed to convert. The package's own errors
    with value-free messages (unreadable values, surrogate failures) go on as they are.

    :param source: the source dataset the run reads, which the error names.
    """
    try:
        yield
    except (InvalidValuesError, SurrogateMappingError, DataProcessingError):
        raise
    except Exception as error:
        retryable = isinstance(error, OSError)
        raise DataProcessingError(source, type(error).__name__, retryable=retryable) from None


def _quasi_key(i: int) -> str:
    return f"__phi_guard_quasi_{i}"


def _folder_key(i: int) -> str:
    return f"__phi_guard_folder_{i}"


def _sensitive_key(j: int) -> str:
    return f"__phi_guard_sensitive_{j}"


def _distinct_key(j: int) -> str:
    return f"__phi_guard_distinct_{j}"
