"""Surrogate codes (45 CFR 164.514(c)): random, not derived from the person, the same person the same code
across runs and tables, kept in a private mapping (Parquet or PostgreSQL) that a refused run leaves alone."""

from __future__ import annotations

import fcntl
import logging
import re
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy

from airflow_phi_guard.deid.surrogate import (
    ParquetMappingStore,
    SqlMappingStore,
    SurrogateCodes,
    locked_parquet_mapping,
    normalized_identifiers,
)
from airflow_phi_guard.exceptions import SurrogateMappingError

CANARY = "CANARY-7f3e-PATIENT"
UUID_LOWER = "3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e"


@pytest.fixture(params=["parquet", "postgresql"])
def store(request, tmp_path):
    """One mapping store of each kind, empty."""
    if request.param == "parquet":
        return ParquetMappingStore(tmp_path / "mapping.parquet")
    schema = request.getfixturevalue("postgres_schema")
    engine = sqlalchemy.create_engine(schema.url, poolclass=sqlalchemy.pool.NullPool)
    return SqlMappingStore(engine, f"{schema.name}.surrogates_{uuid.uuid4().hex[:12]}")


def codes(store, values, namespace="patient", commit=True):
    surrogates = SurrogateCodes(store, namespace)
    result = surrogates.codes_for(pa.array(values)).to_pylist()
    if commit:
        surrogates.commit()
    return result


def test_the_same_person_gets_the_same_code_within_a_run_and_across_runs(store):
    first = codes(store, ["a", "b", "a"])
    second = codes(store, ["b", "a", "c"])

    assert first[0] == first[2] != first[1]
    assert second[:2] == [first[1], first[0]]
    assert second[2] not in first


def test_a_code_is_drawn_at_random_not_derived_from_the_identifier(tmp_path):
    # Two mappings that never met give the same identifier different codes: nothing in a code can be
    # computed from the person (164.514(c)(1)).
    one = codes(ParquetMappingStore(tmp_path / "one.parquet"), ["a"])
    two = codes(ParquetMappingStore(tmp_path / "two.parquet"), ["a"])

    assert one != two
    assert re.fullmatch(r"[0-9a-f]{32}", one[0])


def test_a_refused_run_leaves_the_mapping_as_it_was(store):
    before = codes(store, ["a"])
    codes(store, ["b"], commit=False)

    again = SurrogateCodes(store, "patient")
    assert again.known_codes == 1
    assert codes(store, ["a"]) == before


# Identifiers compare after trimming, UUIDs without regard to case, integers as their decimal text; a
# blank or missing identifier gets no code.
SAME = [
    (["abc", " abc "], True),
    ([UUID_LOWER, UUID_LOWER.upper()], True),
    (["ABC", "abc"], False),  # not a UUID: case matters
    (["00042", "42"], False),
]


@pytest.mark.parametrize(("values", "same"), SAME)
def test_identifiers_compare_after_normalisation(tmp_path, values, same):
    first, second = codes(ParquetMappingStore(tmp_path / "m.parquet"), values)

    assert (first == second) is same


def test_integer_identifiers_share_codes_with_their_text(tmp_path):
    store = ParquetMappingStore(tmp_path / "m.parquet")
    (from_text,) = codes(store, ["42"])

    surrogates = SurrogateCodes(store, "patient")
    assert surrogates.codes_for(pa.array([42], pa.int64())).to_pylist() == [from_text]


def test_blank_and_missing_identifiers_get_no_code(tmp_path):
    assert codes(ParquetMappingStore(tmp_path / "m.parquet"), ["", "  ", None, "a"])[:3] == [None] * 3


def test_namespaces_keep_their_codes_apart(store):
    (patient,) = codes(store, ["a"], namespace="patient")
    (provider,) = codes(store, ["a"], namespace="provider")

    assert patient != provider
    assert codes(store, ["a"], namespace="patient") == [patient]


def test_two_tables_of_one_namespace_share_codes(tmp_path):
    # encounters.PATIENT and patients.Id hold the same people under different column names
    store = ParquetMappingStore(tmp_path / "m.parquet")
    from_encounters = codes(store, [UUID_LOWER.upper(), "b"])
    from_patients = codes(store, ["b", UUID_LOWER])

    assert from_patients == [from_encounters[1], from_encounters[0]]


def test_a_parquet_mapping_is_locked_for_the_whole_run(tmp_path):
    path = tmp_path / "m.parquet"
    with (
        locked_parquet_mapping(path),
        open(tmp_path / "m.parquet.lock", "a") as other,
        pytest.raises(BlockingIOError),
    ):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / "m.parquet.lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_codes_added_by_another_run_meanwhile_refuse_this_one(store):
    ours = SurrogateCodes(store, "patient")
    ours.codes_for(pa.array([CANARY]))
    codes(store, [CANARY])  # another run gave the same new person a code first

    with pytest.raises(SurrogateMappingError) as raised:
        ours.commit()
    assert CANARY not in str(raised.value)


def test_nothing_of_an_identifier_reaches_errors_or_logs(tmp_path, caplog):
    store = ParquetMappingStore(tmp_path / "m.parquet")
    with caplog.at_level(logging.DEBUG):
        codes(store, [CANARY])
    (tmp_path / "m.parquet").write_bytes(f"not parquet {CANARY}".encode())

    with pytest.raises(SurrogateMappingError) as raised:
        SurrogateCodes(store, "patient")

    assert CANARY not in str(raised.value)
    assert CANARY not in caplog.text


def test_the_mapping_holds_codes_beside_identifiers_and_the_output_only_codes(tmp_path):
    store = ParquetMappingStore(tmp_path / "m.parquet")
    (code,) = codes(store, [CANARY])

    mapping = store.load("patient")
    assert mapping.to_pylist() == [{"identifier": CANARY, "code": code}]
    assert CANARY not in code


def test_normalisation_refuses_columns_that_hold_no_identifiers():
    with pytest.raises(TypeError):
        normalized_identifiers(pa.array([1.5]))
    assert pc.all(pc.is_null(normalized_identifiers(pa.nulls(2)))).as_py()
