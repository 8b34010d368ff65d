"""Run the README's demo script (the example DAG through ``airflow dags test``) into a test's own folder."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

DEMO_SCRIPT = REPO / "scripts" / "run-demo"


@dataclass(frozen=True)
class DemoRun:
    """What one run of the demo left: its exit status, its console output, and its folders."""

    returncode: int
    console: str
    output: Path
    airflow_home: Path

    @property
    def events(self) -> Path:
        return self.output / "lineage" / "events.jsonl"


def run_demo(workdir: Path, *, synthea: Path | None = None) -> DemoRun:
    """Run ``scripts/run-demo`` with its output and AIRFLOW_HOME under ``workdir``.

    :param workdir: an empty folder of the test's own.
    :param synthea: another Synthea export to govern instead of the bundled one.
    """
    output, airflow_home = workdir / "demo-output", workdir / "airflow-home"
    environment = {
        **os.environ,
        "PHI_GUARD_DEMO_OUTPUT": str(output),
        "PHI_GUARD_AIRFLOW_HOME": str(airflow_home),
    }
    if synthea is not None:
        environment["PHI_GUARD_DEMO_SYNTHEA"] = str(synthea)
    completed = subprocess.run(
        [str(DEMO_SCRIPT)], env=environment, capture_output=True, text=True, timeout=600, check=False
    )
    return DemoRun(completed.returncode, completed.stdout + completed.stderr, output, airflow_home)
