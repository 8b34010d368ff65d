"""The ZIP3 data the treatments rest on: each Census vintage's restricted prefixes, and each prefix's State.

45 CFR 164.514(b)(2)(i)(B) names no list: which prefixes hold 20,000 people or fewer depends on the Census
vintage, so each vintage is a JSON file in ``deid/data`` with its source (see ``deid/data/SOURCES.md``).
A file that cannot be read, or whose list is not the one documented, is an error: a shortened list would
silently keep prefixes that must become ``000``.
"""

from __future__ import annotations

import hashlib
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
_ZIP = re.compile(r"[0-9]{5}")
_STATE = re.compile(r"[A-Z]{2}")


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


def vintage_record(vintage: Zip3Vintage | str) -> dict[str, str | int]:
    """What a report or lineage records about the ZIP3 list a run used: names, counts and a digest.

    :param vintage: a :class:`Zip3Vintage` or its value.
    :returns: ``vintage``, ``source``, ``restricted_prefixes`` (how many) and ``sha256`` of the data file,
        so that an auditor can tell which list, and which copy of it, a run applied.
    """
    table = zip3_table(vintage)
    return {
        "vintage": table.vintage.value,
        "source": table.source,
        "restricted_prefixes": len(table.prefixes),
        "sha256": _data_file_digest(f"zip3-{table.vintage.value}.json"),
    }


@dataclass(frozen=True)
class Zip3StateTable:
    """The State (USPS abbreviation) of each three-digit ZIP prefix, with the ZIP codes that cross a border.

    :param source: where the table comes from.
    :param prefixes: the State of most ZIP codes of each prefix.
    :param split_prefixes: prefixes whose ZIP codes lie in more than one State; a bare prefix of these
        names no State.
    :param exceptions: the five-digit ZIP codes of a split prefix that lie outside its State, with theirs.
    """

    source: str
    prefixes: dict[str, str]
    split_prefixes: frozenset[str]
    exceptions: dict[str, str]


@cache
def zip3_state_table() -> Zip3StateTable:
    """Load ``deid/data/zip3-states.json`` (see ``deid/data/SOURCES.md``).

    :raises ValueError: for a file that is malformed: a prefix not of three digits, a State not of two
        letters, an exception outside the split prefixes, or no source.
    """
    file = resources.files("airflow_phi_guard.deid").joinpath("data", "zip3-states.json")
    document = json.loads(file.read_text(encoding="utf-8"))

    prefixes, exceptions = document.get("prefixes"), document.get("exceptions")
    split = document.get("split_prefixes")
    if not (isinstance(prefixes, dict) and isinstance(exceptions, dict) and isinstance(split, list)):
        raise ValueError(
            "the ZIP3 State table is malformed: it must hold prefixes, split_prefixes, exceptions"
        )
    if not all(_PREFIX.fullmatch(prefix) and _STATE.fullmatch(state) for prefix, state in prefixes.items()):
        raise ValueError(
            "the ZIP3 State table has a prefix that is not three digits or a State not two letters"
        )
    if not all(
        _ZIP.fullmatch(zip_code) and zip_code[:3] in split and _STATE.fullmatch(state)
        for zip_code, state in exceptions.items()
    ):
        raise ValueError("the ZIP3 State table has an exception that is no ZIP code of a split prefix")
    if not document.get("source"):
        raise ValueError("the ZIP3 State table does not name its source")

    return Zip3StateTable(
        source=document["source"], prefixes=prefixes, split_prefixes=frozenset(split), exceptions=exceptions
    )


def _data_file_digest(name: str) -> str:
    file = resources.files("airflow_phi_guard.deid").joinpath("data", name)
    return hashlib.sha256(file.read_bytes()).hexdigest()
