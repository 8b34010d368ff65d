"""Identifiers in the values of text columns: the forms the issue names are found, Synthea's ordinary text
is not, and counts are per value, with nulls no finding."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.values import DETECTORS, ValueDetector, scan_values
from tests.conftest import SYNTHEA

D = SafeHarborIdentifier.TELEPHONE_NUMBER
F = SafeHarborIdentifier.EMAIL_ADDRESS
G = SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER


@pytest.mark.parametrize(
    ("value", "identifier"),
    [
        # G: social security numbers with hyphens or spaces.
        ("123-45-6789", G),
        ("123 45 6789", G),
        ("SSN 999-49-3983 on file", G),  # inside free text; Synthea's SSNs start with 999
        ("ssn:123-45-6789.", G),
        # D: NANP telephone numbers in the usual written forms.
        ("(402) 555-0199", D),
        ("(402)555-0199", D),
        ("402-555-0199", D),
        ("402.555.0199", D),
        ("402 555 0199", D),
        ("+1 402 555 0199", D),
        ("+1-402-555-0199", D),
        ("1-402-555-0199", D),
        ("+14025550199", D),
        ("call 402-555-0199 after 5pm", D),
        # F: email addresses.
        ("alice368@example.org", F),
        ("Alice.Gleason+ehr@mail.example.co.uk", F),
        ("contact: bob_smith@example.com.", F),
    ],
)
def test_identifier_forms_are_found(value, identifier):
    assert scan_values(pa.array([value])) == {identifier: 1}


@pytest.mark.parametrize(
    "value",
    [
        # Synthea's ordinary text and codes, which must never be flagged.
        "Body mass index 30+ - obesity (finding)",
        "Well child visit (procedure)",
        "Medication review due (situation)",
        "410620009",  # a SNOMED code stored as text: nine digits, no separators
        "4025550199",  # ten digits without separators are a code as often as a phone number
        "982192b6-6843-4011-ef46-32caaf87d8a9",  # a UUID
        "2022-07-20T07:13:55Z",
        "2022-07-20",
        "83.87",
        "-96.67877314083218",
        "Omaha  Nebraska  US",
        # Near misses of each pattern.
        "1234-56-7890",  # an SSN needs exactly 3-2-4 digits
        "123-45-67890",
        "123-4-5678",
        "402-555-019",  # too short for a line number
        "102-555-0199",  # NANP area codes start with 2-9
        "402-155-0199",  # and so do exchanges
        "alice@localhost",  # no domain with a dot
        "@example.org",
        "",
    ],
)
def test_ordinary_text_is_not_flagged(value):
    assert scan_values(pa.array([value])) == {}


@pytest.mark.parametrize("table", ["patients", "encounters", "conditions"])
def test_real_synthea_columns_are_not_flagged_except_the_ssn_column(table):
    # Every column read as text, as a CSV extract would arrive. Synthea's SSN column is the one column
    # whose values are SSNs, so every one of its values must be found, and nothing anywhere else.
    path = SYNTHEA / f"{table}.csv"
    header = path.open().readline().strip().split(",")
    data = pa_csv.read_csv(
        path, convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()))
    )

    findings = {column: scan_values(data.column(column)) for column in header}

    for column, found in findings.items():
        if column == "SSN":
            non_null = len(data) - data.column(column).null_count
            assert found == {G: non_null}
        else:
            assert found == {}, column


def test_nulls_are_no_finding():
    assert scan_values(pa.array([None, None], pa.string())) == {}
    assert scan_values(pa.array([None, "123-45-6789", None])) == {G: 1}


def test_a_value_counts_once_per_identifier_however_many_matches_it_holds():
    values = pa.array(["402-555-0199 or (402) 555-0100, 123-45-6789 and a@example.org", "none here"])

    assert scan_values(values) == {D: 1, F: 1, G: 1}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda values: pa.array(values, pa.string()), id="utf8"),
        pytest.param(lambda values: pa.array(values, pa.large_string()), id="large_utf8"),
        pytest.param(lambda values: pa.array(values, pa.string()).dictionary_encode(), id="dictionary"),
        pytest.param(lambda values: pa.chunked_array([values[:2], values[2:]], pa.string()), id="chunked"),
        pytest.param(
            lambda values: pa.chunked_array(
                [pa.array(values[:2]).dictionary_encode(), pa.array(values[2:]).dictionary_encode()]
            ),
            id="chunked-dictionary",
        ),
    ],
)
def test_counts_are_per_row_in_every_string_layout(make):
    # The same SSN three times: a dictionary holds it once, yet three rows contain it.
    values = ["123-45-6789", "x", "123-45-6789", None, "123-45-6789", "a@example.org"]

    assert scan_values(make(values)) == {G: 3, F: 1}


@pytest.mark.parametrize(
    "values",
    [
        pa.array([123456789, 4025550199]),
        pa.array([83.87]),
        pa.array([b"123-45-6789"], pa.binary()),
        pa.array([None], pa.null()),
        pa.array([1, 2]).dictionary_encode(),
    ],
)
def test_arrays_that_are_not_text_return_nothing(values):
    assert scan_values(values) == {}


def test_the_detector_table_can_be_extended():
    url = ValueDetector(SafeHarborIdentifier.WEB_URL, "url", r"https?://")
    values = pa.array(["see https://example.org", "123-45-6789"])

    assert scan_values(values, (*DETECTORS, url)) == {SafeHarborIdentifier.WEB_URL: 1, G: 1}
    assert scan_values(values, (url,)) == {SafeHarborIdentifier.WEB_URL: 1}


def test_the_default_detectors_cover_ssn_phone_and_email():
    assert {detector.identifier for detector in DETECTORS} >= {D, F, G}
