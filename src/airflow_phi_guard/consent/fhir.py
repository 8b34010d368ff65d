"""Reading FHIR R4 ``Consent`` resources, as bulk-export NDJSON, into a table in the consent registry format.

One JSON resource per line (``.ndjson``, or gzip-compressed ``.ndjson.gz``; any fsspec URL). Every
resource either becomes registry rows (the columns of
:data:`~airflow_phi_guard.consent.registry.REGISTRY_COLUMNS`), is skipped and counted because it grants
no permission the product can use, or makes the whole file malformed. :data:`FHIR_MAPPING` states the
mapping element by element; ``docs/consent-fhir-mapping.md`` is the same table with its sources.

The table then goes through :func:`~airflow_phi_guard.consent.registry.registry_from_table`, which applies
the registry's own rules (known purposes, dates, contradictory duplicates).

Fail closed, leak nothing: a file with any malformed line is refused as a whole with
:class:`~airflow_phi_guard.exceptions.ConsentRegistryError`, whose reasons give counts per problem and at
most ten line numbers, never a value: no patient id, no reference, no JSON excerpt. ``json`` errors quote
the text they failed on, so they are never chained.

Why no FHIR model library: ``fhir.resources`` 8.3.0 (pydantic models) ships R5, R4B and STU3 but no R4
4.0.1 package, and on this project's 2-core machine it validated 3,000 to 4,400 Consent resources a second
(1 million in 4 to 5 minutes, before any mapping), against 12,000 to 30,000 a second for this whole
reader, table included. Its validation would not replace the checks here either: it accepts the
restrictions, nested shapes and partial dates that the mapping must refuse. So the reader checks exactly
the elements it maps, with the FHIR R4 regular expressions for ``date``, ``dateTime`` and ``id``, and
refuses every element that would change the meaning of a permission (``modifierExtension``, provision
restrictions) instead of skipping it. Other elements (``text``, ``policy``, ``verification``...) are not
read.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any, NamedTuple

import pyarrow as pa

from airflow_phi_guard.consent.purposes import PURPOSE_OF_USE_SYSTEM
from airflow_phi_guard.exceptions import ConsentRegistryError, ConsentRegistryUnavailableError
from airflow_phi_guard.policy.models import ConsentBasis

log = logging.getLogger(__name__)

#: The code system of ``Consent.scope`` (R4 binding: required, to the value set consent-scope).
CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
#: The code systems whose category codes mark a privacy consent as access for research.
V3_ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONSENT_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"

#: Where :func:`read_fhir_consents` puts its counts, in the table's schema metadata (JSON).
COUNTS_METADATA_KEY = b"phi_guard.fhir_consent_counts"

#: How many line numbers a reason names at most.
MAX_LINES_NAMED = 10


class MappingRow(NamedTuple):
    """One row of the FHIR mapping: a FHIR element and value, and what the registry makes of it."""

    element: str
    value: str
    registry: str


#: The mapping of FHIR R4 Consent onto registry rows, in the order the reader applies it.
FHIR_MAPPING: tuple[MappingRow, ...] = (
    MappingRow("resourceType", "Consent", "read; anything else refuses the file"),
    MappingRow("status", "active", "in force: revoked_at empty"),
    MappingRow(
        "status",
        "inactive",
        "a grant: revoked_at = granted_at (never admits); an opt-out: "
        "revoked_at = the date of meta.lastUpdated, or empty (still in force) without it",
    ),
    MappingRow("status", "draft, proposed, rejected, entered-in-error", "skipped, counted per status"),
    MappingRow("status", "missing or any other value", "refuses the file"),
    MappingRow("patient.reference", "Patient/<id> (optionally /_history/<version>)", "subject_id = <id>"),
    MappingRow(
        "patient.identifier",
        "system S, value V",
        "subject_id = V when the reader is given identifier_system=S; otherwise refuses the file",
    ),
    MappingRow("patient", "missing, absolute URL, urn: or other resource type", "refuses the file"),
    MappingRow("scope", "research, provision.type permit", "basis research-authorization"),
    MappingRow(
        "scope",
        "patient-privacy with category RESEARCH or RSREID (v3-ActCode) or research or "
        "rsreid (consentcategorycodes), provision.type permit",
        "basis research-authorization",
    ),
    MappingRow(
        "scope",
        "patient-privacy, permit, with category RSDID or rsdid",
        "skipped: covers de-identified research only, which the product cannot check",
    ),
    MappingRow(
        "scope", "patient-privacy, permit, no research category", "skipped: no permission the product knows"
    ),
    MappingRow(
        "scope",
        "research or patient-privacy, provision.type deny",
        "basis opt-out: excludes from every use, even when provision.purpose names some",
    ),
    MappingRow(
        "scope",
        "treatment, provision.type permit",
        "basis treatment-consent (never admits for "
        "training); purposes from provision.purpose, or TREAT when none",
    ),
    MappingRow("scope", "treatment, provision.type deny", "skipped: a refusal of care"),
    MappingRow("scope", "adr (advance directive)", "skipped: actions of care, not a use of records"),
    MappingRow("scope", "missing, other system or code, or two different codes", "refuses the file"),
    MappingRow("provision.type", "missing or other than permit/deny", "refuses the file"),
    MappingRow(
        "provision.period.start",
        "a date or dateTime with a day",
        "granted_at, its calendar date as written (no time-zone conversion)",
    ),
    MappingRow("dateTime", "a dateTime with a day", "granted_at when provision.period.start is absent"),
    MappingRow(
        "provision.period.start, dateTime",
        "both absent, or a date without a day (2024, 2024-03)",
        "refuses the file",
    ),
    MappingRow(
        "provision.period.end",
        "a date or dateTime with a day",
        "expires_at, calendar date as written; before granted_at refuses the file",
    ),
    MappingRow("provision.purpose", "Coding of system v3-ActReason, code C", "C in purposes"),
    MappingRow(
        "provision.purpose", "Coding of any other system, or without system or code", "refuses the file"
    ),
    MappingRow(
        "provision.purpose",
        "none, on a research or privacy permit",
        "skipped: permits no purpose the product can match",
    ),
    MappingRow(
        "provision.provision",
        "under a permit: deny provisions with only type and purpose",
        "those purposes are removed from the permit's purposes",
    ),
    MappingRow(
        "provision.provision",
        "under a deny: permit provisions with only type, purpose and period",
        "one grant per nested permit (period intersected with the deny's), no opt-out",
    ),
    MappingRow("provision.provision", "any other shape, or nested more than one level", "refuses the file"),
    MappingRow(
        "provision.actor, action, securityLabel, class, code, dataPeriod, data",
        "present (research or privacy scope)",
        "refuses the file: a restriction the product cannot represent",
    ),
    MappingRow("modifierExtension", "present on the resource or a provision", "refuses the file"),
    MappingRow(
        "id", "<id>", "reference = Consent/<id>; a nested permit's row adds ' provision.provision[<i>]'"
    ),
)

_DATE = re.compile(
    r"(?P<year>[0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
    r"(-(?P<month>0[1-9]|1[0-2])(-(?P<day>0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?"
    r")?)?"
)
_PATIENT_REFERENCE = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?")
_RESOURCE_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

_SKIPPED_STATUSES = frozenset({"draft", "proposed", "rejected", "entered-in-error"})
_SCOPES = frozenset({"adr", "research", "patient-privacy", "treatment"})
_RESEARCH_CATEGORIES = frozenset(
    {
        (V3_ACT_CODE_SYSTEM, "RESEARCH"),
        (V3_ACT_CODE_SYSTEM, "RSREID"),
        (CONSENT_CATEGORY_SYSTEM, "research"),
        (CONSENT_CATEGORY_SYSTEM, "rsreid"),
    }
)
_DEIDENTIFIED_RESEARCH_CATEGORIES = frozenset(
    {(V3_ACT_CODE_SYSTEM, "RSDID"), (CONSENT_CATEGORY_SYSTEM, "rsdid")}
)
# Elements of a provision that narrow it to some actors, actions, data or labels: the product admits or
# excludes whole rows for a purpose, so it cannot represent them, and ignoring them would misread the
# permission (a permit for one recipient would read as a permit for all).
_RESTRICTIONS = ("actor", "action", "securityLabel", "class", "code", "dataPeriod", "data")
_PROVISION_KEYS = frozenset(
    {"id", "extension", "type", "period", "purpose", "provision", *_RESTRICTIONS, "modifierExtension"}
)
_BATCH_ROWS = 65_536

# Problem kinds that refuse the file, with the sentence that describes them.
_PROBLEMS: Mapping[str, str] = {
    "not-utf8": "are not UTF-8 text",
    "invalid-json": "are not valid JSON",
    "not-an-object": "are not a JSON object",
    "wrong-resource-type": "are not a Consent resource (resourceType)",
    "status-missing": "have no status",
    "status-unknown": "have a status outside draft, proposed, active, rejected, inactive, entered-in-error",
    "patient-missing": "have no patient",
    "patient-unreadable": "have a patient that is not a relative Patient/<id> reference",
    "patient-identifier": "name the patient by identifier only, of a system the reader was not given "
    "(pass identifier_system to read them)",
    "scope-missing": "have no scope of the consentscope code system",
    "scope-unknown": "have a scope code outside adr, research, patient-privacy, treatment",
    "scope-conflicting": "have two different scope codes",
    "category-malformed": "have a malformed category",
    "provision-missing": "have no provision or no provision.type",
    "provision-malformed": "have a malformed provision (an element of the wrong JSON type or unknown)",
    "provision-type-unknown": "have a provision.type other than permit or deny",
    "provision-restricted": "restrict a provision by actor, action, securityLabel, class, code, dataPeriod "
    "or data, which the product cannot represent",
    "provision-nested-shape": "nest provisions in a shape the product cannot represent (a permit may "
    "hold denies of purposes only; a deny may hold permits of purposes and periods only)",
    "provision-nested-deep": "nest provisions more than one level deep",
    "modifier-extension": "carry a modifierExtension, which changes the meaning of what it modifies",
    "purpose-system": "list a provision.purpose without code, or of a system other than "
    f"{PURPOSE_OF_USE_SYSTEM}",
    "date-missing": "have neither provision.period.start nor dateTime",
    "date-partial": "have a date without a day (a year, or a year and month)",
    "date-invalid": "have a date or dateTime that is not valid FHIR",
    "end-before-start": "have provision.period.end before the start",
    "updated-before-start": "are inactive opt-outs whose meta.lastUpdated is before their start",
    "id-malformed": "have an id that is not a FHIR id",
}


class _MalformedError(Exception):
    """One problem of one resource line; carries its kind only, never the value."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Record(NamedTuple):
    basis: ConsentBasis
    purposes: tuple[str, ...]
    granted_at: date
    expires_at: date | None
    is_grant: bool
    reference_suffix: str


