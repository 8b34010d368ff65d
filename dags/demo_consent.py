"""The demo's consent registry: a deterministic, synthetic set of permissions for the Synthea patients.

Every patient gets one scenario: a set of registry rows that, under the demo policy (research
authorization or IRB waiver, purpose ``model-training``, as of 2026-12-01), admits the patient or
excludes them for one reason. About 70% are admitted; every consent basis and every exclusion reason a
registry can cause occurs at least once as soon as there are as many patients as scenarios.

Assignment is deterministic and free of random state: patients are ranked by a SHA-256 of their id, the
first ranks take the rare scenarios (one or a few patients each) and the rest are shared out by weight.
The same set of ids therefore gets the same scenarios in any order, and the same list of ids gives a
byte-identical file. Dates are offsets from the as-of date drawn from the same hash. The module imports
neither Airflow nor pandas, so the Makefile and the tests can run it as a plain script::

    python dags/demo_consent.py data/synthea-nebraska/patients.csv demo-output/consent.csv 2026-12-01
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa

from airflow_phi_guard.consent.registry import PURPOSE_SEPARATOR, REGISTRY_COLUMNS
from airflow_phi_guard.policy.models import ConsentBasis

#: The date the demo decides consent at, and the reference date of its ages.
DEMO_AS_OF = date(2026, 12, 1)
#: The bases the demo policy accepts.
DEMO_BASES = (ConsentBasis.RESEARCH_AUTHORIZATION, ConsentBasis.IRB_WAIVER)
#: The demo policy's purpose.
DEMO_PURPOSE = "model-training"

REGISTRY_SCHEMA = pa.schema(
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

# The document behind each basis, as a prefix of its synthetic reference.
_REFERENCE_PREFIX = {
    ConsentBasis.RESEARCH_AUTHORIZATION: "AUTH",
    ConsentBasis.IRB_WAIVER: "IRB",
    ConsentBasis.LIMITED_DATA_SET: "DUA",
    ConsentBasis.HEALTH_CARE_OPERATIONS: "HCO",
    ConsentBasis.BUSINESS_ASSOCIATE: "BAA",
    ConsentBasis.TREATMENT_CONSENT: "TC",
    ConsentBasis.OPT_OUT: "OPT",
}

_HASH_SALT = b"airflow-phi-guard demo consent v1:"


class Grant(NamedTuple):
    """One registry row of a scenario, before it gets its subject and reference."""

    basis: ConsentBasis
    purposes: tuple[str, ...]
    granted_at: date
    expires_at: date | None = None
    revoked_at: date | None = None


class _Draw:
    """Day offsets taken from a patient's hash, a few bits at a time, so that dates vary by patient."""

    def __init__(self, digest: bytes, as_of: date) -> None:
        self._bits = int.from_bytes(digest, "big")
        self.as_of = as_of

    def days(self, low: int, high: int) -> int:
        span = high - low + 1
        value = low + self._bits % span
        self._bits //= span
        return value

    def before(self, low: int, high: int) -> date:
        """A date between ``low`` and ``high`` days before the as-of date."""
        return self.as_of - timedelta(days=self.days(low, high))

    def after(self, low: int, high: int) -> date:
        """A date between ``low`` and ``high`` days after the as-of date."""
        return self.as_of + timedelta(days=self.days(low, high))


# Each scenario: the rows one patient gets. Research purposes name model-training unless the scenario is
# about a purpose that is not covered.
_RESEARCH = ("research", "model-training")
_TRAINING = ("model-training",)


def _research_authorization(draw: _Draw) -> list[Grant]:
    expires_at = draw.after(30, 1500) if draw.days(0, 1) else None
    return [Grant(ConsentBasis.RESEARCH_AUTHORIZATION, _RESEARCH, draw.before(30, 2500), expires_at)]


def _irb_waiver(draw: _Draw) -> list[Grant]:
    expires_at = draw.after(30, 900) if draw.days(0, 2) else None
    return [Grant(ConsentBasis.IRB_WAIVER, _TRAINING, draw.before(30, 2000), expires_at)]


def _treatment_and_research(draw: _Draw) -> list[Grant]:
    treatment = Grant(ConsentBasis.TREATMENT_CONSENT, ("treatment",), draw.before(100, 4000))
    return [treatment, *_research_authorization(draw)]


def _revoked_then_granted_again(draw: _Draw) -> list[Grant]:
    revoked_at = draw.before(400, 900)
    granted_at = revoked_at - timedelta(days=draw.days(30, 700))
    first = Grant(ConsentBasis.RESEARCH_AUTHORIZATION, _RESEARCH, granted_at, revoked_at=revoked_at)
    again = Grant(ConsentBasis.RESEARCH_AUTHORIZATION, _RESEARCH, draw.before(30, 300))
    return [first, again]


