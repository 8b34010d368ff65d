"""Detection of Safe Harbor identifiers inside the values of text columns: vectorised candidates, validated.

A column's name can look innocent while its values carry PHI (an SSN typed into a note, an address in an
observation's ``VALUE``), so kept text columns are scanned as well. Each :class:`ValueDetector` is an RE2
pattern that ``pyarrow.compute.match_substring_regex`` runs over a whole array at once, plus, where a
format has one, a validator (SSN area, calendar date, Luhn, VIN check digit...) that runs in Python on the
few values whose text matched, never on every row.

One scan of a column takes three steps:

1. **Distinct values.** The rows of a chunk are counted per distinct value (``value_counts``) before any
   pattern runs, so a value repeated on many rows (a description, a date) is matched and validated once
   and weighted by its rows. A dictionary-encoded column is counted through its indices.
2. **Hints.** Each built-in detector has a hint: a short pattern that every text its pattern matches also
   matches (``@`` for an email, five digits after letters for a ZIP). The hints of an identifier's
   detectors, joined, pick the values worth its detectors' passes, and each detector's own hint picks the
   values its pattern runs on. Short hints cost little to compile and to run; all patterns joined into one
   alternation would cost more than running them one by one, since its automaton outgrows RE2's memory.
   Where a column has few distinct values, hints are searched in Python with patterns compiled once,
   because RE2 compiles a pattern on every call. A detector without a hint (one declared by a policy,
   such as :func:`mrn_detector`) runs on every distinct value.
3. **Detectors.** A detector without a validator or excluded context is decided by its pattern alone. For
   the others, ``extract_regex`` takes each value's first match (which also says which values match), and
   the validator judges each distinct matched text once (a million timestamps hold a few thousand dates).
   Only the rare values that may hold more (a rejected first match followed by another, a match after an
   excluded context such as "fax:") are re-read in Python, every match of them tried. A built-in
   detector left with few candidate values decides them all in Python, every match tried, for less than
   RE2 takes to compile its pattern (:data:`_FEW_VALUES`, :data:`_PYTHON_UP_TO`).

The scanner reports numbers of rows per detector and confidence, never a value. Each detector knows its
false-positive traps, which its comment names: digit runs of codes (SNOMED CT, LOINC) and amounts of money,
UUIDs, timestamps, lab units and short alphanumeric codes (``A1c``, ``H1``) are no identifiers here.

The patterns are written in the subset that RE2 and Python's ``re`` read alike (ASCII classes rather than
``\\d`` or ``\\b``, scoped flags such as ``(?i:...)``, no named groups), because a value may be decided by
either engine; the tests hold both to the same answer on every text of the repository.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import cached_property, lru_cache

import pyarrow as pa
import pyarrow.compute as pc

from airflow_phi_guard.arrow_types import holds_text
from airflow_phi_guard.phi.identifiers import (
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
    SafeHarborIdentifier,
)

log = logging.getLogger(__name__)


class Confidence(StrEnum):
    """How sure a detector is that a match is the identifier: ordered ``LOW < MEDIUM < HIGH``."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """0 for low, 1 for medium, 2 for high."""
        return _RANKS[self]

    # A StrEnum compares as text, where "high" < "low"; confidences compare by rank instead.
    def __lt__(self, other: object) -> bool:
        return self.rank < Confidence(other).rank if isinstance(other, str) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.rank <= Confidence(other).rank if isinstance(other, str) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.rank > Confidence(other).rank if isinstance(other, str) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.rank >= Confidence(other).rank if isinstance(other, str) else NotImplemented


_RANKS = {Confidence.LOW: 0, Confidence.MEDIUM: 1, Confidence.HIGH: 2}


@dataclass(frozen=True)
class ValueDetector:
    """One pattern that reveals an identifier in a value, with the validator of its format if it has one.

    :param name: a stable id for reports and tests, e.g. ``"ssn"``, ``"nanp-phone"``, ``"luhn-card"``.
    :param identifier: the Safe Harbor identifier a match reveals.
    :param pattern: an RE2 regular expression (in the subset Python's ``re`` reads the same way) that
        matches somewhere inside a value holding the identifier: the candidate finder.
    :param confidence: the confidence of a match that its validator accepts (or of any match, without one).
    :param validator: takes the text of one match (the whole match, boundary characters included) and says
        whether it is the identifier; runs only on values that the pattern matched.
    :param confidence_if_invalid: the confidence of a match that the validator rejects, or None to drop it;
        an SSN of a never-issued area is still reported, at low confidence.
    :param excluded_before: a regular expression (RE2 and Python alike) for text that, right before a
        match, makes it no finding of this detector: a telephone number after "fax:" is a fax number. The
        match's own leading separator counts as text before it; :data:`CONTEXT_CHARACTERS` characters are
        looked at.
    :param description: what the detector finds and the traps it avoids, for reviewers and reports.
    """

    name: str
    identifier: SafeHarborIdentifier
    pattern: str
    confidence: Confidence = Confidence.HIGH
    validator: Callable[[str], bool] | None = None
    confidence_if_invalid: Confidence | None = None
    excluded_before: str | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # Construction is where a bad detector is refused, not halfway through a scan: a detector that
        # could not run would let its identifier through.
        if not isinstance(self.identifier, SafeHarborIdentifier):
            raise TypeError(f"detector {self.name!r}: identifier must be a SafeHarborIdentifier")
        for label, value in (
            ("confidence", self.confidence),
            ("confidence_if_invalid", self.confidence_if_invalid),
        ):
            if value is not None and not isinstance(value, Confidence):
                raise TypeError(f"detector {self.name!r}: {label} must be a Confidence")
        if self.validator is None and self.confidence_if_invalid is not None:
            raise ValueError(f"detector {self.name!r}: confidence_if_invalid needs a validator")
        for pattern in (self.pattern, self.excluded_before):
            try:
                if pattern is not None:
                    # RE2 compiles the pattern even for a null; an array made from a Python list would
                    # import pandas (pyarrow checks for its types), and this runs when the module is imported.
                    pc.match_substring_regex(pa.nulls(1, pa.string()), pattern)
            except pa.ArrowInvalid as error:
                raise ValueError(
                    f"detector {self.name!r}: a pattern is not a valid RE2 expression"
                ) from error
        try:
            _ = (self.compiled, self.compiled_excluded_before)
        except re.error as error:
            raise ValueError(
                f"detector {self.name!r}: a pattern is not valid for Python's re ({error.msg}); write it "
                "in the subset that RE2 and Python read alike"
            ) from error

    @property
    def regex_decides(self) -> bool:
        """Whether the pattern alone decides a finding (no validator, no excluded context).

        Only such a detector's pattern can serve unchanged where no Python runs on the matches, as in a
        Great Expectations regular-expression check; the others' patterns find a superset of their matches.
        """
        return self.validator is None and self.excluded_before is None

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        """The pattern compiled for Python's ``re``, to re-find matches in the few candidate values."""
        return re.compile(self.pattern)

    @cached_property
    def compiled_excluded_before(self) -> re.Pattern[str] | None:
        """The excluded context compiled for Python's ``re``, or None."""
        return re.compile(f"(?:{self.excluded_before})$") if self.excluded_before is not None else None


@dataclass(frozen=True)
class DetectorHit:
    """How many values of a column one detector found at one confidence. Never a value.

    :param detector: the :attr:`ValueDetector.name`.
    :param identifier: the identifier the detector reveals.
    :param confidence: the confidence of these matches.
    :param matches: the number of values (rows) whose best match for this detector has this confidence;
        so the hits of one detector add up to the values it found.
    """

    detector: str
    identifier: SafeHarborIdentifier
    confidence: Confidence
    matches: int


#: How many characters before a match an excluded context is looked for in.
CONTEXT_CHARACTERS = 32


# Building blocks of the patterns. RE2 has no lookaround, so "not preceded by" and "not followed by" are
# alternatives with the start or end of the text that take part in the match.
_NOT_AFTER_DIGIT = r"(?:^|[^0-9])"
_NOT_BEFORE_DIGIT = r"(?:$|[^0-9])"
_NOT_AFTER_ALNUM = r"(?:^|[^0-9A-Za-z])"
_NOT_BEFORE_ALNUM = r"(?:$|[^0-9A-Za-z])"
_NOT_AFTER_LETTER = r"(?:^|[^A-Za-z])"
# Between a context word and its value: spaces and one optional ":", "#", "=" or ".".
_CONTEXT_GAP = r"[ \t]*[:#=.]?[ \t]*"
# The number markers that follow a context word: "no.", "number", "#"...
_NUMBER_MARKER = r"(?:[ \t]*(?:number|num\.?|nbr\.?|no\.?|nr\.?|#))"
# An identifier written after a context word: four or more letters, digits and hyphens, one of them a digit
# ("#2" or "7s" is no number), written as the four places the first digit can take, since RE2 has no
# lookahead.
_CODE = "[A-Za-z0-9-]"
_CODE_WITH_DIGIT = (
    f"(?:[0-9]{_CODE}{{3,}}|{_CODE}[0-9]{_CODE}{{2,}}|{_CODE}{{2}}[0-9]{_CODE}+|{_CODE}{{3,}}[0-9]{_CODE}*)"
)


def _context_code(context: str) -> str:
    """A code of :data:`_CODE_WITH_DIGIT` right after ``context`` (case-insensitive) and its separator."""
    return _NOT_AFTER_LETTER + f"(?i:{context})" + _CONTEXT_GAP + _CODE_WITH_DIGIT


_NOT_DIGITS = re.compile("[^0-9]+")
# Compiled once: validators run on thousands of distinct matches per column.
_NUMBERS = re.compile("[0-9]+")
_WORDS = re.compile("[A-Za-z]+")


def _digits(match: str) -> str:
    return _NOT_DIGITS.sub("", match)


# --- G: social security numbers ---------------------------------------------------------------------------


# The structures the SSA issues, as patterns, so that the common separated form is judged in Arrow.
_SSN_AREA = r"(?:00[1-9]|0[1-9][0-9]|[1-578][0-9]{2}|6[0-57-9][0-9]|66[0-57-9])"
_SSN_GROUP = r"(?:0[1-9]|[1-9][0-9])"
_SSN_SERIAL = r"(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"


def _is_issued_ssn(match: str) -> bool:
    """Whether the SSN's structure is one the SSA issues: area not 000, 666 or 900-999, group not 00,
    serial not 0000 (SSA, "Social Security Number Randomization", 2011). Other SSNs are still reported, at
    low confidence: test data (every Synthea SSN starts with 999) and typing errors are PHI all the same.
    """
    digits = _digits(match)[-9:]
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


# --- D, E: NANP telephone and fax numbers -----------------------------------------------------------------

# An area code or exchange of the North American Numbering Plan: first digit 2-9, and not an N11 service
# code (211, 311, ... 911).
_NXX = r"[2-9](?:[02-9][0-9]|1[02-9])"
_NANP_SEPARATED = rf"(?:\+?1[ .-]?)?(?:\({_NXX}\)[ .-]?|{_NXX}[ .-]){_NXX}[ .-][0-9]{{4}}"
_NANP_UNSEPARATED = rf"(?:\+?1)?{_NXX}{_NXX}[0-9]{{4}}"
_FAX_CONTEXT = r"fax|facsimile|telefax"
# The text before a number that makes it a fax number, up to the number's own optional +1 or 1.
_FAX_BEFORE = (
    r"(?i:(?:^|[^a-z])(?:fax|facsimile|telefax)(?:[ \t]*(?:number|num|no|nr|#))?[ \t.:#=]*(?:\+?1[ .-]?)?)"
)

# --- C: dates -----------------------------------------------------------------------------------------------

# Years of living memory and of records: 1800 to 2199, so that four-digit codes and counts are not years.
_YEAR = r"(?:1[89][0-9]{2}|2[01][0-9]{2})"
_MONTH_2 = r"(?:0[1-9]|1[0-2])"
_DAY_2 = r"(?:0[1-9]|[12][0-9]|3[01])"
_DAY_OR_MONTH = r"(?:0?[1-9]|[12][0-9]|3[01])"
_DAY = r"(?:0?[1-9]|[12][0-9]|3[01])(?i:st|nd|rd|th)?"
_MONTH_NAME = (
    r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
            ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
            ("oct", "october"), ("nov", "november"), ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}  # fmt: skip


def _is_calendar_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _is_iso_date(match: str) -> bool:
    """Whether ``yyyy-mm-dd`` is a day of the calendar: 2023-02-29 and 2024-04-31 are not."""
    year, month, day = (int(number) for number in _NUMBERS.findall(match)[:3])
    return _is_calendar_date(year, month, day)


# The days of each month in a common year, by month number (0 is no month).
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_ISO_PARTS = r"(?P<year>[0-9]{4})[-/.](?P<month>[0-9]{2})[-/.](?P<day>[0-9]{2})"


def _are_iso_dates(matches: pa.Array) -> pa.Array:
    """:func:`_is_iso_date` over an array of matches at once, in Arrow: a column of timestamps holds
    thousands of distinct dates, each of which would otherwise cost a Python call.

    Arrow's ``strptime`` rolls a day the month lacks over into the next month, so the calendar is checked
    by arithmetic: month 1-12, day 1 up to the month's length, February's 29th in leap years only.
    """
    parts = pc.extract_regex(matches, _ISO_PARTS)
    year, month, day = (pc.cast(pc.struct_field(parts, [index]), pa.int32()) for index in range(3))
    real_month = pc.and_(pc.greater_equal(month, 1), pc.less_equal(month, 12))
    days = pc.take(pa.array(_DAYS_IN_MONTH, pa.int32()), pc.if_else(real_month, month, 0))
    # Arrow has no modulo: a year is divisible by n when dividing and multiplying back gives it again.
    divisible = {n: pc.equal(pc.multiply(pc.divide(year, n), n), year) for n in (4, 100, 400)}
    leap = pc.or_(pc.and_(divisible[4], pc.invert(divisible[100])), divisible[400])
    days = pc.add(days, pc.cast(pc.and_(leap, pc.equal(month, 2)), pa.int32()))
    in_calendar = pc.and_(real_month, pc.and_(pc.greater_equal(day, 1), pc.less_equal(day, days)))
    return pc.fill_null(in_calendar, False)


def _is_numeric_date(match: str) -> bool:
    """Whether ``a/b/yyyy`` is a day as month/day (US) or as day/month (most other countries)."""
    first, second, year = (int(number) for number in _NUMBERS.findall(match)[:3])
    return _is_calendar_date(year, first, second) or _is_calendar_date(year, second, first)


def _is_short_year_date(match: str) -> bool:
    """Whether ``m/d/yy`` is a day in either century and either order (29/02 needs a leap year)."""
    first, second, short_year = (int(number) for number in _NUMBERS.findall(match)[:3])
    return any(
        _is_calendar_date(century + short_year, month, day)
        for century in (1900, 2000)
        for month, day in ((first, second), (second, first))
    )


def _is_written_date(match: str) -> bool:
    """Whether ``March 3, 2021`` or ``3 Mar 2021`` names a day of the calendar."""
    months = [_MONTHS[word.lower()] for word in _WORDS.findall(match) if word.lower() in _MONTHS]
    numbers = _NUMBERS.findall(match)
    days = [int(number) for number in numbers if len(number) <= 2]
    years = [int(number) for number in numbers if len(number) == 4]
    return bool(months and days and years) and _is_calendar_date(years[0], months[0], days[0])


# --- B: ZIP codes and street addresses ----------------------------------------------------------------------

_STATE_CODES = (
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY", "PR", "VI", "GU", "AS", "MP", "AA", "AE", "AP",
)  # fmt: skip
_STATE_NAMES = (
    "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|District of Columbia|Florida|"
    "Georgia|Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|"
    "Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|"
    "New York|North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|"
    "South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|Wisconsin|Wyoming|"
    "Puerto Rico|Guam"
)
_ZIP = r"[0-9]{5}(?:-[0-9]{4})?"

# Street suffixes of USPS Publication 28 (appendix C1), in full and in their common abbreviations, and the
# British and Australian ones that generated data (Synthea) also writes (Esplanade, Quay, Wynd...).
_STREET_SUFFIXES = (
    "approach|bay|circus|esplanade|gate|grange|highland|parade|pathway|promenade|quay|trailer|vale|wharf|wynd|"
    "alley|annex|arcade|avenue|bayou|beach|bend|bluff|bottom|boulevard|branch|bridge|brook|burg|bypass|camp|"
    "canyon|cape|causeway|center|centre|circle|cliff|club|common|corner|course|court|cove|creek|crescent|crest|"
    "crossing|crossroad|curve|dale|dam|divide|drive|estate|expressway|extension|fall|ferry|field|flat|ford|"
    "forest|forge|fork|fort|freeway|garden|gateway|glen|green|grove|harbor|haven|heights|highway|hill|hollow|"
    "inlet|island|isle|junction|key|knoll|lake|land|landing|lane|light|loaf|lock|lodge|loop|mall|manor|meadow|"
    "mews|mill|mission|motorway|mount|mountain|neck|orchard|oval|overpass|park|parkway|pass|passage|path|pike|"
    "pine|place|plain|plaza|point|port|prairie|radial|ramp|ranch|rapid|rest|ridge|river|road|route|row|rue|"
    "run|shoal|shore|skyway|spring|spur|square|station|stravenue|stream|street|summit|terrace|throughway|"
    "trace|track|trafficway|trail|tunnel|turnpike|underpass|union|valley|via|viaduct|view|village|ville|"
    "vista|walk|wall|way|well|"
    "st|ave|av|rd|blvd|dr|ln|ct|cir|pl|pkwy|hwy|ter|trl|sq|ctr|cres|expy|fwy|plz|pt|rte|xing"
)
_STREET_WORD = r"(?:[A-Z][A-Za-z'-]*|[0-9]{1,3}(?i:st|nd|rd|th))"
# Suffixes that are also words of clinical text after a number and a capitalised word ("Level 1 Trauma
# Center", "2 Mechanical Falls", "3 Bed Rest", "2 Lateral Views"): without a unit after them (Apt 79), an
# address with one of them is reported at low confidence.
_CLINICAL_SUFFIXES = frozenset({
    "approach", "bay", "center", "centre", "ctr", "course", "fall", "field", "junction", "key", "land",
    "light", "lock", "loop", "pass", "path", "pathway", "plain", "point", "port", "rest", "row", "run",
    "spring", "station", "trace", "track", "union", "view", "walk", "well",
})  # fmt: skip
_UNIT = (
    r"(?:[ \t]*,?[ \t]+(?i:apt|apartment|unit|suite|ste|bldg|building|floor|fl|room|rm)"
    r"[.]?[ \t]*#?[ \t]*[0-9A-Za-z-]+)"
)
_UNIT_AT_END = re.compile(_UNIT + r"[^0-9A-Za-z]?$")


def _is_unambiguous_address(match: str) -> bool:
    """Whether the street suffix cannot be a clinical word, or a unit number follows it (``Apt 79``)."""
    if _UNIT_AT_END.search(match):
        return True
    suffix = _WORDS.findall(match)[-1].lower()
    return suffix not in _CLINICAL_SUFFIXES and suffix.removesuffix("s") not in _CLINICAL_SUFFIXES


# --- L: vehicle identification numbers --------------------------------------------------------------------

_VIN_CHARACTER = "A-HJ-NPR-Z0-9"  # I, O and Q are never used (ISO 3779)
_VIN_VALUES = dict(
    zip("0123456789", range(10), strict=True),
    A=1, B=2, C=3, D=4, E=5, F=6, G=7, H=8, J=1, K=2, L=3, M=4, N=5, P=7, R=9, S=2, T=3, U=4, V=5, W=6, X=7,
    Y=8, Z=9,
)  # fmt: skip
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def _vin_with_a_letter() -> str:
    """Seventeen VIN characters with at least one letter and a check digit (0-9 or X) in position 9.

    RE2 cannot say "at least one letter" with lookahead, so the pattern lists where the first letter is:
    all digits before it, any VIN character after it. A run of 17 digits (a long SNOMED CT code) is no VIN.
    """
    letter, any_character = "[A-HJ-NPR-Z]", f"[{_VIN_CHARACTER}]"
    alternatives = []
    for first_letter in range(17):
        positions = []
        for position in range(17):
            if position < first_letter:
                positions.append("[0-9]")
            elif position == first_letter:
                positions.append("X" if position == 8 else letter)
            else:
                positions.append("[0-9X]" if position == 8 else any_character)
        alternatives.append("".join(_collapse(positions)))
    return "(?:" + "|".join(alternatives) + ")"


def _collapse(classes: list[str]) -> Iterator[str]:
    """Write runs of the same character class once with a count: ``[0-9][0-9]`` as ``[0-9]{2}``."""
    index = 0
    while index < len(classes):
        run = 1
        while index + run < len(classes) and classes[index + run] == classes[index]:
            run += 1
        yield classes[index] + (f"{{{run}}}" if run > 1 else "")
        index += run


# A licence plate: up to eight letters and digits, at least one a digit, in one or two groups.
_PLATE = (
    "(?:[A-Za-z0-9]{0,7}[0-9][A-Za-z0-9]{0,7}"
    "|[A-Za-z0-9]{1,4}[ -][A-Za-z0-9]{0,3}[0-9][A-Za-z0-9]{0,3}"
    "|[A-Za-z0-9]{0,3}[0-9][A-Za-z0-9]{0,3}[ -][A-Za-z0-9]{1,4})"
)


def _has_vin_check_digit(match: str) -> bool:
    """Whether position 9 of the VIN is its check digit (49 CFR 565.15): weighted sum modulo 11, 10 as X."""
    vin = re.search(f"[{_VIN_CHARACTER}]{{17}}", match)
    if vin is None:
        return False
    total = sum(
        _VIN_VALUES[character] * weight for character, weight in zip(vin.group(0), _VIN_WEIGHTS, strict=True)
    )
    remainder = total % 11
    return vin.group(0)[8] == ("X" if remainder == 10 else str(remainder))


# --- J: payment card numbers --------------------------------------------------------------------------------

# Issuer prefixes (the first four digits) and the lengths each network issues, from the networks' public
# ranges: Visa, Mastercard (51-55 and 2221-2720), American Express, Discover, Diners Club, JCB, UnionPay.
_CARD_PREFIXES_16_19 = (
    r"4[0-9]{3}|5[1-5][0-9]{2}|222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720"
    r"|6011|64[4-9][0-9]|65[0-9]{2}|35(?:2[89]|[3-8][0-9])|62[0-9]{2}|3[689][0-9]{2}|30[0-5][0-9]"
)
_CARD_LAYOUTS = (
    # 16 digits in four groups of four, separated by spaces or hyphens or not at all; 19 digits likewise.
    rf"(?:{_CARD_PREFIXES_16_19})(?:[ -]?[0-9]{{4}}){{3}}(?:[ -]?[0-9]{{3}})?",
    # American Express: 15 digits from 34 or 37, as 4-6-5.
    r"3[47][0-9]{2}[ -]?[0-9]{6}[ -]?[0-9]{5}",
    # Diners Club: 14 digits from 300-305, 36, 38 or 39, as 4-6-4.
    r"3(?:0[0-5]|[689][0-9])[0-9][ -]?[0-9]{6}[ -]?[0-9]{4}",
    # Visa's older 13 digits, unseparated.
    r"4[0-9]{12}",
)
_CARD_LENGTHS = (
    # (prefix pattern, lengths): checked after Luhn, since the candidate layouts overlap.
    (re.compile(r"4"), {13, 16, 19}),
    (re.compile(r"5[1-5]|222[1-9]|22[3-9]|2[3-6]|27[01]|2720"), {16}),
    (re.compile(r"3[47]"), {15}),
    (re.compile(r"6011|64[4-9]|65|62"), {16, 19}),
    (re.compile(r"35(?:2[89]|[3-8])"), {16, 19}),
    (re.compile(r"3(?:0[0-5]|[689])"), {14, 16, 19}),
)


def _passes_luhn(digits: str) -> bool:
    total = 0
    for position, character in enumerate(reversed(digits)):
        value = int(character)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_payment_card(match: str) -> bool:
    """Whether the number passes Luhn with a network's prefix and length, and is no SNOMED CT identifier.

    SNOMED CT extension identifiers run to 18 digits and would pass Luhn one time in ten; they carry their
    own check digit (Verhoeff) and partition, so an unseparated number that is a valid SNOMED CT id is a
    code, not a card. A real card is mistaken for one about 6 times in 1,000 (1/10 Verhoeff, 6/100
    partitions), and then only when written without separators.
    """
    digits = _digits(match)
    if not _passes_luhn(digits):
        return False
    if not any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_LENGTHS):
        return False
    written_unseparated = re.search(r"[0-9]{13}", match) is not None
    return not (written_unseparated and _is_snomed_identifier(digits))


