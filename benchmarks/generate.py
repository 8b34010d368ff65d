"""Generates Synthea-shaped extracts of any size, with their consent registry, for the scale benchmark.

The source is the repository's Synthea sample (``data/synthea-nebraska/``), joined into the demo's
encounter extract (``dags/demo_extract.py``): one row per encounter, every patient column beside it. A
generated set of N rows has about N / 68 patients (the sample's encounters per patient), each with new
keys and values resampled from the sample:

- every row is a sampled encounter of the sample (its class, codes, descriptions, costs, label) under a
  new encounter UUID, given to a generated patient; the patients own contiguous runs of rows;
- each patient column (birth date, names, address, ZIP, demographics, income) of a generated patient is
  the value of a sample patient chosen by a hash of the patient and the column, so that the columns of
  one patient are resampled independently, and all rows of a patient agree;
- identifiers are planted at known rates, each given to exactly ``floor(rate * patients)`` patients (or
  ``floor(rate * rows)`` rows) chosen by a seeded permutation: a new SSN (area 999, never issued, as
  Synthea writes them) for every patient, a driver's licence and a passport number for the shares of
  :data:`PATIENT_IDENTIFIER_RATES`, and, only when ``text_identifier_rate`` is above 0, an SSN, a phone
  number or an e-mail address written into ``REASONDESCRIPTION``, a column the demo policy keeps and
  scans (such a set is for a run that must be refused);
- the consent registry holds one record per generated patient, with the shares of
  :data:`CONSENT_SHARES` (also exact counts) lacking a research consent, revoked, or consent to treatment
  only; the other patients hold a research authorization or an IRB waiver.

The output is Parquet, partitioned by a hash of the patient into ``bucket-NN/`` folders (plain folder
names, not hive ``key=value`` ones, so that a reader discovering hive partitions adds no column), one
file per bucket and generation batch. Batches of ``batch_rows`` rows are built with numpy and pyarrow one
at a time, never the whole set. Everything derives from the seed: the same seed gives the same bytes,
and ``manifest.json`` records the digest of the files, the planted counts and the consent counts::

    .venv/bin/python benchmarks/generate.py --rows 1000000 [--seed 7] [--out benchmarks/.scale-data]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT / "data" / "synthea-nebraska"
DEFAULT_OUT = ROOT / "benchmarks" / ".scale-data"
DEFAULT_SEED = 7
DEFAULT_BATCH_ROWS = 500_000
DEFAULT_BUCKETS = 8
#: The date the consent records are built around: the demo's as-of date.
AS_OF = date(2026, 12, 1)

#: Share of patients with a planted identifier in each identifier column (SSN: every patient).
PATIENT_IDENTIFIER_RATES = {"SSN": 1.0, "DRIVERS": 0.75, "PASSPORT": 0.6}
#: Kinds of identifier written into the kept free text when ``text_identifier_rate`` is above 0, in turn.
TEXT_IDENTIFIER_KINDS = ("ssn", "phone", "email")
TEXT_COLUMN = "REASONDESCRIPTION"

#: Consent scenarios other than an accepted one, and their share of patients. The rest is split between
#: :data:`ADMITTED_SHARES`. Every patient has exactly one record.
CONSENT_SHARES = {
    # a research authorization whose purposes do not cover model training
    "no-research-consent": 0.08,
    # an IRB waiver revoked before the as-of date
    "revoked": 0.05,
    # consent to treatment only, a basis that never admits a record for training
    "treatment-only": 0.07,
}
ADMITTED_SHARES = {"research-authorization": 0.8, "irb-waiver": 0.2}
CONSENT_SCHEMA = pa.schema(
    [
        ("subject_id", pa.string()),
        ("basis", pa.string()),
        ("purposes", pa.list_(pa.string())),
        ("granted_at", pa.date32()),
        ("expires_at", pa.date32()),
        ("revoked_at", pa.date32()),
        ("reference", pa.string()),
    ]
)

_ENCOUNTER_COLUMNS = (
    "START",
    "STOP",
    "ORGANIZATION",
    "PROVIDER",
    "PAYER",
    "ENCOUNTERCLASS",
    "CODE",
    "DESCRIPTION",
    "BASE_ENCOUNTER_COST",
    "TOTAL_CLAIM_COST",
    "PAYER_COVERAGE",
    "REASONCODE",
    "REASONDESCRIPTION",
    "CONDITION_CODES",
    "READMITTED_30D",
)
_PLANTED_COLUMNS = frozenset(PATIENT_IDENTIFIER_RATES)
_MASK64 = (1 << 64) - 1
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@dataclass(frozen=True)
class GeneratedSet:
    """Where a generated set was written and what it holds.

    :param folder: the set's folder, holding ``extract/``, ``consent.parquet`` and ``manifest.json``.
    :param manifest: the manifest's content.
    """

    folder: Path
    manifest: dict[str, object]

    @property
    def extract(self) -> Path:
        """The partitioned extract (a folder of Parquet files)."""
        return self.folder / "extract"

    @property
    def consent(self) -> Path:
        """The consent registry (one Parquet file)."""
        return self.folder / "consent.parquet"


def set_folder(out: Path, rows: int, seed: int) -> Path:
    """The folder of the set of ``rows`` rows and ``seed`` under ``out``.

    :param out: the folder holding generated sets.
    :param rows: the number of rows.
    :param seed: the seed.
    """
    return out / f"rows-{rows}-seed-{seed}"


def patients_for(rows: int, encounters_per_patient: float) -> int:
    """How many patients a set of ``rows`` rows has.

    :param rows: the number of rows.
    :param encounters_per_patient: the sample's mean.
    """
    return max(1, round(rows / encounters_per_patient))


def planted_count(rate: float, population: int) -> int:
    """How many of ``population`` patients (or rows) get an identifier planted at ``rate``.

    :param rate: the share, from 0 to 1.
    :param population: patients or rows.
    """
    return math.floor(rate * population + 1e-9)


def consent_counts(patients: int) -> dict[str, int]:
    """The number of patients in each consent scenario.

    :param patients: the number of patients.
    """
    counts = {scenario: planted_count(share, patients) for scenario, share in CONSENT_SHARES.items()}
    rest = patients - sum(counts.values())
    counts["irb-waiver"] = planted_count(ADMITTED_SHARES["irb-waiver"], rest)
    counts["research-authorization"] = rest - counts["irb-waiver"]
    return counts


def _splitmix(values: np.ndarray, salt: int) -> np.ndarray:
    """A 64-bit mix of each value with ``salt`` (splitmix64's finaliser): the same input, the same output."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64((salt * 0x9E3779B97F4A7C15) & _MASK64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _fixed_width(chars: np.ndarray) -> pa.Array:
    """A string array from an (n, width) array of ASCII bytes."""
    count, width = chars.shape
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars).tobytes())]
    )


