"""OpenLineage datasets and facets of a governance run, built from its governance report and policy only.

Nothing here reads data: every name, letter and count comes from the :class:`GovernanceReport` (and, for
the START event, from the :class:`Policy`), so no cell value can reach a lineage event. The result is a
:class:`RunLineage`, which the CLI turns into events (:mod:`airflow_phi_guard.lineage.emit`) and the
operators into the Airflow OpenLineage provider's ``OperatorLineage``.

What a run's events say:

- START: the policy facet (no verdict yet) and the de-identification facet with the method the policy
  claims, since some lineage servers keep only a run's first event; the source and consent registry as
  inputs; the intended output with the ``tags`` of its method, ``ownership`` and ``documentation``.
- COMPLETE, verdict published: the policy, consent and de-identification facets; the source with its
  ``schema`` and ``tags`` (Safe Harbor letter per column); the governed dataset with ``schema``,
  ``columnLineage`` (``masking`` where a treatment changed the values, consent as a dataset-level
  INDIRECT FILTER on the subject column and the registry), ``tags``, ``ownership``, ``documentation``
  and ``phiGuard_columns``.
- verdict refused (a FAIL event): everything the run decided before it stopped: the policy facet with
  the refusals, the consent facet with the counts so far, the de-identification facet with its verdict
  and risk, the inputs with their facets, and no output at all. The report of a refused run names no
  output, since nothing was published; listing the intended path, even bare, would tell a lineage graph
  that a dataset exists.
- A validation run: the governed dataset as input with ``dataQualityAssertions`` and a ``documentation``
  facet linking the Data Docs.

``ownership`` names the policy's recipient (type ``RECIPIENT``): the policy names no other party.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    DatasetFacet,
    JobFacet,
    RunFacet,
    column_lineage_dataset,
    data_quality_assertions_dataset,
    documentation_dataset,
    ownership_dataset,
    schema_dataset,
    tags_dataset,
)

from airflow_phi_guard.consent.registry import REGISTRY_COLUMNS
from airflow_phi_guard.lineage.datasets import DatasetIdentity, dataset_identity
from airflow_phi_guard.lineage.facets import (
    COLUMNS_FACET,
    CONSENT_FACET,
    DEIDENTIFICATION_FACET,
    POLICY_FACET,
    PRODUCER,
    TRAIL_FACET,
    PhiGuardColumnsDatasetFacet,
    PhiGuardConsentRunFacet,
    PhiGuardDatasetReference,
    PhiGuardDeidentificationRunFacet,
    PhiGuardDroppedColumn,
    PhiGuardFinding,
    PhiGuardModel,
    PhiGuardOutputColumn,
    PhiGuardPolicyRunFacet,
    PhiGuardSubjectManifest,
    PhiGuardTrailRunFacet,
)
from airflow_phi_guard.policy.models import Policy, Treatment
from airflow_phi_guard.report import ColumnDecision, GovernanceReport
from airflow_phi_guard.trail.chain import TrailHead

if TYPE_CHECKING:
    from airflow_phi_guard.quality.validate import ValidationSummary

log = logging.getLogger(__name__)

#: The source of the ``tags`` this package sets, as the tags facets ask for it.
TAG_SOURCE = "PHI_GUARD"

#: The registry columns whose values decide admission (the free-text ``reference`` decides nothing).
_ADMISSION_COLUMNS = tuple(column for column in REGISTRY_COLUMNS if column != "reference")


@dataclass(frozen=True)
class RunLineage:
    """What one event of a governance run carries besides its envelope.

    :param inputs: the source dataset, then the consent registry when there is one.
    :param outputs: the governed dataset, or nothing when the run published nothing.
    :param run_facets: the ``phiGuard_*`` run facets by key.
    :param job_facets: job facets by key: none here, since the CLI's emitter adds ``jobType`` and the
        Airflow provider its own.
    """

    inputs: list[InputDataset] = field(default_factory=list)
    outputs: list[OutputDataset] = field(default_factory=list)
    run_facets: dict[str, RunFacet] = field(default_factory=dict)
    job_facets: dict[str, JobFacet] = field(default_factory=dict)


def lineage_for_start(
    policy: Policy,
    *,
    input_path: str | os.PathLike[str] | None = None,
    output_path: str | os.PathLike[str] | None = None,
    consent_registry: str | os.PathLike[str] | None = None,
    as_of: date | None = None,
    input_schema: pa.Schema | None = None,
) -> RunLineage:
    """The lineage of a START event: the policy, without a verdict, and the datasets the run will touch.

    :param policy: the policy the run enforces.
    :param input_path: the source dataset (path or URI), when known.
    :param output_path: where the governed dataset is to be published, when known.
    :param consent_registry: the consent registry (path or URI), when there is one.
    :param as_of: the reference date of consent and ages, when known.
    :param input_schema: the source schema, for the ``schema`` facet of the input.
    """
    inputs = []
    if input_path is not None:
        facets = {"schema": schema_facet(input_schema)} if input_schema is not None else {}
        inputs.append(InputDataset(**_identity(dataset_identity(input_path)), facets=facets))
    if consent_registry is not None:
        inputs.append(InputDataset(**_identity(dataset_identity(consent_registry))))
    outputs = []
    if output_path is not None:
        method = policy.deidentification.method.value
        outputs.append(
            OutputDataset(
                **_identity(dataset_identity(output_path)),
                facets=_intended_facets(
                    policy.name, policy.version, policy.model.name, method, policy.recipient
                ),
            )
        )

    run_facets: dict[str, RunFacet] = {
        POLICY_FACET: PhiGuardPolicyRunFacet(
            name=policy.name,
            version=policy.version,
            digest=policy.digest,
            purpose=policy.purpose,
            model=PhiGuardModel(name=policy.model.name, version=policy.model.version),
            recipient=policy.recipient,
            method=policy.deidentification.method.value,
            zip3Vintage=policy.deidentification.zip3_vintage.value,
            consentBases=[basis.value for basis in policy.consent.bases],
            asOf=as_of.isoformat() if as_of is not None else None,
        ),
        # The claim only: the verdict and the risk are known at the end of the run.
        DEIDENTIFICATION_FACET: PhiGuardDeidentificationRunFacet(method=policy.deidentification.method.value),
    }
    return RunLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)


def _intended_facets(
    name: str, version: int, model: str, method: str, recipient: str
) -> dict[str, DatasetFacet]:
    """The governed dataset's ``tags``, ``ownership`` and ``documentation``, from the policy's names."""
    return {
        "tags": _method_tags(method),
        "ownership": ownership_dataset.OwnershipDatasetFacet(
            owners=[ownership_dataset.Owner(name=f"recipient:{recipient}", type="RECIPIENT")],
            producer=PRODUCER,
        ),
        "documentation": documentation_dataset.DocumentationDatasetFacet(
            description=(
                f"Governed training dataset of policy `{name}` version {version} for model `{model}`: "
                f"minimum-necessary columns of consented records, de-identified by {method}. "
                "The phiGuard_columns facet lists each column's treatment."
            ),
            contentType="text/markdown",
            producer=PRODUCER,
        ),
    }


def _method_tags(method: str) -> tags_dataset.TagsDatasetFacet:
    return tags_dataset.TagsDatasetFacet(
        tags=[tags_dataset.TagsDatasetFacetFields(key="deidentification", value=method, source=TAG_SOURCE)],
        producer=PRODUCER,
    )


def lineage_for_report(
    report: GovernanceReport,
    policy: Policy,
    *,
    input_schema: pa.Schema | None = None,
    output_schema: pa.Schema | None = None,
    trail: PhiGuardTrailRunFacet | None = None,
) -> RunLineage:
    """The lineage of a COMPLETE or FAIL event, from what the run decided.

    :param trail: the run's record in the audit trail (:func:`trail_facet`), when one was configured.

    :param report: the governance report of the run.
    :param policy: the policy the run enforced; used for the subject column, whose consent filtered rows.
        If its digest is not the report's (the file changed since), the report alone is trusted.
    :param input_schema: the source schema, for the ``schema`` facet of the input; without it the facet
        lists the report's source columns without types.
    :param output_schema: the governed dataset's schema; without it the facet takes the source type of a
        kept column and no type for a treated one.
    """
    source = dataset_identity(report.input)
    registry = dataset_identity(report.consent_registry) if report.consent_registry is not None else None
    subject = policy.subject if policy.digest == report.policy.digest else None
    if subject is None:
        log.warning(
            "policy %s digest %s differs from the report's %s; lineage is built from the report alone",
            policy.name,
            policy.digest,
            report.policy.digest,
        )

    inputs = [InputDataset(**_identity(source), facets=_source_facets(report, input_schema))]
    if registry is not None:
        inputs.append(InputDataset(**_identity(registry)))

    outputs = []
    if report.published and report.output is not None:
        governed = dataset_identity(report.output)
        outputs.append(
            OutputDataset(
                **_identity(governed),
                facets=_governed_facets(report, source, registry, subject, input_schema, output_schema),
            )
        )

    run_facets: dict[str, RunFacet] = {
        POLICY_FACET: _policy_facet(report),
        CONSENT_FACET: _consent_facet(report, registry),
        DEIDENTIFICATION_FACET: deidentification_facet(report),
    }
    if trail is not None:
        run_facets[TRAIL_FACET] = trail
    return RunLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)


def trail_facet(trail: str, head: TrailHead) -> PhiGuardTrailRunFacet:
    """The ``phiGuard_trail`` facet: the trail and the sequence and digest of the run's record in it.

    :param trail: the trail's display name (a path, or a URL without password).
    :param head: the run's record, as the trail returned it.
    """
    return PhiGuardTrailRunFacet(trail=trail, sequence=head.sequence, digest=head.digest)


def deidentification_facet(report: GovernanceReport) -> PhiGuardDeidentificationRunFacet:
    """The ``phiGuard_deidentification`` facet of a run: the report's de-identification blocks, camelCased.

    :param report: the governance report of the run.
    """
    return PhiGuardDeidentificationRunFacet(
        method=report.method.value,
        safeHarbor=_camel(report.safe_harbor.model_dump(mode="json")) if report.safe_harbor else None,
        risk=_camel(report.risk.model_dump(mode="json")) if report.risk else None,
        zip3=_camel(dict(report.zip3)) if report.zip3 else None,
        dateShift=_camel(report.date_shift.model_dump(mode="json")) if report.date_shift else None,
        surrogateMapping=(
            _camel(report.surrogate_mapping.model_dump(mode="json")) if report.surrogate_mapping else None
        ),
        expertDetermination=(
            _camel(report.expert_determination.model_dump(mode="json"))
            if report.expert_determination
            else None
        ),
        dataUseAgreement=(
            _camel(report.data_use_agreement.model_dump(mode="json")) if report.data_use_agreement else None
        ),
    )


def _camel(value: object) -> object:
    """A report block with its keys in the camelCase of the facet schemas (``k_min`` becomes ``kMin``)."""
    if isinstance(value, dict):
        return {_camel_key(key): _camel(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_camel(item) for item in value]
    return value


def _camel_key(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def validation_lineage(
    dataset: str | os.PathLike[str], summary: ValidationSummary, *, data_docs_url: str | None = None
) -> RunLineage:
    """The lineage of a validation run: the governed dataset as input, with one assertion per expectation.

    The assertions go into the standard ``dataQualityAssertions`` input facet. Only the expectation, its
    column and whether it was met are recorded; never an observed or expected value, which for a column
    minimum or a regex miss would be a cell value.

    :param dataset: the governed dataset that was validated (path or URI).
    :param summary: the value-free outcome of the validation.
    :param data_docs_url: where the Data Docs of this validation are served; the site's index file by
        default.
    """
    assertions = [
        data_quality_assertions_dataset.Assertion(
            assertion=outcome.expectation_type,
            success=outcome.success,
            column=outcome.column,
            severity="error",
        )
        for outcome in summary.results
    ]
    facet = data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
        assertions=assertions, producer=PRODUCER
    )
    governed = InputDataset(
        **_identity(dataset_identity(dataset)),
        facets={
            "documentation": data_docs_facet(summary.suite_name, data_docs_url or summary.data_docs_index)
        },
        inputFacets={"dataQualityAssertions": facet},
    )
    return RunLineage(inputs=[governed])


def data_docs_facet(suite_name: str, data_docs_index: str) -> documentation_dataset.DocumentationDatasetFacet:
    """The standard ``documentation`` facet linking a validation's Data Docs site.

    :param suite_name: the expectation suite validated.
    :param data_docs_index: the ``index.html`` of the Data Docs site (path or URL).
    """
    link = data_docs_index if "://" in data_docs_index else Path(data_docs_index).resolve().as_uri()
    return documentation_dataset.DocumentationDatasetFacet(
        description=f"Validated by expectation suite `{suite_name}`; Data Docs: <{link}>",
        contentType="text/markdown",
        producer=PRODUCER,
    )


def schema_facet(schema: pa.Schema) -> schema_dataset.SchemaDatasetFacet:
    """The standard ``schema`` facet of an Arrow schema: field names and Arrow types, nested structs included.

    :param schema: the dataset's schema.
    """
    return schema_dataset.SchemaDatasetFacet(fields=_schema_fields(schema), producer=PRODUCER)


def _schema_fields(fields: Iterable[pa.Field]) -> list[schema_dataset.SchemaDatasetFacetFields]:
    return [
        schema_dataset.SchemaDatasetFacetFields(
            name=arrow_field.name,
            type=str(arrow_field.type),
            ordinal_position=position,
            fields=_schema_fields(arrow_field.type) if pa.types.is_struct(arrow_field.type) else None,
        )
        for position, arrow_field in enumerate(fields, start=1)
    ]


def _identity(identity: DatasetIdentity) -> dict[str, str]:
    return {"namespace": identity.namespace, "name": identity.name}


def _reference(identity: DatasetIdentity) -> PhiGuardDatasetReference:
    return PhiGuardDatasetReference(namespace=identity.namespace, name=identity.name)


def _letter(column: ColumnDecision) -> str | None:
    return column.identifier.letter if column.identifier is not None else None


def _published(report: GovernanceReport) -> list[ColumnDecision]:
    return [column for column in report.columns if column.output is not None]


def _policy_facet(report: GovernanceReport) -> PhiGuardPolicyRunFacet:
    return PhiGuardPolicyRunFacet(
        name=report.policy.name,
        version=report.policy.version,
        digest=report.policy.digest,
        purpose=report.purpose,
        model=PhiGuardModel(name=report.model["name"], version=report.model["version"]),
        recipient=report.recipient,
        method=report.method.value,
        zip3Vintage=report.zip3_vintage,
        consentBases=list(report.consent_bases),
        asOf=report.as_of.isoformat(),
        verdict=report.verdict.value,
        refusals=list(report.refusals),
        pseudonymKeyFingerprint=report.pseudonym_key_fingerprint,
    )


def _consent_facet(report: GovernanceReport, registry: DatasetIdentity | None) -> PhiGuardConsentRunFacet:
    return PhiGuardConsentRunFacet(
        asOf=report.as_of.isoformat(),
        bases=list(report.consent_bases),
        registry=_reference(registry) if registry is not None else None,
        manifest=_manifest(report),
        rowsRead=report.rows.read,
        rowsAdmitted=report.rows.admitted,
        excluded=dict(report.rows.excluded),
        **_consent_counts(report),
    )


def _consent_counts(report: GovernanceReport) -> dict[str, object]:
    """The consent block's rules and per-basis counts, for the facet fields added in 1-0-1."""
    consent = report.consent
    if consent is None:
        return {}
    return {
        "admittedRowsByBasis": dict(consent.admitted_rows_by_basis),
        "admittedSubjectsByBasis": dict(consent.admitted_subjects_by_basis),
        "purposeCodes": list(consent.purpose_codes),
        "dateRule": consent.date_rule,
    }


