"""Date shifting: every date of a subject moved by the same whole number of days, derived from a secret key.

The shift of a subject is a function of the key and the subject id alone: HMAC-SHA256 under the key of a
fixed label and the normalised id (:func:`~.treatments.identifier_bytes`: trimmed text, so ``123`` and
``" 123"`` are one subject), read as an unsigned integer and mapped onto the non-zero days of
``[-window, +window]``. The same subject therefore gets the same shift in every run and every table
shifted under the same key, and the intervals between a subject's dates are preserved exactly.

Shifted dates keep a day and a month, and the shift is derived from the identifier, so output with shifted
dates is not Safe Harbor de-identified (164.514(b)(2)(i)(C)); it serves expert determination, which must
judge the window, and limited data sets. The key is a secret like the pseudonym key: it comes from a
connection or the environment, never from a policy, and a run records only its :func:`key_fingerprint`.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac

import pyarrow as pa
import pyarrow.compute as pc

from airflow_phi_guard.arrow_types import is_text
from airflow_phi_guard.deid.treatments import (
    ISO_DATES,
    ArrayLike,
    DateReading,
    identifier_bytes,
    key_fingerprint,
    recorded_dates,
)
from airflow_phi_guard.exceptions import InvalidValuesError

__all__ = [
    "MAXIMUM_WINDOW_DAYS",
    "MINIMUM_KEY_BYTES",
    "SAFE_HARBOR_COMPATIBLE",
    "key_fingerprint",
    "shift_dates",
    "shift_dates_by_subject",
    "subject_shifts",
]

#: Shifted dates keep day and month, and the shift is derived from the subject id: never Safe Harbor.
SAFE_HARBOR_COMPATIBLE = False

#: The shortest key accepted, as for pseudonyms: 256 bits, the size of the HMAC-SHA256 output.
MINIMUM_KEY_BYTES = 32

#: The widest window accepted: a century either way, far beyond any useful shift, and safe for int32 days.
MAXIMUM_WINDOW_DAYS = 36525

#: Separates the shift's HMAC messages from the pseudonyms' (which hash the bare id), so that a key used
#: for both by mistake still gives shifts unrelated to the published pseudonyms.
SHIFT_LABEL = b"airflow-phi-guard date shift v1\x00"

_SECONDS_PER_DAY = 86_400
_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def subject_shifts(subjects: ArrayLike, key: bytes, window_days: int) -> pa.Array:
    """The shift in days of each row's subject: in ``[-window_days, +window_days]``, never 0 unless the
    window is 0.

    The first eight bytes of the HMAC, as an unsigned integer ``u``, give ``r = u mod 2w`` and the shift
    ``r - w`` when ``r < w``, else ``r - w + 1``. The modulo bias is at most ``2w / 2**64``, far below any
    measurable effect. Only the distinct subjects are hashed.

    :param subjects: the subject id column of the rows (text, integers...); a null stays null.
    :param key: the secret date shift key, at least :data:`MINIMUM_KEY_BYTES` long.
    :param window_days: the declared window ``w``, from 0 to :data:`MAXIMUM_WINDOW_DAYS`.
    :returns: an int32 array of days.
    :raises ValueError: for a short or empty key, or a window out of range.
    """
    _check_key(key)
    _check_window(window_days)
    if isinstance(subjects, pa.ChunkedArray):
        subjects = subjects.combine_chunks()
    encoded = pc.dictionary_encode(identifier_bytes(subjects))

    distinct = encoded.dictionary.to_pylist()
    shifts = pa.array([_shift(message, key, window_days) for message in distinct], pa.int32())
    return shifts.take(encoded.indices)


def shift_dates(
    values: ArrayLike,
    shifts: ArrayLike,
    reading: DateReading = ISO_DATES,
    reference: datetime.date | None = None,
) -> pa.Array:
    """Each date moved by its row's shift in days.

    Dates keep their type. Timestamps keep theirs and move by whole days of elapsed time, so every interval
    between a subject's timestamps is preserved to the unit; a zoned timestamp near midnight may then show
    a local date one day off where the shift crosses a daylight saving change. Text is read as ``reading``
    declares and comes out as ``date32``: its time of day, if any, is dropped (give times a timestamp type
    to keep them).

    :param values: dates, timestamps or date text.
    :param shifts: an int32 array of days, one per row, as :func:`subject_shifts` gives.
    :param reading: the declared formats and rules of a text column.
    :param reference: the reference date, needed only when two-digit years are ``not-after-reference``.
    :returns: the shifted dates.
    :raises ValueError: when the lengths differ.
    :raises InvalidValuesError: for unreadable dates, or a date whose shift is missing (no subject to shift
        it by: it is refused, neither left unshifted nor dropped).
    """
    values = _combined(values)
    shifts = _combined(shifts).cast(pa.int32())
    if len(values) != len(shifts):
        raise ValueError(f"{len(shifts)} shifts for {len(values)} dates")

    data_type = values.type
    if is_text(data_type) or pa.types.is_dictionary(data_type) or not pa.types.is_temporal(data_type):
        values = recorded_dates(values, reading, reference)
        data_type = values.type

    unshiftable = _count_true(pc.and_(pc.is_valid(values), pc.is_null(shifts)))
    if unshiftable:
        raise InvalidValuesError(unshiftable, "dates of a row with a subject id to shift them by")

    if pa.types.is_date32(data_type):
        return pc.add(values.cast(pa.int32()), shifts).cast(pa.date32())
    if pa.types.is_date64(data_type):
        milliseconds = pc.multiply(shifts.cast(pa.int64()), _SECONDS_PER_DAY * 1_000)
        return pc.add(values.cast(pa.int64()), milliseconds).cast(pa.date64())
    if pa.types.is_timestamp(data_type):
        units = pc.multiply(shifts.cast(pa.int64()), _SECONDS_PER_DAY * _UNITS_PER_SECOND[data_type.unit])
        return pc.add(values, units.cast(pa.duration(data_type.unit)))
    raise InvalidValuesError(len(values) - values.null_count, "dates, timestamps or date text")


def shift_dates_by_subject(
    values: ArrayLike,
    subjects: ArrayLike,
    key: bytes,
    window_days: int,
    reading: DateReading = ISO_DATES,
    reference: datetime.date | None = None,
) -> pa.Array:
    """Each date moved by the shift of its row's subject: :func:`subject_shifts` then :func:`shift_dates`.

    :param values: dates, timestamps or date text.
    :param subjects: the subject id column of the same rows.
    :param key: the secret date shift key.
    :param window_days: the declared window in days.
    :param reading: the declared formats and rules of a text column.
    :param reference: the reference date, needed only when two-digit years are ``not-after-reference``.
    :raises ValueError: for a bad key or window, or columns of different lengths.
    :raises InvalidValuesError: for unreadable dates, or a date of a row without a subject id.
    """
    return shift_dates(values, subject_shifts(subjects, key, window_days), reading, reference)


def _shift(message: bytes | None, key: bytes, window_days: int) -> int | None:
    if message is None:
        return None
    if window_days == 0:
        return 0
    digest = hmac.new(key, SHIFT_LABEL + message, hashlib.sha256).digest()
    remainder = int.from_bytes(digest[:8], "big") % (2 * window_days)
    return remainder - window_days if remainder < window_days else remainder - window_days + 1


def _combined(values: ArrayLike) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        values = values.combine_chunks()
    return values


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray):
        raise TypeError("the date shift key must be bytes")
    if len(key) < MINIMUM_KEY_BYTES:
        # A short key can be searched offline: shifts recovered from a known date give a test of each guess.
        raise ValueError(
            f"the date shift key is shorter than {MINIMUM_KEY_BYTES} bytes; provide a random secret key, "
            "such as the output of secrets.token_hex(32)"
        )


def _check_window(window_days: int) -> None:
    if isinstance(window_days, bool) or not isinstance(window_days, int):
        raise TypeError("the date shift window must be a whole number of days")
    if not 0 <= window_days <= MAXIMUM_WINDOW_DAYS:
        raise ValueError(f"the date shift window must lie between 0 and {MAXIMUM_WINDOW_DAYS} days")


def _count_true(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)
