"""Value detectors: one commented table per Safe Harbor identifier, positives and negatives with the rule's
answer, the traps the issue names, confidences, the scan's counting, and precision on the real Synthea data.

Letters that no value detector can find are tested by column name in ``tests/phi/test_names.py``: names
(A), biometrics (P), photographs (Q) and other unique codes (R), which read as ordinary words or as codes
of any kind. A patient's name copied into free text is found by value through the dataset's own name
columns, which is the known-values search (``phi/known.py``, tested in ``tests/phi/test_known.py``).
"""

from __future__ import annotations

import logging
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pytest

from airflow_phi_guard.phi import detectors
from airflow_phi_guard.phi.detectors import (
    DETECTORS,
    Confidence,
    DetectorHit,
    ValueDetector,
    detect_column,
    mrn_detector,
    scan_values,
)
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from tests.conftest import SYNTHEA

A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, P, Q, R = (  # noqa: E741
    SafeHarborIdentifier(letter) for letter in "ABCDEFGHIJKLMNOPQR"
)
HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW


@pytest.fixture(autouse=True, params=["python", "arrow"])
def scan_path(request, monkeypatch):
    """Every test runs on both paths of the scan: a few distinct values are decided in Python, more in
    Arrow (RE2). The tables hold a value or a few, so the Arrow run lowers the threshold to none."""
    if request.param == "arrow":
        monkeypatch.setattr(detectors, "_FEW_VALUES", 0)
        monkeypatch.setattr(detectors, "_PYTHON_UP_TO", {})
    return request.param


def identifiers_in(value: str) -> set[SafeHarborIdentifier]:
    """The identifiers the default detectors find in one value, at any confidence."""
    found = scan_values(pa.array([value]))
    assert set(found.values()) <= {1}, "one value counts once per identifier"
    return set(found)


def expected(letter: SafeHarborIdentifier | None) -> set[SafeHarborIdentifier]:
    return {letter} if letter else set()


# B: geographic subdivisions smaller than a State (164.514(b)(2)(i)(B)): street addresses, and ZIP codes
# in address context. A bare five-digit number is no ZIP (issue), a city name alone cannot be told from
# other words by its form (the name of its column says it), and a State may be kept.
GEOGRAPHY = [
    ("406 Kohler Camp", B),  # Synthea's ADDRESS values (issue)
    ("974 Kunde Burg Apt 79", B),
    ("521 Halvorson Alley Unit 47", B),
    ("12 Main St", B),
    ("lives at 12 Main St. since", B),
    ("1600 Pennsylvania Avenue NW", B),
    ("35 5th Ave", B),  # an ordinal as the street name
    ("PO Box 1234", B),
    ("P.O. Box 77", B),
    ("Omaha, NE 68102", B),  # a ZIP after a State code and its comma
    ("Lincoln Nebraska 68504-1234", B),  # ZIP+4 after a State's name
    ("ZIP: 68102", B),
    ("zip code 02139-4307", B),
    ("68102", None),  # a bare five-digit number (issue)
    ("02139-4307", None),  # ZIP+4 shape without address context
    ("Patient ID 12345", None),  # ID is also Idaho's code: no comma, no ZIP
    ("Omaha  Nebraska  US", None),  # city, State and country (Synthea BIRTHPLACE): no street, no ZIP
    ("Nebraska", None),  # a State may be kept
    ("Chronic kidney disease stage 3 (disorder)", None),
    ("2 ML Ampicillin 250 MG/ML Injection", None),  # numbers before units, not a house number
    ("24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet", None),
    ("Take 2 tablets by mouth daily", None),
]


@pytest.mark.parametrize(("value", "letter"), GEOGRAPHY)
def test_geographic_subdivisions(value, letter):
    assert identifiers_in(value) == expected(letter)


