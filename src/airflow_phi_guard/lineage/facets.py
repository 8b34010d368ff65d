"""The custom OpenLineage facets of phi-guard: policy and consent of a run, output columns, scan inventory.

Each facet is an attrs class on the OpenLineage client's generated base classes, named ``phiGuard_<name>``
in an event, with a versioned JSON Schema shipped beside this module under ``schemas/<SchemaVer>/``; the
facet's ``_schemaURL`` is that schema's ``$id``. Fields are named as they appear in the JSON, which is why
they are camelCase. A facet describes decisions (names, identifier letters, treatments, counts, digests),
never data: nothing here may ever hold a cell value, a row or a subject id.

Redaction: the Airflow OpenLineage provider passes every event through its redactor (the secrets masker),
which replaces any registered secret found in a string and hides values under sensitive-looking keys. A
field whose value has a fixed, value-free shape (a count, a digest, a fingerprint, a letter, an enum, a
date, a column name) is listed in the class's redaction allowlist (``_additional_skip_redact`` on a facet,
``_skip_redact`` on a nested RedactMixin class): the redactor keeps it verbatim, so a secret that happens to
equal, say, a basis name cannot turn the audit's figures into ``***``. Fields that could carry a location
or free text (the registry and manifest datasets, refusals, a mapping store, attestations, agreements) stay
redactable.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, ClassVar

import attr
from openlineage.client.generated.base import DatasetFacet, RunFacet
from openlineage.client.utils import RedactMixin

from airflow_phi_guard import __version__

#: Identifies this package as the producer of a facet or an event: a git URL pinned to the release.
PRODUCER = f"https://github.com/airflow-phi-guard/airflow-phi-guard/tree/{__version__}"

#: Where the facet schemas are published; the path below it mirrors ``schemas/`` in the package.
SCHEMA_BASE_URL = "https://raw.githubusercontent.com/airflow-phi-guard/airflow-phi-guard/main/src/airflow_phi_guard/lineage/schemas/"

POLICY_FACET = "phiGuard_policy"
CONSENT_FACET = "phiGuard_consent"
COLUMNS_FACET = "phiGuard_columns"
INVENTORY_FACET = "phiGuard_inventory"
DEIDENTIFICATION_FACET = "phiGuard_deidentification"
TRAIL_FACET = "phiGuard_trail"


def _schema_url(version: str, name: str) -> str:
    return f"{SCHEMA_BASE_URL}{version}/{name}.json#/$defs/{name}"


class _ProducedByPhiGuard:
    """Makes phi-guard the default producer of a facet, where the client would name itself."""

    __slots__ = ()

    def __attrs_post_init__(self) -> None:
        if not self._producer:
            self._producer = PRODUCER
        super().__attrs_post_init__()


@attr.define(kw_only=True)
class PhiGuardModel(RedactMixin):
    """The model a governed dataset is prepared for."""

    _skip_redact: ClassVar[list[str]] = ["name", "version"]

    name: str
    """Model name, as the training task and the audit know it."""

    version: str
    """Model version, as text."""


@attr.define(kw_only=True)
class PhiGuardDatasetReference(RedactMixin):
    """An OpenLineage dataset, by namespace and name."""

    namespace: str
    """The dataset's namespace, e.g. ``file`` or ``s3://bucket``."""

    name: str
    """The dataset's name within its namespace, e.g. an absolute path or an object key."""


@attr.define(kw_only=True)
class PhiGuardPolicyRunFacet(_ProducedByPhiGuard, RunFacet):
    """The policy a run enforced, and its verdict: key ``phiGuard_policy``."""

    # Not ``refusals``: free text (naming columns and letters, but text all the same).
    _additional_skip_redact: ClassVar[list[str]] = [
        "name",
        "version",
        "digest",
        "purpose",
        "model",
        "recipient",
        "method",
        "zip3Vintage",
        "consentBases",
        "asOf",
        "verdict",
        "pseudonymKeyFingerprint",
    ]

    name: str
    """The policy id."""

    version: int
    """The policy version."""

    digest: str
    """SHA-256 of the policy's content, ``sha256:<hex>``."""

    purpose: str
    """The use the policy permits, matched against consent records' purposes."""

    model: PhiGuardModel
    """The model the governed dataset is prepared for."""

    recipient: str
    """Who receives the governed dataset."""

    method: str
    """The de-identification route: safe-harbor, expert-determination or limited-data-set."""

    zip3Vintage: str  # noqa: N815
    """Census vintage of the restricted ZIP3 prefixes."""

    consentBases: list[str]  # noqa: N815
    """The consent bases the policy accepts."""

    refusals: list[str] = attr.field(factory=list)
    """Why nothing was published, naming columns and identifier letters, never values."""

    asOf: str | None = None  # noqa: N815
    """Reference date of consent and of ages (ISO 8601), or None on a START that does not know it."""

    verdict: str | None = None
    """``published`` or ``refused``; None on START, before the run decided."""

    pseudonymKeyFingerprint: str | None = None  # noqa: N815
    """A keyed fingerprint of the pseudonym key, never the key; None when nothing was pseudonymized."""

    @staticmethod
    def _get_schema() -> str:
        return _schema_url("1-0-0", "PhiGuardPolicyRunFacet")


