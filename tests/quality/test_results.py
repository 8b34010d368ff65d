"""The scrubber of expectation results: counts and known column names stay, anything that could be a value
goes, whatever the expectation or the GX release put there."""

from __future__ import annotations

import pytest

from airflow_phi_guard.quality.results import scrub_result

CANARY = "CANARY-4711 123-45-6789"


@pytest.mark.parametrize(
    ("result", "product", "kept", "removed"),
    [
        # What GX's SUMMARY format adds beside counts: failing values, their counts, row indexes.
        (
            {
                "element_count": 4,
                "missing_count": 1,
                "unexpected_count": 1,
                "unexpected_percent": 33.3,
                "partial_unexpected_list": [CANARY],
                "partial_unexpected_counts": [{"value": CANARY, "count": 1}],
                "partial_unexpected_index_list": [2],
            },
            False,
            {"element_count": 4, "missing_count": 1, "unexpected_count": 1, "unexpected_percent": 33.3},
            3,
        ),
        # An aggregate expectation's observed value can be a cell value (a minimum of text).
        ({"observed_value": CANARY}, False, {}, 1),
        ({"observed_value": 42}, False, {"observed_value": 42}, 0),
        # details only from the product's own expectations, and only numbers and known column names.
        ({"details": {"values": [CANARY]}}, False, {}, 1),
        (
            {"details": {"extra": ["SSN"], "missing": [], "found": {"G": 2}, "scanned": True}},
            True,
            {"details": {"extra": ["SSN"], "missing": [], "found": {"G": 2}, "scanned": True}},
            0,
        ),
        ({"details": {"extra": [CANARY], "k": 3}}, True, {"details": {"k": 3}}, 1),
        ({"details": {"note": CANARY}}, True, {"details": {}}, 1),
        (None, False, {}, 0),
    ],
    ids=[
        "summary",
        "text-observed",
        "number-observed",
        "gx-details",
        "product",
        "unknown-name",
        "text",
        "none",
    ],
)
def test_only_counts_and_known_names_are_kept(result, product, kept, removed):
    assert scrub_result(result, product_expectation=product, names={"SSN", "AGE"}) == (kept, removed)