def read_fhir_consents(path: str | os.PathLike[str], *, identifier_system: str | None = None) -> pa.Table:
    """Read FHIR R4 Consent resources from NDJSON into a table in the registry format.

    The table has the columns of :data:`~airflow_phi_guard.consent.registry.REGISTRY_COLUMNS`; its schema
    metadata holds, under :data:`COUNTS_METADATA_KEY`, the counts of resources read, rows made and
    resources skipped per reason (:func:`fhir_counts` reads them back).

    :param path: an ``.ndjson`` file (``.gz`` compressed or not), local or an fsspec URL.
    :param identifier_system: the identifier system whose values are the dataset's subject ids; a
        ``patient`` given only as a logical reference with this system is read as that value. Without
        it, a patient given by identifier only refuses the file.
    :raises ConsentRegistryError: the file is missing or any line is malformed; counts and line numbers
        only.
    :raises ConsentRegistryUnavailableError: the file exists but cannot be read (storage failure).
    """
    source = os.fspath(path)
    builder = _TableBuilder()
    problems: dict[str, list[int]] = {}
    skipped: Counter[str] = Counter()
    resources = 0

    for number, line in _lines(source):
        if line is not None and not line.strip():
            continue
        resources += 1
        try:
            if line is None:
                raise _MalformedError("not-utf8")
            outcome = _read_resource(line, identifier_system)
        except _MalformedError as problem:
            problems.setdefault(problem.kind, []).append(number)
            continue
        if isinstance(outcome, str):
            skipped[outcome] += 1
        elif not problems:
            # Once the file is refused, rows are no longer kept: only the problems are counted.
            builder.extend(outcome)

    if problems:
        raise ConsentRegistryError(list(_describe(source, problems)))

    counts = {"resources": resources, "rows": builder.rows, "skipped": dict(sorted(skipped.items()))}
    log.info(
        "FHIR consent file %s: %d resource(s), %d registry row(s), %d skipped %s",
        source,
        resources,
        builder.rows,
        sum(skipped.values()),
        counts["skipped"],
    )
    table = builder.table()
    return table.replace_schema_metadata({COUNTS_METADATA_KEY: json.dumps(counts).encode()})


