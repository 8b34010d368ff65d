"""The audit's HTML page: the lineage graph read from the events, every string escaped, nothing loaded from
the network, and the graph drawn by a real browser (headless Chromium)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from airflow_phi_guard.cli import main
from airflow_phi_guard.lineage import html
from airflow_phi_guard.lineage.audit import (
    AllModelsQuery,
    ColumnQuery,
    EventLogSource,
    ModelQuery,
    WindowQuery,
)
from tests.cli_fixtures import (
    MODEL_NAME,
    MODEL_VERSION,
    PSEUDONYM_KEY,
    REACHED,
    STOPPED,
    Workspace,
    canaries,
    source_rows,
    with_phone,
)
from tests.conftest import REPO
from tests.lineage.conftest import LITE_MODEL, demo_policy_columns

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = REPO / "docs" / "images" / "audit-graph.png"
#: Set to 1 to refresh the screenshot in docs/ from the demo's events (docs/audit.md says how).
UPDATE_SCREENSHOT = "PHI_GUARD_UPDATE_SCREENSHOT"

#: The fills of the graph's node boxes, by kind, from the page's style sheet (RGB).
NODE_FILLS = {"source": (0xFD, 0xEC, 0xEB), "governed": (0xE7, 0xF5, 0xEA), "model": (0xE7, 0xEE, 0xFC)}

MODEL_FILE = "/models/cli-readmission-model-3.joblib"


@pytest.fixture(scope="session")
def demo(demo_lineage):
    """The demo's events, written once a session by tests/lineage/conftest.py through `phi-guard apply`."""
    return demo_lineage


@pytest.fixture
def published(tmp_path, monkeypatch) -> Workspace:
    """One `phi-guard apply --events` run of the CLI fixtures' policy, with a canary in every identifier
    cell, and a training run (as Airflow's provider writes it) that read the set and wrote a model file."""
    monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.delenv("PHI_GUARD_MANIFEST_KEY", raising=False)
    monkeypatch.delenv("OPENLINEAGE_DISABLED", raising=False)
    workspace = Workspace(tmp_path)
    assert main(workspace.apply_arguments(workspace.write())) == 0
    _append_training(workspace)
    return workspace


def _append_training(workspace: Workspace, run_id: str = "0190a3c4-0000-7000-8000-00000000beef") -> None:
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2030-01-01T00:00:00+00:00",
        "producer": "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": {}},
        "job": {"namespace": "default", "name": "readmission_training.train_model"},
        "inputs": [{"namespace": "file", "name": str(workspace.output.resolve()), "facets": {}}],
        "outputs": [{"namespace": "file", "name": MODEL_FILE, "facets": {}}],
    }
    with workspace.events.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(event) + "\n")


def _answer(workspace: Workspace, query=None):
    source = EventLogSource((workspace.events,))
    return html.answer_with_events(source, query or ModelQuery(MODEL_NAME, MODEL_VERSION))


