"""Revocation impact: which published runs, and so which models, hold subjects whose consent has since ended.

The answer is built from three things, and ids never leave the process:

- the lineage: every COMPLETE governance event whose verdict is ``published`` (the ``phiGuard_policy``
  run facet) is a run; its policy facet gives the model, the purpose and the accepted bases, and its
  ``phiGuard_consent`` facet (schema 1-0-1) the location, digest and key fingerprint of its subject
  manifest (:mod:`airflow_phi_guard.consent.manifest`);
- the consent registry as it is now;
- an as-of date, today by default.

For each run the manifest is read and its digest checked; the registry's subjects are hashed with the
same manifest key, those found in the manifest are judged by the run's own bases and purpose at the
as-of date (:class:`~airflow_phi_guard.consent.admission.ConsentAdmission`, the rule that admitted them),
and the manifest subjects now excluded are counted per reason: ``revoked``, ``opted-out``, ``expired``,
``no-record`` (the registry no longer holds the subject at all), and any other reason the admission
gives. A run whose manifest is absent, changed since the run, unreadable, or made with another key is
not answered: it is listed with the problem, never counted as unaffected.

Runs are those of the governance policy's model; a downstream run (a training task reading the governed
set) is not listed here, though ``phi-guard audit`` links it to the governance run it read from.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from datetime import date
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airflow_phi_guard.consent import manifest as subject_manifest
from airflow_phi_guard.consent.admission import ConsentAdmission, ExclusionReason
from airflow_phi_guard.consent.registry import ConsentRegistry
from airflow_phi_guard.exceptions import SubjectManifestError
from airflow_phi_guard.lineage.datasets import LOCAL_NAMESPACE, dataset_uri
from airflow_phi_guard.lineage.facets import CONSENT_FACET, POLICY_FACET
from airflow_phi_guard.lineage.fields import field_at as _get
from airflow_phi_guard.lineage.fields import list_of as _list
from airflow_phi_guard.lineage.fields import text_of as _text
from airflow_phi_guard.policy.models import ConsentBasis, SubjectIdNormalization


class ImpactStatus(StrEnum):
    """Whether a run could be answered, and if not, why."""

    ANSWERED = "answered"
    NO_MANIFEST = "no-manifest"
    NO_KEY = "no-key"
    KEY_MISMATCH = "key-mismatch"
    MANIFEST_UNAVAILABLE = "manifest-unavailable"
    POLICY_UNREADABLE = "policy-unreadable"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImpactedModel(_Record):
    """The model a policy prepared data for."""

    name: str = Field(description="Model name, as the policy names it.")
    version: str = Field(description="Model version, as text.")


class RunImpact(_Record):
    """How many of one published run's subjects the registry now excludes, by reason. Counts only."""

    run_id: str = Field(description="The OpenLineage run id of the governance run.")
    event_time: str = Field(description="The time of its COMPLETE event, as the event gives it.")
    job: str = Field(description="namespace/name of the run's job.")
    model: ImpactedModel | None = Field(description="The model its policy names, if the event says.")
    policy_digest: str | None = Field(description="Digest of the policy that governed the run.")
    run_as_of: str | None = Field(description="The as-of date the run admitted its subjects at.")
    output: str | None = Field(description="The governed dataset, as a URI.")
    status: ImpactStatus = Field(description="`answered`, or why the run could not be answered.")
    problem: str | None = Field(default=None, description="What stopped the answer, naming files only.")
    subjects: int | None = Field(default=None, description="Distinct subjects in the run's manifest.")
    still_admitted: int | None = Field(
        default=None, description="Manifest subjects the registry still admits at the as-of date."
    )
    excluded: dict[str, int] = Field(
        default_factory=dict, description="Manifest subjects the registry now excludes, by reason."
    )

    @property
    def affected(self) -> int | None:
        """Manifest subjects now excluded for any reason; None when the run was not answered."""
        return sum(self.excluded.values()) if self.status is ImpactStatus.ANSWERED else None


class ModelImpact(_Record):
    """One model's runs: how many hold subjects now excluded, and how many could not be answered."""

    model: ImpactedModel
    runs: int = Field(description="Published governance runs for the model.")
    affected_runs: int = Field(description="Answered runs holding at least one subject now excluded.")
    unanswered_runs: int = Field(description="Runs that could not be answered.")


