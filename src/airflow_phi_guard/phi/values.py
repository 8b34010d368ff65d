"""Detection of Safe Harbor identifiers inside the values of a text column, vectorised over Arrow arrays.

A column's name can look innocent while its values carry PHI (an SSN typed into a note, a phone number in
a free-text field), so kept text columns are scanned as well. Each detector is an RE2 pattern run by
``pyarrow.compute.match_substring_regex`` over a whole array at once; a dictionary-encoded column is
scanned through its dictionary only. The scanner returns counts per identifier, never the values.

The patterns are tuned to stay silent on ordinary clinical extract text: SNOMED and other codes stored as
digits without separators, UUIDs, ISO 8601 dates and timestamps, and amounts of money. That is why nine
digits without separators are not an SSN here, nor ten digits a phone number: a later, validated detector
(area, group and serial ranges, confidence) may add them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from airflow_phi_guard.arrow_types import holds_text
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier


@dataclass(frozen=True)
class ValueDetector:
    """One pattern that reveals an identifier in a value.

    :param identifier: the Safe Harbor identifier a match reveals.
    :param name: a short id for the pattern, for reports and tests.
    :param pattern: an RE2 regular expression that matches somewhere inside an offending value.
    """

    identifier: SafeHarborIdentifier
    name: str
    pattern: str


# A digit may not touch a match on either side, so that longer digit runs (codes, amounts) do not match
# by their middle. RE2 has no lookaround, hence the explicit alternatives with the start and end of text.
_NO_DIGIT_BEFORE = r"(^|[^0-9])"
_NO_DIGIT_AFTER = r"($|[^0-9])"

#: The detectors that ``scan_values`` runs by default, in the order of their identifiers.
DETECTORS: tuple[ValueDetector, ...] = (
    # D: a North American Numbering Plan number: area code and exchange start with 2-9, and separators
    # are required between the groups so that ten-digit codes do not match; an optional +1 or 1 before.
    ValueDetector(
        SafeHarborIdentifier.TELEPHONE_NUMBER,
        "nanp-phone-separated",
        _NO_DIGIT_BEFORE
        + r"(\+?1[ .-]?)?(\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}"
        + _NO_DIGIT_AFTER,
    ),
    # D: the same number in E.164 form, where the leading + makes the unseparated digits unambiguous.
    ValueDetector(
        SafeHarborIdentifier.TELEPHONE_NUMBER,
        "nanp-phone-e164",
        r"\+1[2-9][0-9]{2}[2-9][0-9]{6}" + _NO_DIGIT_AFTER,
    ),
    # F: local part, @, and a domain with at least one dot and a top-level domain of letters.
    ValueDetector(
        SafeHarborIdentifier.EMAIL_ADDRESS,
        "email-address",
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    ),
    # G: three, two and four digits separated by hyphens or by spaces (the same separator twice).
    ValueDetector(
        SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER,
        "ssn-separated",
        _NO_DIGIT_BEFORE + r"[0-9]{3}(-[0-9]{2}-| [0-9]{2} )[0-9]{4}" + _NO_DIGIT_AFTER,
    ),
)


def scan_values(
    values: pa.Array | pa.ChunkedArray, detectors: tuple[ValueDetector, ...] = DETECTORS
) -> dict[SafeHarborIdentifier, int]:
    """How many values of a text column contain each identifier that the detectors find.

    A value counts once per identifier however many matches it holds. Nulls are no finding; arrays that
    are not text (numbers, dates, binary) return an empty result, since their type cannot hold these
    patterns.

    :param values: a string, large string or dictionary-of-string array, or a chunked one.
    :param detectors: the patterns to run; :data:`DETECTORS` by default.
    :returns: the identifiers found, each with the number of values that contain it; absent means zero.
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    if not holds_text(values.type):
        return {}

    counts = dict.fromkeys(SafeHarborIdentifier, 0)
    for chunk in chunks:
        for identifier, found in _findings(chunk, detectors).items():
            counts[identifier] += found
    return {identifier: found for identifier, found in counts.items() if found}


def _findings(chunk: pa.Array, detectors: tuple[ValueDetector, ...]) -> dict[SafeHarborIdentifier, int]:
    """Counts per identifier in one chunk, matching a dictionary's distinct values only once each."""
    text, indices = (chunk.dictionary, chunk.indices) if pa.types.is_dictionary(chunk.type) else (chunk, None)
    if pa.types.is_string_view(text.type):
        text = text.cast(pa.string())

    matched: dict[SafeHarborIdentifier, pa.Array] = {}
    for detector in detectors:
        hits = pc.match_substring_regex(text, detector.pattern)
        previous = matched.get(detector.identifier)
        matched[detector.identifier] = hits if previous is None else pc.or_(previous, hits)

    findings = {}
    for identifier, hits in matched.items():
        per_value = hits if indices is None else hits.take(indices)
        findings[identifier] = int(pc.sum(per_value).as_py() or 0)
    return findings