def fhir_counts(table: pa.Table) -> dict[str, Any]:
    """The counts :func:`read_fhir_consents` stored in a table: resources, rows, skipped per reason.

    :param table: a table that :func:`read_fhir_consents` returned.
    """
    metadata = table.schema.metadata or {}
    return json.loads(metadata[COUNTS_METADATA_KEY]) if COUNTS_METADATA_KEY in metadata else {}


def _lines(source: str) -> Iterator[tuple[int, str | None]]:
    """The lines of the file with their 1-based numbers; a line that is not UTF-8 comes as None text."""
    import fsspec

    try:
        opened = fsspec.open(source, "rb", compression="infer")
        stream = opened.open()
    except FileNotFoundError:
        raise ConsentRegistryError(
            [f"FHIR consent file {source} does not exist, so no record can be admitted; check its path"]
        ) from None
    except (OSError, ValueError) as error:
        raise ConsentRegistryUnavailableError(source, type(error).__name__) from None
    try:
        with stream:
            for number, raw in enumerate(stream, start=1):
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield number, None
    except (OSError, EOFError) as error:
        # A truncated gzip member or a storage failure mid-read: the error's class only.
        raise ConsentRegistryUnavailableError(source, type(error).__name__) from None


def _read_resource(line: str, identifier_system: str | None) -> list[tuple[Any, ...]] | str:
    """The registry rows of one line, or the reason it is skipped; raises :class:`_MalformedError`."""
    try:
        resource = json.loads(line)
    except ValueError:
        # JSONDecodeError's message quotes the document: never chained, never shown.
        raise _MalformedError("invalid-json") from None
    if not isinstance(resource, dict):
        raise _MalformedError("not-an-object")
    if resource.get("resourceType") != "Consent":
        raise _MalformedError("wrong-resource-type")
    if "modifierExtension" in resource:
        raise _MalformedError("modifier-extension")

    status = resource.get("status")
    if status is None:
        raise _MalformedError("status-missing")
    if status not in _SKIPPED_STATUSES | {"active", "inactive"}:
        raise _MalformedError("status-unknown")
    subject_id = _subject_id(resource.get("patient"), identifier_system)
    reference = _reference(resource.get("id"))
    if status in _SKIPPED_STATUSES:
        return f"status-{status}"

    scope = _scope(resource.get("scope"))
    provision = resource.get("provision")
    if not isinstance(provision, dict) or "type" not in provision:
        raise _MalformedError("provision-missing")
    kind = provision["type"]
    if kind not in ("permit", "deny"):
        raise _MalformedError("provision-type-unknown")
    if scope == "adr":
        return "scope-adr"
    if scope == "treatment":
        return _treatment(resource, provision, status, subject_id, reference)

    records = _records(resource, provision, scope)
    if isinstance(records, str):
        return records
    return [_row(subject_id, reference, record, status, resource) for record in records]


