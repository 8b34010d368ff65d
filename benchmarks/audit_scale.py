"""Benchmark of the audit over the lineage archive: its time follows the events it needs, not the archive.

Generates synthetic OpenLineage events in JSON lines: one audited model with a fixed number of governance
runs (START and COMPLETE, with the product's facets) and training runs that read their output, and, around
it, other models' governance runs and Airflow task events that read and write other datasets. It archives
them in two steps into a fresh schema of a PostgreSQL server (first a tenth, then the rest) and after each
step times, in the same process,

- the audit of the one model from the archive (``answer(archive, ModelQuery(...))``: the indexed selects
  and the audit itself), best of several runs;
- the baseline: ``SELECT count(*)`` of the archive table, which any query that read the whole archive would
  at least cost,

and prints JSON: per size the events archived, the load's seconds, the audit's and the count's seconds, and
the events the audit read. The audit's time stays flat from one size to the next while the count grows with
the archive. The schema is dropped at the end. Not part of the test suite::

    .venv/bin/python benchmarks/audit_scale.py                 # 100,000 events
    .venv/bin/python benchmarks/audit_scale.py --million        # 1,000,000 events
    .venv/bin/python benchmarks/audit_scale.py --url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from airflow_phi_guard.lineage.archive import LineageArchive
from airflow_phi_guard.lineage.audit import ModelQuery, answer

AUDITED = ("readmission-risk", "1")
AUDITED_RUNS = 20
START = datetime(2024, 1, 1, tzinfo=UTC)
COLUMNS = [
    ("PATIENT", "PATIENT_KEY", "pseudonymize", "R"),
    ("BIRTHDATE", "AGE", "age", "C"),
    ("ZIP", "ZIP3", "zip3", "B"),
    ("GENDER", "GENDER", "keep", None),
]
DROPPED = [("SSN", "G"), ("FIRST", "A"), ("LAST", "A"), ("ADDRESS", "B")]


def governance_events(model: tuple[str, str], number: int, at: datetime) -> list[dict]:
    """START and COMPLETE of one published governance run, shaped as the product writes them."""
    run_id = str(uuid.UUID(int=random.getrandbits(128)))
    output = f"/governed/{model[0]}/{number}.parquet"
    policy = {
        "name": model[0],
        "version": 1,
        "digest": f"sha256:{random.getrandbits(256):064x}",
        "purpose": "model-training",
        "model": {"name": model[0], "version": model[1]},
        "recipient": "internal-ml-platform",
        "method": "expert-determination",
        "zip3Vintage": "census-2020",
        "consentBases": ["research-authorization", "irb-waiver"],
    }
    consent = {"asOf": "2026-12-01", "bases": policy["consentBases"], "rowsRead": 7584, "rowsAdmitted": 5132}
    columns = {
        "sourceDataset": {"namespace": "file", "name": f"/extracts/{model[0]}.parquet"},
        "columns": [
            {"name": out, "source": source, "treatment": treatment, "identifier": letter}
            for source, out, treatment, letter in COLUMNS
        ],
        "dropped": [{"source": source, "declared": True, "identifier": letter} for source, letter in DROPPED],
    }
    base = {
        "producer": "https://github.com/airflow-phi-guard/airflow-phi-guard/tree/0.1.0",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "job": {"namespace": "phi-guard", "name": f"apply.{model[0]}"},
        "inputs": [{"namespace": "file", "name": f"/extracts/{model[0]}.parquet"}],
    }
    start = {
        **base,
        "eventType": "START",
        "eventTime": at.isoformat(),
        "run": {"runId": run_id, "facets": {"phiGuard_policy": policy}},
        "outputs": [{"namespace": "file", "name": output}],
    }
    complete = {
        **base,
        "eventType": "COMPLETE",
        "eventTime": (at + timedelta(minutes=2)).isoformat(),
        "run": {
            "runId": run_id,
            "facets": {"phiGuard_policy": {**policy, "verdict": "published"}, "phiGuard_consent": consent},
        },
        "outputs": [{"namespace": "file", "name": output, "facets": {"phiGuard_columns": columns}}],
    }
    return [start, complete]


def task_event(inputs: list[str], outputs: list[str], at: datetime) -> dict:
    """A COMPLETE event as the Airflow OpenLineage provider writes one for a task."""
    return {
        "eventType": "COMPLETE",
        "eventTime": at.isoformat(),
        "producer": "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {
            "runId": str(uuid.UUID(int=random.getrandbits(128))),
            "facets": {"processing_engine": {"name": "Airflow", "version": "3.3.2"}},
        },
        "job": {"namespace": "default", "name": "some_dag.some_task"},
        "inputs": [{"namespace": "file", "name": name} for name in inputs],
        "outputs": [{"namespace": "file", "name": name} for name in outputs],
    }


def write_events(path: Path, count: int, *, audited: bool) -> int:
    """Write ``count`` events (about); the audited model's runs only when ``audited``. Returns the count."""
    written = 0
    with path.open("w", encoding="utf-8") as stream:
        if audited:
            for number in range(AUDITED_RUNS):
                at = START + timedelta(days=number)
                for event in governance_events(AUDITED, number, at):
                    stream.write(json.dumps(event) + "\n")
                training = task_event([f"/governed/{AUDITED[0]}/{number}.parquet"], [f"/models/{number}"], at)
                stream.write(json.dumps(training) + "\n")
                written += 3
        while written < count:
            at = START + timedelta(seconds=random.randrange(3 * 365 * 86400))
            if random.random() < 0.1:
                model = (f"other-model-{random.randrange(500)}", "1")
                for event in governance_events(model, written, at):
                    stream.write(json.dumps(event) + "\n")
                written += 2
            else:
                number = random.randrange(10**9)
                stream.write(json.dumps(task_event([f"/raw/{number}"], [f"/derived/{number}"], at)) + "\n")
                written += 1
    return written


