"""The restricted ZIP3 lists of each Census vintage, as REGULATORY.md gives them, loaded from data files."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from airflow_phi_guard.deid import zip3
from airflow_phi_guard.deid.zip3 import restricted_prefixes, zip3_table
from airflow_phi_guard.policy.models import Zip3Vintage

# The lists of REGULATORY.md, "The ZIP3 rule": population at most 20,000 in the vintage's Census.
PUBLISHED = {
    Zip3Vintage.CENSUS_2000: "036 059 063 102 203 556 692 790 821 823 830 831 878 879 884 890 893",
    Zip3Vintage.CENSUS_2010: "036 059 102 203 205 369 556 692 821 823 878 879 884 893",
    Zip3Vintage.CENSUS_2020: "036 059 102 202 203 204 205 369 556 692 753 772 821 823 878 879 884 893",
}


@pytest.mark.parametrize(("vintage", "prefixes", "count"), [
    (Zip3Vintage.CENSUS_2000, PUBLISHED[Zip3Vintage.CENSUS_2000], 17),
    (Zip3Vintage.CENSUS_2010, PUBLISHED[Zip3Vintage.CENSUS_2010], 14),
    (Zip3Vintage.CENSUS_2020, PUBLISHED[Zip3Vintage.CENSUS_2020], 18),
])  # fmt: skip
def test_each_vintage_is_the_published_list(vintage, prefixes, count):
    assert restricted_prefixes(vintage) == frozenset(prefixes.split())
    assert len(restricted_prefixes(vintage)) == count


@pytest.mark.parametrize(
    ("prefix", "restricted_in"),
    [
        ("692", {"census-2000", "census-2010", "census-2020"}),  # Synthea's ZIP 69210, in every vintage
        ("036", {"census-2000", "census-2010", "census-2020"}),
        ("790", {"census-2000"}),  # restricted in 2000 only
        ("063", {"census-2000"}),
        ("205", {"census-2010", "census-2020"}),  # not in 2000
        ("202", {"census-2020"}),  # restricted in 2020 only
        ("772", {"census-2020"}),
        ("685", set()),  # Lincoln, Nebraska: never restricted
    ],
)
def test_a_prefix_is_restricted_only_in_its_vintages(prefix, restricted_in):
    assert {
        vintage.value for vintage in Zip3Vintage if prefix in restricted_prefixes(vintage)
    } == restricted_in


def test_a_vintage_can_be_named_by_its_policy_value():
    assert restricted_prefixes("census-2010") == restricted_prefixes(Zip3Vintage.CENSUS_2010)


def test_an_unknown_vintage_is_refused():
    with pytest.raises(ValueError, match="census-1990"):
        restricted_prefixes("census-1990")


@pytest.mark.parametrize("vintage", list(Zip3Vintage))
def test_every_table_is_a_data_file_naming_its_source(vintage):
    file = resources.files("airflow_phi_guard.deid").joinpath("data", f"zip3-{vintage.value}.json")
    document = json.loads(file.read_text(encoding="utf-8"))

    assert document["vintage"] == vintage.value
    assert document["source"]
    assert zip3_table(vintage).source == document["source"]
    assert (
        vintage.value in resources.files("airflow_phi_guard.deid").joinpath("data", "SOURCES.md").read_text()
    )


def test_a_table_that_lost_a_prefix_is_refused(monkeypatch):
    # A shortened list would keep prefixes that must become 000, so the loader checks the count.
    monkeypatch.setitem(zip3.EXPECTED_PREFIX_COUNTS, Zip3Vintage.CENSUS_2020, 19)
    zip3_table.cache_clear()
    try:
        with pytest.raises(ValueError, match="18 distinct prefixes where the published list has 19"):
            zip3_table(Zip3Vintage.CENSUS_2020)
    finally:
        monkeypatch.undo()
        zip3_table.cache_clear()