@attr.define(kw_only=True)
class PhiGuardSubjectManifest(RedactMixin):
    """Where a run's subject manifest (keyed hashes of its admitted subjects) is, and how to check it."""

    # Not ``location``: a path or URL, which is where a secret would be if anywhere.
    _skip_redact: ClassVar[list[str]] = ["digest", "keyFingerprint", "subjects", "subjectIds"]

    location: PhiGuardDatasetReference
    """The manifest file, as an OpenLineage dataset."""

    digest: str
    """SHA-256 of the manifest file, ``sha256:<hex>``."""

    keyFingerprint: str  # noqa: N815
    """A keyed fingerprint of the manifest key, never the key."""

    subjects: int
    """How many distinct admitted subjects the manifest holds."""

    subjectIds: dict[str, str] | None = None  # noqa: N815
    """How subject ids were normalised before hashing (``uuidCase``, ``digits``); None means the default."""


@attr.define(kw_only=True)
class PhiGuardConsentRunFacet(_ProducedByPhiGuard, RunFacet):
    """How consent admitted the rows of a run: key ``phiGuard_consent``."""

    # Not ``registry`` (a location); ``manifest`` is recursed into and keeps its own allowlist.
    _additional_skip_redact: ClassVar[list[str]] = [
        "asOf",
        "bases",
        "rowsRead",
        "rowsAdmitted",
        "excluded",
        "admittedRowsByBasis",
        "admittedSubjectsByBasis",
        "purposeCodes",
        "dateRule",
    ]

    asOf: str  # noqa: N815
    """The date (ISO 8601) at which consent records were judged in force."""

    bases: list[str]
    """The consent bases that admitted a record."""

    rowsRead: int  # noqa: N815
    """Rows read from the source dataset."""

    rowsAdmitted: int  # noqa: N815
    """Rows admitted by consent."""

    excluded: dict[str, int] = attr.field(factory=dict)
    """Rows not admitted, by exclusion reason."""

    registry: PhiGuardDatasetReference | None = None
    """The consent registry read, or None when the run had none."""

    manifest: PhiGuardSubjectManifest | None = None
    """The subject manifest beside the governed dataset, or None when the run wrote none. Added in 1-0-1."""

    admittedRowsByBasis: dict[str, int] | None = None  # noqa: N815
    """Admitted rows per basis of the grant that admitted them. Added in 1-0-1."""

    admittedSubjectsByBasis: dict[str, int] | None = None  # noqa: N815
    """Distinct admitted subjects per basis. Added in 1-0-1."""

    purposeCodes: list[str] | None = None  # noqa: N815
    """The HL7 v3 PurposeOfUse codes whose records covered the policy's purpose. Added in 1-0-1."""

    dateRule: str | None = None  # noqa: N815
    """How registry dates were compared with the as-of date, by name. Added in 1-0-1."""

    @staticmethod
    def _get_schema() -> str:
        # 1-0-1 added the optional manifest; 1-0-0 stays published unchanged for the events that cite it.
        return _schema_url("1-0-1", "PhiGuardConsentRunFacet")


@attr.define(kw_only=True)
class PhiGuardOutputColumn(RedactMixin):
    """One published column of a governed dataset."""

    _skip_redact: ClassVar[list[str]] = ["name", "source", "treatment", "identifier"]

    name: str
    """The column's name in the governed dataset."""

    source: str
    """The source column it was computed from."""

    treatment: str
    """The policy's treatment of the column."""

    identifier: str | None = None
    """The Safe Harbor letter of the source column, or None when it is none of the 18."""


