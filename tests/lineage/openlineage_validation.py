"""Validation of OpenLineage events against the official JSON Schemas and phi-guard's facet schemas, offline.

The official schemas are the copy in ``tests/openlineage_spec`` (see its SOURCE.md); the facet schemas
refer to the core by its full ``$id`` URL, so every document is registered under its ``$id`` in one
``referencing.Registry`` and nothing is fetched. phi-guard's own schemas come from the installed package.

:func:`validate_event` checks the envelope against the core ``RunEvent`` (or ``JobEvent``/``DatasetEvent``)
and then every facet found in the run, the job, and each input and output dataset against the schema its
``_schemaURL`` names, when that schema is one of the local documents. A facet whose schema is not local
(the Airflow provider's own facets, say) is returned as unchecked rather than guessed at; a ``phiGuard_``
facet must always resolve to a shipped schema.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from airflow_phi_guard.lineage.facets import facet_schemas

SPEC = Path(__file__).resolve().parents[1] / "openlineage_spec"
CORE_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
CUSTOM_PREFIX = "phiGuard_"


class EventValidationError(AssertionError):
    """An event, or one of its facets, breaks its schema; the message says where."""


@cache
def schema_documents() -> dict[str, dict[str, Any]]:
    """Every local schema document by its ``$id``: the core, the official facets, and phi-guard's."""
    documents = {}
    for path in [SPEC / "OpenLineage.json", *sorted((SPEC / "facets").glob("*.json"))]:
        document = json.loads(path.read_text(encoding="utf-8"))
        documents[document["$id"]] = document
    documents.update(facet_schemas())
    return documents


@cache
def schema_registry() -> Registry:
    """A registry that resolves every local ``$id``, so that no reference goes to the network."""
    resources = [
        (uri, Resource.from_contents(doc, default_specification=DRAFT202012))
        for uri, doc in schema_documents().items()
    ]
    return Registry().with_resources(resources)


def _format_checker() -> FormatChecker:
    # jsonschema checks "date-time" and "uri" only with optional packages this project does not install;
    # the spec relies on both (eventTime, producer, _schemaURL), so they are checked here with the stdlib.
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if "T" not in value.upper():
            raise ValueError("a date-time needs a time")
        datetime.fromisoformat(value)
        return True

    @checker.checks("date", raises=ValueError)
    def _date(value: object) -> bool:
        if isinstance(value, str):
            date.fromisoformat(value)
        return True

    @checker.checks("uri")
    def _uri(value: object) -> bool:
        return not isinstance(value, str) or bool(urllib.parse.urlsplit(value).scheme)

    return checker


@cache
def _validator(schema_url: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": schema_url}, registry=schema_registry(), format_checker=_format_checker()
    )


def is_local_schema(schema_url: str) -> bool:
    """Whether the document a ``_schemaURL`` points into is one of the local schemas."""
    return urllib.parse.urldefrag(schema_url).url in schema_documents()


def validate_instance(instance: Any, schema_url: str, where: str) -> None:
    """Validate one value against the (local) schema a URL with a JSON-pointer fragment names.

    :param instance: the value, e.g. a facet.
    :param schema_url: e.g. ``https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet``.
    :param where: how error messages name the value, e.g. ``outputs[0].facets.schema``.
    :raises EventValidationError: the value breaks the schema.
    """
    errors = sorted(_validator(schema_url).iter_errors(instance), key=lambda error: list(error.absolute_path))
    if errors:
        details = "; ".join(
            f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}" for error in errors[:5]
        )
        raise EventValidationError(f"{where} breaks {schema_url}: {details}")


def _facets(event: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """Every facet of an event as (location, key, facet)."""
    for owner in ("run", "job"):
        for key, facet in (event.get(owner, {}).get("facets") or {}).items():
            yield f"{owner}.facets.{key}", key, facet
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for index, dataset in enumerate(event.get(side) or []):
            for group in ("facets", extra):
                for key, facet in (dataset.get(group) or {}).items():
                    yield f"{side}[{index}].{group}.{key}", key, facet


def validate_event(event: Mapping[str, Any]) -> list[str]:
    """Validate an event's envelope and every facet whose schema is local.

    :param event: one OpenLineage event, as parsed from JSON.
    :returns: the locations of facets left unchecked because their schema is not local.
    :raises EventValidationError: the envelope or a facet breaks its schema, a facet's key is not the
        name its schema gives it, or a ``phiGuard_`` facet does not point to a shipped schema.
    """
    kind = urllib.parse.urldefrag(str(event.get("schemaURL", ""))).fragment.rpartition("/")[2]
    envelope = kind if kind in ("RunEvent", "JobEvent", "DatasetEvent") else "RunEvent"
    validate_instance(event, f"{CORE_ID}#/$defs/{envelope}", "event")

    unchecked = []
    for where, key, facet in _facets(event):
        schema_url = facet.get("_schemaURL", "") if isinstance(facet, Mapping) else ""
        if not is_local_schema(schema_url):
            if key.startswith(CUSTOM_PREFIX):
                raise EventValidationError(
                    f"{where}: _schemaURL {schema_url!r} is not a shipped phi-guard schema"
                )
            unchecked.append(where)
            continue
        validate_instance(facet, schema_url, where)
        # A facet schema names the key the facet takes in an event (its top-level "properties").
        names = schema_documents()[urllib.parse.urldefrag(schema_url).url].get("properties", {})
        if names and key not in names:
            raise EventValidationError(
                f"{where}: a {schema_url} facet is named {', '.join(names)}, not {key}"
            )
    return unchecked


def validate_event_lines(path: str | Path) -> list[dict[str, Any]]:
    """Validate every event of a JSON-lines event log; returns the parsed events.

    :param path: the event log.
    :raises EventValidationError: an event breaks its schema (named by its line).
    """
    events = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        event = json.loads(line)
        try:
            validate_event(event)
        except EventValidationError as error:
            raise EventValidationError(f"{path}:{number}: {error}") from None
        events.append(event)
    return events


def assert_valid_schema_documents() -> None:
    """Check that every local schema document is itself valid JSON Schema 2020-12."""
    for uri, document in schema_documents().items():
        try:
            Draft202012Validator.check_schema(document)
        except jsonschema.SchemaError as error:
            raise EventValidationError(f"{uri} is not valid JSON Schema 2020-12: {error.message}") from None


def run_event(lineage: Any, state: Any, job_name: str) -> dict[str, Any]:
    """The JSON of a RunEvent carrying ``lineage`` (a RunLineage or an OperatorLineage), as the client
    would send it: for tests that validate what an operator's lineage methods return."""
    from openlineage.client.event_v2 import Job, Run, RunEvent
    from openlineage.client.serde import Serde

    from airflow_phi_guard.lineage.emit import new_run_id

    event = RunEvent(
        eventType=state,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=new_run_id(), facets=lineage.run_facets),
        job=Job(namespace="test", name=job_name, facets=lineage.job_facets),
        inputs=lineage.inputs,
        outputs=lineage.outputs,
        producer="https://github.com/airflow-phi-guard/airflow-phi-guard",
    )
    return Serde.to_dict(event)
