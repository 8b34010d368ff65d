"""The one interface of registry sources: files local or through fsspec URLs, dispatch, names, failures."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.consent.registry import REGISTRY_COLUMNS
from airflow_phi_guard.consent.sources import (
    ConsentSource,
    FileConsentSource,
    consent_display_name,
    consent_source,
    is_database_url,
    read_consent_registry,
    redact_url,
)
from airflow_phi_guard.consent.sql import SqlConsentSource
from airflow_phi_guard.exceptions import (
    ConsentRegistryError,
    ConsentRegistryUnavailableError,
    PolicyViolationError,
)
from airflow_phi_guard.lineage.build import lineage_for_start
from airflow_phi_guard.lineage.datasets import DatasetIdentity, dataset_identity
from airflow_phi_guard.policy.loader import parse_policy
from airflow_phi_guard.policy.models import ConsentBasis
from tests.conftest import MINIMAL_POLICY

HEADER = ",".join(REGISTRY_COLUMNS)
ROWS = "p-1,irb-waiver,model-training;research,2025-01-01,,,IRB-1\np-2,opt-out,,2026-01-01,,,OPT-1\n"
CANARY_PASSWORD = "CANARY-PASSWORD-7373"
CANARY_SUBJECT = "CANARY-SUBJECT-7474"


@pytest.fixture
def memory_folder():
    """A folder of fsspec's in-memory filesystem of this test, removed afterwards."""
    folder = f"/phi-guard-test-{uuid.uuid4().hex[:8]}"
    filesystem = fsspec.filesystem("memory")
    filesystem.mkdir(folder)
    yield filesystem, folder
    filesystem.rm(folder, recursive=True)


def _parquet_table() -> pa.Table:
    return pa.table(
        {
            "subject_id": ["p-1"],
            "basis": ["irb-waiver"],
            "purposes": pa.array([["model-training"]], pa.list_(pa.string())),
            "granted_at": pa.array([date(2025, 1, 1)]),
            "expires_at": pa.array([None], pa.date32()),
            "revoked_at": pa.array([None], pa.date32()),
            "reference": ["IRB-1"],
        }
    )


def _ids(registry) -> list[str]:
    return list(dict.fromkeys(record.subject_id for record in registry.records))


class TestFilesThroughFsspec:
    def test_a_csv_registry_behind_a_memory_url(self, memory_folder):
        filesystem, folder = memory_folder
        filesystem.pipe(f"{folder}/consent.csv", (HEADER + "\n" + ROWS).encode())

        registry = read_consent_registry(f"memory://{folder}/consent.csv")

        assert _ids(registry) == ["p-1", "p-2"]
        first = registry.records[0]
        assert first.purposes == ("model-training", "research")

    def test_a_parquet_registry_behind_a_memory_url(self, memory_folder):
        filesystem, folder = memory_folder
        with filesystem.open(f"{folder}/consent.parquet", "wb") as stream:
            pq.write_table(_parquet_table(), stream)

        registry = read_consent_registry(f"memory://{folder}/consent.parquet")

        assert _ids(registry) == ["p-1"]

    def test_a_file_url_reads_the_local_file(self, tmp_path: Path):
        path = tmp_path / "consent.csv"
        path.write_text(HEADER + "\n" + ROWS)

        assert _ids(read_consent_registry(path.as_uri())) == ["p-1", "p-2"]
        assert _ids(read_consent_registry(path)) == ["p-1", "p-2"]

    def test_a_missing_remote_file_is_a_refusal(self, memory_folder):
        _filesystem, folder = memory_folder
        with pytest.raises(ConsentRegistryError, match="does not exist"):
            read_consent_registry(f"memory://{folder}/absent.csv")

    def test_an_unreachable_store_is_retryable_and_names_no_password(self, caplog):
        """ftp is a real fsspec protocol (standard library); nothing listens on port 1."""
        url = f"ftp://reader:{CANARY_PASSWORD}@127.0.0.1:1/consent.csv"
        with caplog.at_level(logging.DEBUG), pytest.raises(ConsentRegistryUnavailableError) as caught:
            read_consent_registry(url)

        assert caught.value.retryable and not isinstance(caught.value, PolicyViolationError)
        assert "ftp://reader:***@127.0.0.1:1/consent.csv" in str(caught.value)
        assert CANARY_PASSWORD not in str(caught.value) + caplog.text
        assert caught.value.__cause__ is None

    def test_an_unparsable_remote_csv_is_refused_without_its_row(self, memory_folder):
        filesystem, folder = memory_folder
        text = f"{HEADER}\n{CANARY_SUBJECT},irb-waiver,x,2025-01-01,,,R,one-too-many\n"
        filesystem.pipe(f"{folder}/consent.csv", text.encode())
        with pytest.raises(ConsentRegistryError, match="cannot be read as CSV") as caught:
            read_consent_registry(f"memory://{folder}/consent.csv")
        assert CANARY_SUBJECT not in str(caught.value)

    @pytest.mark.parametrize("name", ["consent.csv", "consent.parquet"])
    def test_an_empty_registry_is_refused(self, memory_folder, name):
        filesystem, folder = memory_folder
        if name.endswith(".csv"):
            filesystem.pipe(f"{folder}/{name}", (HEADER + "\n").encode())
        else:
            with filesystem.open(f"{folder}/{name}", "wb") as stream:
                pq.write_table(_parquet_table().slice(0, 0), stream)
        with pytest.raises(ConsentRegistryError, match="is empty: it holds no record"):
            read_consent_registry(f"memory://{folder}/{name}")


