"""Generalisation treatments: age bands, dates to month or quarter, ZIP codes to State, top and bottom coding.

Each function is vectorised over one Arrow column, keeps nulls null, and refuses what it cannot read with
:class:`~airflow_phi_guard.exceptions.InvalidValuesError` (a count, never a value). Whether a
generalisation may appear in output that claims Safe Harbor is in :data:`SAFE_HARBOR_COMPATIBLE`, so that
the check of treatments against the de-identification method can read it instead of knowing each function.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Mapping
from types import MappingProxyType

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_phi_guard.deid.treatments import (
    ISO_DATES,
    MAXIMUM_KEPT_AGE,
    ArrayLike,
    DateReading,
    completed_years,
    recorded_dates,
    us_zip_codes,
)
from airflow_phi_guard.deid.zip3 import zip3_state_table
from airflow_phi_guard.exceptions import InvalidValuesError

#: Whether each generalisation may stay in output that claims Safe Harbor (164.514(b)(2)), by the treatment
#: name proposed for policies. Age bands qualify only when every age over 89 falls in the one open top band
#: (:attr:`AgeBands.safe_harbor_compatible`); a month or a quarter is an element of a date other than the
#: year, which letter C removes; a State is the smallest geography letter B lets stay whole.
SAFE_HARBOR_COMPATIBLE: Mapping[str, bool] = MappingProxyType(
    {
        "age-band": True,
        "month": False,
        "quarter": False,
        "state": True,
        "top-bottom-code": True,
    }
)

#: The age at which Safe Harbor's single top category starts: "90 or older", 164.514(b)(2)(i)(C).
SAFE_HARBOR_TOP_AGE = MAXIMUM_KEPT_AGE + 1


class AgeBands(BaseModel):
    """Declared age bands: each edge starts a band, and the last band is open (``[0, 18, 65, 90]`` gives
    ``0-17``, ``18-64``, ``65-89`` and ``90+``).

    An age below the first edge is refused, not put in a band of its own. Under Safe Harbor no edge may lie
    above 90, so that every age over 89 is in the one top band (which may start lower, as ``65+`` does).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    edges: tuple[int, ...] = Field(
        min_length=1, description="Ages in years that start each band, increasing; the last band is open."
    )

    @field_validator("edges")
    @classmethod
    def _increasing(cls, edges: tuple[int, ...]) -> tuple[int, ...]:
        if edges[0] < 0:
            raise ValueError("age band edges cannot be negative")
        if any(later <= earlier for earlier, later in itertools.pairwise(edges)):
            raise ValueError("age band edges must increase")
        return edges

    @property
    def labels(self) -> tuple[str, ...]:
        """One label per band: ``lower-upper`` in whole years, and ``lower+`` for the open top band."""
        closed = [f"{lower}-{upper - 1}" for lower, upper in itertools.pairwise(self.edges)]
        return (*closed, f"{self.edges[-1]}+")

    @property
    def safe_harbor_compatible(self) -> bool:
        """Whether every age over 89 falls in the open top band: no edge above 90."""
        return self.edges[-1] <= SAFE_HARBOR_TOP_AGE


