"""The training-data datasheet of a model, as EU AI Act Article 10 and Annex IV(2)(d) ask for it.

The datasheet is built from OpenLineage events alone, by the audit's rules for which runs reached the model
(:func:`airflow_phi_guard.lineage.audit.audit_model`), and the facets of those runs: provenance (source
datasets, consent registries, governance and downstream runs), the purpose of this use and what the events
say of the original purpose of collection, the preparation steps (consent admission, the column
allowlist, each column's treatment), consent bases and counts, the de-identification method and risk
figures, validation results (the standard ``dataQualityAssertions`` facet of validation runs that read a
governed set), and the gaps: what the events do not record, each named.

It is written as Markdown and as an offline HTML page (the Markdown rendered by markdown-it-py with raw
HTML disabled, plus the lineage graph of :mod:`airflow_phi_guard.lineage.html`). Every string from an
event is escaped in both; the events hold names, letters, counts and digests, never a cell value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_phi_guard.exceptions import ModelNotInLineageError
from airflow_phi_guard.lineage.audit import (
    RISK_FACET,
    AuditedModel,
    AuditRun,
    ModelAudit,
    ReachedColumn,
    StoppedColumn,
    audit_model,
    dataset_key,
)
from airflow_phi_guard.lineage.datasets import dataset_uri
from airflow_phi_guard.lineage.facets import COLUMNS_FACET, CONSENT_FACET, POLICY_FACET
from airflow_phi_guard.lineage.fields import count_map_of as _count_map
from airflow_phi_guard.lineage.fields import count_of as _count
from airflow_phi_guard.lineage.fields import field_at as _get
from airflow_phi_guard.lineage.fields import list_of as _list
from airflow_phi_guard.lineage.fields import text_of as _text
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier

#: The run facet of the de-identification verdict, risk and records (issue 5), read when present; a
#: ``safeHarbor`` or ``risk`` object of the ``phiGuard_policy`` facet is read the same way.
DEIDENTIFICATION_FACET = "phiGuard_deidentification"
#: The blocks of that facet besides the verdict and the risk, in the order the datasheet shows them.
_DEIDENTIFICATION_RECORDS = (
    "expertDetermination",
    "dataUseAgreement",
    "zip3",
    "dateShift",
    "surrogateMapping",
)

NOT_RECORDED = "not recorded"

DISCLAIMER = (
    "Built from OpenLineage events alone: it states what the runs recorded, for the technical documentation "
    "of EU AI Act (Regulation (EU) 2024/1689) Article 10 and Annex IV(2)(d). It is not legal advice."
)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceDataset(_Record):
    """A raw dataset a governance run read."""

    uri: str = Field(description="The dataset as a URI.")
    columns: int | None = Field(description="Columns in its schema facet; None when no event gives one.")
    identifier_columns: dict[str, str] = Field(
        default_factory=dict, description="Its columns tagged as Safe Harbor identifiers, with their letters."
    )


class GovernanceRecord(_Record):
    """One published governance run of the model, with what its facets say."""

    run_id: str
    job: str
    completed: str
    source: str = Field(description="The source dataset read, as a URI.")
    governed: list[str] = Field(description="The governed datasets written, as URIs.")
    policy_name: str | None
    policy_version: int | None
    policy_digest: str | None
    purpose: str | None = Field(description="The purpose of this use, as the policy names it.")
    recipient: str | None
    method: str | None = Field(description="The de-identification route.")
    zip3_vintage: str | None
    pseudonymized: bool = Field(description="Whether a pseudonym key was used (its fingerprint recorded).")
    consent_registry: str | None
    consent_as_of: str | None
    date_rule: str | None
    purpose_codes: list[str] | None
    consent_bases: list[str]
    rows_read: int | None
    rows_admitted: int | None
    rows_excluded: dict[str, int]
    admitted_rows_by_basis: dict[str, int] | None
    admitted_subjects_by_basis: dict[str, int] | None
    subject_manifest: bool = Field(description="Whether the run wrote a subject manifest for revocations.")
    published_columns: int
    undeclared_dropped: list[str] = Field(description="Columns the policy did not declare, dropped.")
    residual_findings: int = Field(description="Identifier values found left in published columns.")
    risk: dict[str, Any] | None = Field(description="Re-identification risk figures; None when not recorded.")
    safe_harbor: dict[str, Any] | None = Field(description="The Safe Harbor verdict; None when not recorded.")
    records: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="The other de-identification records of the run (expert determination, data use "
        "agreement, ZIP3 list, date shift, surrogate mapping), by name, as figures.",
    )


class DownstreamRun(_Record):
    """A run that read a governed dataset and wrote something from it, such as the training."""

    run_id: str
    job: str
    completed: str
    read_from: str | None = Field(description="The governance run whose output it read.")
    wrote: list[str] = Field(description="Its output datasets, as URIs.")


class Assertion(_Record):
    """One expectation of a validation run, met or not; never a value it observed."""

    assertion: str
    column: str | None
    success: bool


class ValidationRecord(_Record):
    """The assertions one validation run recorded on one governed dataset."""

    run_id: str
    job: str
    time: str
    event_type: str
    dataset: str
    assertions: list[Assertion]

    @property
    def failed(self) -> list[Assertion]:
        """The assertions that were not met."""
        return [assertion for assertion in self.assertions if not assertion.success]


class Datasheet(_Record):
    """The training-data datasheet of one model."""

    model: AuditedModel
    sources: list[SourceDataset]
    governance_runs: list[GovernanceRecord]
    downstream_runs: list[DownstreamRun]
    reached: list[ReachedColumn]
    stopped: list[StoppedColumn]
    validations: list[ValidationRecord]
    refused_runs: list[str]
    policy_digests: list[str]
    gaps: list[str] = Field(description="What the events do not record, or record as a shortcoming.")


def build_datasheet(
    events: Iterable[Mapping[str, Any]], model_name: str, model_version: str | None = None
) -> Datasheet:
    """The datasheet of a model, from the events of its runs.

    :param events: OpenLineage events: an event log, or what the archive gives for the model.
    :param model_name: the model, as policies name it.
    :param model_version: its version; every version when None.
    :raises ModelNotInLineageError: no governance run in the events names the model.
    """
    events = list(events)
    audit = audit_model(events, model_name, model_version)
    if not audit.known:
        version = f" version {model_version}" if model_version else ""
        raise ModelNotInLineageError(
            f"no governance run in these events names model {model_name}{version}: there is nothing to "
            "document; check the name and version, or the event log or archive"
        )

    governance_ids = {run.run_id if run.role == "governance" else run.read_from for run in audit.runs}
    records, sources = _governance_records(events, governance_ids)
    governed = {uri for record in records for uri in record.governed}
    downstream = _downstream_runs(events, [run for run in audit.runs if run.role == "consumer"])
    validations = _validations(events, governed)
    sheet = Datasheet(
        model=audit.model,
        sources=sources,
        governance_runs=records,
        downstream_runs=downstream,
        reached=audit.reached,
        stopped=audit.stopped,
        validations=validations,
        refused_runs=audit.refused_runs,
        policy_digests=audit.policy_digests,
        gaps=[],
    )
    return sheet.model_copy(update={"gaps": _gaps(sheet, audit, governed)})


def _governance_records(
    events: Sequence[Mapping[str, Any]], run_ids: set[str | None]
) -> tuple[list[GovernanceRecord], list[SourceDataset]]:
    records: dict[str, GovernanceRecord] = {}
    sources: dict[str, SourceDataset] = {}
    for event in events:
        run_id = _text(_get(event, "run", "runId"))
        policy = _get(event, "run", "facets", POLICY_FACET)
        if (
            run_id not in run_ids
            or _get(event, "eventType") != "COMPLETE"
            or _get(policy, "verdict") != "published"
        ):
            continue
        consent = _get(event, "run", "facets", CONSENT_FACET)
        outputs = [
            output for output in _list(_get(event, "outputs")) if _get(output, "facets", COLUMNS_FACET)
        ]
        facets = [_get(output, "facets", COLUMNS_FACET) for output in outputs]
        source_key = next((key for f in facets if (key := dataset_key(_get(f, "sourceDataset")))), None)
        source = dataset_uri(*source_key) if source_key else ""
        for dataset in _list(_get(event, "inputs")):
            key = dataset_key(dataset)
            if key is not None and dataset_uri(*key) == source:
                sources.setdefault(source, _source_dataset(source, dataset))
        sources.setdefault(source, SourceDataset(uri=source, columns=None))
        registry = dataset_key(_get(consent, "registry"))
        deidentification = _get(event, "run", "facets", DEIDENTIFICATION_FACET)
        records[run_id] = GovernanceRecord(
            run_id=run_id,
            job=_job(event),
            completed=_text(_get(event, "eventTime")) or "",
            source=source,
            governed=sorted({dataset_uri(*key) for output in outputs if (key := dataset_key(output))}),
            policy_name=_text(_get(policy, "name")),
            policy_version=_count(_get(policy, "version")),
            policy_digest=_text(_get(policy, "digest")),
            purpose=_text(_get(policy, "purpose")),
            recipient=_text(_get(policy, "recipient")),
            method=_text(_get(policy, "method")),
            zip3_vintage=_text(_get(policy, "zip3Vintage")),
            pseudonymized=_text(_get(policy, "pseudonymKeyFingerprint")) is not None,
            consent_registry=dataset_uri(*registry) if registry else None,
            consent_as_of=_text(_get(consent, "asOf")) or _text(_get(policy, "asOf")),
            date_rule=_text(_get(consent, "dateRule")),
            purpose_codes=_names(_get(consent, "purposeCodes")),
            consent_bases=_names(_get(policy, "consentBases")) or _names(_get(consent, "bases")) or [],
            rows_read=_count(_get(consent, "rowsRead")),
            rows_admitted=_count(_get(consent, "rowsAdmitted")),
            rows_excluded=_count_map(_get(consent, "excluded")) or {},
            admitted_rows_by_basis=_count_map(_get(consent, "admittedRowsByBasis")),
            admitted_subjects_by_basis=_count_map(_get(consent, "admittedSubjectsByBasis")),
            subject_manifest=isinstance(_get(consent, "manifest"), Mapping),
            published_columns=sum(len(_list(_get(f, "columns"))) for f in facets),
            undeclared_dropped=sorted(
                name
                for f in facets
                for entry in _list(_get(f, "dropped"))
                if _get(entry, "declared") is False and (name := _text(_get(entry, "source")))
            ),
            residual_findings=sum(
                _count(_get(finding, "count")) or 0 for f in facets for finding in _list(_get(f, "findings"))
            ),
            risk=_figures(
                _get(deidentification, "risk"), _get(policy, "risk"), _get(event, "run", "facets", RISK_FACET)
            ),
            safe_harbor=_figures(_get(deidentification, "safeHarbor"), _get(policy, "safeHarbor")),
            records={
                name: figures
                for name in _DEIDENTIFICATION_RECORDS
                if (figures := _figures(_get(deidentification, name), _get(policy, name))) is not None
            },
        )
    ordered = sorted(records.values(), key=lambda record: (record.completed, record.run_id))
    return ordered, [sources[uri] for uri in sorted(sources)]


def _source_dataset(uri: str, dataset: Any) -> SourceDataset:
    fields = _get(dataset, "facets", "schema", "fields")
    tags = _list(_get(dataset, "facets", "tags", "tags"))
    identifiers = {
        name: letter
        for tag in tags
        if _get(tag, "key") == "safe-harbor-identifier"
        and (name := _text(_get(tag, "field")))
        and (letter := _text(_get(tag, "value")))
    }
    return SourceDataset(
        uri=uri, columns=len(fields) if isinstance(fields, list) else None, identifier_columns=identifiers
    )


def _downstream_runs(events: Sequence[Mapping[str, Any]], runs: Sequence[AuditRun]) -> list[DownstreamRun]:
    wanted = {run.run_id: run for run in runs}
    wrote: dict[str, list[str]] = {}
    for event in events:
        run_id = _text(_get(event, "run", "runId"))
        if run_id in wanted and _get(event, "eventType") == "COMPLETE":
            keys = [key for key in map(dataset_key, _list(_get(event, "outputs"))) if key]
            wrote[run_id] = sorted({dataset_uri(*key) for key in keys})
    return [
        DownstreamRun(
            run_id=run.run_id,
            job=run.job,
            completed=run.event_time,
            read_from=run.read_from,
            wrote=wrote.get(run.run_id, []),
        )
        for run in runs
    ]


def _validations(events: Sequence[Mapping[str, Any]], governed: set[str]) -> list[ValidationRecord]:
    # One record per validation run and dataset, from its closing event. The archive's model query returns
    # the closing events of every reader of the model's governed sets, validations (which write nothing)
    # included, so an archive gives the same records as the log.
    found: dict[tuple[str, str], ValidationRecord] = {}
    for event in events:
        run_id = _text(_get(event, "run", "runId"))
        if run_id is None or _get(event, "eventType") not in ("COMPLETE", "FAIL"):
            continue
        for dataset in _list(_get(event, "inputs")):
            key = dataset_key(dataset)
            facet = _get(dataset, "inputFacets", "dataQualityAssertions")
            if key is None or dataset_uri(*key) not in governed or not isinstance(facet, Mapping):
                continue
            assertions = [
                Assertion(
                    assertion=name,
                    column=_text(_get(entry, "column")),
                    success=_get(entry, "success") is True,
                )
                for entry in _list(_get(facet, "assertions"))
                if (name := _text(_get(entry, "assertion")))
            ]
            found[(run_id, dataset_uri(*key))] = ValidationRecord(
                run_id=run_id,
                job=_job(event),
                time=_text(_get(event, "eventTime")) or "",
                event_type=str(_get(event, "eventType")),
                dataset=dataset_uri(*key),
                assertions=assertions,
            )
    return sorted(found.values(), key=lambda record: (record.time, record.run_id))


def _gaps(sheet: Datasheet, audit: ModelAudit, governed: set[str]) -> list[str]:
    gaps = [
        "The original purpose for which the source data was collected is not recorded in the events "
        "(Article 10(2)(b)); it has to be stated by the data's controller.",
        "No examination of possible biases is recorded in the events (Article 10(2)(f) and (g)); consent "
        "admission and the column allowlist select data, which may change the population's composition.",
    ]
    for record in sheet.governance_runs:
        run = f"governance run {record.run_id}"
        if record.rows_read and record.rows_admitted is not None:
            excluded = record.rows_read - record.rows_admitted
            share = 100 * excluded / record.rows_read
            gaps.append(
                f"{run} excluded {excluded} of {record.rows_read} rows ({share:.1f}%) by consent; whether "
                "the excluded records differ from the admitted ones is not recorded."
            )
        if record.risk is None:
            gaps.append(f"{run}: re-identification risk figures are {NOT_RECORDED}.")
        status = (record.safe_harbor or {}).get("status")
        if record.method == "safe-harbor" and status != "met":
            gaps.append(
                f"{run}: the Safe Harbor verdict is {status or NOT_RECORDED}; the method is the one the "
                "policy declares."
            )
        if record.method == "expert-determination" and "expertDetermination" not in record.records:
            gaps.append(f"{run}: the expert determination the method rests on is {NOT_RECORDED}.")
        if record.method == "limited-data-set" and "dataUseAgreement" not in record.records:
            gaps.append(f"{run}: the data use agreement a limited data set needs is {NOT_RECORDED}.")
        if record.admitted_rows_by_basis is None or record.admitted_subjects_by_basis is None:
            gaps.append(f"{run}: admitted rows and subjects per consent basis are {NOT_RECORDED}.")
        if not record.subject_manifest:
            gaps.append(
                f"{run} wrote no subject manifest: the effect of a later consent revocation on this model "
                "cannot be answered for it."
            )
        if record.undeclared_dropped:
            gaps.append(
                f"{run} dropped {len(record.undeclared_dropped)} column(s) its policy did not declare: "
                + ", ".join(record.undeclared_dropped)
                + "."
            )
    validated = {validation.dataset for validation in sheet.validations}
    for dataset in sorted(governed - validated):
        gaps.append(f"No validation result is recorded for the governed dataset {dataset}.")
    for validation in sheet.validations:
        if validation.failed:
            gaps.append(
                f"Validation run {validation.run_id} of {validation.dataset} recorded "
                f"{len(validation.failed)} unmet expectation(s)."
            )
    if not sheet.downstream_runs:
        gaps.append(
            "No run that read a governed dataset and wrote something (a training run) is recorded: the "
            "events show what was prepared for the model, not that it was trained on it."
        )
    if audit.refused_runs:
        gaps.append(
            f"{len(audit.refused_runs)} governance run(s) for this model were refused and reached nothing: "
            + ", ".join(audit.refused_runs)
            + "."
        )
    return gaps


# Rendering.

#: ASCII punctuation that Markdown may read as inline syntax (emphasis, code, links, raw HTML, entities,
#: table cells); each is escaped with a backslash in text from events, so that a name can neither format
#: the page nor, through HTML, inject anything. Text from events never starts a line, so block syntax
#: (list markers, headings) needs no escape.
_MARKDOWN_SPECIAL = set("\\`*_{}[]<>#|~!&")


def md(text: Any) -> str:
    """Text from an event made inert in Markdown (and in the HTML rendered from it).

    :param text: any value; None becomes a dash.
    """
    if text is None:
        return "\\-"
    value = str(text).replace("\r", " ").replace("\n", " ")
    return "".join(f"\\{char}" if char in _MARKDOWN_SPECIAL else char for char in value)


def _table(headings: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(md(heading) for heading in headings) + " |"]
    lines.append("|" + "|".join(" --- " for _ in headings) + "|")
    lines += ["| " + " | ".join(md(_cell(cell)) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _cell(value: Any) -> Any:
    if isinstance(value, Mapping):
        # "; " between figures: a figure's own text (a source's title, say) may hold commas
        return "; ".join(f"{key}: {each}" for key, each in sorted(value.items())) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    if value is None:
        return NOT_RECORDED
    return value


def _letter(letter: str | None) -> str:
    if letter is None:
        return "none"
    try:
        return f"{letter} ({SafeHarborIdentifier(letter).description})"
    except ValueError:
        return letter


def _model_name(sheet: Datasheet) -> str:
    version = f" version {sheet.model.version}" if sheet.model.version is not None else ""
    return f"{sheet.model.name}{version}"


def render_markdown(sheet: Datasheet) -> str:
    """The datasheet as Markdown.

    :param sheet: from :func:`build_datasheet`.
    """
    out = [f"# Training data of model {md(_model_name(sheet))}", "", f"*{md(DISCLAIMER)}*", ""]

    out += ["## 1. Provenance", ""]
    out += ["Annex IV(2)(d): provenance of the training data; Article 10(2)(b): origin of the data.", ""]
    out += ["Source datasets:", ""]
    out += _table(
        ("dataset", "columns", "identifier columns"),
        (
            (
                source.uri,
                source.columns,
                ", ".join(f"{name} {letter}" for name, letter in sorted(source.identifier_columns.items()))
                or "none tagged",
            )
            for source in sheet.sources
        ),
    )
    out += ["Governance runs, which wrote the governed datasets from the sources:", ""]
    out += _table(
        ("run", "job", "completed", "source", "governed dataset", "policy", "policy digest"),
        (
            (
                record.run_id,
                record.job,
                record.completed,
                record.source,
                record.governed,
                f"{record.policy_name} version {record.policy_version}",
                record.policy_digest,
            )
            for record in sheet.governance_runs
        ),
    )
    if sheet.downstream_runs:
        out += ["Downstream runs, which read a governed dataset and wrote from it (training):", ""]
        out += _table(
            ("run", "job", "completed", "read the output of", "wrote"),
            ((run.run_id, run.job, run.completed, run.read_from, run.wrote) for run in sheet.downstream_runs),
        )
    else:
        out += ["Downstream runs: none recorded.", ""]

    out += ["## 2. Purpose", ""]
    out += [
        f"Original purpose of collection (Article 10(2)(b)): **{md(NOT_RECORDED)}**: the events do not say "
        "for what purpose the source data was collected.",
        "",
    ]
    out += _table(
        ("run", "purpose of this use", "consent purpose codes", "recipient"),
        (
            (record.run_id, record.purpose, record.purpose_codes, record.recipient)
            for record in sheet.governance_runs
        ),
    )

    out += ["## 3. Preparation steps and treatments", ""]
    out += [
        "Article 10(2)(c): data-preparation processing operations; Annex IV(2)(d): selection, cleaning.",
        "",
    ]
    for record in sheet.governance_runs:
        out += [f"Governance run {md(record.run_id)}:", ""]
        out += [
            f"1. Consent admission: rows of the source admitted when a consent record of an accepted basis "
            f"({md(', '.join(record.consent_bases) or 'none')}) covered the purpose at "
            f"{md(record.consent_as_of or NOT_RECORDED)} (date rule {md(record.date_rule or NOT_RECORDED)}).",
            f"2. Minimum necessary: {record.published_columns} column(s) published, each declared with a "
            f"justification in policy {md(record.policy_name)} version {md(record.policy_version)}; "
            f"every other column dropped.",
            f"3. Treatments per column, listed below (ZIP3 vintage {md(record.zip3_vintage or NOT_RECORDED)}"
            + ("; keyed pseudonyms" if record.pseudonymized else "")
            + ").",
            f"4. Value scan of kept text for identifiers: {record.residual_findings} finding(s) in the "
            "published set.",
            "",
        ]
    out += ["Columns that reached the model:", ""]
    out += _table(
        ("source dataset", "source column", "identifier", "treatment", "output column"),
        (
            (
                column.dataset,
                column.column,
                _letter(column.identifier),
                column.treatment,
                column.output_column,
            )
            for column in sheet.reached
        ),
    )
    out += ["Columns stopped before the model:", ""]
    out += (
        _table(
            ("source dataset", "source column", "identifier"),
            ((column.dataset, column.column, _letter(column.identifier)) for column in sheet.stopped),
        )
        if sheet.stopped
        else ["None.", ""]
    )

    out += ["## 4. Consent bases and counts", ""]
    out += _table(
        (
            "run",
            "bases accepted",
            "judged at",
            "registry",
            "rows read",
            "rows admitted",
            "rows excluded by reason",
            "admitted rows by basis",
            "admitted subjects by basis",
        ),
        (
            (
                record.run_id,
                record.consent_bases,
                record.consent_as_of,
                record.consent_registry,
                record.rows_read,
                record.rows_admitted,
                record.rows_excluded,
                record.admitted_rows_by_basis,
                record.admitted_subjects_by_basis,
            )
            for record in sheet.governance_runs
        ),
    )

    out += ["## 5. De-identification method and risk", ""]
    out += _table(
        ("run", "method", "Safe Harbor verdict", "re-identification risk"),
        ((record.run_id, record.method, record.safe_harbor, record.risk) for record in sheet.governance_runs),
    )
    for record in sheet.governance_runs:
        if record.records:
            out += [f"Records of governance run {md(record.run_id)}:", ""]
            out += [
                f"- {md(name)}: " + "; ".join(f"{md(key)}: {md(value)}" for key, value in figures.items())
                for name, figures in record.records.items()
            ]
            out += [""]

    out += ["## 6. Validation results", ""]
    if not sheet.validations:
        out += [f"Validation: **{md(NOT_RECORDED)}** in these events.", ""]
    for validation in sheet.validations:
        met = len(validation.assertions) - len(validation.failed)
        out += [
            f"Validation run {md(validation.run_id)} ({md(validation.job)}, {md(validation.event_type)} at "
            f"{md(validation.time)}) of {md(validation.dataset)}: {met} of {len(validation.assertions)} "
            "expectation(s) met.",
            "",
        ]
        out += _table(
            ("expectation", "column", "met"),
            (
                (assertion.assertion, assertion.column or "table", "yes" if assertion.success else "no")
                for assertion in validation.assertions
            ),
        )

    out += ["## 7. Known gaps", "", "Article 10(2)(h): data gaps and shortcomings.", ""]
    out += [f"- {md(gap)}" for gap in sheet.gaps]
    out += ["", f"Policy digests: {md(', '.join(sheet.policy_digests) or NOT_RECORDED)}", ""]
    return "\n".join(out)


def render_html(sheet: Datasheet, events: Iterable[Mapping[str, Any]] | None = None) -> str:
    """The datasheet as an offline HTML page: the Markdown rendered with raw HTML disabled, and the
    lineage graph of the model when the events are given.

    :param sheet: from :func:`build_datasheet`.
    :param events: the events the datasheet was built from, for the graph; no graph when None.
    """
    from markdown_it import MarkdownIt

    from airflow_phi_guard.lineage import html

    # "html": False makes raw HTML in the text inert; every string from events is escaped before anyway.
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = [renderer.render(render_markdown(sheet))]
    if events is not None:
        audit = audit_model(events, sheet.model.name, sheet.model.version)
        body.append(html.graph_section(html.lineage_graph(list(events), audit)))
    return html.page(f"Training data of model {_model_name(sheet)}", body)


def _names(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [name for name in value if isinstance(name, str)]


def _figures(*candidates: Any) -> dict[str, Any] | None:
    """The first mapping among the candidates, flattened one level to scalar figures and lists of names."""
    for candidate in candidates:
        if not isinstance(candidate, Mapping):
            continue
        figures: dict[str, Any] = {}
        # sorted: an archive gives JSONB's key order, a log the producer's, and both must read the same
        for key, value in sorted(candidate.items(), key=lambda entry: str(entry[0])):
            if not isinstance(key, str) or key.startswith("_"):
                continue
            inner = (
                sorted(value.items(), key=lambda e: str(e[0]))
                if isinstance(value, Mapping)
                else [("", value)]
            )
            for sub, each in inner:
                name = f"{key}.{sub}" if sub else key
                if each is None or isinstance(each, int | float | str | bool):
                    figures[name] = each
                elif isinstance(each, list) and all(isinstance(item, str | int | float) for item in each):
                    figures[name] = ", ".join(map(str, each)) or "none"
                elif isinstance(each, list):
                    # a list of findings (Safe Harbor breaches, say): each by its column and letter only
                    figures[name] = ", ".join(_item(item) for item in each) or "none"
        return figures
    return None


def _item(item: Any) -> str:
    if isinstance(item, Mapping):
        named = [str(item[key]) for key in ("column", "identifier") if isinstance(item.get(key), str)]
        scalars = [
            f"{key} {value}"
            for key, value in sorted(item.items(), key=lambda entry: str(entry[0]))
            if isinstance(key, str) and isinstance(value, str | int | float) and not isinstance(value, bool)
        ]
        return " ".join(named) or " ".join(scalars) or "1 entry"
    return str(item) if isinstance(item, str | int | float) else "1 entry"


def _job(event: Mapping[str, Any]) -> str:
    namespace, name = _text(_get(event, "job", "namespace")), _text(_get(event, "job", "name"))
    return f"{namespace}/{name}" if namespace and name else name or ""
