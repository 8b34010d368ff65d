"""The distribution: `python -m build` makes a wheel and an sdist that twine accepts, and the wheel alone,
installed into a fresh virtual environment, runs the demo."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import airflow_phi_guard
from tests.conftest import REPO

PACKAGE = REPO / "src" / "airflow_phi_guard"
CONSTRAINTS = REPO / "constraints.txt"
#: Files the package reads at run time, beside its modules: every one must be in the wheel.
PACKAGE_DATA = ("lineage/schemas", "deid/data", "quality/static", "policy/schema")


@dataclass(frozen=True)
class Distribution:
    """What one `python -m build` made."""

    wheel: Path
    sdist: Path


def _run(command: list[str], **options) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(command, capture_output=True, text=True, check=False, **options)
    assert completed.returncode == 0, (
        f"{command[:3]} failed:\n{(completed.stdout + completed.stderr)[-4000:]}"
    )
    return completed


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Distribution:
    """The sdist, and the wheel build makes from that sdist, as CI would build them."""
    out = tmp_path_factory.mktemp("dist")
    # The isolated build environment gets its hatchling through pip, pinned like everything else.
    environment = {**os.environ, "PIP_CONSTRAINT": str(CONSTRAINTS)}
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], env=environment, timeout=600)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Distribution(wheel, sdist)


def _package_files(folder: str) -> set[str]:
    """The files of one data folder of the source package, as paths inside the wheel."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in (PACKAGE / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_both_are_named_for_this_version(distribution: Distribution):
    version = airflow_phi_guard.__version__
    assert distribution.wheel.name == f"airflow_phi_guard-{version}-py3-none-any.whl"
    assert distribution.sdist.name == f"airflow_phi_guard-{version}.tar.gz"


def test_twine_accepts_both(distribution: Distribution):
    checked = _run(
        [
            sys.executable,
            "-m",
            "twine",
            "check",
            "--strict",
            str(distribution.wheel),
            str(distribution.sdist),
        ],
        timeout=120,
    )
    assert checked.stdout.count("PASSED") == 2


def test_the_wheel_holds_the_package_data_and_its_entry_points(distribution: Distribution):
    with zipfile.ZipFile(distribution.wheel) as wheel:
        names = set(wheel.namelist())
        info = f"airflow_phi_guard-{airflow_phi_guard.__version__}.dist-info"
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = wheel.read(f"{info}/METADATA").decode()

    for folder in PACKAGE_DATA:
        expected = _package_files(folder)
        assert expected, folder
        assert expected <= names, sorted(expected - names)[:10]
    # the facet schemas of both versions, and the three ZIP3 vintages
    assert any(name.startswith("airflow_phi_guard/lineage/schemas/1-0-1/") for name in names)
    for vintage in ("2000", "2010", "2020"):
        assert f"airflow_phi_guard/deid/data/zip3-census-{vintage}.json" in names
    assert "airflow_phi_guard/quality/static/vendor/bootstrap@4.3.1/css/bootstrap.min.css" in names
    # nothing but the package: no tests, no bytecode
    assert {name.split("/")[0] for name in names} == {"airflow_phi_guard", info}
    assert not any(name.endswith(".pyc") for name in names)

    assert "provider_info = airflow_phi_guard:get_provider_info" in entry_points
    assert "phi_guard = airflow_phi_guard.operators.cluster_policy" in entry_points
    assert "phi-guard = airflow_phi_guard.cli:main" in entry_points
    assert "Description-Content-Type: text/markdown" in metadata
    assert "License-Expression: Apache-2.0" in metadata


def test_the_sdist_holds_what_make_test_and_make_demo_need(distribution: Distribution):
    root = f"airflow_phi_guard-{airflow_phi_guard.__version__}"
    with tarfile.open(distribution.sdist) as sdist:
        names = {name.removeprefix(f"{root}/") for name in sdist.getnames()}

    for path in (
        "pyproject.toml",
        "constraints.txt",
        "Makefile",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "scripts/run-demo",
        "dags/readmission_training.py",
        "dags/policies/readmission_risk.yaml",
        "data/synthea-nebraska/encounters.csv",
        "tests/conftest.py",
        "tests/test_package.py",
        "docs/data-docs.md",
        "expectations/readmission-risk.json",
        "src/airflow_phi_guard/__init__.py",
    ):
        assert path in names, path
    assert not any(name.startswith((".venv/", "demo-output/", ".airflow/")) for name in names)


@pytest.mark.system
def test_the_wheel_in_a_fresh_virtual_environment_runs_the_demo(distribution: Distribution, tmp_path: Path):
    """Slow (minutes): installs the wheel and its pinned dependencies from the package index into an
    empty virtual environment, then runs `scripts/run-demo` with that environment's commands."""
    started = time.monotonic()
    environment_folder = tmp_path / "venv"
    venv.create(environment_folder, with_pip=True, system_site_packages=False)
    python = environment_folder / "bin" / "python"
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--constraint", str(CONSTRAINTS),
         f"{distribution.wheel}[demo]"],
        timeout=1200,
    )  # fmt: skip
    installed = time.monotonic()

    # the package comes from the wheel in the new environment, not from the source tree
    where = _run(
        [str(python), "-c", "import airflow_phi_guard; print(airflow_phi_guard.__file__)"],
        cwd=tmp_path,
        timeout=60,
    )
    assert Path(where.stdout.strip()).is_relative_to(environment_folder)

    output, airflow_home = tmp_path / "demo-output", tmp_path / "airflow-home"
    environment = {
        **{name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"},
        "PHI_GUARD_VENV": str(environment_folder),
        "PHI_GUARD_DEMO_OUTPUT": str(output),
        "PHI_GUARD_AIRFLOW_HOME": str(airflow_home),
    }
    demo = subprocess.run(
        [str(REPO / "scripts" / "run-demo")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    console = demo.stdout + demo.stderr
    assert demo.returncode == 0, console[-4000:]
    print(f"install {installed - started:.0f} s, demo {time.monotonic() - installed:.0f} s")

    # the run's governance used the wheel's ZIP3 table (the report names its digest), and the DAG ran on
    # the new environment's Airflow, not on the one of the source tree
    report = json.loads((output / "reports" / "readmission_risk.json").read_text())
    with zipfile.ZipFile(distribution.wheel) as wheel:
        table = wheel.read(f"airflow_phi_guard/deid/data/zip3-{report['zip3']['vintage']}.json")
    assert report["verdict"] == "published"
    assert report["zip3"]["sha256"] == hashlib.sha256(table).hexdigest()
    assert str(REPO / ".venv") not in (airflow_home / "dags-test.log").read_text()
    for result in ("data-docs/index.html", "models/readmission-risk-1.joblib", "audit-trail.jsonl"):
        assert (output / result).is_file(), result
    audit = json.loads((output / "audit.json").read_text())
    assert audit["model"] == {"name": "readmission-risk", "version": "1"}