_VERHOEFF_MULTIPLY = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)  # fmt: skip


def _verhoeff_permutations() -> tuple[tuple[int, ...], ...]:
    """Verhoeff's permutations: p(0) is the identity, p(1) the one below, p(i) is p(1) applied i times."""
    step = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)
    permutations = [tuple(range(10))]
    while len(permutations) < 8:
        permutations.append(tuple(permutations[-1][digit] for digit in step))
    return tuple(permutations)


_VERHOEFF_PERMUTE = _verhoeff_permutations()
# Partition identifiers of SNOMED CT: concept, description, relationship, in the short (core) and the long
# (extension) format.
_SNOMED_PARTITIONS = frozenset({"00", "01", "02", "10", "11", "12"})


def _is_snomed_identifier(digits: str) -> bool:
    """Whether a digit string is a valid SNOMED CT identifier: 6 to 18 digits, a known partition, and a
    Verhoeff check digit (SNOMED CT Technical Implementation Guide, "SCTID")."""
    if not 6 <= len(digits) <= 18 or digits[0] == "0" or digits[-3:-1] not in _SNOMED_PARTITIONS:
        return False
    check = 0
    for position, character in enumerate(reversed(digits)):
        check = _VERHOEFF_MULTIPLY[check][_VERHOEFF_PERMUTE[position % 8][int(character)]]
    return check == 0