# C: all elements of dates except the year (164.514(b)(2)(i)(C)), in the written forms the issue names.
# Only days the calendar has are dates: 2024-13-15 is not one (issue), nor 29 February of a common year.
DATES = [
    ("2021-03-04", C),  # ISO 8601
    ("2022-07-20T07:13:55Z", C),  # a Synthea timestamp
    ("2021/03/04", C),
    ("2024-02-29", C),  # leap day of a leap year
    ("2000-02-29", C),  # 2000 is a leap year (divisible by 400)
    ("3/4/2021", C),  # US month/day/year
    ("03/04/2021", C),
    ("13/03/2021", C),  # day first: no month 13, so 13 is the day
    ("04-03-2021", C),
    ("04.03.2021", C),
    ("March 3, 2021", C),
    ("Mar. 3rd 2021", C),
    ("3 Mar 2021", C),
    ("03-MAR-2021", C),
    ("3rd of March 2021", C),
    ("seen 3/4/21 in clinic", C),  # a two-digit year
    ("since March 2021", C),  # a month is an element of a date
    ("2024-13-15", None),  # no month 13 (issue)
    ("2023-02-29", None),  # 2023 is no leap year
    ("1900-02-29", None),  # 1900 is no leap year (divisible by 100, not by 400)
    ("2021-04-31", None),  # April has 30 days
    ("February 30, 2021", None),
    ("31/31/2021", None),
    ("2021", None),  # a year alone is what Safe Harbor keeps
    ("120/80", None),  # blood pressure
    ("4548-4", None),  # a LOINC code
    ("you may take 2 tablets", None),  # "may" without a day and a year
    ("Body mass index 30+ - obesity (finding)", None),
]


@pytest.mark.parametrize(("value", "letter"), DATES)
def test_dates(value, letter):
    assert identifiers_in(value) == expected(letter)


# D: telephone numbers of the North American Numbering Plan: area code and exchange start with 2-9 and
# are not N11 service codes. Ten digits without separators are a code as often as a number, unless a
# telephone word stands before them.
TELEPHONE_NUMBERS = [
    ("(402) 555-0199", D),
    ("(402)555-0199", D),
    ("402-555-0199", D),
    ("402.555.0199", D),
    ("402 555 0199", D),
    ("+1 402 555 0199", D),
    ("+1-402-555-0199", D),
    ("1-402-555-0199", D),
    ("+14025550199", D),  # E.164
    ("call 402-555-0199 after 5pm", D),
    ("402-555-0199x123", D),  # an extension after the number
    ("phone: 4025550199", D),  # unseparated after a telephone word
    ("4025550199", None),  # unseparated, no context: a code as often as a number
    ("102-555-0199", None),  # area codes start with 2-9
    ("402-155-0199", None),  # and so do exchanges
    ("911-555-0199", None),  # N11 is a service code, not an area code
    ("402-411-0199", None),  # nor an exchange
    ("982192b6-6843-4011-ef46-32caaf87d8a9", None),  # a UUID holds no phone number (issue)
    (r"ddd-343-\dddd", None),  # no digits where a number has them (issue)
    ("4548-4", None),  # a LOINC code (issue)
    ("402-555-019", None),  # too short for a line number
    ("$402.55", None),  # an amount
]


@pytest.mark.parametrize(("value", "letter"), TELEPHONE_NUMBERS)
def test_telephone_numbers(value, letter):
    assert identifiers_in(value) == expected(letter)


# E: fax numbers: a telephone number whose context says fax; it is a fax number, not also a telephone one.
FAX_NUMBERS = [
    ("Fax: 402-555-0199", E),
    ("fax (402) 555-0199", E),
    ("Fax no. 4025550199", E),
    ("facsimile +1 402 555 0199", E),
    ("FAX#402.555.0199", E),
    ("fax machine broken", None),
    ("Fax: none on file", None),
]


@pytest.mark.parametrize(("value", "letter"), FAX_NUMBERS)
def test_fax_numbers(value, letter):
    assert identifiers_in(value) == expected(letter)


def test_a_value_with_a_telephone_and_a_fax_number_holds_both():
    assert identifiers_in("Tel 402-555-0100, fax 402-555-0199") == {D, E}


# F: email addresses: a local part, @, and a domain with a dot and a top-level domain.
EMAIL_ADDRESSES = [
    ("alice368@example.org", F),
    ("Alice.Gleason+ehr@mail.example.co.uk", F),
    ("contact: bob_smith@example.com.", F),
    ("bob@www.example.com", F),  # an email address, not a URL, though its domain starts with www.
    ("alice@localhost", None),  # no domain with a dot
    ("@example.org", None),
    ("alice@", None),
    ("a @ b", None),
]