def to_age_band(
    values: ArrayLike,
    bands: AgeBands,
    *,
    reference: datetime.date | None = None,
    reading: DateReading = ISO_DATES,
    safe_harbor: bool = False,
) -> pa.Array:
    """The label of each age's band, from ages in years or from birth dates at a reference date.

    :param values: ages (integers or floats, in years), or birth dates as :func:`~.treatments.to_age`
        reads them, in which case ``reference`` is required.
    :param bands: the declared bands.
    :param reference: the date at which age is measured, for birth dates.
    :param reading: the declared formats and rules of a birth date column.
    :param safe_harbor: refuse bands that would show an age over 89, for a policy that claims Safe Harbor.
    :returns: a string array of band labels.
    :raises ValueError: for bands not Safe Harbor compatible when ``safe_harbor``, or birth dates without a
        reference date.
    :raises InvalidValuesError: for unreadable birth dates, negative, NaN or below-first-edge ages.
    """
    if safe_harbor and not bands.safe_harbor_compatible:
        raise ValueError(
            f"age bands with an edge above {SAFE_HARBOR_TOP_AGE} show ages over 89, which Safe Harbor "
            f"aggregates into one category: end the edges at {SAFE_HARBOR_TOP_AGE} or below"
        )
    ages = _ages(values, reference, reading)

    readable = pc.and_(pc.greater_equal(ages, bands.edges[0]), pc.invert(_is_nan(ages)))
    unreadable = _count_true(pc.invert(pc.fill_null(readable, True)))
    if unreadable:
        raise InvalidValuesError(unreadable, f"ages of at least {bands.edges[0]} years")

    band = pa.scalar(0, pa.int32())
    for edge in bands.edges[1:]:
        band = pc.add(band, pc.greater_equal(ages, edge).cast(pa.int32()))
    return pc.take(pa.array(bands.labels, pa.string()), band)


def to_month(
    values: ArrayLike, reading: DateReading = ISO_DATES, reference: datetime.date | None = None
) -> pa.Array:
    """The year and month of each date as recorded, ``2021-03``. Not for Safe Harbor: a month is a date
    element other than the year (164.514(b)(2)(i)(C)).

    :param values: dates, timestamps or date text, read as :func:`~.treatments.to_year` reads them.
    :param reading: the declared formats and rules.
    :param reference: the reference date, needed only when two-digit years are ``not-after-reference``.
    :raises InvalidValuesError: as :func:`~.treatments.to_year`.
    """
    dates = recorded_dates(values, reading, reference)
    return pc.binary_join_element_wise(
        _year_text(dates), pc.utf8_lpad(pc.month(dates).cast(pa.string()), 2, "0"), "-"
    )


def to_quarter(
    values: ArrayLike, reading: DateReading = ISO_DATES, reference: datetime.date | None = None
) -> pa.Array:
    """The year and calendar quarter of each date as recorded, ``2021-Q1``. Not for Safe Harbor, like
    :func:`to_month`.

    :param values: dates, timestamps or date text, read as :func:`~.treatments.to_year` reads them.
    :param reading: the declared formats and rules.
    :param reference: the reference date, needed only when two-digit years are ``not-after-reference``.
    :raises InvalidValuesError: as :func:`~.treatments.to_year`.
    """
    dates = recorded_dates(values, reading, reference)
    quarter = pc.binary_join_element_wise("Q", pc.quarter(dates).cast(pa.string()), "")
    return pc.binary_join_element_wise(_year_text(dates), quarter, "-")


def to_state(values: ArrayLike, *, prefixes: bool = False) -> pa.Array:
    """The State (USPS abbreviation, territories and military post offices included) of each ZIP code.

    The State comes from the ZIP3 table of ``deid/data/zip3-states.json``; a ZIP code of a prefix that
    crosses a State border takes the State of its own exception entry. What names no State becomes null:
    anything :func:`~.treatments.us_zip_codes` suppresses, a prefix the table does not know (unassigned),
    and, for bare prefixes, ``000`` (a restricted prefix already generalised) and the prefixes split between
    States, whose State the prefix alone cannot tell.

    :param values: ZIP codes as :func:`~.treatments.to_zip3` reads them or, with ``prefixes``, three-digit
        prefixes as text or integers (``21`` is ``021``).
    :param prefixes: whether the values are already ZIP3 prefixes rather than ZIP codes.
    :returns: a string array of two-letter State codes.
    :raises InvalidValuesError: when the column's type cannot hold ZIP codes.
    """
    table = zip3_state_table()
    if prefixes:
        # A three-digit prefix with lost leading zeros reads as a short ZIP code; pad it as a prefix instead.
        zip3 = _prefix_text(values)
        zip3 = pc.if_else(pc.is_in(zip3, value_set=pa.array(sorted(table.split_prefixes))), None, zip3)
        return _lookup(zip3, table.prefixes)

    zip_codes = us_zip_codes(values)
    by_prefix = _lookup(pc.utf8_slice_codeunits(zip_codes, 0, 3), table.prefixes)
    by_exception = _lookup(zip_codes, table.exceptions)
    return pc.coalesce(by_exception, by_prefix)


