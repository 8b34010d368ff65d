"""The audit: which PHI columns, in which treatment, reached a model, read back from OpenLineage events.

The answer is built from an event log (JSON lines, as the client's file transport and the Airflow
provider write it) by these rules:

- A **governance run** is an event carrying the ``phiGuard_policy`` run facet. Only a COMPLETE event whose
  verdict is ``published`` counts: its governed dataset reaches the model its policy names, even before
  a training task has read it. A refused run, or a FAIL, reaches nothing.
- **Reached** is the union, over those runs, of the published columns of their ``phiGuard_columns``
  facet; **stopped** the source columns those runs dropped, less any column reached in some run.
- **Runs** lists the governance runs, and every other COMPLETE event that read a governed dataset (by
  namespace and name among its inputs) and wrote something from it (an output dataset: the model of a
  training task in Airflow, say). A run that only read the set, such as its validation, made nothing
  that could carry the data on, and is not listed. Such a consumer run takes its policy
  digest, consent bases and admitted rows from the governance run that produced what it read: the latest
  published run with that output at or before the consumer's event time, or the latest one at all when
  clocks disagree.

Events from other producers (Airflow's DAG and task events with their own facets) are read for their
inputs only; anything the audit does not need is ignored, and nothing in an event can make it crash.

Three questions are answered from the same reading of the events:

- :func:`audit_model`: what reached one model, with per run the consent bases and counts (rows read,
  admitted, excluded per reason, and admitted rows and subjects per basis when the ``phiGuard_consent``
  facet carries them), the de-identification method, the re-identification risk figures and the Safe
  Harbor verdict of the ``phiGuard_deidentification`` facet when an event carries it, and the policy digest;
- :func:`audit_column`: every model one source column reached, in which treatment, through which runs;
- :func:`audit_window`: everything that reached any model in a window of COMPLETE event times. A consumer
  run completed in the window counts with the governance run it read from, even if that one completed
  earlier: the data reached the model again when it was trained on.

The events come from an :class:`EventSource`: an event log (:class:`EventLogSource`) or the PostgreSQL
archive (:class:`airflow_phi_guard.lineage.archive.LineageArchive`), which both answer
``events_for(query)`` with the events the query needs. A log is read whole; the archive selects by model,
dataset names and time through its indexes, so the answer's cost follows the events it needs, not the
archive's size.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field

from airflow_phi_guard.exceptions import PhiGuardError
from airflow_phi_guard.lineage.datasets import dataset_identity, dataset_uri
from airflow_phi_guard.lineage.facets import (
    COLUMNS_FACET,
    CONSENT_FACET,
    DEIDENTIFICATION_FACET,
    POLICY_FACET,
)
from airflow_phi_guard.lineage.fields import count_map_of as _count_map
from airflow_phi_guard.lineage.fields import count_of as _count
from airflow_phi_guard.lineage.fields import field_at as _get
from airflow_phi_guard.lineage.fields import list_of as _list
from airflow_phi_guard.lineage.fields import text_of as _text
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier

_EARLIEST = datetime.min.replace(tzinfo=UTC)


#: A run facet that an outside re-identification risk computation may add; read when the
#: ``phiGuard_deidentification`` facet has no ``risk``. A ``risk`` object in the ``phiGuard_policy`` facet
#: is read the same way.
RISK_FACET = "phiGuard_risk"


class EventLogError(PhiGuardError, ValueError):
    """An event log that cannot be read: missing, unreadable, or a line that is not a JSON object.

    :param path: the event log.
    :param line: the 1-based line at fault, or None for the whole file.
    :param problem: what is wrong; never the line's content.
    """

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        super().__init__(f"{path}:{line}: {problem}" if line is not None else f"{path}: {problem}")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AuditedModel(_Record):
    """The model the audit answers for."""

    name: str = Field(description="Model name, as policies name it.")
    version: str | None = Field(description="Model version; None when the audit spans several versions.")


class ReachedColumn(_Record):
    """A source column whose values, in some treatment, reached the model."""

    dataset: str = Field(description="The source dataset, as a URI.")
    column: str = Field(description="The source column.")
    identifier: str | None = Field(description="Its Safe Harbor letter, A to R, or None.")
    treatment: str = Field(description="The treatment applied on the way into the governed dataset.")
    output_column: str = Field(description="The column of the governed dataset that holds it.")


class StoppedColumn(_Record):
    """A source column that no published run let through to the model."""

    dataset: str = Field(description="The source dataset, as a URI.")
    column: str = Field(description="The source column.")
    identifier: str | None = Field(description="Its Safe Harbor letter, A to R, or None.")


#: A figure of a risk object as an event gives it: only scalars are kept (nested values are not figures).
RiskFigure = int | float | str | bool | None


class AuditRun(_Record):
    """A run through which data reached the model: a governance run, or a run that read its output.

    A consumer run carries the policy, consent and de-identification figures of the governance run whose
    output it read (``read_from``).
    """

    run_id: str = Field(description="The OpenLineage run id.")
    event_time: str = Field(description="The time of the run's COMPLETE event, as the event gives it.")
    policy_digest: str | None = Field(description="Digest of the policy that governed the data.")
    consent_bases: list[str] = Field(description="The consent bases that policy accepts.")
    rows_admitted: int | None = Field(description="Rows admitted by consent into the governed dataset.")
    job: str = Field(default="", description="namespace/name of the run's job.")
    role: Literal["governance", "consumer"] = Field(
        default="governance", description="Whether the run governed the data or read it."
    )
    read_from: str | None = Field(
        default=None, description="For a consumer: the governance run whose output it read."
    )
    policy_name: str | None = Field(default=None, description="The policy's id.")
    policy_version: int | None = Field(default=None, description="The policy's version.")
    deidentification_method: str | None = Field(
        default=None, description="safe-harbor, expert-determination or limited-data-set."
    )
    consent_as_of: str | None = Field(default=None, description="The date consent was judged at.")
    rows_read: int | None = Field(default=None, description="Rows read from the source dataset.")
    rows_excluded: dict[str, int] = Field(
        default_factory=dict, description="Rows not admitted, per exclusion reason."
    )
    admitted_rows_by_basis: dict[str, int] | None = Field(
        default=None, description="Admitted rows per consent basis; None when the event does not say."
    )
    admitted_subjects_by_basis: dict[str, int] | None = Field(
        default=None, description="Admitted subjects per consent basis; None when the event does not say."
    )
    risk: dict[str, RiskFigure] | None = Field(
        default=None, description="Re-identification risk figures (k, l...); None when the event has none."
    )
    safe_harbor_status: str | None = Field(
        default=None,
        description="The Safe Harbor verdict: met, awaiting-attestation or not-met; None when not recorded.",
    )
    safe_harbor_breaches: int | None = Field(
        default=None, description="How many columns and letters break Safe Harbor; None when not recorded."
    )


class ModelAudit(_Record):
    """What PHI reached one model, through which runs: the Audit JSON of the ``phi-guard audit`` command."""

    model: AuditedModel
    reached: list[ReachedColumn] = Field(default_factory=list)
    stopped: list[StoppedColumn] = Field(default_factory=list)
    runs: list[AuditRun] = Field(default_factory=list)
    policy_digests: list[str] = Field(
        default_factory=list, description="The digests of the policies of the runs, in order of first use."
    )
    refused_runs: list[str] = Field(
        default_factory=list, exclude=True, description="Run ids of refused governance runs (text only)."
    )
    known: bool = Field(
        default=False, exclude=True, description="Whether any governance run names the model."
    )


class ColumnReach(_Record):
    """One model a source column reached, in one treatment, and the runs through which it did."""

    model: AuditedModel
    treatment: str = Field(description="The treatment applied on the way into the governed dataset.")
    output_column: str = Field(description="The column of the governed dataset that holds it.")
    runs: list[AuditRun] = Field(default_factory=list)


class ColumnAudit(_Record):
    """Every model one source column reached, and the models whose runs stopped it."""

    dataset: str = Field(description="The source dataset as asked for, as a URI when it was found.")
    column: str = Field(description="The source column.")
    identifier: str | None = Field(description="Its Safe Harbor letter, as the runs recorded it, or None.")
    reached: list[ColumnReach] = Field(default_factory=list)
    stopped: list[AuditedModel] = Field(
        default_factory=list, description="Models whose published runs read the column and dropped it."
    )


class WindowAudit(_Record):
    """Everything that reached any model between two instants, per model."""

    since: str | None = Field(description="Start of the window (inclusive), ISO 8601; None for unbounded.")
    until: str | None = Field(description="End of the window (exclusive), ISO 8601; None for unbounded.")
    models: list[ModelAudit] = Field(default_factory=list)


# The questions an event source is asked, so that it can select the events each one needs.


@dataclass(frozen=True)
class ModelQuery:
    """What reached one model (every version when ``version`` is None)."""

    name: str
    version: str | None = None


@dataclass(frozen=True)
class AllModelsQuery:
    """What reached every model a governance run names."""


@dataclass(frozen=True)
class ColumnQuery:
    """Which models one source column reached; ``dataset`` as a URI, a path, or ``namespace/name``."""

    dataset: str
    column: str


@dataclass(frozen=True)
class WindowQuery:
    """What reached any model with a COMPLETE event time in ``[since, until)``; a bound may be None."""

    since: datetime | None = None
    until: datetime | None = None


AuditQuery = ModelQuery | AllModelsQuery | ColumnQuery | WindowQuery


@runtime_checkable
class EventSource(Protocol):
    """Where the audit reads events from: an event log, or the archive."""

    def events_for(self, query: AuditQuery) -> list[dict[str, Any]]:
        """At least the events the query's answer depends on; more is harmless, fewer is not."""
        ...


