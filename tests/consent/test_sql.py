"""The SQL registry source against the real PostgreSQL server: types, tables and queries, every failure."""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from datetime import date
from pathlib import Path

import pytest

from airflow_phi_guard.consent.sources import consent_source, read_consent_registry
from airflow_phi_guard.consent.sql import SqlConsentSource, sql_consent_source
from airflow_phi_guard.engine.executor import govern
from airflow_phi_guard.exceptions import (
    ConsentRegistryError,
    ConsentRegistryUnavailableError,
    PolicyViolationError,
)
from airflow_phi_guard.policy.loader import parse_policy
from airflow_phi_guard.policy.models import ConsentBasis
from airflow_phi_guard.report import Verdict
from tests.conftest import PostgresSchema
from tests.engine.test_executor import AS_OF, CONSENT, KEY, POLICY, _source

COLUMNS = (
    "subject_id text, basis text, purposes text[], granted_at date, expires_at date, revoked_at date, "
    "reference text"
)
GOOD = ("p-1", "irb-waiver", ["model-training"], date(2025, 1, 1), None, None, "IRB-1")

CANARY_SUBJECT = "CANARY-SUBJECT-8181"
CANARY_REFERENCE = "CANARY-REF-8282"
CANARY_PASSWORD = "CANARY-PASSWORD-8383"


def _with_options(url: str, **settings: str) -> str:
    """The URL with PostgreSQL session settings (libpq ``options``), e.g. TimeZone."""
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    return f"{url}{'&' if '?' in url else '?'}options={options.replace(' ', '%20').replace('=', '%3D')}"


def _ids(registry) -> list[str]:
    """The registry's subject ids in the order of its records."""
    return list(dict.fromkeys(record.subject_id for record in registry.records))


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