# --- O: IP addresses ---------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_HEXTET = r"[0-9A-Fa-f]{1,4}"
_IPV6 = (
    rf"(?:(?:{_HEXTET}:){{7}}{_HEXTET}"  # eight groups
    # compressed with ::, a group written on at least one side of it (a bare "::" is a separator)
    rf"|(?:{_HEXTET}:){{0,6}}{_HEXTET}::(?:(?:{_HEXTET}:){{0,6}}{_HEXTET})?"
    rf"|::(?:{_HEXTET}:){{0,6}}{_HEXTET}"
    rf"|(?:{_HEXTET}:){{6}}{_IPV4}"  # IPv4 in the last 32 bits
    rf"|(?:(?:{_HEXTET}:){{0,5}}{_HEXTET})?::(?:(?:{_HEXTET}:){{0,4}}{_HEXTET}:)?{_IPV4})"
)


def _is_ipv6(match: str) -> bool:
    """Whether the match is an IPv6 address with at least two groups written, one of 3 hex digits or more.

    A bare ``::`` or ``1::2`` is valid IPv6 but, in text, more likely a separator or a ratio.
    """
    written = re.search(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*", match)
    candidate = written.group(0).rstrip(".") if written else ""
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    groups = [group for group in re.split(r"[:.]", candidate) if group]
    return len(groups) >= 2 and any(len(group) >= 3 for group in groups)


# --- M: MAC addresses --------------------------------------------------------------------------------------

_HEX_PAIR = "[0-9A-Fa-f]{2}"
_MAC = (
    rf"(?:{_HEX_PAIR}(?::{_HEX_PAIR}){{5}}|{_HEX_PAIR}(?:-{_HEX_PAIR}){{5}}"
    r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})"
)
_NOT_NEXT_TO_HEX = ("(?:^|[^0-9A-Za-z:.-])", "(?:$|[^0-9A-Za-z:-]|[.](?:$|[^0-9A-Za-z]))")

