"""The restricted three-digit ZIP prefixes of each Census vintage, loaded from the data files beside it.

45 CFR 164.514(b)(2)(i)(B) names no list: which prefixes hold 20,000 people or fewer depends on the Census
vintage, so each vintage is a JSON file in ``deid/data`` with its source (see ``deid/data/SOURCES.md``).
A file that cannot be read, or whose list is not the one documented, is an error: a shortened list would
silently keep prefixes that must become ``000``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from airflow_phi_guard.policy.models import Zip3Vintage

#: How many prefixes each published list holds; a file with another count is refused.
EXPECTED_PREFIX_COUNTS = {
    Zip3Vintage.CENSUS_2000: 17,
    Zip3Vintage.CENSUS_2010: 14,
    Zip3Vintage.CENSUS_2020: 18,
}

_PREFIX = re.compile(r"[0-9]{3}")


@dataclass(frozen=True)
class Zip3Table:
    """One vintage's list of restricted prefixes and where it comes from.

    :param vintage: the Census vintage, as policies name it.
    :param source: the publication the list is taken from.
    :param prefixes: the three-digit prefixes whose ZIP codes hold 20,000 people or fewer together.
    """

    vintage: Zip3Vintage
    source: str
    prefixes: frozenset[str]


@cache
def zip3_table(vintage: Zip3Vintage | str) -> Zip3Table:
    """Load the table of one vintage from ``deid/data/zip3-<vintage>.json``.

    :param vintage: a :class:`Zip3Vintage` or its value, e.g. ``"census-2020"``.
    :raises ValueError: for an unknown vintage, or a data file that is malformed or not the documented list.
    """
    vintage = Zip3Vintage(vintage)
    file = resources.files("airflow_phi_guard.deid").joinpath("data", f"zip3-{vintage.value}.json")
    document = json.loads(file.read_text(encoding="utf-8"))

    prefixes = document.get("prefixes")
    if document.get("vintage") != vintage.value or not isinstance(prefixes, list):
        raise ValueError(
            f"ZIP3 table for {vintage.value} is malformed: it must name its vintage and list prefixes"
        )
    if not all(isinstance(prefix, str) and _PREFIX.fullmatch(prefix) for prefix in prefixes):
        raise ValueError(f"ZIP3 table for {vintage.value} has a prefix that is not three digits")
    if len(set(prefixes)) != EXPECTED_PREFIX_COUNTS[vintage]:
        raise ValueError(
            f"ZIP3 table for {vintage.value} lists {len(set(prefixes))} distinct prefixes where the "
            f"published list has {EXPECTED_PREFIX_COUNTS[vintage]}; restore the file from its source"
        )
    if not document.get("source"):
        raise ValueError(f"ZIP3 table for {vintage.value} does not name its source")

    return Zip3Table(vintage=vintage, source=document["source"], prefixes=frozenset(prefixes))


def restricted_prefixes(vintage: Zip3Vintage | str) -> frozenset[str]:
    """The three-digit ZIP prefixes that become ``000`` under the given Census vintage.

    :param vintage: a :class:`Zip3Vintage` or its value, e.g. ``"census-2020"``.
    """
    return zip3_table(vintage).prefixes
