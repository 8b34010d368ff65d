"""Generalisation treatments: age bands, month and quarter, ZIP code to State, top and bottom coding."""

from __future__ import annotations

import logging
from datetime import date

import pyarrow as pa
import pytest

from airflow_phi_guard.deid.generalize import (
    SAFE_HARBOR_COMPATIBLE,
    AgeBands,
    to_age_band,
    to_month,
    to_quarter,
    to_state,
    top_bottom_code,
)
from airflow_phi_guard.deid.treatments import DateReading
from airflow_phi_guard.exceptions import InvalidValuesError

CHILD_ADULT_SENIOR = AgeBands(edges=(0, 18, 65, 90))
REFERENCE = date(2025, 6, 15)


# --- age bands ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "band"),
    [
        # Each edge starts a band; the last band is open: [0, 18) [18, 65) [65, 90) [90, ...).
        (0, "0-17"),
        (17, "0-17"),
        (18, "18-64"),
        (64, "18-64"),
        (65, "65-89"),
        (89, "65-89"),
        (90, "90+"),  # 90 or older: one top band
        (104, "90+"),
        (17.9, "0-17"),  # fractional ages fall by value
        (None, None),
    ],
)
def test_age_bands_of_ages(age, band):
    assert to_age_band(pa.array([age]), CHILD_ADULT_SENIOR).to_pylist() == [band]


@pytest.mark.parametrize(
    ("birth", "band"),
    [
        ("2007-06-15", "18-64"),  # 18 on the reference date
        ("2007-06-16", "0-17"),  # 18 the day after
        ("1935-06-16", "65-89"),  # 89
        ("1935-06-15", "90+"),  # 90
        ("1932-02-29", "90+"),
    ],
)
def test_age_bands_of_birth_dates_at_the_reference_date(birth, band):
    result = to_age_band(pa.array([birth]), CHILD_ADULT_SENIOR, reference=REFERENCE)

    assert result.type == pa.string()
    assert result.to_pylist() == [band]


@pytest.mark.parametrize(
    ("edges", "labels", "safe_harbor"),
    [
        # Safe Harbor: every age over 89 in one open top band, so no edge above 90.
        ((0, 18, 65, 90), ("0-17", "18-64", "65-89", "90+"), True),
        ((0, 65), ("0-64", "65+"), True),  # a coarser top band also holds every age over 89 together
        ((0, 10, 20, 30, 40, 50, 60, 70, 80, 90), None, True),
        ((0, 80, 95), ("0-79", "80-94", "95+"), False),  # 95+ separates ages over 94
        ((0, 90, 100), ("0-89", "90-99", "100+"), False),
        ((18,), ("18+",), True),
    ],
)
def test_age_bands_labels_and_safe_harbor_compatibility(edges, labels, safe_harbor):
    bands = AgeBands(edges=edges)

    if labels is not None:
        assert bands.labels == labels
    assert bands.safe_harbor_compatible is safe_harbor


def test_safe_harbor_refuses_bands_that_show_ages_over_89():
    with pytest.raises(ValueError, match="ages over 89"):
        to_age_band(pa.array([30]), AgeBands(edges=(0, 90, 100)), safe_harbor=True)

    assert to_age_band(pa.array([95]), AgeBands(edges=(0, 90, 100))).to_pylist() == ["90-99"]
    assert to_age_band(pa.array([95]), CHILD_ADULT_SENIOR, safe_harbor=True).to_pylist() == ["90+"]


@pytest.mark.parametrize(
    ("edges", "problem"),
    [((), "at least 1"), ((-1, 18), "negative"), ((0, 18, 18), "increase"), ((0, 65, 18), "increase")],
)
def test_age_bands_must_start_at_zero_or_above_and_increase(edges, problem):
    with pytest.raises(ValueError, match=problem):
        AgeBands(edges=edges)


@pytest.mark.parametrize(
    ("values", "bands", "count"),
    [
        (pa.array([-1, 30, -7]), CHILD_ADULT_SENIOR, 2),  # a negative age is no age
        (pa.array([float("nan"), 30.0, None]), CHILD_ADULT_SENIOR, 1),
        (pa.array([5, 30]), AgeBands(edges=(18, 65)), 1),  # below the first edge: refused, not banded
    ],
)
def test_ages_outside_the_bands_are_refused_with_a_count(values, bands, count):
    with pytest.raises(InvalidValuesError) as raised:
        to_age_band(values, bands)

    assert raised.value.count == count


def test_age_bands_of_birth_dates_need_the_reference_date():
    with pytest.raises(ValueError, match="reference date"):
        to_age_band(pa.array(["2000-01-01"]), CHILD_ADULT_SENIOR)


# --- month and quarter (never Safe Harbor) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "month", "quarter"),
    [
        ("2021-03-15", "2021-03", "2021-Q1"),
        ("2021-04-01", "2021-04", "2021-Q2"),
        ("2021-09-30", "2021-09", "2021-Q3"),
        ("2021-12-31T23:30:00-05:00", "2021-12", "2021-Q4"),  # as recorded, not January in UTC
        (date(2020, 2, 29), "2020-02", "2020-Q1"),
        ("0850-07-04", "0850-07", "0850-Q3"),  # four digits always
        (None, None, None),
    ],
)
def test_month_and_quarter_of_recorded_dates(value, month, quarter):
    values = pa.array([value], pa.string() if value is None else None)

    assert to_month(values).to_pylist() == [month]
    assert to_quarter(values).to_pylist() == [quarter]


