"""The package is an Airflow provider: its entry point loads, names real modules, and Airflow lists it."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import airflow_phi_guard


def test_the_provider_entry_point_loads_and_every_named_module_imports():
    (entry,) = [
        point
        for point in entry_points(group="apache_airflow_provider")
        if point.value.startswith("airflow_phi_guard")
    ]
    info = entry.load()()

    assert info["package-name"] == "airflow-phi-guard"
    assert info["versions"] == [airflow_phi_guard.__version__]
    modules = [
        module
        for section in ("operators", "hooks")
        for group in info[section]
        for module in group["python-modules"]
    ]
    for module in modules:
        importlib.import_module(module)
    for connection in info["connection-types"]:
        module, _, name = connection["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == connection["connection-type"]


def test_airflow_providers_list_shows_the_package(tmp_path: Path):
    airflow = Path(sys.executable).with_name("airflow")
    environment = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}

    listed = subprocess.run(
        [str(airflow), "providers", "list", "--output", "json"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )

    providers = {
        entry["package_name"]: entry for entry in json.loads(listed.stdout[listed.stdout.index("[") :])
    }
    assert providers["airflow-phi-guard"]["version"] == airflow_phi_guard.__version__