class ImpactAnswer(_Record):
    """The answer of ``phi-guard impact``: per model and per run, counts of subjects now excluded."""

    as_of: date = Field(description="The date the registry was judged at.")
    registry: str = Field(description="The consent registry read.")
    models: list[ModelImpact] = Field(default_factory=list)
    runs: list[RunImpact] = Field(default_factory=list)

    @property
    def unanswered(self) -> list[RunImpact]:
        """The runs that could not be answered."""
        return [run for run in self.runs if run.status is not ImpactStatus.ANSWERED]

    def to_json(self) -> str:
        document = self.model_dump(mode="json")
        for run, dumped in zip(self.runs, document["runs"], strict=True):
            dumped["affected"] = run.affected
        return json.dumps(document, indent=2) + "\n"


def revocation_impact(
    events: Iterable[Mapping[str, Any]],
    registry: ConsentRegistry,
    as_of: date,
    *,
    manifest_key: bytes | None,
) -> ImpactAnswer:
    """Count, for every published governance run in ``events``, its subjects the registry now excludes.

    :param events: OpenLineage events, e.g. from :func:`airflow_phi_guard.lineage.audit.read_events`.
    :param registry: the consent registry as it is now.
    :param as_of: the date to judge the registry at.
    :param manifest_key: the key the runs hashed their subjects with; None answers no run that has a
        manifest.
    """
    subjects = _RegistrySubjects(registry, as_of, manifest_key)
    runs = [_impact_of(run, subjects) for run in _published_runs(events)]
    runs.sort(key=lambda run: (run.model.name if run.model else "", run.event_time, run.run_id))

    models: dict[tuple[str, str], list[RunImpact]] = {}
    for run in runs:
        if run.model is not None:
            models.setdefault((run.model.name, run.model.version), []).append(run)
    return ImpactAnswer(
        as_of=as_of,
        registry=registry.source,
        models=[
            ModelImpact(
                model=ImpactedModel(name=name, version=version),
                runs=len(model_runs),
                affected_runs=sum(1 for run in model_runs if run.affected),
                unanswered_runs=sum(1 for run in model_runs if run.status is not ImpactStatus.ANSWERED),
            )
            for (name, version), model_runs in sorted(models.items())
        ],
        runs=runs,
    )


class _RegistrySubjects:
    """The registry's normalised subject ids, their keyed hashes and its admissions, each made once."""

    def __init__(self, registry: ConsentRegistry, as_of: date, key: bytes | None) -> None:
        self.registry = registry
        self.as_of = as_of
        self.key = key
        self.key_fingerprint = subject_manifest.manifest_key_fingerprint(key) if key else None
        self._admissions: dict[tuple[object, ...], ConsentAdmission] = {}
        self._ids: dict[SubjectIdNormalization, tuple[pa.Array, pa.Array]] = {}

    def ids_and_hashes(self, rule: SubjectIdNormalization) -> tuple[pa.Array, pa.Array]:
        """The registry's ids normalised by the rule the run's manifest was made with, and their hashes;
        so a hash found here names a subject the run's admission would have matched."""
        if rule not in self._ids:
            assert self.key is not None
            ids = subject_manifest.normalise_subject_ids(self.registry.subject_ids, rule)
            self._ids[rule] = (ids, subject_manifest.hash_subjects(ids, self.key))
        return self._ids[rule]

    def admission(
        self,
        bases: list[ConsentBasis],
        purpose: str,
        purposes_covering: tuple[str, ...],
        rule: SubjectIdNormalization,
    ) -> ConsentAdmission:
        """The registry's decisions by one run's rules (runs of one policy share them).

        :raises ValueError: no basis, a basis that cannot admit, an empty or unknown purpose.
        """
        wanted = (frozenset(bases), purpose.strip(), frozenset(purposes_covering), rule)
        if wanted not in self._admissions:
            self._admissions[wanted] = ConsentAdmission(
                self.registry,
                bases,
                purpose,
                self.as_of,
                purposes_covering=purposes_covering,
                subject_ids=rule,
            )
        return self._admissions[wanted]