def test_month_reads_a_declared_format_and_refuses_impossible_dates():
    reading = DateReading(text_formats=("day-month-year",))

    assert to_month(pa.array(["31/03/2021"]), reading).to_pylist() == ["2021-03"]
    with pytest.raises(InvalidValuesError):
        to_quarter(pa.array(["2023-02-29"]))


def test_the_safe_harbor_table_names_every_generalisation():
    # 164.514(b)(2)(i)(C): a month or quarter is a date element other than the year; (B): a State may stay.
    assert dict(SAFE_HARBOR_COMPATIBLE) == {
        "age-band": True,
        "month": False,
        "quarter": False,
        "state": True,
        "top-bottom-code": True,
    }
    with pytest.raises(TypeError):
        SAFE_HARBOR_COMPATIBLE["month"] = True  # the table is read-only


# --- ZIP code to State --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zip_code", "state"),
    [
        ("02139", "MA"),
        ("02139-4307", "MA"),  # ZIP+4
        (2139, "MA"),  # lost its leading zero
        ("68504", "NE"),
        ("69210", "NE"),  # a restricted ZIP3 still has a State
        ("00501", "NY"),  # the IRS in Holtsville
        ("00601", "PR"),
        ("20001", "DC"),
        ("99501", "AK"),
        # Prefixes that cross a State border: the ZIP code decides.
        ("06330", "CT"),
        ("06390", "NY"),  # Fishers Island, New York, in Connecticut's 063
        ("83414", "WY"),  # Alta, Wyoming, in Idaho's 834
        ("83401", "ID"),
        ("96799", "AS"),  # American Samoa in Hawaii's 967
        # No State: not a US ZIP code, or a placeholder.
        ("00000", None),
        ("141 34", None),
        ("", None),
        (None, None),
    ],
)
def test_state_of_zip_codes(zip_code, state):
    values = pa.array([zip_code], pa.string() if zip_code is None else None)

    assert to_state(values).to_pylist() == [state]


@pytest.mark.parametrize(
    ("prefix", "state"),
    [
        ("021", "MA"),
        (21, "MA"),  # integer prefix that lost its leading zero
        ("685", "NE"),
        ("063", None),  # split between Connecticut and New York: a bare prefix cannot tell
        ("834", None),
        ("000", None),  # a restricted prefix already generalised: no State left to find
        ("2", None),  # prefix 002, which the USPS has not assigned
        ("0213", None),  # four digits: no prefix
        ("ABC", None),
    ],
)
def test_state_of_zip3_prefixes(prefix, state):
    assert to_state(pa.array([prefix]), prefixes=True).to_pylist() == [state]


def test_state_refuses_a_column_that_cannot_hold_zip_codes():
    with pytest.raises(InvalidValuesError):
        to_state(pa.array([True]))
    with pytest.raises(InvalidValuesError):
        to_state(pa.array([1.5]), prefixes=True)


# --- top and bottom coding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "bottom", "top", "expected"),
    [
        # Beyond a declared bound a value becomes the bound; within, it stays.
        ([1, 5, 10, None], 2, 8, [2, 5, 8, None]),
        ([1, 5, 10], None, 8, [1, 5, 8]),
        ([1, 5, 10], 2, None, [2, 5, 10]),
        ([250.5, 80.0, 30.0], 40.0, 200.0, [200.0, 80.0, 40.0]),
        ([8, 2], 2, 8, [8, 2]),  # on the bound: unchanged
        ([95, 89, 90, 120], None, 90, [90, 89, 90, 90]),  # ages coded "90 or older"
    ],
)
def test_top_and_bottom_coding(values, bottom, top, expected):
    array = pa.array(values)

    result = top_bottom_code(array, bottom=bottom, top=top)

    assert result.type == array.type
    assert result.to_pylist() == expected


def test_top_coding_leaves_nan_as_it_is():
    result = top_bottom_code(pa.array([float("nan"), 300.0]), top=200.0).to_pylist()

    assert result[0] != result[0] and result[1] == 200.0


@pytest.mark.parametrize(
    ("bottom", "top", "problem"),
    [(None, None, "needs a top"), (9, 1, "above the top"), (None, 2.5, "cannot be represented")],
)
def test_top_and_bottom_coding_refuses_bad_bounds(bottom, top, problem):
    with pytest.raises(ValueError, match=problem):
        top_bottom_code(pa.array([1, 2, 3]), bottom=bottom, top=top)


def test_top_and_bottom_coding_refuses_text():
    with pytest.raises(InvalidValuesError) as raised:
        top_bottom_code(pa.array(["CANARY-42"]), top=1)

    assert "CANARY" not in str(raised.value)


# --- canaries -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: to_age_band(pa.array([-4242]), CHILD_ADULT_SENIOR), id="age-band"),
        pytest.param(lambda: to_month(pa.array(["CANARY-4242"])), id="month"),
        pytest.param(lambda: to_quarter(pa.array(["4242-02-30"])), id="quarter"),
        pytest.param(lambda: to_state(pa.array([date(4242, 1, 1)])), id="state"),
        pytest.param(lambda: top_bottom_code(pa.array(["CANARY-4242"]), top=1), id="coding"),
    ],
)
def test_no_value_reaches_an_error_or_a_log(call, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(InvalidValuesError) as raised:
        call()

    told = str(raised.value) + repr(raised.value) + " ".join(record.getMessage() for record in caplog.records)
    assert "4242" not in told and "CANARY" not in told
