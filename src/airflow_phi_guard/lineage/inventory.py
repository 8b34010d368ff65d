"""OpenLineage facets of a PHI scan: the scanned dataset as input, carrying the inventory of its identifiers.

Nothing here reads data: every name, letter, detector name and rate comes from the :class:`ScanReport`,
so no cell value can reach a lineage event. A scan publishes no dataset (its report is a file, not data),
so its lineage has an input and no output.

What a scan's events say:

- START: the dataset to be scanned, with no facets, since nothing is known of it yet.
- COMPLETE, or FAIL after a scan that finished: the dataset with its ``schema``, a ``tags`` entry per
  identifier column (with ``field``, as on a governance run's source), and ``phiGuard_inventory``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pyarrow as pa
from openlineage.client.event_v2 import InputDataset
from openlineage.client.facet_v2 import DatasetFacet, schema_dataset, tags_dataset

from airflow_phi_guard.lineage.build import TAG_SOURCE, RunLineage, schema_facet
from airflow_phi_guard.lineage.datasets import dataset_identity
from airflow_phi_guard.lineage.facets import (
    INVENTORY_FACET,
    PRODUCER,
    PhiGuardInventoryColumn,
    PhiGuardInventoryDatasetFacet,
    PhiGuardInventoryEvidence,
)

if TYPE_CHECKING:
    from airflow_phi_guard.phi.inventory import ColumnVerdict, ScanReport

#: The key of a column's ``tags`` entry: the same as on a governance run's source, so that a lineage
#: server shows one tag whichever of the two runs described the dataset last.
IDENTIFIER_TAG = "safe-harbor-identifier"


def inventory_lineage_for_start(input_path: str | os.PathLike[str]) -> RunLineage:
    """The lineage of a scan's START event: the dataset to be scanned, bare.

    :param input_path: the dataset to be scanned (path or URI).
    """
    identity = dataset_identity(input_path)
    return RunLineage(inputs=[InputDataset(namespace=identity.namespace, name=identity.name)])


def inventory_lineage(report: ScanReport, *, input_schema: pa.Schema | None = None) -> RunLineage:
    """The lineage of a finished scan: its input with ``schema``, ``tags`` and ``phiGuard_inventory``.

    :param report: the scan report.
    :param input_schema: the scanned dataset's schema, for field types in the ``schema`` facet; without it
        the facet lists the report's columns without types.
    """
    identity = dataset_identity(report.input)
    facets: dict[str, DatasetFacet] = {"schema": _schema(report, input_schema)}
    tags = _tags(report)
    if tags is not None:
        facets["tags"] = tags
    facets[INVENTORY_FACET] = inventory_facet(report)
    return RunLineage(inputs=[InputDataset(namespace=identity.namespace, name=identity.name, facets=facets)])


def inventory_facet(report: ScanReport) -> PhiGuardInventoryDatasetFacet:
    """The ``phiGuard_inventory`` facet of a scan report: each column's verdict and evidence, no value.

    :param report: the scan report.
    """
    return PhiGuardInventoryDatasetFacet(
        rowsScanned=report.rows_scanned,
        sampleRows=report.sample_rows,
        columns=[_column(verdict) for verdict in report.columns],
    )


def _column(verdict: ColumnVerdict) -> PhiGuardInventoryColumn:
    # Evidence keeps its source, detector name, letter, confidence and rate; its match count stays in
    # the report, as the rate already says how much of the column matched.
    return PhiGuardInventoryColumn(
        name=verdict.column,
        identifier=verdict.identifier.letter if verdict.identifier is not None else None,
        confidence=verdict.confidence.value if verdict.confidence is not None else None,
        runnerUp=verdict.runner_up.letter if verdict.runner_up is not None else None,
        evidence=[
            PhiGuardInventoryEvidence(
                source=evidence.source,
                detector=evidence.detector,
                identifier=evidence.identifier.letter,
                confidence=evidence.confidence.value if evidence.confidence is not None else None,
                rate=evidence.rate,
            )
            for evidence in verdict.evidence
        ],
    )


def _schema(report: ScanReport, input_schema: pa.Schema | None) -> schema_dataset.SchemaDatasetFacet:
    if input_schema is not None:
        return schema_facet(input_schema)
    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(name=verdict.column, ordinal_position=position)
            for position, verdict in enumerate(report.columns, start=1)
        ],
        producer=PRODUCER,
    )


def _tags(report: ScanReport) -> tags_dataset.TagsDatasetFacet | None:
    tags = [
        tags_dataset.TagsDatasetFacetFields(
            key=IDENTIFIER_TAG, value=verdict.identifier.letter, source=TAG_SOURCE, field=verdict.column
        )
        for verdict in report.columns
        if verdict.identifier is not None
    ]
    return tags_dataset.TagsDatasetFacet(tags=tags, producer=PRODUCER) if tags else None