def _manifest(report: GovernanceReport) -> PhiGuardSubjectManifest | None:
    if report.manifest is None or not report.published:
        return None
    return PhiGuardSubjectManifest(
        location=_reference(dataset_identity(report.manifest.path)),
        digest=report.manifest.digest,
        keyFingerprint=report.manifest.key_fingerprint,
        subjects=report.manifest.subjects,
        subjectIds={
            "uuidCase": report.manifest.subject_ids.uuid_case.value,
            "digits": report.manifest.subject_ids.digits.value,
        },
    )


def _source_facets(report: GovernanceReport, input_schema: pa.Schema | None) -> dict[str, DatasetFacet]:
    """The source's ``schema``, and a ``tags`` entry per column that is a Safe Harbor identifier."""
    if input_schema is not None:
        schema = schema_facet(input_schema)
    else:
        schema = schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(name=column.source, ordinal_position=position)
                for position, column in enumerate(report.columns, start=1)
            ],
            producer=PRODUCER,
        )
    tags = [
        tags_dataset.TagsDatasetFacetFields(
            key="safe-harbor-identifier",
            value=column.identifier.letter,
            source=TAG_SOURCE,
            field=column.source,
        )
        for column in report.columns
        if column.identifier is not None
    ]
    facets: dict[str, DatasetFacet] = {"schema": schema}
    if tags:
        facets["tags"] = tags_dataset.TagsDatasetFacet(tags=tags, producer=PRODUCER)
    return facets


