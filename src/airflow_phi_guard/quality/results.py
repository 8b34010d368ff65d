"""Value-free validation results: the result format asked of Great Expectations, and the scrubber behind it.

Great Expectations records what it finds in three places: the result it returns, the validation results
store, and the Data Docs rendered from it. Its result formats differ in how much of the data they copy
there, for map expectations such as the regex and range checks of a suite:

- ``BASIC`` adds counts and ``partial_unexpected_list``: up to 20 failing cell values, verbatim;
- ``SUMMARY`` (the GX default) adds ``partial_unexpected_counts`` (failing values with their counts) and
  ``partial_unexpected_index_list`` (row indexes);
- ``COMPLETE`` adds ``unexpected_list`` (every failing value) and ``unexpected_index_list``;
- ``BOOLEAN_ONLY`` keeps only ``success``.

The product asks for :data:`RESULT_FORMAT`: ``SUMMARY`` with ``exclude_unexpected_values``, no partial
list (``partial_unexpected_count`` 0), no unexpected rows and no index query. A map expectation then
reports its counts only: values, missing values and unexpected values, which a reviewer needs to see
that a regex check skipped nulls. An aggregate expectation would still report its ``observed_value``,
which for a column minimum is a cell value, and a GX release may add fields; so every result passes
:func:`scrub_result`, an allowlist of count fields, before anything is stored again or rendered. The
product's own expectations report counts, column names and identifier letters by construction.

:func:`find_planted_values` is the proof a test (or an operator in doubt) runs: it reads every file under
the folders GX wrote and names the files that hold any of the given canary values.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from numbers import Number
from pathlib import Path
from typing import Any

#: The result format of every validation: counts only (see the module's docstring).
RESULT_FORMAT: Mapping[str, Any] = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": 0,
    "exclude_unexpected_values": True,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}

#: The fields of an expectation result that hold counts or shares of rows, never a value.
COUNT_FIELDS = frozenset(
    {
        "element_count",
        "missing_count",
        "missing_percent",
        "unexpected_count",
        "unexpected_percent",
        "unexpected_percent_total",
        "unexpected_percent_nonmissing",
    }
)


def scrub_result(
    result: Mapping[str, Any] | None, *, product_expectation: bool, names: Collection[str]
) -> tuple[dict[str, Any], int]:
    """The value-free part of one expectation result, and how many fields had to be removed.

    Kept: the :data:`COUNT_FIELDS` holding numbers; ``observed_value`` when it is a number; and, for the
    product's own expectations only, ``details``, whose leaves must be numbers, booleans, or lists of
    column names from ``names`` (dictionary keys are the product's own: letters, reasons, bases).

    :param result: the ``result`` of a GX ``ExpectationValidationResult``.
    :param product_expectation: whether the expectation is one of the product's.
    :param names: the column names that may appear (the dataset's and the suite's).
    """
    kept: dict[str, Any] = {}
    removed = 0
    for key, value in (result or {}).items():
        if key in COUNT_FIELDS or key == "observed_value":
            if value is None or _is_number(value):
                kept[key] = value
                continue
        elif key == "details" and product_expectation:
            details, dropped = _scrub_details(value, names)
            kept[key] = details
            removed += dropped
            continue
        removed += 1
    return kept, removed


def find_planted_values(
    folders: Iterable[str | os.PathLike[str]], needles: Iterable[str]
) -> dict[str, list[str]]:
    """The files under ``folders`` that contain any of ``needles``, each with the needles found in it.

    Every file is read as bytes, whatever its kind (JSON results, HTML pages, YAML configuration), and
    each needle is searched as UTF-8 and as its JSON and HTML escapes, so that an escaped copy counts too.

    :param folders: the folders to search, e.g. the GX project and the Data Docs site.
    :param needles: canary values planted in the validated data.
    """
    variants = {needle: _encodings(needle) for needle in needles}
    found: dict[str, list[str]] = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if not path.is_file():
                continue
            content = path.read_bytes()
            hits = [needle for needle, forms in variants.items() if any(form in content for form in forms)]
            if hits:
                found[str(path)] = hits
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, Number)


def _scrub_details(value: Any, names: Collection[str]) -> tuple[Any, int]:
    if value is None or _is_number(value):
        return value, 0
    if isinstance(value, Mapping):
        kept: dict[str, Any] = {}
        removed = 0
        for key, item in value.items():
            cleaned, dropped = _scrub_details(item, names)
            removed += dropped
            if dropped and cleaned is None:
                continue
            kept[str(key)] = cleaned
        return kept, removed
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) and item in names for item in value):
        return list(value), 0
    return None, 1


def _encodings(needle: str) -> tuple[bytes, ...]:
    import html
    import json

    forms = {needle, json.dumps(needle)[1:-1], html.escape(needle), html.escape(needle, quote=False)}
    return tuple(form.encode() for form in forms)
