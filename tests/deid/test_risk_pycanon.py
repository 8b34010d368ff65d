"""k-anonymity and l-diversity cross-checked against pyCANON, an independent implementation (issue 5).

pyCANON's releases pin exact older versions of numpy and pandas, so it cannot be resolved with the
project's pins; ``make test`` installs it without its dependencies (see the Makefile), and it runs on the
project's numpy and pandas. pyCANON drops rows with a missing quasi-identifier before grouping, where the
product keeps a missing value as a value of its own (the conservative reading), so the datasets here
hold no missing values: on those, both must agree exactly.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pytest
from pycanon import anonymity

from airflow_phi_guard.deid.risk import LDiversity, RiskAccumulator, RiskThresholds


def _dataset(seed: int, rows: int) -> pa.Table:
    generator = random.Random(seed)
    return pa.table(
        {
            "AGE": [generator.choice([30, 40, 50, 60, 70, 90]) for _ in range(rows)],
            "GENDER": [generator.choice(["F", "M"]) for _ in range(rows)],
            "ZIP3": [generator.choice(["680", "681", "685", "000"]) for _ in range(rows)],
            "DIAGNOSIS": [generator.choice(["a", "b", "c", "d", "e"]) for _ in range(rows)],
        }
    )


CASES = [
    # (seed, rows, quasi-identifiers): small and larger sets, so that k runs from 1 up
    (seed, rows, quasi_identifiers)
    for seed in (1, 2, 3)
    for rows in (40, 400, 4000)
    for quasi_identifiers in (("AGE",), ("AGE", "GENDER"), ("AGE", "GENDER", "ZIP3"))
]


@pytest.mark.parametrize(("seed", "rows", "quasi_identifiers"), CASES)
def test_k_and_l_equal_pycanons(seed, rows, quasi_identifiers):
    table = _dataset(seed, rows)
    thresholds = RiskThresholds(
        quasi_identifiers=quasi_identifiers,
        k_min=2,
        l_diversity=LDiversity(sensitive=("DIAGNOSIS",), l_min=2),
    )
    accumulator = RiskAccumulator(thresholds)
    for batch in table.to_batches(max_chunksize=97):
        accumulator.add(batch)
    risk = accumulator.measure()

    frame = table.to_pandas()
    assert risk.k == anonymity.k_anonymity(frame, list(quasi_identifiers))
    assert risk.l == anonymity.l_diversity(frame, list(quasi_identifiers), ["DIAGNOSIS"])
