"""The lineage archive on the real PostgreSQL server: round trip, idempotence, retention, refusals, and the
audit answered from it as from the log."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_phi_guard import cli
from airflow_phi_guard.cli import main
from airflow_phi_guard.exceptions import LineageArchiveError, LineageArchiveUnavailableError
from airflow_phi_guard.lineage.archive import DEFAULT_ARCHIVE_TABLE, HIPAA_RETENTION_YEARS, LineageArchive
from airflow_phi_guard.lineage.audit import (
    AllModelsQuery,
    ColumnQuery,
    EventLogError,
    EventLogSource,
    ModelQuery,
    WindowQuery,
    answer,
    parse_instant,
    read_events,
)
from tests.lineage.conftest import LITE_MODEL, TRAINING_TIME, demo_policy_columns

CANARY = "CANARY-EVENT-CONTENT-7731"


@pytest.fixture(scope="session")
def demo(demo_lineage):
    """The demo's events, written once a session by tests/lineage/conftest.py through `phi-guard apply`."""
    return demo_lineage


@pytest.fixture
def archive(postgres_schema):
    """An archive in a table of its own in the session's schema."""
    with LineageArchive(
        postgres_schema.url, f"{postgres_schema.name}.events_{uuid.uuid4().hex[:8]}"
    ) as opened:
        yield opened


def _event(run_id: str, event_time: str, **extra) -> dict:
    return {
        "eventType": "COMPLETE",
        "eventTime": event_time,
        "run": {"runId": run_id},
        "job": {"namespace": "default", "name": "a.task"},
        "inputs": [],
        "outputs": [],
        **extra,
    }


def _write(path: Path, *events: dict) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
    return path


def _canonical(events: list[dict]) -> list[str]:
    return sorted(json.dumps(event, sort_keys=True) for event in events)


class TestLoad:
    def test_archived_events_read_back_equal_the_log_s(self, archive, demo):
        logged = read_events(demo.events)
        summary = archive.load([demo.events])
        assert (summary.events_read, summary.added, summary.already_archived) == (len(logged), len(logged), 0)
        assert _canonical(archive.read_all()) == _canonical(logged)

    def test_loading_the_same_log_twice_adds_nothing_and_says_so(self, archive, demo, capsys):
        arguments = [
            "lineage",
            "archive",
            "--events",
            str(demo.events),
            "--archive",
            archive_url(archive),
        ]
        arguments += ["--archive-table", table_name(archive)]
        assert main(arguments) == 0
        first = capsys.readouterr().out
        count = archive.count()
        assert main(arguments) == 0
        second = capsys.readouterr().out
        assert archive.count() == count == len(read_events(demo.events))
        assert f"archived {count} new event(s)" in first
        assert f"archived 0 new event(s) of {count}" in second and f"{count} already in the archive" in second

    def test_the_same_event_in_two_logs_or_twice_in_one_is_archived_once(self, archive, tmp_path):
        event = _event("r1", "2024-07-01T10:00:00+00:00")
        first = _write(tmp_path / "a.jsonl", event, event)
        # the same content with its keys in another order is the same event
        second = tmp_path / "b.jsonl"
        second.write_text(json.dumps(dict(reversed(list(event.items())))) + "\n", encoding="utf-8")
        summary = archive.load([first, second])
        assert (summary.events_read, summary.distinct_events, summary.added) == (3, 1, 1)
        assert archive.count() == 1

    def test_a_malformed_line_refuses_the_whole_load_naming_its_line_only(self, archive, tmp_path):
        archive.load([_write(tmp_path / "before.jsonl", _event("r0", "2024-07-01T09:00:00+00:00"))])
        good = _write(tmp_path / "good.jsonl", _event("r1", "2024-07-01T10:00:00+00:00"))
        bad = tmp_path / "bad.jsonl"
        bad.write_text(
            json.dumps(_event("r2", "2024-07-01T11:00:00+00:00")) + "\n\n" + '{"job": "' + CANARY + "\n"
        )
        with pytest.raises(EventLogError) as raised:
            archive.load([good, bad])
        assert (raised.value.path, raised.value.line) == (str(bad.resolve()), 3)
        assert CANARY not in str(raised.value)
        # nothing of either log was loaded
        assert [event["run"]["runId"] for event in archive.read_all()] == ["r0"]

    @pytest.mark.parametrize(
        ("line", "problem"),
        [
            # JSON objects PostgreSQL's jsonb cannot hold, each with the canary in it
            ('{"run": {"runId": "r"}, "note": "' + CANARY + '\\u0000"}', "NUL"),
            ('{"run": {"runId": "r"}, "note": "' + CANARY + '", "x": NaN}', "NaN"),
            ('{"run": {"runId": "r"}, "note": "' + CANARY + '\\ud800"}', "Unicode"),
            ('["' + CANARY + '"]', "not an event object"),
        ],
    )
    def test_a_line_jsonb_cannot_hold_is_refused_by_number(self, archive, tmp_path, line, problem):
        archive.load([_write(tmp_path / "before.jsonl", _event("r0", "2024-07-01T09:00:00+00:00"))])
        path = tmp_path / "events.jsonl"
        path.write_text(json.dumps(_event("r1", "2024-07-01T10:00:00+00:00")) + "\n" + line + "\n")
        with pytest.raises(EventLogError, match=problem) as raised:
            archive.load([path])
        assert raised.value.line == 2 and CANARY not in str(raised.value)
        assert archive.count() == 1

    def test_the_load_logs_counts_never_content(self, archive, tmp_path, caplog):
        path = _write(
            tmp_path / "e.jsonl",
            _event("r1", "2024-07-01T10:00:00+00:00", job={"namespace": CANARY, "name": CANARY}),
        )
        with caplog.at_level(logging.DEBUG):
            archive.load([path])
            archive.events_for(AllModelsQuery())
        assert caplog.records and CANARY not in caplog.text


