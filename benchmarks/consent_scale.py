"""Benchmark of consent admission at scale: N permissions and N dataset rows, against a bare pyarrow read.

Generates a synthetic registry of N permissions (UUID subjects, two records per subject on average, every
basis, purposes as names and PurposeOfUse codes, dates and zoned timestamps) and a dataset of N rows whose
subjects mostly have records, as Parquet in a temporary folder; then times, each in a fresh process so
that its peak resident memory is its own (generation excluded),

- the product: read the registry and validate it (``registry_from_table``), decide every subject
  (``ConsentAdmission``), and admit the dataset in the engine's batches (``admit``), then the counts;
- the baseline: ``pyarrow.parquet.read_table`` of the registry and a batch-wise read of the dataset's
  subject column, the least any admission has to do, once before and once after the product,

and prints both, their ratio (against the faster baseline run, after one unmeasured warm-up), the peak
resident memory of each, and what the validated registry and its decisions hold per permission. Not part
of the test suite::

    .venv/bin/python benchmarks/consent_scale.py --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_phi_guard.consent.admission import ConsentAdmission
from airflow_phi_guard.consent.registry import registry_from_batches, registry_from_table
from airflow_phi_guard.policy.models import ConsentBasis

AS_OF = date(2026, 12, 1)
BATCH_ROWS = 64 * 1024
# The registry is read in batches of about a million permissions (a Parquet row group by default).
REGISTRY_BATCH_ROWS = 1 << 20
BASES = (ConsentBasis.RESEARCH_AUTHORIZATION, ConsentBasis.IRB_WAIVER)
PURPOSES = [["model-training"], ["research", "model-training"], ["HRESCH"], ["treatment"], ["MLTRAINING"]]


def _uuids(count: int, seed: int) -> pa.Array:
    generator = np.random.default_rng(seed)
    raw = generator.integers(0, 2**63, size=(count, 2), dtype=np.int64).view(np.uint8).reshape(count, 16)
    return pa.array([str(uuid.UUID(bytes=bytes(row))) for row in raw], pa.string())


def generate(folder: Path, rows: int, seed: int = 7) -> tuple[Path, Path]:
    """Write ``registry.parquet`` (``rows`` permissions) and ``dataset.parquet`` (``rows`` rows)."""
    generator = np.random.default_rng(seed)
    subjects = _uuids(max(rows // 2, 1), seed)
    # Two records per subject (rows 2k and 2k + 1), granted on different days, so none contradict.
    owner = np.arange(rows) // 2 % len(subjects)
    bases = [basis.value for basis in ConsentBasis]
    # Mostly research authorizations and waivers, some of every other basis.
    basis = generator.choice(len(bases), size=rows, p=[0.45, 0.25, 0.05, 0.05, 0.05, 0.1, 0.05])
    granted = 60 - np.arange(rows) % 3061
    expires = np.where(generator.random(rows) < 0.3, granted + generator.integers(30, 3000, size=rows), 0)
    revoked = np.where(generator.random(rows) < 0.05, granted + generator.integers(1, 2000, size=rows), 0)
    epoch = (AS_OF - date(1970, 1, 1)).days
    registry = pa.table(
        {
            "subject_id": subjects.take(pa.array(owner)),
            "basis": pa.array(bases, pa.string()).take(pa.array(basis)),
            "purposes": pa.array(PURPOSES, pa.list_(pa.string())).take(
                pa.array(generator.integers(0, len(PURPOSES), size=rows))
            ),
            "granted_at": pa.array(epoch + granted, pa.int32()).cast(pa.date32()),
            "expires_at": pa.array(
                np.where(expires != 0, epoch + expires, 0), pa.int32(), mask=expires == 0
            ).cast(pa.date32()),
            "revoked_at": pa.array(
                np.where(revoked != 0, epoch + revoked, 0), pa.int32(), mask=revoked == 0
            ).cast(pa.date32()),
            # A unique document id per permission, as a real registry has.
            "reference": pa.array([f"DOC-{number:09d}" for number in range(rows)], pa.string()),
        }
    )
    # Dataset rows: 90 % subjects with records, 10 % strangers.
    strangers = _uuids(max(rows // 20, 1), seed + 1)
    known = subjects.take(pa.array(generator.integers(0, len(subjects), size=rows)))
    stranger_rows = strangers.take(pa.array(generator.integers(0, len(strangers), size=rows)))
    is_stranger = pa.array(generator.random(rows) < 0.1)
    import pyarrow.compute as pc

    dataset = pa.table({"PATIENT": pc.if_else(is_stranger, stranger_rows, known), "VALUE": np.arange(rows)})
    registry_path, dataset_path = folder / "registry.parquet", folder / "dataset.parquet"
    pq.write_table(registry, registry_path)
    pq.write_table(dataset, dataset_path, row_group_size=BATCH_ROWS * 4)
    return registry_path, dataset_path


def product(registry_path: Path, dataset_path: Path, batches: bool) -> dict[str, float]:
    start = time.perf_counter()
    if batches:
        registry_file = pq.ParquetFile(registry_path)
        registry = registry_from_batches(
            registry_file.iter_batches(batch_size=REGISTRY_BATCH_ROWS),
            str(registry_path),
            registry_file.schema_arrow,
        )
    else:
        registry = registry_from_table(pq.read_table(registry_path), str(registry_path))
    admission = ConsentAdmission(registry, BASES, "model-training", AS_OF)
    for batch in pq.ParquetFile(dataset_path).iter_batches(batch_size=BATCH_ROWS, columns=["PATIENT"]):
        admission.admit(batch.column(0))
    counts = admission.counts()
    seconds = time.perf_counter() - start
    index = admission._index._table
    return {
        "seconds": seconds,
        "admitted": counts.rows_admitted,
        # The subject_id column is the subject grouping (its dictionary and indices), counted once.
        "registry_bytes": registry.table.nbytes,
        "decision_bytes": (0 if index is None else index.nbytes)
        + admission._codes.nbytes
        + admission._ranks.nbytes
        + admission._seen.nbytes,
    }


def baseline(registry_path: Path, dataset_path: Path) -> dict[str, float]:
    start = time.perf_counter()
    pq.read_table(registry_path)
    for batch in pq.ParquetFile(dataset_path).iter_batches(batch_size=BATCH_ROWS, columns=["PATIENT"]):
        batch.column(0)
    return {"seconds": time.perf_counter() - start}


def _peak_resident_mib() -> float:
    """This process image's own peak resident memory (``VmHWM``).

    ``ru_maxrss`` would not do: Linux carries it over from the parent through fork and exec, so every
    child would report the generator's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(kind: str, folder: Path) -> dict[str, float]:
    """Run one measurement in a fresh process and read back its figures and peak memory."""
    completed = subprocess.run(
        [sys.executable, __file__, "--measure", kind, str(folder)], check=True, capture_output=True, text=True
    )
    return json.loads(completed.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="permissions, and dataset rows")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        kind, folder = arguments.measure
        paths = (Path(folder) / "registry.parquet", Path(folder) / "dataset.parquet")
        figures = baseline(*paths) if kind == "baseline" else product(*paths, batches=kind == "batches")
        figures["peak_mib"] = _peak_resident_mib()
        print(json.dumps(figures))
        return

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        generate(Path(folder), arguments.rows)
        print(f"generated {arguments.rows:,} permissions and rows in {time.perf_counter() - started:.1f} s")
        # A first read pays for the freshly written files (page cache, write-back): it is not counted.
        _measure("baseline", Path(folder))
        before = _measure("baseline", Path(folder))
        measured = _measure("product", Path(folder))
        streamed = _measure("batches", Path(folder))
        after = _measure("baseline", Path(folder))
    # The faster bare read is the yardstick: on a shared machine, the slower one is the noisier.
    bare = min(before["seconds"], after["seconds"])
    held = measured["registry_bytes"] + measured["decision_bytes"]
    rows = arguments.rows
    print(f"load average (1, 5, 15 min):  {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    print(f"bare pyarrow read:            {before['seconds']:8.2f} s before, {after['seconds']:.2f} s after")
    for name, figures in (("registry_from_table", measured), ("registry_from_batches", streamed)):
        print(
            f"{name + ', decide, admit:':36s} {figures['seconds']:7.2f} s  "
            f"ratio {figures['seconds'] / bare:4.1f}x  peak {figures['peak_mib']:6.0f} MiB  "
            f"({figures['admitted']:,} rows admitted)"
        )
    print(f"bare read peak resident memory: {max(before['peak_mib'], after['peak_mib']):.0f} MiB")
    print(
        f"held per permission:          {held / rows:8.0f} bytes (registry with its subject grouping "
        f"{measured['registry_bytes'] / rows:.0f}, decisions and subject index "
        f"{measured['decision_bytes'] / rows:.0f})"
    )


if __name__ == "__main__":
    main()
