"""The hash chain: each kind of tampering is found and named by record number and sequence."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime

import pytest

from airflow_phi_guard.exceptions import AuditTrailError
from airflow_phi_guard.trail.chain import (
    GENESIS,
    RecordKind,
    TrailEntry,
    TrailHead,
    canonical_json,
    check_heads,
    record_digest,
    retain_until,
)
from airflow_phi_guard.trail.store import JsonlTrail

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _entry(number: int) -> TrailEntry:
    return TrailEntry(kind=RecordKind.GOVERNANCE_RUN, verdict="published", counts={"rows_read": number})


@pytest.fixture
def trail(tmp_path):
    store = JsonlTrail(tmp_path / "audit-trail.jsonl")
    for number in range(1, 6):
        store.append(_entry(number), at=AT)
    return store


def _lines(store: JsonlTrail) -> list[str]:
    return store.path.read_text(encoding="utf-8").splitlines()


def _rehash(fields: dict) -> str:
    return canonical_json(fields | {"digest": record_digest(fields)})


def _edit(lines):
    fields = json.loads(lines[2])
    fields["counts"]["rows_read"] = 999
    return [*lines[:2], canonical_json(fields), *lines[3:]]


def _edit_and_rehash(lines):
    fields = json.loads(lines[2])
    fields["verdict"] = "refused"
    return [*lines[:2], _rehash(fields), *lines[3:]]


def _delete(lines):
    return lines[:2] + lines[3:]


def _insert_forged(lines):
    # a well-formed record with a valid digest, chained to record 2, slipped in before record 3
    forged = json.loads(lines[2])
    forged["counts"]["rows_read"] = 42
    return [*lines[:2], _rehash(forged), *lines[2:]]


def _insert_garbage(lines):
    return [*lines[:2], '{"not": "a record"}', *lines[2:]]


def _swap(lines):
    return [*lines[:2], lines[3], lines[2], *lines[4:]]


def _delete_first(lines):
    return lines[1:]


# Each row: how the file is tampered with, then the problems verify must name as (kind, record, sequence).
# The expected places follow from the chain's rule (each record holds the digest of the one before and the
# next sequence number), not from a run of the code.
TAMPERING = [
    # a field changed: that record's digest no longer matches it
    pytest.param(_edit, [("edited", 3, 3)], id="edit-a-field"),
    # a field changed and the digest recomputed: the next record's link to it breaks
    pytest.param(_edit_and_rehash, [("broken-link", 4, 4)], id="edit-and-rehash"),
    # record 3 removed: record 3 of the file now claims sequence 4
    pytest.param(_delete, [("missing", 3, 4)], id="delete-a-record"),
    pytest.param(_delete_first, [("missing", 1, 2)], id="delete-the-first-record"),
    # a forged record with a valid digest after record 2: the real sequence 3 now comes twice
    pytest.param(_insert_forged, [("inserted", 4, 3)], id="insert-a-forged-record"),
    # a line that is no record at all
    pytest.param(_insert_garbage, [("unreadable", 3, None)], id="insert-garbage"),
    # records 3 and 4 swapped: both are out of place
    pytest.param(_swap, [("reordered", 3, 4), ("reordered", 4, 3)], id="reorder-two"),
]


@pytest.mark.parametrize(("tamper", "expected"), TAMPERING)
def test_verify_names_each_kind_of_tampering(trail, tamper, expected):
    assert trail.verify().intact
    trail.path.write_text("\n".join(tamper(_lines(trail))) + "\n", encoding="utf-8")

    verification = trail.verify()

    assert not verification.intact
    assert [(problem.kind, problem.record, problem.sequence) for problem in verification.problems] == expected
    for kind, record, _ in expected:
        assert f"record {record}" in verification.describe()
        assert kind in verification.describe()


def test_an_intact_chain_links_each_record_to_the_one_before(trail):
    records = [json.loads(line) for line in _lines(trail)]

    assert records[0]["previous"] == GENESIS
    assert [record["sequence"] for record in records] == [1, 2, 3, 4, 5]
    for before, after in itertools.pairwise(records):
        assert after["previous"] == before["digest"]
    verification = trail.verify()
    assert verification.intact
    assert verification.head == TrailHead(sequence=5, digest=records[-1]["digest"])


def test_a_cut_tail_is_invisible_to_the_chain_alone_but_not_to_a_lineage_head(trail):
    """Truncation leaves a shorter chain that is whole: only a head recorded elsewhere shows it."""
    head = trail.verify().head
    trail.path.write_text("\n".join(_lines(trail)[:3]) + "\n", encoding="utf-8")

    alone = trail.verify()
    assert alone.intact
    assert alone.records == 3

    anchored = check_heads(alone, [head], trail.stored())
    assert [(problem.kind, problem.sequence) for problem in anchored.problems] == [("head-missing", 5)]
    assert "tail was cut" in anchored.describe()


def test_a_rewritten_chain_is_caught_by_the_lineage_head(trail):
    """Edit record 3 and rehash every record after it: the chain is whole, the recorded head is not in it."""
    head = trail.verify().head
    lines = _lines(trail)
    rewritten, previous = lines[:2], json.loads(lines[1])["digest"]
    for line in lines[2:]:
        fields = json.loads(line) | {"previous": previous}
        fields["counts"]["rows_read"] += 100
        rewritten.append(_rehash(fields))
        previous = json.loads(rewritten[-1])["digest"]
    trail.path.write_text("\n".join(rewritten) + "\n", encoding="utf-8")

    assert trail.verify().intact
    anchored = check_heads(trail.verify(), [head], trail.stored())
    assert [(problem.kind, problem.record, problem.sequence) for problem in anchored.problems] == [
        ("head-mismatch", 5, 5)
    ]


def test_an_append_after_a_broken_last_record_is_refused(trail):
    trail.path.write_text("\n".join(_edit(_lines(trail))[:3]) + "\n", encoding="utf-8")

    with pytest.raises(AuditTrailError, match="last record"):
        trail.append(_entry(6), at=AT)

    assert len(_lines(trail)) == 3


@pytest.mark.parametrize(
    ("recorded", "kept_until"),
    [
        # 164.530(j)(2): six years from creation
        (datetime(2026, 12, 1, tzinfo=UTC), date(2032, 12, 1)),
        (datetime(2028, 2, 29, tzinfo=UTC), date(2034, 2, 28)),
    ],
)
def test_retention_is_six_years(recorded, kept_until):
    assert retain_until(recorded) == kept_until


def test_records_carry_their_retention(trail):
    record = json.loads(_lines(trail)[0])
    assert record["retain_until"] == "2032-12-01"
    assert record["retention_rule"] == "45 CFR 164.530(j)"


def test_concurrent_appends_make_one_chain(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    path = tmp_path / "audit-trail.jsonl"
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_append_ten, [path] * 4))

    verification = JsonlTrail(path).verify()
    assert verification.intact
    assert verification.records == 40


def _append_ten(path) -> None:
    store = JsonlTrail(path)
    for number in range(10):
        store.append(_entry(number))


def test_unreadable_lines_are_not_quoted(trail):
    canary = "CANARY-SSN-123-45-6789"
    trail.path.write_text(_lines(trail)[0] + "\n" + canary + "\n", encoding="utf-8")

    assert canary not in trail.verify().describe()
    assert canary not in trail.verify().model_dump_json()