# --- I: Medicare beneficiary identifiers -------------------------------------------------------------------

# CMS's MBI format: 11 characters, C A AN N A AN N A A N N, where C is 1-9, N a digit, A a letter other
# than S, L, O, I, B and Z, and AN either; often written with hyphens after the 4th and 7th characters.
_MBI_LETTER = "[AC-HJKMNP-RT-Y]"
_MBI_ALNUM = "[AC-HJKMNP-RT-Y0-9]"
_MBI = f"[1-9]{_MBI_LETTER}{_MBI_ALNUM}[0-9]-?{_MBI_LETTER}{_MBI_ALNUM}[0-9]-?{_MBI_LETTER}{{2}}[0-9]{{2}}"


# The detectors, by identifier. Each comment names the traps the pattern and validator avoid.
DETECTORS: tuple[ValueDetector, ...] = (
    # B: a ZIP or ZIP+4 after a State (", NE 68102" with the comma, or "Nebraska 68102") or after the
    # words ZIP or postal code. A bare five-digit number is a code, a count or an amount as often as a ZIP,
    # and two capitals alone are words as often as States ("ID 12345" is a patient id).
    ValueDetector(
        "zip-code",
        B,
        r"(?:,[ \t]*(?:"
        + "|".join(_STATE_CODES)
        + r")|"
        + _NOT_AFTER_LETTER
        + f"(?i:{_STATE_NAMES})"
        + r"|"
        + _NOT_AFTER_LETTER
        + r"(?i:zip(?:[ \t]?code)?|postal[ \t]?code|post[ \t]?code))"
        + r"[ \t]*[:#=]?[ \t]*"
        + _ZIP
        + _NOT_BEFORE_DIGIT,
        description="ZIP or ZIP+4 after a State or the word ZIP; a bare five-digit number is not one",
    ),
    # B: a street address: a house number, one to three capitalised words (or an ordinal such as 5th) and a
    # USPS street suffix, as in "406 Kohler Camp", "974 Kunde Burg Apt 79" or "12 Main St". Clinical text
    # puts numbers before units (2 ML, 24 HR) and lower-case words; the suffixes that are also clinical
    # words ("Level 1 Trauma Center") give low confidence unless a unit follows.
    ValueDetector(
        "street-address",
        B,
        _NOT_AFTER_ALNUM
        + r"[0-9]{1,6}[A-Z]?[ \t]+(?:"
        + _STREET_WORD
        + r"[ \t]+){1,3}"
        + f"(?i:{_STREET_SUFFIXES})"
        + r"s?[.]?"
        + _UNIT
        + "?"
        + _NOT_BEFORE_ALNUM,
        confidence=Confidence.MEDIUM,
        validator=_is_unambiguous_address,
        confidence_if_invalid=Confidence.LOW,
        description="house number, capitalised street name and a USPS street suffix",
    ),
    # B: a post office box.
    ValueDetector(
        "po-box",
        B,
        _NOT_AFTER_LETTER + r"(?i:p\.?[ \t]?o\.?[ \t]?box|post[ \t]office[ \t]box)[ \t]*#?[ \t]*[0-9]+",
        description="a post office box number",
    ),
    # C: an ISO 8601 date (2021-03-04, also with / or .), alone or opening a timestamp. The month must be
    # 01-12, so 2024-13-15 is no candidate; the validator rejects days the calendar lacks (2023-02-29).
    ValueDetector(
        "date-iso",
        C,
        _NOT_AFTER_DIGIT
        + f"{_YEAR}(?:-{_MONTH_2}-{_DAY_2}|/{_MONTH_2}/{_DAY_2}|[.]{_MONTH_2}[.]{_DAY_2})"
        + _NOT_BEFORE_DIGIT,
        validator=_is_iso_date,
        description="yyyy-mm-dd with a real month and day",
    ),
    # C: a numeric date with a four-digit year, month first (US) or day first: 3/4/2021, 04-03-2021,
    # 04.03.2021. Version numbers and scores do not end in a year of 1800-2199 after two day-sized numbers.
    ValueDetector(
        "date-numeric",
        C,
        r"(?:^|[^0-9./-])"
        + f"(?:{_DAY_OR_MONTH}/{_DAY_OR_MONTH}/{_YEAR}|{_DAY_OR_MONTH}-{_DAY_OR_MONTH}-{_YEAR}"
        + f"|{_DAY_OR_MONTH}[.]{_DAY_OR_MONTH}[.]{_YEAR})"
        + _NOT_BEFORE_DIGIT,
        validator=_is_numeric_date,
        description="m/d/yyyy or d/m/yyyy with a real calendar day",
    ),
    # C: m/d/yy, as notes write dates; at medium confidence, since two slashes between small numbers can
    # be a ratio. Blood pressure (120/80) has one slash and is no candidate.
    ValueDetector(
        "date-short-year",
        C,
        r"(?:^|[^0-9./-])" + f"{_DAY_OR_MONTH}/{_DAY_OR_MONTH}/[0-9]{{2}}" + r"(?:$|[^0-9/])",
        confidence=Confidence.MEDIUM,
        validator=_is_short_year_date,
        description="m/d/yy with a real calendar day",
    ),
    # C: a written date, month first ("March 3, 2021", "Mar. 3rd 2021") or day first ("3 Mar 2021",
    # "03-MAR-2021"). "may" needs a day and a year after it to be a candidate.
    ValueDetector(
        "date-written",
        C,
        _NOT_AFTER_ALNUM
        + f"(?:{_MONTH_NAME}[.]?[ \t]+{_DAY},?[ \t]+{_YEAR}"
        + f"|{_DAY}[ \t-]+(?:of[ \t]+)?{_MONTH_NAME}[.]?,?[ \t-]+{_YEAR})"
        + _NOT_BEFORE_DIGIT,
        validator=_is_written_date,
        description="a month name with a day and a year, in either order",
    ),
    # C: a month and a year ("March 2021"): the month is an element of a date that Safe Harbor removes.
    # Medium confidence, since a month name can be a word ("may 2021" rarely is).
    ValueDetector(
        "date-month-year",
        C,
        _NOT_AFTER_ALNUM + f"{_MONTH_NAME}[.]?,?[ \t]+{_YEAR}" + _NOT_BEFORE_DIGIT,
        confidence=Confidence.MEDIUM,
        description="a month name and a year",
    ),
    # D: a NANP number with separators: area code and exchange start with 2-9 and are not N11 service
    # codes, an optional +1 or 1 before. Separators are required so that ten-digit codes do not match; a
    # UUID's hex groups, LOINC codes (4548-4) and patterns such as ddd-343-\dddd have no three-three-four
    # digit groups; a number after "fax" is left to the fax detector.
    ValueDetector(
        "nanp-phone",
        D,
        _NOT_AFTER_ALNUM + _NANP_SEPARATED + _NOT_BEFORE_DIGIT,
        excluded_before=_FAX_BEFORE,
        description="NANP telephone number with separators (not N11, not in a UUID)",
    ),
    # D: the same number in E.164 form, where the leading +1 makes the unseparated digits unambiguous.
    ValueDetector(
        "nanp-phone-e164",
        D,
        _NOT_AFTER_ALNUM + rf"\+1{_NXX}{_NXX}[0-9]{{4}}" + _NOT_BEFORE_DIGIT,
        excluded_before=_FAX_BEFORE,
        description="NANP telephone number as +1 and ten digits",
    ),
    # D: ten unseparated digits only after a telephone word ("phone: 4025550199"); without one they are
    # a code as often as a number.
    ValueDetector(
        "nanp-phone-context",
        D,
        _NOT_AFTER_LETTER
        + r"(?i:phone|telephone|tel|cell|mobile|ph)"
        + _NUMBER_MARKER
        + "?"
        + _CONTEXT_GAP
        + _NANP_UNSEPARATED
        + _NOT_BEFORE_DIGIT,
        confidence=Confidence.MEDIUM,
        description="ten NANP digits after a telephone word",
    ),
    # E: a NANP number, separated or not, after "fax" or "facsimile".
    ValueDetector(
        "fax-number",
        E,
        _NOT_AFTER_LETTER
        + f"(?i:{_FAX_CONTEXT})"
        + _NUMBER_MARKER
        + "?"
        + _CONTEXT_GAP
        + f"(?:{_NANP_SEPARATED}|{_NANP_UNSEPARATED})"
        + _NOT_BEFORE_DIGIT,
        description="a telephone number after the word fax",
    ),
    # F: local part, @, and a domain with at least one dot and a top-level domain of letters; user@localhost
    # is no address of a person.
    ValueDetector(
        "email",
        F,
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        description="an email address",
    ),
    # G: three, two and four digits separated by hyphens or by spaces (the same separator twice), of a
    # structure the SSA issues. Nine digits without separators (a SNOMED CT code such as 314529007) are no
    # candidate; a LOINC code (4548-4) has the wrong groups.
    ValueDetector(
        "ssn",
        G,
        _NOT_AFTER_DIGIT
        + f"{_SSN_AREA}(?:-{_SSN_GROUP}-|[ ]{_SSN_GROUP}[ ]){_SSN_SERIAL}"
        + _NOT_BEFORE_DIGIT,
        description="ddd-dd-dddd of an issued structure",
    ),
    # G: the same form with a structure the SSA never issues (area 000, 666 or 900-999, group 00, serial
    # 0000): still reported, at low confidence. Every Synthea SSN starts with 999; test data and typing
    # errors in a note are PHI all the same.
    ValueDetector(
        "ssn-never-issued",
        G,
        _NOT_AFTER_DIGIT
        + r"(?:(?:000|666|9[0-9]{2})(?:-[0-9]{2}-|[ ][0-9]{2}[ ])[0-9]{4}"
        + r"|[0-9]{3}(?:-00-|[ ]00[ ])[0-9]{4}|[0-9]{3}(?:-[0-9]{2}-|[ ][0-9]{2}[ ])0000)"
        + _NOT_BEFORE_DIGIT,
        confidence=Confidence.LOW,
        description="ddd-dd-dddd of a never-issued area, group or serial",
    ),
    # G: nine unseparated digits only after "SSN" or "social security".
    ValueDetector(
        "ssn-context",
        G,
        _NOT_AFTER_LETTER
        + r"(?i:ssn|ss#|social[ \t]security|soc[ \t]?sec)"
        + _NUMBER_MARKER
        + "?"
        + _CONTEXT_GAP
        + r"[0-9]{9}"
        + _NOT_BEFORE_DIGIT,
        validator=_is_issued_ssn,
        confidence_if_invalid=Confidence.LOW,
        description="nine digits after the word SSN",
    ),
    # H: a medical record number after "MRN" or "medical record number"; a policy declares its own
    # formats with mrn_detector.
    ValueDetector(
        "mrn-context",
        H,
        _context_code(
            r"mrn|medical[ \t]record(?:[ \t]?(?:number|num|no|#))?|med[ \t]?rec(?:[ \t]?(?:no|#))?"
            r"|chart[ \t]?(?:number|no|#)"
        ),
        confidence=Confidence.MEDIUM,
        description="a code after MRN or medical record number",
    ),
    # I: a Medicare beneficiary identifier (CMS format, 11 characters). Letters S, L, O, I, B, Z never occur,
    # and digits and letters sit at fixed positions, so words and ordinary codes do not fit.
    ValueDetector(
        "medicare-mbi",
        I,
        _NOT_AFTER_ALNUM + _MBI + _NOT_BEFORE_ALNUM,
        description="Medicare beneficiary identifier (CMS MBI format)",
    ),
    # I: a member, subscriber or policy number after its words.
    ValueDetector(
        "health-plan-context",
        I,
        _context_code(
            r"(?:member|subscriber|insurance|medicaid|medicare|beneficiary)[ \t]?(?:id|number|no|#)"
            r"|policy[ \t]?(?:number|no|#)"
        ),
        confidence=Confidence.MEDIUM,
        description="a code after member, subscriber, policy or beneficiary number",
    ),
    # J: a payment card number: a network's prefix and length, passing Luhn, grouped by four or not at all.
    # Long SNOMED CT codes that pass Luhn by chance are recognised by their own check digit; amounts have
    # a decimal point, lists of codes have other separators.
    ValueDetector(
        "luhn-card",
        J,
        _NOT_AFTER_DIGIT + "(?:" + "|".join(_CARD_LAYOUTS) + ")" + _NOT_BEFORE_DIGIT,
        validator=_is_payment_card,
        description="payment card number passing Luhn, with a network prefix and length",
    ),
    # J: an account number after "account number", "acct #" and the like.
    ValueDetector(
        "account-context",
        J,
        _context_code(r"acc(?:oun)?t" + _NUMBER_MARKER + r"|acct|a/c[ \t]?(?:no|#)|iban"),
        confidence=Confidence.MEDIUM,
        description="a code after account number",
    ),
    # K: a licence or certificate number, only after its words ("DL#", "license no.", "driver's license",
    # "passport"): short codes such as A1c, H1 or B43, and "mg/dL", have no such context.
    ValueDetector(
        "license-context",
        K,
        r"(?:(?:^|[^A-Za-z/])DL(?:[ \t]*(?:#|(?i:no\.?|number|num\.?))|:)"
        + _CONTEXT_GAP
        + _CODE_WITH_DIGIT
        + r"|"
        + _context_code(
            r"driver'?s?[ \t]?licen[cs]e"
            + _NUMBER_MARKER
            + r"?|licen[cs]e"
            + _NUMBER_MARKER
            + r"|lic"
            + _NUMBER_MARKER
            + r"|passport"
            + _NUMBER_MARKER
            + r"?|certificate"
            + _NUMBER_MARKER
        )
        + ")",
        confidence=Confidence.MEDIUM,
        description="a code after DL#, license no., driver's license, passport or certificate no.",
    ),
    # L: a vehicle identification number with its check digit (North American VINs, 49 CFR 565.15). At
    # least one letter is required, so 17-digit SNOMED CT codes are no candidate.
    ValueDetector(
        "vin",
        L,
        _NOT_AFTER_ALNUM + _vin_with_a_letter() + _NOT_BEFORE_ALNUM,
        validator=_has_vin_check_digit,
        description="17-character VIN with a valid check digit",
    ),
    # L: a VIN after the word VIN, check digit or not (VINs outside North America need none), or a licence
    # plate after "license plate" or "plate no.".
    ValueDetector(
        "vehicle-context",
        L,
        _NOT_AFTER_LETTER
        + r"(?:(?i:vin)"
        + _NUMBER_MARKER
        + "?"
        + _CONTEXT_GAP
        + f"[{_VIN_CHARACTER}]{{17}}"
        + r"|(?i:licen[cs]e[ \t]?plate|plate"
        + _NUMBER_MARKER
        + r"|tag"
        + _NUMBER_MARKER
        + r")"
        + _CONTEXT_GAP
        + _PLATE
        + ")"
        + _NOT_BEFORE_ALNUM,
        confidence=Confidence.MEDIUM,
        description="a VIN after the word VIN, or a plate after license plate",
    ),
    # M: a MAC address (six hex pairs with colons or hyphens, or Cisco's three dotted groups of four).
    # Times (07:13:55) have three groups; IPv6 addresses have groups of up to four digits.
    ValueDetector(
        "mac-address",
        M,
        _NOT_NEXT_TO_HEX[0] + _MAC + _NOT_NEXT_TO_HEX[1],
        description="MAC address",
    ),
    # M: a device serial number after "serial no.", "S/N", "device id", "IMEI" or "UDI", or a GS1 device
    # identifier "(01)" and 14 digits. "serial 7s" (a mental status test) and "serial troponins" have no
    # number marker.
    ValueDetector(
        "device-serial",
        M,
        "(?:"
        + _context_code(
            r"serial" + _NUMBER_MARKER + r"|serial:|s/n|sn[:#]|device[ \t]?(?:id|identifier|serial)"
            r"|imei|meid|udi"
        )
        + r"|\(01\)[0-9]{14})",
        confidence=Confidence.MEDIUM,
        description="a serial number after S/N, serial no., device id, IMEI or UDI",
    ),
    # N: a web URL: a scheme and a host, or a host starting www. An email address is not a URL: the part
    # after @ is not preceded by www. or a scheme.
    ValueDetector(
        "url",
        N,
        r"(?i:(?:https?|ftp|sftp)://[A-Za-z0-9][A-Za-z0-9.-]*)"
        + r"|(?:^|[^A-Za-z0-9@._%+-])(?i:www)\.[A-Za-z0-9-]+\.[A-Za-z]{2,}",
        description="URL with a scheme, or a www. host",
    ),
    # O: an IPv4 address, octets 0-255, not part of a longer dotted run (OIDs such as 2.16.840.1.113883,
    # version numbers with five parts).
    ValueDetector(
        "ipv4",
        O,
        r"(?:^|[^0-9A-Za-z.])" + _IPV4 + r"(?:$|[^0-9A-Za-z.]|[.](?:$|[^0-9A-Za-z]))",
        description="IPv4 address with octets 0-255",
    ),
    # O: an IPv6 address, full or compressed; times (07:13:55) and MAC addresses have too few groups and no
    # "::".
    ValueDetector(
        "ipv6",
        O,
        r"(?:^|[^0-9A-Za-z:.])" + _IPV6 + r"(?:$|[^0-9A-Za-z:.]|[.](?:$|[^0-9A-Za-z]))",
        validator=_is_ipv6,
        description="IPv6 address",
    ),
)

