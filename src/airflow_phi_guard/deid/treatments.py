"""The de-identification treatments: pure, vectorised functions from one column's values to its output.

Each treatment takes a pyarrow Array or ChunkedArray and returns an Array of the same length in which a
null stays null. Values a treatment cannot read are never passed through and never guessed: the dates
treatments raise :class:`~airflow_phi_guard.exceptions.InvalidValuesError` with a count (the engine turns
it into a refusal naming the column), and ``to_zip3`` suppresses what is not a US ZIP code, as
45 CFR 164.514(b)(2)(i)(B) allows only the first three digits of a real one. No message carries a value.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac

import pyarrow as pa
import pyarrow.compute as pc

from airflow_phi_guard.arrow_types import is_text
from airflow_phi_guard.deid.zip3 import restricted_prefixes
from airflow_phi_guard.exceptions import InvalidValuesError
from airflow_phi_guard.policy.models import Zip3Vintage

#: Ages above this become :data:`OLDEST_AGE`, one category meaning "90 or older" (164.514(b)(2)(i)(C)).
MAXIMUM_KEPT_AGE = 89
OLDEST_AGE = 90

#: What ``to_year``, ``to_age`` and ``to_birth_year`` read from text: an ISO 8601 calendar date in extended
#: format, optionally with a time and a UTC offset (RFC 3339 allows a space or a lowercase ``t``/``z``).
#: RE2 syntax, as ``pyarrow.compute`` uses it.
ISO_8601_DATE_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([Tt ]([01][0-9]|2[0-3]):[0-5][0-9](:([0-5][0-9]|60)([.,][0-9]+)?)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?)?$"
)

#: What ``to_zip3`` reads as a US ZIP code: five digits, ZIP+4 with or without its dash, or one to four
#: digits that lost their leading zeros to an integer cast. Anything else (``141 34``, ``SW1A 1AA``, six to
#: eight digits as Indian, Chinese or Brazilian postcodes have) is not a US ZIP and is suppressed.
US_ZIP_PATTERN = r"^([0-9]{1,5}|[0-9]{9}|[0-9]{5}-[0-9]{4})$"

#: No US ZIP code starts with 000; ``00000`` is the usual placeholder for "unknown", not a ZIP3 of 000.
_PLACEHOLDER_PREFIX = "000"
_RESTRICTED_PREFIX = "000"

_DAYS_IN_MONTH = pa.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], pa.int32())

#: The fixed message whose HMAC under the pseudonym key is the key's fingerprint.
KEY_FINGERPRINT_LABEL = b"airflow-phi-guard pseudonym key fingerprint v1"

ArrayLike = pa.Array | pa.ChunkedArray


def to_year(values: ArrayLike) -> pa.Array:
    """The year of each date, timestamp or ISO 8601 text, as recorded (164.514(b)(2)(i)(C) keeps only it).

    The year is the one written in the record: ``2020-12-31T22:30:00-05:00`` is 2020, and a time-zone-aware
    timestamp gives the year of its local time, never the year after a conversion to UTC. Empty text is
    missing, like a null.

    :param values: a date, timestamp or string column (dictionary-encoded strings too).
    :returns: an int32 array of years.
    :raises InvalidValuesError: when any non-empty text is not an ISO 8601 date, or the type is none of these.
    """
    year, _month, _day = _recorded_date_parts(_combined(values))
    return year


def to_age(values: ArrayLike, reference: datetime.date) -> pa.Array:
    """Whole years of age at the reference date, with every age over 89 becoming 90 ("90 or older").

    The age is ``ref.year - birth.year - ((ref.month, ref.day) < (birth.month, birth.day))``, computed on
    the date parts as recorded, so no 29 February is ever constructed for a non-leap year: a person born on
    1984-02-29 is 40 on 2025-02-28 and 41 on 2025-03-01.

    :param values: birth dates, as dates, timestamps or ISO 8601 text.
    :param reference: the date at which age is measured (the consent as-of date).
    :returns: an int32 array of ages from 0 to 90.
    :raises InvalidValuesError: for unreadable values, or a birth date after the reference date.
    """
    year, month, day = _recorded_date_parts(_combined(values))
    age = _whole_years_at(year, month, day, _reference_date(reference))
    return pc.if_else(pc.greater(age, MAXIMUM_KEPT_AGE), OLDEST_AGE, age).cast(pa.int32())


def to_birth_year(values: ArrayLike, reference: datetime.date) -> pa.Array:
    """The year of birth, null for a person aged 90 or more at the reference date.

    A birth year indicates the age, so for a person over 89 it is one of the date elements that
    164.514(b)(2)(i)(C) removes, the year included.

    :param values: birth dates, as dates, timestamps or ISO 8601 text.
    :param reference: the date at which age is measured (the consent as-of date).
    :returns: an int32 array of years.
    :raises InvalidValuesError: for unreadable values, or a birth date after the reference date.
    """
    year, month, day = _recorded_date_parts(_combined(values))
    age = _whole_years_at(year, month, day, _reference_date(reference))
    return pc.if_else(pc.greater(age, MAXIMUM_KEPT_AGE), pa.scalar(None, pa.int32()), year)


def to_zip3(values: ArrayLike, vintage: Zip3Vintage) -> pa.Array:
    """The first three digits of each US ZIP code, ``000`` for the prefixes the vintage restricts.

    ZIP+4 keeps its first three digits (``02139-4307`` and ``021394307`` give ``021``); a ZIP that lost its
    leading zeros to an integer cast is padded back (``2139`` is ``02139``, so ``021``). The placeholder
    ``00000``, empty text and anything that is not a US ZIP code (``141 34``, ``SW1A 1AA``) become null:
    suppressed, never truncated into a ZIP3 that does not exist.

    :param values: ZIP codes as text, integers, or floats holding whole numbers.
    :param vintage: the Census vintage whose restricted prefixes apply.
    :returns: a string array of three-digit prefixes.
    :raises InvalidValuesError: when the column's type cannot hold ZIP codes (dates, booleans...).
    """
    restricted = pa.array(sorted(restricted_prefixes(vintage)), pa.string())
    text = _zip_code_text(_combined(values))

    is_us_zip = pc.match_substring_regex(text, US_ZIP_PATTERN)
    prefix = pc.utf8_slice_codeunits(pc.utf8_lpad(text, 5, "0"), 0, 3)
    is_kept = pc.and_(is_us_zip, pc.not_equal(prefix, _PLACEHOLDER_PREFIX))

    generalised = pc.if_else(pc.is_in(prefix, value_set=restricted), _RESTRICTED_PREFIX, prefix)
    return pc.if_else(is_kept, generalised, pa.scalar(None, pa.string())).cast(pa.string())


def pseudonymize(values: ArrayLike, key: bytes) -> pa.Array:
    """The HMAC-SHA256 of each value's text under the key, in lowercase hex.

    The same value and key give the same pseudonym in every table and run, and the value's text is what
    is hashed, so the integer 123 and the text ``"123"`` share a pseudonym; surrounding white space is
    trimmed first, as when consent is matched. Only the distinct values are
    hashed: the column is dictionary-encoded and the digests are taken back by index.

    A keyed hash is derived from the identifier, so it is not a re-identification code under 164.514(c):
    output that keeps pseudonyms is not Safe Harbor de-identified.

    :param values: any column whose values cast to text (strings, integers, dates...) or binary.
    :param key: the secret pseudonym key; never logged, recorded only as :func:`key_fingerprint`.
    :returns: a string array of 64 hex digits per value.
    :raises ValueError: for an empty key.
    """
    _check_key(key)
    encoded = _combined(values)
    if not pa.types.is_dictionary(encoded.type):
        encoded = pc.dictionary_encode(_hashable_bytes(encoded))

    digests = _hmac_hex(_hashable_bytes(encoded.dictionary).to_pylist(), key)
    return pa.array(digests, pa.string()).take(encoded.indices)


def key_fingerprint(key: bytes) -> str:
    """A value-safe fingerprint that records which pseudonym key a run used: 16 hex digits.

    It is the HMAC-SHA256 of a fixed, public label under the key, truncated. Like any digest of a key it
    lets someone test guessed keys offline, so it protects only a key that cannot be guessed: the engine
    refuses keys shorter than 32 bytes, and a key should be random (``secrets.token_hex(32)``).

    :param key: the secret pseudonym key.
    :raises ValueError: for an empty key.
    """
    _check_key(key)
    return hmac.new(key, KEY_FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


def _combined(values: ArrayLike) -> pa.Array:
    """One Array from an Array or ChunkedArray, with chunked dictionaries decoded (they may differ)."""
    if isinstance(values, pa.ChunkedArray):
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        raise TypeError(f"expected a pyarrow Array or ChunkedArray, got {type(values).__name__}")
    if pa.types.is_string_view(values.type):
        values = values.cast(pa.string())
    return values


def _decoded(values: pa.Array) -> pa.Array:
    """The values themselves, not their dictionary encoding."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
        if pa.types.is_string_view(values.type):
            values = values.cast(pa.string())
    return values