@pytest.mark.parametrize(("value", "letter"), EMAIL_ADDRESSES)
def test_email_addresses(value, letter):
    assert identifiers_in(value) == expected(letter)


# G: social security numbers in the written 3-2-4 form, or nine digits after the word SSN. Nine digits
# alone are a SNOMED CT code as often as an SSN (issue); LOINC codes have the wrong groups (issue).
SOCIAL_SECURITY_NUMBERS = [
    ("123-45-6789", G),
    ("123 45 6789", G),
    ("SSN 999-49-3983 on file", G),  # a Synthea SSN in free text: never issued, still reported
    ("ssn:123-45-6789.", G),
    ("SSN: 123456789", G),  # unseparated after the word SSN
    ("social security no. 123456789", G),
    ("314529007", None),  # a nine-digit SNOMED CT code (Synthea CODE, issue)
    ("4548-4", None),  # a LOINC code (issue)
    ("1234-56-7890", None),  # 4-2-4 digits
    ("123-45-67890", None),
    ("123-4-5678", None),
    ("123-45 6789", None),  # two different separators
]


@pytest.mark.parametrize(("value", "letter"), SOCIAL_SECURITY_NUMBERS)
def test_social_security_numbers(value, letter):
    assert identifiers_in(value) == expected(letter)


# G, confidence: the SSA never issues area 000, 666 or 900-999, group 00 or serial 0000; such values in
# free text are reported at low confidence, not as confirmed SSNs (issue).
@pytest.mark.parametrize(
    ("value", "detector", "confidence"),
    [
        ("123-45-6789", "ssn", HIGH),
        ("001-01-0001", "ssn", HIGH),  # the lowest issued area, group and serial
        ("665-12-3456", "ssn", HIGH),
        ("667-12-3456", "ssn", HIGH),
        ("899-12-3456", "ssn", HIGH),  # the highest issued area
        ("999-49-3983", "ssn-never-issued", LOW),  # every Synthea SSN starts with 999
        ("900-12-3456", "ssn-never-issued", LOW),
        ("000-12-3456", "ssn-never-issued", LOW),
        ("666-12-3456", "ssn-never-issued", LOW),
        ("123-00-4567", "ssn-never-issued", LOW),  # group 00
        ("123-45-0000", "ssn-never-issued", LOW),  # serial 0000
        ("SSN 123456789", "ssn-context", HIGH),
        ("SSN 999493983", "ssn-context", LOW),
        ("SSN 123000000", "ssn-context", LOW),
    ],
)
def test_ssn_structure_decides_the_confidence(value, detector, confidence):
    assert detect_column(pa.array([value])) == (DetectorHit(detector, G, confidence, 1),)


# H: medical record numbers: a code after MRN or "medical record number"; a policy declares the formats
# of its own institution with mrn_detector (tested below).
MEDICAL_RECORD_NUMBERS = [
    ("MRN: 12345678", H),
    ("mrn 00123456", H),
    ("MRN12345678", H),
    ("medical record number A1234567", H),
    ("Medical Record #: 555123", H),
    ("MRN", None),
    ("MRN: pending", None),  # no digit
    ("MRN: 12", None),  # too short for a record number
    ("murmur heard", None),
]


@pytest.mark.parametrize(("value", "letter"), MEDICAL_RECORD_NUMBERS)
def test_medical_record_numbers(value, letter):
    assert identifiers_in(value) == expected(letter)


# I: health plan beneficiary numbers: the Medicare beneficiary identifier in CMS's format (11 characters,
# C A AN N A AN N A A N N, never S, L, O, I, B or Z), or a code after member, subscriber or policy number.
HEALTH_PLAN_NUMBERS = [
    ("1EG4-TE5-MK73", I),  # CMS's published example MBI
    ("1EG4TE5MK73", I),
    ("member id: XYZ123456", I),
    ("Subscriber No. 44-8812-7", I),
    ("policy number H12345678", I),
    ("1EG4-TE5-MK7", None),  # ten characters
    ("1SG4-TE5-MK73", None),  # S is never used
    ("0EG4-TE5-MK73", None),  # the first character is 1-9
    ("1EG4-TE5-MKA3", None),  # position 10 is a digit
    ("member of the family", None),
    ("A1c", None),
]


@pytest.mark.parametrize(("value", "letter"), HEALTH_PLAN_NUMBERS)
def test_health_plan_beneficiary_numbers(value, letter):
    assert identifiers_in(value) == expected(letter)