def _normalization(recorded: Any) -> SubjectIdNormalization:
    """The id rule a manifest records; a manifest of 1-0-1 without one was made by the default rule.

    :raises ValueError: a rule the product does not know, which must not be guessed.
    """
    if recorded is None:
        return SubjectIdNormalization()
    if not isinstance(recorded, Mapping):
        raise ValueError("the manifest's subject id rule is not an object")
    try:
        return SubjectIdNormalization(uuid_case=recorded.get("uuidCase"), digits=recorded.get("digits"))
    except ValidationError:
        raise ValueError("the manifest's subject id rule is unknown") from None


def _impact_of(run: Mapping[str, Any], subjects: _RegistrySubjects) -> RunImpact:
    identity = _run_identity(run)

    def unanswered(status: ImpactStatus, problem: str) -> RunImpact:
        return RunImpact(**identity, status=status, problem=problem)

    manifest = _get(run, "run", "facets", CONSENT_FACET, "manifest")
    if not isinstance(manifest, Mapping):
        return unanswered(
            ImpactStatus.NO_MANIFEST,
            "the run recorded no subject manifest (it had no manifest key), so who it admitted is not known",
        )
    namespace, name = (
        _text(_get(manifest, "location", "namespace")),
        _text(_get(manifest, "location", "name")),
    )
    digest, fingerprint = _text(_get(manifest, "digest")), _text(_get(manifest, "keyFingerprint"))
    recorded = _get(manifest, "subjects")
    if not (namespace and name and digest and fingerprint):
        return unanswered(ImpactStatus.MANIFEST_UNAVAILABLE, "the run's manifest record is incomplete")
    if namespace != LOCAL_NAMESPACE:
        # Reading a manifest from object storage would need fsspec here; until then such runs are listed.
        return unanswered(
            ImpactStatus.MANIFEST_UNAVAILABLE,
            f"manifest {dataset_uri(namespace, name)} is not a local file, which impact cannot read yet",
        )
    if subjects.key is None:
        return unanswered(
            ImpactStatus.NO_KEY,
            f"no manifest key was given; set {subject_manifest.MANIFEST_KEY_VARIABLE} to the runs' key",
        )
    if fingerprint != subjects.key_fingerprint:
        return unanswered(
            ImpactStatus.KEY_MISMATCH,
            f"the run's manifest was made with key {fingerprint}, not the given key "
            f"{subjects.key_fingerprint}",
        )

    try:
        policy = _get(run, "run", "facets", POLICY_FACET)
        bases = [ConsentBasis(basis) for basis in _list(_get(policy, "consentBases"))]
        # The codes that covered the purpose in the run (absent before 1-0-1: the purpose's defaults).
        covering = tuple(
            str(code) for code in _list(_get(run, "run", "facets", CONSENT_FACET, "purposeCodes"))
        )
        rule = _normalization(_get(manifest, "subjectIds"))
        admission = subjects.admission(bases, _text(_get(policy, "purpose")) or "", covering, rule)
    except ValueError:
        return unanswered(
            ImpactStatus.POLICY_UNREADABLE,
            "the run's policy facet names no usable consent bases or purpose",
        )

    try:
        hashes = subject_manifest.read_manifest(
            name, digest=digest, subjects=recorded if isinstance(recorded, int) else None
        )
    except SubjectManifestError as error:
        return unanswered(ImpactStatus.MANIFEST_UNAVAILABLE, str(error))

    # The registry subjects in the manifest are judged by the rule that admitted them; the manifest
    # subjects the registry does not hold any more are no-record.
    ids, registry_hashes = subjects.ids_and_hashes(rule)
    in_manifest = ids.filter(pc.is_in(registry_hashes, value_set=hashes))
    admitted, counts = admission.admit(in_manifest)
    excluded = {str(reason): count for reason, count in counts.items() if count}
    missing = len(hashes) - len(in_manifest)
    if missing:
        excluded[str(ExclusionReason.NO_RECORD)] = excluded.get(str(ExclusionReason.NO_RECORD), 0) + missing
    order = {str(reason): position for position, reason in enumerate(ExclusionReason)}
    return RunImpact(
        **identity,
        status=ImpactStatus.ANSWERED,
        subjects=len(hashes),
        still_admitted=pc.sum(admitted).as_py() or 0,
        excluded=dict(sorted(excluded.items(), key=lambda item: order[item[0]])),
    )


