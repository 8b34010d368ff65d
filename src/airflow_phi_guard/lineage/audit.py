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
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field

from airflow_phi_guard.exceptions import PhiGuardError
from airflow_phi_guard.lineage.datasets import dataset_uri
from airflow_phi_guard.lineage.facets import COLUMNS_FACET, CONSENT_FACET, POLICY_FACET
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier

_EARLIEST = datetime.min.replace(tzinfo=UTC)


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


class AuditRun(_Record):
    """A run through which data reached the model: a governance run, or a run that read its output."""

    run_id: str = Field(description="The OpenLineage run id.")
    event_time: str = Field(description="The time of the run's COMPLETE event, as the event gives it.")
    policy_digest: str | None = Field(description="Digest of the policy that governed the data.")
    consent_bases: list[str] = Field(description="The consent bases that policy accepts.")
    rows_admitted: int | None = Field(description="Rows admitted by consent into the governed dataset.")
    job: str = Field(default="", exclude=True, description="namespace/name of the run's job (text only).")
    role: Literal["governance", "consumer"] = Field(
        default="governance", exclude=True, description="Whether the run governed the data or read it."
    )
    read_from: str | None = Field(
        default=None, exclude=True, description="For a consumer: the governance run whose output it read."
    )


class ModelAudit(_Record):
    """What PHI reached one model, through which runs: the Audit JSON of the ``phi-guard audit`` command."""

    model: AuditedModel
    reached: list[ReachedColumn] = Field(default_factory=list)
    stopped: list[StoppedColumn] = Field(default_factory=list)
    runs: list[AuditRun] = Field(default_factory=list)
    refused_runs: list[str] = Field(
        default_factory=list, exclude=True, description="Run ids of refused governance runs (text only)."
    )
    known: bool = Field(
        default=False, exclude=True, description="Whether any governance run names the model."
    )


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read an event log of one JSON object per line; blank lines are skipped.

    :param path: the JSON-lines file a file transport wrote.
    :raises EventLogError: the file is unreadable, or a line is not a JSON object (named by its number).
    """
    file = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise EventLogError(file, None, f"cannot read the event log ({type(error).__name__})") from None

    events = []
    for number, line in enumerate(text.splitlines(), start=1):
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
        events.append(event)
    return events


def audit_model(
    events: Iterable[Mapping[str, Any]], model_name: str, model_version: str | None = None
) -> ModelAudit:
    """Which source columns reached a model, which were stopped, and through which runs.

    :param events: OpenLineage events, e.g. from :func:`read_events`.
    :param model_name: the model, as its policies name it.
    :param model_version: one version of it; every version when None.
    """
    event_log = _EventLog.of(events)

    def wanted(model: tuple[str, str] | None) -> bool:
        return (
            model is not None
            and model[0] == model_name
            and (model_version is None or model[1] == model_version)
        )

    governance = [run for run in event_log.governance if wanted(run.model)]
    published = [run for run in governance if run.published]
    versions = {run.model[1] for run in governance if run.model is not None}
    version = model_version if model_version is not None else (versions.pop() if len(versions) == 1 else None)

    reached: dict[tuple[str, str, str | None, str, str], ReachedColumn] = {}
    for run in published:
        for column in run.reached:
            reached.setdefault(
                (column.dataset, column.column, column.identifier, column.treatment, column.output_column),
                column,
            )
    reached_columns = {(column.dataset, column.column) for column in reached.values()}
    stopped: dict[tuple[str, str], StoppedColumn] = {}
    for run in published:
        for column in run.stopped:
            key = (column.dataset, column.column)
            if key not in reached_columns and (key not in stopped or stopped[key].identifier is None):
                stopped[key] = column

    runs = {run.run_id: run.as_audit_run() for run in published}
    for consumer in event_log.consumers:
        producer = event_log.producer_of(consumer, published)
        if producer is not None and consumer.run_id not in runs:
            runs[consumer.run_id] = producer.as_audit_run(consumer)

    return ModelAudit(
        model=AuditedModel(name=model_name, version=version),
        reached=sorted(reached.values(), key=lambda c: (c.dataset, c.column, c.output_column, c.treatment)),
        stopped=sorted(stopped.values(), key=lambda c: (c.dataset, c.column)),
        runs=sorted(runs.values(), key=lambda run: (_parse_time(run.event_time), run.run_id)),
        refused_runs=sorted({run.run_id for run in governance if run.refused}),
        known=bool(governance),
    )


def audit_all(events: Iterable[Mapping[str, Any]]) -> list[ModelAudit]:
    """An audit for every model, and version, that some governance run's policy names.

    :param events: OpenLineage events, e.g. from :func:`read_events`.
    """
    events = list(events)
    models = sorted({run.model for run in _EventLog.of(events).governance if run.model is not None})
    return [audit_model(events, name, version) for name, version in models]


def render_json(audit: ModelAudit | Sequence[ModelAudit]) -> str:
    """The Audit JSON of one model, or a JSON list of several.

    :param audit: one audit, or a list of them (as :func:`audit_all` gives).
    """
    if isinstance(audit, ModelAudit):
        document: object = audit.model_dump(mode="json")
    else:
        document = [each.model_dump(mode="json") for each in audit]
    return json.dumps(document, indent=2) + "\n"


def render_text(audit: ModelAudit, *, width: int = 100) -> str:
    """A readable answer for a terminal or a text file: per source dataset the columns that reached the
    model (with treatment and output name) and those stopped, then the runs.

    :param audit: the audit of one model.
    :param width: the width the text is laid out for.
    """
    from rich.console import Console
    from rich.table import Table

    stream = io.StringIO()
    console = Console(file=stream, width=width, no_color=True, highlight=False, emoji=False, markup=False)
    version = f" version {audit.model.version}" if audit.model.version is not None else ""
    console.print(f"Model {audit.model.name}{version}")
    if not audit.known:
        console.print(
            "No governance run in these events names this model: nothing is known to have reached it."
        )
        return stream.getvalue()
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
    console.print(f"Runs ({len(audit.runs)})" if audit.runs else "No published run.")
    for run in audit.runs:
        # One block per run: a digest and a run id are too long to share a table row legibly.
        block = Table.grid(padding=(0, 2))
        block.add_column(no_wrap=True)
        block.add_column(overflow="fold")
        block.add_row("governance run" if run.role == "governance" else "downstream run", run.run_id)
        block.add_row("job", run.job or "-")
        if run.read_from:
            block.add_row("read the output of", run.read_from)
        block.add_row("completed", run.event_time or "-")
        block.add_row("policy digest", run.policy_digest or "-")
        block.add_row("consent bases", ", ".join(run.consent_bases) or "-")
        block.add_row("rows admitted", str(run.rows_admitted) if run.rows_admitted is not None else "-")
        console.print(block)
        console.print()
    if audit.refused_runs:
        console.print(f"Refused governance runs, which reached nothing: {', '.join(audit.refused_runs)}")
    console.print("Read from lineage events: this lists what the runs recorded, and is not legal advice.")
    # Rich pads every line to the table's width; a text file is better without the trailing blanks.
    return "".join(line.rstrip() + "\n" for line in stream.getvalue().splitlines())


def _describe(letter: str | None) -> str:
    if letter is None:
        return "-"
    try:
        return f"{letter} ({SafeHarborIdentifier(letter).description})"
    except ValueError:
        return letter


# Reading events: every access goes through these, since an event from another producer may hold
# anything at any key.


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _parse_time(text: str | None) -> datetime:
    try:
        moment = datetime.fromisoformat(text) if text else _EARLIEST
    except ValueError:
        return _EARLIEST
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _dataset_key(dataset: Any) -> tuple[str, str] | None:
    namespace, name = _text(_get(dataset, "namespace")), _text(_get(dataset, "name"))
    if namespace is None or name is None:
        return None
    # One file may be named with or without percent-encoding (Path.as_uri() encodes, a plain f-string
    # does not); both name the same dataset.
    return namespace, unquote(name)


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
    digest: str | None
    consent_bases: tuple[str, ...]
    rows_admitted: int | None
    outputs: frozenset[tuple[str, str]]
    reached: tuple[ReachedColumn, ...]
    stopped: tuple[StoppedColumn, ...]

    def as_audit_run(self, consumer: _Consumer | None = None) -> AuditRun:
        return AuditRun(
            run_id=consumer.run_id if consumer else self.run_id,
            event_time=consumer.event_time if consumer else self.event_time,
            policy_digest=self.digest,
            consent_bases=list(self.consent_bases),
            rows_admitted=self.rows_admitted,
            job=consumer.job if consumer else self.job,
            role="consumer" if consumer else "governance",
            read_from=self.run_id if consumer else None,
        )


@dataclass(frozen=True)
class _EventLog:
    governance: tuple[_GovernanceRun, ...]
    consumers: tuple[_Consumer, ...]

    @classmethod
    def of(cls, events: Iterable[Mapping[str, Any]]) -> _EventLog:
        governance, consumers = [], {}
        for event in events:
            run_id = _text(_get(event, "run", "runId"))
            if run_id is None:
                continue
            if isinstance(_get(event, "run", "facets", POLICY_FACET), Mapping):
                governance.append(_governance_run(event, run_id))
            # A governance run may itself read another one's output (governance in stages), so any
            # COMPLETE event with inputs is a candidate consumer.
            if _get(event, "eventType") == "COMPLETE":
                inputs = frozenset(key for key in map(_dataset_key, _list(_get(event, "inputs"))) if key)
                if inputs and _list(_get(event, "outputs")):
                    consumers[run_id] = _Consumer(
                        run_id, _text(_get(event, "eventTime")) or "", _job(event), inputs
                    )
        return cls(tuple(governance), tuple(consumers.values()))

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
    name, version = _text(_get(policy, "model", "name")), _get(policy, "model", "version")
    verdict = _get(policy, "verdict")
    published = _get(event, "eventType") == "COMPLETE" and verdict == "published"
    bases = _list(_get(policy, "consentBases")) or _list(_get(consent, "bases"))
    rows = _get(consent, "rowsAdmitted")

    outputs, reached, stopped = set(), [], []
    inputs = _list(_get(event, "inputs"))
    for output in _list(_get(event, "outputs")) if published else []:
        columns = _get(output, "facets", COLUMNS_FACET)
        key = _dataset_key(output)
        if key is None or not isinstance(columns, Mapping):
            continue
        outputs.add(key)
        source = _get(columns, "sourceDataset") or (inputs[0] if inputs else None)
        dataset = dataset_uri(*_dataset_key(source)) if _dataset_key(source) else ""
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

    return _GovernanceRun(
        run_id=run_id,
        event_time=_text(_get(event, "eventTime")) or "",
        job=_job(event),
        model=(name, str(version)) if name and isinstance(version, str | int) else None,
        published=published,
        refused=verdict == "refused",
        digest=_text(_get(policy, "digest")),
        consent_bases=tuple(basis for basis in bases if isinstance(basis, str)),
        rows_admitted=rows if isinstance(rows, int) and not isinstance(rows, bool) else None,
        outputs=frozenset(outputs),
        reached=tuple(reached),
        stopped=tuple(stopped),
    )