#: The detectors above, whose patterns the tests hold to read alike in RE2 and in Python's re.
_BUILT_IN = frozenset(DETECTORS)


# A cheap necessary condition of each built-in detector's pattern: a short regular expression that every
# text the pattern matches also matches ("[0-9]{5}" for a ZIP, "@" for an email). It only prunes work: a
# value that fails a detector's hint cannot match the detector, so the detector's (much costlier) pattern
# is not run on it. Hints are keyed by the exact pattern they were written for, so a detector whose
# pattern changes, or one declared by a policy (mrn_detector), has no hint and runs on every value.
_HINT_BY_NAME = {
    "zip-code": r"(?:[A-Za-z]{3}|,[ \t]*[A-Z]{2})[ \t]*[:#=]?[ \t]*[0-9]{5}",
    "street-address": r"[0-9][A-Z]?[ \t]+[A-Z0-9][A-Za-z0-9'-]*[ \t]+[A-Za-z]",
    "po-box": r"(?i:box)",
    "date-iso": r"(?:1[89]|2[01])[0-9]{2}[./-][01][0-9]",
    "date-numeric": r"[0-9][./-][0-9]{1,2}[./-][0-9]{4}",
    "date-short-year": r"[0-9]/[0-9]{1,2}/[0-9]{2}",
    "date-written": r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
    "date-month-year": r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
    "nanp-phone": r"[0-9][ .)-]{1,2}[0-9]{3}[ .-][0-9]{4}",
    "nanp-phone-e164": r"[+]1[0-9]{10}",
    "nanp-phone-context": r"(?i:ph|tel|cell|mobile)",
    "fax-number": r"(?i:fax|facsimile)",
    "email": r"@",
    "ssn": r"[0-9]{3}[ -][0-9]{2}[ -][0-9]{4}",
    "ssn-never-issued": r"[0-9]{3}[ -][0-9]{2}[ -][0-9]{4}",
    "ssn-context": r"(?i:ss|soc)",
    "mrn-context": r"(?i:mrn|med|chart)",
    "medicare-mbi": r"[1-9][AC-HJKMNP-RT-Y][0-9AC-HJKMNP-RT-Y][0-9]-?[AC-HJKMNP-RT-Y]",
    "health-plan-context": r"(?i:member|subscriber|insurance|medicaid|medicare|beneficiary|policy)",
    "luhn-card": r"[0-9](?:[ -]?[0-9]){12}",
    "account-context": r"(?i:acc|a/c|iban)",
    "license-context": r"DL|(?i:lic|passport|certificate)",
    "vin": rf"[{_VIN_CHARACTER}]{{17}}",
    "vehicle-context": r"(?i:vin|plate|tag)",
    "mac-address": r"(?:[0-9A-Fa-f]{2}[:-]){3}|[0-9A-Fa-f]{4}[.][0-9A-Fa-f]{4}[.]",
    "device-serial": r"(?i:serial|s/n|sn|device|imei|meid|udi)|\(01\)",
    "url": r"://|(?i:www)[.]",
    "ipv4": r"[0-9][.][0-9]{1,3}[.][0-9]",
    "ipv6": r"::|(?:[0-9A-Fa-f]{1,4}:){6}",
}
_HINTS: dict[str, str] = {
    detector.pattern: _HINT_BY_NAME[detector.name] for detector in DETECTORS if detector.name in _HINT_BY_NAME
}