def _subject_id(patient: object, identifier_system: str | None) -> str:
    if patient is None:
        raise _MalformedError("patient-missing")
    if not isinstance(patient, dict):
        raise _MalformedError("patient-unreadable")
    literal = patient.get("reference")
    if literal is not None:
        match = _PATIENT_REFERENCE.fullmatch(literal) if isinstance(literal, str) else None
        if match is None:
            raise _MalformedError("patient-unreadable")
        return match.group(1)
    identifier = patient.get("identifier")
    if identifier is None:
        raise _MalformedError("patient-missing")
    if not isinstance(identifier, dict):
        raise _MalformedError("patient-unreadable")
    value = identifier.get("value")
    if identifier_system is None or identifier.get("system") != identifier_system:
        raise _MalformedError("patient-identifier")
    if not isinstance(value, str) or not value.strip():
        raise _MalformedError("patient-unreadable")
    return value.strip()


def _reference(resource_id: object) -> str | None:
    if resource_id is None:
        return None
    if not isinstance(resource_id, str) or not _RESOURCE_ID.fullmatch(resource_id):
        raise _MalformedError("id-malformed")
    return f"Consent/{resource_id}"


def _codings(concept: object, kind: str) -> list[tuple[object, object]]:
    """The (system, code) pairs of a CodeableConcept."""
    if not isinstance(concept, dict):
        raise _MalformedError(kind)
    codings = concept.get("coding", [])
    if not isinstance(codings, list) or not all(isinstance(coding, dict) for coding in codings):
        raise _MalformedError(kind)
    return [(coding.get("system"), coding.get("code")) for coding in codings]


