"""Benchmarks governance at scale: time against a bare pyarrow pass, peak memory, k-anonymity, import cost.

One command, every ratio taken within the same run (``make benchmark-scale``, or by hand)::

    .venv/bin/python benchmarks/scale.py [--sizes 1M,10M,30M] [--repeats 3,2,1]

For each size the generated set of ``benchmarks/generate.py`` is made if missing (or reused), then:

- **Governing against a bare pass.** In turn, each in a fresh process: the bare pass, a
  ``pyarrow.dataset`` scan of the extract's files, of the columns the plan reads, written to one
  Parquet file batch by batch; and the product, :func:`airflow_phi_guard.engine.executor.govern` with the
  demo policy (``dags/policies/readmission_risk.yaml``: consent, allowlist, treatments, value scan,
  surrogate codes, k-anonymity with suppression, subject manifest, write). Each pair gives a ratio
  bare / governed; the median and the spread are reported. A refused run stops the benchmark.
- **Peak resident memory** of each governed process (``ru_maxrss``), per size.
- **k-anonymity against DuckDB.** On the governed output: the project's
  :class:`~airflow_phi_guard.deid.risk.RiskAccumulator` fed the output's batches (read with pyarrow),
  against DuckDB's ``GROUP BY`` over the same quasi-identifier columns of the same file, alternated, in a
  process of their own; both must find the same k and number of classes.
- **Import cost of the operator module**, what DAG parsing pays: fresh interpreters running
  ``import airflow`` and ``import airflow; import airflow_phi_guard.operators.policy``, alternated; the
  difference of the medians.
- **Value scan against Presidio**: the figures of ``benchmarks/results/benchmark.json`` (``make
  benchmark``), copied with the digest they record; Presidio is not run here.

Results go to ``benchmarks/results/scale.json`` (with the machine, the versions and a digest of the
source) and ``benchmarks/results/scale-summary.txt``. Figures and names only: no value of the data.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import generate  # noqa: E402

POLICY = ROOT / "dags" / "policies" / "readmission_risk.yaml"
RESULTS = ROOT / "benchmarks" / "results"
PRESIDIO_RESULTS = RESULTS / "benchmark.json"
AS_OF = date(2026, 12, 1)
BATCH_ROWS = 64 * 1024
IMPORT_RUNS = 9
KANON_RUNS = 3

#: The issue's targets.
TARGETS = {
    "bare_over_governed_at_least": 0.5,
    "peak_resident_mib_below": 1024,
    "kanon_over_duckdb_at_most": 2.0,
    "operator_import_seconds_below": 0.3,
}


def _peak_resident_mib() -> float:
    # Linux reports ru_maxrss in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _read_columns(extract: Path) -> list[str]:
    """The columns the plan of the demo policy reads from the extract."""
    import pyarrow.dataset as pa_dataset

    from airflow_phi_guard.engine.plan import make_plan
    from airflow_phi_guard.policy.loader import load_policy

    return list(
        make_plan(load_policy(POLICY), pa_dataset.dataset(extract, format="parquet").schema).read_columns
    )


def child_bare(extract: Path, output: Path) -> dict[str, object]:
    """The bare pass: scan the planned columns of the extract's files and write them to one Parquet file."""
    import pyarrow as pa
    import pyarrow.dataset as pa_dataset
    import pyarrow.parquet as pq

    columns = _read_columns(extract)
    started = time.perf_counter()
    dataset = pa_dataset.dataset(extract, format="parquet")
    schema = pa.schema([dataset.schema.field(name) for name in columns])
    rows = 0
    with pq.ParquetWriter(output, schema) as writer:
        for batch in dataset.to_batches(columns=columns, batch_size=BATCH_ROWS):
            writer.write_batch(batch)
            rows += batch.num_rows
    return {"seconds": time.perf_counter() - started, "rows": rows, "peak_resident_mib": _peak_resident_mib()}


def child_govern(extract: Path, consent: Path, output: Path) -> dict[str, object]:
    """The product: the demo policy governing the extract, with a fresh surrogate mapping."""
    from airflow_phi_guard.engine.executor import govern
    from airflow_phi_guard.policy.loader import load_policy

    policy = load_policy(POLICY)
    mapping = output.with_name("surrogate-mapping.parquet")
    started = time.perf_counter()
    result = govern(
        policy,
        extract,
        output,
        consent=consent,
        as_of=AS_OF,
        manifest_key=os.urandom(32),
        surrogate_mapping=mapping,
        batch_rows=BATCH_ROWS,
    )
    seconds = time.perf_counter() - started
    report = result.report
    risk = report.risk
    return {
        "seconds": seconds,
        "verdict": str(report.verdict),
        "refusals": len(report.refusals),
        "rows_read": report.rows.read,
        "rows_admitted": report.rows.admitted,
        "rows_excluded": dict(report.rows.excluded),
        "rows_suppressed": report.rows.suppressed,
        "k": risk.k if risk is not None else None,
        "classes": risk.classes if risk is not None else None,
        "peak_resident_mib": _peak_resident_mib(),
    }


