"""Benchmark of the audit over the lineage archive: its time follows the events it needs, not the archive.

Generates synthetic OpenLineage events in JSON lines: one audited model with a fixed number of governance
runs (START and COMPLETE, with the product's facets) and training runs that read their output, all within
the first three weeks, and, around it, other models' governance runs (never in those weeks) and Airflow
task events that read and write other datasets (spread over three years, those weeks included). It archives
them step by step into a fresh schema of a PostgreSQL server, the audited model's events in the first step
only, so that every step adds only events no audit below needs, and after each step (and a ``VACUUM
ANALYZE``, as autovacuum would run after a bulk load) measures, in the same process:

- three audits, each of a fixed set of needed events: the model (``ModelQuery``), one of its source
  columns (``ColumnQuery``) and the three weeks (``WindowQuery``, whose weeks hold more task events at
  every step); per audit the best wall time of ``answer(archive, query)`` (the indexed selects and the
  audit), the events it read, and from ``EXPLAIN (ANALYZE, BUFFERS)`` of each of its selects the scans
  used, the shared buffers touched and the server's execution time;
- the baseline: ``SELECT count(*)`` of the archive table, which any query that read the whole archive would
  at least cost (its best wall time and its buffers).

It prints JSON (and writes it with ``--output``): the machine, per size the load's seconds and each
measure, and per measure its growth from the first size to each later one. An audit's growth stays near
1 while the archive and the baseline grow tenfold per step. The schema is dropped at the end. Not part of
the test suite::

    .venv/bin/python benchmarks/audit_scale.py                                  # 10,000 and 100,000
    .venv/bin/python benchmarks/audit_scale.py --million --output benchmarks/results/audit_scale.json
    .venv/bin/python benchmarks/audit_scale.py --sizes 10000,50000 --url postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from airflow_phi_guard.lineage.archive import LineageArchive, _through_indexes
from airflow_phi_guard.lineage.audit import (
    AuditQuery,
    ColumnAudit,
    ColumnQuery,
    ModelQuery,
    WindowAudit,
    WindowQuery,
    answer,
)

REPOSITORY = Path(__file__).resolve().parent.parent
AUDITED = ("readmission-risk", "1")
AUDITED_RUNS = 20
START = datetime(2024, 1, 1, tzinfo=UTC)
#: The audited model's weeks: its runs only, among governance runs; task events of other DAGs as well.
WINDOW = (START, START + timedelta(days=21))
SPREAD_SECONDS = 3 * 365 * 86400
COLUMNS = [
    ("PATIENT", "PATIENT_KEY", "pseudonymize", "R"),
    ("BIRTHDATE", "AGE", "age", "C"),
    ("ZIP", "ZIP3", "zip3", "B"),
    ("GENDER", "GENDER", "keep", None),
]
DROPPED = [("SSN", "G"), ("FIRST", "A"), ("LAST", "A"), ("ADDRESS", "B")]
QUERIES: dict[str, AuditQuery] = {
    "model": ModelQuery(*AUDITED),
    "column": ColumnQuery(f"file:///extracts/{AUDITED[0]}.parquet", "ZIP"),
    "window": WindowQuery(*WINDOW),
}


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
        window_seconds = int((WINDOW[1] - WINDOW[0]).total_seconds())
        while written < count:
            if random.random() < 0.1:
                # other models' runs stay out of the audited weeks, so the window's needed events are fixed
                at = WINDOW[1] + timedelta(seconds=random.randrange(SPREAD_SECONDS - window_seconds))
                model = (f"other-model-{random.randrange(500)}", "1")
                for event in governance_events(model, written, at):
                    stream.write(json.dumps(event) + "\n")
                written += 2
            else:
                at = START + timedelta(seconds=random.randrange(SPREAD_SECONDS))
                number = random.randrange(10**9)
                stream.write(json.dumps(task_event([f"/raw/{number}"], [f"/derived/{number}"], at)) + "\n")
                written += 1
    return written


def best_seconds(action: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - began)
    return best


@contextmanager
def statements_of(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (with their parameters) sent through ``engine`` inside the block."""
    captured: list[tuple[str, Any]] = []

    def capture(connection, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        yield captured
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)


def plan_figures(engine: sa.Engine, statements: list[tuple[str, Any]]) -> dict[str, object]:
    """What ``EXPLAIN (ANALYZE, BUFFERS)`` says of the statements, planned as the archive plans them:
    scans, buffers, execution and planning time, and whether JIT compiled anything."""
    scans: list[str] = []
    buffers, milliseconds, planning, jit = 0, 0.0, 0.0, False

    def walk(node: dict) -> None:
        if "Scan" in node["Node Type"]:
            index = node.get("Index Name")
            scans.append(f"{node['Node Type']} using {index}" if index else node["Node Type"])
        for child in node.get("Plans", []):
            walk(child)

    with engine.connect() as connection, _through_indexes(connection):
        cursor = connection.connection.driver_connection.cursor()
        for statement, parameters in statements:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", parameters)
            (plan,) = cursor.fetchone()[0]
            walk(plan["Plan"])
            buffers += plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0)
            milliseconds += plan["Execution Time"]
            planning += plan.get("Planning Time", 0.0)
            jit = jit or "JIT" in plan
        connection.rollback()
    return {
        "selects": len(statements),
        "scans": sorted(set(scans)),
        "shared_buffers": buffers,
        "server_ms": round(milliseconds, 3),
        "planning_ms": round(planning, 3),
        "jit": jit,
    }