class TestTypes:
    def test_text_ids_text_array_purposes_and_dates(self, postgres_schema: PostgresSchema):
        table = postgres_schema.create_table(
            _unique("registry"),
            COLUMNS + ", extra_phi text",
            [
                ("  p-1 ", "research-authorization", ["research", " model-training "], date(2024, 3, 1),
                 date(2027, 3, 1), None, "AUTH-1", "not selected"),
                ("p-2", "opt-out", [], date(2026, 6, 1), None, date(2026, 7, 1), None, "not selected"),
            ],
        )  # fmt: skip

        registry = sql_consent_source(postgres_schema.url, table=table).read()

        first, second = registry.records
        assert first.subject_id == "p-1"
        assert first.basis is ConsentBasis.RESEARCH_AUTHORIZATION
        assert first.purposes == ("research", "model-training")
        assert (first.granted_at, first.expires_at, first.revoked_at) == (
            date(2024, 3, 1),
            date(2027, 3, 1),
            None,
        )
        assert first.reference == "AUTH-1"
        # an opt-out objects to every use, so it may list none
        assert second.is_opt_out and second.purposes == () and second.revoked_at == date(2026, 7, 1)

    def test_integer_and_uuid_ids_are_compared_as_their_text(self, postgres_schema: PostgresSchema):
        integer = postgres_schema.create_table(
            _unique("integer_ids"),
            COLUMNS.replace("subject_id text", "subject_id bigint"),
            [(42, *GOOD[1:])],
        )
        subject = uuid.UUID("0b9e3c1a-6d1e-4f7e-9a55-3f2b1c4d5e6f")
        uuids = postgres_schema.create_table(
            _unique("uuid_ids"), COLUMNS.replace("subject_id text", "subject_id uuid"), [(subject, *GOOD[1:])]
        )

        assert _ids(sql_consent_source(postgres_schema.url, table=integer).read()) == ["42"]
        assert _ids(sql_consent_source(postgres_schema.url, table=uuids).read()) == [str(subject)]

    def test_semicolon_separated_text_purposes_as_in_csv(self, postgres_schema: PostgresSchema):
        table = postgres_schema.create_table(
            _unique("text_purposes"),
            COLUMNS.replace("purposes text[]", "purposes text"),
            [("p-1", "irb-waiver", "research; model-training", date(2025, 1, 1), None, None, None)],
        )
        (record,) = sql_consent_source(postgres_schema.url, table=table).read().records
        assert record.purposes == ("research", "model-training")

    # The date rule (consent/sql.py): a timestamp counts on the calendar date written in it; a timestamptz
    # on its calendar date in the session's TimeZone, which is where the server hands it over; ISO text as
    # in CSV. The same instant, 2026-12-02 04:30 UTC, is 2026-12-01 in New York and 2026-12-02 in UTC.
    @pytest.mark.parametrize(
        ("sql_type", "value", "time_zone", "expected"),
        [
            ("timestamp", "2026-12-01 23:30:00", "UTC", date(2026, 12, 1)),
            ("timestamp", "2026-12-01 23:30:00", "Asia/Tokyo", date(2026, 12, 1)),
            ("timestamptz", "2026-12-01 23:30:00-05", "America/New_York", date(2026, 12, 1)),
            ("timestamptz", "2026-12-01 23:30:00-05", "UTC", date(2026, 12, 2)),
            ("text", "2026-12-01T23:30:00-05:00", "UTC", date(2026, 12, 1)),
            ("date", "2026-12-01", "Asia/Tokyo", date(2026, 12, 1)),
        ],
    )
    def test_date_columns(self, postgres_schema, sql_type, value, time_zone, expected):
        table = postgres_schema.create_table(
            _unique("dates"),
            COLUMNS.replace("granted_at date", f"granted_at {sql_type}"),
            [("p-1", "irb-waiver", ["model-training"], value, None, None, None)],
        )
        url = _with_options(postgres_schema.url, TimeZone=time_zone)

        (record,) = sql_consent_source(url, table=table).read().records

        assert record.granted_at == expected

    def test_rows_are_read_in_several_chunks(self, postgres_schema: PostgresSchema):
        rows = [(f"p-{number}", *GOOD[1:]) for number in range(25)]
        # a chunk whose reference is all null has Arrow's null type: it must join the others
        rows += [(f"q-{number}", *GOOD[1:-1], None) for number in range(10)]
        table = postgres_schema.create_table(_unique("chunks"), COLUMNS, rows)

        registry = sql_consent_source(postgres_schema.url, table=table, batch_rows=10).read()

        assert len(registry) == 35 and _ids(registry)[-1] == "q-9"


class TestTableAndQuery:
    def test_a_query_selects_and_renames_columns(self, postgres_schema: PostgresSchema):
        table = postgres_schema.create_table(
            _unique("wide"),
            "patient text, kind text, uses text[], since date, extra int",
            [("p-1", "irb-waiver", ["model-training"], date(2025, 1, 1), 1), ("p-2", "x", ["y"], None, 0)],
        )
        query = (
            f"SELECT patient AS subject_id, kind AS basis, uses AS purposes, since AS granted_at, "
            f"NULL::date AS expires_at, NULL::date AS revoked_at, NULL::text AS reference, extra "
            f"FROM {table} WHERE extra = 1"
        )
        registry = sql_consent_source(postgres_schema.url, query=query).read()
        assert _ids(registry) == ["p-1"]

    def test_the_table_name_is_the_openlineage_name_and_never_shows_the_password(self, postgres_url: str):
        url = postgres_url.replace("postgres@", f"postgres:{CANARY_PASSWORD}@")
        source = sql_consent_source(url, table="consent.registry")
        assert source.display_name == "postgres://127.0.0.1:5432/test.consent.registry"
        assert sql_consent_source(url, table="registry").display_name.endswith("/test.public.registry")

    def test_a_query_is_named_by_its_database_and_digest_never_its_text(self, postgres_url: str):
        query = f"SELECT * FROM registry WHERE subject_id <> '{CANARY_SUBJECT}'"
        source = sql_consent_source(postgres_url, query=query)
        name = source.display_name
        assert name.startswith("postgres://127.0.0.1:5432/test.query_") and len(name.rpartition("_")[2]) == 16
        assert CANARY_SUBJECT not in name
        assert sql_consent_source(postgres_url, query=query + " ").display_name == name
        assert sql_consent_source(postgres_url, query=query + " AND true").display_name != name

    @pytest.mark.parametrize(
        ("table", "query"), [(None, None), ("registry", "SELECT 1")], ids=["neither", "both"]
    )
    def test_exactly_one_of_table_and_query(self, postgres_url: str, table, query):
        with pytest.raises(ConsentRegistryError, match="exactly one of a table and a query"):
            sql_consent_source(postgres_url, table=table, query=query)

    @pytest.mark.parametrize("table", ["registry; DROP TABLE x", 'a"b', "a.b.c", "1registry", ""])
    def test_a_table_name_that_is_not_a_plain_identifier_is_refused(self, postgres_url: str, table):
        with pytest.raises(ConsentRegistryError, match="table name is not"):
            sql_consent_source(postgres_url, table=table)

    def test_consent_source_dispatches_a_database_url(self, postgres_schema: PostgresSchema):
        table = postgres_schema.create_table(_unique("dispatch"), COLUMNS, [GOOD])
        source = consent_source(postgres_schema.url, table=table)
        assert isinstance(source, SqlConsentSource)
        assert _ids(read_consent_registry(source)) == ["p-1"]


