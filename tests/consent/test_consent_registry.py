"""Tests of reading a consent registry from CSV and Parquet, and of refusing a malformed one."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from airflow_phi_guard.consent.purposes import PURPOSE_OF_USE
from airflow_phi_guard.consent.registry import (
    _MASK_BITS,
    REGISTRY_COLUMNS,
    ConsentRecord,
    ConsentRegistry,
    _exact_contradictions,
    contradictory_subjects,
    group_subjects,
    hash_text,
    registry_from_batches,
    registry_from_table,
)
from airflow_phi_guard.consent.sources import read_consent_registry
from airflow_phi_guard.exceptions import ConsentRegistryError, PolicyViolationError
from airflow_phi_guard.policy.models import ConsentBasis

HEADER = ",".join(REGISTRY_COLUMNS)
# Planted in bad rows: none of them may appear in a refusal.
CANARY_SUBJECT = "CANARY-SUBJECT-5501"
CANARY_REFERENCE = "CANARY-REF-7702"
GOOD_ROW = "good-1,irb-waiver,model-training,2025-01-01,,,IRB-000001"


def write_csv(folder: Path, *rows: str, header: str = HEADER, name: str = "consent.csv") -> Path:
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def refusal_text(error: ConsentRegistryError) -> str:
    return str(error) + " | " + " | ".join(error.refusals)


class TestReadCsv:
    def test_reads_every_column(self, tmp_path: Path) -> None:
        path = write_csv(
            tmp_path,
            "  p-1  ,research-authorization, research ; model-training ;,2024-03-01,2027-03-01,,AUTH-000123",
            "p-1,opt-out,model-training,2026-06-01,,2026-07-01,",
            "p-2,irb-waiver,model-training,2025-01-01,,,IRB-000002",
        )

        registry = read_consent_registry(path)

        assert registry.source == str(path)
        assert len(registry) == 3
        assert registry.subject_ids.to_pylist() == ["p-1", "p-2"]
        first, second = registry.records_for("p-1")
        assert first == ConsentRecord(
            subject_id="p-1",
            basis=ConsentBasis.RESEARCH_AUTHORIZATION,
            purposes=("research", "model-training"),
            granted_at=date(2024, 3, 1),
            expires_at=date(2027, 3, 1),
            revoked_at=None,
            reference="AUTH-000123",
        )
        assert second.basis is ConsentBasis.OPT_OUT
        assert second.revoked_at == date(2026, 7, 1)
        assert second.reference is None
        assert registry.records_for(" p-2 ")[0].reference == "IRB-000002"
        assert registry.records_for("p-3") == ()

    def test_extra_columns_are_ignored_and_column_order_is_free(self, tmp_path: Path) -> None:
        header = "reference,note,revoked_at,expires_at,granted_at,purposes,basis,subject_id"
        path = write_csv(tmp_path, "AUTH-1,x,,,2025-01-01,model-training,irb-waiver,p-1", header=header)
        (record,) = read_consent_registry(path).records
        assert (record.subject_id, record.basis, record.reference) == (
            "p-1",
            ConsentBasis.IRB_WAIVER,
            "AUTH-1",
        )

    def test_numeric_looking_ids_stay_text(self, tmp_path: Path) -> None:
        """CSV columns are all text: an id with leading zeros keeps them."""
        path = write_csv(tmp_path, "00042,irb-waiver,model-training,2025-01-01,,,000123")
        (record,) = read_consent_registry(path).records
        assert (record.subject_id, record.reference) == ("00042", "000123")

    def test_header_only_is_an_empty_registry_and_refused(self, tmp_path: Path) -> None:
        """Issue 4: an empty registry is a distinct error, not a registry that admits nobody."""
        with pytest.raises(ConsentRegistryError, match="is empty: it holds no record"):
            read_consent_registry(write_csv(tmp_path))


# The date rule: an ISO date, or an ISO timestamp that counts on the calendar date written in it.
DATES = [
    pytest.param("2026-12-01", date(2026, 12, 1), id="iso-date"),
    pytest.param("2026-12-01T08:15:00", date(2026, 12, 1), id="timestamp"),
    pytest.param("2026-12-01 08:15:00", date(2026, 12, 1), id="timestamp-with-space"),
    # 23:30 at UTC-5 is 2026-12-02 in UTC: not converted.
    pytest.param("2026-12-01T23:30:00-05:00", date(2026, 12, 1), id="late-west-of-utc"),
    # 00:30 at UTC+9 is 2026-11-30 in UTC: not converted.
    pytest.param("2026-12-01T00:30:00+09:00", date(2026, 12, 1), id="early-east-of-utc"),
    pytest.param("2026-12-01T23:59:59.999Z", date(2026, 12, 1), id="utc-z"),
]


@pytest.mark.parametrize(("text", "expected"), DATES)
def test_dates_count_on_the_calendar_date_as_recorded(tmp_path: Path, text: str, expected: date) -> None:
    path = write_csv(tmp_path, f"p-1,irb-waiver,model-training,{text},{text},{text},")
    (record,) = read_consent_registry(path).records
    assert (record.granted_at, record.expires_at, record.revoked_at) == (expected, expected, expected)


class TestReadParquet:
    def test_reads_lists_dates_integer_ids_and_zoned_timestamps(self, tmp_path: Path) -> None:
        table = pa.table(
            {
                "subject_id": pa.array([7, 8], pa.int64()),
                "basis": ["research-authorization", "opt-out"],
                "purposes": pa.array(
                    [["research", "model-training"], ["model-training"]], pa.list_(pa.string())
                ),
                # 2026-01-02T03:30Z is 2026-01-01 22:30 in New York, the zone it was recorded in.
                "granted_at": pa.array(
                    [1767324600_000_000, 1767324600_000_000], pa.timestamp("us", tz="America/New_York")
                ),
                "expires_at": pa.array([date(2027, 1, 1), None], pa.date32()),
                "revoked_at": pa.array([None, None], pa.null()),
                "reference": ["AUTH-000007", None],
            }
        )
        path = tmp_path / "consent.parquet"
        pq.write_table(table, path)

        registry = read_consent_registry(path)

        assert registry.subject_ids.to_pylist() == ["7", "8"]
        first, second = registry.records
        assert first.purposes == ("research", "model-training")
        assert first.granted_at == date(2026, 1, 1)
        assert first.expires_at == date(2027, 1, 1)
        assert first.revoked_at is None
        assert second.basis is ConsentBasis.OPT_OUT

    def test_csv_and_parquet_of_the_same_registry_read_alike(self, tmp_path: Path) -> None:
        rows = [
            "p-1,research-authorization,research;model-training,2024-03-01,2027-03-01,,AUTH-000001",
            "p-2,opt-out,model-training,2026-06-01,,2026-07-01,OPT-000002",
        ]
        from_csv = read_consent_registry(write_csv(tmp_path, *rows))
        table = pa.table(
            {
                "subject_id": ["p-1", "p-2"],
                "basis": ["research-authorization", "opt-out"],
                "purposes": [["research", "model-training"], ["model-training"]],
                "granted_at": [date(2024, 3, 1), date(2026, 6, 1)],
                "expires_at": [date(2027, 3, 1), None],
                "revoked_at": [None, date(2026, 7, 1)],
                "reference": ["AUTH-000001", "OPT-000002"],
            }
        )
        pq.write_table(table, tmp_path / "consent.parquet")
        from_parquet = read_consent_registry(tmp_path / "consent.parquet")
        assert from_parquet.records == from_csv.records

    def test_purposes_must_be_a_list_in_parquet(self, tmp_path: Path) -> None:
        table = pa.table(
            {name: ["x"] for name in REGISTRY_COLUMNS} | {"granted_at": pa.array([date(2025, 1, 1)])}
        )
        pq.write_table(table, tmp_path / "consent.parquet")
        with pytest.raises(ConsentRegistryError, match=r"purposes \(string\)"):
            read_consent_registry(tmp_path / "consent.parquet")


class TestUnusableRegistry:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConsentRegistryError, match="does not exist"):
            read_consent_registry(tmp_path / "absent.csv")

    def test_is_a_policy_refusal(self, tmp_path: Path) -> None:
        """A registry problem refuses the run (exit 3), like every other enforcement outcome."""
        with pytest.raises(PolicyViolationError):
            read_consent_registry(tmp_path / "absent.parquet")

    def test_unknown_kind(self, tmp_path: Path) -> None:
        path = tmp_path / "consent.xlsx"
        path.write_text("x")
        with pytest.raises(ConsentRegistryError, match=r"neither \.csv nor \.parquet"):
            read_consent_registry(path)

    def test_empty_csv(self, tmp_path: Path) -> None:
        path = tmp_path / "consent.csv"
        path.write_text("")
        with pytest.raises(ConsentRegistryError, match="no header"):
            read_consent_registry(path)

    def test_csv_that_pyarrow_cannot_parse_is_refused_without_its_row(self, tmp_path: Path) -> None:
        path = write_csv(
            tmp_path, GOOD_ROW, f"{CANARY_SUBJECT},irb-waiver,x,2025-01-01,,,{CANARY_REFERENCE},extra"
        )
        with pytest.raises(ConsentRegistryError, match="cannot be read as CSV") as caught:
            read_consent_registry(path)
        assert CANARY_SUBJECT not in refusal_text(caught.value)
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__

    def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "consent.csv"
        path.write_bytes(b"\xff\xfe\x00subject")
        with pytest.raises(ConsentRegistryError):
            read_consent_registry(path)

    def test_parquet_that_is_not_parquet(self, tmp_path: Path) -> None:
        path = tmp_path / "consent.parquet"
        path.write_text(f"{CANARY_SUBJECT},irb-waiver\n")
        with pytest.raises(ConsentRegistryError, match="cannot be read as Parquet") as caught:
            read_consent_registry(path)
        assert CANARY_SUBJECT not in refusal_text(caught.value)

    @pytest.mark.parametrize("column", REGISTRY_COLUMNS)
    def test_missing_column_is_named(self, tmp_path: Path, column: str) -> None:
        header = ",".join(name for name in REGISTRY_COLUMNS if name != column)
        path = write_csv(tmp_path, header=header)
        with pytest.raises(ConsentRegistryError, match=f"lacks the required column\\(s\\) {column};"):
            read_consent_registry(path)

    def test_column_given_twice(self, tmp_path: Path) -> None:
        path = write_csv(tmp_path, header=HEADER + ",basis")
        with pytest.raises(ConsentRegistryError, match="basis more than once"):
            read_consent_registry(path)


# Each malformed row, planted twice beside a good row: the refusal names the problem with its column and
# the count (2), and never quotes the canary subject id, the canary reference or the bad cell.
S, R = CANARY_SUBJECT, CANARY_REFERENCE
MALFORMED = [
    # (row, the problem as the refusal words it, the bad cell or None)
    pytest.param(
        f"{S},research-consent,model-training,2025-01-01,,,{R}",
        "have a missing or unknown basis",
        "research-consent",
        id="unknown-basis",
    ),
    pytest.param(
        f"{S},,model-training,2025-01-01,,,{R}", "have a missing or unknown basis", None, id="missing-basis"
    ),
    pytest.param(
        f"{S},irb-waiver,model-training,01/02/2025,,,{R}",
        "have an unparsable date in granted_at",
        "01/02/2025",
        id="unparsable-granted_at",
    ),
    pytest.param(
        f"{S},irb-waiver,model-training,2025-01-01,2026-13-01,,{R}",
        "have an unparsable date in expires_at",
        "2026-13-01",
        id="unparsable-expires_at",
    ),
    pytest.param(
        f"{S},irb-waiver,model-training,2025-01-01,,soon,{R}",
        "have an unparsable date in revoked_at",
        "soon",
        id="unparsable-revoked_at",
    ),
    pytest.param(f"{S},irb-waiver,model-training,,,,{R}", "have no granted_at", None, id="no-granted_at"),
    pytest.param(
        f"   ,irb-waiver,model-training,2025-01-01,,,{R}",
        "have an empty subject_id",
        None,
        id="blank-subject_id",
    ),
    pytest.param(
        f",irb-waiver,model-training,2025-01-01,,,{R}",
        "have an empty subject_id",
        None,
        id="empty-subject_id",
    ),
    pytest.param(f"{S},irb-waiver,,2025-01-01,,,{R}", "list no purposes", None, id="no-purposes"),
    pytest.param(f"{S},irb-waiver, ; ;,2025-01-01,,,{R}", "list no purposes", None, id="only-separators"),
    pytest.param(
        f"{S},irb-waiver,model-training,2025-01-02,2025-01-01,,{R}",
        "have expires_at before granted_at",
        None,
        id="expires_at-before-granted_at",
    ),
    pytest.param(
        f"{S},irb-waiver,model-training,2025-01-02,,2025-01-01,{R}",
        "have revoked_at before granted_at",
        None,
        id="revoked_at-before-granted_at",
    ),
]


@pytest.mark.parametrize(("bad_row", "problem", "bad_cell"), MALFORMED)
def test_malformed_rows_are_counted_and_never_quoted(
    tmp_path: Path, bad_row: str, problem: str, bad_cell: str | None
) -> None:
    path = write_csv(tmp_path, GOOD_ROW, bad_row, bad_row)

    with pytest.raises(ConsentRegistryError) as caught:
        read_consent_registry(path)

    (refusal,) = caught.value.refusals
    assert f"2 row(s) {problem}" in refusal
    text = refusal_text(caught.value)
    assert CANARY_SUBJECT not in text
    assert CANARY_REFERENCE not in text
    if bad_cell is not None:
        assert bad_cell not in text


def test_several_problems_give_one_refusal_each_in_column_order(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        f"{S},irb-waiver,model-training,2025-01-01,,not-a-date,{R}",
        f"{S},research-consent,model-training,2025-01-01,,,{R}",
        f"{S},research-consent,,2025-01-01,,,{R}",
    )
    with pytest.raises(ConsentRegistryError) as caught:
        read_consent_registry(path)
    refusals = caught.value.refusals
    assert len(refusals) == 3
    assert "2 row(s) have a missing or unknown basis" in refusals[0]
    assert "1 row(s) list no purposes" in refusals[1]
    assert "1 row(s) have an unparsable date in revoked_at" in refusals[2]


def test_an_opt_out_may_list_no_purpose(tmp_path: Path) -> None:
    """An opt-out objects to every use, so an empty purposes cell is no malformation for it."""
    path = write_csv(tmp_path, "p-1,opt-out,,2025-01-01,,,OPT-1")
    (record,) = read_consent_registry(path).records
    assert record.is_opt_out
    assert record.purposes == ()


def test_expiry_on_the_day_of_the_grant_is_not_malformed(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "p-1,irb-waiver,model-training,2025-01-01,2025-01-01,2025-01-01,")
    (record,) = read_consent_registry(path).records
    assert record.expires_at == record.granted_at == record.revoked_at


class TestConsentRecord:
    def test_is_frozen(self) -> None:
        record = ConsentRecord(
            subject_id="p", basis="irb-waiver", purposes=["model-training"], granted_at="2025-01-01"
        )
        with pytest.raises(ValidationError):
            record.subject_id = "q"  # type: ignore[misc]

    def test_validation_errors_do_not_quote_values(self) -> None:
        with pytest.raises(ValidationError) as caught:
            ConsentRecord(
                subject_id=CANARY_SUBJECT, basis=CANARY_REFERENCE, purposes=["x"], granted_at="2025-01-01"
            )
        assert CANARY_REFERENCE not in str(caught.value)
        assert CANARY_SUBJECT not in str(caught.value)

    def test_refuses_unknown_fields(self) -> None:
        with pytest.raises(ValidationError):
            ConsentRecord(
                subject_id="p", basis="irb-waiver", purposes=["x"], granted_at="2025-01-01", note="free text"
            )


def test_registry_groups_records_by_subject() -> None:
    def record(subject: str, basis: str) -> ConsentRecord:
        return ConsentRecord(
            subject_id=subject, basis=basis, purposes=["model-training"], granted_at="2025-01-01"
        )

    records = (record("a", "irb-waiver"), record("b", "opt-out"), record(" a", "opt-out"))
    registry = ConsentRegistry.from_records("memory", records)
    assert len(registry) == 3
    assert registry.subject_ids.to_pylist() == ["a", "b"]
    assert [r.basis for r in registry.records_for("a")] == [ConsentBasis.IRB_WAIVER, ConsentBasis.OPT_OUT]


def test_repr_names_no_subject_and_no_reference() -> None:
    """A record or registry that ends up in a log line shows counts and bases, not who or which document."""
    record = ConsentRecord(
        subject_id=CANARY_SUBJECT,
        basis="irb-waiver",
        purposes=["model-training"],
        granted_at="2025-01-01",
        reference=CANARY_REFERENCE,
    )
    registry = ConsentRegistry.from_records("memory", (record,))
    for text in (repr(record), str(record), repr(registry), str(registry)):
        assert CANARY_SUBJECT not in text
        assert CANARY_REFERENCE not in text
    assert "records=1" in repr(registry)


# ---- Issue 4: purposes from the vocabulary, impossible dates, contradictory duplicates, canaries ----

VOCABULARY_ROWS = [
    # (purposes cell, malformed?)
    pytest.param("model-training;research", False, id="product-names"),
    pytest.param("HRESCH;MLTRAINING", False, id="purpose-of-use-codes"),
    pytest.param("http://terminology.hl7.org/CodeSystem/v3-ActReason|HRESCH", False, id="code-with-system"),
    pytest.param("model-training;newsletters", True, id="one-unknown-purpose"),
    pytest.param("hresch", True, id="code-in-wrong-case"),
]


@pytest.mark.parametrize(("cell", "malformed"), VOCABULARY_ROWS)
def test_purposes_must_belong_to_the_vocabulary(tmp_path: Path, cell: str, malformed: bool) -> None:
    path = write_csv(tmp_path, f"p-1,irb-waiver,{cell},2025-01-01,,,")
    if not malformed:
        assert len(read_consent_registry(path)) == 1
        return
    with pytest.raises(ConsentRegistryError) as caught:
        read_consent_registry(path)
    (refusal,) = caught.value.refusals
    assert "1 row(s) list a purpose outside the vocabulary" in refusal
    assert "newsletters" not in refusal.split("(")[0]


@pytest.mark.parametrize("text", ["2025-02-29", "2026-02-30", "2026-04-31", "2026-00-10", "2026-12-01T25:00"])
def test_impossible_dates_are_unparsable(tmp_path: Path, text: str) -> None:
    path = write_csv(tmp_path, f"p-1,irb-waiver,model-training,{text},,,")
    with pytest.raises(ConsentRegistryError, match="1 row\\(s\\) have an unparsable date in granted_at"):
        read_consent_registry(path)


def test_a_leap_day_is_a_date(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "p-1,irb-waiver,model-training,2024-02-29T23:59:59+14:00,,,")
    (record,) = read_consent_registry(path).records
    assert record.granted_at == date(2024, 2, 29)


# Contradictory duplicates: two records of one subject that are the same permission but disagree on when
# it ends. (rows, number of subjects with contradictory records: 0 means the registry is accepted.)
BASE = "p-1,research-authorization,model-training,2025-01-01"
CONTRADICTIONS = [
    pytest.param([f"{BASE},,,A-1", f"{BASE},,,A-1"], 0, id="exact-duplicates-are-one-record"),
    pytest.param([f"{BASE},2027-01-01,,", f"{BASE},,,"], 1, id="same-terms-different-expiry"),
    pytest.param([f"{BASE},,2026-01-01,", f"{BASE},,,"], 1, id="same-terms-different-revocation"),
    # purposes compare as PurposeOfUse codes, so the name and the code are the same purpose
    pytest.param(
        [f"{BASE},2027-01-01,,", "p-1,research-authorization,MLTRAINING,2025-01-01,,,"],
        1,
        id="same-purpose-spelled-otherwise",
    ),
    pytest.param([f"{BASE},,,A-1", f"{BASE},,,A-2"], 0, id="two-documents-same-terms"),
    pytest.param([f"{BASE},2027-01-01,,A-1", f"{BASE},,,A-2"], 1, id="same-terms-two-documents-other-expiry"),
    pytest.param(
        [
            "p-1,research-authorization,model-training,2025-01-01,,,A-1",
            "p-1,irb-waiver,model-training,2025-01-01,,,A-1",
        ],
        1,
        id="one-document-two-bases",
    ),
    pytest.param(
        [f"{BASE},,,A-1", "p-1,research-authorization,model-training,2025-06-01,,,A-1"],
        1,
        id="one-document-two-grant-dates",
    ),
    # a revocation followed by a new grant is two permissions, not a contradiction
    pytest.param(
        [f"{BASE},,2025-06-01,A-1", "p-1,research-authorization,model-training,2025-09-01,,,A-2"],
        0,
        id="revoked-then-granted-again",
    ),
    # the same document id for two subjects is a study's waiver, not a contradiction
    pytest.param(
        [f"{BASE},,,IRB-1", "p-2,research-authorization,model-training,2025-03-01,,,IRB-1"],
        0,
        id="shared-waiver",
    ),
    pytest.param(
        [
            f"{BASE},2027-01-01,,",
            f"{BASE},,,",
            "p-2,irb-waiver,model-training,2025-01-01,,,X",
            "p-2,irb-waiver,model-training,2025-01-01,,2025-02-01,X",
        ],
        2,
        id="two-subjects-counted",
    ),
]


@pytest.mark.parametrize(("rows", "subjects"), CONTRADICTIONS)
def test_contradictory_duplicates_make_the_registry_malformed(
    tmp_path: Path, rows: list[str], subjects: int
) -> None:
    path = write_csv(tmp_path, *rows)
    if subjects == 0:
        assert len(read_consent_registry(path)) == len(rows)
        return
    with pytest.raises(ConsentRegistryError) as caught:
        read_consent_registry(path)
    (refusal,) = caught.value.refusals
    assert f"{subjects} subject(s) have contradictory records" in refusal


def test_a_malformed_registry_names_no_canary_anywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Canary ids and references, malformed in every way the registry refuses: none reaches a message."""
    caplog.set_level("DEBUG")
    rows = [
        f"{S}-1,research-consent,model-training,2025-01-01,,,{R}-1",  # unknown basis
        f"{S}-2,irb-waiver,{S}-purpose,2025-01-01,,,{R}-2",  # unknown purpose
        f"{S}-3,irb-waiver,model-training,2025-02-30,,,{R}-3",  # impossible date
        f"{S}-4,irb-waiver,model-training,,,,{R}-4",  # no granted_at
        f"{S}-5,irb-waiver,,2025-01-01,,,{R}-5",  # no purposes
        f"{S}-6,irb-waiver,model-training,2025-01-02,2025-01-01,,{R}-6",  # expiry before grant
        f"   ,irb-waiver,model-training,2025-01-01,,,{R}-7",  # empty subject
    ]
    with pytest.raises(ConsentRegistryError) as caught:
        read_consent_registry(write_csv(tmp_path, *rows))
    assert len(caught.value.refusals) == 7
    contradictory = [
        f"{S}-8,irb-waiver,model-training,2025-01-01,,,{R}-8",
        f"{S}-8,irb-waiver,model-training,2025-01-01,2026-01-01,,{R}-8",
    ]
    with pytest.raises(ConsentRegistryError) as second:
        read_consent_registry(write_csv(tmp_path, *contradictory, name="second.csv"))
    for text in [refusal_text(caught.value), refusal_text(second.value), caplog.text, repr(caught.value)]:
        assert S not in text
        assert R not in text
        assert "2025-02-30" not in text