def _governed_facets(
    report: GovernanceReport,
    source: DatasetIdentity,
    registry: DatasetIdentity | None,
    subject: str | None,
    input_schema: pa.Schema | None,
    output_schema: pa.Schema | None,
) -> dict[str, DatasetFacet]:
    published = _published(report)
    intended = _intended_facets(
        report.policy.name, report.policy.version, report.model["name"], report.method.value, report.recipient
    )
    return {
        "schema": _governed_schema(published, input_schema, output_schema),
        "columnLineage": _column_lineage(published, source, registry, subject),
        **intended,
        COLUMNS_FACET: PhiGuardColumnsDatasetFacet(
            sourceDataset=_reference(source),
            columns=[
                PhiGuardOutputColumn(
                    name=column.output,
                    source=column.source,
                    identifier=_letter(column),
                    treatment=column.treatment.value,
                )
                for column in published
            ],
            dropped=[
                PhiGuardDroppedColumn(
                    source=column.source, identifier=_letter(column), declared=column.declared
                )
                for column in report.columns
                if column.output is None
            ],
            findings=[
                PhiGuardFinding(
                    column=finding.column, identifier=finding.identifier.letter, count=finding.count
                )
                for finding in report.findings
            ],
        ),
    }


def _governed_schema(
    published: list[ColumnDecision], input_schema: pa.Schema | None, output_schema: pa.Schema | None
) -> schema_dataset.SchemaDatasetFacet:
    if output_schema is not None:
        return schema_facet(output_schema)
    source_types = {arrow_field.name: str(arrow_field.type) for arrow_field in input_schema or []}
    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(
                name=column.output,
                # A treated column's type is the engine's choice; naming none beats guessing one.
                type=source_types.get(column.source) if column.treatment is Treatment.KEEP else None,
                ordinal_position=position,
            )
            for position, column in enumerate(published, start=1)
        ],
        producer=PRODUCER,
    )