class TestRetention:
    @pytest.mark.parametrize(
        ("event_time", "years", "expected"),
        [
            # six years from the event's date (45 CFR 164.530(j)(2), REGULATORY.md), in UTC
            ("2024-07-01T10:00:00+00:00", 6, date(2030, 7, 1)),
            ("2024-07-01T23:30:00-05:00", 6, date(2030, 7, 2)),
            # 29 February: six years later has none; the period ends on 1 March, never before
            ("2024-02-29T10:00:00+00:00", 6, date(2030, 3, 1)),
            ("2024-07-01T10:00:00+00:00", 10, date(2034, 7, 1)),
        ],
    )
    def test_retain_until_is_the_event_date_plus_the_retention(
        self, archive, tmp_path, event_time, years, expected
    ):
        archive.load([_write(tmp_path / "e.jsonl", _event("r1", event_time))], retention_years=years)
        assert list(archive.retention().values()) == [expected]

    def test_an_event_without_a_time_is_kept_from_its_load(self, archive, tmp_path):
        event = _event("r1", "soon")
        archive.load([_write(tmp_path / "e.jsonl", event)])
        (kept,) = archive.retention().values()
        today = date.today()
        assert kept >= date(today.year + 6, today.month, 1)

    def test_a_later_load_never_shortens_retention_and_may_lengthen_it(self, archive, tmp_path):
        path = _write(tmp_path / "e.jsonl", _event("r1", "2024-07-01T10:00:00+00:00"))
        archive.load([path], retention_years=8)
        shorter = archive.load([path], retention_years=6)
        assert (shorter.added, shorter.retention_extended) == (0, 0)
        assert list(archive.retention().values()) == [date(2032, 7, 1)]
        longer = archive.load([path], retention_years=10)
        assert (longer.added, longer.already_archived, longer.retention_extended) == (0, 1, 1)
        assert list(archive.retention().values()) == [date(2034, 7, 1)]

    @pytest.mark.parametrize("years", [0, 5, -6])
    def test_less_than_six_years_is_refused(self, archive, tmp_path, years):
        with pytest.raises(LineageArchiveError, match="six years"):
            archive.load(
                [_write(tmp_path / "e.jsonl", _event("r1", "2024-07-01T10:00:00+00:00"))],
                retention_years=years,
            )

    def test_the_default_is_hipaa_s_six_years(self):
        assert HIPAA_RETENTION_YEARS == 6
        assert cli.DEFAULT_ARCHIVE_TABLE == DEFAULT_ARCHIVE_TABLE