def _null_int32(length: int) -> pa.Array:
    return pa.nulls(length, pa.int32())


def _recorded_date_parts(values: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Year, month and day of each value as recorded, as three int32 arrays.

    :raises InvalidValuesError: for text that is not an ISO 8601 date, or a type that holds no dates.
    """
    values = _decoded(values)
    data_type = values.type

    # Arrow extracts the components of a zoned timestamp in its own time zone, i.e. the local date as
    # recorded, which is the rule of 164.514(b)(2)(i)(C) as this product applies it (never UTC first).
    if pa.types.is_date(data_type) or pa.types.is_timestamp(data_type):
        return tuple(part(values).cast(pa.int32()) for part in (pc.year, pc.month, pc.day))
    if is_text(data_type):
        return _iso_date_parts(values)
    if values.null_count == len(values):
        return _null_int32(len(values)), _null_int32(len(values)), _null_int32(len(values))
    raise InvalidValuesError(len(values) - values.null_count, "dates, timestamps or ISO 8601 dates")


def _iso_date_parts(text: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Year, month and day read from the first ten characters of ISO 8601 text, refusing any other text."""
    text = pc.utf8_trim_whitespace(text)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)

    # Refuse malformed text first, so that the slices below only ever see well-formed dates.
    well_formed = pc.match_substring_regex(text, ISO_8601_DATE_PATTERN)
    malformed = _count_true(pc.invert(well_formed))
    text = pc.if_else(well_formed, text, pa.scalar(None, text.type))

    year, month, day = (
        pc.utf8_slice_codeunits(text, start, stop).cast(pa.int32())
        for start, stop in ((0, 4), (5, 7), (8, 10))
    )

    # The pattern bounds the day by 31; a day past the end of its month (2024-04-31, 2023-02-29) is an
    # impossible date, flagged like malformed text rather than rolled over into the next month.
    past_month_end = pc.greater(day, pc.take(_DAYS_IN_MONTH, month))
    february_29_of_common_year = pc.and_(
        pc.and_(pc.equal(month, 2), pc.equal(day, 29)), pc.invert(_is_leap_year(year))
    )
    impossible = _count_true(pc.or_(past_month_end, february_29_of_common_year))

    if malformed or impossible:
        raise InvalidValuesError(malformed + impossible, "ISO 8601 dates")
    return year, month, day


