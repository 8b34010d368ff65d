"""Tests of the FHIR R4 Consent reader: one row per mapping rule of docs/consent-fhir-mapping.md."""

from __future__ import annotations

import copy
import gzip
import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from airflow_phi_guard.consent.admission import ConsentAdmission, ExclusionReason
from airflow_phi_guard.consent.fhir import FHIR_MAPPING, fhir_counts, read_fhir_consents
from airflow_phi_guard.consent.registry import REGISTRY_COLUMNS, registry_from_table
from airflow_phi_guard.exceptions import ConsentRegistryError
from airflow_phi_guard.policy.models import ConsentBasis

SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CATEGORY_CODES = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"
LOINC = "http://loinc.org"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "consent-fhir-mapping.md"


def purpose(*codes: str, system: str = ACT_REASON) -> list[dict[str, str]]:
    return [{"system": system, "code": code} for code in codes]


def consent(**changes: Any) -> dict[str, Any]:
    """An active research permit for HRESCH from 2024-03-01 to 2029-03-01, with keys replaced or removed."""
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": "c1",
        "meta": {"lastUpdated": "2025-06-30T23:00:00-05:00"},
        "status": "active",
        "scope": {"coding": [{"system": SCOPE, "code": "research"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "dateTime": "2024-02-15T09:00:00+01:00",
        "provision": {
            "type": "permit",
            "period": {"start": "2024-03-01", "end": "2029-03-01"},
            "purpose": purpose("HRESCH"),
        },
    }
    for key, value in changes.items():
        if value is None:
            resource.pop(key, None)
        else:
            resource[key] = value
    return resource


def provision(**changes: Any) -> dict[str, Any]:
    base = copy.deepcopy(consent()["provision"])
    for key, value in changes.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def write(tmp_path: Path, *lines: object, name: str = "Consent.ndjson") -> Path:
    path = tmp_path / name
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def rows(tmp_path: Path, *resources: object) -> list[dict[str, Any]]:
    return read_fhir_consents(write(tmp_path, *resources)).to_pylist()


def row(
    basis: str = "research-authorization",
    purposes: list[str] | None = None,
    granted_at: date = date(2024, 3, 1),
    expires_at: date | None = date(2029, 3, 1),
    revoked_at: date | None = None,
    subject_id: str = "p1",
    reference: str | None = "Consent/c1",
) -> dict[str, Any]:
    return {
        "subject_id": subject_id,
        "basis": basis,
        "purposes": ["HRESCH"] if purposes is None else purposes,
        "granted_at": granted_at,
        "expires_at": expires_at,
        "revoked_at": revoked_at,
        "reference": reference,
    }


# fmt: off
STATUS_CASES = [
    # status -> in force, or no longer in force from a date the rule can defend, or skipped
    pytest.param(consent(), [row()], id="active-permit-in-force"),
    # an inactive grant is revoked from its start: R4 has no revocation date, so no backfill admits it
    pytest.param(consent(status="inactive"), [row(revoked_at=date(2024, 3, 1))], id="inactive-permit"),
    # an inactive opt-out holds until meta.lastUpdated, as written (2025-06-30 in -05:00, not UTC)
    pytest.param(consent(status="inactive", provision=provision(type="deny", purpose=None)),
                 [row(basis="opt-out", purposes=[], revoked_at=date(2025, 6, 30))], id="inactive-deny"),
    # without meta.lastUpdated an inactive opt-out stays in force
    pytest.param(consent(status="inactive", meta=None, provision=provision(type="deny")),
                 [row(basis="opt-out", purposes=["HRESCH"])], id="inactive-deny-no-update"),
    pytest.param(consent(status="draft"), [], id="draft-skipped"),
    pytest.param(consent(status="proposed"), [], id="proposed-skipped"),
    pytest.param(consent(status="rejected"), [], id="rejected-skipped"),
    pytest.param(consent(status="entered-in-error"), [], id="entered-in-error-skipped"),
]

SHAPE_CASES = [
    # scope, category and provision shape -> the registry rows
    pytest.param(consent(provision=provision(type="deny", purpose=None, period={"start": "2025-01-01"})),
                 [row(basis="opt-out", purposes=[], granted_at=date(2025, 1, 1), expires_at=None)],
                 id="research-deny-is-opt-out"),
    pytest.param(consent(scope={"coding": [{"system": SCOPE, "code": "patient-privacy"}]},
                         provision=provision(type="deny", purpose=None)),
                 [row(basis="opt-out", purposes=[])], id="privacy-deny-is-opt-out"),
    pytest.param(consent(scope={"coding": [{"system": SCOPE, "code": "patient-privacy"}]},
                         category=[{"coding": [{"system": ACT_CODE, "code": "RESEARCH"}]}]),
                 [row()], id="privacy-permit-research-category"),
    pytest.param(consent(scope={"coding": [{"system": SCOPE, "code": "patient-privacy"}]},
                         category=[{"coding": [{"system": CATEGORY_CODES, "code": "rsreid"}]}]),
                 [row()], id="privacy-permit-rsreid-category"),
    pytest.param(consent(scope={"coding": [{"system": SCOPE, "code": "patient-privacy"}]},
                         category=[{"coding": [{"system": ACT_CODE, "code": "RESEARCH"},
                                               {"system": ACT_CODE, "code": "RSDID"}]}]),
                 [], id="privacy-permit-deidentified-only-skipped"),
    pytest.param(consent(scope={"coding": [{"system": SCOPE, "code": "patient-privacy"}]}), [],
                 id="privacy-permit-not-research-skipped"),
    # treatment scope: consent to care, kept as treatment-consent, which never admits for training
    pytest.param(consent(scope={"coding": [{"system": SCOPE, "code": "treatment"}]},
                         provision=provision(purpose=None, code=[{"text": "appendectomy"}])),
                 [row(basis="treatment-consent", purposes=["TREAT"])], id="treatment-permit"),
    pytest.param(consent(scope={"coding": [{"system": SCOPE, "code": "treatment"}]},
                         provision=provision(type="deny")), [], id="treatment-deny-skipped"),
    pytest.param(consent(scope={"coding": [{"system": SCOPE, "code": "adr"}]},
                         provision=provision(type="deny", code=[{"text": "resuscitation"}])), [],
                 id="advance-directive-skipped"),
    # dates: dateTime when no period start, calendar date as written (23:30-05:00 stays that day)
    pytest.param(consent(dateTime="2024-03-05T23:30:00-05:00",
                         provision=provision(period={"end": "2030-01-01"})),
                 [row(granted_at=date(2024, 3, 5), expires_at=date(2030, 1, 1))], id="dateTime-as-start"),
    pytest.param(consent(provision=provision(period={"start": "2024-03-01T23:30:00-05:00"})),
                 [row(expires_at=None)], id="start-timestamp-as-recorded"),
    pytest.param(consent(provision=provision(purpose=purpose("HRESCH", "MLTRAINING", "HRESCH"))),
                 [row(purposes=["HRESCH", "MLTRAINING"])], id="purposes-in-order-once"),
    pytest.param(consent(provision=provision(purpose=None)), [], id="permit-without-purpose-skipped"),
    # a permit with an exception that denies one of its purposes
    pytest.param(consent(provision=provision(purpose=purpose("HRESCH", "HMARKT"),
                                             provision=[{"type": "deny", "purpose": purpose("HMARKT")}])),
                 [row()], id="permit-minus-denied-purpose"),
    # a deny with permits inside: "nothing but these", one grant per permit, periods intersected
    pytest.param(consent(provision=provision(type="deny", purpose=None, provision=[
        {"type": "permit", "purpose": purpose("HRESCH")},
        {"type": "permit", "purpose": purpose("MLTRAINING"),
         "period": {"start": "2025-01-01", "end": "2031-01-01"}},
    ])), [row(reference="Consent/c1 provision.provision[0]"),
          row(purposes=["MLTRAINING"], granted_at=date(2025, 1, 1),
              reference="Consent/c1 provision.provision[1]")], id="deny-with-permits"),
    pytest.param(consent(patient={"reference": "Patient/p1/_history/3"}, id=None),
                 [row(reference=None)], id="versioned-patient-no-id"),
]
# fmt: on


@pytest.mark.parametrize(("resource", "expected"), STATUS_CASES + SHAPE_CASES)
def test_mapping(tmp_path: Path, resource: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    assert rows(tmp_path, resource) == expected


# fmt: off
MALFORMED_CASES = [
    # each makes the whole file malformed, named by the sentence of its problem
    pytest.param("{not json", "are not valid JSON", id="invalid-json"),
    pytest.param("[1, 2]", "are not a JSON object", id="not-object"),
    pytest.param(consent(resourceType="Patient"), "are not a Consent resource", id="wrong-type"),
    pytest.param(consent(status=None), "have no status", id="no-status"),
    pytest.param(consent(status="revoked"), "have a status outside", id="unknown-status"),
    pytest.param(consent(patient=None), "have no patient", id="no-patient"),
    pytest.param(consent(status="draft", patient=None), "have no patient", id="draft-without-patient"),
    pytest.param(consent(patient={"reference": "Group/g1"}), "not a relative Patient", id="group"),
    pytest.param(consent(patient={"reference": "https://x.example/fhir/Patient/p1"}), "not a relative",
                 id="absolute-reference"),
    pytest.param(consent(patient={"identifier": {"system": "urn:mrn", "value": "M1"}}), "by identifier",
                 id="identifier-without-system-given"),
    pytest.param(consent(scope=None), "have no scope", id="no-scope"),
    pytest.param(consent(scope={"coding": [{"system": SCOPE, "code": "marketing"}]}), "scope code outside",
                 id="unknown-scope"),
    pytest.param(consent(scope={"coding": [{"system": SCOPE, "code": "research"},
                                           {"system": SCOPE, "code": "treatment"}]}), "two different scope",
                 id="conflicting-scope"),
    pytest.param(consent(provision=None), "no provision", id="no-provision"),
    pytest.param(consent(provision=provision(type="maybe")), "other than permit or deny", id="unknown-type"),
    pytest.param(consent(provision=provision(actor=[{"reference": {"reference": "Organization/o"}}])),
                 "restrict a provision", id="actor"),
    pytest.param(consent(provision=provision(action=[{"text": "use"}])), "restrict a provision", id="action"),
    pytest.param(consent(provision=provision(type="deny", data=[{"meaning": "instance"}])),
                 "restrict a provision", id="deny-with-data"),
    pytest.param(consent(provision=provision(securityLabel=[{"code": "R"}])), "restrict", id="label"),
    pytest.param(consent(modifierExtension=[{"url": "x"}]), "modifierExtension", id="modifier-extension"),
    pytest.param(consent(provision=provision(provision=[{"type": "permit", "purpose": purpose("HMARKT")}])),
                 "nest provisions in a shape", id="permit-in-permit"),
    pytest.param(consent(provision=provision(provision=[{"type": "deny", "period": {"start": "2025-01-01"},
                                                         "purpose": purpose("HRESCH")}])),
                 "nest provisions in a shape", id="timed-exception"),
    pytest.param(consent(provision=provision(type="deny", provision=[
        {"type": "permit", "purpose": purpose("HRESCH"), "provision": [{"type": "deny"}]}])),
        "more than one level", id="too-deep"),
    pytest.param(consent(provision=provision(purpose=[{"system": "urn:local", "code": "AI"}])),
                 "provision.purpose without code, or of a system", id="foreign-purpose-system"),
    pytest.param(consent(provision=provision(purpose=[{"code": "HRESCH"}])), "of a system other",
                 id="purpose-without-system"),
    pytest.param(consent(dateTime=None, provision=provision(period={"end": "2030-01-01"})),
                 "neither provision.period.start nor dateTime", id="no-start"),
    pytest.param(consent(provision=provision(period={"start": "2024-03"})), "without a day", id="partial"),
    pytest.param(consent(provision=provision(period={"start": "2024-02-30"})), "not valid FHIR",
                 id="impossible-date"),
    pytest.param(consent(provision=provision(period={"start": "2024-03-01T10:00:00"})), "not valid FHIR",
                 id="time-without-zone"),
    pytest.param(consent(provision=provision(period={"start": "2024-03-01", "end": "2024-02-01"})),
                 "end before the start", id="end-before-start"),
    pytest.param(consent(status="inactive", meta={"lastUpdated": "2020-01-01T00:00:00Z"},
                         provision=provision(type="deny")), "lastUpdated is before", id="updated-before"),
]
# fmt: on


@pytest.mark.parametrize(("line", "problem"), MALFORMED_CASES)
def test_malformed_refuses_the_file(tmp_path: Path, line: object, problem: str) -> None:
    path = write(tmp_path, consent(), line, consent(id="c3"))
    with pytest.raises(ConsentRegistryError) as caught:
        read_fhir_consents(path)
    message = str(caught.value)
    assert problem in message
    assert "1 line(s)" in message
    assert "(line 2)" in message


def test_identifier_reference_with_the_given_system(tmp_path: Path) -> None:
    path = write(tmp_path, consent(patient={"identifier": {"system": "urn:mrn", "value": " M1 "}}))
    assert read_fhir_consents(path, identifier_system="urn:mrn").column("subject_id").to_pylist() == ["M1"]
    with pytest.raises(ConsentRegistryError, match="by identifier"):
        read_fhir_consents(path, identifier_system="urn:other")


def test_counts_per_problem_and_at_most_ten_lines(tmp_path: Path) -> None:
    path = write(tmp_path, *(["{bad"] * 12), consent(patient=None), "")
    with pytest.raises(ConsentRegistryError) as caught:
        read_fhir_consents(path)
    reasons = caught.value.refusals
    assert len(reasons) == 2
    assert "12 line(s) are not valid JSON (line 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more)" in reasons[0]
    assert "1 line(s) have no patient (line 13)" in reasons[1]


def test_skipped_resources_are_counted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        consent(),
        consent(status="draft"),
        consent(status="draft"),
        consent(scope={"coding": [{"system": SCOPE, "code": "adr"}]}),
        "",
    )
    table = read_fhir_consents(path)
    assert table.num_rows == 1
    assert fhir_counts(table) == {
        "resources": 4,
        "rows": 1,
        "skipped": {"scope-adr": 1, "status-draft": 2},
    }


def test_table_has_the_registry_columns_and_types(tmp_path: Path) -> None:
    table = read_fhir_consents(write(tmp_path, consent()))
    assert tuple(table.column_names) == REGISTRY_COLUMNS
    assert table.schema.field("purposes").type == pa.list_(pa.string())
    assert table.schema.field("granted_at").type == pa.date32()


def test_empty_file_gives_an_empty_table(tmp_path: Path) -> None:
    table = read_fhir_consents(write(tmp_path, ""))
    assert table.num_rows == 0
    assert tuple(table.column_names) == REGISTRY_COLUMNS


def test_gzip_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "Consent.ndjson.gz"
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write(json.dumps(consent()) + "\n")
    assert read_fhir_consents(path).to_pylist() == [row()]
    with pytest.raises(ConsentRegistryError, match="does not exist"):
        read_fhir_consents(tmp_path / "absent.ndjson")


def test_not_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "Consent.ndjson"
    path.write_bytes(json.dumps(consent()).encode() + b"\n\xff\xfe\n")
    with pytest.raises(ConsentRegistryError, match=r"1 line\(s\) are not UTF-8 text \(line 2\)"):
        read_fhir_consents(path)


def test_every_mapping_row_is_in_the_docs() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for mapping in FHIR_MAPPING:
        assert f"| {mapping.element} | {mapping.value} | {mapping.registry} |" in text, mapping


# The end-to-end story of the issue: a FHIR export decides admissions through the registry.
AS_OF = date(2026, 12, 1)


def test_end_to_end_admission(tmp_path: Path) -> None:
    deny = provision(type="deny", purpose=None, period={"start": "2025-01-01"})
    path = write(
        tmp_path,
        consent(patient={"reference": "Patient/research"}),
        consent(
            id="c2",
            patient={"reference": "Patient/treated"},
            scope={"coding": [{"system": SCOPE, "code": "treatment"}]},
            provision=provision(purpose=None),
        ),
        # the opted-out subject also has a research permit: the opt-out beats it
        consent(id="c3", patient={"reference": "Patient/denied"}),
        consent(id="c4", patient={"reference": "Patient/denied"}, provision=deny),
        consent(id="c5", patient={"reference": "Patient/inactive"}, status="inactive"),
        # the inactive opt-out was withdrawn (last updated 2025-06-30) and a grant is in force
        consent(id="c6", patient={"reference": "Patient/returned"}, status="inactive", provision=deny),
        consent(id="c7", patient={"reference": "Patient/returned"}),
    )
    registry = registry_from_table(read_fhir_consents(path), str(path))
    bases = (ConsentBasis.RESEARCH_AUTHORIZATION, ConsentBasis.IRB_WAIVER)
    admission = ConsentAdmission(registry, bases, "HRESCH", AS_OF)

    subjects = pa.array(["research", "treated", "denied", "inactive", "returned", "unknown"])
    mask, counts = admission.admit(subjects)
    assert mask.to_pylist() == [True, False, False, False, True, False]
    assert counts == {
        ExclusionReason.NO_RECORD: 1,
        ExclusionReason.BASIS_NOT_ACCEPTED: 1,
        ExclusionReason.REVOKED: 1,
        ExclusionReason.OPTED_OUT: 1,
    }


def test_a_backfill_before_an_opt_out_was_withdrawn_excludes(tmp_path: Path) -> None:
    deny = provision(type="deny", purpose=None, period={"start": "2025-01-01"})
    path = write(tmp_path, consent(status="inactive", provision=deny), consent(id="c2"))
    registry = registry_from_table(read_fhir_consents(path), str(path))
    bases = (ConsentBasis.RESEARCH_AUTHORIZATION,)
    before = ConsentAdmission(registry, bases, "HRESCH", date(2025, 6, 29))
    after = ConsentAdmission(registry, bases, "HRESCH", date(2025, 7, 1))
    assert before.admit(pa.array(["p1"]))[0].to_pylist() == [False]
    assert after.admit(pa.array(["p1"]))[0].to_pylist() == [True]


CANARY = "CANARY-7f3a9"


def test_no_value_reaches_an_error_or_a_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reference = {"reference": f"Patient/{CANARY}"}
    lines = [
        f'{{"resourceType": "Consent", "id": "{CANARY}", ',  # broken JSON that quotes the canary
        consent(resourceType=CANARY, patient=reference),
        consent(status=CANARY, patient=reference),
        consent(patient={"reference": f"Group/{CANARY}"}),
        consent(patient={"identifier": {"system": "urn:mrn", "value": CANARY}}),
        consent(id=f"{CANARY}!", patient=reference),
        consent(patient=reference, scope={"coding": [{"system": SCOPE, "code": CANARY}]}),
        consent(patient=reference, provision=provision(type=CANARY)),
        consent(patient=reference, provision=provision(purpose=[{"system": CANARY, "code": CANARY}])),
        consent(patient=reference, provision=provision(period={"start": CANARY})),
        consent(patient=reference, provision=provision(actor=[{"reference": reference}])),
    ]
    path = write(tmp_path, *lines, name="Consent.ndjson")
    with pytest.raises(ConsentRegistryError) as caught:
        read_fhir_consents(path)
    error = caught.value
    assert len(error.refusals) == 11
    assert CANARY not in str(error)
    assert error.__cause__ is None
    assert error.__context__ is None or CANARY not in str(error.__context__)
    assert CANARY not in caplog.text

    # a readable file with canary ids logs counts only
    caplog.clear()
    read_fhir_consents(write(tmp_path, consent(id=CANARY, patient=reference), name="ok.ndjson"))
    assert caplog.records
    assert CANARY not in caplog.text