# J: account numbers: payment card numbers that pass Luhn with a network's prefix and length (issue), and
# codes after "account number". Amounts of money and lists of codes are no account numbers (issue).
ACCOUNT_NUMBERS = [
    ("4111 1111 1111 1111", J),  # Visa's published test number
    ("4111-1111-1111-1111", J),
    ("4111111111111111", J),
    ("5555555555554444", J),  # Mastercard's
    ("2223003122003222", J),  # Mastercard's 2-series
    ("378282246310005", J),  # American Express, 15 digits
    ("3782 822463 10005", J),  # grouped 4-6-5
    ("6011111111111117", J),  # Discover
    ("paid with 4111 1111 1111 1111 today", J),
    ("account number 12345678", J),
    ("Acct #: 987654321", J),
    ("4111 1111 1111 1112", None),  # fails Luhn
    ("1234567812345670", None),  # passes Luhn, but no network issues numbers from 1
    ("378282246310006", None),
    ("442571000124108", None),  # a 15-digit SNOMED CT code (Synthea) starting like Visa
    ("83.87", None),  # amounts (issue)
    ("$1,234.56", None),
    ("1,234,567.89", None),
    ("USD 4111.11", None),
    ("44054006;38341003", None),  # a list of SNOMED CT codes (the demo's CONDITION_CODES)
    ("take into account 2 factors", None),
]


@pytest.mark.parametrize(("value", "letter"), ACCOUNT_NUMBERS)
def test_account_numbers(value, letter):
    assert identifiers_in(value) == expected(letter)


# K: certificate and licence numbers, only after their words (issue): A1c (a lab test), H1 and B43 (codes)
# and licence-shaped numbers without context are not licences here; a DRIVERS column says so by its name.
LICENSE_NUMBERS = [
    ("DL# S99962701", K),  # a Synthea DRIVERS value after its context
    ("DL: S99962701", K),
    ("DL no. S99962701", K),
    ("license no. K1234567", K),
    ("Driver's license S99962701", K),
    ("driver license number: D1234567", K),
    ("passport X88720507X", K),  # a Synthea PASSPORT value after its context
    ("Passport No. 123456789", K),
    ("certificate no. 2021-12345", K),
    ("A1c", None),  # issue
    ("H1", None),  # issue
    ("B43", None),  # issue
    ("HbA1c 7.2 mg/dL", None),
    ("LDL: 130 mg/dL", None),  # "DL" inside LDL is no driver's licence
    ("glucose 110 mg/dL: 1234", None),
    ("S99962701", None),  # licence-shaped, but no context
    ("Received certificate of high school equivalency (finding)", None),  # a Synthea description
    ("license renewed", None),
]


@pytest.mark.parametrize(("value", "letter"), LICENSE_NUMBERS)
def test_certificate_and_license_numbers(value, letter):
    assert identifiers_in(value) == expected(letter)


# L: vehicle identifiers: VINs with a valid check digit (49 CFR 565.15), a VIN after the word VIN, and a
# licence plate after its words.
VEHICLE_IDENTIFIERS = [
    ("1M8GDM9AXKP042788", L),  # check digit X
    ("1HGCM82633A004352", L),
    ("VIN 1HGCM82633A004352 on title", L),
    ("VIN: WVWZZZ1JZXW000001", L),  # a European VIN has no check digit, the word VIN says what it is
    ("license plate: ABC 123", L),
    ("plate no. 7ABC123", L),
    ("1M8GDM9AXKP042789", None),  # wrong check digit
    ("1M8GDM9AIKP042788", None),  # I is never used in a VIN
    ("10939881000119105", None),  # a 17-digit SNOMED CT code (Synthea)
    ("license plate: unknown", None),
    ("bone plate 2 screws", None),
]


@pytest.mark.parametrize(("value", "letter"), VEHICLE_IDENTIFIERS)
def test_vehicle_identifiers(value, letter):
    assert identifiers_in(value) == expected(letter)


