"""Shared fixtures: the repository's paths, a minimal policy text, a PostgreSQL schema of the session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SYNTHEA = REPO / "data" / "synthea-nebraska"
DEMO_POLICY = REPO / "dags" / "policies" / "readmission_risk.yaml"

MINIMAL_POLICY = """\
name: readmission-risk
version: 1
purpose: model-training
model: {name: readmission-risk, version: "1"}
recipient: internal-ml-platform
subject: PATIENT
consent:
  bases: [research-authorization, irb-waiver]
deidentification:
  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD (biostatistics)"
    determined: 2000-01-01
    report: ED-TEST-1
    expires: 2099-01-01
columns:
  PATIENT:   {treatment: pseudonymize, justification: "groups encounters per patient"}
  BIRTHDATE: {treatment: age, as: AGE, justification: "predictor"}
  ZIP:       {treatment: zip3, justification: "region"}
  SSN:       {treatment: drop, justification: "not needed"}
"""


@pytest.fixture
def minimal_policy_text() -> str:
    return MINIMAL_POLICY


#: The PostgreSQL server the SQL registry tests run against; set it to point them at another one.
POSTGRES_URL_VARIABLE = "PHI_GUARD_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _raw_connection(url: str) -> Any:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    return engine.raw_connection()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test server's SQLAlchemy URL; an unreachable server errors every test that needs it.

    Never a skip: a suite that silently skips the PostgreSQL tests would pass without having checked
    the SQL registry at all, so CI fails loudly instead.
    """
    url = os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL)
    try:
        connection = _raw_connection(url)
        connection.close()
    except Exception as error:
        from airflow_phi_guard.consent.sources import redact_url

        pytest.fail(
            f"the PostgreSQL server of the tests at {redact_url(url)} is not reachable "
            f"({type(error).__name__}); start it, or set {POSTGRES_URL_VARIABLE} to a SQLAlchemy URL of "
            "one (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)",
            pytrace=False,
        )
    return url


class PostgresSchema:
    """A schema of this test session in the test server, dropped with everything in it at the end.

    :param url: the server's SQLAlchemy URL.
    :param name: the schema, unique per session.
    """

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name

    def execute(self, statement: str, rows: Sequence[Sequence[Any]] | None = None) -> None:
        """Run one statement, once or for each row, and commit."""
        connection = _raw_connection(self.url)
        try:
            cursor = connection.cursor()
            if rows is None:
                cursor.execute(statement)
            else:
                cursor.executemany(statement, rows)
            connection.commit()
        finally:
            connection.close()

    def create_table(self, table: str, columns: str, rows: Sequence[Sequence[Any]] = ()) -> str:
        """(Re)create ``schema.table`` with a column list in SQL and load rows; returns ``schema.table``."""
        qualified = f"{self.name}.{table}"
        self.execute(f"DROP TABLE IF EXISTS {qualified}")
        self.execute(f"CREATE TABLE {qualified} ({columns})")
        if rows:
            marks = ", ".join(["%s"] * len(rows[0]))
            self.execute(f"INSERT INTO {qualified} VALUES ({marks})", rows)
        return qualified


@pytest.fixture(scope="session")
def postgres_schema(postgres_url: str) -> Iterator[PostgresSchema]:
    """A fresh schema in the test server for this session's fixtures; dropped afterwards."""
    schema = PostgresSchema(postgres_url, f"phi_guard_test_{uuid.uuid4().hex[:10]}")
    schema.execute(f"CREATE SCHEMA {schema.name}")
    try:
        yield schema
    finally:
        schema.execute(f"DROP SCHEMA IF EXISTS {schema.name} CASCADE")