@dataclass(frozen=True)
class EventLogSource:
    """One or more event logs, read whole for every query (a log has no index to select by).

    :param paths: the JSON-lines files.
    """

    paths: tuple[str | os.PathLike[str], ...]

    def events_for(self, query: AuditQuery) -> list[dict[str, Any]]:
        """Every event of the logs, in file order.

        :param query: the question; a log is read whole whatever it is.
        :raises EventLogError: a log is unreadable, or a line is not a JSON object.
        """
        return [event for path in self.paths for event in read_events(path)]


def answer(
    source: EventSource, query: AuditQuery
) -> ModelAudit | list[ModelAudit] | ColumnAudit | WindowAudit:
    """The answer to one question, from the events the source gives for it.

    :param source: an :class:`EventLogSource` or the archive.
    :param query: the question.
    """
    events = source.events_for(query)
    if isinstance(query, ModelQuery):
        return audit_model(events, query.name, query.version)
    if isinstance(query, ColumnQuery):
        return audit_column(events, query.dataset, query.column)
    if isinstance(query, WindowQuery):
        return audit_window(events, query.since, query.until)
    return audit_all(events)


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read an event log of one JSON object per line; blank lines are skipped.

    :param path: the JSON-lines file a file transport wrote.
    :raises EventLogError: the file is unreadable, or a line is not a JSON object (named by its number).
    """
    return [event for _number, event in iterate_events(path)]


def iterate_events(path: str | os.PathLike[str]) -> Iterable[tuple[int, dict[str, Any]]]:
    """The events of a log with their 1-based line numbers, read line by line; blank lines are skipped.

    :param path: the JSON-lines file a file transport wrote.
    :raises EventLogError: the file is unreadable, or a line is not a JSON object (named by its number).
    """
    file = os.fspath(path)
    try:
        stream = Path(path).open(encoding="utf-8")  # noqa: SIM115 - closed below, errors mapped per line
    except OSError as error:
        raise EventLogError(file, None, f"cannot read the event log ({type(error).__name__})") from None
    with stream:
        number = 0
        while True:
            try:
                line = stream.readline()
            except (OSError, UnicodeDecodeError) as error:
                raise EventLogError(
                    file, number + 1, f"cannot read the event log ({type(error).__name__})"
                ) from None
            if not line:
                return
            number += 1
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as error:
                # The decoder's message names a position, never the text, so it is safe to repeat.
                raise EventLogError(
                    file, number, f"not valid JSON ({error.msg} at column {error.colno})"
                ) from None
            if not isinstance(event, dict):
                raise EventLogError(file, number, f"a JSON {type(event).__name__}, not an event object")
            yield number, event


def audit_model(
    events: Iterable[Mapping[str, Any]],
    model_name: str,
    model_version: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ModelAudit:
    """Which source columns reached a model, which were stopped, and through which runs.

    :param events: OpenLineage events, e.g. from :func:`read_events`.
    :param model_name: the model, as its policies name it.
    :param model_version: one version of it; every version when None.
    :param since: count only runs completed at or after this instant (aware); no bound when None.
    :param until: count only runs completed before this instant (aware); no bound when None.
    """
    return _audit_model(_EventLog.of(events), model_name, model_version, since, until)


def _audit_model(
    event_log: _EventLog,
    model_name: str,
    model_version: str | None,
    since: datetime | None,
    until: datetime | None,
) -> ModelAudit:
    def wanted(model: tuple[str, str] | None) -> bool:
        return (
            model is not None
            and model[0] == model_name
            and (model_version is None or model[1] == model_version)
        )

    def in_window(event_time: str) -> bool:
        return _within(_parse_time(event_time), since, until)

    governance = [run for run in event_log.governance if wanted(run.model)]
    published = [run for run in governance if run.published]
    versions = {run.model[1] for run in governance if run.model is not None}
    version = model_version if model_version is not None else (versions.pop() if len(versions) == 1 else None)

    # The governance runs that count: those in the window, and those a consumer in the window read from.
    runs = {run.run_id: run.as_audit_run() for run in published if in_window(run.event_time)}
    counted = {run.run_id: run for run in published if run.run_id in runs}
    for consumer in event_log.consumers:
        if not in_window(consumer.event_time):
            continue
        producer = event_log.producer_of(consumer, published)
        if producer is not None and consumer.run_id not in runs:
            runs[consumer.run_id] = producer.as_audit_run(consumer)
            counted[producer.run_id] = producer

    reached: dict[tuple[str, str, str | None, str, str], ReachedColumn] = {}
    for run in counted.values():
        for column in run.reached:
            reached.setdefault(
                (column.dataset, column.column, column.identifier, column.treatment, column.output_column),
                column,
            )
    reached_columns = {(column.dataset, column.column) for column in reached.values()}
    stopped: dict[tuple[str, str], StoppedColumn] = {}
    for run in counted.values():
        for column in run.stopped:
            key = (column.dataset, column.column)
            if key not in reached_columns and (key not in stopped or stopped[key].identifier is None):
                stopped[key] = column

    ordered = sorted(runs.values(), key=lambda run: (_parse_time(run.event_time), run.run_id))
    return ModelAudit(
        model=AuditedModel(name=model_name, version=version),
        reached=sorted(reached.values(), key=lambda c: (c.dataset, c.column, c.output_column, c.treatment)),
        stopped=sorted(stopped.values(), key=lambda c: (c.dataset, c.column)),
        runs=ordered,
        policy_digests=list(dict.fromkeys(run.policy_digest for run in ordered if run.policy_digest)),
        refused_runs=sorted({run.run_id for run in governance if run.refused and in_window(run.event_time)}),
        known=bool(governance),
    )


def audit_all(events: Iterable[Mapping[str, Any]]) -> list[ModelAudit]:
    """An audit for every model, and version, that some governance run's policy names.

    :param events: OpenLineage events, e.g. from :func:`read_events`.
    """
    event_log = _EventLog.of(events)
    models = sorted({run.model for run in event_log.governance if run.model is not None})
    return [_audit_model(event_log, name, version, None, None) for name, version in models]


def audit_window(
    events: Iterable[Mapping[str, Any]], since: datetime | None, until: datetime | None
) -> WindowAudit:
    """Everything that reached any model through runs completed in ``[since, until)``, per model version.

    :param events: OpenLineage events, e.g. from :func:`read_events`.
    :param since: the window's start (aware), inclusive; no bound when None.
    :param until: the window's end (aware), exclusive; no bound when None.
    """
    event_log = _EventLog.of(events)
    models = sorted({run.model for run in event_log.governance if run.model is not None})
    audits = [_audit_model(event_log, name, version, since, until) for name, version in models]
    return WindowAudit(
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
        models=[audit for audit in audits if audit.runs],
    )


def audit_column(events: Iterable[Mapping[str, Any]], dataset: str, column: str) -> ColumnAudit:
    """Every model one source column reached, in which treatment, through which runs.

    A column counts as reached through a published governance run whose ``phiGuard_columns`` facet lists it
    as the source of a published column; the runs that read that governance run's output are listed with
    it. A model whose runs only dropped the column is listed under ``stopped``, never as reached.

    :param events: OpenLineage events, e.g. from :func:`read_events`.
    :param dataset: the source dataset as the audit prints it (a URI), a local path, or ``namespace/name``.
    :param column: the source column, exactly as named in the dataset.
    """
    event_log = _EventLog.of(events)
    names = dataset_names(dataset)
    published = [run for run in event_log.governance if run.published]

    groups: dict[tuple[str, str, str, str], dict[str, AuditRun]] = {}
    producers: dict[str, list[tuple[str, str, str, str]]] = {}
    identifiers, stopped, found = [], set(), []
    for run in published:
        model = run.model
        if model is None:
            continue
        for reached in run.reached:
            if reached.dataset in names and reached.column == column:
                key = (*model, reached.treatment, reached.output_column)
                groups.setdefault(key, {})[run.run_id] = run.as_audit_run()
                producers.setdefault(run.run_id, []).append(key)
                identifiers.append(reached.identifier)
                found.append(reached.dataset)
        for dropped in run.stopped:
            if dropped.dataset in names and dropped.column == column:
                stopped.add(model)
                identifiers.append(dropped.identifier)
                found.append(dropped.dataset)

    for consumer in event_log.consumers:
        producer = event_log.producer_of(consumer, published)
        for key in producers.get(producer.run_id, []) if producer is not None else []:
            groups[key].setdefault(consumer.run_id, producer.as_audit_run(consumer))

    reached_models = {key[:2] for key in groups}
    return ColumnAudit(
        dataset=found[0] if found else dataset,
        column=column,
        identifier=next((letter for letter in identifiers if letter is not None), None),
        reached=[
            ColumnReach(
                model=AuditedModel(name=key[0], version=key[1]),
                treatment=key[2],
                output_column=key[3],
                runs=sorted(runs.values(), key=lambda run: (_parse_time(run.event_time), run.run_id)),
            )
            for key, runs in sorted(groups.items())
        ],
        stopped=[
            AuditedModel(name=name, version=version) for name, version in sorted(stopped - reached_models)
        ],
    )


def dataset_names(dataset: str) -> frozenset[str]:
    """The URIs a user's name of a dataset may stand for, as the audit prints source datasets.

    :param dataset: a URI (``file:///data/x.parquet``, ``s3://bucket/key``), a local path, or
        ``namespace/name`` (``file//data/x.parquet``).
    """
    names = {dataset}
    identity = dataset_identity(dataset)
    names.add(dataset_uri(identity.namespace, unquote(identity.name)))
    namespace, separator, name = dataset.partition("/")
    if separator and "://" not in dataset and namespace and name:
        names.add(dataset_uri(namespace, unquote(name)))
    return frozenset(names)


def parse_instant(text: str, *, end: bool = False) -> datetime:
    """An ISO date or timestamp as an aware instant; a date is its midnight in UTC, or the next midnight
    for the end of a window (so that ``--until 2026-12-31`` includes that day). A timestamp without an
    offset is taken as UTC, as the audit takes event times.

    :param text: ``YYYY-MM-DD`` or an ISO 8601 timestamp.
    :param end: whether the instant ends a window.
    :raises ValueError: the text is neither.
    """
    text = text.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        moment = datetime.combine(day, time(), tzinfo=UTC)
        return moment + timedelta(days=1) if end else moment
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def render_json(audit: ModelAudit | ColumnAudit | WindowAudit | Sequence[ModelAudit]) -> str:
    """The Audit JSON of one model, of a column or a window, or a JSON list of several models.

    :param audit: one answer, or a list of model audits (as :func:`audit_all` gives).
    """
    if isinstance(audit, ModelAudit | ColumnAudit | WindowAudit):
        document: object = audit.model_dump(mode="json")
    else:
        document = [each.model_dump(mode="json") for each in audit]
    return json.dumps(document, indent=2) + "\n"


def _console(stream: io.StringIO, width: int) -> Any:
    from rich.console import Console

    return Console(file=stream, width=width, no_color=True, highlight=False, emoji=False, markup=False)


def _trimmed(stream: io.StringIO) -> str:
    # Rich pads every line to the table's width; a text file is better without the trailing blanks.
    return "".join(line.rstrip() + "\n" for line in stream.getvalue().splitlines())


_DISCLAIMER = "Read from lineage events: this lists what the runs recorded, and is not legal advice."


def render_text(audit: ModelAudit, *, width: int = 100) -> str:
    """A readable answer for a terminal or a text file: per source dataset the columns that reached the
    model (with treatment and output name) and those stopped, then the runs.

    :param audit: the audit of one model.
    :param width: the width the text is laid out for.
    """
    stream = io.StringIO()
    console = _console(stream, width)
    _print_model(console, audit)
    console.print(_DISCLAIMER)
    return _trimmed(stream)


def render_window_text(audit: WindowAudit, *, width: int = 100) -> str:
    """A readable answer of a window: its bounds, then each model's audit as :func:`render_text` lays it out.

    :param audit: the audit of the window.
    :param width: the width the text is laid out for.
    """
    stream = io.StringIO()
    console = _console(stream, width)
    console.print(f"Window from {audit.since or 'the first event'} until {audit.until or 'the last event'}")
    if not audit.models:
        console.print("No run in this window reached any model.")
    for model in audit.models:
        console.print()
        _print_model(console, model)
    console.print()
    console.print(_DISCLAIMER)
    return _trimmed(stream)


def render_column_text(audit: ColumnAudit, *, width: int = 100) -> str:
    """A readable answer of a column: each model it reached, in which treatment, through which runs.

    :param audit: the audit of one source column.
    :param width: the width the text is laid out for.
    """
    from rich.table import Table

    stream = io.StringIO()
    console = _console(stream, width)
    console.print(
        f"Source column {audit.column} of {audit.dataset}, identifier {_describe(audit.identifier)}"
    )
    if not audit.reached:
        console.print("It reached no model in these events.")
    for reach in audit.reached:
        console.print()
        version = f" version {reach.model.version}" if reach.model.version is not None else ""
        console.print(
            f"Reached model {reach.model.name}{version} as {reach.output_column}, treatment {reach.treatment}"
        )
        for run in reach.runs:
            _print_run(console, Table, run)
    if audit.stopped:
        console.print()
        named = ", ".join(f"{model.name} version {model.version}" for model in audit.stopped)
        console.print(f"Stopped before: {named}")
    console.print()
    console.print(_DISCLAIMER)
    return _trimmed(stream)


def _print_model(console: Any, audit: ModelAudit) -> None:
    from rich.table import Table

    version = f" version {audit.model.version}" if audit.model.version is not None else ""
    console.print(f"Model {audit.model.name}{version}")
    if not audit.known:
        console.print(
            "No governance run in these events names this model: nothing is known to have reached it."
        )
        return
    if not audit.reached:
        console.print("No column reached the model.")

    for dataset in sorted({column.dataset for column in [*audit.reached, *audit.stopped]}):
        console.print()
        console.print(f"Source dataset {dataset}")
        reached = Table(title="Reached the model", title_justify="left")
        for heading in ("source column", "identifier", "treatment", "output column"):
            reached.add_column(heading, overflow="fold")
        for column in audit.reached:
            if column.dataset == dataset:
                reached.add_row(
                    column.column, _describe(column.identifier), column.treatment, column.output_column
                )
        stopped = Table(title="Stopped before the model", title_justify="left")
        for heading in ("source column", "identifier"):
            stopped.add_column(heading, overflow="fold")
        for column in audit.stopped:
            if column.dataset == dataset:
                stopped.add_row(column.column, _describe(column.identifier))
        for table in (reached, stopped):
            if table.row_count:
                console.print(table)

    console.print()
    if audit.policy_digests:
        console.print(f"Policy digests: {', '.join(audit.policy_digests)}")
    console.print(f"Runs ({len(audit.runs)})" if audit.runs else "No published run.")
    for run in audit.runs:
        _print_run(console, Table, run)
    if audit.refused_runs:
        console.print(f"Refused governance runs, which reached nothing: {', '.join(audit.refused_runs)}")


def _print_run(console: Any, table_class: Any, run: AuditRun) -> None:
    # One block per run: a digest and a run id are too long to share a table row legibly.
    block = table_class.grid(padding=(0, 2))
    block.add_column(no_wrap=True)
    block.add_column(overflow="fold")
    block.add_row("governance run" if run.role == "governance" else "downstream run", run.run_id)
    block.add_row("job", run.job or "-")
    if run.read_from:
        block.add_row("read the output of", run.read_from)
    block.add_row("completed", run.event_time or "-")
    if run.policy_name:
        block.add_row("policy", f"{run.policy_name} version {run.policy_version}")
    block.add_row("policy digest", run.policy_digest or "-")
    block.add_row("de-identification", run.deidentification_method or "-")
    block.add_row("consent bases", ", ".join(run.consent_bases) or "-")
    if run.consent_as_of:
        block.add_row("consent judged at", run.consent_as_of)
    block.add_row("rows read", str(run.rows_read) if run.rows_read is not None else "-")
    block.add_row("rows admitted", str(run.rows_admitted) if run.rows_admitted is not None else "-")
    if run.admitted_rows_by_basis is not None:
        block.add_row("admitted rows by basis", _counts(run.admitted_rows_by_basis))
    if run.admitted_subjects_by_basis is not None:
        block.add_row("admitted subjects by basis", _counts(run.admitted_subjects_by_basis))
    block.add_row("rows excluded", _counts(run.rows_excluded))
    block.add_row("risk", _counts(run.risk) if run.risk else "not recorded")
    block.add_row("Safe Harbor", _safe_harbor(run))
    console.print(block)
    console.print()


def _safe_harbor(run: AuditRun) -> str:
    if run.safe_harbor_status is None:
        return "not recorded"
    if run.safe_harbor_breaches:
        return f"{run.safe_harbor_status} ({run.safe_harbor_breaches} breaches)"
    return run.safe_harbor_status


def _counts(counts: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "-"


def _describe(letter: str | None) -> str:
    if letter is None:
        return "-"
    try:
        return f"{letter} ({SafeHarborIdentifier(letter).description})"
    except ValueError:
        return letter


def _risk(*candidates: Any) -> dict[str, RiskFigure] | None:
    for candidate in candidates:
        if isinstance(candidate, Mapping):
            return {
                key: value
                for key, value in candidate.items()
                if isinstance(key, str)
                and not key.startswith("_")
                and (value is None or isinstance(value, int | float | str | bool))
            }
    return None


def parse_event_time(text: Any) -> datetime | None:
    """An event's ``eventTime`` as an aware instant (UTC when it has no offset), or None when unreadable.

    :param text: the value of ``eventTime``, whatever it is.
    """
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_time(text: str | None) -> datetime:
    return parse_event_time(text) or _EARLIEST


def _within(moment: datetime, since: datetime | None, until: datetime | None) -> bool:
    if since is None and until is None:
        return True
    if moment == _EARLIEST:
        # an event without a readable time cannot be placed in a window
        return False
    return (since is None or moment >= since) and (until is None or moment < until)


def dataset_key(dataset: Any) -> tuple[str, str] | None:
    """The namespace and name of an event's dataset, the name percent-decoded; None when either is missing.

    :param dataset: an input or output of an event, whatever it is.
    """
    namespace, name = _text(_get(dataset, "namespace")), _text(_get(dataset, "name"))
    if namespace is None or name is None:
        return None
    # One file may be named with or without percent-encoding (Path.as_uri() encodes, a plain f-string
    # does not); both name the same dataset.
    return namespace, unquote(name)


_dataset_key = dataset_key


def event_datasets(event: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The URIs of the datasets an event read and wrote, as the audit matches them; for a governance event
    the source datasets its ``phiGuard_columns`` facets name are among those read.

    :param event: one event, whatever it holds.
    """
    inputs = [key for key in map(dataset_key, _list(_get(event, "inputs"))) if key]
    outputs = []
    for output in _list(_get(event, "outputs")):
        if key := dataset_key(output):
            outputs.append(key)
        if source := dataset_key(_get(output, "facets", COLUMNS_FACET, "sourceDataset")):
            inputs.append(source)
    return sorted({dataset_uri(*key) for key in inputs}), sorted({dataset_uri(*key) for key in outputs})


def event_model(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """The model name and version an event's ``phiGuard_policy`` facet names, or None.

    :param event: one event, whatever it holds.
    """
    policy = _get(event, "run", "facets", POLICY_FACET)
    name, version = _text(_get(policy, "model", "name")), _get(policy, "model", "version")
    if name and isinstance(version, str | int) and not isinstance(version, bool):
        return name, str(version)
    return None


def is_governance_event(event: Mapping[str, Any]) -> bool:
    """Whether an event carries the ``phiGuard_policy`` run facet.

    :param event: one event, whatever it holds.
    """
    return isinstance(_get(event, "run", "facets", POLICY_FACET), Mapping)


@dataclass(frozen=True)
class _Consumer:
    """A COMPLETE event that read datasets: a candidate training (or other downstream) run."""

    run_id: str
    event_time: str
    job: str
    inputs: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class _GovernanceRun:
    """What one governance event says about its model, its output and its columns."""

    run_id: str
    event_time: str
    job: str
    model: tuple[str, str] | None
    published: bool
    refused: bool
    outputs: frozenset[tuple[str, str]]
    reached: tuple[ReachedColumn, ...]
    stopped: tuple[StoppedColumn, ...]
    figures: AuditRun

    def as_audit_run(self, consumer: _Consumer | None = None) -> AuditRun:
        if consumer is None:
            return self.figures
        return self.figures.model_copy(
            update={
                "run_id": consumer.run_id,
                "event_time": consumer.event_time,
                "job": consumer.job,
                "role": "consumer",
                "read_from": self.run_id,
            }
        )


@dataclass(frozen=True)
class _EventLog:
    governance: tuple[_GovernanceRun, ...]
    consumers: tuple[_Consumer, ...]

    @classmethod
    def of(cls, events: Iterable[Mapping[str, Any]]) -> _EventLog:
        governance: dict[tuple[str, str, str], _GovernanceRun] = {}
        consumers = {}
        for event in events:
            run_id = _text(_get(event, "run", "runId"))
            if run_id is None:
                continue
            if is_governance_event(event):
                run = _governance_run(event, run_id)
                # The same event read twice (from two logs, say) is one run, not two.
                governance.setdefault((run_id, str(_get(event, "eventType")), run.event_time), run)
            # A governance run may itself read another one's output (governance in stages), so any
            # COMPLETE event with inputs is a candidate consumer.
            if _get(event, "eventType") == "COMPLETE":
                inputs = frozenset(key for key in map(dataset_key, _list(_get(event, "inputs"))) if key)
                if inputs and _list(_get(event, "outputs")):
                    consumers[run_id] = _Consumer(
                        run_id, _text(_get(event, "eventTime")) or "", _job(event), inputs
                    )
        return cls(tuple(governance.values()), tuple(consumers.values()))

    def producer_of(self, consumer: _Consumer, published: Sequence[_GovernanceRun]) -> _GovernanceRun | None:
        """The published run whose output the consumer read: the latest one at or before it."""
        candidates = sorted(
            (run for run in published if run.outputs & consumer.inputs and run.run_id != consumer.run_id),
            key=lambda run: _parse_time(run.event_time),
        )
        if not candidates:
            return None
        when = _parse_time(consumer.event_time)
        earlier = [run for run in candidates if _parse_time(run.event_time) <= when]
        return (earlier or candidates)[-1]


def _job(event: Mapping[str, Any]) -> str:
    namespace, name = _text(_get(event, "job", "namespace")), _text(_get(event, "job", "name"))
    return f"{namespace}/{name}" if namespace and name else name or ""


def _governance_run(event: Mapping[str, Any], run_id: str) -> _GovernanceRun:
    policy = _get(event, "run", "facets", POLICY_FACET)
    consent = _get(event, "run", "facets", CONSENT_FACET)
    deidentification = _get(event, "run", "facets", DEIDENTIFICATION_FACET)
    safe_harbor = _get(deidentification, "safeHarbor")
    verdict = _get(policy, "verdict")
    published = _get(event, "eventType") == "COMPLETE" and verdict == "published"
    bases = _list(_get(policy, "consentBases")) or _list(_get(consent, "bases"))

    outputs, reached, stopped = set(), [], []
    inputs = _list(_get(event, "inputs"))
    for output in _list(_get(event, "outputs")) if published else []:
        columns = _get(output, "facets", COLUMNS_FACET)
        key = dataset_key(output)
        if key is None or not isinstance(columns, Mapping):
            continue
        outputs.add(key)
        source = _get(columns, "sourceDataset") or (inputs[0] if inputs else None)
        dataset = dataset_uri(*dataset_key(source)) if dataset_key(source) else ""
        for column in _list(_get(columns, "columns")):
            source_column, output_column = _text(_get(column, "source")), _text(_get(column, "name"))
            if source_column and output_column:
                reached.append(
                    ReachedColumn(
                        dataset=dataset,
                        column=source_column,
                        identifier=_text(_get(column, "identifier")),
                        treatment=_text(_get(column, "treatment")) or "",
                        output_column=output_column,
                    )
                )
        for column in _list(_get(columns, "dropped")):
            if source_column := _text(_get(column, "source")):
                stopped.append(
                    StoppedColumn(
                        dataset=dataset, column=source_column, identifier=_text(_get(column, "identifier"))
                    )
                )

    event_time = _text(_get(event, "eventTime")) or ""
    job = _job(event)
    figures = AuditRun(
        run_id=run_id,
        event_time=event_time,
        policy_digest=_text(_get(policy, "digest")),
        consent_bases=[basis for basis in bases if isinstance(basis, str)],
        rows_admitted=_count(_get(consent, "rowsAdmitted")),
        job=job,
        policy_name=_text(_get(policy, "name")),
        policy_version=_count(_get(policy, "version")),
        deidentification_method=_text(_get(policy, "method")) or _text(_get(deidentification, "method")),
        consent_as_of=_text(_get(consent, "asOf")) or _text(_get(policy, "asOf")),
        rows_read=_count(_get(consent, "rowsRead")),
        rows_excluded=_count_map(_get(consent, "excluded")) or {},
        # Per-basis counts and risk figures arrive in later facet versions: read them when present.
        admitted_rows_by_basis=_count_map(_get(consent, "admittedRowsByBasis")),
        admitted_subjects_by_basis=_count_map(_get(consent, "admittedSubjectsByBasis")),
        risk=_risk(
            _get(deidentification, "risk"), _get(policy, "risk"), _get(event, "run", "facets", RISK_FACET)
        ),
        safe_harbor_status=_text(_get(safe_harbor, "status")),
        # A breach names a column and a letter, never a value: only their number is shown.
        safe_harbor_breaches=len(_list(_get(safe_harbor, "breaches")))
        if isinstance(safe_harbor, Mapping)
        else None,
    )
    return _GovernanceRun(
        run_id=run_id,
        event_time=event_time,
        job=job,
        model=event_model(event),
        published=published,
        refused=verdict == "refused",
        outputs=frozenset(outputs),
        reached=tuple(reached),
        stopped=tuple(stopped),
        figures=figures,
    )