def _opt_out_withdrawn(draw: _Draw) -> list[Grant]:
    revoked_at = draw.before(100, 500)
    granted_at = revoked_at - timedelta(days=draw.days(30, 400))
    return [Grant(ConsentBasis.OPT_OUT, _RESEARCH, granted_at, revoked_at=revoked_at), *_irb_waiver(draw)]


def _opted_out(draw: _Draw) -> list[Grant]:
    return [*_research_authorization(draw), Grant(ConsentBasis.OPT_OUT, _RESEARCH, draw.before(1, 300))]


def _no_record(draw: _Draw) -> list[Grant]:
    return []


def _treatment_only(draw: _Draw) -> list[Grant]:
    return [Grant(ConsentBasis.TREATMENT_CONSENT, ("treatment",), draw.before(100, 4000))]


def _limited_data_set(draw: _Draw) -> list[Grant]:
    return [Grant(ConsentBasis.LIMITED_DATA_SET, _RESEARCH, draw.before(30, 1500), draw.after(100, 900))]


def _health_care_operations(draw: _Draw) -> list[Grant]:
    purposes = ("quality-improvement", "model-training")
    return [Grant(ConsentBasis.HEALTH_CARE_OPERATIONS, purposes, draw.before(30, 1500))]


def _business_associate(draw: _Draw) -> list[Grant]:
    return [Grant(ConsentBasis.BUSINESS_ASSOCIATE, _TRAINING, draw.before(30, 1500), draw.after(100, 900))]


def _purpose_not_covered(draw: _Draw) -> list[Grant]:
    return [Grant(ConsentBasis.RESEARCH_AUTHORIZATION, ("registry-research",), draw.before(30, 2000))]


def _not_yet_valid(draw: _Draw) -> list[Grant]:
    return [Grant(ConsentBasis.RESEARCH_AUTHORIZATION, _RESEARCH, draw.after(1, 120))]


def _expired(draw: _Draw) -> list[Grant]:
    expires_at = draw.before(1, 365)
    granted_at = expires_at - timedelta(days=draw.days(180, 1500))
    return [Grant(ConsentBasis.RESEARCH_AUTHORIZATION, _RESEARCH, granted_at, expires_at)]


def _revoked(draw: _Draw) -> list[Grant]:
    revoked_at = draw.before(1, 365)
    granted_at = revoked_at - timedelta(days=draw.days(30, 1500))
    return [Grant(ConsentBasis.IRB_WAIVER, _TRAINING, granted_at, revoked_at=revoked_at)]


#: The scenarios in the order the hash ranks take them (rare ones first) and their share in percent.
SCENARIOS: tuple[tuple[str, int, Callable[[_Draw], list[Grant]]], ...] = (
    ("opted-out", 4, _opted_out),
    ("no-record", 5, _no_record),
    ("treatment-consent-only", 3, _treatment_only),
    ("limited-data-set-only", 2, _limited_data_set),
    ("health-care-operations-only", 2, _health_care_operations),
    ("business-associate-only", 2, _business_associate),
    ("purpose-not-covered", 3, _purpose_not_covered),
    ("not-yet-valid", 3, _not_yet_valid),
    ("expired", 3, _expired),
    ("revoked", 3, _revoked),
    ("revoked-then-granted-again", 3, _revoked_then_granted_again),
    ("opt-out-withdrawn", 2, _opt_out_withdrawn),
    ("treatment-consent-and-research-authorization", 5, _treatment_and_research),
    ("irb-waiver", 20, _irb_waiver),
    ("research-authorization", 40, _research_authorization),
)


def build_demo_consent_registry(patient_ids: Sequence[str], as_of: date) -> pa.Table:
    """Build the demo registry for a list of patients, in the registry format.

    :param patient_ids: the patients' ids; blanks and repeats are skipped, the rest keep their order.
    :param as_of: the date the scenarios are built around.
    :returns: a table with :data:`REGISTRY_SCHEMA`, the rows of each patient together, in input order.
    """
    patients = _distinct(patient_ids)
    digests = {patient: hashlib.sha256(_HASH_SALT + patient.encode("utf-8")).digest() for patient in patients}
    scenario_of = _assign(sorted(patients, key=lambda patient: (digests[patient], patient)))

    rows: list[dict[str, object]] = []
    for patient in patients:
        for grant in scenario_of[patient](_Draw(digests[patient], as_of)):
            reference = f"{_REFERENCE_PREFIX[grant.basis]}-{len(rows) + 1:06d}"
            rows.append(
                {
                    "subject_id": patient,
                    "basis": grant.basis.value,
                    "purposes": list(grant.purposes),
                    "granted_at": grant.granted_at,
                    "expires_at": grant.expires_at,
                    "revoked_at": grant.revoked_at,
                    "reference": reference,
                }
            )
    return pa.Table.from_pylist(rows, schema=REGISTRY_SCHEMA)