# ---- Issue 4, scale: the columnar reading, chunk by chunk, held to the exact rules ----


def _registry_table(rows: list[tuple]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    return pa.table(
        {
            "subject_id": pa.array(columns[0], pa.string()),
            "basis": pa.array(columns[1], pa.string()),
            "purposes": pa.array(columns[2], pa.list_(pa.string())),
            "granted_at": pa.array(columns[3], pa.date32()),
            "expires_at": pa.array(columns[4], pa.date32()),
            "revoked_at": pa.array(columns[5], pa.date32()),
            "reference": pa.array(columns[6], pa.string()),
        }
    )


@pytest.mark.parametrize("seed", range(6))
def test_contradictions_found_by_hashes_equal_the_exact_rule(seed: int) -> None:
    """Random registries full of near-duplicates: the count is the exact group_by rule's, never fewer."""
    chooser = random.Random(seed)
    days = [date(2025, 1, 1), date(2025, 6, 1), None]
    rows = [
        (
            f"p-{chooser.randrange(60)}",
            chooser.choice(["irb-waiver", "research-authorization"]),
            chooser.choice([["model-training"], ["MLTRAINING"], ["research"]]),
            chooser.choice(days[:2]),
            chooser.choice([date(2027, 1, 1), None]),
            chooser.choice([date(2026, 1, 1), None]),
            chooser.choice([f"DOC-{chooser.randrange(40)}", None]),
        )
        for _ in range(400)
    ]
    table = _registry_table(rows)
    try:
        registry_from_table(table, "random")
        found = 0
    except ConsentRegistryError as error:
        (refusal,) = error.refusals
        found = int(refusal.split("malformed: ")[1].split(" ")[0])
    whole = _validated_without_contradiction_check(table)
    grouping = group_subjects(whole.column("subject_id"))
    exact = _exact_contradictions(whole.set_column(0, "subject_id", pa.array(grouping.group)))
    assert found == exact
    assert found > 0  # the draw is dense enough to hold contradictions, so the test can fail
    assert contradictory_subjects(whole) == exact


def _validated_without_contradiction_check(table: pa.Table) -> pa.Table:
    """The validated columns of a table whose rows are well formed, contradictions left in."""
    registries = [registry_from_table(table.slice(n, 1), "one") for n in range(table.num_rows)]
    return pa.concat_tables([registry.table for registry in registries])


def test_chunks_are_read_alike_whether_they_need_trimming_or_not() -> None:
    """A chunk without whitespace keeps its buffers, one with it is trimmed: both read as the rule says."""
    first = _registry_table([("p-1", "irb-waiver", ["model-training"], date(2025, 1, 1), None, None, "A")])
    second = _registry_table(
        [(" p-2\t", " irb-waiver ", [" model-training", ""], date(2025, 1, 1), None, None, " B ")]
    )
    table = pa.concat_tables([first, second])
    assert table.column("subject_id").num_chunks == 2
    registry = registry_from_table(table, "chunked")
    assert registry.subject_ids.to_pylist() == ["p-1", "p-2"]
    one, two = registry.records
    assert (one.subject_id, one.reference, one.purposes) == ("p-1", "A", ("model-training",))
    assert (two.subject_id, two.reference, two.purposes) == ("p-2", "B", ("model-training",))
    # The first chunk's references needed no trimming: they are the input's own buffers, not a copy.
    assert first.column("reference").num_chunks == 1
    held = registry.table.column("reference").chunk(0).buffers()[2].address
    assert held == first.column("reference").chunk(0).buffers()[2].address


def test_ids_of_one_length_hash_as_in_a_mixed_batch() -> None:
    """The fast path for ids of one length gives each id the hash it has among ids of other lengths."""
    same_length = pa.array(["abc-0001", "abc-0002", "Zoë-0003"[:8]])
    mixed = pa.array(["abc-0001", "x", "abc-0002", "a-much-longer-identifier", "Zoë-0003"[:8]])
    uniform, general = hash_text(same_length), hash_text(mixed)
    assert list(uniform) == [general[0], general[2], general[4]]
    assert len(set(hash_text(pa.array([f"{n:036d}" for n in range(1000)])))) == 1000


def test_every_purpose_code_fits_the_mask_bits_the_contradiction_check_packs() -> None:
    assert len(PURPOSE_OF_USE) <= _MASK_BITS


def test_grouping_is_exact_and_in_order_of_first_appearance() -> None:
    grouping = group_subjects(pa.chunked_array([["b", "a"], ["b", "c", "a"]]))
    assert grouping.subjects.to_pylist() == ["b", "a", "c"]
    assert grouping.group.tolist() == [0, 1, 0, 2, 1]
    assert grouping.order.tolist() == [0, 2, 1, 4, 3]
    assert grouping.starts.tolist() == [0, 2, 4]


class TestRegistryFromBatches:
    """Read batch by batch, a registry is the one registry_from_table reads, refusals included."""

    ROWS = [
        (" p-1", "irb-waiver", ["model-training"], date(2025, 1, 1), None, None, "A-1"),
        ("p-2", "opt-out", [], date(2025, 2, 1), None, date(2026, 1, 1), None),
        ("p-1", "research-authorization", ["research", " MLTRAINING"], date(2024, 1, 1), None, None, ""),
    ]

    def test_the_same_records_as_from_one_table(self) -> None:
        table = _registry_table(self.ROWS)
        from_batches = registry_from_batches(table.to_batches(max_chunksize=1), "batches", table.schema)
        assert from_batches.records == registry_from_table(table, "table").records
        assert from_batches.subject_ids.to_pylist() == ["p-1", "p-2"]

    def test_problems_are_counted_over_every_batch(self) -> None:
        bad = ("p-3", "research-consent", ["model-training"], date(2025, 1, 1), None, None, None)
        table = _registry_table([bad, *self.ROWS, bad])
        with pytest.raises(ConsentRegistryError) as caught:
            registry_from_batches(table.to_batches(max_chunksize=2), "batches", table.schema)
        (refusal,) = caught.value.refusals
        assert "2 row(s) have a missing or unknown basis" in refusal

    def test_contradictions_across_batches_are_found(self) -> None:
        row = ("p-1", "irb-waiver", ["model-training"], date(2025, 1, 1), None, None, None)
        other = (*row[:4], date(2027, 1, 1), None, None)
        table = _registry_table([row, *self.ROWS[1:], other])
        with pytest.raises(ConsentRegistryError, match=r"1 subject\(s\) have contradictory records"):
            registry_from_batches(table.to_batches(max_chunksize=1), "batches", table.schema)

    def test_a_missing_column_is_refused_from_the_schema_before_any_batch(self) -> None:
        table = _registry_table(self.ROWS).drop_columns(["basis"])

        def never() -> Iterable[pa.RecordBatch]:
            raise AssertionError("a batch was read")
            yield  # pragma: no cover

        with pytest.raises(ConsentRegistryError, match=r"lacks the required column\(s\) basis"):
            registry_from_batches(never(), "batches", table.schema)

    def test_no_batches_is_an_empty_registry(self) -> None:
        registry = registry_from_batches([], "empty", _registry_table(self.ROWS).schema)
        assert (len(registry), registry.subject_count) == (0, 0)