def _scope(scope: object) -> str:
    if scope is None:
        raise _MalformedError("scope-missing")
    codes = {code for system, code in _codings(scope, "scope-missing") if system == CONSENT_SCOPE_SYSTEM}
    if not codes:
        raise _MalformedError("scope-missing")
    if len(codes) > 1:
        raise _MalformedError("scope-conflicting")
    (code,) = codes
    if code not in _SCOPES:
        raise _MalformedError("scope-unknown")
    return str(code)


def _categories(resource: Mapping[str, Any]) -> set[tuple[object, object]]:
    categories = resource.get("category", [])
    if not isinstance(categories, list):
        raise _MalformedError("category-malformed")
    found: set[tuple[object, object]] = set()
    for concept in categories:
        found.update(_codings(concept, "category-malformed"))
    return found


def _treatment(
    resource: Mapping[str, Any],
    provision: Mapping[str, Any],
    status: str,
    subject_id: str,
    reference: str | None,
) -> list[tuple[Any, ...]] | str:
    """A treatment consent: a permit is kept as ``treatment-consent`` (which never admits); a deny skipped."""
    if provision["type"] == "deny":
        return "treatment-deny"
    # Its restrictions (the procedure, the performer) are not read: the record can never admit, so
    # reading them could not change a decision.
    purposes = _purposes(provision.get("purpose")) or ("TREAT",)
    granted_at, expires_at = _period(provision, resource)
    record = _Record(ConsentBasis.TREATMENT_CONSENT, purposes, granted_at, expires_at, True, "")
    return [_row(subject_id, reference, record, status, resource)]


def _records(resource: Mapping[str, Any], provision: Mapping[str, Any], scope: str) -> list[_Record] | str:
    """The records of a research or privacy consent, or the reason it is skipped."""
    _check_provision(provision)
    nested = provision.get("provision", [])
    if not isinstance(nested, list) or not all(isinstance(item, dict) for item in nested):
        raise _MalformedError("provision-malformed")
    for item in nested:
        _check_provision(item)
        if "provision" in item:
            raise _MalformedError("provision-nested-deep")
        if item.get("type") not in ("permit", "deny"):
            raise _MalformedError("provision-type-unknown")

    granted_at, expires_at = _period(provision, resource)
    if provision["type"] == "deny":
        if not nested:
            # Kept as written, but an opt-out objects to every use: a deny of one purpose excludes the
            # subject from all of them (fail closed; the product has no per-purpose objection).
            purposes = _purposes(provision.get("purpose"))
            return [_Record(ConsentBasis.OPT_OUT, purposes, granted_at, expires_at, False, "")]
        return _exceptions_of_deny(resource, nested, granted_at, expires_at, scope)

    basis = _grant_basis(resource, scope)
    if not isinstance(basis, ConsentBasis):
        return basis
    purposes = _purposes(provision.get("purpose"))
    for item in nested:
        if item["type"] != "deny" or set(item) - {"id", "extension", "type", "purpose"}:
            raise _MalformedError("provision-nested-shape")
        denied = _purposes(item.get("purpose"))
        if not denied:
            raise _MalformedError("provision-nested-shape")
        purposes = tuple(code for code in purposes if code not in denied)
    if not purposes:
        return "permit-without-purpose"
    return [_Record(basis, purposes, granted_at, expires_at, True, "")]