class TestGraph:
    def test_it_runs_from_the_source_through_the_governed_set_to_the_model(self, published):
        graph = html.lineage_graph(*reversed(_answer(published)))
        kinds = {node.kind: node for node in graph.nodes}
        assert [node.kind for node in graph.nodes] == ["source", "governed", "model"]
        assert kinds["source"].key == published.source().resolve().as_uri()
        assert kinds["governed"].key == published.output.resolve().as_uri()
        assert kinds["model"].name == f"{MODEL_NAME} version {MODEL_VERSION}"
        assert [(edge.source, edge.target) for edge in graph.edges] == [
            (kinds["source"].key, kinds["governed"].key),
            (kinds["governed"].key, kinds["model"].key),
        ]

    def test_the_governance_edge_carries_each_column_letter_and_treatment(self, published):
        graph = html.lineage_graph(*reversed(_answer(published)))
        (edge,) = [edge for edge in graph.edges if edge.kind == "governance"]
        # REACHED and STOPPED are the policy's columns with the letters of REGULATORY.md's table
        assert {(c.column, c.identifier, c.treatment, c.output_column) for c in edge.columns} == REACHED
        assert set(edge.dropped) == STOPPED

    def test_the_model_edge_names_the_training_run_and_the_model_its_file(self, published):
        graph = html.lineage_graph(*reversed(_answer(published)))
        (edge,) = [edge for edge in graph.edges if edge.kind == "model"]
        assert any("0190a3c4-0000-7000-8000-00000000beef" in note for note in edge.notes)
        (model,) = [node for node in graph.nodes if node.kind == "model"]
        assert model.details == (f"file://{MODEL_FILE}",)

    def test_a_refused_run_draws_nothing(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", PSEUDONYM_KEY)
        workspace = Workspace(tmp_path)
        assert main(workspace.apply_arguments(workspace.write(rows=with_phone(source_rows())))) == 3
        graph = html.lineage_graph(*reversed(_answer(workspace)))
        assert graph.nodes == () and graph.edges == ()
        assert "No published run" in html.render_svg(graph)

    def test_a_column_audit_draws_that_column_only(self, published):
        query = ColumnQuery(str(published.source().resolve()), "ZIP")
        graph = html.lineage_graph(*reversed(_answer(published, query)))
        (edge,) = [edge for edge in graph.edges if edge.kind == "governance"]
        assert [(c.column, c.identifier, c.treatment, c.output_column) for c in edge.columns] == [
            ("ZIP", "B", "zip3", "ZIP3")
        ]
        assert edge.dropped == ()

    def test_every_column_drawn_is_in_the_svg(self, published):
        svg = html.render_svg(html.lineage_graph(*reversed(_answer(published))))
        for column, letter, treatment, output in REACHED:
            if letter:
                assert f"{column} [{letter}] {treatment} → {output}" in svg
        assert svg.count('<g class="node ') == 3


class TestPage:
    @pytest.mark.parametrize(
        "query",
        [
            ModelQuery(MODEL_NAME, MODEL_VERSION),
            AllModelsQuery(),
            WindowQuery(None, None),
            "column",
        ],
    )
    def test_no_planted_value_reaches_the_page(self, published, query):
        if query == "column":
            query = ColumnQuery(str(published.source().resolve()), "PATIENT")
        answer, events = _answer(published, query)
        page = html.render_html(answer, events)
        leaked = sorted(value for value in canaries(source_rows()) if value in page)
        assert leaked == []

    def test_every_string_from_the_events_is_escaped(self, published):
        hostile = "<img src=x onerror=alert(1)>"
        text = published.events.read_text(encoding="utf-8")
        # an event from elsewhere may name a column anything: the page must show it, never run it
        text = text.replace('"name": "GENDER"', json.dumps({"name": hostile})[1:-1]).replace(
            '"source": "GENDER"', json.dumps({"source": f"{hostile}</title><script>x()</script>"})[1:-1]
        )
        published.events.write_text(text, encoding="utf-8")
        page = html.render_html(*_answer(published))
        assert hostile not in page and "<script" not in page and "<img" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page

    def test_the_page_loads_nothing(self, published):
        page = html.render_html(*_answer(published))
        assert "default-src 'none'" in page
        for pattern in (r"<script", r"<link", r"<iframe", r"<img", r"\ssrc=", r"\shref=", r"@import"):
            assert not re.search(pattern, page), pattern
        # the one url() is the arrowhead marker defined inside the SVG
        assert set(re.findall(r"url\(([^)]*)\)", page)) == {"#arrow"}

    def test_the_command_writes_the_page(self, published, capsys):
        output = published.root / "audit.html"
        arguments = ["audit", "--events", str(published.events), "--model", f"{MODEL_NAME}:{MODEL_VERSION}"]
        assert main([*arguments, "--format", "html", "--output", str(output)]) == 0
        assert capsys.readouterr().out == ""
        assert output.read_text(encoding="utf-8") == html.render_html(*_answer(published))
        assert main([*arguments, "--format", "html"]) == 0
        assert capsys.readouterr().out == html.render_html(*_answer(published))

    def test_the_command_writes_text_and_json_to_the_output_too(self, published, capsys):
        output = published.root / "audit.json"
        arguments = ["audit", "--events", str(published.events), "--format", "json", "--output", str(output)]
        assert main(arguments) == 0
        assert [model["model"]["name"] for model in json.loads(output.read_text())] == [MODEL_NAME]


def _chromium(page: Path, *options: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a local page with the network cut off: every request goes to a proxy
    on a closed port, local pages included (``<-loopback>`` takes loopback out of the bypass list)."""
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: the HTML report is checked in headless Chromium (apt-get install chromium)"
    )
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        *options,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)


def _fill_counts(png: Path) -> Counter[str]:
    """How many pixels of the screenshot have each node kind's exact fill."""
    from PIL import Image

    with Image.open(png) as image:
        colours = Counter(image.convert("RGB").get_flattened_data())
    return Counter({kind: colours[fill] for kind, fill in NODE_FILLS.items()})


@pytest.fixture(scope="module")
def demo_page(demo, tmp_path_factory) -> Path:
    """The audit of every model of the demo's events, as an HTML file."""
    answer, events = html.answer_with_events(EventLogSource((demo.events,)), AllModelsQuery())
    page = tmp_path_factory.mktemp("audit-html") / "audit.html"
    page.write_text(html.render_html(answer, events), encoding="utf-8")
    return page


class TestInChromium:
    def test_the_browser_builds_the_demo_graph(self, demo_page, tmp_path):
        dom = _chromium(demo_page, "--dump-dom", profile=tmp_path / "profile").stdout
        # the demo: one extract, governed by the demo policy and by the lite one, for two models
        assert dom.count('<g class="node source"') == 1
        assert dom.count('<g class="node governed"') == 2
        assert dom.count('<g class="node model"') == 2
        assert f"{LITE_MODEL[0]} version {LITE_MODEL[1]}" in dom
        # every treated identifier column of the demo policy is on its edge with its treatment
        kept, _dropped = demo_policy_columns()
        for column, treatment, output in kept:
            if treatment != "keep":
                assert re.search(rf"{column} \[[A-R]\] {treatment} → {output}", dom), column

    def test_the_screenshot_shows_the_graph(self, demo_page, tmp_path):
        screenshot = tmp_path / "audit-graph.png"
        _chromium(demo_page, f"--screenshot={screenshot}", profile=tmp_path / "profile")
        counts = _fill_counts(screenshot)
        # each kind of box painted: several thousand pixels of its fill (a box is about 210 x 50 pixels)
        assert all(counts[kind] > 3000 for kind in NODE_FILLS), counts
        if os.environ.get(UPDATE_SCREENSHOT) == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(screenshot, SCREENSHOT)

    def test_the_screenshot_in_the_docs_shows_the_graph(self):
        counts = _fill_counts(SCREENSHOT)
        assert all(counts[kind] > 3000 for kind in NODE_FILLS), counts
