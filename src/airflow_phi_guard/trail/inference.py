"""Audit logging of batch inference (45 CFR 164.312(b)): what each batch read and wrote, never a value."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_phi_guard.trail.fingerprint import dataset_fingerprint
from airflow_phi_guard.trail.records import RunIds, append_decision, record_inference
from airflow_phi_guard.trail.store import AuditTrail, open_trail

if TYPE_CHECKING:
    from airflow_phi_guard.recipients.gate import GateDecision, Release
    from airflow_phi_guard.recipients.models import RecipientRegistry

log = logging.getLogger(__name__)

#: The OpenLineage job namespace of inference runs, beside the governance runs' namespace.
INFERENCE_JOB_NAMESPACE = "phi-guard"


class IdentifierDetection(StrEnum):
    """How the identifier columns of the input are found."""

    SCAN = "scan"  # names and values, by the inventory scan (reads the input once more)
    NAMES = "names"  # column names only, reads no row


@dataclass
class InferenceBatch:
    """One batch, as the audit sees it; set ``rows_out`` (and ``output`` if not given) in the block.

    :param rows_in: rows of the input, from its metadata.
    :param identifier_columns: the input columns that are identifiers, by name.
    :param input_fingerprint: SHA-256 of the input.
    """

    rows_in: int | None
    identifier_columns: list[str]
    input_fingerprint: str | None
    output: str | os.PathLike[str] | None = None
    rows_out: int | None = None
    record: object | None = field(default=None, repr=False)


@contextmanager
def inference_audit(
    model: str,
    version: str,
    input: str | os.PathLike[str],
    *,
    trail: AuditTrail | str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    model_uri: str | os.PathLike[str] | None = None,
    recipient: str | None = None,
    recipients: RecipientRegistry | None = None,
    run_date: date | None = None,
    governance_report: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    identifiers: IdentifierDetection | str = IdentifierDetection.NAMES,
    events: str | os.PathLike[str] | None = None,
    ids: RunIds | None = None,
    job_name: str | None = None,
) -> Iterator[InferenceBatch]:
    """Record one inference batch in the audit trail, and in lineage when ``events`` is given.

    It wraps one batch of one's own inference code (``BatchInferenceOperator`` uses it too). Per batch it
    records the model's name and version, the input dataset's fingerprint, which input columns are
    identifiers (by the column scan of :func:`~airflow_phi_guard.phi.inventory.scan_dataset`, or by name
    alone), the row counts, the output's fingerprint, the recipient when the model is a vendor API, and the
    timing: into the audit trail (a record of kind ``inference``) and, with ``events``, as OpenLineage
    START and COMPLETE (or FAIL) events whose inputs are the model and the input dataset and whose
    ``phiGuard_trail`` facet names the record, so that trail and lineage check each other.

    Scoring data with a model a vendor serves discloses the data to that vendor (45 CFR 164.502(e)). With
    a ``recipient``, the gate judges the disclosure before the block runs (:func:`gate_inference`)
    and records its decision; a refusal raises
    :class:`~airflow_phi_guard.exceptions.RecipientNotPermittedError` and the block never runs. The batch's
    record is appended when the block ends, with outcome ``logged``, or ``failed`` when it raised (the
    exception then propagates unchanged). An append that fails raises after a block that succeeded: a
    batch over PHI that cannot be logged must not pass silently. Lineage is best effort and never raises.

    :param model: the model's name, as the policy and the audit know it.
    :param version: the model's version.
    :param input: the dataset scored (a Parquet file or folder, or a CSV file).
    :param trail: the audit trail, or its path or URL.
    :param output: where the predictions are written; can also be set on the batch inside the block.
    :param model_uri: the model artifact (file or URI), for the model's input dataset in lineage; the
        dataset is named ``model:<name>/<version>`` in the ``phi-guard`` namespace without it.
    :param recipient: the recipient's id in the registry when the model is a vendor API that receives the
        input; the gate then judges the disclosure, and refuses it without ``recipients``.
    :param recipients: the recipient registry the gate reads.
    :param run_date: the date the agreement is judged on; today (UTC) by default.
    :param governance_report: the governance report (its path, or its fields) of the run that published
        the input; only its Safe Harbor verdict lets the input go to a recipient without an agreement.
    :param identifiers: ``names`` (the default, reads no row) or ``scan`` (names and values).
    :param events: an OpenLineage event log (JSON lines) to append START and COMPLETE/FAIL events to.
    :param ids: the Airflow DAG, task and run ids.
    :param job_name: the OpenLineage job name; ``inference.<model>`` by default.
    """
    store = open_trail(trail) if isinstance(trail, str | os.PathLike) else trail
    if recipient is not None:
        release = inference_release(input, governance_report)
        decision = gate_inference(
            store,
            model,
            version,
            input,
            recipient,
            recipients,
            run_date or datetime.now(UTC).date(),
            release,
            ids,
        )
        decision.raise_for_refusal()

    started, clock = datetime.now(UTC), time.monotonic()
    batch = InferenceBatch(
        rows_in=_rows(input),
        identifier_columns=_identifier_columns(input, IdentifierDetection(identifiers)),
        input_fingerprint=dataset_fingerprint(input),
        output=output,
    )
    lineage = _InferenceLineage(events, job_name or f"inference.{model}", model, version, model_uri, input)
    lineage.emit("START", batch, None, None)

    outcome = "logged"
    try:
        yield batch
    except BaseException:
        outcome = "failed"
        raise
    finally:
        rows_out = batch.rows_out if batch.rows_out is not None else _rows(batch.output)
        counts = {"rows_in": batch.rows_in or 0}
        if rows_out is not None:
            counts["rows_out"] = rows_out
        record = record_inference(
            store,
            model=model,
            version=version,
            input_fingerprint=batch.input_fingerprint,
            output_fingerprint=dataset_fingerprint(batch.output) if outcome == "logged" else None,
            identifier_columns=batch.identifier_columns,
            counts=counts,
            seconds=time.monotonic() - clock,
            recipient=recipient,
            outcome=outcome,
            dag_id=(ids or RunIds()).dag_id,
            task_id=(ids or RunIds()).task_id,
            run_id=(ids or RunIds()).run_id,
            at=started,
        )
        batch.record = record
        log.info(
            "inference batch of model %s %s %s: %s row(s) in, %s out, %d identifier column(s), trail "
            "sequence %d",
            model,
            version,
            outcome,
            batch.rows_in,
            rows_out,
            len(batch.identifier_columns),
            record.sequence,
        )
        lineage.emit("COMPLETE" if outcome == "logged" else "FAIL", batch, store.display_name, record)


def inference_release(
    input: str | os.PathLike[str], governance_report: str | os.PathLike[str] | Mapping[str, Any] | None
) -> Release:
    """What the gate needs to know about the scored input: PHI, unless a governance report shows otherwise.

    The use judged is always ``inference``, whatever purpose the policy that published the input had.
    Only a report of a run that published exactly this input lends it its Safe Harbor verdict; without one,
    or with a report of another dataset or of a refused run, the input counts as PHI (fail closed).

    :param input: the dataset scored.
    :param governance_report: the report of the run that published it, its path or its fields.
    """
    from airflow_phi_guard.recipients.gate import Release
    from airflow_phi_guard.recipients.models import INFERENCE

    unknown = Release(policy="-", purpose=INFERENCE, published=True, safe_harbor=None)
    if governance_report is None:
        return unknown
    report: Any = governance_report
    if not isinstance(report, Mapping):
        try:
            report = json.loads(Path(report).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            log.warning("governance report unreadable (%s): the input counts as PHI", type(error).__name__)
            return unknown
    if not isinstance(report, Mapping):
        log.warning(
            "governance report is JSON of type %s, not an object: the input counts as PHI",
            type(report).__name__,
        )
        return unknown
    try:
        release = Release.from_report(report)
    except (AttributeError, TypeError, ValueError) as error:
        # pydantic's ValidationError is a ValueError; its text would quote the field's value, so only the
        # class is logged
        log.warning(
            "governance report is not a report this package wrote (%s): the input counts as PHI",
            type(error).__name__,
        )
        return unknown
    output = report.get("output")
    # Known shortcoming: the report is matched to the input by path, not by content; the input's
    # fingerprint against the run's trail record would show a file replaced since the run.
    if (
        not release.published
        or not isinstance(output, str | os.PathLike)
        or not output
        or Path(output).resolve() != Path(input).resolve()
    ):
        log.warning("the governance report did not publish the scored input: the input counts as PHI")
        return unknown.model_copy(update={"policy": release.policy, "policy_digest": release.policy_digest})
    return release.model_copy(update={"purpose": INFERENCE})


def refuse_unreadable_registry(
    trail: AuditTrail | str | os.PathLike[str],
    model: str,
    version: str,
    input: str | os.PathLike[str],
    recipient: str,
    run_date: date,
    error: BaseException,
    *,
    governance_report: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    ids: RunIds | None = None,
) -> GateDecision:
    """Record the refusal of a disclosure whose recipient registry could not be read, so that the trail
    holds a gate decision for the batch that never ran; the caller then fails with ``error``.

    Only the error's class is recorded and logged: its message may name the registry's location.

    :param trail: the audit trail, or its path or URL.
    :param model: the model's name.
    :param version: the model's version.
    :param input: the dataset that would have been scored.
    :param recipient: the recipient's id that serves the model.
    :param run_date: the date the agreement would have been judged on.
    :param error: what kept the registry from being read.
    :param governance_report: as for :func:`inference_audit`, for the policy named in the record.
    :param ids: the Airflow DAG, task and run ids.
    """
    store = open_trail(trail) if isinstance(trail, str | os.PathLike) else trail
    release = inference_release(input, governance_report)
    return gate_inference(
        store,
        model,
        version,
        input,
        recipient,
        None,
        run_date,
        release,
        ids,
        registry_error=type(error).__name__,
    )


def gate_inference(
    trail: AuditTrail,
    model: str,
    version: str,
    input: str | os.PathLike[str],
    recipient: str,
    recipients: RecipientRegistry | None,
    run_date: date,
    release: Release,
    ids: RunIds | None = None,
    *,
    registry_error: str | None = None,
) -> GateDecision:
    """Judge sending the input to the recipient that serves the model, and record the decision.

    :param trail: the audit trail the decision is appended to, passed or refused.
    :param model: the model's name.
    :param version: the model's version.
    :param input: the dataset scored, fingerprinted in the record.
    :param recipient: the recipient's id in the registry.
    :param recipients: the registry; None refuses, since no agreement can then be shown.
    :param run_date: the date the agreement is judged on.
    :param release: what the input is (:func:`inference_release`).
    :param ids: the Airflow DAG, task and run ids.
    :param registry_error: the class name of the error that kept the registry from being read, when that
        is why ``recipients`` is None; the refusal then says the registry is unreadable.
    """
    from airflow_phi_guard.recipients.gate import GateDecision, decide_for_recipient

    if recipients is None:
        if registry_error is None:
            why = "no recipient registry was given (agreement: unknown)"
            remedy = "give the registry"
        else:
            why = f"the recipient registry could not be read ({registry_error}; agreement: unknown)"
            remedy = "repair the registry or its connection"
        decision = GateDecision(
            allowed=False,
            destination=f"recipient:{recipient}",
            recipient=recipient,
            agreement=None,
            data="phi" if release.still_phi else "de-identified",
            purpose=release.purpose,
            policy=release.policy,
            policy_digest=release.policy_digest,
            run_date=run_date,
            rules=["164.502(e)"],
            refusals=[
                f"model {model} {version} is served by recipient {recipient}, but {why}, so no business "
                f"associate agreement can be shown (45 CFR 164.502(e)); {remedy}"
            ],
        )
    else:
        decision = decide_for_recipient(release, recipient, recipients, run_date)

    ids = ids or RunIds()
    record = append_decision(
        trail,
        passed=decision.allowed,
        recipient=recipient,
        agreement=decision.agreement,
        rule=", ".join(decision.rules),
        destination=decision.destination,
        policy_digest=decision.policy_digest,
        dataset=input,
        dag_id=ids.dag_id,
        task_id=ids.task_id,
        run_id=ids.run_id,
    )
    log.info(
        "inference gate: model %s %s to recipient %s, agreement %s, on %s: %s (%s); trail sequence %d",
        model,
        version,
        recipient,
        decision.agreement,
        run_date.isoformat(),
        "passed" if decision.allowed else "refused",
        ", ".join(decision.rules),
        record.sequence,
    )
    return decision


def _rows(location: str | os.PathLike[str] | None) -> int | None:
    """Rows of a local Parquet or CSV dataset, from Parquet metadata when it has them; None otherwise."""
    if location is None or not Path(location).exists():
        return None
    from airflow_phi_guard.engine.source import open_source

    return open_source(Path(location)).count_rows()


def _identifier_columns(location: str | os.PathLike[str], detection: IdentifierDetection) -> list[str]:
    if detection is IdentifierDetection.SCAN:
        from airflow_phi_guard.phi.inventory import scan_dataset

        return sorted(scan_dataset(location).identifiers)
    from airflow_phi_guard.engine.source import open_source
    from airflow_phi_guard.phi.names import identify_columns

    names = open_source(Path(location)).schema.names
    return sorted(name for name, identifier in identify_columns(names).items() if identifier is not None)


@dataclass
class _InferenceLineage:
    events: str | os.PathLike[str] | None
    job_name: str
    model: str
    version: str
    model_uri: str | os.PathLike[str] | None
    input: str | os.PathLike[str]
    run_id: str = ""

    def emit(self, event_type: str, batch: InferenceBatch, trail: str | None, record: object | None) -> None:
        """Emit one event; lineage never fails the batch."""
        if self.events is None:
            return
        from airflow_phi_guard.lineage.emit import emit_built, new_run_id

        self.run_id = self.run_id or new_run_id()
        emit_built(
            event_type,
            lambda: inference_lineage(
                self.model, self.version, self.input, batch.output, self.model_uri, trail, record
            ),
            events_path=self.events,
            job_namespace=INFERENCE_JOB_NAMESPACE,
            job_name=self.job_name,
            run_id=self.run_id,
        )


def model_dataset(model: str, version: str, model_uri: str | os.PathLike[str] | None) -> tuple[str, str]:
    """The namespace and name of the model as an OpenLineage dataset: its artifact, or a name of its own.

    :param model: the model's name.
    :param version: the model's version.
    :param model_uri: the model artifact, when known.
    """
    if model_uri is not None:
        from airflow_phi_guard.lineage.datasets import dataset_identity

        identity = dataset_identity(model_uri)
        return identity.namespace, identity.name
    return INFERENCE_JOB_NAMESPACE, f"model:{model}/{version}"


def inference_lineage(
    model: str,
    version: str,
    input: str | os.PathLike[str],
    output: str | os.PathLike[str] | None,
    model_uri: str | os.PathLike[str] | None,
    trail: str | None,
    record: object | None,
) -> object:
    """The :class:`~airflow_phi_guard.lineage.build.RunLineage` of one batch: the model and the input as
    inputs, the output, and the ``phiGuard_trail`` facet of the record once it exists.

    :param model: the model's name.
    :param version: the model's version.
    :param input: the dataset scored.
    :param output: the predictions, when written.
    :param model_uri: the model artifact, when known.
    :param trail: the trail's display name, once the record was appended.
    :param record: the trail record of the batch, once appended.
    """
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    from airflow_phi_guard.lineage.build import RunLineage, trail_facet
    from airflow_phi_guard.lineage.datasets import dataset_identity
    from airflow_phi_guard.trail.chain import TrailHead, TrailRecord

    namespace, name = model_dataset(model, version, model_uri)
    source = dataset_identity(input)
    inputs = [
        InputDataset(namespace=namespace, name=name),
        InputDataset(namespace=source.namespace, name=source.name),
    ]
    outputs = []
    if output is not None:
        target = dataset_identity(output)
        outputs.append(OutputDataset(namespace=target.namespace, name=target.name))
    run_facets = {}
    if trail is not None and isinstance(record, TrailRecord):
        head = TrailHead(sequence=record.sequence, digest=record.digest)
        run_facets["phiGuard_trail"] = trail_facet(trail, head)
    return RunLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)
