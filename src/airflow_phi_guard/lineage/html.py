"""The audit as one offline HTML page: the lineage graph from raw sources through governed sets to models,
drawn as inline SVG, above the audit's tables.

The graph is read from the same events as the audit's answer, for the runs that answer counts: an edge
from a source dataset to the governed dataset a governance run wrote from it, labelled with the identifier
columns that run let through and their treatments (and what it dropped), and an edge from the governed
dataset to the model its policy names, labelled with the policy and the downstream runs that read it.

The layout is this module's own, not Graphviz's: the graph always has the same layered shape (sources,
governed sets, models), which a few columns of boxes draw legibly, and a renderer of our own needs no
``dot`` binary on the machines of an air-gapped hospital, nor in ``make test``. Nodes and edge labels are
stacked per column and ordered by their neighbours' positions; lines may cross when many runs share a
source, which Graphviz's crossing minimisation would reduce.

The page loads nothing: no script, no font, no stylesheet from elsewhere, and a Content-Security-Policy
that forbids the browser to fetch anything. Every string is escaped; all of them come from lineage, which
holds names, letters, counts and digests, never a cell value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any, Literal

from airflow_phi_guard.lineage.audit import (
    AuditQuery,
    AuditRun,
    ColumnAudit,
    EventSource,
    ModelAudit,
    WindowAudit,
    answer,
    dataset_key,
    event_model,
    is_governance_event,
)
from airflow_phi_guard.lineage.datasets import dataset_uri
from airflow_phi_guard.lineage.facets import COLUMNS_FACET, POLICY_FACET
from airflow_phi_guard.lineage.fields import field_at as _get
from airflow_phi_guard.lineage.fields import list_of as _list
from airflow_phi_guard.lineage.fields import text_of as _text
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier

AuditAnswer = ModelAudit | list[ModelAudit] | ColumnAudit | WindowAudit

DISCLAIMER = "Read from lineage events: this lists what the runs recorded, and is not legal advice."


class RecordingSource:
    """An event source that keeps the events it last gave, so that one reading serves the answer and the
    graph (an archive is queried once, not twice).

    :param source: the event log or archive to read from.
    """

    def __init__(self, source: EventSource) -> None:
        self.source = source
        self.events: list[dict[str, Any]] = []

    def events_for(self, query: AuditQuery) -> list[dict[str, Any]]:
        """The events the wrapped source gives for ``query``, kept in :attr:`events`.

        :param query: the audit's question.
        """
        self.events = self.source.events_for(query)
        return self.events


# The graph: what is drawn, built from events and an answer, independent of how it is laid out.


@dataclass(frozen=True)
class GraphColumn:
    """A source column on a governance edge: its letter, treatment and output column."""

    column: str
    identifier: str | None
    treatment: str
    output_column: str


@dataclass(frozen=True)
class GraphNode:
    """A dataset or a model; ``key`` is its URI, or ``model:NAME:VERSION``."""

    key: str
    kind: Literal["source", "governed", "model"]
    name: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class GraphEdge:
    """A governance run's step (source to governed set) or a governed set's model (governed set to model).

    :param columns: on a governance edge, the columns the run published from the source.
    :param dropped: on a governance edge, the source columns it dropped, with their letters.
    :param notes: other lines of the label: the policy, the downstream runs.
    """

    source: str
    target: str
    kind: Literal["governance", "model"]
    columns: tuple[GraphColumn, ...] = ()
    dropped: tuple[tuple[str, str | None], ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LineageGraph:
    """Nodes and edges, in a stable order."""

    nodes: tuple[GraphNode, ...] = ()
    edges: tuple[GraphEdge, ...] = ()


def answer_with_events(source: EventSource, query: AuditQuery) -> tuple[AuditAnswer, list[dict[str, Any]]]:
    """The audit's answer to ``query``, and the events it was read from.

    :param source: an event log or the archive.
    :param query: the audit's question.
    """
    recording = RecordingSource(source)
    return answer(recording, query), recording.events


def lineage_graph(
    events: Iterable[Mapping[str, Any]], answer_: AuditAnswer, *, column: tuple[str, str] | None = None
) -> LineageGraph:
    """The graph of the runs an audit answer counts, read from the events it was answered from.

    :param events: the events of the answer.
    :param answer_: a model audit, a list of them, a window or a column audit.
    :param column: (source dataset URI, column): draw only that column on governance edges; a column
        audit sets it itself.
    """
    if isinstance(answer_, ColumnAudit):
        column = (answer_.dataset, answer_.column)
        runs = [run for reach in answer_.reached for run in reach.runs]
    else:
        audits = answer_.models if isinstance(answer_, WindowAudit) else _as_list(answer_)
        runs = [run for audit in audits for run in audit.runs]

    governance_ids = {run.run_id if run.role == "governance" else run.read_from for run in runs}
    downstream: dict[str, list[AuditRun]] = {}
    for run in runs:
        if run.role == "consumer" and run.read_from is not None:
            downstream.setdefault(run.read_from, []).append(run)
    artifacts = _consumer_outputs(events, {run.run_id for run in runs if run.role == "consumer"})

    nodes: dict[str, GraphNode] = {}
    edges: dict[tuple[str, str, str], GraphEdge] = {}
    for event in events:
        run_id = _text(_get(event, "run", "runId"))
        if run_id not in governance_ids or not _is_published(event):
            continue
        model = event_model(event)
        policy = _get(event, "run", "facets", POLICY_FACET)
        for output in _list(_get(event, "outputs")):
            facet = _get(output, "facets", COLUMNS_FACET)
            governed_key, source_key = dataset_key(output), dataset_key(_get(facet, "sourceDataset"))
            if not isinstance(facet, Mapping) or governed_key is None or source_key is None:
                continue
            source, governed = dataset_uri(*source_key), dataset_uri(*governed_key)
            published = tuple(
                GraphColumn(
                    name, _text(_get(entry, "identifier")), _text(_get(entry, "treatment")) or "", out
                )
                for entry in _list(_get(facet, "columns"))
                if (name := _text(_get(entry, "source"))) and (out := _text(_get(entry, "name")))
            )
            dropped = tuple(
                (name, _text(_get(entry, "identifier")))
                for entry in _list(_get(facet, "dropped"))
                if (name := _text(_get(entry, "source")))
            )
            if column is not None:
                if source != column[0]:
                    continue
                published = tuple(each for each in published if each.column == column[1])
                dropped = tuple(each for each in dropped if each[0] == column[1])
            nodes.setdefault(source, GraphNode(source, "source", source))
            nodes.setdefault(governed, GraphNode(governed, "governed", governed))
            policy_line = (
                f"policy {_text(_get(policy, 'name')) or '?'} v{_get(policy, 'version')}"
                f" · {_text(_get(policy, 'method')) or 'method not recorded'}"
            )
            _merge_edge(edges, GraphEdge(source, governed, "governance", published, dropped, (policy_line,)))
            if model is None:
                continue
            model_key = f"model:{model[0]}:{model[1]}"
            written = sorted(
                {uri for consumer in downstream.get(run_id, []) for uri in artifacts.get(consumer.run_id, ())}
            )
            previous = nodes.get(model_key)
            details = tuple(sorted({*(previous.details if previous else ()), *written}))
            nodes[model_key] = GraphNode(model_key, "model", f"{model[0]} version {model[1]}", details)
            notes = [f"governance run {run_id}"]
            notes += [
                f"read by {consumer.job or 'a run'} ({consumer.run_id})"
                for consumer in downstream.get(run_id, [])
            ]
            _merge_edge(edges, GraphEdge(governed, model_key, "model", notes=tuple(notes)))

    ordered_nodes = sorted(nodes.values(), key=lambda node: (_KIND_ORDER[node.kind], node.key))
    return LineageGraph(tuple(ordered_nodes), tuple(edges[key] for key in sorted(edges)))


_KIND_ORDER = {"source": 0, "governed": 1, "model": 2}


def _merge_edge(edges: dict[tuple[str, str, str], GraphEdge], edge: GraphEdge) -> None:
    # Several runs along the same edge (a set governed again) draw one edge with the union of their lines.
    key = (edge.source, edge.target, edge.kind)
    if key not in edges:
        edges[key] = edge
        return
    known = edges[key]
    edges[key] = GraphEdge(
        edge.source,
        edge.target,
        edge.kind,
        tuple(dict.fromkeys((*known.columns, *edge.columns))),
        tuple(dict.fromkeys((*known.dropped, *edge.dropped))),
        tuple(dict.fromkeys((*known.notes, *edge.notes))),
    )


def _consumer_outputs(events: Iterable[Mapping[str, Any]], run_ids: set[str]) -> dict[str, tuple[str, ...]]:
    outputs: dict[str, tuple[str, ...]] = {}
    for event in events:
        run_id = _text(_get(event, "run", "runId"))
        if run_id in run_ids and _get(event, "eventType") == "COMPLETE":
            keys = [key for key in map(dataset_key, _list(_get(event, "outputs"))) if key]
            outputs[run_id] = tuple(sorted({dataset_uri(*key) for key in keys}))
    return outputs


def _is_published(event: Mapping[str, Any]) -> bool:
    return (
        is_governance_event(event)
        and _get(event, "eventType") == "COMPLETE"
        and _get(event, "run", "facets", POLICY_FACET, "verdict") == "published"
    )


def _as_list(answer_: ModelAudit | list[ModelAudit]) -> list[ModelAudit]:
    return [answer_] if isinstance(answer_, ModelAudit) else list(answer_)


# The layout: columns of boxes, nodes of one layer then the labels of the edges leaving it.

_FONT_SIZE = 12
#: The advance of one character of the monospace font at _FONT_SIZE, to size boxes without font metrics.
_CHAR_WIDTH = 7.3
_LINE_HEIGHT = 16
_NODE_WIDTH = 210
#: The widest an edge label may be; a label with short lines is narrower.
_LABEL_WIDTH = 300
_PADDING = 8
_GAP_X = 36
_GAP_Y = 22
_MARGIN = 16
#: Dropped columns named on an edge before the rest are counted: the tables below the graph list them all,
#: as they list the kept columns that are no identifier, which an edge only counts.
_MAX_LISTED_DROPPED = 8


@dataclass
class _Box:
    key: str
    lines: list[tuple[str, str]]  # (css class, text)
    width: float
    title: str
    kind: str
    x: float = 0.0
    y: float = 0.0
    order: float = 0.0
    incoming: list[str] = field(default_factory=list)

    @property
    def height(self) -> float:
        return 2 * _PADDING + _LINE_HEIGHT * len(self.lines)


def _fit(text: str, width: float, *, keep_end: bool = False) -> str:
    room = max(int((width - 2 * _PADDING) / _CHAR_WIDTH), 4)
    if len(text) <= room:
        return text
    return "…" + text[-(room - 1) :] if keep_end else text[: room - 1] + "…"


def _node_box(node: GraphNode) -> _Box:
    heading = {"source": "source dataset", "governed": "governed dataset", "model": "model"}[node.kind]
    if node.kind == "model":
        lines = [("kind", heading), *_wrap([("name", node.name)], _NODE_WIDTH)]
    else:
        lines = [
            ("kind", heading),
            ("name", _fit(node.name.removeprefix("file://"), _NODE_WIDTH, keep_end=True)),
        ]
    lines += [("detail", "written to")] if node.details else []
    lines += [
        ("detail", _fit(detail.removeprefix("file://"), _NODE_WIDTH, keep_end=True))
        for detail in node.details
    ]
    title = "\n".join([node.name, *node.details])
    return _Box(node.key, lines, _NODE_WIDTH, title, node.kind)


def _edge_lines(edge: GraphEdge) -> list[tuple[str, str]]:
    lines = [("note", note) for note in edge.notes[:1]]
    if edge.kind == "governance":
        identified = [column for column in edge.columns if column.identifier]
        for column in identified:
            lines.append(
                (
                    "column",
                    f"{column.column} [{column.identifier}] {column.treatment} → {column.output_column}",
                )
            )
        others = len(edge.columns) - len(identified)
        if others:
            lines.append(("other", f"+ {others} other column(s) kept, no identifier"))
        if edge.dropped:
            named = [f"{name} [{letter}]" if letter else name for name, letter in edge.dropped]
            shown = ", ".join(named[:_MAX_LISTED_DROPPED])
            more = f" and {len(named) - _MAX_LISTED_DROPPED} more" if len(named) > _MAX_LISTED_DROPPED else ""
            lines.append(("dropped", f"dropped {len(named)}: {shown}{more}"))
        if not edge.columns and not edge.dropped:
            lines.append(("other", "no column"))
    else:
        # Run ids are long: the label shows their start, its tooltip and the tables below the whole id.
        lines = [("note", _short_run(note)) for note in edge.notes]
    return lines


def _short_run(note: str) -> str:
    head, _, run_id = note.rpartition(" ")
    closing = ")" if run_id.endswith(")") else ""
    run_id = run_id.strip("()")
    if len(run_id) > 13:
        # the end of the id: a UUIDv7 starts with its timestamp, shared by runs started together
        run_id = "…" + run_id[-8:]
    opening = "(" if closing else ""
    return f"{head} {opening}{run_id}{closing}"


def _wrap(lines: list[tuple[str, str]], width: float) -> list[tuple[str, str]]:
    room = max(int((width - 2 * _PADDING) / _CHAR_WIDTH), 8)
    wrapped = []
    for css, text in lines:
        while len(text) > room:
            cut = text.rfind(" ", 0, room)
            cut = cut if cut > room // 2 else room
            wrapped.append((css, text[:cut].rstrip()))
            text = "  " + text[cut:].lstrip()
        wrapped.append((css, text))
    return wrapped


def render_svg(graph: LineageGraph) -> str:
    """The graph as an SVG element, laid out in columns: sources, labels, governed sets, labels, models.

    :param graph: what to draw.
    """
    boxes = {node.key: _node_box(node) for node in graph.nodes}
    layer = _layers(graph, boxes)
    labels = []
    for index, edge in enumerate(graph.edges):
        lines = _edge_lines(edge)
        longest = max((len(text) for _css, text in lines), default=0)
        width = min(_LABEL_WIDTH, longest * _CHAR_WIDTH + 2 * _PADDING + 2)
        title = "\n".join(edge.notes if edge.kind == "model" else [text for _css, text in lines])
        labels.append((edge, _Box(f"edge{index}", _wrap(lines, width), width, title, edge.kind)))
    if not boxes:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" class="lineage-graph" width="420" height="40" '
            'role="img" aria-label="lineage graph"><text x="8" y="24" class="empty">'
            "No published run: nothing to draw.</text></svg>"
        )

    depth = max(layer.values())
    columns: list[list[_Box]] = [[] for _ in range(2 * depth + 1)]
    for key, box in boxes.items():
        columns[2 * layer[key]].append(box)
    for edge, label in labels:
        columns[min(2 * layer[edge.source] + 1, 2 * depth - 1) if depth else 0].append(label)

    # Order each column by the mean position of what feeds it, so that lines mostly run straight.
    position: dict[str, float] = {}
    feeds = {label.key: [edge.source] for edge, label in labels}
    for edge, label in labels:
        boxes[edge.target].incoming.append(label.key)
    for number, column in enumerate(columns):
        for box in column:
            sources = feeds.get(box.key) or box.incoming
            known = [position[key] for key in sources if key in position]
            box.order = sum(known) / len(known) if known else 0.0
        column.sort(key=lambda box: (box.order, box.key) if number else (box.key,))
        for rank, box in enumerate(column):
            position[box.key] = rank

    heights = [sum(box.height for box in column) + _GAP_Y * (len(column) - 1) for column in columns]
    total_height = max(heights) + 2 * _MARGIN
    x = _MARGIN
    for column, height in zip(columns, heights, strict=True):
        y = _MARGIN + (total_height - 2 * _MARGIN - height) / 2
        width = max((box.width for box in column), default=_LABEL_WIDTH)
        for box in column:
            box.x, box.y = x, y
            y += box.height + _GAP_Y
        x += width + _GAP_X
    total_width = x - _GAP_X + _MARGIN

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage-graph" width="{total_width:.0f}" '
        f'height="{total_height:.0f}" viewBox="0 0 {total_width:.0f} {total_height:.0f}" role="img" '
        'aria-label="lineage graph from source datasets through governed datasets to models">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/>'
        "</marker></defs>",
    ]
    for edge, label in labels:
        source, target = boxes[edge.source], boxes[edge.target]
        parts.append(f'<g class="edge {edge.kind}">')
        parts.append(
            _curve(source.x + source.width, source.y + source.height / 2, label.x, label.y + 18, False)
        )
        parts.append(
            _curve(label.x + label.width, label.y + 18, target.x, target.y + target.height / 2, True)
        )
        parts.append(_box_svg(label, "edge-label"))
        parts.append("</g>")
    for box in boxes.values():
        parts.append(f'<g class="node {box.kind}" data-key="{escape(box.key)}">')
        parts.append(_box_svg(box, "node-box"))
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _layers(graph: LineageGraph, boxes: Mapping[str, _Box]) -> dict[str, int]:
    # A node's layer is the length of the longest path to it; models go last whatever their paths.
    layer = dict.fromkeys(boxes, 0)
    for _ in range(len(boxes)):
        changed = False
        for edge in graph.edges:
            if layer[edge.target] < layer[edge.source] + 1:
                layer[edge.target] = layer[edge.source] + 1
                changed = True
        if not changed:
            break
    last = max(layer.values(), default=0)
    return {key: last if boxes[key].kind == "model" else value for key, value in layer.items()}


def _curve(x1: float, y1: float, x2: float, y2: float, arrow: bool) -> str:
    bend = max((x2 - x1) / 2, 12)
    marker = ' marker-end="url(#arrow)"' if arrow else ""
    return (
        f'<path class="line" d="M {x1:.1f} {y1:.1f} C {x1 + bend:.1f} {y1:.1f}, {x2 - bend:.1f} {y2:.1f}, '
        f'{x2:.1f} {y2:.1f}"{marker}/>'
    )


def _box_svg(box: _Box, css: str) -> str:
    parts = [
        f'<rect class="{css}" x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" '
        f'height="{box.height:.1f}" rx="6"/>'
    ]
    if box.title:
        parts.append(f"<title>{escape(box.title)}</title>")
    for number, (line_class, text) in enumerate(box.lines):
        baseline = box.y + _PADDING + _LINE_HEIGHT * number + _FONT_SIZE
        parts.append(
            f'<text class="{line_class}" x="{box.x + _PADDING:.1f}" y="{baseline:.1f}">{escape(text)}</text>'
        )
    return "".join(parts)


# The page.

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #1d2330; background: #ffffff; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #c9ced8; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
.table { overflow-x: auto; }
.disclaimer { color: #5a6272; font-style: italic; }
.graph { overflow-x: auto; border: 1px solid #d7dbe3; padding: 8px; background: #fbfcfe; }
.lineage-graph { max-width: 100%; height: auto; }
.lineage-graph text { font-family: "DejaVu Sans Mono", ui-monospace, monospace; font-size: 12px;
  fill: #1d2330; }
.lineage-graph .kind { fill: #5a6272; font-size: 11px; }
.lineage-graph .name { font-weight: bold; }
.lineage-graph .column { fill: #7a2e00; }
.lineage-graph .dropped { fill: #8a1c1c; }
.lineage-graph .other, .lineage-graph .detail { fill: #4b5563; }
.lineage-graph .node.source rect { fill: #fdeceb; stroke: #c0392b; }
.lineage-graph .node.governed rect { fill: #e7f5ea; stroke: #2e7d32; }
.lineage-graph .node.model rect { fill: #e7eefc; stroke: #2c5bb8; }
.lineage-graph .edge-label { fill: #ffffff; stroke: #9aa3b2; stroke-dasharray: 3 2; }
.lineage-graph .line { fill: none; stroke: #6b7485; stroke-width: 1.5; }
.lineage-graph .arrowhead { fill: #6b7485; }
"""

