"""Per-subject date shifting from a keyed hash: consistent, interval-preserving, within its window."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from airflow_phi_guard.deid import dateshift
from airflow_phi_guard.deid.dateshift import (
    SAFE_HARBOR_COMPATIBLE,
    SHIFT_LABEL,
    key_fingerprint,
    shift_dates,
    shift_dates_by_subject,
    subject_shifts,
)
from airflow_phi_guard.deid.treatments import KEY_FINGERPRINT_LABEL, DateReading, pseudonymize
from airflow_phi_guard.exceptions import InvalidValuesError

KEY = b"date-shift-test-key-32-bytes-long!!"
OTHER_KEY = b"another-date-shift-key-of-32-bytes!"
WINDOW = 30


def expected_shift(subject: str, key: bytes = KEY, window: int = WINDOW) -> int:
    """The rule, written out: HMAC-SHA256(key, label + id), first 8 bytes mod 2w, onto the non-zero days."""
    digest = hmac.new(key, SHIFT_LABEL + subject.encode("utf-8"), hashlib.sha256).digest()
    remainder = int.from_bytes(digest[:8], "big") % (2 * window)
    return remainder - window if remainder < window else remainder - window + 1


def test_the_shift_is_the_documented_function_of_key_and_subject():
    subjects = ["p1", "p2", "982192b6-6843-4011-ef46-32caaf87d8a9"]

    assert subject_shifts(pa.array(subjects), KEY, WINDOW).to_pylist() == [
        expected_shift(s) for s in subjects
    ]


def test_the_same_subject_gets_the_same_shift_across_calls_tables_and_layouts():
    patients = subject_shifts(pa.array(["p1", "p2"]), KEY, WINDOW).to_pylist()
    encounters = subject_shifts(pa.chunked_array([["p2", "p1"], ["p1", " p1 "]]), KEY, WINDOW).to_pylist()
    conditions = subject_shifts(pa.array(["p1", None, "p2"]).dictionary_encode(), KEY, WINDOW).to_pylist()
    again = subject_shifts(pa.array(["p1", "p2"]), bytes(KEY), WINDOW).to_pylist()

    p1, p2 = patients
    assert encounters == [p2, p1, p1, p1]  # trimmed ids are one subject, as in consent and pseudonyms
    assert conditions == [p1, None, p2]
    assert again == patients


def test_an_integer_id_and_its_text_are_one_subject():
    assert subject_shifts(pa.array([123]), KEY, WINDOW) == subject_shifts(pa.array(["123"]), KEY, WINDOW)


def test_a_different_key_gives_different_shifts():
    subjects = pa.array([f"patient-{index}" for index in range(50)])

    assert subject_shifts(subjects, KEY, WINDOW) != subject_shifts(subjects, OTHER_KEY, WINDOW)


@pytest.mark.parametrize("window", [1, 2, 7, 30, 365])
def test_shifts_lie_within_the_window_and_are_never_zero(window):
    shifts = subject_shifts(pa.array([f"patient-{index}" for index in range(2000)]), KEY, window).to_pylist()

    assert min(shifts) >= -window and max(shifts) <= window
    assert 0 not in shifts
    assert {-window, window} <= set(shifts)  # both ends are reached


def test_a_window_of_zero_shifts_nothing():
    dates = pa.array([date(2020, 1, 1), date(2021, 6, 30)], pa.date32())

    assert subject_shifts(pa.array(["p1", "p2"]), KEY, 0).to_pylist() == [0, 0]
    assert shift_dates_by_subject(dates, pa.array(["p1", "p2"]), KEY, 0) == dates


def test_different_subjects_spread_evenly_over_the_window():
    # A fixed corpus of 12,000 ids and a fixed key: each of the 60 non-zero days of a 30-day window
    # expects 200 subjects. Pearson's chi-square with 59 degrees of freedom stays below 98.32, its
    # 0.999 quantile, for a uniform spread; a biased mapping (say, modulo a non-multiple) would not.
    shifts = subject_shifts(pa.array([f"subject-{index:05d}" for index in range(12_000)]), KEY, WINDOW)
    counts = Counter(shifts.to_pylist())

    assert set(counts) == set(range(-WINDOW, 0)) | set(range(1, WINDOW + 1))
    expected = 12_000 / (2 * WINDOW)
    chi_square = sum((count - expected) ** 2 / expected for count in counts.values())
    assert chi_square < 98.32
    assert abs(sum(shifts.to_pylist()) / 12_000) < 1.0  # centred on zero


def test_intervals_within_a_subject_are_preserved():
    subjects = pa.array(["p1", "p1", "p1", "p2", "p2"])
    admitted = [date(2020, 2, 27), date(2020, 3, 1), date(2021, 2, 28), date(2019, 12, 31), date(2020, 1, 1)]

    shifted = shift_dates_by_subject(pa.array(admitted, pa.date32()), subjects, KEY, WINDOW).to_pylist()

    p1, p2 = expected_shift("p1"), expected_shift("p2")
    assert shifted == [
        day + timedelta(days=shift) for day, shift in zip(admitted, [p1, p1, p1, p2, p2], strict=True)
    ]
    assert shifted[1] - shifted[0] == timedelta(days=3)  # across a leap day
    assert shifted[2] - shifted[0] == timedelta(days=367)
    assert shifted[4] - shifted[3] == timedelta(days=1)


@pytest.mark.parametrize(
    "data_type",
    [
        pa.timestamp("s"),
        pa.timestamp("ms"),
        pa.timestamp("us", tz="UTC"),
        pa.timestamp("ns", tz="America/New_York"),
    ],
)
def test_timestamps_keep_their_type_and_elapsed_time(data_type):
    start = datetime(2020, 3, 7, 23, 30, tzinfo=UTC)
    times = [start, start + timedelta(hours=5, minutes=17), start + timedelta(days=40)]
    values = pa.array(times, pa.timestamp(data_type.unit, tz="UTC")).cast(data_type)

    shifted = shift_dates_by_subject(values, pa.array(["p1"] * 3), KEY, WINDOW)

    assert shifted.type == data_type
    moved = [value.value for value in shifted]  # the instants, in the type's unit
    original = [value.value for value in values]
    day = 86_400 * {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[data_type.unit]
    assert [after - before for before, after in zip(original, moved, strict=True)] == [
        expected_shift("p1") * day
    ] * 3


def test_date64_keeps_its_type():
    values = pa.array([date(2020, 1, 1)], pa.date64())

    shifted = shift_dates_by_subject(values, pa.array(["p1"]), KEY, WINDOW)

    assert shifted.type == pa.date64()
    assert shifted.to_pylist() == [date(2020, 1, 1) + timedelta(days=expected_shift("p1"))]


def test_text_dates_are_read_as_declared_and_come_out_as_dates():
    values = pa.array(["2020-12-31T23:30:00-05:00", "12/31/2020", None])
    reading = DateReading(text_formats=("iso-8601", "month-day-year"))

    shifted = shift_dates_by_subject(values, pa.array(["p1", "p1", "p1"]), KEY, WINDOW, reading)

    moved = date(2020, 12, 31) + timedelta(days=expected_shift("p1"))  # the date as recorded, not UTC's
    assert shifted.type == pa.date32()
    assert shifted.to_pylist() == [moved, moved, None]


def test_a_date_without_a_subject_is_refused_not_left_unshifted():
    with pytest.raises(InvalidValuesError) as raised:
        shift_dates_by_subject(
            pa.array(["2020-01-01", None, "2020-01-02"]), pa.array([None, None, "p1"]), KEY, 9
        )

    assert raised.value.count == 1


def test_unreadable_dates_are_refused_with_a_count():
    with pytest.raises(InvalidValuesError) as raised:
        shift_dates_by_subject(
            pa.array(["2023-02-29", "2024-13-15", "2020-01-01"]), pa.array(["p1"] * 3), KEY, 9
        )

    assert raised.value.count == 2


@pytest.mark.parametrize(
    ("key", "window", "error"),
    [
        (b"", WINDOW, ValueError),
        (b"short-key", WINDOW, ValueError),  # shorter than 32 bytes
        ("a-text-key-that-is-long-enough-1234", WINDOW, TypeError),
        (KEY, -1, ValueError),
        (KEY, dateshift.MAXIMUM_WINDOW_DAYS + 1, ValueError),
        (KEY, 7.5, TypeError),
        (KEY, True, TypeError),
    ],
)
def test_bad_keys_and_windows_are_refused(key, window, error):
    with pytest.raises(error):
        subject_shifts(pa.array(["p1"]), key, window)


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="shifts for"):
        shift_dates(pa.array([date(2020, 1, 1)], pa.date32()), pa.array([1, 2], pa.int32()))


def test_the_key_fingerprint_is_recorded_not_the_key():
    fingerprint = key_fingerprint(KEY)

    assert fingerprint == hmac.new(KEY, KEY_FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]
    assert KEY.hex() not in fingerprint and fingerprint not in KEY.decode()
    assert key_fingerprint(OTHER_KEY) != fingerprint


def test_shifts_do_not_follow_from_the_pseudonyms_of_the_same_key():
    # The label separates the two uses: the shift is not a function of the published pseudonym's digest.
    subject = "p1"
    pseudonym = pseudonymize(pa.array([subject]), KEY).to_pylist()[0]
    digest = hmac.new(KEY, SHIFT_LABEL + subject.encode(), hashlib.sha256).hexdigest()

    assert digest != pseudonym


def test_date_shifting_is_never_safe_harbor():
    assert SAFE_HARBOR_COMPATIBLE is False


def test_no_value_reaches_an_error_or_a_log(caplog):
    caplog.set_level(logging.DEBUG)
    canary_subject, canary_date = "CANARY-SUBJECT-9X", "2023-02-29"
    with pytest.raises(InvalidValuesError) as raised:
        shift_dates_by_subject(pa.array([canary_date]), pa.array([canary_subject]), KEY, WINDOW)
    with pytest.raises(ValueError, match="shorter") as short:
        subject_shifts(pa.array([canary_subject]), b"CANARY-KEY", WINDOW)

    told = " ".join(
        [str(raised.value), str(short.value), *(record.getMessage() for record in caplog.records)]
    )
    for canary in (canary_subject, canary_date, "CANARY-KEY"):
        assert canary not in told