def _exceptions_of_deny(
    resource: Mapping[str, Any], nested: list[dict[str, Any]], start: date, end: date | None, scope: str
) -> list[_Record] | str:
    """A deny that holds permits: "nothing but these", read as the grants of its permits alone."""
    basis = _grant_basis(resource, scope)
    for item in nested:
        if item["type"] != "permit" or set(item) - {"id", "extension", "type", "purpose", "period"}:
            raise _MalformedError("provision-nested-shape")
    if not isinstance(basis, ConsentBasis):
        return basis
    records: list[_Record] = []
    for position, item in enumerate(nested):
        purposes = _purposes(item.get("purpose"))
        if not purposes:
            continue
        item_start, item_end = _period(item, None, default_start=start)
        # The permit holds only while the deny around it does: the two periods intersect.
        granted_at = max(start, item_start)
        ends = [value for value in (end, item_end) if value is not None]
        expires_at = min(ends) if ends else None
        if expires_at is not None and expires_at < granted_at:
            raise _MalformedError("end-before-start")
        records.append(
            _Record(basis, purposes, granted_at, expires_at, True, f" provision.provision[{position}]")
        )
    return records or "permit-without-purpose"


def _grant_basis(resource: Mapping[str, Any], scope: str) -> ConsentBasis | str:
    """The basis of a permit by scope and category, or the reason it grants nothing the product knows."""
    categories = _categories(resource)
    if scope == "research":
        return ConsentBasis.RESEARCH_AUTHORIZATION
    if categories & _DEIDENTIFIED_RESEARCH_CATEGORIES:
        # Access to de-identified records only: the narrower reading wins over any research category.
        return "privacy-deidentified-research-only"
    if categories & _RESEARCH_CATEGORIES:
        return ConsentBasis.RESEARCH_AUTHORIZATION
    return "privacy-permit-not-research"


def _check_provision(provision: Mapping[str, Any]) -> None:
    unknown = set(provision) - _PROVISION_KEYS
    if unknown:
        raise _MalformedError("provision-malformed")
    if "modifierExtension" in provision:
        raise _MalformedError("modifier-extension")
    if any(name in provision for name in _RESTRICTIONS):
        raise _MalformedError("provision-restricted")


def _purposes(purposes: object) -> tuple[str, ...]:
    """The PurposeOfUse codes of a ``provision.purpose`` list, in order, without repeats."""
    if purposes is None:
        return ()
    if not isinstance(purposes, list) or not all(isinstance(coding, dict) for coding in purposes):
        raise _MalformedError("provision-malformed")
    codes: list[str] = []
    for coding in purposes:
        code = coding.get("code")
        if coding.get("system") != PURPOSE_OF_USE_SYSTEM or not isinstance(code, str) or not code.strip():
            raise _MalformedError("purpose-system")
        if code not in codes:
            codes.append(code)
    return tuple(codes)


