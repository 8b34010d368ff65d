"""Build the demo's raw EHR extract: one row per Synthea encounter, with every patient column and a label.

This stands in for what a hospital's data warehouse hands the ML team: a raw PHI extract, every
identifier included, which the policy must govern before any model sees it. Importable without Airflow.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

#: Encounters whose next acute visit (inpatient or emergency) within this many days makes the label true.
READMISSION_WINDOW = timedelta(days=30)
ACUTE_CLASSES = frozenset({"inpatient", "emergency"})

#: A real extract has defects; the demo simulates one so that the `no-subject-id` exclusion is seen:
#: this many encounters, the first by encounter id, lose their PATIENT value.
ENCOUNTERS_WITHOUT_SUBJECT = 3


def read_synthea_csv(path: Path) -> pa.Table:
    """Read a Synthea CSV, keeping timestamps as the text recorded and empty cells as nulls."""
    header = pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(block_size=1 << 26)).schema
    as_text = {field.name: pa.string() for field in header if field.name in ("START", "STOP")}
    as_text.update({field.name: pa.string() for field in header if pa.types.is_null(field.type)})
    return pa_csv.read_csv(
        path,
        read_options=pa_csv.ReadOptions(block_size=1 << 26),
        convert_options=pa_csv.ConvertOptions(column_types=as_text, strings_can_be_null=True),
    )


def build_encounter_extract(synthea_dir: str | os.PathLike[str]) -> pa.Table:
    """Join encounters, patients and conditions into the encounter-level training extract.

    :param synthea_dir: the folder holding Synthea's ``patients.csv``, ``encounters.csv``, ``conditions.csv``.
    """
    folder = Path(synthea_dir)
    encounters = read_synthea_csv(folder / "encounters.csv").rename_columns({"Id": "ENCOUNTER"})
    patients = read_synthea_csv(folder / "patients.csv")
    conditions = read_synthea_csv(folder / "conditions.csv")

    codes = (
        conditions.sort_by([("ENCOUNTER", "ascending"), ("CODE", "ascending")])
        .group_by("ENCOUNTER", use_threads=False)
        .aggregate([("CODE", "distinct")])
    )
    codes = pa.table(
        {
            "ENCOUNTER": codes["ENCOUNTER"],
            "CONDITION_CODES": pc.binary_join(pc.cast(codes["CODE_distinct"], pa.list_(pa.string())), ";"),
        }
    )

    extract = encounters.join(patients, keys="PATIENT", right_keys="Id", join_type="left outer")
    extract = extract.join(codes, keys="ENCOUNTER", join_type="left outer")
    extract = extract.sort_by("ENCOUNTER")
    extract = extract.append_column("READMITTED_30D", _readmission_labels(extract))
    extract = _drop_subject_of_first(extract, ENCOUNTERS_WITHOUT_SUBJECT)

    ordered = encounters.column_names + [name for name in patients.column_names if name != "Id"]
    return extract.select([*ordered, "CONDITION_CODES", "READMITTED_30D"])


def write_encounter_extract(synthea_dir: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Write the extract as Parquet and return its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(build_encounter_extract(synthea_dir), target)
    return target


def _readmission_labels(extract: pa.Table) -> pa.Array:
    """For each encounter: does the same patient start an acute encounter within 30 days after it ends?"""
    acute_starts: dict[str, list[datetime]] = defaultdict(list)
    for patient, start, encounter_class in zip(
        extract["PATIENT"].to_pylist(),
        extract["START"].to_pylist(),
        extract["ENCOUNTERCLASS"].to_pylist(),
        strict=True,
    ):
        if encounter_class in ACUTE_CLASSES:
            acute_starts[patient].append(_parse(start))
    for starts in acute_starts.values():
        starts.sort()

    labels = []
    for patient, stop in zip(extract["PATIENT"].to_pylist(), extract["STOP"].to_pylist(), strict=True):
        starts = acute_starts.get(patient, [])
        ended = _parse(stop)
        following = bisect_right(starts, ended)
        labels.append(following < len(starts) and starts[following] - ended <= READMISSION_WINDOW)
    return pa.array(labels, pa.bool_())


def _drop_subject_of_first(extract: pa.Table, count: int) -> pa.Table:
    index = extract.schema.get_field_index("PATIENT")
    patients = extract["PATIENT"].to_pylist()
    patients[:count] = [None] * count
    return extract.set_column(index, "PATIENT", pa.array(patients, pa.string()))


def _parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