class TestDispatch:
    @pytest.mark.parametrize(
        ("location", "database"),
        [
            ("postgresql+psycopg://u@h:5432/db", True),
            ("postgresql://u@h/db", True),
            ("sqlite:///consent.db", True),
            ("mysql+pymysql://u@h/db", True),
            ("memory://consent.csv", False),
            ("file:///data/consent.csv", False),
            ("s3://bucket/consent.parquet", False),
            ("/data/consent.csv", False),
            ("consent.csv", False),
            (r"C:\data\consent.csv", False),
        ],
    )
    def test_database_urls_and_files(self, location: str, database: bool):
        assert is_database_url(location) is database

    def test_a_file_is_a_file_source_and_a_source_is_taken_as_it_is(self, tmp_path: Path):
        source = consent_source(tmp_path / "consent.csv")
        assert isinstance(source, FileConsentSource) and isinstance(source, ConsentSource)
        assert consent_source(source) is source

    def test_a_database_url_is_a_sql_source(self):
        source = consent_source("postgresql+psycopg://u@127.0.0.1:5432/db", table="s.t")
        assert isinstance(source, SqlConsentSource)

    def test_a_table_for_a_file_is_refused(self, tmp_path: Path):
        with pytest.raises(ConsentRegistryError, match="is a file, so a table or query cannot be read"):
            consent_source(tmp_path / "consent.csv", table="registry")

    def test_a_database_url_without_table_or_query_is_refused(self):
        with pytest.raises(ConsentRegistryError, match="exactly one of a table and a query"):
            consent_source("postgresql+psycopg://u@127.0.0.1:5432/db")


class TestNames:
    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            (f"postgresql+psycopg://u:{CANARY_PASSWORD}@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
            ("postgresql+psycopg://u@h/db?sslpassword=x&options=y", "postgresql+psycopg://u@h/db"),
            (f"ftp://u:{CANARY_PASSWORD}@h/consent.csv", "ftp://u:***@h/consent.csv"),
            ("memory://consent.csv", "memory://consent.csv"),
            ("/data/consent.csv", "/data/consent.csv"),
        ],
    )
    def test_urls_are_shown_without_password_or_query(self, url: str, shown: str):
        assert redact_url(url) == shown

    def test_a_local_file_is_named_by_its_absolute_path(self, tmp_path: Path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        assert consent_display_name("consent.csv") == str(tmp_path / "consent.csv")
        assert consent_display_name("memory://x/consent.csv") == "memory://x/consent.csv"

    def test_the_lineage_names_a_postgresql_table_as_the_naming_spec(self):
        """OpenLineage naming: namespace postgres://{host}:{port}, name {database}.{schema}.{table}."""
        url = f"postgresql+psycopg://reader:{CANARY_PASSWORD}@db.example:5432/ehr"
        table = consent_source(url, table="consent.permissions")
        query = consent_source(url, query=f"SELECT * FROM consent.permissions WHERE x <> '{CANARY_SUBJECT}'")
        unqualified = consent_source(url.replace(":5432", ""), table="permissions")

        assert dataset_identity(table.display_name) == DatasetIdentity(
            "postgres://db.example:5432", "ehr.consent.permissions"
        )
        assert dataset_identity(unqualified.display_name) == DatasetIdentity(
            "postgres://db.example:5432", "ehr.public.permissions"
        )
        queried = dataset_identity(query.display_name)
        assert queried.namespace == "postgres://db.example:5432"
        assert queried.name.startswith("ehr.query_") and CANARY_SUBJECT not in queried.name

        lineage = lineage_for_start(parse_policy(MINIMAL_POLICY), consent_registry=table.display_name)
        (registry,) = lineage.inputs
        assert (registry.namespace, registry.name) == (
            "postgres://db.example:5432",
            "ehr.consent.permissions",
        )
        assert CANARY_PASSWORD not in str(lineage)


def test_a_fhir_ndjson_file_is_read_through_the_fhir_mapping(memory_folder):
    """An active research permit (FHIR R4 Consent) reaches the registry as one research-authorization."""
    filesystem, folder = memory_folder
    resource = {
        "resourceType": "Consent",
        "id": "c1",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "dateTime": "2024-02-15T09:00:00+01:00",
        "provision": {
            "type": "permit",
            "period": {"start": "2024-03-01", "end": "2029-03-01"},
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}],
        },
    }
    filesystem.pipe(f"{folder}/consent.ndjson", (json.dumps(resource) + "\n").encode())

    (record,) = read_consent_registry(f"memory://{folder}/consent.ndjson").records

    assert record.subject_id == "p1"
    assert record.basis is ConsentBasis.RESEARCH_AUTHORIZATION
    assert (record.granted_at, record.expires_at) == (date(2024, 3, 1), date(2029, 3, 1))