def _period(
    provision: Mapping[str, Any], resource: Mapping[str, Any] | None, default_start: date | None = None
) -> tuple[date, date | None]:
    """``granted_at`` and ``expires_at`` of a provision: its period, else the resource's dateTime."""
    period = provision.get("period", {})
    if not isinstance(period, dict):
        raise _MalformedError("provision-malformed")
    start = _calendar_date(period.get("start"))
    if start is None and resource is not None:
        start = _calendar_date(resource.get("dateTime"))
    if start is None:
        start = default_start
    if start is None:
        raise _MalformedError("date-missing")
    end = _calendar_date(period.get("end"))
    if end is not None and end < start:
        raise _MalformedError("end-before-start")
    return start, end


def _calendar_date(value: object) -> date | None:
    """The calendar date of a FHIR date or dateTime as written: no time-zone conversion."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _MalformedError("date-invalid")
    match = _DATE.fullmatch(value)
    if match is None:
        raise _MalformedError("date-invalid")
    if match.group("day") is None:
        # FHIR allows a year or a year and month; which day a permission starts on would be a guess.
        raise _MalformedError("date-partial")
    try:
        return date(int(match.group("year")), int(match.group("month")), int(match.group("day")))
    except ValueError:
        raise _MalformedError("date-invalid") from None


def _row(
    subject_id: str, reference: str | None, record: _Record, status: str, resource: Mapping[str, Any]
) -> tuple[Any, ...]:
    """One registry row; an inactive resource is dated by the rule of :data:`FHIR_MAPPING`."""
    revoked_at: date | None = None
    if status == "inactive":
        if record.is_grant:
            # FHIR R4 has no revocation date, and meta.lastUpdated may be later than the revocation:
            # a grant of an inactive consent is read as revoked from its start, so no backfill admits it.
            revoked_at = record.granted_at
        else:
            # An objection withdrawn at an unknown date stays in force until the last update, which is
            # no earlier than the withdrawal: it excludes at least as long as it really did.
            meta = resource.get("meta", {})
            if not isinstance(meta, dict):
                raise _MalformedError("date-invalid")
            revoked_at = _calendar_date(meta.get("lastUpdated"))
            if revoked_at is not None and revoked_at < record.granted_at:
                raise _MalformedError("updated-before-start")
    row_reference = None if reference is None else reference + record.reference_suffix
    return (
        subject_id,
        record.basis.value,
        list(record.purposes),
        record.granted_at,
        record.expires_at,
        revoked_at,
        row_reference,
    )


_SCHEMA = pa.schema(
    [
        ("subject_id", pa.string()),
        ("basis", pa.string()),
        ("purposes", pa.list_(pa.string())),
        ("granted_at", pa.date32()),
        ("expires_at", pa.date32()),
        ("revoked_at", pa.date32()),
        ("reference", pa.string()),
    ]
)


class _TableBuilder:
    """Rows gathered into Arrow batches of bounded size, so that Python objects do not pile up."""

    def __init__(self) -> None:
        self._pending: list[tuple[Any, ...]] = []
        self._batches: list[pa.RecordBatch] = []
        self.rows = 0

    def extend(self, rows: list[tuple[Any, ...]]) -> None:
        self._pending.extend(rows)
        self.rows += len(rows)
        if len(self._pending) >= _BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            columns = list(zip(*self._pending, strict=True))
            arrays = [pa.array(values, field.type) for values, field in zip(columns, _SCHEMA, strict=True)]
            self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=_SCHEMA))
            self._pending = []

    def table(self) -> pa.Table:
        self._flush()
        return pa.Table.from_batches(self._batches, schema=_SCHEMA)


def _describe(source: str, problems: Mapping[str, list[int]]) -> Iterator[str]:
    """One reason per problem kind: a count and at most :data:`MAX_LINES_NAMED` line numbers."""
    for kind in _PROBLEMS:
        lines = problems.get(kind)
        if not lines:
            continue
        shown = ", ".join(str(number) for number in lines[:MAX_LINES_NAMED])
        more = f" and {len(lines) - MAX_LINES_NAMED} more" if len(lines) > MAX_LINES_NAMED else ""
        yield (
            f"FHIR consent file {source} is malformed: {len(lines)} line(s) {_PROBLEMS[kind]} "
            f"(line {shown}{more}); fix or remove them"
        )