def child_kanon(output: Path) -> dict[str, object]:
    """k-anonymity of the governed output: the project's accumulator against DuckDB's GROUP BY."""
    import duckdb
    import pyarrow.dataset as pa_dataset

    from airflow_phi_guard.deid.risk import RiskAccumulator
    from airflow_phi_guard.policy.loader import load_policy

    thresholds = load_policy(POLICY).deidentification.risk_thresholds
    quasi_identifiers = list(thresholds.quasi_identifiers)
    columns = ", ".join(f'"{name}"' for name in quasi_identifiers)
    # NULLs group together in SQL, as a missing value is a value of its own in the accumulator
    query = f"SELECT min(n), count(*) FROM (SELECT count(*) AS n FROM read_parquet(?) GROUP BY {columns})"
    connection = duckdb.connect()

    def accumulator() -> tuple[float, int, int]:
        # the file read as DuckDB reads it, on every core, then fed batch by batch as the engine feeds it
        started = time.perf_counter()
        risk = RiskAccumulator(thresholds)
        for batch in pa_dataset.dataset(output, format="parquet").to_batches(columns=quasi_identifiers):
            risk.add(batch)
        measured = risk.measure()
        return time.perf_counter() - started, measured.k, measured.classes

    def sql() -> tuple[float, int, int]:
        started = time.perf_counter()
        k, classes = connection.execute(query, [str(output)]).fetchone()
        return time.perf_counter() - started, int(k), int(classes)

    sql()  # warms the file cache and DuckDB
    ours, theirs = [], []
    for _ in range(KANON_RUNS):
        theirs.append(sql())
        ours.append(accumulator())
    agree = {(k, classes) for _, k, classes in ours} == {(k, classes) for _, k, classes in theirs}
    return {
        "accumulator_seconds": [seconds for seconds, _, _ in ours],
        "duckdb_seconds": [seconds for seconds, _, _ in theirs],
        "duckdb_threads": int(connection.execute("SELECT current_setting('threads')").fetchone()[0]),
        "k": ours[0][1],
        "classes": ours[0][2],
        "same_k_and_classes": agree,
    }