@attr.define(kw_only=True)
class PhiGuardDroppedColumn(RedactMixin):
    """One source column that was not published."""

    _skip_redact: ClassVar[list[str]] = ["source", "declared", "identifier"]

    source: str
    """The source column's name."""

    declared: bool
    """False for a column the policy does not name, dropped under ``undeclared: drop``."""

    identifier: str | None = None
    """The Safe Harbor letter of the column, or None when it is none of the 18."""


@attr.define(kw_only=True)
class PhiGuardFinding(RedactMixin):
    """Values of one published column that still contain one identifier, counted."""

    _skip_redact: ClassVar[list[str]] = ["column", "identifier", "count"]

    column: str
    """The source column whose values were scanned."""

    identifier: str
    """The identifier found, by letter."""

    count: int
    """How many values contain it."""


@attr.define(kw_only=True)
class PhiGuardColumnsDatasetFacet(_ProducedByPhiGuard, DatasetFacet):
    """What a run did with each source column to produce a governed dataset: key ``phiGuard_columns``."""

    # Column names, letters, treatments and counts; ``sourceDataset`` (a location) stays redactable.
    _additional_skip_redact: ClassVar[list[str]] = ["columns", "dropped", "findings"]

    sourceDataset: PhiGuardDatasetReference  # noqa: N815
    """The source dataset whose columns are described."""

    columns: list[PhiGuardOutputColumn] = attr.field(factory=list)
    """Each published column, with its source column, identifier letter and treatment."""

    dropped: list[PhiGuardDroppedColumn] = attr.field(factory=list)
    """The source columns that were not published."""

    findings: list[PhiGuardFinding] = attr.field(factory=list)
    """Residual identifier findings in published columns, by column and letter."""

    @staticmethod
    def _get_schema() -> str:
        # 1-0-1 added the treatments of issue 5 to the enum (an addition: every 1-0-0 event still validates).
        return _schema_url("1-0-1", "PhiGuardColumnsDatasetFacet")


@attr.define(kw_only=True)
class PhiGuardDeidentificationRunFacet(_ProducedByPhiGuard, RunFacet):
    """How a run de-identified its output: key ``phiGuard_deidentification``.

    The nested blocks are plain mappings with camelCase keys whose shape the schema fixes; each is None
    when it does not apply (no publication, no quasi-identifiers, no zip3, date-shift or surrogate column,
    no recorded determination or agreement).
    """

    # Figures, enums, fingerprints and the shipped ZIP3 list's digest. Not ``safeHarbor`` (its attestation
    # is a person's statement), ``surrogateMapping`` (a store location), ``expertDetermination`` or
    # ``dataUseAgreement`` (names and references): the redactor recurses into those.
    _additional_skip_redact: ClassVar[list[str]] = ["method", "risk", "zip3", "dateShift"]

    method: str
    """The de-identification route: safe-harbor, expert-determination or limited-data-set."""

    safeHarbor: dict[str, Any] | None = None  # noqa: N815
    """The Safe Harbor verdict: ``status``, ``breaches`` by column and letter, ``attestation``, ``notice``."""

    risk: dict[str, Any] | None = None
    """k, classes, classes below k, unique share, l and the rows suppressed, over the quasi-identifiers."""

    zip3: dict[str, Any] | None = None
    """The ZIP3 list applied: ``vintage``, ``source``, ``restrictedPrefixes``, ``sha256``."""

    dateShift: dict[str, Any] | None = None  # noqa: N815
    """The date shift: ``windowDays``, ``keyFingerprint`` (never the key), ``columns``."""

    surrogateMapping: dict[str, Any] | None = None  # noqa: N815
    """The surrogate mapping: ``store`` (no password), counts per namespace, ``committed``."""

    expertDetermination: dict[str, Any] | None = None  # noqa: N815
    """The expert determination the run rests on: ``expert``, ``determined``, ``report``, ``expires``."""

    dataUseAgreement: dict[str, Any] | None = None  # noqa: N815
    """The data use agreement: ``id``, ``parties``, ``permittedPurposes``, ``signed``, ``expires``."""

    @staticmethod
    def _get_schema() -> str:
        return _schema_url("1-0-0", "PhiGuardDeidentificationRunFacet")


