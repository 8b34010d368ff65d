"""The restricted ZIP3 lists of each Census vintage, as REGULATORY.md gives them, loaded from data files."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest

from airflow_phi_guard.deid import zip3
from airflow_phi_guard.deid.zip3 import restricted_prefixes, vintage_record, zip3_state_table, zip3_table
from airflow_phi_guard.policy.models import DeidentificationPolicy, Zip3Vintage

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


@pytest.mark.parametrize("vintage", list(Zip3Vintage))
def test_the_vintage_record_names_the_list_and_its_file(vintage):
    file = resources.files("airflow_phi_guard.deid").joinpath("data", f"zip3-{vintage.value}.json")

    record = vintage_record(vintage)

    assert record == {
        "vintage": vintage.value,
        "source": zip3_table(vintage).source,
        "restricted_prefixes": {"census-2000": 17, "census-2010": 14, "census-2020": 18}[vintage.value],
        "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
    }


def test_the_default_vintage_is_the_newest():
    # REGULATORY.md: "Default to the newest vintage."
    default = DeidentificationPolicy.model_fields["zip3_vintage"].default
    assert default == max(Zip3Vintage, key=lambda vintage: vintage.value)


# --- the State of each prefix -------------------------------------------------------------------------------


def test_the_state_table_is_a_data_file_naming_its_source():
    table = zip3_state_table()

    assert table.source
    assert (
        "zip3-states.json"
        in resources.files("airflow_phi_guard.deid").joinpath("data", "SOURCES.md").read_text()
    )
    assert len(table.prefixes) > 900  # the USPS has assigned over 900 three-digit prefixes
    assert set(table.prefixes.values()) >= {"AK", "CA", "DC", "HI", "NE", "NY", "PR", "WY"}


@pytest.mark.parametrize(
    ("prefix", "state"),
    [
        ("005", "NY"),
        ("006", "PR"),
        ("021", "MA"),
        ("200", "DC"),
        ("685", "NE"),
        ("692", "NE"),
        ("995", "AK"),
        ("999", "AK"),
    ],
)
def test_prefixes_map_to_their_state(prefix, state):
    assert zip3_state_table().prefixes[prefix] == state


def test_every_exception_belongs_to_a_prefix_split_between_states():
    table = zip3_state_table()

    assert table.split_prefixes >= {"063", "834"}
    assert table.exceptions["06390"] == "NY"
    assert table.exceptions["83414"] == "WY"
    assert all(zip_code[:3] in table.split_prefixes for zip_code in table.exceptions)
    assert all(table.prefixes[zip_code[:3]] != state for zip_code, state in table.exceptions.items())