def _uuids(keys: np.ndarray, salt: int) -> pa.Array:
    """UUID-shaped text (8-4-4-4-12 hex digits) derived from each key and ``salt``."""
    words = np.stack([_splitmix(keys, 2 * salt), _splitmix(keys, 2 * salt + 1)], axis=1)
    raw = words.view(np.uint8).reshape(len(keys), 16)
    digits = np.empty((len(keys), 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 15]
    chars = np.full((len(keys), 36), ord("-"), dtype=np.uint8)
    for start, end, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        chars[:, at : at + end - start] = digits[:, start:end]
    return _fixed_width(chars)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """The last ``width`` decimal digits of each value, as an (n, width) array of ASCII bytes."""
    powers = np.uint64(10) ** np.arange(width - 1, -1, -1, dtype=np.uint64)
    return ((values[:, None] // powers) % np.uint64(10)).astype(np.uint8) + ord("0")


def _templated(template: str, values: np.ndarray) -> pa.Array:
    """Fill each ``#`` of ``template`` with a digit of ``values``, one string per value."""
    slots = [position for position, char in enumerate(template) if char == "#"]
    chars = np.tile(np.frombuffer(template.encode("ascii"), dtype=np.uint8), (len(values), 1))
    chars[:, slots] = _digits(values, len(slots))
    return _fixed_width(chars)


def _permuted(keys: np.ndarray, population: int, salt: int) -> np.ndarray:
    """A seeded permutation of ``0..population-1`` applied to ``keys``: ``(a * key + b) mod population``
    with ``a`` coprime to ``population``, so that exactly ``k`` keys land below ``k``."""
    a = int(_splitmix(np.array([salt]), 1)[0] % np.uint64(max(population, 1))) | 1
    while math.gcd(a, population) != 1:
        a += 2
    b = int(_splitmix(np.array([salt]), 2)[0] % np.uint64(max(population, 1)))
    # keys and a stay below 2**31, so the product fits in 64 bits
    return (keys * a + b) % population


def _below(keys: np.ndarray, population: int, rate: float, salt: int) -> np.ndarray:
    """True for the keys planted at ``rate``: exactly ``floor(rate * population)`` of the population."""
    return _permuted(keys.astype(np.int64), population, salt) < planted_count(rate, population)


class _Sample:
    """The Synthea sample as the demo's encounter extract, split into encounter and patient columns."""

    def __init__(self, source: Path) -> None:
        sys.path.insert(0, str(ROOT / "dags"))
        from demo_extract import build_encounter_extract

        extract = build_encounter_extract(source)
        self.schema = extract.schema
        self.encounters = extract.select(list(_ENCOUNTER_COLUMNS))
        patient_columns = [
            name for name in extract.column_names if name not in _ENCOUNTER_COLUMNS and name != "ENCOUNTER"
        ]
        patient_columns.remove("PATIENT")
        # One row per sample patient, in the order of their first encounter.
        first = pc.index_in(pc.unique(extract["PATIENT"].drop_null()), value_set=extract["PATIENT"]).to_numpy(
            zero_copy_only=False
        )
        self.patients = extract.select(patient_columns).take(pa.array(first))
        self.encounters_per_patient = extract.num_rows / len(first)


def _batch(
    sample: _Sample, start: int, size: int, rows: int, patients: int, seed: int, text_rate: float
) -> pa.Table:
    """Rows ``start`` to ``start + size`` of the set: each a function of the seed and its row number."""
    row = np.arange(start, start + size, dtype=np.int64)
    patient = (row * patients) // rows
    rng = np.random.default_rng([seed, start])

    columns: dict[str, pa.Array] = {"ENCOUNTER": _uuids(row.astype(np.uint64), seed * 1000 + 1)}
    columns["PATIENT"] = _uuids(patient.astype(np.uint64), seed * 1000 + 2)
    encounter = pa.array(rng.integers(0, sample.encounters.num_rows, size))
    encounters = sample.encounters.take(encounter)
    for name in _ENCOUNTER_COLUMNS:
        columns[name] = encounters[name].combine_chunks()

    key = patient.astype(np.uint64)
    for index, name in enumerate(sample.patients.column_names):
        if name in _PLANTED_COLUMNS:
            continue
        chosen = _splitmix(key, seed * 1000 + 100 + index) % np.uint64(sample.patients.num_rows)
        columns[name] = sample.patients[name].combine_chunks().take(pa.array(chosen.astype(np.int64)))

    number = _splitmix(key, seed * 1000 + 3)
    columns["SSN"] = _templated("999-##-####", number % np.uint64(10**6))
    drivers = _below(patient, patients, PATIENT_IDENTIFIER_RATES["DRIVERS"], seed * 1000 + 4)
    columns["DRIVERS"] = pc.if_else(
        pa.array(drivers), _templated("S999#####", (number >> np.uint64(20)) % np.uint64(10**5)), None
    )
    passport = _below(patient, patients, PATIENT_IDENTIFIER_RATES["PASSPORT"], seed * 1000 + 5)
    columns["PASSPORT"] = pc.if_else(
        pa.array(passport), _templated("X########X", (number >> np.uint64(30)) % np.uint64(10**8)), None
    )

    if text_rate > 0:
        planted = _below(row, rows, text_rate, seed * 1000 + 6)
        kind = row % len(TEXT_IDENTIFIER_KINDS)
        text = {
            "ssn": _templated("SSN 999-##-####", number % np.uint64(10**6)),
            "phone": _templated("call 402-4##-####", number % np.uint64(10**6)),
            "email": _templated("write to p#######@example.org", number % np.uint64(10**7)),
        }
        notes = text["ssn"]
        for position, name in enumerate(TEXT_IDENTIFIER_KINDS[1:], start=1):
            notes = pc.if_else(pa.array(kind == position), text[name], notes)
        columns[TEXT_COLUMN] = pc.if_else(pa.array(planted), notes, columns[TEXT_COLUMN])

    return pa.table({field.name: columns[field.name] for field in sample.schema}, schema=sample.schema)


def _consent_batches(patients: int, seed: int, batch_rows: int) -> Iterator[pa.Table]:
    """The registry, ``batch_rows`` patients at a time: one record each, scenario by a seeded permutation."""
    counts = consent_counts(patients)
    # scenarios take consecutive ranges of the permuted patient number, in this order
    order = ["no-research-consent", "revoked", "treatment-only", "irb-waiver", "research-authorization"]
    bounds = np.cumsum([counts[name] for name in order])
    for start in range(0, patients, batch_rows):
        patient = np.arange(start, min(start + batch_rows, patients), dtype=np.int64)
        scenario = np.searchsorted(bounds, _permuted(patient, patients, seed * 1000 + 7), side="right")
        days = _splitmix(patient.astype(np.uint64), seed * 1000 + 8)
        granted = (AS_OF - date(1970, 1, 1)).days - 400 - (days % np.uint64(2000)).astype(np.int32)
        revoked = (AS_OF - date(1970, 1, 1)).days - 1 - (days >> np.uint64(32)) % np.uint64(365)
        is_revoked = scenario == order.index("revoked")
        basis = pa.array(["research-authorization", "irb-waiver", "treatment-consent", "irb-waiver",
                          "research-authorization"]).take(pa.array(scenario))  # fmt: skip
        purposes = pa.array(
            [["registry-research"], ["model-training"], ["treatment"], ["model-training"],
             ["research", "model-training"]], pa.list_(pa.string()),
        ).take(pa.array(scenario))  # fmt: skip
        prefix = pa.array(["AUTH-", "IRB-", "TC-", "IRB-", "AUTH-"]).take(pa.array(scenario))
        reference = pc.binary_join_element_wise(
            prefix, _templated("##########", patient.astype(np.uint64)), ""
        )
        yield pa.table(
            {
                "subject_id": _uuids(patient.astype(np.uint64), seed * 1000 + 2),
                "basis": basis,
                "purposes": purposes,
                "granted_at": pa.array(granted.astype(np.int32), pa.int32()).cast(pa.date32()),
                "expires_at": pa.nulls(len(patient), pa.date32()),
                "revoked_at": pc.if_else(
                    pa.array(is_revoked), pa.array(revoked.astype(np.int32)).cast(pa.date32()), None
                ),
                "reference": reference,
            },
            schema=CONSENT_SCHEMA,
        )


def _digest(folder: Path) -> str:
    """SHA-256 over every file's relative path and bytes, in path order."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.parquet")):
        digest.update(path.relative_to(folder).as_posix().encode())
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def generate(
    rows: int,
    *,
    seed: int = DEFAULT_SEED,
    out: Path = DEFAULT_OUT,
    source: Path = DEFAULT_SOURCE,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    buckets: int = DEFAULT_BUCKETS,
    text_identifier_rate: float = 0.0,
    reuse: bool = True,
) -> GeneratedSet:
    """Generate the set of ``rows`` rows for ``seed`` under ``out``, or reuse one already complete there.

    :param rows: the number of rows (encounters).
    :param seed: the seed every value derives from.
    :param out: the folder holding generated sets; the set goes into :func:`set_folder`.
    :param source: the folder of the Synthea sample.
    :param batch_rows: rows built and written at a time, which bounds memory.
    :param buckets: hash buckets of the patient, one folder each.
    :param text_identifier_rate: the share of rows with an identifier in ``REASONDESCRIPTION``.
    :param reuse: return a complete set with the same parameters instead of writing it again.
    """
    folder = set_folder(out, rows, seed)
    if text_identifier_rate > 0:
        folder = folder.with_name(f"{folder.name}-text-{text_identifier_rate:g}")
    parameters = {
        "rows": rows,
        "seed": seed,
        "batch_rows": batch_rows,
        "buckets": buckets,
        "text_identifier_rate": text_identifier_rate,
    }
    manifest_path = folder / "manifest.json"
    if reuse and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("parameters") == parameters:
            return GeneratedSet(folder, manifest)

    started = time.perf_counter()
    sample = _Sample(source)
    patients = patients_for(rows, sample.encounters_per_patient)
    extract = folder / "extract"
    if folder.exists():
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    extract.mkdir(parents=True)

    files = 0
    for number, start in enumerate(range(0, rows, batch_rows)):
        table = _batch(
            sample, start, min(batch_rows, rows - start), rows, patients, seed, text_identifier_rate
        )
        row = np.arange(start, start + table.num_rows, dtype=np.int64)
        bucket = _splitmix(((row * patients) // rows).astype(np.uint64), seed * 1000 + 9) % np.uint64(buckets)
        for index in range(buckets):
            part = table.filter(pa.array(bucket == index))
            if part.num_rows:
                target = extract / f"bucket-{index:02d}" / f"part-{number:05d}.parquet"
                target.parent.mkdir(exist_ok=True)
                pq.write_table(part, target)
                files += 1

    with pq.ParquetWriter(folder / "consent.parquet", CONSENT_SCHEMA) as writer:
        for table in _consent_batches(patients, seed, batch_rows):
            writer.write_table(table)

    planted = {name: planted_count(rate, patients) for name, rate in PATIENT_IDENTIFIER_RATES.items()}
    manifest = {
        "parameters": parameters,
        "rows": rows,
        "patients": patients,
        "files": files,
        "planted_patients": planted,
        "planted_text_rows": planted_count(text_identifier_rate, rows) if text_identifier_rate > 0 else 0,
        "consent_patients": consent_counts(patients),
        "as_of": AS_OF.isoformat(),
        "digest": _digest(folder),
        "seconds": round(time.perf_counter() - started, 1),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return GeneratedSet(folder, manifest)


def main(argv: list[str] | None = None) -> int:
    """Generate the sets named on the command line and print their manifests."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS)
    parser.add_argument("--buckets", type=int, default=DEFAULT_BUCKETS)
    parser.add_argument("--text-identifier-rate", type=float, default=0.0)
    parser.add_argument("--force", action="store_true", help="write again even if a complete set exists")
    arguments = parser.parse_args(argv)
    for rows in arguments.rows:
        generated = generate(
            rows,
            seed=arguments.seed,
            out=arguments.out,
            batch_rows=arguments.batch_rows,
            buckets=arguments.buckets,
            text_identifier_rate=arguments.text_identifier_rate,
            reuse=not arguments.force,
        )
        print(json.dumps({"folder": str(generated.folder), **generated.manifest}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