class TestUnreachable:
    def test_an_unreachable_archive_is_a_clear_error_without_the_password(self, tmp_path):
        secret = "canary-password-4417"
        url = f"postgresql+psycopg://auditor:{secret}@127.0.0.1:1/lineage"
        path = _write(tmp_path / "e.jsonl", _event("r1", "2024-07-01T10:00:00+00:00"))
        with LineageArchive(url) as archive, pytest.raises(LineageArchiveUnavailableError) as raised:
            archive.load([path])
        message = str(raised.value)
        assert secret not in message and "unreachable" in message and "127.0.0.1:1" in message
        assert raised.value.__cause__ is None and raised.value.__suppress_context__

    def test_the_command_says_so_and_exits_1(self, tmp_path, capsys):
        secret = "canary-password-4417"
        url = f"postgresql+psycopg://auditor:{secret}@127.0.0.1:1/lineage"
        path = _write(tmp_path / "e.jsonl", _event("r1", "2024-07-01T10:00:00+00:00"))
        assert main(["lineage", "archive", "--events", str(path), "--archive", url]) == 1
        assert main(["audit", "--archive", url, "--model", "m"]) == 1
        captured = capsys.readouterr()
        assert "unreachable" in captured.err and secret not in captured.err + captured.out

    @pytest.mark.parametrize(
        ("url", "table"),
        [
            ("sqlite:///lineage.db", DEFAULT_ARCHIVE_TABLE),
            ("postgresql+psycopg://u:canary-password-4417@127.0.0.1/db", "a.b.c"),
            ("postgresql+psycopg://u:canary-password-4417@127.0.0.1/db", 'x"; drop table y; --'),
            ("not a url", DEFAULT_ARCHIVE_TABLE),
        ],
    )
    def test_a_bad_url_or_table_name_is_refused_before_connecting(self, url, table):
        with pytest.raises(LineageArchiveError) as raised:
            LineageArchive(url, table)
        assert "canary-password" not in str(raised.value)

    def test_auditing_an_archive_never_loaded_is_a_clear_error(self, postgres_schema):
        archive = LineageArchive(postgres_schema.url, f"{postgres_schema.name}.never_loaded")
        with archive, pytest.raises(LineageArchiveError, match="does not exist"):
            archive.events_for(ModelQuery("readmission-risk"))


@pytest.fixture
def demo_archive(archive, demo, tmp_path):
    """The demo's events archived, beside noise: another model's governance runs and Airflow task events
    that read and wrote other datasets."""
    noise = []
    for number in range(50):
        noise.append(
            _event(
                f"noise-{number}",
                f"2025-01-{1 + number % 28:02d}T10:00:00+00:00",
                inputs=[{"namespace": "file", "name": f"/elsewhere/in-{number}.parquet"}],
                outputs=[{"namespace": "file", "name": f"/elsewhere/out-{number}.parquet"}],
            )
        )
    archive.load([demo.events, _write(tmp_path / "noise.jsonl", *noise)])
    return archive


QUERIES = [
    ModelQuery("readmission-risk", "1"),
    ModelQuery("readmission-risk"),
    ModelQuery(*LITE_MODEL),
    ModelQuery("no-such-model"),
    AllModelsQuery(),
    ColumnQuery("ZIP", "ZIP"),
    WindowQuery(None, parse_instant(TRAINING_TIME)),
    WindowQuery(parse_instant(TRAINING_TIME), None),
    WindowQuery(parse_instant("2025-01-01"), parse_instant("2025-12-31", end=True)),
]