def top_bottom_code(values: ArrayLike, *, bottom: float | None = None, top: float | None = None) -> pa.Array:
    """Numbers with those above ``top`` replaced by ``top`` and those below ``bottom`` by ``bottom``.

    The declared bound stands for every value beyond it, as "90 or older" does for ages; the output keeps
    the input's type, so bounds must be representable in it (a float bound on an integer column is refused).
    NaN is no number beyond a bound and stays NaN.

    :param values: an integer, floating-point or decimal column.
    :param bottom: the lowest value published, or None for no bottom coding.
    :param top: the highest value published, or None for no top coding.
    :raises ValueError: for no bound, or a bottom above the top.
    :raises InvalidValuesError: when the column holds no numbers.
    """
    if bottom is None and top is None:
        raise ValueError("top and bottom coding needs a top, a bottom, or both")
    if bottom is not None and top is not None and bottom > top:
        raise ValueError("the bottom coding bound lies above the top coding bound")
    values = _combined_numbers(values)

    coded = values
    if top is not None:
        bound = _bound(top, values.type)
        coded = pc.if_else(pc.greater(coded, bound), bound, coded)
    if bottom is not None:
        bound = _bound(bottom, values.type)
        coded = pc.if_else(pc.less(coded, bound), bound, coded)
    return coded


def _ages(values: ArrayLike, reference: datetime.date | None, reading: DateReading) -> pa.Array:
    """Ages in years: numbers as they are, birth dates as completed years at the reference date."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    data_type = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    if pa.types.is_null(data_type):
        return pa.nulls(len(values), pa.int64())
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        values = values.dictionary_decode() if pa.types.is_dictionary(values.type) else values
        return values if pa.types.is_floating(data_type) else values.cast(pa.int64())
    if reference is None:
        raise ValueError("age bands from birth dates need the reference date of ages")
    return completed_years(values, reference, reading)


def _year_text(dates: pa.Array) -> pa.Array:
    return pc.utf8_lpad(pc.year(dates).cast(pa.string()), 4, "0")


def _prefix_text(values: ArrayLike) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_integer(values.type):
        values = pc.if_else(pc.less(values, 0), None, values).cast(pa.string())
    elif not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        if values.null_count == len(values):
            return pa.nulls(len(values), pa.string())
        raise InvalidValuesError(len(values) - values.null_count, "three-digit ZIP prefixes")
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    is_prefix = pc.match_substring_regex(text, r"^[0-9]{1,3}$")
    return pc.if_else(is_prefix, pc.utf8_lpad(text, 3, "0"), pa.scalar(None, pa.string()))


def _lookup(keys: pa.Array, table: dict[str, str]) -> pa.Array:
    names = pa.array(list(table), pa.string())
    found = pc.index_in(keys, value_set=names)
    return pc.take(pa.array(list(table.values()), pa.string()), found)


def _combined_numbers(values: ArrayLike) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    data_type = values.type
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type) or pa.types.is_decimal(data_type):
        return values
    if values.null_count == len(values):
        return values
    raise InvalidValuesError(len(values) - values.null_count, "numbers")


def _bound(bound: float, data_type: pa.DataType) -> pa.Scalar:
    # A cast that would change the bound (2.5 to an integer column) is refused by Arrow's safe cast.
    try:
        return pa.scalar(bound).cast(data_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ValueError(f"the coding bound {bound!r} cannot be represented as {data_type}") from error


def _is_nan(values: pa.Array) -> pa.Array:
    if pa.types.is_floating(values.type):
        return pc.is_nan(values)
    return pc.is_null(values)


def _count_true(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)
