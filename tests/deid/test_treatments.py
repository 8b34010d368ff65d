"""The de-identification treatments, each against the rule of REGULATORY.md or the issue that defines it."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from airflow_phi_guard.deid import treatments
from airflow_phi_guard.deid.treatments import (
    ISO_DATES,
    KEY_FINGERPRINT_LABEL,
    DateReading,
    DateTextFormat,
    ExcelSerials,
    TwoDigitYears,
    aged_90_or_over,
    completed_years,
    key_fingerprint,
    pseudonymize,
    recorded_dates,
    suppressed,
    to_age,
    to_birth_year,
    to_year,
    to_zip3,
    us_zip_codes,
)
from airflow_phi_guard.exceptions import InvalidValuesError
from airflow_phi_guard.policy.models import Zip3Vintage

KEY = b"test-key-not-a-secret"
OTHER_KEY = b"another-test-key"
NEW_YORK = "America/New_York"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --- to_year: dates to their year as recorded (164.514(b)(2)(i)(C)) -----------------------------------------


@pytest.mark.parametrize(
    ("text", "year"),
    [
        ("2020-12-31T22:30:00-05:00", 2020),  # as recorded; in UTC it would already be 2021
        ("2021-01-01T00:30:00+14:00", 2021),  # in UTC it would still be 2020
        ("2022-07-20T07:13:55Z", 2022),  # Synthea encounter START
        ("2022-07-20", 2022),  # Synthea condition START
        ("1999-12-31 23:59:59", 1999),  # space instead of T
        ("2020-06-15T10:00:00.123456+0530", 2020),  # fraction, offset without colon
        ("2020-06-15T10:00", 2020),  # no seconds
        ("2024-02-29", 2024),  # a real leap day
        (" 2020-01-01 ", 2020),  # surrounding whitespace
    ],
)
def test_to_year_reads_the_year_written_in_iso_text(text, year):
    assert to_year(pa.array([text])).to_pylist() == [year]


@pytest.mark.parametrize(
    "text",
    [
        "2024-13-15",  # impossible month
        "2023-02-29",  # 29 February of a common year
        "2100-02-29",  # 2100 is not a leap year
        "2024-04-31",  # past the end of April
        "2020-12-31T25:00:00",  # impossible hour
        "12/31/2020",  # not ISO 8601
        "31.12.2020",
        "20-12-31",  # two-digit year
        "2020-1-5",  # ISO needs two-digit months and days
        "45000",  # an Excel serial stored as text
        "2020",  # a bare year is no date
        "unknown",
    ],
)
def test_to_year_refuses_text_that_is_not_an_iso_date(text):
    with pytest.raises(InvalidValuesError) as raised:
        to_year(pa.array([text]))

    assert (raised.value.count, raised.value.expected) == (1, "ISO 8601 dates")
    assert text.strip() not in str(raised.value)  # the message never carries a value


def test_to_year_counts_every_unreadable_value():
    with pytest.raises(InvalidValuesError) as raised:
        to_year(pa.array(["2020-01-01", "2023-02-29", "not a date", None, "2021-06-01", "01/02/2003"]))

    assert raised.value.count == 3


def test_to_year_keeps_nulls_and_treats_empty_text_as_missing():
    result = to_year(pa.array(["2020-01-01", None, "", "   "]))

    assert result.type == pa.int32()
    assert result.to_pylist() == [2020, None, None, None]


@pytest.mark.parametrize(
    ("values", "years"),
    [
        (pa.array([date(2020, 12, 31), None], pa.date32()), [2020, None]),
        (pa.array([date(2020, 12, 31)], pa.date64()), [2020]),
        (pa.array([datetime(2020, 12, 31, 23, 59)], pa.timestamp("us")), [2020]),  # naive: as written
        # A zoned Arrow timestamp is stored as a UTC instant; pc.year gives the year of its local time,
        # which is the year as recorded: 2021-01-01T03:30Z is 2020-12-31T22:30 in New York.
        (pa.array([utc(2021, 1, 1, 3, 30)], pa.timestamp("s", tz=NEW_YORK)), [2020]),
        (pa.array([utc(2021, 1, 1, 3, 30)], pa.timestamp("ms", tz="-05:00")), [2020]),
        (pa.array([utc(2021, 1, 1, 3, 30)], pa.timestamp("ns", tz="UTC")), [2021]),
        (pa.array([utc(2020, 12, 31, 12, 0)], pa.timestamp("s", tz="+14:00")), [2021]),
    ],
)
def test_to_year_of_dates_and_timestamps_is_the_local_year(values, years):
    result = to_year(values)

    assert result.type == pa.int32()
    assert result.to_pylist() == years


def test_to_year_accepts_chunked_and_dictionary_text():
    chunked = pa.chunked_array([["2020-01-01"], [None, "2022-07-20T07:13:55Z"]])
    encoded = pa.array(["2019-05-05", "2019-05-05", None]).dictionary_encode()

    assert to_year(chunked).to_pylist() == [2020, None, 2022]
    assert to_year(encoded).to_pylist() == [2019, 2019, None]


@pytest.mark.parametrize(
    "values",
    [
        pa.array([45000, 45001]),  # Excel serials: dates, but not readable as such here
        pa.array([20201231]),
        pa.array([2020.0]),
        pa.array([True]),
    ],
)
def test_to_year_refuses_columns_whose_type_holds_no_dates(values):
    with pytest.raises(InvalidValuesError) as raised:
        to_year(values)

    assert raised.value.count == len(values)


def test_to_year_of_a_column_of_nulls_is_nulls():
    assert to_year(pa.nulls(2)).to_pylist() == [None, None]
    assert to_year(pa.array([None, None], pa.int64())).to_pylist() == [None, None]


# --- to_age: whole years at the reference date, 90 for "90 or older" ----------------------------------------


@pytest.mark.parametrize(
    ("birth", "reference", "age"),
    [
        # ref.year - birth.year - ((ref.month, ref.day) < (birth.month, birth.day))
        ("1984-02-29", date(2025, 2, 28), 40),  # the leap-day birthday has not come yet
        ("1984-02-29", date(2025, 3, 1), 41),
        ("1984-02-29", date(2024, 2, 29), 40),  # on the leap day itself
        ("1984-02-29", date(2028, 2, 28), 43),
        ("2000-06-15", date(2025, 6, 14), 24),  # the day before the birthday
        ("2000-06-15", date(2025, 6, 15), 25),  # on the birthday
        ("2025-06-15", date(2025, 6, 15), 0),  # born on the reference date
        ("2024-12-31", date(2025, 1, 1), 0),
        # Ages over 89 become 90, one category "90 or older".
        ("1935-06-16", date(2025, 6, 15), 89),
        ("1935-06-15", date(2025, 6, 15), 90),
        ("1934-11-15", date(2024, 11, 14), 89),  # Synthea's patient born in November 1934
        ("1934-11-15", date(2026, 12, 1), 90),  # ...is 92 at a later reference date
        ("1900-01-01", date(2025, 1, 1), 90),  # 125
    ],
)
def test_to_age(birth, reference, age):
    result = to_age(pa.array([birth]), reference)

    assert result.type == pa.int32()
    assert result.to_pylist() == [age]


def test_to_age_uses_the_birth_date_as_recorded_in_a_zoned_timestamp():
    # 1984-02-29T23:30 in New York is 1984-03-01 in UTC: the recorded date is 29 February.
    birth = pa.array([utc(1984, 3, 1, 4, 30)], pa.timestamp("s", tz=NEW_YORK))

    assert to_age(birth, date(2025, 2, 28)).to_pylist() == [40]
    assert to_age(pa.array(["1984-02-29T23:30:00-05:00"]), date(2025, 2, 28)).to_pylist() == [40]


def test_to_age_keeps_nulls_and_accepts_dates():
    births = pa.array([date(1984, 2, 29), None, date(1930, 1, 1)], pa.date32())

    assert to_age(births, date(2025, 3, 1)).to_pylist() == [41, None, 90]


def test_to_age_refuses_a_birth_after_the_reference_date():
    with pytest.raises(InvalidValuesError) as raised:
        to_age(pa.array(["2025-06-16", "2000-01-01", "2030-01-01"]), date(2025, 6, 15))

    assert raised.value.count == 2
    assert "2030" not in str(raised.value)


def test_to_age_refuses_a_reference_that_is_not_a_date():
    with pytest.raises(TypeError):
        to_age(pa.array(["2000-01-01"]), "2025-01-01")


# --- to_birth_year: the year of birth, suppressed for ages over 89 ------------------------------------------


@pytest.mark.parametrize(
    ("birth", "reference", "year"),
    [
        ("1984-02-29", date(2025, 2, 28), 1984),
        ("1935-06-16", date(2025, 6, 15), 1935),  # 89: kept
        ("1935-06-15", date(2025, 6, 15), None),  # 90: suppressed, the year indicates the age
        ("1934-11-15", date(2024, 11, 14), 1934),  # 89
        ("1934-11-15", date(2024, 11, 15), None),  # 90 on that day
        (None, date(2025, 1, 1), None),
    ],
)
def test_to_birth_year(birth, reference, year):
    result = to_birth_year(pa.array([birth], pa.string()), reference)

    assert result.type == pa.int32()
    assert result.to_pylist() == [year]


def test_to_birth_year_refuses_a_birth_after_the_reference_date():
    with pytest.raises(InvalidValuesError):
        to_birth_year(pa.array([date(2026, 1, 1)], pa.date32()), date(2025, 1, 1))


# --- to_zip3: the ZIP3 rule, 164.514(b)(2)(i)(B) ------------------------------------------------------------

ALL_VINTAGES = list(Zip3Vintage)


@pytest.mark.parametrize(
    ("zip_code", "vintages", "expected"),
    [
        ("68504", ALL_VINTAGES, "685"),  # Lincoln, Nebraska
        ("02139-4307", ALL_VINTAGES, "021"),  # ZIP+4
        ("021394307", ALL_VINTAGES, "021"),  # ZIP+4 without its dash
        ("2139", ALL_VINTAGES, "021"),  # lost its leading zero to an integer cast
        (2139, ALL_VINTAGES, "021"),
        ("501", ALL_VINTAGES, "005"),  # 00501, two leading zeros lost
        (" 68504 ", ALL_VINTAGES, "685"),
        # Restricted prefixes become 000, never two kept digits.
        ("69210", ALL_VINTAGES, "000"),  # Synthea's 69210: 692 in every vintage
        (69210, ALL_VINTAGES, "000"),
        ("03601", ALL_VINTAGES, "000"),
        (3601, ALL_VINTAGES, "000"),  # lost zero and restricted
        ("79012", [Zip3Vintage.CENSUS_2000], "000"),  # 790: restricted in 2000 only
        ("79012", [Zip3Vintage.CENSUS_2010, Zip3Vintage.CENSUS_2020], "790"),
        ("20201", [Zip3Vintage.CENSUS_2020], "000"),  # 202: restricted in 2020 only
        ("20201", [Zip3Vintage.CENSUS_2000, Zip3Vintage.CENSUS_2010], "202"),
        ("20500-0001", [Zip3Vintage.CENSUS_2010, Zip3Vintage.CENSUS_2020], "000"),
        ("20500-0001", [Zip3Vintage.CENSUS_2000], "205"),
        # Missing, not a real 000.
        ("00000", ALL_VINTAGES, None),
        ("00000-0000", ALL_VINTAGES, None),
        (0, ALL_VINTAGES, None),
        ("", ALL_VINTAGES, None),
        ("   ", ALL_VINTAGES, None),
        (None, ALL_VINTAGES, None),
        # Not a US ZIP code: suppressed, never truncated into a fake ZIP3.
        ("141 34", ALL_VINTAGES, None),  # Sweden
        ("SW1A 1AA", ALL_VINTAGES, None),  # United Kingdom
        ("K1A 0B1", ALL_VINTAGES, None),  # Canada
        ("110001", ALL_VINTAGES, None),  # India: six digits
        ("01310100", ALL_VINTAGES, None),  # Brazil: eight digits
        ("68504-12", ALL_VINTAGES, None),
        ("6850412345", ALL_VINTAGES, None),
        (-2139, ALL_VINTAGES, None),
    ],
)
def test_to_zip3(zip_code, vintages, expected):
    values = pa.array([zip_code], pa.string() if zip_code is None else None)
    for vintage in vintages:
        result = to_zip3(values, vintage)

        assert result.type == pa.string()
        assert result.to_pylist() == [expected], vintage


def test_to_zip3_keeps_row_order_and_nulls_across_layouts():
    values = ["68504", None, "69210", "00000", "2139"]
    expected = ["685", None, "000", None, "021"]

    for layout in (
        pa.array(values),
        pa.array(values, pa.large_string()),
        pa.array(values).dictionary_encode(),
        pa.chunked_array([values[:2], values[2:]]),
    ):
        assert to_zip3(layout, Zip3Vintage.CENSUS_2020).to_pylist() == expected


def test_to_zip3_reads_whole_floats_as_integers_and_suppresses_the_rest():
    values = pa.array([2139.0, 69210.0, float("nan"), 2139.5, None])

    assert to_zip3(values, Zip3Vintage.CENSUS_2020).to_pylist() == ["021", "000", None, None, None]


def test_to_zip3_refuses_a_column_whose_type_holds_no_zip_codes():
    with pytest.raises(InvalidValuesError):
        to_zip3(pa.array([True, False]), Zip3Vintage.CENSUS_2020)


# --- pseudonymize: HMAC-SHA256 of the value's text ----------------------------------------------------------


def expected_pseudonym(text: str, key: bytes = KEY) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def test_pseudonymize_is_the_hmac_sha256_hex_of_the_text():
    values = pa.array(["982192b6-6843-4011-ef46-32caaf87d8a9", "Zoë", None])

    result = pseudonymize(values, KEY)

    assert result.type == pa.string()
    assert result.to_pylist() == [
        expected_pseudonym("982192b6-6843-4011-ef46-32caaf87d8a9"),
        expected_pseudonym("Zoë"),
        None,
    ]


def test_an_integer_and_its_text_share_a_pseudonym():
    assert pseudonymize(pa.array([123]), KEY).to_pylist() == [expected_pseudonym("123")]
    assert pseudonymize(pa.array(["123"]), KEY).to_pylist() == [expected_pseudonym("123")]


def test_a_date_is_pseudonymized_by_its_iso_text():
    assert pseudonymize(pa.array([date(2020, 1, 2)]), KEY).to_pylist() == [expected_pseudonym("2020-01-02")]


def test_the_same_value_gets_the_same_pseudonym_in_every_table_and_layout():
    patients = pa.array(["p1", "p2"])
    encounters = pa.chunked_array([["p2", "p1"], ["p1"]])
    conditions = pa.array(["p1", None, "p2"]).dictionary_encode()

    assert pseudonymize(patients, KEY).to_pylist() == [expected_pseudonym("p1"), expected_pseudonym("p2")]
    assert pseudonymize(encounters, KEY).to_pylist() == [
        expected_pseudonym("p2"),
        expected_pseudonym("p1"),
        expected_pseudonym("p1"),
    ]
    assert pseudonymize(conditions, KEY).to_pylist() == [
        expected_pseudonym("p1"),
        None,
        expected_pseudonym("p2"),
    ]


def test_a_different_key_gives_a_different_pseudonym():
    values = pa.array(["p1"])

    assert pseudonymize(values, OTHER_KEY).to_pylist() == [expected_pseudonym("p1", OTHER_KEY)]
    assert pseudonymize(values, OTHER_KEY) != pseudonymize(values, KEY)


def test_only_the_distinct_values_are_hashed(monkeypatch):
    hashed: list[int] = []
    original = treatments._hmac_hex

    def counting(messages, key):
        hashed.append(len(messages))
        return original(messages, key)

    monkeypatch.setattr(treatments, "_hmac_hex", counting)
    values = pa.array([f"patient-{index % 3}" for index in range(3000)] + [None])

    result = pseudonymize(values, KEY)

    assert hashed == [3]
    assert len(result) == 3001
    assert result[3000].as_py() is None


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError, match="empty"):
        pseudonymize(pa.array(["p1"]), b"")


def test_a_key_that_is_not_bytes_is_refused():
    with pytest.raises(TypeError):
        pseudonymize(pa.array(["p1"]), "text-key")


# --- key_fingerprint: which key, without the key ------------------------------------------------------------


def test_key_fingerprint_is_the_truncated_hmac_of_a_fixed_label():
    fingerprint = key_fingerprint(KEY)

    assert fingerprint == hmac.new(KEY, KEY_FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]
    assert len(fingerprint) == 16
    assert int(fingerprint, 16) >= 0


def test_key_fingerprint_reveals_neither_the_key_nor_a_plain_hash_of_it():
    fingerprint = key_fingerprint(KEY)

    assert fingerprint not in KEY.hex()
    assert not hashlib.sha256(KEY).hexdigest().startswith(fingerprint)
    assert key_fingerprint(OTHER_KEY) != fingerprint
    assert key_fingerprint(KEY) == fingerprint


def test_key_fingerprint_refuses_an_empty_key():
    with pytest.raises(ValueError, match="empty"):
        key_fingerprint(b"")


# --- every treatment: same length, nulls stay null ----------------------------------------------------------


@pytest.mark.parametrize(
    "treat",
    [
        pytest.param(to_year, id="year"),
        pytest.param(lambda values: to_age(values, date(2025, 1, 1)), id="age"),
        pytest.param(lambda values: to_birth_year(values, date(2025, 1, 1)), id="birth-year"),
        pytest.param(lambda values: pseudonymize(values, KEY), id="pseudonymize"),
    ],
)
def test_dates_treatments_keep_length_and_nulls(treat):
    start = date(1950, 1, 1)
    values = pa.array(
        [None if day % 7 == 0 else (start + timedelta(days=day)).isoformat() for day in range(500)]
    )

    result = treat(values)

    assert len(result) == len(values)
    assert [index for index, value in enumerate(result.to_pylist()) if value is None] == [
        index for index in range(500) if index % 7 == 0
    ]


def test_pseudonymize_trims_white_space_as_consent_matching_does():
    # consent compares subject ids after trimming, so " p1" and "p1" are one subject and one pseudonym
    key = b"k" * 32
    expected = hmac.new(key, b"p1", hashlib.sha256).hexdigest()
    assert pseudonymize(pa.array([" p1", "p1 ", "p1"]), key).to_pylist() == [expected] * 3


# --- declared date readings: formats, two-digit years, Excel serials --------------------------------------

US_BIRTH_DATES = DateReading(
    text_formats=(DateTextFormat.ISO_8601, DateTextFormat.MONTH_DAY_YEAR),
    two_digit_years=TwoDigitYears.NOT_AFTER_REFERENCE,
)
EXTRACT_DATE = date(2025, 6, 15)


@pytest.mark.parametrize(
    ("text", "reference", "expected"),
    [
        # Rule: the latest century that keeps the whole date on or before the reference date (a birth
        # date cannot lie after the extract date).
        ("03/04/27", EXTRACT_DATE, date(1927, 3, 4)),  # 2027 would be after 2025-06-15
        ("03/04/25", EXTRACT_DATE, date(2025, 3, 4)),  # before the reference: this century
        ("06/15/25", EXTRACT_DATE, date(2025, 6, 15)),  # on the reference date itself
        ("06/16/25", EXTRACT_DATE, date(1925, 6, 16)),  # one day after it: previous century
        ("12/31/99", EXTRACT_DATE, date(1999, 12, 31)),
        ("01/01/00", EXTRACT_DATE, date(2000, 1, 1)),
        ("02/29/00", EXTRACT_DATE, date(2000, 2, 29)),  # 2000 is a leap year
        ("01/01/00", date(1999, 12, 31), date(1900, 1, 1)),  # the reference decides the century
        ("3/4/1927", EXTRACT_DATE, date(1927, 3, 4)),  # four digits: as written
        ("03-04-27", EXTRACT_DATE, date(1927, 3, 4)),  # dashes
        ("03.04.27", EXTRACT_DATE, date(1927, 3, 4)),  # dots
        ("03/04/27 10:30", EXTRACT_DATE, date(1927, 3, 4)),  # a time of day is dropped
        ("03/04/27 10:30:15 PM", EXTRACT_DATE, date(1927, 3, 4)),
        ("1927-03-04", EXTRACT_DATE, date(1927, 3, 4)),  # ISO still read
    ],
)
def test_two_digit_birth_years_never_lie_after_the_reference_date(text, reference, expected):
    assert recorded_dates(pa.array([text]), US_BIRTH_DATES, reference).to_pylist() == [expected]
    assert to_year(pa.array([text]), US_BIRTH_DATES, reference).to_pylist() == [expected.year]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Rule: the year ending in those digits among the hundred years that end at the cutoff, 2029.
        ("31/12/29", date(2029, 12, 31)),
        ("01/01/30", date(1930, 1, 1)),
        ("15/06/00", date(2000, 6, 15)),
        ("04/03/27", date(2027, 3, 4)),  # day first: 4 March
        ("31/12/1899", date(1899, 12, 31)),
    ],
)
def test_two_digit_years_of_other_dates_follow_the_declared_cutoff(text, expected):
    reading = DateReading(
        text_formats=(DateTextFormat.DAY_MONTH_YEAR,),
        two_digit_years=TwoDigitYears.CUTOFF,
        two_digit_year_cutoff=2029,
    )

    assert recorded_dates(pa.array([text]), reading).to_pylist() == [expected]


@pytest.mark.parametrize(
    ("reading", "text"),
    [
        # Refused, never guessed: what the declared reading does not read, or a day that does not exist.
        (ISO_DATES, "03/04/27"),  # the default reads ISO 8601 only
        (DateReading(text_formats=(DateTextFormat.MONTH_DAY_YEAR,)), "03/04/27"),  # two-digit: refused
        (US_BIRTH_DATES, "02/29/2023"),  # 29 February of a common year
        (US_BIRTH_DATES, "13/15/2024"),  # month 13
        (US_BIRTH_DATES, "00/10/2024"),  # month 0
        (US_BIRTH_DATES, "04/31/2024"),  # past the end of April
        (US_BIRTH_DATES, "04/00/2024"),  # day 0
        (US_BIRTH_DATES, "02/29/00"),  # at the reference 1999-12-31 it is 1900, and 1900-02-29 never was
        (US_BIRTH_DATES, "03/04-27"),  # mixed separators
        (US_BIRTH_DATES, "03/04/027"),  # a three-digit year
        (US_BIRTH_DATES, "44927"),  # a serial, not declared
        (US_BIRTH_DATES, "2024-13-15"),
        (US_BIRTH_DATES, "2023-02-29"),
    ],
)
def test_a_declared_reading_refuses_what_it_does_not_read(reading, text):
    reference = date(1999, 12, 31)  # before 2000-02-29, so "02/29/00" can only be 1900-02-29: no such day
    with pytest.raises(InvalidValuesError) as raised:
        recorded_dates(
            pa.array([text, "01/01/1990" if "iso-8601" not in reading.text_formats else "1990-01-01"]),
            reading,
            reference,
        )

    assert raised.value.count == 1
    assert text not in str(raised.value)


def test_unreadable_dates_are_counted_across_formats_and_rules():
    values = pa.array(["02/29/2023", "2023-02-29", "junk", "03/04/27", None, "", "2001-02-03", "44927"])

    with pytest.raises(InvalidValuesError) as raised:
        to_year(values, US_BIRTH_DATES, EXTRACT_DATE)

    assert raised.value.count == 4  # the three impossible or malformed values, and the undeclared serial
    assert raised.value.expected == "ISO 8601 or month/day/year dates"


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (
            {"text_formats": ("month-day-year", "day-month-year")},
            "cannot both be read",
        ),  # 03/04 would be ambiguous
        ({"two_digit_years": "cutoff"}, "two_digit_year_cutoff is required"),
        ({"two_digit_year_cutoff": 2029}, "two_digit_year_cutoff is required"),
        ({"two_digit_years": "not-after-reference"}, "need a month-day-year or day-month-year"),
        ({"text_formats": ()}, "at least 1"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_a_date_reading_that_is_ambiguous_or_incomplete_is_refused(settings, problem):
    with pytest.raises(ValueError, match=problem):
        DateReading(**settings)


def test_the_birth_rule_needs_the_reference_date():
    with pytest.raises(ValueError, match="reference date"):
        to_year(pa.array(["03/04/27"]), US_BIRTH_DATES)


EXCEL_1900 = DateReading(excel_serials=ExcelSerials.EXCEL_1900)
EXCEL_1904 = DateReading(excel_serials=ExcelSerials.EXCEL_1904)


@pytest.mark.parametrize(
    ("serial", "reading", "expected"),
    [
        # The 1900 system: serial 1 is 1900-01-01, 60 is Lotus's 29 February 1900 (no such day), so from
        # 61 on a serial counts one day too many.
        (44927, EXCEL_1900, date(2023, 1, 1)),
        (45292, EXCEL_1900, date(2024, 1, 1)),
        (36526, EXCEL_1900, date(2000, 1, 1)),
        (25569, EXCEL_1900, date(1970, 1, 1)),
        (1, EXCEL_1900, date(1900, 1, 1)),
        (59, EXCEL_1900, date(1900, 2, 28)),
        (61, EXCEL_1900, date(1900, 3, 1)),
        (2958465, EXCEL_1900, date(9999, 12, 31)),
        (44927.75, EXCEL_1900, date(2023, 1, 1)),  # 18:00 on that day: the fraction is the time
        ("44927", EXCEL_1900, date(2023, 1, 1)),  # a serial stored as text
        ("44927.5", EXCEL_1900, date(2023, 1, 1)),
        # The 1904 system: serial 0 is 1904-01-01, with no fictitious day.
        (0, EXCEL_1904, date(1904, 1, 1)),
        (1, EXCEL_1904, date(1904, 1, 2)),
        (44927, EXCEL_1904, date(2027, 1, 2)),  # 1,462 days after its 1900-system reading
    ],
)
def test_excel_serials_are_converted_by_the_declared_system(serial, reading, expected):
    assert recorded_dates(pa.array([serial]), reading).to_pylist() == [expected]
    assert to_year(pa.array([serial]), reading).to_pylist() == [expected.year]


@pytest.mark.parametrize(
    ("serial", "reading"),
    [
        (60, EXCEL_1900),  # 1900-02-29 never existed: refused, not moved to a neighbouring day
        (60.5, EXCEL_1900),
        (0, EXCEL_1900),  # "1900-01-00"
        (-1, EXCEL_1900),
        (2958466, EXCEL_1900),  # after 9999-12-31
        (float("nan"), EXCEL_1900),
        (float("inf"), EXCEL_1900),
        (-1, EXCEL_1904),
        ("60", EXCEL_1900),
        ("12345678", EXCEL_1900),  # eight digits: no serial
        ("-5", EXCEL_1900),
    ],
)
def test_serials_that_are_no_date_of_the_system_are_refused(serial, reading):
    with pytest.raises(InvalidValuesError) as raised:
        recorded_dates(pa.array([serial, None]), reading)

    assert raised.value.count == 1
    if len(str(serial)) > 4:  # shorter ones occur in the message's own words ("1900", "8601")
        assert str(serial) not in str(raised.value)


def test_serials_are_refused_unless_declared():
    # A number in a date column is refused by default: neither passed through nor read as a date.
    for values in (pa.array([44927]), pa.array([44927.0]), pa.array(["44927"])):
        with pytest.raises(InvalidValuesError) as raised:
            to_year(values)
        assert raised.value.count == 1


# --- the year as recorded, whatever the time zone -----------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "year"),
    [
        # 164.514(b)(2)(i)(C) keeps the year; it is the year written locally, never the year in UTC.
        (pa.array(["2020-12-31T23:30:00-05:00"]), 2020),  # 2021-01-01T04:30Z
        (pa.array(["2020-12-31T23:59:59.999-12:00"]), 2020),  # the last zone on Earth
        (pa.array(["2021-01-01T00:00:00+14:00"]), 2021),  # 2020-12-31T10:00Z
        (pa.array([utc(2021, 1, 1, 4, 30)], pa.timestamp("us", tz=NEW_YORK)), 2020),
        (pa.array([utc(2020, 12, 31, 10, 0)], pa.timestamp("us", tz="Pacific/Kiritimati")), 2021),
        (
            pa.array([utc(2021, 1, 1, 4, 30)], pa.timestamp("us", tz=NEW_YORK)).cast(
                pa.timestamp("ms", tz=NEW_YORK)
            ),
            2020,
        ),
    ],
)
def test_year_never_changes_by_conversion_to_utc(values, year):
    assert to_year(values).to_pylist() == [year]
    assert recorded_dates(values).to_pylist()[0].year == year


# --- leap-day birthdays -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "years", "age", "birth_year"),
    [
        # Rule (REGULATORY.md): ref.year - birth.year - ((ref.month, ref.day) < (birth.month, birth.day)):
        # in a common year the birthday of 29 February is reached on 1 March, not on 28 February.
        (date(2001, 2, 28), 0, 0, 2000),
        (date(2001, 3, 1), 1, 1, 2000),
        (date(2004, 2, 28), 3, 3, 2000),
        (date(2004, 2, 29), 4, 4, 2000),
        (date(2100, 2, 28), 99, 90, None),  # 2100 is a common year: 99 until 1 March, so 90 or older
        (date(2100, 3, 1), 100, 90, None),
    ],
)
def test_leap_day_birthdays(reference, years, age, birth_year):
    births = pa.array(["2000-02-29"])

    assert completed_years(births, reference).to_pylist() == [years]
    assert to_age(births, reference).to_pylist() == [age]
    assert to_birth_year(births, reference).to_pylist() == [birth_year]


@pytest.mark.parametrize(
    ("reference", "age", "birth_year", "over_89"),
    [
        # Born 1932-02-29: 90 on 2022-03-01 (2022 is a common year), so the birth year goes on that day.
        (date(2022, 2, 28), 89, 1932, False),
        (date(2022, 3, 1), 90, None, True),
        (date(2021, 12, 31), 89, 1932, False),
    ],
)
def test_a_leap_day_birthday_at_the_90_boundary(reference, age, birth_year, over_89):
    births = pa.array([date(1932, 2, 29)], pa.date32())

    assert to_age(births, reference).to_pylist() == [age]
    assert to_birth_year(births, reference).to_pylist() == [birth_year]
    assert aged_90_or_over(births, reference).to_pylist() == [over_89]


# --- 90 or older: one category, and the birth year suppressed wherever it appears ---------------------------


@pytest.mark.parametrize(
    ("birth", "over_89"),
    [
        ("1935-06-16", False),  # 89 on 2025-06-15
        ("1935-06-15", True),  # 90 that day
        ("1900-01-01", True),
        ("2025-06-15", False),  # born that day
        (None, True),  # unknown age: its birth year could show an age over 89, so it goes (fail closed)
        ("", True),
    ],
)
def test_aged_90_or_over(birth, over_89):
    result = aged_90_or_over(pa.array([birth], pa.string()), EXTRACT_DATE)

    assert result.type == pa.bool_()
    assert result.null_count == 0
    assert result.to_pylist() == [over_89]


def test_the_year_of_a_birth_date_is_suppressed_for_people_aged_90_or_over():
    births = pa.array(["1935-06-16", "1935-06-15", None, "1984-02-29"])

    years = suppressed(to_year(births), aged_90_or_over(births, EXTRACT_DATE))

    assert years.to_pylist() == [1935, None, None, 1984]
    assert years.to_pylist() == to_birth_year(births, EXTRACT_DATE).to_pylist()


def test_a_separate_birth_year_column_is_suppressed_by_the_birth_date_mask():
    births = pa.array(["1935-06-16", "1930-01-01", None])
    birth_years = pa.array([1935, 1930, 1950])

    assert suppressed(birth_years, aged_90_or_over(births, EXTRACT_DATE)).to_pylist() == [1935, None, None]


def test_suppressed_refuses_a_mask_of_another_length():
    with pytest.raises(ValueError, match="rows"):
        suppressed(pa.array([1, 2]), pa.array([True]))


def test_ages_of_90_and_over_are_one_int32_category():
    births = pa.array(["1935-06-15", "1925-01-01", "1800-01-01", "1936-01-01"])

    result = to_age(births, EXTRACT_DATE)

    assert result.type == pa.int32()
    assert result.to_pylist() == [90, 90, 90, 89]


# --- ZIP3 edge cases the rule names, in one table -----------------------------------------------------------


@pytest.mark.parametrize(
    ("zip_code", "expected"),
    [
        ("69210-1234", "000"),  # ZIP+4 of a restricted prefix: 000, never "69"
        ("69210", "000"),
        (692, "006"),  # an integer that lost two zeros is 00692, Puerto Rico, not 692
        ("00501", "005"),
        ("00000", None),  # placeholder: missing, not 000
        ("00012", None),  # no ZIP starts 000
        ("ABCDE", None),  # non-numeric
        ("6850A", None),
        ("141 34", None),  # a Swedish postcode is suppressed, not truncated to 141
    ],
)
def test_zip3_edge_cases_of_the_rule(zip_code, expected):
    assert to_zip3(pa.array([zip_code]), Zip3Vintage.CENSUS_2020).to_pylist() == [expected]


@pytest.mark.parametrize(
    ("zip_code", "expected"),
    [
        ("02139-4307", "02139"),
        ("021394307", "02139"),
        (2139, "02139"),
        (2139.0, "02139"),
        ("00000", None),
        ("SW1A 1AA", None),
        ("", None),
    ],
)
def test_us_zip_codes(zip_code, expected):
    assert us_zip_codes(pa.array([zip_code])).to_pylist() == [expected]


# --- canaries: no value in any message or log record --------------------------------------------------------

CANARY_DATE = "1961-04-12"
CANARY_TEXT = "CANARY-7Q3Z-not-a-date"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: to_year(pa.array([CANARY_TEXT, CANARY_DATE])), id="year"),
        pytest.param(lambda: to_age(pa.array([CANARY_TEXT, CANARY_DATE]), EXTRACT_DATE), id="age"),
        pytest.param(lambda: to_age(pa.array([CANARY_DATE, "2961-04-12"]), EXTRACT_DATE), id="born-later"),
        pytest.param(lambda: to_birth_year(pa.array([CANARY_TEXT]), EXTRACT_DATE), id="birth-year"),
        pytest.param(lambda: aged_90_or_over(pa.array([CANARY_TEXT]), EXTRACT_DATE), id="mask"),
        pytest.param(
            lambda: recorded_dates(pa.array(["02/29/61", CANARY_TEXT]), US_BIRTH_DATES, EXTRACT_DATE), id="us"
        ),
        pytest.param(lambda: recorded_dates(pa.array([60, 19610412]), EXCEL_1900), id="serial"),
        pytest.param(lambda: to_zip3(pa.array([True]), Zip3Vintage.CENSUS_2020), id="zip3"),
    ],
)
def test_no_value_reaches_an_error_or_a_log(call, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(InvalidValuesError) as raised:
        call()

    told = str(raised.value) + repr(raised.value) + " ".join(record.getMessage() for record in caplog.records)
    for canary in (CANARY_TEXT, CANARY_DATE, "1961", "02/29/61", "19610412", "2961", "True"):
        assert canary not in told
