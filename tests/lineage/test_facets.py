"""The phiGuard facets and their JSON Schemas: valid, versioned, described, in step with the classes."""

from __future__ import annotations

import re

import attr
import pytest

from airflow_phi_guard import __version__
from airflow_phi_guard.lineage import facets
from airflow_phi_guard.lineage.facets import FACET_CLASSES, PRODUCER, SCHEMA_BASE_URL, facet_schemas
from tests.lineage.openlineage_validation import CORE_ID, assert_valid_schema_documents

#: The schema document of each facet, as the issue names the facets, by key.
FACET_DOCUMENTS = {
    "phiGuard_policy": "PhiGuardPolicyRunFacet",
    "phiGuard_consent": "PhiGuardConsentRunFacet",
    "phiGuard_columns": "PhiGuardColumnsDatasetFacet",
    "phiGuard_inventory": "PhiGuardInventoryDatasetFacet",
    "phiGuard_deidentification": "PhiGuardDeidentificationRunFacet",
    "phiGuard_trail": "PhiGuardTrailRunFacet",
}

#: The current SchemaVer of each facet's schema: 1-0-1 of the consent facet added the optional subject
#: manifest; 1-0-1 of the columns facet added treatments to its enum (an addition: every 1-0-0 event still
#: validates); the others are still 1-0-0.
FACET_VERSIONS = {
    "phiGuard_policy": "1-0-0",
    "phiGuard_consent": "1-0-1",
    "phiGuard_columns": "1-0-1",
    "phiGuard_inventory": "1-0-0",
    "phiGuard_deidentification": "1-0-0",
    "phiGuard_trail": "1-0-0",
}

#: The fields every facet inherits from the core's BaseFacet (and DatasetFacet), declared again in our
#: own branch only so that the branch can refuse anything undeclared.
BASE_FIELDS = {"_producer", "_schemaURL", "_deleted"}


def _document(key: str, version: str | None = None) -> dict:
    return facet_schemas()[f"{SCHEMA_BASE_URL}{version or FACET_VERSIONS[key]}/{FACET_DOCUMENTS[key]}.json"]


def _definition(key: str, version: str | None = None) -> dict:
    return _document(key, version)["$defs"][FACET_DOCUMENTS[key]]


def _own_branch(key: str, version: str | None = None) -> dict:
    return _definition(key, version)["allOf"][1]


def test_every_local_schema_is_valid_json_schema_2020_12():
    """The official copies and ours alike pass the 2020-12 meta-schema."""
    assert_valid_schema_documents()


def test_the_package_ships_exactly_the_facet_schemas_of_its_facets():
    """Every released version stays shipped (released schemas are immutable), plus each current one."""
    released = {f"{SCHEMA_BASE_URL}1-0-0/{name}.json" for name in FACET_DOCUMENTS.values()}
    current = {f"{SCHEMA_BASE_URL}{FACET_VERSIONS[key]}/{name}.json" for key, name in FACET_DOCUMENTS.items()}
    assert sorted(facet_schemas()) == sorted(released | current)


def test_consent_1_0_1_is_1_0_0_plus_optional_fields():
    """An ADDITION under SchemaVer (MODEL-REVISION-ADDITION): optional fields only, the required list is
    unchanged, so every 1-0-0 event still validates against 1-0-1 and the number is 1-0-1, not 1-1-0."""
    old, new = _own_branch("phiGuard_consent", "1-0-0"), _own_branch("phiGuard_consent", "1-0-1")
    added = {"manifest", "admittedRowsByBasis", "admittedSubjectsByBasis", "purposeCodes", "dateRule"}
    assert not added & set(old["properties"])
    assert set(new["properties"]) == set(old["properties"]) | added
    assert new["required"] == old["required"]
    manifest = _document("phiGuard_consent", "1-0-1")["$defs"]["PhiGuardSubjectManifest"]
    assert set(manifest["required"]) == {"location", "digest", "keyFingerprint", "subjects"}
    assert manifest["additionalProperties"] is False


@pytest.mark.parametrize(
    ("key", "base"),
    [
        # Run facets build on the core's RunFacet, the output columns facet on DatasetFacet.
        ("phiGuard_policy", "RunFacet"),
        ("phiGuard_consent", "RunFacet"),
        ("phiGuard_columns", "DatasetFacet"),
        ("phiGuard_inventory", "DatasetFacet"),
        ("phiGuard_deidentification", "RunFacet"),
        ("phiGuard_trail", "RunFacet"),
    ],
)
def test_facet_schema_is_an_allof_over_the_core_base(key, base):
    assert _definition(key)["allOf"][0] == {"$ref": f"{CORE_ID}#/$defs/{base}"}


@pytest.mark.parametrize("key", sorted(FACET_DOCUMENTS))
def test_facet_schema_url_is_the_shipped_id_with_a_pointer_to_its_definition(key):
    name = FACET_DOCUMENTS[key]
    url = FACET_CLASSES[key]._get_schema()
    assert url == f"{SCHEMA_BASE_URL}{FACET_VERSIONS[key]}/{name}.json#/$defs/{name}"
    # SchemaVer: MODEL-REVISION-ADDITION.
    assert re.search(r"/\d+-\d+-\d+/", url)


@pytest.mark.parametrize("key", sorted(FACET_DOCUMENTS))
def test_facet_schema_names_the_facet_key(key):
    """As in the official facet schemas, the document's top-level property is the facet's key in an event."""
    name = FACET_DOCUMENTS[key]
    assert _document(key)["properties"] == {key: {"$ref": f"#/$defs/{name}"}}