#: Built-in detectors whose values are read in Python up to a larger count than :data:`_FEW_VALUES`: RE2
#: builds their automata slowly on every call (the street-address pattern's case-folded list of USPS
#: suffixes takes a millisecond) and extracts their matches slowly, so a few hundred values cost less in
#: Python's re. Measured on the labelled benchmark set (``make benchmark``), candidate values and
#: milliseconds in Arrow and in Python: street-address 346, 14 and 8; luhn-card 197, 3.0 and 2.0; vin
#: 155, 2.0 and 1.4. The results are the same on both paths (the detector tests run each value on both).
_PYTHON_UP_TO = {"street-address": 1024, "luhn-card": 256, "vin": 256}


def mrn_detector(pattern: str, *, name: str = "mrn") -> ValueDetector:
    """A detector of medical record numbers in the format a policy declares (identifier H).

    The pattern is wrapped so that it cannot match inside a longer run of letters and digits: ``[0-9]{8}``
    finds ``12345678`` in "MRN 12345678" but not in a 12-digit code. Anchors in the pattern keep their
    meaning (``^...$`` matches whole values only).

    :param pattern: an RE2 regular expression for one MRN, e.g. ``MRN[0-9]{7}``.
    :param name: the detector's name in reports.
    :raises ValueError: when the pattern is not valid RE2 or Python, or matches the empty text (it would
        find an MRN in every value).
    """
    wrapped = f"{_NOT_AFTER_ALNUM}(?:{pattern}){_NOT_BEFORE_ALNUM}"
    detector = ValueDetector(name, H, wrapped, description="a policy-declared MRN format")
    if detector.compiled.fullmatch("") is not None:
        raise ValueError(f"detector {name!r}: the MRN pattern matches the empty text")
    return detector


def detect_column(
    values: pa.Array | pa.ChunkedArray, detectors: Sequence[ValueDetector] = DETECTORS
) -> tuple[DetectorHit, ...]:
    """How many values of a text column each detector finds, per confidence.

    Each value counts once per detector, at the best confidence of its matches: a note holding "SSN
    999493983" and "SSN 123456789" counts for ``ssn-context`` at high confidence only. A detector with a
    validator and a fallback (:attr:`ValueDetector.confidence_if_invalid`) can give two hits for one
    column, its values split between them, so that the hits of a detector add up to the values it found.
    Nulls never match; arrays that are not text (numbers, dates, binary) give nothing.

    :param values: a string, large string, string view or dictionary-of-string array, or a chunked one.
    :param detectors: the detectors to run; :data:`DETECTORS` by default.
    :returns: the hits with at least one match, in the order of ``detectors``, higher confidence first.
    """
    detectors = tuple(detectors)
    matches: dict[tuple[int, Confidence], int] = {}
    for weights, found in _scan(values, detectors):
        for key, hits in found.items():
            matches[key] = matches.get(key, 0) + _rows_of(weights, hits)

    ordered = sorted(matches.items(), key=lambda item: (item[0][0], -item[0][1].rank))
    return tuple(
        DetectorHit(detectors[position].name, detectors[position].identifier, confidence, count)
        for (position, confidence), count in ordered
        if count
    )


