"""Column classification by name: every Synthea column, common EHR and OMOP spellings, and the rule that
keeps counts and flags about identifiers from being taken for identifiers."""

from __future__ import annotations

import csv

import pytest

from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.names import (
    HEAD_NAMES,
    WHOLE_NAMES,
    column_words,
    identify_column,
    identify_columns,
)
from tests.conftest import SYNTHEA

# The letters of 164.514(b)(2)(i), as REGULATORY.md lists them.
A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, P, Q, R = (  # noqa: E741
    SafeHarborIdentifier(letter) for letter in "ABCDEFGHIJKLMNOPQR"
)

# Every column of the Synthea files, with the letter the issue assigns it (None: not an identifier).
SYNTHEA_COLUMNS = {
    "patients": {
        "Id": R,  # patient UUID: a unique identifying code
        "BIRTHDATE": C,
        "DEATHDATE": C,
        "SSN": G,
        "DRIVERS": K,  # driver's licence number
        "PASSPORT": K,
        "PREFIX": A,
        "FIRST": A,
        "LAST": A,
        "SUFFIX": A,
        "MAIDEN": A,
        "MARITAL": None,
        "RACE": None,
        "ETHNICITY": None,
        "GENDER": None,
        "BIRTHPLACE": B,  # a city
        "ADDRESS": B,
        "CITY": B,
        "STATE": None,  # a State may be kept
        "COUNTY": B,
        "FIPS": B,
        "ZIP": B,
        "LAT": B,
        "LON": B,
        "HEALTHCARE_EXPENSES": None,
        "HEALTHCARE_COVERAGE": None,
        "INCOME": None,
    },
    "encounters": {
        "Id": R,  # encounter UUID
        "START": C,
        "STOP": C,
        "PATIENT": R,
        "ORGANIZATION": None,  # identifies an organisation, not the patient
        "PROVIDER": None,  # identifies a clinician, not the patient
        "PAYER": None,
        "ENCOUNTERCLASS": None,
        "CODE": None,
        "DESCRIPTION": None,
        "BASE_ENCOUNTER_COST": None,
        "TOTAL_CLAIM_COST": None,
        "PAYER_COVERAGE": None,
        "REASONCODE": None,
        "REASONDESCRIPTION": None,
    },
    "conditions": {
        "START": C,
        "STOP": C,
        "PATIENT": R,
        "ENCOUNTER": R,
        "CODE": None,
        "DESCRIPTION": None,
    },
}

# Columns the demo extract adds to the Synthea ones.
DEMO_EXTRACT_COLUMNS = {"ENCOUNTER": R, "CONDITION_CODES": None, "READMITTED_30D": None}


@pytest.mark.parametrize(
    ("table", "column", "expected"),
    [
        (table, column, letter)
        for table, columns in SYNTHEA_COLUMNS.items()
        for column, letter in columns.items()
    ],
)
def test_every_synthea_column_is_classified_as_the_issue_says(table, column, expected):
    assert identify_column(column) == expected


@pytest.mark.parametrize("table", sorted(SYNTHEA_COLUMNS))
def test_the_expectations_cover_every_header_of_the_real_synthea_files(table):
    with (SYNTHEA / f"{table}.csv").open(newline="") as file:
        header = next(csv.reader(file))
    assert header == list(SYNTHEA_COLUMNS[table])