# M: device identifiers and serial numbers: MAC addresses, serial numbers after their words, GS1 device
# identifiers.
DEVICE_IDENTIFIERS = [
    ("00:1a:2b:3c:4d:5e", M),
    ("00-1A-2B-3C-4D-5E", M),
    ("001a.2b3c.4d5e", M),  # Cisco's dotted form
    ("S/N: AB12345", M),
    ("serial no. 12345678", M),
    ("Serial number: XYZ-00123", M),
    ("IMEI 490154203237518", M),
    ("device id: 7f3a9c21", M),
    ("(01)00884838001234", M),  # a GS1 UDI device identifier
    ("07:13:55", None),  # a time
    ("serial 7s intact", None),  # a mental status test
    ("serial troponins negative", None),
    ("serial no. 7", None),
]


@pytest.mark.parametrize(("value", "letter"), DEVICE_IDENTIFIERS)
def test_device_identifiers(value, letter):
    assert identifiers_in(value) == expected(letter)


# N: web URLs, with a scheme or a www. host. An email address is not a URL (issue).
WEB_URLS = [
    ("https://example.org/x", N),
    ("see http://portal.example.com/records", N),
    ("www.example.org", N),
    ("visit WWW.Example.org.", N),
    ("ftp://files.example.org", N),
    ("alice@example.org", F),  # an email address is not a URL
    ("example", None),
    ("https://", None),  # no host
    ("www", None),
]


@pytest.mark.parametrize(("value", "letter"), WEB_URLS)
def test_web_urls(value, letter):
    assert identifiers_in(value) == expected(letter)


# O: IP addresses: IPv4 with octets 0-255, IPv6 full or compressed.
IP_ADDRESSES = [
    ("10.0.0.1", O),
    ("192.168.1.254", O),
    ("from IP 8.8.8.8.", O),
    ("2001:db8::1", O),
    ("fe80::1ff:fe23:4567:890a", O),
    ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", O),
    ("::ffff:192.0.2.1", O),  # IPv4 mapped into IPv6
    ("256.1.1.1", None),  # no octet above 255
    ("1.2.3", None),
    ("1.2.3.4.5", None),  # five parts: a version or an OID, not an address
    ("2.16.840.1.113883.6.1", None),  # an HL7 OID
    ("07:13:55", None),  # a time
    ("::", None),
    ("a::b", None),
    ("std::vector", None),
    ("00:1a:2b:3c:4d:5e", M),  # a MAC address, not an IPv6 one
]


@pytest.mark.parametrize(("value", "letter"), IP_ADDRESSES)
def test_ip_addresses(value, letter):
    assert identifiers_in(value) == expected(letter)


# The traps the issue names, and the ordinary content of a clinical extract: no identifier in any of them.
@pytest.mark.parametrize(
    "value",
    [
        "982192b6-6843-4011-ef46-32caaf87d8a9",  # a UUID contains no phone number
        "A1c",  # not a licence
        "H1",
        "B43",
        "314529007",  # a nine-digit SNOMED CT code is not an SSN
        "4548-4",  # a LOINC code is neither a phone number nor an SSN
        r"ddd-343-\dddd",  # no phone number
        "83.87",  # money amounts are not identifiers
        "$1,234.56",
        "1234.56 USD",
        "-96.67877314083218",
        "2024-13-15",  # not a date
        "Well child visit (procedure)",
        "Medication review due (situation)",
        "Routine visit CANARYTEXT",
        "410620009;44054006;38341003",
        "",
    ],
)
def test_the_traps_of_the_issue_are_no_identifiers(value):
    assert identifiers_in(value) == set()


ALL_TABLES = (
    GEOGRAPHY + DATES + TELEPHONE_NUMBERS + FAX_NUMBERS + EMAIL_ADDRESSES + SOCIAL_SECURITY_NUMBERS
    + MEDICAL_RECORD_NUMBERS + HEALTH_PLAN_NUMBERS + ACCOUNT_NUMBERS + LICENSE_NUMBERS + VEHICLE_IDENTIFIERS
    + DEVICE_IDENTIFIERS + WEB_URLS + IP_ADDRESSES
)  # fmt: skip


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda detector: detector.name)
def test_re2_and_python_read_each_pattern_alike(detector):
    # The patterns run under RE2 (the scan, and Great Expectations on Arrow strings) and under Python's re
    # (matches re-read in Python, Great Expectations on object strings): they must agree on every value.
    values = [value for value, _ in ALL_TABLES]
    by_re2 = pc.match_substring_regex(pa.array(values), detector.pattern).to_pylist()
    by_python = [detector.compiled.search(value) is not None for value in values]
    assert by_re2 == by_python