#: Nothing may be fetched: no script, font, image or stylesheet from anywhere, the page's own styles only.
_CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def page(title: str, body: Iterable[str]) -> str:
    """A complete, self-contained HTML document.

    :param title: the page's title, escaped here.
    :param body: HTML fragments, already escaped.
    """
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CONTENT_SECURITY_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def table(headings: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; every heading and cell is escaped.

    :param headings: the column headings.
    :param rows: the cells, any value; None shows as a dash.
    """
    head = "".join(f"<th>{escape(heading)}</th>" for heading in headings)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{key} {each}" for key, each in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def describe_letter(letter: str | None) -> str:
    """A Safe Harbor letter with its description, e.g. ``C (dates)``; a dash for None.

    :param letter: A to R, or None.
    """
    if letter is None:
        return "-"
    try:
        return f"{letter} ({SafeHarborIdentifier(letter).description})"
    except ValueError:
        return letter


def graph_section(graph: LineageGraph) -> str:
    """The graph's heading, legend and SVG.

    :param graph: what to draw.
    """
    return (
        "<h2>Lineage graph</h2>"
        "<p>Source datasets (red) to the governed datasets (green) that governance runs wrote from them, "
        "with the identifier columns let through, their Safe Harbor letter in brackets and their "
        "treatment, and the columns dropped; then each governed dataset to the model (blue) its policy "
        "names, with the downstream runs that read it.</p>"
        f'<div class="graph">{render_svg(graph)}</div>'
    )


def render_html(answer_: AuditAnswer, events: Iterable[Mapping[str, Any]]) -> str:
    """The audit answer as an HTML page with its lineage graph.

    :param answer_: what :func:`airflow_phi_guard.lineage.audit.answer` returned.
    :param events: the events the answer was read from, for the graph.
    """
    events = list(events)
    graph = lineage_graph(events, answer_)
    if isinstance(answer_, ColumnAudit):
        title = f"Audit of source column {answer_.column} of {answer_.dataset}"
        sections = [_column_section(answer_)]
    elif isinstance(answer_, WindowAudit):
        title = (
            f"Audit of the window from {answer_.since or 'the first event'} "
            f"until {answer_.until or 'the last event'}"
        )
        sections = [_model_section(model) for model in answer_.models] or [
            "<p>No run in this window reached any model.</p>"
        ]
    else:
        audits = _as_list(answer_)
        title = f"Audit of model {_model_name(audits[0])}" if len(audits) == 1 else "Audit of every model"
        sections = [_model_section(audit) for audit in audits] or ["<p>No governance run names a model.</p>"]
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="disclaimer">{escape(DISCLAIMER)}</p>',
        graph_section(graph),
    ]
    return page(title, [*body, *sections, f'<p class="disclaimer">{escape(DISCLAIMER)}</p>'])


def _model_name(audit: ModelAudit) -> str:
    version = f" version {audit.model.version}" if audit.model.version is not None else ""
    return f"{audit.model.name}{version}"


def _model_section(audit: ModelAudit) -> str:
    parts = [f"<h2>Model {escape(_model_name(audit))}</h2>"]
    if not audit.known:
        parts.append(
            "<p>No governance run in these events names this model: nothing is known to have reached it.</p>"
        )
        return "".join(parts)
    parts.append("<h3>Reached the model</h3>")
    parts.append(
        table(
            ("source dataset", "source column", "identifier", "treatment", "output column"),
            (
                (c.dataset, c.column, describe_letter(c.identifier), c.treatment, c.output_column)
                for c in audit.reached
            ),
        )
        if audit.reached
        else "<p>No column reached the model.</p>"
    )
    if audit.stopped:
        parts.append("<h3>Stopped before the model</h3>")
        parts.append(
            table(
                ("source dataset", "source column", "identifier"),
                ((c.dataset, c.column, describe_letter(c.identifier)) for c in audit.stopped),
            )
        )
    parts.append(f"<h3>Runs ({len(audit.runs)})</h3>")
    parts.append(run_table(audit.runs) if audit.runs else "<p>No published run.</p>")
    if audit.policy_digests:
        parts.append(f"<p>Policy digests: <code>{escape(', '.join(audit.policy_digests))}</code></p>")
    if audit.refused_runs:
        parts.append(
            "<p>Refused governance runs, which reached nothing: "
            f"<code>{escape(', '.join(audit.refused_runs))}</code></p>"
        )
    return "".join(parts)


def run_table(runs: Sequence[AuditRun]) -> str:
    """The runs of an audit, one row each, with their consent counts, method and risk.

    :param runs: the runs.
    """
    return table(
        (
            "run",
            "role",
            "job",
            "completed",
            "policy",
            "policy digest",
            "method",
            "consent bases",
            "judged at",
            "rows read",
            "admitted",
            "excluded",
            "admitted rows by basis",
            "admitted subjects by basis",
            "risk",
        ),
        (
            (
                run.run_id,
                "governance" if run.role == "governance" else f"downstream of {run.read_from}",
                run.job or None,
                run.event_time or None,
                f"{run.policy_name} v{run.policy_version}" if run.policy_name else None,
                run.policy_digest,
                run.deidentification_method,
                run.consent_bases,
                run.consent_as_of,
                run.rows_read,
                run.rows_admitted,
                run.rows_excluded,
                run.admitted_rows_by_basis if run.admitted_rows_by_basis is not None else "not recorded",
                run.admitted_subjects_by_basis
                if run.admitted_subjects_by_basis is not None
                else "not recorded",
                run.risk if run.risk else "not recorded",
            )
            for run in runs
        ),
    )


def _column_section(audit: ColumnAudit) -> str:
    parts = [f"<p>Identifier: {escape(describe_letter(audit.identifier))}</p>"]
    if not audit.reached:
        parts.append("<p>It reached no model in these events.</p>")
    for reach in audit.reached:
        version = f" version {reach.model.version}" if reach.model.version is not None else ""
        parts.append(
            f"<h2>Reached model {escape(reach.model.name + version)} as {escape(reach.output_column)}, "
            f"treatment {escape(reach.treatment)}</h2>"
        )
        parts.append(run_table(reach.runs))
    if audit.stopped:
        named = ", ".join(f"{model.name} version {model.version}" for model in audit.stopped)
        parts.append(f"<p>Stopped before: {escape(named)}</p>")
    return "".join(parts)