def _refusal_text(error: BaseException) -> str:
    refusals = getattr(error, "refusals", [])
    return " | ".join([str(error), *refusals, repr(error)])


class TestFailures:
    """Each failure a distinct error that names the source and the problem; never a value; not chained."""

    def test_an_unreachable_server_is_a_retryable_failure_not_a_refusal(self, caplog):
        url = f"postgresql+psycopg://postgres:{CANARY_PASSWORD}@127.0.0.1:1/test"
        with caplog.at_level(logging.DEBUG), pytest.raises(ConsentRegistryUnavailableError) as caught:
            sql_consent_source(url, table="registry").read()

        error = caught.value
        assert error.retryable
        assert not isinstance(error, PolicyViolationError)
        assert "postgres://127.0.0.1:1/test.public.registry" in str(error)
        assert "unreachable" in str(error) and "OperationalError" in str(error)
        assert CANARY_PASSWORD not in str(error) + caplog.text
        assert error.__cause__ is None and error.__suppress_context__

    def test_a_missing_table(self, postgres_schema: PostgresSchema):
        with pytest.raises(ConsentRegistryError, match="its table does not exist") as caught:
            sql_consent_source(postgres_schema.url, table=f"{postgres_schema.name}.absent").read()
        assert caught.value.__cause__ is None

    def test_a_missing_schema(self, postgres_schema: PostgresSchema):
        with pytest.raises(ConsentRegistryError, match="does not exist"):
            sql_consent_source(postgres_schema.url, table="phi_guard_no_such_schema.registry").read()

    @pytest.mark.parametrize("column", ["subject_id", "purposes", "revoked_at"])
    def test_a_missing_column_is_named(self, postgres_schema: PostgresSchema, column: str):
        columns = ", ".join(part for part in COLUMNS.split(", ") if not part.startswith(column))
        table = postgres_schema.create_table(_unique("missing"), columns)
        with pytest.raises(ConsentRegistryError, match=f"lacks the required column\\(s\\) {column};"):
            sql_consent_source(postgres_schema.url, table=table).read()

    def test_a_query_that_names_an_absent_column(self, postgres_schema: PostgresSchema):
        table = postgres_schema.create_table(_unique("query_column"), COLUMNS, [GOOD])
        with pytest.raises(ConsentRegistryError, match="names a column that does not exist"):
            sql_consent_source(postgres_schema.url, query=f"SELECT nothing_here FROM {table}").read()

    def test_a_query_that_is_not_sql(self, postgres_url: str):
        with pytest.raises(ConsentRegistryError, match="not valid SQL"):
            sql_consent_source(postgres_url, query="SELEKT everything").read()

    @pytest.mark.parametrize(
        ("replace", "value", "column"),
        [
            ("subject_id text", "subject_id numeric", "subject_id"),
            ("granted_at date", "granted_at integer", "granted_at"),
            ("purposes text[]", "purposes integer[]", "purposes"),
            ("basis text", "basis boolean", "basis"),
        ],
    )
    def test_wrong_types_are_named(self, postgres_schema, replace, value, column):
        row = {
            "subject_id": 4242.5 if "numeric" in value else CANARY_SUBJECT,
            "basis": True if "boolean" in value else "irb-waiver",
            "purposes": [7] if "integer[]" in value else ["model-training"],
            "granted_at": 20250101 if value.split()[1] == "integer" else date(2025, 1, 1),
        }
        table = postgres_schema.create_table(
            _unique("types"),
            COLUMNS.replace(replace, value),
            [(row["subject_id"], row["basis"], row["purposes"], row["granted_at"], None, None, "R")],
        )
        with pytest.raises(ConsentRegistryError, match="wrong type") as caught:
            sql_consent_source(postgres_schema.url, table=table).read()
        assert column in str(caught.value)

    def test_an_empty_registry(self, postgres_schema: PostgresSchema):
        table = postgres_schema.create_table(_unique("empty"), COLUMNS)
        with pytest.raises(ConsentRegistryError, match="is empty: it holds no record"):
            sql_consent_source(postgres_schema.url, table=table).read()

    def test_a_query_that_filters_out_every_row_is_empty(self, postgres_schema: PostgresSchema):
        table = postgres_schema.create_table(_unique("filtered"), COLUMNS, [GOOD])
        with pytest.raises(ConsentRegistryError, match="is empty"):
            sql_consent_source(postgres_schema.url, query=f"SELECT * FROM {table} WHERE false").read()

    def test_a_driver_that_is_not_installed(self):
        with pytest.raises(ConsentRegistryError, match="not a usable SQLAlchemy URL"):
            sql_consent_source(f"postgresql+nosuchdriver://u:{CANARY_PASSWORD}@h/db", table="t")


