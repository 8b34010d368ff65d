"""Classification of a column by its name into one of the 18 Safe Harbor identifiers, or none.

A name is split into lowercase words (at spaces, hyphens, underscores, dots, camel case and digit runs),
trailing ordinals are dropped (``ADDRESS_2``, ``phone2``), and the words are looked up in a curated
synonym table by exact match, never by substring. Three rules, applied in order, decide:

1. **Whole name.** The words, joined, are a synonym: ``SSN``, ``Full Name``, ``e-mail``, ``DateOfBirth``.
   The table also names columns that are *not* identifiers, such as ``STATE`` (a State may be kept) or
   ``PROVIDER`` (it identifies a clinician, not the patient), so that no later rule overrides them.
2. **Qualified name.** Leading words that say whose or which value it is are set aside and rule 1 is
   tried again: the subject (``pt_``, ``patient_``, ``mbr_``, ``member_``, ``person_``), a relative,
   employer or household member, whose identifiers 164.514(b)(2)(i) removes as well (``mother_``,
   ``guarantor_``, ``emergency_contact_``, ``employer_``...), or a kind of address or number (``home_``,
   ``mailing_``, ``mobile_``...). So ``pt_ssn``, ``patient_name`` and ``mother_maiden_name`` are found.
3. **Head noun.** The last words of a name say what its values are, so a name that *ends* in an
   unambiguous identifier word is that identifier: ``provider_phone``, ``last_visit_date``,
   ``birth_dt``. Only words that cannot mean anything else are heads (``ssn``, ``phone``, ``zip_code``,
   ``date``...); short or generic words (``id``, ``name``, ``first``, ``start``, ``lat``) count only as
   the whole name under rule 1 or 2, so ``provider_id`` and ``drug_name`` stay unclassified. A name that
   opens with a counting or flag word (``has_``, ``is_``, ``num_``, ``count_``, ``total_``) describes
   identifiers rather than holding one, and is left to rules 1 and 2.

Because matching is by whole words at the head of a name, ``ZIP_CODE_COUNT``, ``EMAIL_OPT_IN`` and
``SSN_VERIFIED`` are not identifiers (their head nouns are ``count``, ``opt in`` and ``verified``), while
``PATIENT_ZIP_CODE`` is. A name is only a hint: values are scanned too (``phi.detectors``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from airflow_phi_guard.phi.identifiers import (
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
    N,
    O,
    P,
    Q,
    R,
    SafeHarborIdentifier,
)

#: Synonyms that identify a column only as its whole name (after qualifiers, rule 2): too short or too
#: generic to be a head noun. A value of None records a decision that the name is no identifier.
WHOLE_NAMES: dict[str, SafeHarborIdentifier | None] = {
    # A: the parts of a person's name, as Synthea and most EHR extracts split it.
    "name": A, "first": A, "last": A, "middle": A, "prefix": A, "suffix": A, "maiden": A, "given": A,
    "family": A, "initials": A, "middle_initial": A, "middle_init": A, "alias": A, "aka": A,
    # B: geographic subdivisions smaller than a State, and their geocodes.
    "lat": B, "lon": B, "lng": B, "long": B, "geocode": B, "geo_location": B, "location": B, "fips": B,
    "street": B, "street_name": B, "street_number": B, "house_number": B, "apartment": B, "apt": B,
    "precinct": B, "tract": B, "block_group": B, "neighborhood": B, "neighbourhood": B, "town": B,
    "addr": B, "addr_line": B, "geo_lat": B, "geo_lon": B, "geo_lng": B, "gps": B, "house_no": B,
    "apt_no": B, "apartment_number": B,
    # C: dates of the person's life and care, and ages (over 89 they are identifiers).
    "start": C, "stop": C, "end": C, "age": C, "admit": C, "discharge": C, "year_of_birth": C,
    "month_of_birth": C, "day_of_birth": C, "age_at_death": C, "age_years": C, "age_in_years": C,
    # D, E: bare words for a contact number.
    "tel": D, "mobile": D, "cell": D,
    # R: codes that single out the patient or the encounter. person_source_value is OMOP's copy of the
    # source system's patient identifier, whose kind (MRN, UUID, encrypted key) the CDM leaves open, so it
    # is the general "unique identifying code" rather than H.
    "id": R, "patient": R, "encounter": R, "person": R, "subject": R, "visit": R, "pt": R,
    "person_id": R, "person_source_value": R, "subject_id": R, "encounter_id": R, "visit_id": R,
    "visit_occurrence_id": R, "visit_source_value": R, "uuid": R, "guid": R, "empi": R, "mpi": R,
    "enterprise_id": R, "national_id": R, "national_identifier": R, "record_id": R, "tin": R,
    # Epic's contact serial number, which keys an encounter.
    "csn": R,
    # I: health plan numbers named by their holder.
    "mbr_id": I, "mbr_num": I, "mbr_number": I,
    # J: a billing account; Cerner's FIN (financial number) is the account of an encounter.
    "account": J, "fin": J,
    # K: Synthea's DRIVERS (driver's licence number) and PASSPORT columns.
    "drivers": K, "passport": K, "license": K, "licence": K, "certificate": K, "dln": K,
    # M: a bare serial is a serial number, of a device unless the name says vehicle (rule 1 tries
    # vehicle_serial_number first).
    "serial": M,
    # Decided not identifiers. A State is allowed by 164.514(b)(2)(i)(B), and so is a country. Synthea's
    # ORGANIZATION, PROVIDER and PAYER identify organisations and clinicians, not the patient.
    "state": None, "state_code": None, "state_name": None, "country": None, "country_code": None,
    "organization": None, "organisation": None, "provider": None, "payer": None, "gender": None,
    "sex": None, "race": None, "ethnicity": None, "marital": None, "marital_status": None,
    "income": None, "code": None, "description": None, "encounterclass": None,
    # A clinician's NPI and DEA registration identify the prescriber, not the patient (like PROVIDER).
    "npi": None, "dea": None,
}  # fmt: skip

#: Synonyms that identify a column also as the head (last words) of a longer name, rule 3.
HEAD_NAMES: dict[str, SafeHarborIdentifier] = {
    # A
    "first_name": A, "last_name": A, "middle_name": A, "given_name": A,
    "family_name": A, "full_name": A, "maiden_name": A, "surname": A, "nickname": A,
    # the abbreviations of extracts: FNAME, LAST_NM...
    "fname": A, "lname": A, "first_nm": A, "last_nm": A, "full_nm": A, "middle_nm": A,
    # B
    "address": B, "address_line": B, "street_address": B, "city": B, "county": B, "zip": B,
    "zip_code": B, "postal_code": B, "post_code": B, "latitude": B, "longitude": B,
    "fips_code": B, "county_fips": B, "census_tract": B, "census_block": B, "birthplace": B,
    "place_of_birth": B, "birth_city": B, "street_addr": B, "city_name": B, "county_name": B,
    "zip_plus": B, "geohash": B, "census_block_group": B, "gps_coordinates": B,
    # C: any name whose head is a date is a date; birth and death dates in their usual spellings.
    "date": C, "datetime": C, "dt": C, "dttm": C, "timestamp": C, "birthdate": C, "birthday": C,
    "dob": C, "date_of_birth": C, "birth_datetime": C, "deathdate": C, "dod": C, "date_of_death": C,
    "death_datetime": C, "birth_year": C, "yob": C, "dob_year": C, "birth_time": C, "time_of_birth": C,
    # D
    "phone": D, "phone_number": D, "phone_no": D, "phone_num": D, "telephone": D,
    "telephone_number": D, "cellphone": D, "mobile_number": D, "mobile_phone": D,
    # E
    "fax": E, "fax_number": E, "fax_no": E, "fax_num": E, "facsimile": E,
    # F: "e-mail" splits into "e" and "mail", joined back to "email".
    "email": F, "email_address": F, "email_addr": F,
    # G
    "ssn": G, "social_security_number": G, "social_security_no": G, "social_security": G,
    "soc_sec_no": G, "soc_sec_num": G,
    # the last four digits of an SSN ("ssn_last4" loses its ordinal 4) are still derived from it.
    "ssn_last": G,
    # H
    "mrn": H, "medical_record_number": H, "medical_record_no": H, "medical_record_num": H,
    "medical_record_id": H, "mr_number": H, "chart_number": H, "chart_no": H, "medical_record": H,
    "mrn_number": H, "mrn_no": H, "mrn_num": H, "mrn_id": H,
    # I
    "health_plan_id": I, "health_plan_number": I, "health_plan_beneficiary_number": I,
    "insurance_id": I, "insurance_number": I, "policy_number": I, "medicare_number": I,
    "medicare_id": I, "medicaid_number": I, "medicaid_id": I, "hicn": I, "mbi": I,
    # also as heads, so that insurance_member_id and plan_subscriber_id are found.
    "member_id": I, "member_number": I, "member_no": I, "subscriber_id": I, "subscriber_number": I,
    "subscriber_no": I, "beneficiary_id": I, "beneficiary_number": I, "insurance_card_number": I,
    # J
    "account_number": J, "account_no": J, "account_num": J, "account_id": J, "acct_number": J,
    "acct_no": J, "acct_num": J, "acct_id": J, "bank_account": J, "billing_account": J,
    # payment cards are account numbers too.
    "credit_card": J, "credit_card_number": J, "card_number": J, "cc_number": J, "iban": J,
    # K
    "drivers_license": K, "driver_license": K, "drivers_licence": K, "driver_licence": K,
    "drivers_license_number": K, "driver_license_number": K, "dl_number": K, "license_number": K,
    "licence_number": K, "license_no": K, "licence_no": K, "passport_number": K, "passport_no": K,
    "certificate_number": K, "certificate_no": K, "dl_num": K, "dl_no": K, "driver_lic": K, "lic_no": K,
    "license_num": K, "licence_num": K, "passport_num": K, "certificate_num": K,
    # L: longer than license_number, so it is tried first and wins.
    "vin": L, "vehicle_identification_number": L, "vehicle_id": L, "vehicle_serial_number": L,
    "license_plate": L, "licence_plate": L, "license_plate_number": L, "licence_plate_number": L,
    "plate_number": L, "number_plate": L, "vin_number": L, "vehicle_plate": L,
    # M
    "device_id": M, "device_identifier": M, "device_serial_number": M, "device_serial": M, "udi": M,
    "unique_device_identifier": M, "imei": M, "mac_address": M, "serial_number": M, "serial_no": M,
    # N
    "url": N, "uri": N, "web_url": N, "website": N, "web_address": N, "home_page": N,
    # O: "ipv4" splits into "ipv" and a dropped ordinal.
    "ip": O, "ip_address": O, "ipv": O, "ip_addr": O,
    # P
    "fingerprint": P, "voiceprint": P, "retina_scan": P,
    "iris_scan": P, "biometric": P, "biometric_id": P, "biometric_template": P, "fingerprint_template": P,
    "palm_print": P, "retinal_scan": P, "voice_sample": P,
    # Q
    "photo": Q, "photograph": Q, "face_photo": Q, "face_image": Q, "facial_image": Q, "portrait": Q,
    "headshot": Q, "picture": Q, "selfie": Q, "mugshot": Q, "face_scan": Q,
    # R
    "patient_id": R, "patient_uuid": R, "empi_id": R, "mpi_id": R, "tax_id": R, "itin": R,
}  # fmt: skip

#: Leading words of rule 2: the subject itself, the people whose identifiers 164.514(b)(2)(i) also
#: removes (relatives, employers, household members), and kinds of address or contact number.
QUALIFIERS: frozenset[tuple[str, ...]] = frozenset(
    tuple(qualifier.split("_"))
    for qualifier in (
        # The subject.
        "pt", "patient", "mbr", "member", "person", "subject", "client", "beneficiary",
        # Relatives, household members, employers, and the people who pay or answer for the patient.
        "insured", "subscriber", "guarantor", "policy_holder", "policyholder", "mother", "father", "parent",
        "spouse", "partner", "child", "sibling", "guardian", "caregiver", "emergency_contact", "contact",
        "next_of_kin", "nok", "kin", "relative", "household", "household_member", "employer",
        # Kinds of address or contact number.
        "home", "work", "mailing", "billing", "residential", "permanent", "current", "previous", "prior",
        "primary", "secondary", "alternate", "alt", "preferred", "mobile", "cell", "personal",
    )
)  # fmt: skip

#: First words that make a name a count or flag about identifiers, not an identifier (rule 3 skips it).
DERIVED_OPENINGS = frozenset({"has", "is", "was", "num", "count", "cnt", "total"})


def _by_compact_key(table: dict[str, SafeHarborIdentifier | None]) -> dict[str, SafeHarborIdentifier | None]:
    # Keys are written with underscores for reading; names match whether or not their words are separated
    # ("first_name", "FirstName" and "FIRSTNAME" alike), so lookups use the words run together.
    return {key.replace("_", ""): identifier for key, identifier in table.items()}


_WHOLE = _by_compact_key(WHOLE_NAMES)
_HEAD = _by_compact_key(HEAD_NAMES)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\d_]+")
_LONGEST_QUALIFIER = max(len(qualifier) for qualifier in QUALIFIERS)


def column_words(name: str) -> tuple[str, ...]:
    """The lowercase words of a column name, without trailing ordinals.

    ``"patient-ZIP_code 2"`` gives ``("patient", "zip", "code")``; ``"DateOfBirth"`` gives
    ``("date", "of", "birth")``; an all-capitals name such as ``BIRTHDATE`` stays one word.

    :param name: the column name as the source spells it.
    """
    words = [word.lower() for part in re.split(r"[\W_]+", name) for word in _WORD.findall(part)]
    while len(words) > 1 and words[-1].isdigit():
        words.pop()
    return tuple(words)


def identify_column(name: str) -> SafeHarborIdentifier | None:
    """The Safe Harbor identifier a column holds according to its name, or None.

    :param name: the column name as the source spells it.
    """
    words = column_words(name)
    if not words:
        return None

    found, identifier = _whole_or_qualified(words)
    if found:
        return identifier
    if words[0] not in DERIVED_OPENINGS:
        return _by_head_noun(words)
    return None


def identify_columns(names: Iterable[str]) -> dict[str, SafeHarborIdentifier | None]:
    """Classify several columns by name, in the order given.

    :param names: the column names as the source spells them.
    """
    return {name: identify_column(name) for name in names}


def _compact(words: tuple[str, ...]) -> str:
    return "".join(words)


def _lookup(words: tuple[str, ...]) -> tuple[bool, SafeHarborIdentifier | None]:
    """Rule 1: the whole name in either table."""
    key = _compact(words)
    if key in _WHOLE:
        return True, _WHOLE[key]
    if key in _HEAD:
        return True, _HEAD[key]
    return False, None


def _whole_or_qualified(words: tuple[str, ...]) -> tuple[bool, SafeHarborIdentifier | None]:
    """Rules 1 and 2: the whole name, then the name without each leading qualifier in turn."""
    found, identifier = _lookup(words)
    if found:
        return found, identifier

    for size in range(min(_LONGEST_QUALIFIER, len(words) - 1), 0, -1):
        if words[:size] in QUALIFIERS:
            return _whole_or_qualified(words[size:])
    return False, None


def _by_head_noun(words: tuple[str, ...]) -> SafeHarborIdentifier | None:
    """Rule 3: the longest proper tail of the name that is a head synonym."""
    for start in range(1, len(words)):
        tail = _compact(words[start:])
        if tail in _HEAD:
            return _HEAD[tail]
    return None