@pytest.mark.parametrize(("column", "expected"), sorted(DEMO_EXTRACT_COLUMNS.items()))
def test_demo_extract_columns(column, expected):
    assert identify_column(column) == expected


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        # A: names of the patient, and of relatives, employers and household members (164.514(b)(2)(i)).
        ("Full Name", A),
        ("first_name", A),
        ("FirstName", A),
        ("LASTNAME", A),
        ("patient_name", A),
        ("given_name", A),
        ("mother_maiden_name", A),
        ("emergency_contact_name", A),
        ("employer_name", A),
        ("guarantor_last_name", A),
        # B: geography smaller than a State, geocodes included.
        ("street_address", B),
        ("address_line_1", B),
        ("address2", B),
        ("home_address", B),
        ("zip_code", B),
        ("patient-ZIP_code", B),
        ("postal_code", B),
        ("ZIP3", B),  # a ZIP3 still needs the restricted-prefix rule
        ("latitude", B),
        ("longitude", B),
        ("county_fips", B),
        ("census_tract", B),
        ("birth_city", B),
        # C: dates of the person, and ages.
        ("DOB", C),
        ("birth_dt", C),
        ("birth_datetime", C),
        ("DateOfBirth", C),
        ("date_of_death", C),
        ("admission_date", C),
        ("discharge_date", C),
        ("visit_start_date", C),
        ("visit_end_datetime", C),
        ("service_dttm", C),
        ("year_of_birth", C),  # a birth year reveals ages over 89
        ("age", C),  # ages over 89 are identifiers
        # D, E, F
        ("phone", D),
        ("phone_number", D),
        ("home_phone", D),
        ("mobile", D),
        ("emergency_contact_phone", D),
        ("fax", E),
        ("fax_number", E),
        ("email", F),
        ("e-mail", F),
        ("E_Mail_Address", F),
        ("work_email", F),
        # G
        ("SSN", G),
        ("pt_ssn", G),
        ("patient_ssn", G),
        ("social_security_number", G),
        ("guarantor_ssn", G),
        # H, I, J
        ("mrn", H),
        ("MRN", H),
        ("medical_record_number", H),
        ("pt_mrn", H),
        ("member_id", I),
        ("mbr_id", I),
        ("subscriber_id", I),
        ("medicaid_id", I),
        ("health_plan_beneficiary_number", I),
        ("account_number", J),
        ("acct_no", J),
        # K, L, M
        ("license_number", K),
        ("drivers_license_number", K),
        ("passport_number", K),
        ("certificate_number", K),
        ("vin", L),
        ("license_plate", L),
        ("license_plate_number", L),  # the longer synonym wins over license_number
        ("vehicle_serial_number", L),
        ("device_id", M),
        ("device_serial_number", M),
        ("udi", M),
        ("mac_address", M),
        # N, O, P, Q
        ("url", N),
        ("website", N),
        ("ip_address", O),
        ("IPAddress", O),
        ("ipv4", O),
        ("client_ip", O),
        ("fingerprint", P),
        ("voice_print", P),
        ("photo", Q),
        ("face_image", Q),
        # R: codes that single out the patient or the encounter. person_source_value is OMOP's copy of the
        # source patient identifier, of unstated kind: R, not H (see phi/names.py).
        ("patient_id", R),
        ("PatientID", R),
        ("pt_id", R),
        ("person_id", R),
        ("person_source_value", R),
        ("encounter_id", R),
        ("visit_occurrence_id", R),
        ("empi", R),
    ],
)
def test_common_ehr_and_omop_names(column, expected):
    assert identify_column(column) == expected


@pytest.mark.parametrize(
    "column",
    [
        # The head noun is a count, flag or kind, not the identifier it mentions.
        "ZIP_CODE_COUNT",
        "zip_code_count",
        "EMAIL_OPT_IN",
        "SSN_VERIFIED",
        "phone_type",
        "address_type",
        "has_ssn",
        "is_email_valid",
        "num_phone",
        "count_email",
        # Generic words count only as the whole name, never as the tail of a longer one.
        "provider_id",
        "organization_id",
        "condition_concept_id",
        "drug_name",
        "concept_name",
        "care_site_name",
        "last_encounter",
        # Larger than a State, or no identifier at all.
        "STATE",
        "patient_state",
        "country",
        "gender_concept_id",
        "race_source_value",
        "value_as_number",
        "icd10",
        "",
        "123",
    ],
)
def test_names_that_are_not_identifiers(column):
    assert identify_column(column) is None


@pytest.mark.parametrize(
    "column",
    ["birthdate", "BIRTHDATE", "BirthDate", "birth_date", "birth-date", "Birth Date", " birth__date ",
     "pt_dob", "patient_birth_date", "PATIENT_BIRTHDATE", "mbr_birth_date", "birth.date"],
)  # fmt: skip
def test_case_separators_and_subject_prefixes_are_normalised(column):
    assert identify_column(column) == C


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("patient-ZIP_code 2", ("patient", "zip", "code")),  # trailing ordinal dropped
        ("DateOfBirth", ("date", "of", "birth")),  # camel case
        ("IPAddress", ("ip", "address")),  # a run of capitals before a word
        ("BIRTHDATE", ("birthdate",)),  # all capitals stay one word
        ("address1", ("address",)),
        ("READMITTED_30D", ("readmitted", "30", "d")),  # digits inside a name are no ordinal
        ("123", ("123",)),  # a name that is only digits keeps them
    ],
)
def test_column_words(name, words):
    assert column_words(name) == words


def test_identify_columns_keeps_the_order_and_classifies_each():
    names = ["SSN", "CODE", "ZIP", "STATE"]

    classified = identify_columns(iter(names))

    assert list(classified) == names
    assert classified == {"SSN": G, "CODE": None, "ZIP": B, "STATE": None}


def test_no_synonym_has_two_meanings_once_its_separators_are_removed():
    # Names match with or without separators, so "first_name" and "firstname" must mean the same.
    whole = {key.replace("_", "") for key in WHOLE_NAMES}
    head = {key.replace("_", "") for key in HEAD_NAMES}
    assert whole.isdisjoint(head)
    assert len(whole) == len(WHOLE_NAMES)
    assert len(head) == len(HEAD_NAMES)


