"""The audit trail in PostgreSQL: one chain under concurrent appends, and tampering with rows found."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from airflow_phi_guard.exceptions import AuditTrailError
from airflow_phi_guard.trail.chain import RecordKind, TrailEntry, canonical_json, record_digest
from airflow_phi_guard.trail.sql import SqlTrail
from airflow_phi_guard.trail.store import open_trail

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _entry(number: int) -> TrailEntry:
    return TrailEntry(kind=RecordKind.GATE_DECISION, verdict="passed", counts={"n": number})


@pytest.fixture
def trail(postgres_url, postgres_schema):
    store = SqlTrail(postgres_url, f"{postgres_schema.name}.trail_{uuid.uuid4().hex[:8]}")
    for number in range(1, 6):
        store.append(_entry(number), at=AT)
    return store


def _sql(trail: SqlTrail, postgres_schema, statement: str, rows=None) -> None:
    postgres_schema.execute(statement.format(table=f"{trail.schema}.{trail.name}"), rows)


def test_an_intact_table_verifies_and_a_url_opens_it(trail, postgres_url):
    verification = trail.verify()
    assert verification.intact
    assert verification.records == 5
    reopened = open_trail(f"{postgres_url}#{trail.schema}.{trail.name}")
    assert reopened.verify().head == verification.head


def test_an_edited_row_is_named(trail, postgres_schema):
    _sql(trail, postgres_schema, "UPDATE {table} SET record = replace(record, '\"n\":3', '\"n\":7')")

    problems = trail.verify().problems
    assert [(problem.kind, problem.record, problem.sequence) for problem in problems] == [("edited", 3, 3)]


def test_a_deleted_row_is_named(trail, postgres_schema):
    _sql(trail, postgres_schema, "DELETE FROM {table} WHERE sequence = 2")

    problems = trail.verify().problems
    assert [(problem.kind, problem.record, problem.sequence) for problem in problems] == [("missing", 2, 3)]


def test_an_inserted_row_is_named(trail, postgres_schema):
    # a forged copy of record 5 with a valid digest, appended as a sixth row: sequence 5 twice
    last = json.loads(list(trail.stored())[-1])
    forged = last | {"verdict": "refused"}
    forged = forged | {"digest": record_digest(forged)}
    _sql(
        trail,
        postgres_schema,
        "INSERT INTO {table} (sequence, digest, record, kind, verdict, recorded_at, retain_until) "
        "VALUES (%s, %s, %s, 'gate-decision', 'refused', now(), now())",
        [(99, forged["digest"], canonical_json(forged))],
    )

    problems = trail.verify().problems
    assert [(problem.kind, problem.record, problem.sequence) for problem in problems] == [("inserted", 6, 5)]


def test_swapped_rows_are_named(trail, postgres_schema):
    # swap the records of positions 2 and 3 (the unique columns go through a spare value)
    _sql(
        trail,
        postgres_schema,
        "UPDATE {table} AS t SET record = s.record FROM {table} AS s "
        "WHERE (t.position, s.position) IN ((2, 3), (3, 2))",
    )

    problems = trail.verify().problems
    assert [(problem.kind, problem.record, problem.sequence) for problem in problems] == [
        ("reordered", 2, 3),
        ("reordered", 3, 2),
    ]


def test_concurrent_appends_make_one_chain(trail):
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda number: trail.append(_entry(number)), range(20)))

    verification = trail.verify()
    assert verification.intact
    assert verification.records == 25


def test_an_append_after_an_edited_last_row_is_refused(trail, postgres_schema):
    _sql(trail, postgres_schema, "UPDATE {table} SET record = replace(record, '\"n\":5', '\"n\":8')")

    with pytest.raises(AuditTrailError, match="last record"):
        trail.append(_entry(6))


def test_errors_withhold_the_password(postgres_schema):
    store = SqlTrail("postgresql+psycopg://someone:CANARY-PASSWORD@127.0.0.1:1/none", "x.y")

    with pytest.raises(AuditTrailError) as raised:
        store.append(_entry(1))
    assert "CANARY-PASSWORD" not in str(raised.value)