class TestAuditFromTheArchive:
    @pytest.mark.parametrize("query", QUERIES, ids=repr)
    def test_every_query_answers_as_from_the_log(self, demo_archive, demo, query):
        log = EventLogSource((demo.events,))
        assert answer(demo_archive, query) == answer(log, query)

    @pytest.mark.parametrize("column", ["ZIP", "BIRTHDATE", "SSN"])
    def test_the_column_query_answers_as_from_the_log(self, demo_archive, demo, column):
        query = ColumnQuery(f"file://{demo.extract}", column)
        from_archive = answer(demo_archive, query)
        assert from_archive == answer(EventLogSource((demo.events,)), query)
        assert from_archive.reached or from_archive.stopped

    def test_a_model_query_reads_only_its_runs_and_their_readers(self, demo_archive, demo):
        events = demo_archive.events_for(ModelQuery("readmission-risk", "1"))
        # the demo model's START and COMPLETE, and the runs that read its set: the training run and the
        # validation that wrote nothing (the datasheet reports validations); not the lite model, not the
        # noise
        governance = [event for event in events if "phiGuard_policy" in event["run"].get("facets", {})]
        assert {event["run"]["facets"]["phiGuard_policy"]["model"]["name"] for event in governance} == {
            "readmission-risk"
        }
        assert len(governance) == 2
        readers = [event["run"]["runId"] for event in events if event not in governance]
        assert sorted(readers) == sorted([demo.training_run, demo.validation_run])

    def test_the_command_answers_the_demo_from_the_archive(self, demo_archive, demo, capsys):
        def audit(*options: str) -> dict:
            capsys.readouterr()
            arguments = [
                "audit",
                "--archive",
                archive_url(demo_archive),
                "--archive-table",
                table_name(demo_archive),
            ]
            assert main([*arguments, *options, "--format", "json"]) == 0
            return json.loads(capsys.readouterr().out)

        kept, dropped = demo_policy_columns()
        model = audit("--model", "readmission-risk:1")
        assert {(c["column"], c["treatment"], c["output_column"]) for c in model["reached"]} == kept
        assert {c["column"] for c in model["stopped"]} == dropped
        assert [run["role"] for run in model["runs"]] == ["governance", "consumer"]
        column = audit("--dataset", f"file://{demo.extract}", "--column", "ZIP")
        assert [(r["model"]["name"], r["treatment"], r["output_column"]) for r in column["reached"]] == [
            ("readmission-risk", "zip3", "ZIP3")
        ]
        assert [m["name"] for m in column["stopped"]] == [LITE_MODEL[0]]
        window = audit("--since", TRAINING_TIME)
        assert [m["model"]["name"] for m in window["models"]] == ["readmission-risk"]


def archive_url(archive: LineageArchive) -> str:
    return archive._engine.url.render_as_string(hide_password=False)


def table_name(archive: LineageArchive) -> str:
    return f"{archive.table.schema}.{archive.table.name}"


# The index each select of a query shape is to go through, in order (the archive module's design):
INDEXED_SHAPES = [
    # a model's governance events by model, then their readers by input dataset
    (ModelQuery("readmission-risk", "1"), ["model", "inputs"]),
    # a column's governance runs by input dataset, the runs that wrote their sets by governed output, then
    # their readers by input dataset (the dataset is the demo's extract, set in the test)
    (ColumnQuery("extract", "ZIP"), ["inputs", "governed_outputs", "inputs"]),
    # a window's governance events, and its readers of governed sets, by their partial time indexes, then
    # the runs that wrote what those read by governed output
    (
        WindowQuery(parse_instant("2024-01-01"), parse_instant("2031-01-01")),
        ["governance_time", "reader_time", "governed_outputs"],
    ),
]


@pytest.fixture
def crowded_archive(archive, demo, tmp_path):
    """The demo's events among 6,000 others, analyzed: other models' governance runs (START and COMPLETE)
    over their own extracts, and task events that read and wrote other datasets. On a table of a few pages
    the planner rightly reads everything; with these rows its choices are those of a real archive."""
    noise = []
    for number in range(2000):
        policy = {"model": {"name": f"other-{number % 50}", "version": "1"}, "verdict": "published"}
        governed = {"namespace": "file", "name": f"/governed/other/{number}.parquet"}
        columns = {"sourceDataset": {"namespace": "file", "name": f"/extracts/other-{number % 50}.parquet"}}
        for event_type in ("START", "COMPLETE"):
            noise.append(
                _event(
                    f"other-{number}",
                    f"2025-{1 + number % 12:02d}-{1 + number % 28:02d}T10:00:00+00:00",
                    eventType=event_type,
                    run={"runId": f"other-{number}", "facets": {"phiGuard_policy": policy}},
                    inputs=[{"namespace": "file", "name": f"/extracts/other-{number % 50}.parquet"}],
                    outputs=[{**governed, "facets": {"phiGuard_columns": columns}}],
                )
            )
        noise.append(
            _event(
                f"task-{number}",
                f"2025-{1 + number % 12:02d}-{1 + number % 28:02d}T11:00:00+00:00",
                inputs=[{"namespace": "file", "name": f"/raw/{number}"}],
                outputs=[{"namespace": "file", "name": f"/derived/{number}"}],
            )
        )
    archive.load([demo.events, _write(tmp_path / "crowd.jsonl", *noise)])
    with archive._transaction() as connection:
        connection.execute(sa.text(f"ANALYZE {archive.table.schema}.{archive.table.name}"))
    return archive