def write_demo_consent_registry(
    patients_csv: str | os.PathLike[str], path: str | os.PathLike[str], as_of: date = DEMO_AS_OF
) -> pa.Table:
    """Write the demo registry for the patients of a Synthea ``patients.csv`` as a CSV registry.

    The file is written to a temporary name beside ``path`` and renamed into place, so a reader never
    sees half of it.

    :param patients_csv: a Synthea patients file; its ``Id`` column names the patients.
    :param path: the CSV file to write; its folder is created if needed.
    :param as_of: the date the scenarios are built around.
    :returns: the registry that was written.
    """
    table = build_demo_consent_registry(_patient_ids(patients_csv), as_of)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(REGISTRY_COLUMNS)
            for row in table.to_pylist():
                writer.writerow([_csv_cell(row[name]) for name in REGISTRY_COLUMNS])
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return table


def load_demo_consent_registry(table: pa.Table, connection: Any, registry_table: str) -> int:
    """Load the demo registry into a PostgreSQL table, replacing it: the demo's stand-in for a database.

    :param table: the registry, as :func:`build_demo_consent_registry` returns it.
    :param connection: an open DB-API connection to PostgreSQL (psycopg), committed here.
    :param registry_table: ``schema.table``; the schema is created if needed.
    :returns: the number of rows loaded.
    """
    schema, _, name = registry_table.rpartition(".")
    if not all(part.replace("_", "").isalnum() for part in (schema or "public", name)):
        raise ValueError("the registry table must be schema.table of letters, digits and underscores")
    cursor = connection.cursor()
    if schema:
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    cursor.execute(f"DROP TABLE IF EXISTS {registry_table}")
    cursor.execute(
        f"CREATE TABLE {registry_table} (subject_id text, basis text, purposes text[], granted_at date, "
        "expires_at date, revoked_at date, reference text)"
    )
    rows = [tuple(row[column] for column in REGISTRY_COLUMNS) for row in table.to_pylist()]
    cursor.executemany(f"INSERT INTO {registry_table} VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    connection.commit()
    cursor.close()
    return len(rows)


def _distinct(patient_ids: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for patient in patient_ids:
        text = str(patient).strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def _assign(ranked: Sequence[str]) -> dict[str, Callable[[_Draw], list[Grant]]]:
    """Give each patient, in hash-rank order, a scenario: the rare scenarios take the first ranks."""
    quotas = _quotas(len(ranked))
    assignment: dict[str, Callable[[_Draw], list[Grant]]] = {}
    position = 0
    for (_name, _share, build), quota in zip(SCENARIOS, quotas, strict=True):
        for patient in ranked[position : position + quota]:
            assignment[patient] = build
        position += quota
    return assignment


def _quotas(count: int) -> list[int]:
    """Patients per scenario: by share with the largest remainders, but at least one each while they last."""
    if count < len(SCENARIOS):
        return [1 if position < count else 0 for position in range(len(SCENARIOS))]
    total = sum(share for _name, share, _build in SCENARIOS)
    exact = [count * share / total for _name, share, _build in SCENARIOS]
    quotas = [int(value) for value in exact]
    by_remainder = sorted(range(len(SCENARIOS)), key=lambda index: (quotas[index] - exact[index], index))
    for index in by_remainder[: count - sum(quotas)]:
        quotas[index] += 1
    # A rare scenario rounded down to nobody borrows its patient from the largest one.
    for index, quota in enumerate(quotas):
        if quota == 0:
            quotas[index] = 1
            quotas[quotas.index(max(quotas))] -= 1
    return quotas


def _patient_ids(patients_csv: str | os.PathLike[str]) -> list[str]:
    import pyarrow.csv as pa_csv

    table = pa_csv.read_csv(
        patients_csv,
        read_options=pa_csv.ReadOptions(use_threads=False),
        convert_options=pa_csv.ConvertOptions(include_columns=["Id"], column_types={"Id": pa.string()}),
    )
    return [patient for patient in table.column("Id").to_pylist() if patient is not None]


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return PURPOSE_SEPARATOR.join(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def main(arguments: Sequence[str]) -> int:
    """Write the demo registry: ``demo_consent.py PATIENTS_CSV OUTPUT_CSV [AS_OF]``."""
    if len(arguments) not in (2, 3):
        print(main.__doc__, file=sys.stderr)
        return 2
    as_of = date.fromisoformat(arguments[2]) if len(arguments) == 3 else DEMO_AS_OF
    table = write_demo_consent_registry(arguments[0], arguments[1], as_of)
    print(f"wrote {table.num_rows} consent records to {arguments[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