def _child(kind: str, *arguments: Path) -> dict[str, object]:
    """Run one measurement in a fresh interpreter, so that its peak memory is its own."""
    completed = subprocess.run(
        [sys.executable, __file__, "--child", kind, *map(str, arguments)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _import_seconds(runs: int) -> dict[str, object]:
    """Wall time of fresh interpreters importing Airflow, with and without the operator module."""
    home = tempfile.mkdtemp(prefix="phi-guard-import-")
    environment = {**os.environ, "AIRFLOW_HOME": home, "PYTHONDONTWRITEBYTECODE": "0"}
    # The second command also prints how long its own import of the operator module took, a figure that
    # the noise of two interpreter start-ups does not blur.
    commands = {
        "airflow": "import airflow",
        "airflow_and_operator": (
            "import time; import airflow; started = time.perf_counter(); "
            "import airflow_phi_guard.operators.policy; print(time.perf_counter() - started)"
        ),
    }
    # Once each unmeasured: the first import writes bytecode caches and the configuration.
    for code in commands.values():
        subprocess.run([sys.executable, "-c", code], check=True, env=environment, capture_output=True)
    times: dict[str, list[float]] = {name: [] for name in commands}
    in_process = []
    for _ in range(runs):
        for name, code in commands.items():
            started = time.perf_counter()
            completed = subprocess.run(
                [sys.executable, "-c", code], check=True, env=environment, capture_output=True, text=True
            )
            times[name].append(time.perf_counter() - started)
            if name == "airflow_and_operator":
                in_process.append(float(completed.stdout.strip().splitlines()[-1]))
    shutil.rmtree(home, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "runs": runs,
        "seconds": times,
        "median_seconds": medians,
        "operator_beyond_airflow_seconds": medians["airflow_and_operator"] - medians["airflow"],
        "operator_import_in_process_seconds": _spread(in_process),
    }


def _presidio() -> dict[str, object] | None:
    """The value-scan figures of the last ``make benchmark``, as it recorded them."""
    if not PRESIDIO_RESULTS.exists():
        return None
    recorded = json.loads(PRESIDIO_RESULTS.read_text())
    return {
        "source": str(PRESIDIO_RESULTS.relative_to(ROOT)),
        "started": recorded.get("started"),
        "repository_commit": recorded.get("machine", {}).get("repository_commit"),
        "detectors_sha256": recorded.get("product", {}).get("source_sha256"),
        "speed_ratio": {
            against: figures.get("speed_ratio")
            for against, figures in recorded.get("targets", {}).get("against", {}).items()
        },
        "speed_ratio_target": recorded.get("targets", {}).get("speed_ratio_target"),
    }


def _source_digest() -> str:
    """SHA-256 over the package's Python files and the benchmark's own, by path and content."""
    digest = hashlib.sha256()
    files = sorted((ROOT / "src" / "airflow_phi_guard").rglob("*.py"))
    files += [ROOT / "benchmarks" / "generate.py", Path(__file__).resolve(), POLICY]
    for path in files:
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _git(*arguments: str) -> str:
    completed = subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=False)
    return completed.stdout.strip()


def _machine() -> dict[str, object]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("airflow-phi-guard", "pyarrow", "numpy", "duckdb", "apache-airflow", "pydantic"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": versions,
    }


def _size(text: str) -> int:
    text = text.strip().upper()
    factor = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KM")) * factor)


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_size(rows: int, repeats: int, out: Path) -> dict[str, object]:
    """Every figure of one size: the pairs of bare and governed runs, then k-anonymity on the output."""
    generated = generate.generate(rows, out=out)
    work = Path(tempfile.mkdtemp(prefix=f"phi-guard-scale-{rows}-"))
    try:
        pairs = []
        for repeat in range(repeats):
            load = os.getloadavg()[0]
            bare = _child("bare", generated.extract, work / "bare.parquet")
            (work / "bare.parquet").unlink()
            governed_dir = work / f"governed-{repeat}"
            governed_dir.mkdir()
            governed = _child("govern", generated.extract, generated.consent, governed_dir / "out.parquet")
            if governed["verdict"] != "published":
                raise SystemExit(f"the governed run of {rows} rows was refused: the benchmark stops")
            pairs.append(
                {
                    "load_average_before": load,
                    "bare": bare,
                    "governed": governed,
                    "ratio": bare["seconds"] / governed["seconds"],
                }
            )
            print(
                f"  {rows:>11,} rows, run {repeat + 1}: bare {bare['seconds']:.1f} s, governed "
                f"{governed['seconds']:.1f} s, ratio {bare['seconds'] / governed['seconds']:.2f}, peak "
                f"{governed['peak_resident_mib']:.0f} MiB, load {load:.1f}",
                flush=True,
            )
            if repeat < repeats - 1:
                shutil.rmtree(governed_dir)
        kanon = _child("kanon", work / f"governed-{repeats - 1}" / "out.parquet")
        ours, theirs = (
            statistics.median(kanon["accumulator_seconds"]),
            statistics.median(kanon["duckdb_seconds"]),
        )
        kanon["ratio_to_duckdb"] = ours / theirs
        kanon["ratio_to_duckdb_per_run"] = [
            a / b for a, b in zip(kanon["accumulator_seconds"], kanon["duckdb_seconds"], strict=True)
        ]
        print(
            f"  {rows:>11,} rows, k-anonymity: accumulator {ours:.2f} s, DuckDB {theirs:.2f} s "
            f"({kanon['duckdb_threads']} threads), ratio {ours / theirs:.2f}, same result "
            f"{kanon['same_k_and_classes']}",
            flush=True,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = [pair["ratio"] for pair in pairs]
    peaks = [pair["governed"]["peak_resident_mib"] for pair in pairs]
    return {
        "rows": rows,
        "patients": generated.manifest["patients"],
        "files": generated.manifest["files"],
        "dataset_digest": generated.manifest["digest"],
        "runs": pairs,
        "ratio_bare_over_governed": _spread(ratios),
        "governed_peak_resident_mib": _spread(peaks),
        "bare_peak_resident_mib": _spread([pair["bare"]["peak_resident_mib"] for pair in pairs]),
        "kanon": kanon,
    }


def _summary(result: dict[str, object]) -> str:
    lines = [
        f"Scale benchmark, {result['started']}, {result['machine']['cpu']}, "
        f"{result['machine']['usable_cores']} cores, load average {result['load_average_start']:.1f} at "
        "start",
        "",
        "rows        | bare/governed median (min-max) | governed peak MiB | k-anon/DuckDB | same k",
    ]
    for size in result["sizes"]:
        ratio, peak = size["ratio_bare_over_governed"], size["governed_peak_resident_mib"]
        lines.append(
            f"{size['rows']:>11,} | {ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f}), "
            f"{len(size['runs'])} run(s) | {peak['max']:.0f} | {size['kanon']['ratio_to_duckdb']:.2f} | "
            f"{size['kanon']['same_k_and_classes']}"
        )
    imports = result["imports"]
    lines += [
        "",
        f"operator import beyond Airflow: {imports['operator_beyond_airflow_seconds']:.3f} s (median of "
        f"{imports['runs']}: {imports['median_seconds']['airflow']:.3f} s vs "
        f"{imports['median_seconds']['airflow_and_operator']:.3f} s); timed inside the interpreter, after "
        f"Airflow: median {imports['operator_import_in_process_seconds']['median']:.3f} s",
    ]
    presidio = result["presidio"]
    if presidio is not None:
        lines.append(f"value scan vs Presidio (from {presidio['source']}, {presidio['started']}):")
        for against, ratios in presidio["speed_ratio"].items():
            shown = ", ".join(f"{name} {value:.0f}x" for name, value in (ratios or {}).items())
            lines.append(f"  {against}: {shown}")
    lines += ["", "targets:"]
    for name, met in result["targets_met"].items():
        lines.append(f"  {name}: {'met' if met else 'NOT met'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, or one of its child measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1M,10M,30M", help="rows per set, comma-separated (1M, 250K, 5000)"
    )
    parser.add_argument(
        "--repeats", default="3,2,1", help="bare and governed pairs per size: one number, or one per size"
    )
    parser.add_argument("--import-runs", type=int, default=IMPORT_RUNS)
    parser.add_argument("--data", type=Path, default=generate.DEFAULT_OUT, help="where generated sets live")
    parser.add_argument("--output", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--summary", type=Path, default=RESULTS / "scale-summary.txt")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)

    if arguments.child:
        kind, *paths = arguments.child
        function = {"bare": child_bare, "govern": child_govern, "kanon": child_kanon}[kind]
        print(json.dumps(function(*map(Path, paths))))
        return 0

    sizes = [_size(text) for text in arguments.sizes.split(",")]
    repeats = [int(text) for text in arguments.repeats.split(",")]
    if len(repeats) == 1:
        repeats = repeats * len(sizes)
    if len(repeats) != len(sizes):
        parser.error("--repeats takes one number or one per size")

    result: dict[str, object] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": _machine(),
        "repository_commit": _git("rev-parse", "HEAD"),
        "repository_modified": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "source_sha256": _source_digest(),
        "load_average_start": os.getloadavg()[0],
        "policy": str(POLICY.relative_to(ROOT)),
        "batch_rows": BATCH_ROWS,
        "targets": TARGETS,
    }
    print(f"scale benchmark: sizes {sizes}, repeats {repeats}", flush=True)
    result["sizes"] = [
        measure_size(rows, count, arguments.data) for rows, count in zip(sizes, repeats, strict=True)
    ]
    result["imports"] = _import_seconds(arguments.import_runs)
    result["presidio"] = _presidio()
    result["load_average_end"] = os.getloadavg()[0]

    peaks = [size["governed_peak_resident_mib"]["max"] for size in result["sizes"]]
    result["targets_met"] = {
        "bare/governed at least 0.5 (median, every size)": all(
            size["ratio_bare_over_governed"]["median"] >= TARGETS["bare_over_governed_at_least"]
            for size in result["sizes"]
        ),
        "governed peak memory under 1 GiB (every run)": max(peaks) < TARGETS["peak_resident_mib_below"],
        "k-anonymity at most 2x DuckDB (median, every size)": all(
            size["kanon"]["ratio_to_duckdb"] <= TARGETS["kanon_over_duckdb_at_most"]
            for size in result["sizes"]
        ),
        "operator import under 0.3 s beyond Airflow": result["imports"]["operator_beyond_airflow_seconds"]
        < TARGETS["operator_import_seconds_below"],
    }
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(result, indent=2) + "\n")
    summary = _summary(result)
    arguments.summary.write_text(summary)
    print(summary, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