@attr.define(kw_only=True)
class PhiGuardInventoryEvidence(RedactMixin):
    """One piece of evidence for an identifier in a column, by its source and detector, never a value."""

    _skip_redact: ClassVar[list[str]] = ["source", "identifier", "detector", "confidence", "rate"]

    source: str
    """``name`` (the column's name), ``value`` (a value detector) or ``known-values``."""

    identifier: str
    """The identifier the evidence points to, by letter."""

    detector: str | None = None
    """The value detector that matched, by name; None for name and known-values evidence."""

    confidence: str | None = None
    """How sure a match is, ``low``, ``medium`` or ``high``; None for name evidence, which decides alone."""

    rate: float | None = None
    """The share of the column's scanned non-empty values that matched; None for name evidence."""


@attr.define(kw_only=True)
class PhiGuardInventoryColumn(RedactMixin):
    """A scan's verdict on one column."""

    _skip_redact: ClassVar[list[str]] = ["name", "identifier", "confidence", "runnerUp"]

    name: str
    """The column's name."""

    evidence: list[PhiGuardInventoryEvidence] = attr.field(factory=list)
    """What the verdict rests on."""

    identifier: str | None = None
    """The Safe Harbor letter the column is judged to be, or None when it is none of the 18."""

    confidence: str | None = None
    """``low``, ``medium`` or ``high``; None when the column is no identifier."""

    runnerUp: str | None = None  # noqa: N815
    """The identifier with the next strongest evidence, by letter, or None."""


@attr.define(kw_only=True)
class PhiGuardInventoryDatasetFacet(_ProducedByPhiGuard, DatasetFacet):
    """Which columns of a dataset are identifiers, as a scan judged them: key ``phiGuard_inventory``."""

    _additional_skip_redact: ClassVar[list[str]] = ["rowsScanned", "sampleRows"]

    rowsScanned: int  # noqa: N815
    """Rows whose values were scanned."""

    columns: list[PhiGuardInventoryColumn] = attr.field(factory=list)
    """Every column of the dataset, in its order, with its verdict."""

    sampleRows: int | None = None  # noqa: N815
    """The most rows the scan was asked to read, or None when it read the whole dataset."""

    @staticmethod
    def _get_schema() -> str:
        return _schema_url("1-0-0", "PhiGuardInventoryDatasetFacet")


@attr.define(kw_only=True)
class PhiGuardTrailRunFacet(_ProducedByPhiGuard, RunFacet):
    """The run's record in the audit trail, so that lineage and trail check each other: key
    ``phiGuard_trail``. ``phi-guard trail verify --events`` checks that each recorded head is in the chain,
    which shows a trail whose tail was cut or that was rewritten."""

    _additional_skip_redact: ClassVar[list[str]] = ["sequence", "digest"]

    trail: str
    """The trail's display name: a path, or a database URL without password and its table."""

    sequence: int
    """The sequence of the run's record in the chain."""

    digest: str
    """The digest of the run's record, ``sha256:<hex>``."""

    @staticmethod
    def _get_schema() -> str:
        return _schema_url("1-0-0", "PhiGuardTrailRunFacet")


#: Every custom facet class by the key it takes in an event.
FACET_CLASSES: dict[str, type[RunFacet | DatasetFacet]] = {
    POLICY_FACET: PhiGuardPolicyRunFacet,
    CONSENT_FACET: PhiGuardConsentRunFacet,
    COLUMNS_FACET: PhiGuardColumnsDatasetFacet,
    INVENTORY_FACET: PhiGuardInventoryDatasetFacet,
    DEIDENTIFICATION_FACET: PhiGuardDeidentificationRunFacet,
    TRAIL_FACET: PhiGuardTrailRunFacet,
}


def facet_schemas() -> dict[str, dict[str, Any]]:
    """The shipped facet schemas, by their ``$id``, read from the installed package.

    For validators: put them in a ``referencing.Registry`` beside the official OpenLineage schemas.
    """
    documents: dict[str, dict[str, Any]] = {}
    root = resources.files("airflow_phi_guard.lineage") / "schemas"
    for version in root.iterdir():
        if not version.is_dir():
            continue
        for entry in version.iterdir():
            if entry.name.endswith(".json"):
                document = json.loads(entry.read_text(encoding="utf-8"))
                documents[document["$id"]] = document
    return documents