def test_every_letter_has_at_least_one_synonym():
    letters = {identifier for identifier in (*WHOLE_NAMES.values(), *HEAD_NAMES.values()) if identifier}
    assert letters == set(SafeHarborIdentifier)


# The letters that no value detector can find are decided by column name alone (tests/phi/test_detectors.py
# has the value tables of B to O): names (A) read as ordinary words, biometrics (P) and photographs (Q) are
# binary or opaque templates, and other unique codes (R) look like any code. A name copied into free text
# is found through the dataset's own name columns by the known-values search (phi/known.py), not here.

# A: names of the individual and of relatives, employers and household members (164.514(b)(2)(i)(A)).
NAMES = [
    ("FIRST", A),  # Synthea
    ("LAST", A),
    ("MAIDEN", A),
    ("PREFIX", A),  # Mr., Mrs.: part of how the name is written
    ("patient_full_name", A),
    ("FNAME", A),  # extract abbreviations
    ("LAST_NM", A),
    ("middle_init", A),
    ("aka", A),
    ("father_name", A),
    ("drug_name", None),  # names of things, not of people
    ("concept_name", None),
    ("provider_name", None),  # a clinician is not the individual
    ("name_count", None),
]


@pytest.mark.parametrize(("column", "expected"), NAMES)
def test_names(column, expected):
    assert identify_column(column) == expected


# P: biometric identifiers, including finger and voice prints (164.514(b)(2)(i)(P)).
BIOMETRICS = [
    ("fingerprint", P),
    ("finger_print", P),
    ("fingerprint_template", P),
    ("voice_print", P),
    ("voice_sample", P),
    ("retinal_scan", P),
    ("iris_scan", P),
    ("palm_print", P),
    ("biometric_template", P),
    ("has_fingerprint", None),  # a flag about a biometric, not the biometric
    ("print_date", C),  # "print" alone is no biometric; the head noun is a date
]


@pytest.mark.parametrize(("column", "expected"), BIOMETRICS)
def test_biometric_identifiers(column, expected):
    assert identify_column(column) == expected


# Q: full-face photographs and comparable images (164.514(b)(2)(i)(Q)).
PHOTOGRAPHS = [
    ("photo", Q),
    ("patient_photo", Q),
    ("photograph", Q),
    ("face_image", Q),
    ("headshot", Q),
    ("picture", Q),
    ("selfie", Q),
    ("mugshot", Q),
    ("photo_url", N),  # the head noun is a URL, itself an identifier
    ("photo_count", None),
    ("is_photo_consented", None),
]


@pytest.mark.parametrize(("column", "expected"), PHOTOGRAPHS)
def test_photographs(column, expected):
    assert identify_column(column) == expected


# R: any other unique identifying number, characteristic or code (164.514(b)(2)(i)(R)): keys of the patient
# and the encounter. Codes of things (SNOMED CT, LOINC) and of clinicians and payers are not.
OTHER_CODES = [
    ("Id", R),  # Synthea's patient and encounter UUIDs
    ("PATIENT", R),
    ("ENCOUNTER", R),
    ("person_source_value", R),  # OMOP
    ("uuid", R),
    ("empi_id", R),
    ("mpi_id", R),
    ("CSN", R),  # Epic's contact serial number
    ("tax_id", R),
    ("CODE", None),
    ("REASONCODE", None),
    ("PROVIDER", None),
    ("PAYER", None),
    ("loinc_code", None),
]


@pytest.mark.parametrize(("column", "expected"), OTHER_CODES)
def test_other_unique_codes(column, expected):
    assert identify_column(column) == expected


# Spellings of extracts that the synonym table did not know, one row per gap closed.
@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("street_addr", B),
        ("city_name", B),
        ("county_name", B),
        ("zip_plus_4", B),  # the ordinal 4 is dropped, "zip plus" stays
        ("geo_lat", B),
        ("gps_coordinates", B),
        ("house_no", B),
        ("birth_year", C),  # reveals ages over 89
        ("YOB", C),
        ("age_in_years", C),
        ("time_of_birth", C),
        ("fax_num", E),
        ("email_addr", F),
        ("ssn_last4", G),  # the last four digits are still derived from the SSN
        ("mrn_number", H),
        ("medical_record", H),
        ("insurance_member_id", I),  # member_id as a head noun
        ("plan_subscriber_no", I),
        ("insurance_card_number", I),  # not J: the card names the plan's member
        ("account", J),
        ("FIN", J),  # Cerner's financial (account) number
        ("credit_card_number", J),
        ("cc_number", J),
        ("dl_no", K),
        ("passport_num", K),
        ("vin_number", L),
        ("vehicle_plate", L),
        ("serial", M),
        ("ip_addr", O),
        ("NPI", None),  # a clinician's identifier, like PROVIDER
        ("provider_npi", None),
    ],
)
def test_extract_spellings(column, expected):
    assert identify_column(column) == expected