def scan_values(
    values: pa.Array | pa.ChunkedArray, detectors: Sequence[ValueDetector] = DETECTORS
) -> dict[SafeHarborIdentifier, int]:
    """How many values of a text column contain each identifier that the detectors find, at any confidence.

    A value counts once per identifier however many matches or detectors it has. Nulls are no finding;
    arrays that are not text return an empty result.

    :param values: a string, large string, string view or dictionary-of-string array, or a chunked one.
    :param detectors: the detectors to run; :data:`DETECTORS` by default.
    :returns: the identifiers found, each with the number of values that contain it; absent means zero.
    """
    detectors = tuple(detectors)
    counts: dict[SafeHarborIdentifier, int] = {}
    for weights, found in _scan(values, detectors):
        by_identifier: dict[SafeHarborIdentifier, pa.Array] = {}
        for (position, _confidence), hits in found.items():
            identifier = detectors[position].identifier
            previous = by_identifier.get(identifier)
            by_identifier[identifier] = hits if previous is None else pc.or_(previous, hits)
        for identifier, hits in by_identifier.items():
            counts[identifier] = counts.get(identifier, 0) + _rows_of(weights, hits)
    return {identifier: count for identifier in SafeHarborIdentifier if (count := counts.get(identifier, 0))}


# The scan. A "mask" below is a boolean array over the distinct candidate values of one chunk; "weights"
# says how many rows each candidate stands for.


def _rows_of(weights: pa.Array, mask: pa.Array) -> int:
    return int(pc.sum(weights.filter(mask)).as_py() or 0)


def _scan(
    values: pa.Array | pa.ChunkedArray, detectors: tuple[ValueDetector, ...]
) -> Iterator[tuple[pa.Array, dict[tuple[int, Confidence], pa.Array]]]:
    """Per chunk and identifier: the weights of the distinct values looked at, and a mask over them per
    (detector position, confidence). An identifier's masks are all over the same values."""
    if not holds_text(values.type) or not detectors:
        return
    plan = _plan(detectors)
    for chunk in values.chunks if isinstance(values, pa.ChunkedArray) else [values]:
        distinct, weights = _distinct_values(chunk)
        if len(distinct):
            yield from _detect(distinct, weights, detectors, plan)


@lru_cache(maxsize=64)
def _any_pattern(patterns: tuple[str, ...]) -> str:
    return "|".join(f"(?:{pattern})" for pattern in patterns)


@dataclass(frozen=True)
class _Group:
    """The detectors of one identifier: their positions, each one's hint (None: no hint), and the hint of
    any of them (None when one has none: every value is looked at)."""

    positions: tuple[int, ...]
    hints: tuple[str | None, ...]
    hint: str | None
    identifier: SafeHarborIdentifier | None = None


@lru_cache(maxsize=64)
def _plan(detectors: tuple[ValueDetector, ...]) -> tuple[_Group, ...]:
    """The detectors by identifier, with their hints.

    Cached per detector tuple, since a scan runs once per column and chunk with the same detectors.
    """
    by_identifier: dict[SafeHarborIdentifier, list[int]] = {}
    for position, detector in enumerate(detectors):
        by_identifier.setdefault(detector.identifier, []).append(position)
    groups = []
    for positions in by_identifier.values():
        hints = tuple(_HINTS.get(detectors[position].pattern) for position in positions)
        hint = None if None in hints else _any_pattern(tuple(dict.fromkeys(hints)))
        groups.append(_Group(tuple(positions), hints, hint, detectors[positions[0]].identifier))
    return tuple(groups)


#: Identifiers whose hints are searched in one pass first, then each on the few values that pass: their
#: hints are words and short literals, whose joined automaton stays small, and few values hold any of
#: them, so one pass over every value and a few over the survivors cost less than one pass each.
_SHARED_HINT_PASS = frozenset({E, F, I, K, N})


@lru_cache(maxsize=64)
def _shared_hint(groups: tuple[_Group, ...]) -> str | None:
    """The hint of any group of :data:`_SHARED_HINT_PASS`, or None when fewer than two have a hint."""
    hints = tuple(group.hint for group in groups if group.hint is not None and _shares_hint_pass(group))
    return _any_pattern(hints) if len(hints) > 1 else None


def _shares_hint_pass(group: _Group) -> bool:
    return group.identifier in _SHARED_HINT_PASS