class TestIndexes:
    """Each audit select goes through the indexes: its cost follows the events it needs, not the archive.

    Plans are taken as the archive takes them, with sequential scans priced out (``benchmarks/audit_scale.py``
    measures the same at up to a million events).
    """

    @staticmethod
    def _selects(archive: LineageArchive, query) -> list[tuple[str, object]]:
        captured = []

        def capture(connection, cursor, statement, parameters, context, executemany) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                captured.append((statement, parameters))

        sa.event.listen(archive._engine, "before_cursor_execute", capture)
        try:
            archive.events_for(query)
        finally:
            sa.event.remove(archive._engine, "before_cursor_execute", capture)
        return captured

    @staticmethod
    def _scans(archive: LineageArchive, statement: str, parameters: object) -> list[tuple[str, str | None]]:
        """(node type, index name) of every scan of the plan."""
        scans = []

        def walk(node: dict) -> None:
            if "Scan" in node["Node Type"]:
                scans.append((node["Node Type"], node.get("Index Name")))
            for child in node.get("Plans", []):
                walk(child)

        with archive._engine.connect() as connection:
            cursor = connection.connection.driver_connection.cursor()
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
            walk(cursor.fetchone()[0][0]["Plan"])
            connection.rollback()
        return scans

    @pytest.mark.parametrize(("query", "indexes"), INDEXED_SHAPES, ids=lambda value: repr(value)[:40])
    def test_every_select_of_a_query_shape_uses_its_indexes(self, crowded_archive, demo, query, indexes):
        if isinstance(query, ColumnQuery):
            query = ColumnQuery(f"file://{demo.extract}", "ZIP")
        prefix = f"{crowded_archive.table.name}_"
        used = []
        for statement, parameters in self._selects(crowded_archive, query):
            scans = self._scans(crowded_archive, statement, parameters)
            assert [node for node, _index in scans if node == "Seq Scan"] == [], statement
            used.append({index.removeprefix(prefix) for _node, index in scans if index})
        assert used == [{index} for index in indexes]

    def test_a_window_reads_no_event_that_read_nothing_governed(self, demo_archive):
        # the noise's task events completed in January 2025 and read and wrote datasets no run governed
        events = demo_archive.events_for(
            WindowQuery(parse_instant("2025-01-01"), parse_instant("2025-12-31", end=True))
        )
        assert events == []

    def test_a_reader_archived_before_the_run_it_read_is_found_by_the_window(self, archive, demo, tmp_path):
        logged = read_events(demo.events)
        training = [event for event in logged if event["run"]["runId"] == demo.training_run]
        first = _write(tmp_path / "training.jsonl", *training)
        rest = _write(tmp_path / "rest.jsonl", *[event for event in logged if event not in training])
        archive.load([first])
        archive.load([rest])

        query = WindowQuery(parse_instant(TRAINING_TIME), None)
        audit = answer(archive, query)
        assert audit == answer(EventLogSource((first, rest)), query)
        # the training run read the demo model's governed set, so it reached that model in the window
        (model,) = audit.models
        assert model.model.name == "readmission-risk"
        assert [(run.run_id, run.role) for run in model.runs] == [(demo.training_run, "consumer")]


def test_an_archive_from_before_reads_governed_is_upgraded_by_its_next_load(archive, demo):
    """A table archived before the column existed: the audit says to load into it, a load (of a log it
    already holds) upgrades it, and the window then answers as from the log."""
    archive.load([demo.events])
    with archive._transaction() as connection:
        connection.execute(sa.text(f"ALTER TABLE {table_name(archive)} DROP COLUMN reads_governed"))
    query = WindowQuery(parse_instant(TRAINING_TIME), None)
    with pytest.raises(LineageArchiveError, match="load any event log into it"):
        archive.events_for(query)

    summary = archive.load([demo.events])
    assert summary.added == 0
    assert answer(archive, query) == answer(EventLogSource((demo.events,)), query)
    assert demo.training_run in {run.run_id for run in answer(archive, query).models[0].runs}