def _broken_registries(schema: PostgresSchema) -> list[tuple[str, str | None, str | None]]:
    """Registries with canary ids and references, broken in every way the source refuses: table, query."""
    canary = (
        CANARY_SUBJECT,
        "irb-waiver",
        ["model-training"],
        date(2025, 1, 1),
        None,
        None,
        CANARY_REFERENCE,
    )
    malformed = [
        (CANARY_SUBJECT, "verbal-ok", ["model-training"], date(2025, 1, 1), None, None, CANARY_REFERENCE),
        (CANARY_SUBJECT, "irb-waiver", [], date(2025, 1, 1), None, None, CANARY_REFERENCE),
        (CANARY_SUBJECT, "irb-waiver", ["model-training"], date(2025, 1, 1), date(2024, 1, 1), None, None),
    ]
    numeric = COLUMNS.replace("reference text", "reference numeric")
    return [
        ("malformed rows", schema.create_table(_unique("canary_malformed"), COLUMNS, malformed), None),
        ("wrong type", schema.create_table(_unique("canary_type"), numeric, [(*canary[:-1], 8282.5)]), None),
        ("missing column", schema.create_table(_unique("canary_gap"), "subject_id text", [canary[:1]]), None),
        ("empty", None, f"SELECT * FROM {schema.create_table(_unique('canary'), COLUMNS, [canary])} "
                        f"WHERE subject_id <> '{CANARY_SUBJECT}'"),
        ("bad query", None, f"SELECT * FROM nowhere WHERE subject_id = '{CANARY_SUBJECT}'"),
        ("absent table", f"{schema.name}.absent", None),
    ]  # fmt: skip