def _distinct_values(chunk: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The distinct non-null values of a chunk, and how many rows hold each.

    Counting comes first, so that a value repeated on many rows (a code, a date, a description) is matched
    once, whatever the length of the column. A dictionary-encoded column is counted through its indices.
    """
    if pa.types.is_dictionary(chunk.type):
        dictionary = _as_plain_text(chunk.dictionary)
        rows_per_entry = pc.value_counts(chunk.indices.drop_null())
        entries = dictionary.take(rows_per_entry.field("values"))
        keep = pc.is_valid(entries)
        return entries.filter(keep), rows_per_entry.field("counts").filter(keep)

    rows_per_value = pc.value_counts(_as_plain_text(chunk).drop_null())
    return rows_per_value.field("values"), rows_per_value.field("counts")


def _as_plain_text(values: pa.Array) -> pa.Array:
    return values.cast(pa.string()) if pa.types.is_string_view(values.type) else values


def _detect(
    distinct: pa.Array, weights: pa.Array, detectors: tuple[ValueDetector, ...], groups: tuple[_Group, ...]
) -> Iterator[tuple[pa.Array, dict[tuple[int, Confidence], pa.Array]]]:
    """Per identifier, the weights of the values its detectors looked at and a mask over them per
    (detector position, confidence).

    Two sieves, each cheap where the next is costly: an identifier's hints joined pick the values that its
    detectors may match, and each detector's own hint picks those that its pattern runs on. A column of
    dates is so never matched by every phone and card pattern, and a column of descriptions by none. Short
    hints are cheaper to compile and to run than all patterns joined into one alternation, whose automaton
    grows too large for RE2 to keep; and the masks stay over the values each sieve kept, rather than being
    widened back to every value.
    """
    shared = _shared_hint(groups)
    shared_values, shared_weights = distinct, weights
    if shared is not None:
        # The values that some group of the shared pass may match: each of those groups' hints then runs
        # on them alone, and picks the same values as over all values.
        in_shared = _hinted(distinct, shared)
        shared_values, shared_weights = distinct.filter(in_shared), weights.filter(in_shared)

    def detect_group(group: _Group) -> tuple[pa.Array, dict[tuple[int, Confidence], pa.Array]] | None:
        looked_at, looked_at_weights = distinct, weights
        if group.hint is not None:
            sieved, sieved_weights = distinct, weights
            if shared is not None and _shares_hint_pass(group):
                sieved, sieved_weights = shared_values, shared_weights
            in_group = _hinted(sieved, group.hint)
            looked_at, looked_at_weights = sieved.filter(in_group), sieved_weights.filter(in_group)
        found = _detect_group(looked_at, detectors, group) if len(looked_at) else {}
        return (looked_at_weights, found) if found else None

    # The identifiers are independent, and Arrow's kernels release the GIL: over many values they run on
    # every core. The results come back in the order of the groups, whichever finished first.
    pool = _pool() if len(distinct) >= _PARALLEL_FROM else None
    for result in pool.map(detect_group, groups) if pool is not None else map(detect_group, groups):
        if result is not None:
            yield result


#: From this many distinct values, the identifiers of a chunk are detected on several threads; below it,
#: handing work to threads costs more than it saves.
_PARALLEL_FROM = 4096

_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor | None:
    """A thread pool of this process (a forked child, such as an Airflow task, makes its own), or None on
    a single core."""
    global _POOL
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(4, cores)
    if workers < 2:
        return None
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="phi-guard-scan"))
    return _POOL[1]


def _select(candidates: pa.Array, hint: str | None) -> tuple[pa.Array | None, pa.Array]:
    """The mask of the candidates that match ``hint`` (None: all of them, no hint), and those candidates."""
    if hint is None:
        return None, candidates
    mask = _hinted(candidates, hint)
    return mask, candidates.filter(mask)


#: Up to this many distinct values, hints are matched and detectors run in Python: RE2 compiles a pattern
#: on every call (the street-address pattern takes a millisecond), which costs more than searching a few
#: dozen values with a pattern that Python's re compiled once.
_FEW_VALUES = 64


def _hinted(values: pa.Array, hint: str) -> pa.Array:
    """Which values match ``hint``. A hint is a plain pattern (classes, literals, counts, scoped ``(?i:)``)
    that both engines read alike; where Python's re folds case more widely, it lets more values through,
    never fewer, and a hint only prunes."""
    if len(values) > _FEW_VALUES:
        return pc.match_substring_regex(values, hint)
    search = _compiled_hint(hint).search
    return pa.array(
        [text is not None and search(text) is not None for text in values.to_pylist()], pa.bool_()
    )


@lru_cache(maxsize=256)
def _compiled_hint(hint: str) -> re.Pattern[str]:
    return re.compile(hint)


def _widened(selection: pa.Array | None, mask: pa.Array) -> pa.Array:
    return mask if selection is None else _put_back(selection, mask)


def _detect_group(
    looked_at: pa.Array, detectors: tuple[ValueDetector, ...], group: _Group
) -> dict[tuple[int, Confidence], pa.Array]:
    """The masks over ``looked_at`` of one identifier's detectors: each runs on the values that its own
    hint lets through (the group's hint, already matched, is not matched again)."""
    found: dict[tuple[int, Confidence], pa.Array] = {}
    by_hint: dict[str, tuple[pa.Array | None, pa.Array]] = {}
    for position, hint in zip(group.positions, group.hints, strict=True):
        if hint is None or hint == group.hint:
            in_hint, texts = None, looked_at
        else:
            if hint not in by_hint:
                by_hint[hint] = _select(looked_at, hint)
            in_hint, texts = by_hint[hint]
        if not len(texts):
            continue
        for key, mask in _detect_one(texts, detectors[position], position).items():
            found[key] = _widened(in_hint, mask)
    return found


def _detect_one(
    texts: pa.Array, detector: ValueDetector, position: int
) -> dict[tuple[int, Confidence], pa.Array]:
    """The masks per confidence of one detector over ``texts``.

    A detector that its pattern decides needs one match per value. For the others, each value's first
    match is extracted straight away (a value without one gets a null), which also says which values
    match: one pass of the pattern, not two.
    """
    if detector in _BUILT_IN and len(texts) <= _PYTHON_UP_TO.get(detector.name, _FEW_VALUES):
        return _detect_in_python(texts, detector, position)
    if detector.regex_decides:
        matched = pc.match_substring_regex(texts, detector.pattern)
        return {(position, detector.confidence): matched} if pc.any(matched).as_py() else {}
    first = _first_match(detector, texts)
    matched = pc.match_substring_regex(texts, detector.pattern) if first is None else pc.is_valid(first)
    if not pc.any(matched).as_py():
        return {}
    if first is not None:
        first = first.filter(matched)
    verdicts = _verdicts(detector, texts.filter(matched), first)
    return {(position, confidence): _put_back(matched, mask) for confidence, mask in verdicts.items()}


def _detect_in_python(
    texts: pa.Array, detector: ValueDetector, position: int
) -> dict[tuple[int, Confidence], pa.Array]:
    """:func:`_detect_one` for a few values, all in Python: each value decided by every match of the
    pattern compiled once, as the values that Arrow leaves undecided are.

    Only for the built-in detectors, whose patterns the tests hold to read alike in RE2 and Python's re
    over every text of the repository. A declared pattern (a policy's MRN format) always meets RE2 first,
    so that a value the two engines read differently is still reported (see :func:`_best_confidence`).
    """
    best = [_best_confidence(detector, text, matched_by_re2=False) for text in texts.to_pylist()]
    return {
        (position, confidence): pa.array([verdict is confidence for verdict in best], pa.bool_())
        for confidence in {verdict for verdict in best if verdict is not None}
    }


def _put_back(selection: pa.Array, mask: pa.Array) -> pa.Array:
    """A mask over the selected values, widened to all values (False where not selected)."""
    return pc.replace_with_mask(selection, selection, mask)


def _verdicts(
    detector: ValueDetector, texts: pa.Array, first: pa.Array | None = None
) -> dict[Confidence, pa.Array]:
    """A mask per confidence over ``texts`` (all matched by the detector's pattern): each value's best.

    The first match of each value is judged once per distinct matched text, in Arrow except for the
    validator, which sees each distinct text once: a column of timestamps has a few thousand distinct
    dates, whatever its length. Values that may hold more are re-read in Python, every match tried: those
    whose first match is below the detector's confidence and that hold another match, and those where an
    excluded context may stand before a match.
    """
    size = len(texts)
    if first is None:
        first = _first_match(detector, texts)
    if first is None:
        return _python_verdicts(detector, texts, _constant(size, True), {})

    verdicts: dict[Confidence, pa.Array] = {}
    if detector.validator is None:
        verdicts[detector.confidence] = _constant(size, True)
    elif (judge := _VECTORISED_VALIDATORS.get(detector.validator)) is not None:
        valid = judge(first)
        for confidence, mask in ((detector.confidence, valid), (detector.confidence_if_invalid, None)):
            if confidence is not None:
                mask = pc.invert(valid) if mask is None else mask
                if pc.any(mask).as_py():
                    verdicts[confidence] = mask
    else:
        by_text = {text: _validated(detector, text) for text in pc.unique(first).to_pylist()}
        for confidence in {verdict for verdict in by_text.values() if verdict is not None}:
            accepted = pa.array(
                [text for text, verdict in by_text.items() if verdict is confidence], pa.string()
            )
            verdicts[confidence] = pc.is_in(first, value_set=accepted)

    reread = _constant(size, False)
    if detector.excluded_before is not None:
        reread = pc.match_substring_regex(texts, f"(?:{detector.excluded_before})(?:{detector.pattern})")
    undecided = pc.invert(verdicts.get(detector.confidence, _constant(size, False)))
    undecided_count = pc.sum(undecided).as_py() or 0
    if undecided_count <= _FEW_VALUES:
        # Python reads a few values again for less than RE2 takes to compile the pattern twice below.
        reread = pc.or_(reread, undecided)
    else:
        # Another match after the first: the first replaced by a space, which keeps the boundary it held.
        rest = pc.replace_substring_regex(texts.filter(undecided), detector.pattern, " ", max_replacements=1)
        reread = pc.or_(reread, _put_back(undecided, pc.match_substring_regex(rest, detector.pattern)))
    if pc.any(reread).as_py():
        return _python_verdicts(detector, texts, reread, verdicts)
    return verdicts


#: Validators that have an Arrow form judging a whole array of matches at once, to the same verdicts.
_VECTORISED_VALIDATORS: dict[Callable[[str], bool], Callable[[pa.Array], pa.Array]] = {
    _is_iso_date: _are_iso_dates,
}


def _constant(size: int, value: bool) -> pa.Array:
    nulls = pa.nulls(size)
    return pc.is_null(nulls) if value else pc.is_valid(nulls)


def _first_match(detector: ValueDetector, texts: pa.Array) -> pa.Array | None:
    """The text of each value's first match, or None when the pattern has groups of its own, which
    ``extract_regex`` refuses."""
    try:
        extracted = pc.extract_regex(texts, f"(?P<match>{detector.pattern})")
    except pa.ArrowInvalid:
        return None
    return pc.struct_field(extracted, [0])


def _validated(detector: ValueDetector, match: str) -> Confidence | None:
    if detector.validator is None:
        return detector.confidence
    return detector.confidence if detector.validator(match) else detector.confidence_if_invalid


def _python_verdicts(
    detector: ValueDetector, texts: pa.Array, reread: pa.Array, verdicts: dict[Confidence, pa.Array]
) -> dict[Confidence, pa.Array]:
    """``verdicts`` with the values selected by ``reread`` decided again in Python."""
    best = [_best_confidence(detector, text) for text in texts.filter(reread).to_pylist()]
    result = {}
    for confidence in {detector.confidence, detector.confidence_if_invalid, Confidence.LOW} - {None}:
        previous = verdicts.get(confidence, _constant(len(texts), False))
        mask = pc.replace_with_mask(previous, reread, pa.array([verdict is confidence for verdict in best]))
        if pc.any(mask).as_py():
            result[confidence] = mask
    return result


def _best_confidence(detector: ValueDetector, text: str, *, matched_by_re2: bool = True) -> Confidence | None:
    """The best confidence at which ``detector`` finds something in ``text``, every match tried, overlapping
    ones too, since a rejected match may hide a valid one that starts inside it.

    :param matched_by_re2: whether RE2 found a match in ``text``, so that Python's re finding none means
        the two engines disagree; False for a value that only Python's re reads.
    """
    best: Confidence | None = None
    found_any = False
    for match in _every_match(detector.compiled, text):
        found_any = True
        if _excluded_by_context(detector, text, match):
            continue
        verdict = _validated(detector, match.group(0))
        if verdict is not None and (best is None or verdict > best):
            best = verdict
        if best is detector.confidence:
            break
    if not found_any and matched_by_re2:
        # RE2 matched where Python's re finds nothing: the two engines read the pattern differently. The
        # value is reported at low confidence rather than let through unseen.
        log.warning(
            "detector %s: RE2 and Python's re disagree on a value; reported at low confidence", detector.name
        )
        best = Confidence.LOW
    return best


def _every_match(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    start = 0
    while (match := pattern.search(text, start)) is not None:
        yield match
        start = match.start() + 1


def _excluded_by_context(detector: ValueDetector, text: str, match: re.Match[str]) -> bool:
    excluded = detector.compiled_excluded_before
    if excluded is None:
        return False
    # The match may open with the separator that stands for its boundary; it belongs to the context.
    matched = match.group(0)
    separator = len(matched) - len(matched.lstrip(" \t:#=.,;"))
    before = text[max(0, match.start() - CONTEXT_CHARACTERS) : match.start() + separator]
    return excluded.search(before) is not None
