"""Benchmarks the re-identification risk accumulator at scale: its time against a bare Arrow group-by on
the same rows, and its peak memory, which must not grow with the number of rows.

Run from the project's environment (it needs only pyarrow and numpy)::

    .venv/bin/python benchmarks/risk_scale.py                  # 1 million rows
    .venv/bin/python benchmarks/risk_scale.py --ten-million    # 10 million rows

Synthetic output rows are generated batch by batch from a seeded generator, with four quasi-identifiers
(age band, sex with missing values, ZIP3, year: 20 x 3 x 100 x 10 = 60,000 possible classes) and one
sensitive column (10 diagnosis codes: at most 600,000 class and diagnosis pairs, which l-diversity keeps).
The accumulator sees one batch at a time, as the engine's pass does, and its peak resident memory is read
before anything else holds the whole dataset. Then the same rows are materialised as one table and
grouped in memory with ``pa.Table.group_by``: the floor that an out-of-core computation is compared with.
Generation time is excluded from both timings. The result is printed as JSON: figures only, no value of
the data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from airflow_phi_guard.deid.risk import RiskAccumulator, RiskThresholds

QUASI_IDENTIFIERS = ("age_band", "sex", "zip3", "year")
SENSITIVE = "dx"
AGE_BANDS = 20
ZIP3S = pa.array([f"{600 + i:03d}" for i in range(100)])
SEXES = pa.array(["F", "M"])
YEARS = 10
DIAGNOSES = pa.array([f"D{i:02d}" for i in range(10)])
SEX_MISSING = 0.05
POSSIBLE_CLASSES = AGE_BANDS * (len(SEXES) + 1) * len(ZIP3S) * YEARS


def batches(rows: int, batch_rows: int, seed: int) -> Iterator[pa.RecordBatch]:
    """The same rows on every call: batch ``i`` comes from its own seeded generator."""
    for index, start in enumerate(range(0, rows, batch_rows)):
        size = min(batch_rows, rows - start)
        rng = np.random.default_rng([seed, index])
        sex = pa.array(rng.integers(0, len(SEXES), size), mask=rng.random(size) < SEX_MISSING)
        yield pa.record_batch(
            {
                "age_band": pa.array(rng.integers(0, AGE_BANDS, size, dtype=np.int8) * 5),
                "sex": SEXES.take(sex),
                "zip3": ZIP3S.take(pa.array(rng.integers(0, len(ZIP3S), size))),
                "year": pa.array(rng.integers(2015, 2015 + YEARS, size, dtype=np.int16)),
                "dx": DIAGNOSES.take(pa.array(rng.integers(0, len(DIAGNOSES), size))),
            }
        )


def peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_accumulator(rows: int, batch_rows: int, seed: int, thresholds: RiskThresholds) -> dict[str, object]:
    accumulator = RiskAccumulator(thresholds)
    seconds = 0.0
    held = 0
    for batch in batches(rows, batch_rows, seed):
        started = time.perf_counter()
        accumulator.add(batch)
        seconds += time.perf_counter() - started
        held = max(held, accumulator.held_rows)
    started = time.perf_counter()
    risk = accumulator.measure()
    seconds += time.perf_counter() - started
    return {
        "seconds": round(seconds, 3),
        "most_rows_held": held,
        "k": risk.k,
        "classes": risk.classes,
        "l": risk.l,
        "rows_with_missing_quasi_identifier": risk.rows_with_missing_quasi_identifier,
    }


def run_bare(table: pa.Table, *, with_diversity: bool) -> float:
    keys = list(QUASI_IDENTIFIERS)
    started = time.perf_counter()
    table.group_by(keys).aggregate([([], "count_all")])
    if with_diversity:
        table.group_by([*keys, SENSITIVE]).aggregate([]).group_by(keys).aggregate([(SENSITIVE, "count")])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate (default 1 million)")
    parser.add_argument("--ten-million", action="store_true", help="generate 10 million rows")
    parser.add_argument("--batch-rows", type=int, default=64 * 1024, help="rows per record batch")
    parser.add_argument("--seed", type=int, default=20260501)
    arguments = parser.parse_args(argv)
    rows = 10_000_000 if arguments.ten_million else arguments.rows

    k_only = RiskThresholds(quasi_identifiers=QUASI_IDENTIFIERS, k_min=5)
    with_l = RiskThresholds(
        quasi_identifiers=QUASI_IDENTIFIERS, k_min=5, l_diversity={"sensitive": [SENSITIVE], "l_min": 2}
    )
    rss_at_start = peak_rss_mib()
    accumulator_k = run_accumulator(rows, arguments.batch_rows, arguments.seed, k_only)
    rss_after_k = peak_rss_mib()
    accumulator_kl = run_accumulator(rows, arguments.batch_rows, arguments.seed, with_l)
    rss_after_kl = peak_rss_mib()

    table = pa.Table.from_batches(list(batches(rows, arguments.batch_rows, arguments.seed)))
    bare_k = run_bare(table, with_diversity=False)
    bare_kl = run_bare(table, with_diversity=True)
    rss_after_bare = peak_rss_mib()

    result = {
        "rows": rows,
        "batch_rows": arguments.batch_rows,
        "seed": arguments.seed,
        "possible_classes": POSSIBLE_CLASSES,
        "accumulator_k": accumulator_k,
        "accumulator_k_and_l": accumulator_kl,
        "bare_group_by_seconds": {"k": round(bare_k, 3), "k_and_l": round(bare_kl, 3)},
        "time_ratio_accumulator_to_bare": {
            "k": round(accumulator_k["seconds"] / bare_k, 2),
            "k_and_l": round(accumulator_kl["seconds"] / bare_kl, 2),
        },
        "peak_rss_mib": {
            "at_start": round(rss_at_start, 1),
            "after_accumulator_k": round(rss_after_k, 1),
            "after_accumulator_k_and_l": round(rss_after_kl, 1),
            "after_whole_table_group_by": round(rss_after_bare, 1),
        },
        "machine": {
            "python": platform.python_version(),
            "pyarrow": pa.__version__,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