def _is_leap_year(year: pa.Array) -> pa.Array:
    def divisible(by: int) -> pa.Array:
        # Integer division truncates, so year - (year / by) * by is the remainder; years here are >= 0.
        return pc.equal(pc.subtract(year, pc.multiply(pc.divide(year, by), by)), 0)

    return pc.or_(pc.and_(divisible(4), pc.invert(divisible(100))), divisible(400))


def _count_true(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _reference_date(reference: datetime.date) -> datetime.date:
    if not isinstance(reference, datetime.date):
        raise TypeError(f"the reference date must be a datetime.date, got {type(reference).__name__}")
    return reference


def _whole_years_at(year: pa.Array, month: pa.Array, day: pa.Array, reference: datetime.date) -> pa.Array:
    """Completed years between each birth date and the reference date, refusing births after it."""
    birthday_still_ahead = pc.or_(
        pc.greater(month, reference.month),
        pc.and_(pc.equal(month, reference.month), pc.greater(day, reference.day)),
    )
    age = pc.subtract(pc.subtract(reference.year, year), birthday_still_ahead.cast(pa.int32()))

    # A negative age is a birth after the reference date: a wrong reference or a wrong record (such as a
    # two-digit year read in the wrong century), and either way no age can be given.
    born_later = _count_true(pc.less(age, 0))
    if born_later:
        raise InvalidValuesError(born_later, "birth dates on or before the reference date")
    return age


def _zip_code_text(values: pa.Array) -> pa.Array:
    """ZIP codes as trimmed text; integers and whole floats as their decimal digits."""
    values = _decoded(values)
    data_type = values.type

    if is_text(data_type):
        return pc.utf8_trim_whitespace(values)
    if pa.types.is_integer(data_type):
        return values.cast(pa.string())
    if pa.types.is_floating(data_type):
        # A ZIP column with gaps often arrives as floats (pandas); only a whole number in ZIP+4's range
        # can be a ZIP code, and anything else is suppressed below by failing the ZIP pattern.
        whole = pc.and_(pc.equal(pc.floor(values), values), pc.less(pc.abs(values), 1e10))
        return pc.if_else(whole, values, pa.scalar(None, data_type)).cast(pa.int64()).cast(pa.string())
    if values.null_count == len(values):
        return pa.nulls(len(values), pa.string())
    raise InvalidValuesError(len(values) - values.null_count, "US ZIP codes as text or integers")


def _hashable_bytes(values: pa.Array) -> pa.Array:
    """The bytes that a pseudonym hashes: the UTF-8 of the value's text, or a binary value as it is."""
    data_type = values.type
    is_binary = (
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_fixed_size_binary(data_type)
        or pa.types.is_binary_view(data_type)
    )
    if is_binary:
        return values.cast(pa.large_binary())
    if not is_text(data_type):
        values = values.cast(pa.string())
    # Ids are compared after trimming when consent is checked, so " p1" and "p1" are one subject: they
    # must get one pseudonym too, or a split by patient would put one person on both sides.
    return pc.utf8_trim_whitespace(values).cast(pa.large_binary())


def _hmac_hex(messages: list[bytes | None], key: bytes) -> list[str | None]:
    # Keying HMAC once and copying its state per message saves the two key-block hashes of each call.
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    digests: list[str | None] = []
    for message in messages:
        if message is None:
            digests.append(None)
            continue
        mac = keyed.copy()
        mac.update(message)
        digests.append(mac.hexdigest())
    return digests


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray):
        raise TypeError("the pseudonym key must be bytes")
    if not key:
        raise ValueError("the pseudonym key is empty; provide a secret key of at least 32 random bytes")