def test_the_detectors_cover_every_letter_that_values_can_show():
    # A, P, Q and R cannot be told by the form of a value: see the module docstring.
    assert {detector.identifier for detector in DETECTORS} == set(SafeHarborIdentifier) - {A, P, Q, R}


def test_detector_names_are_unique():
    names = [detector.name for detector in DETECTORS]
    assert len(names) == len(set(names))


# Street suffixes that are also clinical words give low confidence unless a unit number follows; the usual
# ones give medium confidence. Either way the value is reported (fail closed).
@pytest.mark.parametrize(
    ("value", "confidence"),
    [
        ("406 Kohler Camp", MEDIUM),
        ("12 Main St", MEDIUM),
        ("Level 1 Trauma Center", LOW),
        ("888 Ziemann Center", LOW),
        ("888 Ziemann Center Suite 4", MEDIUM),  # a unit makes it an address
        ("3 Bed Rest", LOW),
    ],
)
def test_street_address_confidence(value, confidence):
    assert detect_column(pa.array([value])) == (DetectorHit("street-address", B, confidence, 1),)


def test_a_value_counts_once_per_detector_at_its_best_confidence():
    values = pa.array(["Level 1 Trauma Center, 12 Main St", "SSN 999493983 or SSN 123456789", "3 Bed Rest"])

    hits = detect_column(values)

    assert hits == (
        DetectorHit("street-address", B, MEDIUM, 1),
        DetectorHit("street-address", B, LOW, 1),
        DetectorHit("ssn-context", G, HIGH, 1),
    )


def test_hits_split_a_column_by_confidence_and_add_up_to_its_matches():
    values = pa.array(["123-45-6789", "999-49-3983", "999-17-9786", None, "none", "123 45 6789"])

    assert detect_column(values) == (
        DetectorHit("ssn", G, HIGH, 2),
        DetectorHit("ssn-never-issued", G, LOW, 2),
    )
    assert scan_values(values) == {G: 4}


def test_a_value_counts_once_per_identifier_in_scan_values():
    values = pa.array(["402-555-0199 or (402) 555-0100, 123-45-6789 and a@example.org", "nothing here"])

    assert scan_values(values) == {D: 1, F: 1, G: 1}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda values: pa.array(values, pa.string()), id="utf8"),
        pytest.param(lambda values: pa.array(values, pa.large_string()), id="large_utf8"),
        pytest.param(lambda values: pa.array(values, pa.string_view()), id="string_view"),
        pytest.param(lambda values: pa.array(values, pa.string()).dictionary_encode(), id="dictionary"),
        pytest.param(lambda values: pa.chunked_array([values[:3], values[3:]], pa.string()), id="chunked"),
        pytest.param(
            lambda values: pa.chunked_array(
                [pa.array(values[:3]).dictionary_encode(), pa.array(values[3:]).dictionary_encode()]
            ),
            id="chunked-dictionary",
        ),
    ],
)
def test_counts_are_per_row_in_every_string_layout(make):
    # The same date on three rows: a dictionary holds it once, yet three rows contain it.
    values = ["2021-03-04", "x", "999-49-3983", "2021-03-04", None, "2021-03-04"]

    assert detect_column(make(values)) == (
        DetectorHit("date-iso", C, HIGH, 3),
        DetectorHit("ssn-never-issued", G, LOW, 1),
    )


@pytest.mark.parametrize(
    "values",
    [
        pa.array([123456789, 4025550199]),
        pa.array([83.87]),
        pa.array([b"123-45-6789"], pa.binary()),
        pa.array([None], pa.null()),
        pa.array([None, None], pa.string()),
        pa.array([1, 2]).dictionary_encode(),
        pa.array([], pa.string()),
    ],
)
def test_arrays_without_text_give_nothing(values):
    assert detect_column(values) == ()
    assert scan_values(values) == {}