def timed(action, repeat: int = 5) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - began)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events archived in all (100,000)")
    parser.add_argument("--million", action="store_true", help="archive 1,000,000 events")
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seed", type=int, default=6)
    arguments = parser.parse_args()
    total = 1_000_000 if arguments.million else arguments.events
    random.seed(arguments.seed)

    schema = f"phi_guard_bench_{uuid.uuid4().hex[:8]}"
    results = []
    try:
        with (
            tempfile.TemporaryDirectory() as folder,
            LineageArchive(arguments.url, f"{schema}.events") as archive,
        ):
            first, rest = Path(folder) / "first.jsonl", Path(folder) / "rest.jsonl"
            sizes = [(first, write_events(first, total // 10, audited=True))]
            sizes.append((rest, write_events(rest, total - sizes[0][1], audited=False)))
            archived = 0
            for path, count in sizes:
                began = time.perf_counter()
                archive.load([path])
                load_seconds = time.perf_counter() - began
                archived += count
                with archive._transaction() as connection:
                    connection.execute(sa.text(f"ANALYZE {schema}.events"))
                audit_seconds, audit = timed(lambda: answer(archive, ModelQuery(*AUDITED)))
                count_seconds, rows = timed(archive.count)
                needed = len(archive.events_for(ModelQuery(*AUDITED)))
                results.append(
                    {
                        "events_archived": rows,
                        "load_seconds": round(load_seconds, 2),
                        "audit_seconds": round(audit_seconds, 4),
                        "count_seconds": round(count_seconds, 4),
                        "events_the_audit_read": needed,
                        "audit_runs": len(audit.runs),
                    }
                )
    finally:
        engine = sa.create_engine(arguments.url)
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()
    small, large = results
    summary = {
        "sizes": results,
        "archive_growth": round(large["events_archived"] / small["events_archived"], 1),
        "audit_time_growth": round(large["audit_seconds"] / small["audit_seconds"], 2),
        "count_time_growth": round(large["count_seconds"] / small["count_seconds"], 2),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
