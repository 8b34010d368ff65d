"""The docs site builds without a warning, and its references name every policy key and facet field."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from airflow_phi_guard.policy.models import Policy

DOCS = Path(__file__).resolve().parents[1] / "docs"


class _Page(HTMLParser):
    """The text of every ``<code>`` element of a page, and the first-column code of each table's rows."""

    def __init__(self) -> None:
        super().__init__()
        self.codes: list[str] = []
        self.tables: list[list[str]] = []
        self._code_depth = 0
        self._code: list[str] = []
        self._cell = -1
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "code":
            self._code_depth += 1
            self._code = [] if self._code_depth == 1 else self._code
        elif tag == "tbody":
            self._in_body = True
            self.tables.append([])
        elif tag == "tr":
            self._cell = -1
        elif tag == "td":
            self._cell += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "code" and self._code_depth:
            self._code_depth -= 1
            if not self._code_depth:
                text = "".join(self._code)
                self.codes.append(text)
                if self._in_body and self._cell == 0:
                    self.tables[-1].append(text)
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._code_depth:
            self._code.append(data)


def _page(site: Path, name: str) -> _Page:
    page = _Page()
    page.feed((site / name).read_text(encoding="utf-8"))
    return page


def _object_keys(node: dict[str, Any]) -> set[str] | None:
    """The property names of an object schema, looking through ``allOf`` to the part that has them."""
    for part in [node, *node.get("allOf", [])]:
        if "properties" in part:
            return set(part["properties"])
    return None


def _inline_objects(schema: Any) -> list[set[str]]:
    """The property names of every object schema written inline under a property, at any depth."""
    found: list[set[str]] = []
    if isinstance(schema, dict):
        for prop in schema.get("properties", {}).values():
            if isinstance(prop, dict) and "properties" in prop:
                found.append(set(prop["properties"]))
        for value in schema.values():
            found += _inline_objects(value)
    elif isinstance(schema, list):
        for item in schema:
            found += _inline_objects(item)
    return found


def _enum_values(schema: Any) -> set[str]:
    """Every value of every ``enum`` anywhere in a schema."""
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "enum":
                found.update(str(item) for item in value)
            else:
                found |= _enum_values(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _enum_values(item)
    return found


def _facet_schemas() -> list[tuple[str, dict[str, Any]]]:
    root = resources.files("airflow_phi_guard.lineage") / "schemas"
    return [
        (f"{version.name}/{entry.name}", json.loads(entry.read_text(encoding="utf-8")))
        for version in root.iterdir()
        if version.is_dir()
        for entry in version.iterdir()
        if entry.name.endswith(".json")
    ]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as CI builds it: every warning is an error."""
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"the docs build failed:\n{result.stderr[-6000:]}"
    assert "WARNING" not in result.stderr, result.stderr[-6000:]
    return out


def test_every_page_is_built(site: Path):
    """Each Markdown page of docs/ is a page of the site (a page outside every toctree would warn)."""
    sources = {
        path.relative_to(DOCS).with_suffix(".html").as_posix()
        for path in DOCS.rglob("*.md")
        if "_build" not in path.parts
    }
    assert sources
    assert not {name for name in sources if not (site / name).is_file()}


def test_policy_reference_has_a_complete_table_per_model(site: Path):
    """Every nested model of the policy gets a table listing exactly its keys, the top level included."""
    schema = Policy.model_json_schema()
    expected = [set(schema["properties"])]
    expected += [keys for node in schema["$defs"].values() if (keys := _object_keys(node)) is not None]
    expected += _inline_objects(schema)
    tables = [set(rows) for rows in _page(site, "reference/policy.html").tables]

    missing = [sorted(keys) for keys in expected if keys not in tables]
    assert not missing, f"no table lists exactly these keys: {missing}"


def test_policy_reference_names_every_allowed_value(site: Path):
    """Every value an enumeration of the policy schema allows (treatments, bases, methods...) is shown."""
    codes = " ".join(_page(site, "reference/policy.html").codes)
    values = _enum_values(Policy.model_json_schema())

    assert {"keep", "surrogate", "research-authorization", "safe-harbor", "census-2020"} <= values
    assert not {value for value in values if f"{value}" not in codes}


def test_facet_reference_covers_every_schema_file(site: Path):
    """Every facet schema file: its facet name, its ``$id``, a table per definition, every enum value."""
    page = _page(site, "reference/facets.html")
    codes = " ".join(page.codes)
    tables = [set(rows) for rows in page.tables]
    schemas = _facet_schemas()
    assert len(schemas) >= 8

    for name, document in schemas:
        (facet,) = document["properties"]
        assert facet in page.codes, f"{name}: facet {facet} not named"
        assert document["$id"] in codes, f"{name}: its $id is not shown"
        for definition, node in document["$defs"].items():
            keys = _object_keys(node)
            if keys is not None:
                assert keys in tables, f"{name}: no table lists exactly the fields of {definition}"
            for inline in _inline_objects(node):
                assert inline in tables, f"{name}: no table lists exactly {sorted(inline)} of {definition}"
        missing = {value for value in _enum_values(document) if value not in codes}
        assert not missing, f"{name}: values not shown: {sorted(missing)}"