def runs_in(audit: Any) -> int:
    """How many runs an answer lists: the same at every size, or the audit went wrong."""
    if isinstance(audit, ColumnAudit):
        return sum(len(reach.runs) for reach in audit.reached)
    if isinstance(audit, WindowAudit):
        return sum(len(model.runs) for model in audit.models)
    return len(audit.runs)


def measure(archive: LineageArchive, engine: sa.Engine, repeat: int) -> dict[str, object]:
    """Every audit's and the baseline's figures over the archive as it is now."""
    figures: dict[str, object] = {}
    for name, query in QUERIES.items():
        with statements_of(archive._engine) as statements:
            needed = archive.events_for(query)
        audit = answer(archive, query)
        figures[name] = {
            "best_seconds": round(best_seconds(lambda query=query: answer(archive, query), repeat), 4),
            "events_read": len(needed),
            "runs_in_answer": runs_in(audit),
            **plan_figures(engine, statements),
        }
    with statements_of(archive._engine) as statements:
        rows = archive.count()
    figures["baseline_count"] = {
        "best_seconds": round(best_seconds(archive.count, repeat), 4),
        "rows": rows,
        **plan_figures(engine, statements),
    }
    return figures


def settle(engine: sa.Engine, table: str) -> None:
    """``VACUUM ANALYZE`` and ``CHECKPOINT``: the state autovacuum would leave, with no write in flight."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text(f"VACUUM (ANALYZE) {table}"))
        connection.execute(sa.text("CHECKPOINT"))


def machine(engine: sa.Engine) -> dict[str, object]:
    with engine.connect() as connection:
        server = connection.execute(sa.text("SELECT version()")).scalar_one()
        settings = {
            name: connection.execute(sa.text(f"SHOW {name}")).scalar_one()
            for name in ("shared_buffers", "work_mem", "maintenance_work_mem", "random_page_cost")
        }
    packages = {}
    for package in ("airflow-phi-guard", "sqlalchemy", "psycopg", "psycopg-binary"):
        try:
            packages[package] = version(package)
        except PackageNotFoundError:
            packages[package] = None
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        # Other work on a shared machine slows every measure: the load average says whether there was any.
        "load_average_1_5_15_min": [round(value, 2) for value in os.getloadavg()],
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "postgresql": server.split(" on ")[0],
        "postgresql_settings": settings,
        "packages": packages,
        "repository_commit": _git("rev-parse", "HEAD"),
        "repository_modified": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def growth(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per measure, its value at each size over its value at the first."""
    first = results[0]
    table: dict[str, dict[str, float]] = {}
    for later in results[1:]:
        label = f"{first['events_archived']}->{later['events_archived']}"
        ratios = {"archive": round(later["events_archived"] / first["events_archived"], 1)}
        for name in (*QUERIES, "baseline_count"):
            ratios[f"{name}_seconds"] = round(later[name]["best_seconds"] / first[name]["best_seconds"], 2)
            ratios[f"{name}_buffers"] = round(
                later[name]["shared_buffers"] / max(first[name]["shared_buffers"], 1), 2
            )
        table[label] = ratios
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="archive sizes in events (10000,100000)")
    parser.add_argument("--million", action="store_true", help="sizes 10,000, 100,000 and 1,000,000")
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=9, help="runs per timing; the best counts (9)")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    arguments = parser.parse_args()
    sizes = (
        [10_000, 100_000, 1_000_000] if arguments.million else [int(n) for n in arguments.sizes.split(",")]
    )
    if sizes != sorted(sizes) or len(sizes) < 2:
        parser.error("give at least two sizes, smallest first")
    random.seed(arguments.seed)

    began = datetime.now(UTC)
    engine = sa.create_engine(arguments.url)
    report: dict[str, Any] = {
        "started": began.isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/audit_scale.py", *sys.argv[1:]]),
        "machine": machine(engine),
        "window": [moment.isoformat() for moment in WINDOW],
    }
    schema = f"phi_guard_bench_{uuid.uuid4().hex[:8]}"
    table = f"{schema}.events"
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as folder, LineageArchive(arguments.url, table) as archive:
            archived = 0
            for step, size in enumerate(sizes):
                path = Path(folder) / f"step-{step}.jsonl"
                written = write_events(path, size - archived, audited=step == 0)
                loading = time.perf_counter()
                summary = archive.load([path])
                load_seconds = time.perf_counter() - loading
                path.unlink()
                archived += written
                settle(engine, table)
                results.append(
                    {
                        "events_archived": archived,
                        "events_loaded": summary.added,
                        "load_seconds": round(load_seconds, 2),
                        "loaded_events_per_second": round(summary.added / load_seconds),
                        **measure(archive, engine, arguments.repeat),
                    }
                )
                print(json.dumps(results[-1]), flush=True)
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()
    report["load_average_at_end_1_5_15_min"] = [round(value, 2) for value in os.getloadavg()]
    report["seconds"] = round((datetime.now(UTC) - began).total_seconds())
    report["sizes"] = results
    report["growth"] = growth(results)
    text = json.dumps(report, indent=2)
    print(text)
    if arguments.output is not None:
        arguments.output.write_text(text + "\n", encoding="utf-8")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git(*command: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPOSITORY), *command], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


if __name__ == "__main__":
    main()