def _column_lineage(
    published: list[ColumnDecision],
    source: DatasetIdentity,
    registry: DatasetIdentity | None,
    subject: str | None,
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    """Each output field from its source field; the whole dataset filtered by consent on the subject."""
    fields = {
        column.output: column_lineage_dataset.Fields(
            inputFields=[
                column_lineage_dataset.InputField(
                    **_identity(source),
                    field=column.source,
                    transformations=[
                        column_lineage_dataset.Transformation(
                            type="DIRECT",
                            subtype="IDENTITY" if column.treatment is Treatment.KEEP else "TRANSFORMATION",
                            description=column.treatment.value,
                            masking=column.treatment.changes_values,
                        )
                    ],
                )
            ]
        )
        for column in published
    }

    # Consent admission keeps or drops whole rows by the subject column and the registry's columns:
    # lineage that bears on every output field, which the spec records as INDIRECT FILTER.
    def filtered_by(identity: DatasetIdentity, field_name: str) -> column_lineage_dataset.InputField:
        return column_lineage_dataset.InputField(
            **_identity(identity),
            field=field_name,
            transformations=[
                column_lineage_dataset.Transformation(
                    type="INDIRECT", subtype="FILTER", description="consent admission", masking=False
                )
            ],
        )

    dataset = [filtered_by(source, subject)] if subject is not None else []
    if registry is not None:
        dataset += [filtered_by(registry, column) for column in _ADMISSION_COLUMNS]
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields, dataset=dataset, producer=PRODUCER)
