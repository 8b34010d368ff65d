"""Rebuild ``zip3-states.json``, the State of each three-digit ZIP prefix, from the ``zipcodes`` package.

Not imported by the product: run it by hand when the table is refreshed, with the package installed out
of the project's environment, e.g. ``pip install --target /tmp/zipcodes zipcodes==3.0.0`` and then
``PYTHONPATH=/tmp/zipcodes python src/airflow_phi_guard/deid/data/build_zip3_states.py``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import zipcodes

TABLE = Path(__file__).with_name("zip3-states.json")


def build() -> dict:
    """The table: each prefix's State, the ZIP codes outside their prefix's State, and the split prefixes."""
    states_by_prefix: dict[str, Counter[str]] = defaultdict(Counter)
    state_of_zip: dict[str, str] = {}
    for record in zipcodes.list_all():
        states_by_prefix[record["zip_code"][:3]][record["state"]] += 1
        state_of_zip[record["zip_code"]] = record["state"]

    prefixes = {prefix: states.most_common(1)[0][0] for prefix, states in sorted(states_by_prefix.items())}
    split = sorted(prefix for prefix, states in states_by_prefix.items() if len(states) > 1)
    exceptions = {
        zip_code: state
        for zip_code, state in sorted(state_of_zip.items())
        if zip_code[:3] in split and state != prefixes[zip_code[:3]]
    }
    return {
        "table": "zip3-states",
        "rule": "45 CFR 164.514(b)(2)(i)(B): a State is not a geographic subdivision smaller than a State",
        "source": (
            f"zipcodes {zipcodes.__version__} (MIT), whose embedded list of US ZIP codes is assembled from "
            "unitedstateszipcodes.org and the USPS ZIP Locale Detail; each prefix's State is the State of "
            "most of its ZIP codes, and the ZIP codes of another State are listed as exceptions"
        ),
        "zip_codes": len(state_of_zip),
        "prefixes": prefixes,
        "split_prefixes": split,
        "exceptions": exceptions,
    }


if __name__ == "__main__":
    TABLE.write_text(json.dumps(build(), indent=1, sort_keys=False) + "\n", encoding="utf-8")