@pytest.mark.parametrize("key", sorted(FACET_DOCUMENTS))
def test_class_fields_are_exactly_the_schema_properties(key):
    """A field added to a class but not to its schema (or the reverse) fails here, before it ships."""
    branch = _own_branch(key)
    declared = set(branch["properties"]) - BASE_FIELDS
    fields = {field.name for field in attr.fields(FACET_CLASSES[key])} - BASE_FIELDS
    assert fields == declared
    assert set(branch["required"]) <= declared


def _undescribed(schema: object, where: str = "") -> list[str]:
    """The locations of properties without a description, anywhere in a schema."""
    if isinstance(schema, list):
        return [
            found for index, value in enumerate(schema) for found in _undescribed(value, f"{where}/{index}")
        ]
    if not isinstance(schema, dict):
        return []
    found = [
        f"{where}/properties/{name}"
        for name, value in (schema.get("properties") or {}).items()
        if not (isinstance(value, dict) and value.get("description"))
    ]
    return found + [hit for key, value in schema.items() for hit in _undescribed(value, f"{where}/{key}")]


@pytest.mark.parametrize("key", sorted(FACET_DOCUMENTS))
def test_every_field_has_a_description(key):
    assert _undescribed(_document(key)["$defs"]) == []


@pytest.mark.parametrize("key", sorted(FACET_DOCUMENTS))
def test_facet_own_branch_refuses_undeclared_fields(key):
    """A facet must not grow a field its schema does not describe: one such field could carry values."""
    assert _own_branch(key)["additionalProperties"] is False


def test_consent_exclusion_reasons_are_the_issue_s_eight():
    excluded = _own_branch("phiGuard_consent")["properties"]["excluded"]
    assert set(excluded["propertyNames"]["enum"]) == {
        "no-subject-id",
        "no-record",
        "basis-not-accepted",
        "purpose-not-covered",
        "not-yet-valid",
        "expired",
        "revoked",
        "opted-out",
    }


def test_policy_bases_exclude_those_that_never_admit():
    """Consent to treatment is no basis for training, and an opt-out is an objection (issue 2)."""
    bases = set(_own_branch("phiGuard_policy")["properties"]["consentBases"]["items"]["enum"])
    assert bases == {
        "research-authorization",
        "irb-waiver",
        "limited-data-set",
        "health-care-operations",
        "business-associate",
    }


def test_identifier_letters_are_a_to_r():
    document = facet_schemas()[f"{SCHEMA_BASE_URL}1-0-0/PhiGuardColumnsDatasetFacet.json"]
    assert document["$defs"]["SafeHarborIdentifier"]["enum"] == list("ABCDEFGHIJKLMNOPQR")


def test_published_columns_never_have_the_drop_treatment():
    document = facet_schemas()[f"{SCHEMA_BASE_URL}1-0-0/PhiGuardColumnsDatasetFacet.json"]
    treatments = document["$defs"]["PhiGuardOutputColumn"]["properties"]["treatment"]["enum"]
    assert set(treatments) == {"keep", "year", "birth-year", "age", "zip3", "pseudonymize"}


def test_columns_1_0_1_is_1_0_0_with_every_treatment_but_drop():
    """An addition: the enum grew by the treatments of issue 5, and nothing else changed."""
    from airflow_phi_guard.policy.models import Treatment

    old, new = _document("phiGuard_columns", "1-0-0"), _document("phiGuard_columns", "1-0-1")
    treatments = new["$defs"]["PhiGuardOutputColumn"]["properties"]["treatment"]["enum"]
    assert set(treatments) == {treatment.value for treatment in Treatment} - {"drop"}
    for document in (old, new):
        document["$defs"]["PhiGuardOutputColumn"]["properties"]["treatment"].pop("enum")
        document["$defs"]["PhiGuardOutputColumn"]["properties"]["treatment"].pop("description")
        document.pop("$id")
    assert old == new


#: The SHA-256 of each released schema document. A released schema is immutable: a change is a new version
#: directory, never an edit of a published one (events already emitted cite these URLs).
RELEASED_SCHEMA_DIGESTS = {
    "1-0-0/PhiGuardColumnsDatasetFacet.json": "5292c494e1fe2be261c4a7fffb41713e88e388bf"
    "d19dd9474995ba13205caa69",
    "1-0-0/PhiGuardConsentRunFacet.json": "35fef3b9e0d6ff7a1e0d43b6f945bc5bb34953bfd9ad0c641f7c0455e8d0db81",
    "1-0-0/PhiGuardInventoryDatasetFacet.json": "63e1ec9c5c096cfbed42322419f1131039f3cae8"
    "9274f984a0ff30120ab6f72f",
    "1-0-0/PhiGuardPolicyRunFacet.json": "1d0238a40a7712bf7ab986ce89e27afdfed014f3531854a2b29861b141e08cf3",
}


@pytest.mark.parametrize("relative", sorted(RELEASED_SCHEMA_DIGESTS))
def test_released_schemas_are_unchanged(relative):
    import hashlib
    from importlib import resources

    document = resources.files("airflow_phi_guard.lineage") / "schemas" / relative
    assert hashlib.sha256(document.read_bytes()).hexdigest() == RELEASED_SCHEMA_DIGESTS[relative]


def test_no_schema_is_numbered_1_1_0():
    """No facet changed its model or revised a field yet: the only changes so far are additions."""
    assert not [url for url in facet_schemas() if "/1-1-0/" in url]


def test_producer_is_this_package_at_its_version():
    assert f"https://github.com/airflow-phi-guard/airflow-phi-guard/tree/{__version__}" == PRODUCER
    facet = facets.PhiGuardConsentRunFacet(
        asOf="2024-06-30", bases=["irb-waiver"], rowsRead=0, rowsAdmitted=0
    )
    assert facet._producer == PRODUCER
    assert facet._schemaURL == facets.PhiGuardConsentRunFacet._get_schema()
