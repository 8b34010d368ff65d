"""Emission of a governance run's OpenLineage events to an event log, through the client's file transport.

The events go through the official openlineage-python client with its ``FileTransport`` in append mode:
one JSON object per line, START first, then COMPLETE or FAIL. Lineage is best effort: a failure to build
or write an event is logged as a WARNING naming the exception class (the traceback at DEBUG) and never
reaches the caller, so a run that published its dataset is not failed by its bookkeeping.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import job_type_job
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.noop import NoopTransport
from openlineage.client.uuid import generate_new_uuid

from airflow_phi_guard.lineage.build import RunLineage
from airflow_phi_guard.lineage.facets import PRODUCER

log = logging.getLogger(__name__)

#: The job namespace of runs outside Airflow (the CLI), where no scheduler names one.
DEFAULT_JOB_NAMESPACE = "phi-guard"

#: How this package's own jobs describe themselves in the standard ``jobType`` facet.
INTEGRATION = "PHI_GUARD"


def new_run_id() -> str:
    """A fresh run id: a time-ordered UUIDv7, as the OpenLineage spec recommends."""
    return str(generate_new_uuid())


def emit_event(
    event_type: RunState | str,
    lineage: RunLineage,
    *,
    events_path: str | os.PathLike[str],
    job_namespace: str,
    job_name: str,
    run_id: str,
    event_time: datetime | None = None,
) -> bool:
    """Append one RunEvent to the event log; never raises.

    :param event_type: ``START``, ``COMPLETE``, ``FAIL`` (or another OpenLineage run state).
    :param lineage: the inputs, outputs and facets of the event.
    :param events_path: the JSON-lines event log; created with its folder if missing.
    :param job_namespace: the job's namespace, e.g. :data:`DEFAULT_JOB_NAMESPACE`.
    :param job_name: the job's name, unique in its namespace.
    :param run_id: the run's UUID, the same for every event of one run.
    :param event_time: when the transition happened; now, by default.
    :returns: whether the event was written.
    """
    try:
        state = RunState(event_type)
        event = _run_event(state, lineage, job_namespace, job_name, run_id, event_time or datetime.now(UTC))
        target = Path(events_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        client = OpenLineageClient(
            transport=FileTransport(FileConfig(log_file_path=str(target), append=True))
        )
        if isinstance(client.transport, NoopTransport):
            # OPENLINEAGE_DISABLED wins over an explicit transport in the client; say so, since the
            # caller asked for an event log and will not find one.
            log.warning(
                "OpenLineage is disabled (OPENLINEAGE_DISABLED); no %s event written to %s",
                state.value,
                target,
            )
            return False
        try:
            client.emit(event)
        finally:
            client.close()
    except Exception as error:
        log.warning(
            "OpenLineage %s event of job %s run %s was not written to %s (%s)",
            event_type,
            job_name,
            run_id,
            events_path,
            type(error).__name__,
        )
        log.debug("OpenLineage emission failure", exc_info=True)
        return False
    log.info("OpenLineage %s event of job %s run %s appended to %s", state.value, job_name, run_id, target)
    return True


def emit_built(
    event_type: RunState | str,
    build: Callable[[], RunLineage],
    *,
    events_path: str | os.PathLike[str],
    job_namespace: str,
    job_name: str,
    run_id: str,
) -> bool:
    """:func:`emit_event` of the lineage ``build`` returns; a build that fails is logged as a WARNING
    naming the exception class (the traceback at DEBUG), like a failed write, and never raises.

    :returns: whether the event was written.
    """
    try:
        lineage = build()
    except Exception as error:
        log.warning("could not build the OpenLineage %s event: %s", event_type, type(error).__name__)
        log.debug("lineage failure details", exc_info=True)
        return False
    return emit_event(
        event_type,
        lineage,
        events_path=events_path,
        job_namespace=job_namespace,
        job_name=job_name,
        run_id=run_id,
    )


def emit_run(
    start: RunLineage,
    end: RunLineage,
    *,
    events_path: str | os.PathLike[str],
    job_namespace: str,
    job_name: str,
    succeeded: bool,
    run_id: str | None = None,
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
) -> str:
    """Append a run's START and then its COMPLETE (or FAIL) event, for a run whose outcome is known.

    :param start: the lineage of the START event.
    :param end: the lineage of the closing event.
    :param events_path: the JSON-lines event log.
    :param job_namespace: the job's namespace.
    :param job_name: the job's name.
    :param succeeded: COMPLETE when true, FAIL otherwise.
    :param run_id: the run's UUID; a new one by default.
    :param started_at: the START event's time; now, by default.
    :param ended_at: the closing event's time; now, by default.
    :returns: the run id, for the caller's log and report.
    """
    run_id = run_id or new_run_id()
    where = {
        "events_path": events_path,
        "job_namespace": job_namespace,
        "job_name": job_name,
        "run_id": run_id,
    }
    emit_event(RunState.START, start, event_time=started_at, **where)
    emit_event(RunState.COMPLETE if succeeded else RunState.FAIL, end, event_time=ended_at, **where)
    return run_id


def _run_event(
    state: RunState, lineage: RunLineage, job_namespace: str, job_name: str, run_id: str, event_time: datetime
) -> RunEvent:
    job_facets = dict(lineage.job_facets)
    job_facets.setdefault(
        "jobType",
        job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration=INTEGRATION, jobType="JOB", producer=PRODUCER
        ),
    )
    return RunEvent(
        eventType=state,
        eventTime=event_time.isoformat(),
        run=Run(runId=run_id, facets=dict(lineage.run_facets)),
        job=Job(namespace=job_namespace, name=job_name, facets=job_facets),
        inputs=list(lineage.inputs),
        outputs=list(lineage.outputs),
        producer=PRODUCER,
    )