def test_validators_run_once_per_distinct_matched_text_not_per_row():
    calls = []

    def validator(match: str) -> bool:
        calls.append(match)
        return True

    counting = ValueDetector("counting", C, r"[0-9]{4}-[0-9]{2}-[0-9]{2}", validator=validator)
    values = pa.array(
        ["seen 2021-03-04"] * 5000 + ["no date"] * 5000 + [f"note {n} 2021-03-05" for n in range(50)]
    )

    assert detect_column(values, [counting]) == (DetectorHit("counting", C, HIGH, 5050),)
    assert sorted(calls) == ["2021-03-04", "2021-03-05"]


def test_a_value_whose_first_match_is_rejected_is_read_again_for_a_later_one():
    # The first card-shaped number fails Luhn; the second passes.
    values = pa.array(["4111 1111 1111 1112 then 4111 1111 1111 1111"])

    assert scan_values(values) == {J: 1}


def test_the_engines_disagreeing_is_reported_at_low_confidence_not_missed(caplog):
    # RE2's \b is ASCII, Python's is Unicode: before "1" in "é1" RE2 sees a boundary and Python does not.
    # Such a value cannot be judged in Python, so it is reported rather than let through.
    disagreeing = ValueDetector("disagreeing", M, r"\b1", validator=lambda match: True, excluded_before="é")

    with caplog.at_level(logging.WARNING):
        hits = detect_column(pa.array(["é1"]), [disagreeing])

    assert hits == (DetectorHit("disagreeing", M, LOW, 1),)
    assert "é1" not in caplog.text


def test_no_value_reaches_the_log(caplog):
    values = pa.array(
        ["SSN 999-49-3983", "Fax: 402-555-0199", "4111 1111 1111 1112 then 4111 1111 1111 1111"]
    )

    with caplog.at_level(logging.DEBUG, logger="airflow_phi_guard"):
        detect_column(values)
        scan_values(values)

    assert not any(value in caplog.text for value in ("3983", "0199", "1111"))


# Confidence is ordered by how sure it is, not alphabetically.
def test_confidences_are_ordered():
    assert LOW < MEDIUM < HIGH
    assert max([MEDIUM, HIGH, LOW]) is HIGH
    assert sorted([HIGH, LOW, MEDIUM]) == [LOW, MEDIUM, HIGH]
    assert [confidence.rank for confidence in (LOW, MEDIUM, HIGH)] == [0, 1, 2]
    assert HIGH == "high"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(pattern=r"(?=lookahead)"), ValueError),  # Python reads it, RE2 refuses lookaround
        (dict(pattern=r"\pL+"), ValueError),  # RE2 reads it, Python refuses \p
        (dict(pattern="[0-9]+", confidence_if_invalid=LOW), ValueError),  # a fallback needs a validator
        (dict(pattern="[0-9]+", excluded_before="(?<=x)"), ValueError),
        (dict(pattern="[0-9]+", identifier="G"), TypeError),
        (dict(pattern="[0-9]+", confidence="high"), TypeError),
    ],
)
def test_a_detector_that_could_not_run_is_refused_when_made(kwargs, error):
    arguments = {"name": "bad", "identifier": G, **kwargs}
    with pytest.raises(error, match="bad"):
        ValueDetector(**arguments)


def test_regex_decides_only_without_validator_or_excluded_context():
    by_name = {detector.name: detector for detector in DETECTORS}

    assert by_name["email"].regex_decides
    assert by_name["ssn"].regex_decides
    assert not by_name["luhn-card"].regex_decides  # Luhn is no regular expression
    assert not by_name["nanp-phone"].regex_decides  # a number after "fax" is left to the fax detector


# mrn_detector: the MRN format a policy declares (H), matched only as a whole code, never inside a longer
# run of letters and digits.
@pytest.mark.parametrize(
    ("pattern", "value", "found"),
    [
        ("MRN[0-9]{7}", "seen MRN0012345 today", True),
        ("MRN[0-9]{7}", "MRN0012345", True),
        ("MRN[0-9]{7}", "XMRN0012345", False),  # inside a longer code
        ("MRN[0-9]{7}", "MRN00123456", False),  # one digit too many
        ("[0-9]{8}", "chart 12345678.", True),
        ("[0-9]{8}", "code 123456789012", False),  # eight digits inside twelve
        ("^[0-9]{8}$", "12345678", True),  # anchors keep their meaning: the whole value
        ("^[0-9]{8}$", "id 12345678", False),
        ("(?i:mrn)-[0-9]{6}", "mrn-123456", True),
    ],
)
def test_policy_declared_mrn_patterns(pattern, value, found):
    detector = mrn_detector(pattern)

    assert detector.identifier is H
    assert scan_values(pa.array([value]), [detector]) == ({H: 1} if found else {})


