"""The de-identification treatments: pure, vectorised functions from one column's values to its output.

Each treatment takes a pyarrow Array or ChunkedArray and returns an Array of the same length in which a
null stays null. Values a treatment cannot read are never passed through and never guessed: the dates
treatments raise :class:`~airflow_phi_guard.exceptions.InvalidValuesError` with a count (the engine turns
it into a refusal naming the column), and ``to_zip3`` suppresses what is not a US ZIP code, as
45 CFR 164.514(b)(2)(i)(B) allows only the first three digits of a real one. No message carries a value.

Dates are read as ISO 8601 unless a :class:`DateReading` declares more: day-first or month-first text,
two-digit years under a stated rule, Excel serial numbers under a stated calendar system. What no declared
rule reads is refused, never passed through and never turned into a date of our own invention.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

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

#: Month-first or day-first text (which of the two is declared, never guessed): one or two digits, the
#: same separator twice (``/``, ``-`` or ``.``), a year of four or two digits, optionally a time of day,
#: which is dropped. RE2 has no back-references, so the separators' agreement is checked by
#: :data:`_SAME_SEPARATOR_PATTERN`.
NUMERIC_DATE_PATTERN = (
    r"^(?P<first>[0-9]{1,2})[/.-](?P<second>[0-9]{1,2})[/.-](?P<year>[0-9]{4}|[0-9]{2})"
    r"(?:[ Tt](?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]+)?)?(?: ?[AaPp][Mm])?)?$"
)
_SAME_SEPARATOR_PATTERN = r"^[0-9]{1,2}(/[0-9]{1,2}/|-[0-9]{1,2}-|[.][0-9]{1,2}[.])[0-9]"

#: Digit-only text read as a spreadsheet serial when the reading declares a serial system: a whole part of
#: at most seven digits (9999-12-31 is serial 2958465) and an optional fraction, the time of day.
SERIAL_PATTERN = r"^[0-9]{1,7}([.][0-9]+)?$"

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


class DateTextFormat(StrEnum):
    """A way of writing a date as text that a :class:`DateReading` may declare for a column."""

    #: ``2020-12-31``, optionally with a time and a UTC offset (:data:`ISO_8601_DATE_PATTERN`).
    ISO_8601 = "iso-8601"
    #: ``12/31/2020`` or ``12/31/20`` (month first, as US records write it); ``/``, ``-`` or ``.`` between.
    MONTH_DAY_YEAR = "month-day-year"
    #: ``31/12/2020`` or ``31/12/20`` (day first); ``/``, ``-`` or ``.`` between.
    DAY_MONTH_YEAR = "day-month-year"


class TwoDigitYears(StrEnum):
    """How a two-digit year (``03/04/27``) is given its century."""

    #: Not at all: a two-digit year is refused like any unreadable value.
    REFUSE = "refuse"
    #: The latest century that puts the whole date on or before the reference date. Meant for birth dates,
    #: which cannot lie after the extract date; it needs the reference date of ages.
    NOT_AFTER_REFERENCE = "not-after-reference"
    #: The year ending in those digits among the hundred years that end at the declared cutoff year, as
    #: spreadsheets do (cutoff 2029: ``29`` is 2029, ``30`` is 1930).
    CUTOFF = "cutoff"


class ExcelSerials(StrEnum):
    """Whether numbers in a date column are read as spreadsheet serial dates, and in which system."""

    #: Not at all: a number in a date column is refused.
    REFUSE = "refuse"
    #: The 1900 date system of Excel and Lotus 1-2-3: 1 is 1900-01-01, and 60 is the 29 February 1900 that
    #: never existed (refused); from 61 on, serial ``n`` is ``n`` days after 1899-12-30.
    EXCEL_1900 = "excel-1900"
    #: The 1904 date system of early Excel for Macintosh: 0 is 1904-01-01.
    EXCEL_1904 = "excel-1904"


class DateReading(BaseModel):
    """How a date column is read: which text formats, and the declared rules for two-digit years and serials.

    The default reads ISO 8601 text, dates and timestamps, and refuses everything else. A rule is declared
    per column, because the same digits mean different dates under different conventions (``03/04/27`` is
    March or April, 1927 or 2027): nothing is inferred from the values.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text_formats: tuple[DateTextFormat, ...] = Field(
        default=(DateTextFormat.ISO_8601,),
        min_length=1,
        description="Text formats accepted, ISO 8601 by default; month-first excludes day-first",
    )
    two_digit_years: TwoDigitYears = Field(
        default=TwoDigitYears.REFUSE,
        description="How a two-digit year in month-first or day-first text gets its century.",
    )
    two_digit_year_cutoff: int | None = Field(
        default=None,
        ge=1100,
        le=9999,
        description="For `two_digit_years: cutoff`: the latest year a two-digit year can mean.",
    )
    excel_serials: ExcelSerials = Field(
        default=ExcelSerials.REFUSE,
        description="Whether numbers (and digit-only text) are spreadsheet serial dates, and which system.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> DateReading:
        formats = set(self.text_formats)
        if {DateTextFormat.MONTH_DAY_YEAR, DateTextFormat.DAY_MONTH_YEAR} <= formats:
            raise ValueError("month-day-year and day-month-year text cannot both be read: 03/04 is ambiguous")
        if (self.two_digit_years is TwoDigitYears.CUTOFF) != (self.two_digit_year_cutoff is not None):
            raise ValueError("two_digit_year_cutoff is required with two_digit_years: cutoff, and only then")
        if self.two_digit_years is not TwoDigitYears.REFUSE and formats == {DateTextFormat.ISO_8601}:
            raise ValueError("two-digit years need a month-day-year or day-month-year text format")
        return self

    @property
    def expected(self) -> str:
        """What a readable value looks like, for the count of unreadable ones."""
        kinds = [_FORMAT_LABELS[text_format] for text_format in self.text_formats]
        if self.excel_serials is not ExcelSerials.REFUSE:
            kinds.append(_FORMAT_LABELS[self.excel_serials])
        return " or ".join(kinds) + " dates"


_FORMAT_LABELS = {
    DateTextFormat.ISO_8601: "ISO 8601",
    DateTextFormat.MONTH_DAY_YEAR: "month/day/year",
    DateTextFormat.DAY_MONTH_YEAR: "day/month/year",
    ExcelSerials.EXCEL_1900: "Excel 1900 serial",
    ExcelSerials.EXCEL_1904: "Excel 1904 serial",
}

#: ISO 8601 text, dates and timestamps; everything else refused.
ISO_DATES = DateReading()


def to_year(
    values: ArrayLike, reading: DateReading = ISO_DATES, reference: datetime.date | None = None
) -> pa.Array:
    """The year of each date, timestamp or date text, as recorded (164.514(b)(2)(i)(C) keeps only it).

    The year is the one written in the record: ``2020-12-31T22:30:00-05:00`` is 2020, and a time-zone-aware
    timestamp gives the year of its local time, never the year after a conversion to UTC. Empty text is
    missing, like a null. For a birth date, the year of a person aged 90 or more must be suppressed as
    well: the engine masks it with :func:`aged_90_or_over` and :func:`suppressed`.

    :param values: a date, timestamp or string column (dictionary-encoded strings too); numbers only when
        ``reading`` declares Excel serials.
    :param reading: the declared formats and rules; ISO 8601 only by default.
    :param reference: the reference date, needed only when two-digit years are ``not-after-reference``.
    :returns: an int32 array of years.
    :raises InvalidValuesError: when any value is not a date that ``reading`` reads, or the type is none.
    """
    year, _month, _day = _recorded_date_parts(_combined(values), reading, reference)
    return year


def recorded_dates(
    values: ArrayLike, reading: DateReading = ISO_DATES, reference: datetime.date | None = None
) -> pa.Array:
    """The calendar date of each value as recorded, as ``date32``: the local date of a zoned timestamp.

    :param values: as for :func:`to_year`.
    :param reading: the declared formats and rules.
    :param reference: the reference date, needed only when two-digit years are ``not-after-reference``.
    :raises InvalidValuesError: as :func:`to_year`.
    """
    year, month, day = _recorded_date_parts(_combined(values), reading, reference)
    return _date_from_parts(year, month, day)


def completed_years(
    values: ArrayLike, reference: datetime.date, reading: DateReading = ISO_DATES
) -> pa.Array:
    """Whole years of age at the reference date, uncapped: the basis of ages, birth years and age bands.

    The age is ``ref.year - birth.year - ((ref.month, ref.day) < (birth.month, birth.day))`` (REGULATORY.md,
    "Dates and ages"), computed on the date parts as recorded, so no 29 February is ever constructed for a
    common year. The rule makes a person born on 29 February a year older on 1 March in a common year, not
    on 28 February: born 2000-02-29, one is 0 on 2001-02-28 and 1 on 2001-03-01. Statutes differ on this
    (some deem 28 February the anniversary); the product applies the one rule everywhere, and for the
    "90 or older" category the difference is that one day.

    :param values: birth dates, as dates, timestamps or text that ``reading`` reads.
    :param reference: the date at which age is measured (the consent as-of date).
    :param reading: the declared formats and rules.
    :returns: an int32 array of ages, nulls for missing birth dates.
    :raises InvalidValuesError: for unreadable values, or a birth date after the reference date.
    """
    reference = _reference_date(reference)
    year, month, day = _recorded_date_parts(_combined(values), reading, reference)
    return _whole_years_at(year, month, day, reference)


def to_age(values: ArrayLike, reference: datetime.date, reading: DateReading = ISO_DATES) -> pa.Array:
    """Whole years of age at the reference date, with every age over 89 becoming 90 ("90 or older").

    The output stays int32 so that a model sees one numeric feature: 90 is the one category "90 or older"
    of 164.514(b)(2)(i)(C), never a real age of 90. Ages follow :func:`completed_years`: a person born on
    1984-02-29 is 40 on 2025-02-28 and 41 on 2025-03-01.

    :param values: birth dates, as dates, timestamps or text that ``reading`` reads.
    :param reference: the date at which age is measured (the consent as-of date).
    :param reading: the declared formats and rules.
    :returns: an int32 array of ages from 0 to 90.
    :raises InvalidValuesError: for unreadable values, or a birth date after the reference date.
    """
    age = completed_years(values, reference, reading)
    return pc.if_else(pc.greater(age, MAXIMUM_KEPT_AGE), OLDEST_AGE, age).cast(pa.int32())


def to_birth_year(values: ArrayLike, reference: datetime.date, reading: DateReading = ISO_DATES) -> pa.Array:
    """The year of birth, null for a person aged 90 or more at the reference date.

    A birth year indicates the age, so for a person over 89 it is one of the date elements that
    164.514(b)(2)(i)(C) removes, the year included.

    :param values: birth dates, as dates, timestamps or text that ``reading`` reads.
    :param reference: the date at which age is measured (the consent as-of date).
    :param reading: the declared formats and rules.
    :returns: an int32 array of years.
    :raises InvalidValuesError: for unreadable values, or a birth date after the reference date.
    """
    reference = _reference_date(reference)
    year, month, day = _recorded_date_parts(_combined(values), reading, reference)
    age = _whole_years_at(year, month, day, reference)
    return pc.if_else(pc.greater(age, MAXIMUM_KEPT_AGE), pa.scalar(None, pa.int32()), year)


def aged_90_or_over(
    birth_dates: ArrayLike, reference: datetime.date, reading: DateReading = ISO_DATES
) -> pa.Array:
    """Which rows belong to a person aged 90 or more at the reference date: the rows whose birth year must go.

    164.514(b)(2)(i)(C) removes every date element that indicates an age over 89, so the birth year of such
    a person must be suppressed in whatever column shows it (a ``year`` of the birth date, a separate birth
    year column). A missing or empty birth date counts as 90 or over: the age is unknown, and failing
    closed costs only the birth year of that row.

    :param birth_dates: the birth date column of the same rows.
    :param reference: the date at which age is measured (the consent as-of date).
    :param reading: the declared formats and rules of the birth date column.
    :returns: a boolean array without nulls, true where the birth year must be suppressed.
    :raises InvalidValuesError: for unreadable birth dates, or a birth date after the reference date.
    """
    age = completed_years(birth_dates, reference, reading)
    return pc.fill_null(pc.greater(age, MAXIMUM_KEPT_AGE), True)


def suppressed(values: ArrayLike, mask: ArrayLike) -> pa.Array:
    """The values with a null wherever the mask is true (or null), e.g. birth years of people aged 90 or more.

    :param values: a treated column.
    :param mask: a boolean array of the same length, such as :func:`aged_90_or_over` gives.
    :raises ValueError: when the lengths differ.
    """
    values, mask = _combined(values), _combined(mask)
    if len(values) != len(mask):
        raise ValueError(f"the mask has {len(mask)} rows where the values have {len(values)}")
    return pc.if_else(pc.fill_null(mask, True), pa.scalar(None, values.type), values)


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
    prefix = pc.utf8_slice_codeunits(us_zip_codes(values), 0, 3)
    return pc.if_else(pc.is_in(prefix, value_set=restricted), _RESTRICTED_PREFIX, prefix).cast(pa.string())


def us_zip_codes(values: ArrayLike) -> pa.Array:
    """Each value as a five-digit US ZIP code, or null when it is none: the reading ``to_zip3`` applies.

    ZIP+4 keeps its first five digits, lost leading zeros are restored (``2139`` is ``02139``), and the
    placeholder ``00000`` (any code starting ``000``, which the USPS never assigns), empty text and anything
    that is not a US ZIP code become null.

    :param values: ZIP codes as text, integers, or floats holding whole numbers.
    :returns: a string array of five digits or nulls.
    :raises InvalidValuesError: when the column's type cannot hold ZIP codes (dates, booleans...).
    """
    text = _zip_code_text(_combined(values))
    is_us_zip = pc.match_substring_regex(text, US_ZIP_PATTERN)
    five_digits = pc.utf8_slice_codeunits(pc.utf8_lpad(text, 5, "0"), 0, 5)
    is_kept = pc.and_(
        is_us_zip, pc.not_equal(pc.utf8_slice_codeunits(five_digits, 0, 3), _PLACEHOLDER_PREFIX)
    )
    return pc.if_else(is_kept, five_digits, pa.scalar(None, pa.string())).cast(pa.string())


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
        encoded = pc.dictionary_encode(identifier_bytes(encoded))

    digests = _hmac_hex(identifier_bytes(encoded.dictionary).to_pylist(), key)
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


def _recorded_date_parts(
    values: pa.Array, reading: DateReading, reference: datetime.date | None
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Year, month and day of each value as recorded, as three int32 arrays.

    :raises InvalidValuesError: for values that ``reading`` does not read, or a type that holds no dates.
    """
    values = _decoded(values)
    data_type = values.type

    # Arrow extracts the components of a zoned timestamp in its own time zone, i.e. the local date as
    # recorded, which is the rule of 164.514(b)(2)(i)(C) as this product applies it (never UTC first).
    if pa.types.is_date(data_type) or pa.types.is_timestamp(data_type):
        return tuple(part(values).cast(pa.int32()) for part in (pc.year, pc.month, pc.day))
    if is_text(data_type):
        return _text_date_parts(values, reading, reference)
    if _is_number(data_type) and reading.excel_serials is not ExcelSerials.REFUSE:
        parts, unreadable = _serial_date_parts(values.cast(pa.float64()), reading.excel_serials)
        if unreadable:
            raise InvalidValuesError(unreadable, reading.expected)
        return parts
    if values.null_count == len(values):
        return _null_int32(len(values)), _null_int32(len(values)), _null_int32(len(values))
    raise InvalidValuesError(len(values) - values.null_count, reading.expected)


def _text_date_parts(
    text: pa.Array, reading: DateReading, reference: datetime.date | None
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Year, month and day read from text in the declared formats, refusing any other text."""
    text = pc.utf8_trim_whitespace(text)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)
    missing = _null_int32(len(text))
    year, month, day = missing, missing, missing
    read = pc.is_null(text)

    formats = set(reading.text_formats)
    if DateTextFormat.ISO_8601 in formats:
        is_iso = pc.fill_null(pc.match_substring_regex(text, ISO_8601_DATE_PATTERN), False)
        year, month, day = _merged((year, month, day), _iso_slices(text), is_iso)
        read = pc.or_(read, is_iso)

    two_digit = pa.array([False] * len(text))
    for text_format in (DateTextFormat.MONTH_DAY_YEAR, DateTextFormat.DAY_MONTH_YEAR):
        if text_format in formats:
            parts, matched, short_year = _numeric_date_slices(text, text_format)
            year, month, day = _merged((year, month, day), parts, matched)
            two_digit = pc.or_(two_digit, short_year)
            read = pc.or_(read, matched)

    serial = pa.array([False] * len(text))
    unreadable_serials = 0
    if reading.excel_serials is not ExcelSerials.REFUSE:
        serial = pc.and_(pc.invert(read), pc.fill_null(pc.match_substring_regex(text, SERIAL_PATTERN), False))
        numbers = pc.if_else(serial, text, pa.scalar(None, text.type)).cast(pa.float64())
        parts, unreadable_serials = _serial_date_parts(numbers, reading.excel_serials)
        year, month, day = _merged((year, month, day), parts, serial)
        read = pc.or_(read, serial)

    unreadable = _count_true(pc.invert(read)) + unreadable_serials
    year, unresolved = _with_century(year, month, day, two_digit, reading, reference)
    unreadable += unresolved + _count_true(_impossible(year, month, day))
    if unreadable:
        raise InvalidValuesError(unreadable, reading.expected)
    return year, month, day


def _iso_slices(text: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Year, month and day of text already known to be ISO 8601, from its first ten characters."""
    # Only well-formed rows are sliced and cast; the others become null first, so no cast can fail on them.
    well_formed = pc.fill_null(pc.match_substring_regex(text, ISO_8601_DATE_PATTERN), False)
    text = pc.if_else(well_formed, text, pa.scalar(None, text.type))
    return tuple(
        pc.utf8_slice_codeunits(text, start, stop).cast(pa.int32())
        for start, stop in ((0, 4), (5, 7), (8, 10))
    )


def _numeric_date_slices(
    text: pa.Array, text_format: DateTextFormat
) -> tuple[tuple[pa.Array, pa.Array, pa.Array], pa.Array, pa.Array]:
    """Parts of month-first or day-first text, which rows matched, which have two-digit years."""
    fields = pc.extract_regex(text, NUMERIC_DATE_PATTERN)
    matched = pc.and_(
        pc.fill_null(pc.is_valid(fields), False),
        pc.fill_null(pc.match_substring_regex(text, _SAME_SEPARATOR_PATTERN), False),
    )

    def field(name: str) -> pa.Array:
        # The children of a non-matching row hold empty text: null them before the cast.
        child = pc.struct_field(fields, name)
        return pc.if_else(matched, child, pa.scalar(None, pa.string())).cast(pa.int32())

    first, second, year_text = field("first"), field("second"), pc.struct_field(fields, "year")
    year = pc.if_else(matched, year_text, pa.scalar(None, pa.string())).cast(pa.int32())
    short_year = pc.fill_null(pc.and_(matched, pc.equal(pc.utf8_length(year_text), 2)), False)
    if text_format is DateTextFormat.MONTH_DAY_YEAR:
        return (year, first, second), matched, short_year
    return (year, second, first), matched, short_year


def _merged(
    current: tuple[pa.Array, pa.Array, pa.Array], new: tuple[pa.Array, pa.Array, pa.Array], where: pa.Array
) -> tuple[pa.Array, pa.Array, pa.Array]:
    return tuple(pc.if_else(where, fresh, old) for old, fresh in zip(current, new, strict=True))


def _with_century(
    year: pa.Array,
    month: pa.Array,
    day: pa.Array,
    two_digit: pa.Array,
    reading: DateReading,
    reference: datetime.date | None,
) -> tuple[pa.Array, int]:
    """Four-digit years for the two-digit ones, under the declared rule, and how many stay unresolved."""
    count = _count_true(two_digit)
    if not count:
        return year, 0
    if reading.two_digit_years is TwoDigitYears.REFUSE:
        return pc.if_else(two_digit, pa.scalar(None, pa.int32()), year), count

    if reading.two_digit_years is TwoDigitYears.CUTOFF:
        latest = reading.two_digit_year_cutoff
        resolved = pc.subtract(latest, pc.modulo(pc.subtract(latest, year), 100))
    else:
        if reference is None:
            raise ValueError("two_digit_years: not-after-reference needs the reference date of ages")
        # The latest year ending in these digits that is not after the reference year; one century earlier
        # when that puts the date itself after the reference date.
        latest = reference.year
        resolved = pc.subtract(latest, pc.modulo(pc.subtract(latest, year), 100))
        after = pc.and_(
            pc.equal(resolved, latest),
            pc.or_(
                pc.greater(month, reference.month),
                pc.and_(pc.equal(month, reference.month), pc.greater(day, reference.day)),
            ),
        )
        resolved = pc.if_else(after, pc.subtract(resolved, 100), resolved)
    return pc.if_else(two_digit, resolved.cast(pa.int32()), year), 0


def _serial_date_parts(
    serials: pa.Array, system: ExcelSerials
) -> tuple[tuple[pa.Array, pa.Array, pa.Array], int]:
    """Year, month and day of spreadsheet serial numbers (float64), and how many are no date of the system.

    A fraction is the time of day, so the date is the whole part. Serial 60 of the 1900 system is the
    29 February 1900 that Lotus 1-2-3 invented and Excel kept for compatibility: no such day existed, so it
    is refused rather than moved to a neighbour. Serials before the system's first day or after 9999-12-31,
    NaN and infinities are refused too.
    """
    whole = pc.floor(serials)
    if system is ExcelSerials.EXCEL_1900:
        first, last = 1.0, 2958465.0
        # Serials 1 to 59 are 1900-01-01 to 1900-02-28; from 61 on, the fictitious leap day has been counted.
        epoch_days = pc.if_else(pc.less(whole, 60), pc.subtract(whole, 25568), pc.subtract(whole, 25569))
        valid = pc.and_(
            pc.and_(pc.greater_equal(whole, first), pc.less_equal(whole, last)), pc.not_equal(whole, 60)
        )
    else:
        first, last = 0.0, 2957003.0
        epoch_days = pc.subtract(whole, 24107)
        valid = pc.and_(pc.greater_equal(whole, first), pc.less_equal(whole, last))

    # NaN compares false, so it is invalid here; a null stays null and is not counted.
    valid = pc.and_(valid, pc.invert(pc.is_nan(serials)))
    unreadable = _count_true(pc.and_(pc.is_valid(serials), pc.invert(pc.fill_null(valid, False))))
    dates = pc.if_else(valid, epoch_days, pa.scalar(None, pa.float64())).cast(pa.int32()).cast(pa.date32())
    return tuple(part(dates).cast(pa.int32()) for part in (pc.year, pc.month, pc.day)), unreadable


def _impossible(year: pa.Array, month: pa.Array, day: pa.Array) -> pa.Array:
    """Dates whose day does not exist: past the end of the month, 29 February of a common year, year 0."""
    # Patterns bound the month by 12 and the day by 31; a day past the end of its month (2024-04-31,
    # 2023-02-29) is flagged like malformed text rather than rolled over into the next month.
    month_of_year = pc.and_(pc.greater_equal(month, 1), pc.less_equal(month, 12))
    past_month_end = pc.greater(day, pc.take(_DAYS_IN_MONTH, pc.if_else(month_of_year, month, 0)))
    february_29_of_common_year = pc.and_(
        pc.and_(pc.equal(month, 2), pc.equal(day, 29)), pc.invert(_is_leap_year(year))
    )
    out_of_range = pc.or_(pc.less(year, 1), pc.or_(pc.invert(month_of_year), pc.less(day, 1)))
    return pc.fill_null(pc.or_(pc.or_(past_month_end, february_29_of_common_year), out_of_range), False)


def _is_leap_year(year: pa.Array) -> pa.Array:
    def divisible(by: int) -> pa.Array:
        return pc.equal(pc.modulo(year, by), 0)

    return pc.or_(pc.and_(divisible(4), pc.invert(divisible(100))), divisible(400))


def _date_from_parts(year: pa.Array, month: pa.Array, day: pa.Array) -> pa.Array:
    """``date32`` from checked year, month and day parts, through ISO text (no Arrow kernel takes parts)."""
    text = pc.binary_join_element_wise(
        pc.utf8_lpad(year.cast(pa.string()), 4, "0"),
        pc.utf8_lpad(month.cast(pa.string()), 2, "0"),
        pc.utf8_lpad(day.cast(pa.string()), 2, "0"),
        "-",
    )
    return pc.strptime(text, format="%Y-%m-%d", unit="s").cast(pa.date32())


def _is_number(data_type: pa.DataType) -> bool:
    return pa.types.is_integer(data_type) or pa.types.is_floating(data_type) or pa.types.is_decimal(data_type)


def _count_true(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _reference_date(reference: datetime.date) -> datetime.date:
    if not isinstance(reference, datetime.date):
        raise TypeError(f"the reference date must be a datetime.date, got {type(reference).__name__}")
    if isinstance(reference, datetime.datetime):
        # A datetime is a date too, but its time would be silently ignored: the rule is about calendar days.
        return reference.date()
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


def identifier_bytes(values: ArrayLike) -> pa.Array:
    """The bytes that stand for each identifier when hashed: its trimmed UTF-8 text, or its binary value.

    Pseudonyms and date shifts both hash these, so that ``123``, ``"123"`` and ``" 123"`` are one subject.

    :param values: any column whose values cast to text (strings, integers, dates...) or binary.
    :returns: a large_binary array.
    """
    values = _decoded(_combined(values))
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
