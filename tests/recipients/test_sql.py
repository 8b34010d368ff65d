"""The recipient registry in a PostgreSQL table: the same gate decisions as YAML, and every refusal."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from airflow_phi_guard.cli import main
from airflow_phi_guard.exceptions import RecipientRegistryError, RecipientRegistryUnavailableError
from airflow_phi_guard.recipients import decide
from airflow_phi_guard.recipients.sql import read_recipient_registry, sql_recipient_source
from tests.conftest import PostgresSchema
from tests.recipients.conftest import DDL, LOOSE, _good_row, _unchained, _unique
from tests.recipients.test_gate import REGISTRY, RULES

CANARY_PASSWORD = "CANARY-PASSWORD-6161"
CANARY_DESTINATION = "s3://canary-bucket-6262/x/../y"
CANARY_USE = "canary-use-6363"
CANARY_NAME = "CANARY-NAME-6464"


class TestSameDecisionsAsYaml:
    def test_the_table_reads_as_the_same_registry(self, postgres_url: str, registry_table: str):
        assert sql_recipient_source(postgres_url, table=registry_table).read() == REGISTRY

    # Each row of the gate's rule table (REGULATORY.md "Business associates", issue 8): the answer from the
    # table is the rule's, and the decision is the same as from the YAML file, refusals word for word.
    @pytest.mark.parametrize(("data", "destination", "run_date", "allowed", "sections"), RULES)
    def test_gate_rule_table(
        self, postgres_url, registry_table, data, destination, run_date, allowed, sections
    ):
        registry = sql_recipient_source(postgres_url, table=registry_table).read()

        decision = decide(data, destination, registry, run_date)

        assert decision.allowed is allowed
        assert sections <= set(decision.rules)
        assert decision == decide(data, destination, REGISTRY, run_date)

    def test_semicolon_separated_text_and_iso_text_dates(self, postgres_schema: PostgresSchema, postgres_url):
        columns = (
            LOOSE.replace("text[]", "text")
            .replace("baa_signed date", "baa_signed text")
            .replace("baa_expires date", "baa_expires text")
        )
        table = postgres_schema.create_table(
            _unique("text_cells"),
            columns,
            [
                (
                    "vendor", "Vendor", "s3://a/; https://api.vendor.example", "EU", False, "BAA-1",
                    "2026-01-01", date(2026, 1, 1), "2027-01-01", "model-training;inference", "phi",
                    None, None, None,
                )
            ],
        )  # fmt: skip

        recipient = sql_recipient_source(postgres_url, table=table).read().recipients["vendor"]

        assert recipient.destinations == ("s3://a/", "https://api.vendor.example")
        assert recipient.baa is not None
        assert recipient.baa.permitted_uses == ("model-training", "inference")
        assert (recipient.baa.signed, recipient.baa.expires) == (date(2026, 1, 1), date(2027, 1, 1))


class TestRefusals:
    def test_missing_columns_are_named(self, postgres_schema: PostgresSchema, postgres_url):
        columns = LOOSE.replace(", sale_of_phi boolean", "").replace(", baa_data text", "")
        table = postgres_schema.create_table(_unique("missing"), columns)

        with pytest.raises(
            RecipientRegistryError, match=r"lacks the required column\(s\) sale_of_phi, baa_data"
        ):
            sql_recipient_source(postgres_url, table=table).read()

    def test_malformed_rows_name_columns_and_counts_never_values(self, postgres_schema, postgres_url):
        table = postgres_schema.create_table(
            _unique("malformed"),
            LOOSE,
            [
                _good_row("fine"),
                _good_row("dots", destinations=[CANARY_DESTINATION]),
                _good_row("uses", baa_permitted_uses=[CANARY_USE]),
                _good_row("data", baa_data=CANARY_NAME),
                _good_row("order", baa_expires=date(2025, 1, 1)),
                _good_row("half", baa_id=None, name=CANARY_NAME),
                _good_row("nulls", name=None, sale_of_phi=None),
                _good_row("unsold", sale_authorization_id="A", sale_authorization_recorded=date(2026, 1, 1)),
            ],
        )  # fmt: skip

        with pytest.raises(RecipientRegistryError) as caught:
            sql_recipient_source(postgres_url, table=table).read()

        message = str(caught.value)
        assert "7 of 8 row(s) are malformed" in message
        for problem in (
            "destinations lists a prefix with '.' or '..' segments",
            "baa_permitted_uses lists a use outside the vocabulary",
            "baa_data is not one of phi, deidentified-only",
            "baa_signed, baa_effective, baa_expires are out of order",
            "baa_id is null while other baa_ columns are set",
            "name is null or not text",
            "sale_of_phi is null or not a boolean",
            "sale_authorization_id is set on a row whose sale_of_phi is false",
        ):
            assert f"{problem}" in message
        for canary in (CANARY_DESTINATION, "canary-bucket", CANARY_USE, CANARY_NAME):
            assert canary not in message
        # no driver or pydantic error is chained into ours
        assert _unchained(caught.value)

    def test_a_recipient_listed_twice_and_a_shared_destination(self, postgres_schema, postgres_url):
        twice = postgres_schema.create_table(
            _unique("twice"), LOOSE, [_good_row("a"), _good_row("a", destinations=["s3://other/"])]
        )
        shared = postgres_schema.create_table(
            _unique("shared"), LOOSE, [_good_row("a"), _good_row("b", destinations=["s3://a/"])]
        )

        with pytest.raises(RecipientRegistryError, match=r"recipient_id occurs on more than one row \(2 row"):
            sql_recipient_source(postgres_url, table=twice).read()
        with pytest.raises(
            RecipientRegistryError, match=r"1 destination prefix\(es\) are each listed by more"
        ):
            sql_recipient_source(postgres_url, table=shared).read()

    def test_an_empty_table_is_refused(self, postgres_schema: PostgresSchema, postgres_url):
        table = postgres_schema.create_table(_unique("empty"), DDL)
        with pytest.raises(RecipientRegistryError, match="holds no recipient"):
            sql_recipient_source(postgres_url, table=table).read()

    def test_a_missing_table_is_a_refusal_not_a_retry(self, postgres_schema: PostgresSchema, postgres_url):
        with pytest.raises(RecipientRegistryError, match="does not exist"):
            sql_recipient_source(postgres_url, table=f"{postgres_schema.name}.no_such_table").read()

    def test_a_table_name_that_is_not_plain_is_refused_before_any_query(self, postgres_url):
        with pytest.raises(RecipientRegistryError, match=r"not table or schema\.table"):
            sql_recipient_source(postgres_url, table='x"; DROP TABLE y; --')

    def test_an_unreachable_database_is_retryable_and_shows_no_password(self):
        url = f"postgresql+psycopg://postgres:{CANARY_PASSWORD}@127.0.0.1:1/test"

        with pytest.raises(RecipientRegistryUnavailableError) as caught:
            sql_recipient_source(url, table="recipients").read()

        assert caught.value.retryable
        assert not isinstance(caught.value, RecipientRegistryError)  # which operators fail without retry
        assert CANARY_PASSWORD not in str(caught.value)
        assert _unchained(caught.value)

    def test_an_unusable_url_shows_no_password(self):
        with pytest.raises(RecipientRegistryError) as caught:
            sql_recipient_source(f"nosuchdialect://u:{CANARY_PASSWORD}@h/db", table="recipients")
        assert CANARY_PASSWORD not in str(caught.value)

    def test_a_url_needs_a_table_and_a_file_takes_none(self, postgres_url: str, tmp_path: Path):
        with pytest.raises(RecipientRegistryError, match="needs its table"):
            read_recipient_registry(postgres_url)
        with pytest.raises(RecipientRegistryError, match="not from a YAML file"):
            read_recipient_registry(tmp_path / "recipients.yaml", table="recipients")


class TestCommandLine:
    def _report(self, tmp_path: Path) -> Path:
        """A governance report of a published expert-determination set: PHI, for model training."""
        report = tmp_path / "report.json"
        report.write_text(
            json.dumps(
                {
                    "verdict": "published",
                    "policy": {"name": "p", "digest": "sha256:" + "0" * 64},
                    "purpose": "model-training",
                    "safe_harbor": {"status": "not-met"},
                }
            )
        )
        return report

    # PHI to the vendor whose BAA is in force for model training: allowed (0); to one without: refused (3)
    @pytest.mark.parametrize(
        ("destination", "status"),
        [("s3://baa-vendor/inbound/set.parquet", 0), ("https://api.no-baa.example/v1", 3)],
    )
    def test_gate_reads_the_table(self, tmp_path, postgres_url, registry_table, destination, status, capsys):
        arguments = ["gate", "--report", str(self._report(tmp_path)), "--destination", destination]
        arguments += ["--date", "2026-06-01", "--format", "json"]

        from_table = main([*arguments, "--recipients", postgres_url, "--recipients-table", registry_table])
        table_output = capsys.readouterr().out

        assert from_table == status
        assert json.loads(table_output)["allowed"] is (status == 0)

    def test_a_table_without_a_database_url_is_an_error(self, tmp_path: Path, capsys):
        status = main(
            [
                *("gate", "--report", str(self._report(tmp_path)), "--destination", "s3://x/y"),
                *("--recipients-table", "recipients"),
            ]
        )
        assert status == 1
        assert "--recipients-table" in capsys.readouterr().err

    def test_an_unreachable_registry_fails_without_the_password(self, tmp_path: Path, capsys):
        url = f"postgresql+psycopg://postgres:{CANARY_PASSWORD}@127.0.0.1:1/test"
        status = main(
            [
                *("gate", "--report", str(self._report(tmp_path)), "--destination", "s3://x/y"),
                *("--recipients", url, "--recipients-table", "recipients"),
            ]
        )
        captured = capsys.readouterr()
        assert status == 1
        assert "unreachable" in captured.err
        assert CANARY_PASSWORD not in captured.err + captured.out