def _published_runs(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The COMPLETE events of governance runs that published, one per run id (the last one wins)."""
    runs: dict[str, Mapping[str, Any]] = {}
    for event in events:
        run_id = _text(_get(event, "run", "runId"))
        policy = _get(event, "run", "facets", POLICY_FACET)
        if (
            run_id
            and isinstance(policy, Mapping)
            and _get(event, "eventType") == "COMPLETE"
            and _get(policy, "verdict") == "published"
        ):
            runs[run_id] = event
    return list(runs.values())


def _run_identity(event: Mapping[str, Any]) -> dict[str, Any]:
    policy = _get(event, "run", "facets", POLICY_FACET)
    name, version = _text(_get(policy, "model", "name")), _text(_get(policy, "model", "version"))
    outputs = [output for output in _list(_get(event, "outputs")) if isinstance(output, Mapping)]
    namespace, dataset = (
        (_text(_get(outputs[0], "namespace")), _text(_get(outputs[0], "name"))) if outputs else (None, None)
    )
    job_namespace, job_name = _text(_get(event, "job", "namespace")), _text(_get(event, "job", "name"))
    return {
        "run_id": _text(_get(event, "run", "runId")) or "",
        "event_time": _text(_get(event, "eventTime")) or "",
        "job": f"{job_namespace}/{job_name}" if job_namespace and job_name else job_name or "",
        "model": ImpactedModel(name=name, version=version) if name and version else None,
        "policy_digest": _text(_get(policy, "digest")),
        "run_as_of": _text(_get(policy, "asOf")),
        "output": dataset_uri(namespace, dataset) if namespace and dataset else None,
    }


def render_json(answer: ImpactAnswer) -> str:
    """The answer as JSON: the as-of date, the registry, per model the run counts, and per run the counts.

    :param answer: the answer of :func:`revocation_impact`.
    """
    return answer.to_json()


#: The reasons the text table shows in columns of their own; any other reason goes into "other".
_SHOWN_REASONS = (
    ExclusionReason.REVOKED,
    ExclusionReason.OPTED_OUT,
    ExclusionReason.EXPIRED,
    ExclusionReason.NO_RECORD,
)


def render_text(answer: ImpactAnswer, *, width: int = 160) -> str:
    """A readable answer: one line per model, then a table of runs with their counts per reason.

    :param answer: the answer of :func:`revocation_impact`.
    :param width: the width the text is laid out for.
    """
    from rich.console import Console
    from rich.table import Table

    stream = io.StringIO()
    console = Console(file=stream, width=width, no_color=True, highlight=False, emoji=False, markup=False)
    console.print(f"Revocation impact at {answer.as_of.isoformat()}, consent registry {answer.registry}")
    if not answer.runs:
        console.print("No published governance run in these events.")
    for model in answer.models:
        console.print(
            f"Model {model.model.name} version {model.model.version}: {model.affected_runs} of "
            f"{model.runs} run(s) hold subjects whose consent has since ended"
            + (f"; {model.unanswered_runs} run(s) could not be answered" if model.unanswered_runs else "")
        )

    if answer.runs:
        table = Table(title="Subjects per run (counts only)", title_justify="left")
        table.add_column("model", overflow="fold")
        table.add_column("run", overflow="fold")
        table.add_column("completed", overflow="fold")
        table.add_column("run as of", no_wrap=True)
        for heading in ("subjects", "still admitted", *(str(reason) for reason in _SHOWN_REASONS), "other"):
            table.add_column(heading, justify="right", no_wrap=True)
        for run in answer.runs:
            model = f"{run.model.name}:{run.model.version}" if run.model else "-"
            if run.status is ImpactStatus.ANSWERED:
                shown = [str(run.excluded.get(str(reason), 0)) for reason in _SHOWN_REASONS]
                other = sum(count for reason, count in run.excluded.items() if reason not in _SHOWN_REASONS)
                counts = [str(run.subjects), str(run.still_admitted), *shown, str(other)]
            else:
                counts = ["-", "-", *(["-"] * len(_SHOWN_REASONS)), "-"]
            table.add_row(model, run.run_id, run.event_time or "-", run.run_as_of or "-", *counts)
        console.print(table)
    for run in answer.unanswered:
        console.print(f"Not answered, run {run.run_id} ({run.status.value}): {run.problem}")
    console.print(
        "Counts from the runs' subject manifests and the registry as read; this is not legal advice."
    )
    return "".join(line.rstrip() + "\n" for line in stream.getvalue().splitlines())