def test_no_canary_reaches_an_error_a_log_record_or_a_report(
    postgres_schema: PostgresSchema, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    policy = parse_policy(POLICY % {"undeclared": "refuse"})
    source = _source(tmp_path)
    url = postgres_schema.url.replace("postgres@", f"postgres:{CANARY_PASSWORD}@")
    canaries = (CANARY_SUBJECT, CANARY_REFERENCE, CANARY_PASSWORD, "8282.5")

    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for label, table, query in _broken_registries(postgres_schema):
            registry = sql_consent_source(url, table=table, query=query)
            with pytest.raises(ConsentRegistryError) as caught:
                registry.read()
            assert caught.value.__cause__ is None, label
            seen.append(_refusal_text(caught.value))

            result = govern(policy, source, tmp_path / "out.parquet", consent=registry, as_of=AS_OF)
            assert result.report.verdict is Verdict.REFUSED, label
            assert not (tmp_path / "out.parquet").exists(), label
            seen.append(json.dumps(result.report.model_dump(mode="json")))
            seen.extend(refusal.message for refusal in result.refusals)

    published = "\n".join(seen) + "\n" + caplog.text
    for canary in canaries:
        assert canary not in published
    assert "postgres://127.0.0.1:5432/test." in published


def test_the_engine_admits_from_a_postgresql_registry_as_from_the_same_file(
    postgres_schema: PostgresSchema, tmp_path: Path
):
    """The executor's fixture registry in a table: the same admission (2 of 10 rows) as from its CSV."""
    rows = [
        (row["subject_id"], row["basis"], row["purposes"].split(";") if row["purposes"] else [],
         row["granted_at"], row["expires_at"] or None, row["revoked_at"] or None, row["reference"])
        for row in csv.DictReader(io.StringIO(CONSENT))
    ]  # fmt: skip
    table = postgres_schema.create_table(
        _unique("engine"), COLUMNS.replace(" date", " text").replace("text[]", "text[]"), rows
    )
    policy = parse_policy(POLICY % {"undeclared": "refuse"})
    registry = sql_consent_source(postgres_schema.url, table=table)

    result = govern(
        policy, _source(tmp_path), tmp_path / "out.parquet", consent=registry, as_of=AS_OF, pseudonym_key=KEY
    )

    assert result.report.verdict is Verdict.PUBLISHED
    assert (result.report.rows.read, result.report.rows.admitted) == (10, 2)
    assert result.report.consent_registry == registry.display_name
    assert result.report.consent_registry.startswith("postgres://127.0.0.1:5432/test.phi_guard_test_")


def test_the_command_line_reads_a_postgresql_registry_and_names_it_in_report_and_lineage(
    postgres_schema: PostgresSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    from airflow_phi_guard.cli import EXIT_PUBLISHED, main

    rows = [
        (row["subject_id"], row["basis"], row["purposes"].split(";") if row["purposes"] else [],
         row["granted_at"], row["expires_at"] or None, row["revoked_at"] or None, row["reference"])
        for row in csv.DictReader(io.StringIO(CONSENT))
    ]  # fmt: skip
    table = postgres_schema.create_table(_unique("cli"), COLUMNS.replace(" date", " text"), rows)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY % {"undeclared": "refuse"})
    monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", KEY.decode())
    url = postgres_schema.url.replace("postgres@", f"postgres:{CANARY_PASSWORD}@")
    arguments = ["apply", "--policy", str(policy), "--input", str(_source(tmp_path))]
    arguments += ["--output", str(tmp_path / "out.parquet"), "--as-of", AS_OF.isoformat()]
    arguments += ["--report", str(tmp_path / "report.json"), "--events", str(tmp_path / "events.jsonl")]

    status = main([*arguments, "--consent", url, "--consent-table", table])

    assert status == EXIT_PUBLISHED
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["consent_registry"] == f"postgres://127.0.0.1:5432/test.{table}"
    assert report["rows"]["admitted"] == 2
    events = (tmp_path / "events.jsonl").read_text()
    assert f'"name": "test.{table}"' in events.replace('":"', '": "')
    assert CANARY_PASSWORD not in events + json.dumps(report) + str(capsys.readouterr())