def test_an_mrn_pattern_that_matches_nothing_in_particular_is_refused():
    with pytest.raises(ValueError, match="empty"):
        mrn_detector("[0-9]*")
    with pytest.raises(ValueError, match="RE2"):
        mrn_detector("(?<=x)[0-9]{6}")


def test_the_detector_table_can_be_extended():
    canary = ValueDetector("canary", R, r"CANARY[0-9]{4}")
    values = pa.array(["seen CANARY0042 today", "123-45-6789"])

    assert scan_values(values) == {G: 1}
    assert scan_values(values, (*DETECTORS, canary)) == {G: 1, R: 1}
    assert detect_column(values, [canary]) == (DetectorHit("canary", R, HIGH, 1),)


# The check digits that the validators rely on, on codes of the real data: every SNOMED CT code in the
# Synthea files is a valid SNOMED CT identifier, so a long code that happens to pass Luhn is known for one.
def test_every_synthea_snomed_code_passes_the_snomed_check_digit():
    codes = set()
    for table, columns in (("encounters", ("CODE", "REASONCODE")), ("conditions", ("CODE",))):
        data = _read_as_text(table)
        for column in columns:
            codes |= {code for code in data.column(column).to_pylist() if code}

    assert codes
    assert all(detectors._is_snomed_identifier(code) for code in codes)
    assert not any(
        detectors._is_snomed_identifier(code[:-1] + str((int(code[-1]) + 1) % 10)) for code in codes
    )


def _read_as_text(table: str) -> pa.Table:
    path = SYNTHEA / f"{table}.csv"
    header = path.open().readline().strip().split(",")
    return pa_csv.read_csv(
        path, convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()))
    )


def _filled(data: pa.Table, column: str) -> int:
    """The values of a column read as text that are not empty."""
    return sum(1 for value in data.column(column).to_pylist() if value)


# Precision on the real Synthea data, every column read as text as a CSV extract would arrive: the only
# findings are the identifiers the columns hold, found in every value that holds one. SSNs are reported at
# low confidence (area 999, never issued), addresses as street addresses, dates in the date columns; codes,
# amounts, descriptions, UUIDs, names, cities and geocodes give nothing by value (names, cities, ZIPs and
# geocodes are found by their column names).
def _expected_synthea_hits(table: str, data: pa.Table) -> dict[str, set[tuple[str, Confidence]] | None]:
    every = {
        "patients": {
            "BIRTHDATE": {("date-iso", HIGH)},
            "DEATHDATE": {("date-iso", HIGH)},
            "SSN": {("ssn-never-issued", LOW)},
            "ADDRESS": {("street-address", MEDIUM), ("street-address", LOW)},
        },
        "encounters": {"START": {("date-iso", HIGH)}, "STOP": {("date-iso", HIGH)}},
        "conditions": {"START": {("date-iso", HIGH)}, "STOP": {("date-iso", HIGH)}},
    }[table]
    return {column: every.get(column) for column in data.column_names}


@pytest.mark.parametrize("table", ["patients", "encounters", "conditions"])
def test_precision_on_the_real_synthea_columns(table):
    data = _read_as_text(table)

    for column, allowed in _expected_synthea_hits(table, data).items():
        hits = detect_column(data.column(column))
        if allowed is None:
            assert hits == (), column
            continue
        assert {(hit.detector, hit.confidence) for hit in hits} <= allowed, column
        # Every filled value of an identifier column is found, once.
        assert sum(hit.matches for hit in hits) == _filled(data, column), column


def test_every_synthea_address_is_found_and_most_at_medium_confidence():
    data = _read_as_text("patients")

    hits = {hit.confidence: hit.matches for hit in detect_column(data.column("ADDRESS"))}

    assert sum(hits.values()) == len(data)
    assert hits[MEDIUM] > hits.get(LOW, 0)


def test_patterns_hold_no_named_groups():
    # Great Expectations joins the patterns of one identifier into one expression; two groups of one name
    # would make it invalid.
    assert not any(re.search(r"\(\?P<", detector.pattern) for detector in DETECTORS)
