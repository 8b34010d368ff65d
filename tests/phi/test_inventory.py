"""Column verdicts and the scan report: the name decides when it classifies, values decide otherwise by
rate and confidence (never by how many detectors agree), the more specific identifier wins a tie, values
never make a code R, and the streaming scan counts rows, samples and reports progress.

Expected values come from the issue ("an email column is EMAIL (F) even when some of its values also look
like URLs"; "a column's name decides its identity even when its values would not pass a validator"; the
report keeps "the runner-up and the evidence (names of detectors and match rates, never values)") and
from the rule stated in phi/inventory.py's docstring.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.phi.detectors import Confidence, DetectorHit
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.inventory import DECIDING_RATE, ScanReport, decide_column, scan_dataset

A, B, C, D, F, G, N, O, R = (SafeHarborIdentifier(letter) for letter in "ABCDFGNOR")  # noqa: E741
HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW


def hit(detector: str, identifier: SafeHarborIdentifier, confidence: Confidence, matches: int) -> DetectorHit:
    return DetectorHit(detector=detector, identifier=identifier, confidence=confidence, matches=matches)


@pytest.mark.parametrize(
    ("column", "hits", "known", "identifier", "confidence", "runner_up"),
    [
        # 1. The name decides when it classifies. Every Synthea SSN starts with 999, which the SSA never
        #    issues, so the values are low-confidence matches; the column is still G.
        ("SSN", [hit("ssn", G, LOW, 100)], {}, G, HIGH, None),
        ("SSN", [], {}, G, HIGH, None),
        # ... and values that say otherwise are the runner-up, not the verdict.
        ("phone", [hit("email", F, HIGH, 100)], {}, D, HIGH, F),
        # 2. Otherwise values decide: column-wide at any confidence...
        ("VALUE", [hit("street-address", B, MEDIUM, 80)], {}, B, MEDIUM, None),
        ("tax_ref", [hit("ssn", G, LOW, 100)], {}, G, LOW, None),
        # ... or a single high-confidence match, which is PHI wherever it is.
        ("NOTE", [hit("ssn", G, HIGH, 1)], {}, G, HIGH, None),
        # Medium and low matches in a few values decide nothing; they are the runner-up.
        ("DESCRIPTION", [hit("date-written", C, MEDIUM, 10)], {}, None, None, C),
        ("NOTE", [hit("ssn", G, LOW, 2)], {}, None, None, G),
        # A patient's own value found in another column decides (rule 2, known values are exact copies).
        ("NOTE", [], {A: 1}, A, HIGH, None),
        ("NOTE", [], {R: 3}, R, HIGH, None),
        # 3. An email column is F although its values also match the URL detector, even at a higher rate
        #    (every address contains a domain; some addresses fail the email pattern).
        ("contact", [hit("email", F, HIGH, 95), hit("url", N, HIGH, 100)], {}, F, HIGH, N),
        # Column-wide beats partial, whatever the partial one's confidence...
        ("contact", [hit("email", F, HIGH, 5), hit("url", N, HIGH, 100)], {}, N, HIGH, F),
        # ... and no number of agreeing weak detectors outvotes one validated match.
        (
            "NOTE",
            [
                hit("nanp-phone", D, MEDIUM, 20),
                hit("nanp-phone-context", D, MEDIUM, 20),
                hit("nanp-phone-e164", D, MEDIUM, 20),
                hit("ssn", G, HIGH, 2),
            ],
            {},
            G,
            HIGH,
            D,
        ),
        # Otherwise, at equal confidence, the higher rate wins.
        ("VALUE", [hit("date-iso", C, HIGH, 60), hit("zip-code", B, HIGH, 90)], {}, B, HIGH, C),
        ("VALUE", [hit("date-iso", C, HIGH, 90), hit("zip-code", B, HIGH, 60)], {}, C, HIGH, B),
        # A higher confidence beats a higher rate.
        ("VALUE", [hit("date-iso", C, HIGH, 60), hit("street-address", B, MEDIUM, 90)], {}, C, HIGH, B),
        # A URL holds an IP address as its host, and an email address a URL's domain: the containing
        # form wins, through both steps.
        ("link", [hit("url", N, HIGH, 90), hit("ipv4", O, HIGH, 100)], {}, N, HIGH, O),
        (
            "link",
            [hit("email", F, HIGH, 80), hit("url", N, HIGH, 90), hit("ipv4", O, HIGH, 100)],
            {},
            F,
            HIGH,
            O,
        ),
        # 4. Values never make a code R: a UUID says nothing of whose it is (Synthea's PROVIDER).
        ("PROVIDER", [hit("uuid", R, HIGH, 100)], {}, None, None, R),
        # No evidence, no identifier.
        ("GENDER", [], {}, None, None, None),
    ],
)
def test_the_verdict_rule(column, hits, known, identifier, confidence, runner_up):
    verdict = decide_column(column, rows_scanned=100, values_scanned=100, hits=hits, known=known)

    assert (verdict.identifier, verdict.confidence, verdict.runner_up) == (identifier, confidence, runner_up)


def test_the_deciding_rate_is_half_of_the_values():
    # the module's rule: "reaches DECIDING_RATE", which it documents as one half
    assert DECIDING_RATE == 0.5
    at = decide_column(
        "VALUE", rows_scanned=10, values_scanned=10, hits=[hit("street-address", B, MEDIUM, 5)]
    )
    below = decide_column(
        "VALUE", rows_scanned=10, values_scanned=10, hits=[hit("street-address", B, MEDIUM, 4)]
    )
    assert (at.identifier, below.identifier) == (B, None)


def test_rates_are_over_the_non_empty_values_scanned():
    # 40 of 50 non-empty values match, among 200 rows: a rate of 0.8, so the column is B
    verdict = decide_column(
        "VALUE", rows_scanned=200, values_scanned=50, hits=[hit("street-address", B, MEDIUM, 40)]
    )

    assert verdict.identifier is B
    assert verdict.evidence[0].rate == pytest.approx(0.8)
    assert (verdict.rows_scanned, verdict.matches) == (200, 40)


def test_the_evidence_lists_every_source_with_detector_names_and_rates():
    verdict = decide_column(
        "email",
        rows_scanned=10,
        values_scanned=10,
        hits=[hit("email", F, HIGH, 9), hit("url", N, MEDIUM, 10)],
        known={A: 1},
    )

    assert [
        (item.source, item.detector, item.identifier, item.rate, item.matches) for item in verdict.evidence
    ] == [
        ("name", None, F, None, None),
        ("value", "email", F, pytest.approx(0.9), 9),
        ("value", "url", N, pytest.approx(1.0), 10),
        ("known-values", None, A, pytest.approx(0.1), 1),
    ]
    assert verdict.matches == 9
    assert [item.describe() for item in verdict.evidence] == [
        "name",
        "email 90% high",
        "url 100% medium",
        "known A 10% high",
    ]


@pytest.mark.parametrize(
    ("matches", "label"),
    [
        (1, "<1%"),  # one value in a thousand is still a finding, never "0%"
        (999, ">99%"),  # one miss is still a miss, never "100%"
        (1000, "100%"),
        (500, "50%"),
    ],
)
def test_rates_are_never_rounded_away(matches, label):
    verdict = decide_column(
        "NOTE", rows_scanned=1000, values_scanned=1000, hits=[hit("ssn", G, LOW, matches)]
    )
    assert verdict.evidence[0].describe() == f"ssn {label} low"


# Scanning a dataset


def _write(path: Path, columns: dict[str, list], row_group_size: int | None = None) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


@pytest.fixture
def extract(tmp_path: Path) -> Path:
    """35 synthetic rows in row groups of 10, so that the scan reads four batches."""
    rows = 35
    return _write(
        tmp_path / "extract.parquet",
        {
            "PATIENT": [f"p-{number:04d}" for number in range(rows)],
            "FIRST": [f"Zyxwanda{number}" for number in range(rows)],
            "SSN": [f"123-45-{6000 + number}" for number in range(rows)],
            # a patient's name copied into one note, a phone number into a comment
            "NOTE": ["stable"] * 30 + ["Zyxwanda31 called", "stable", None, "", "stable"],
            "COMMENT": ["none"] * 32 + ["call 402-555-0134", "none", "none"],
            "contact": [f"zyx{number}@example.org" for number in range(rows)],
            "CODE": [str(314529007 + number) for number in range(rows)],  # SNOMED codes, not SSNs
            "TOTAL_CLAIM_COST": [83.87 + number for number in range(rows)],
        },
        row_group_size=10,
    )


def test_scan_dataset_decides_every_column(extract):
    report = scan_dataset(extract)

    assert report.rows_scanned == 35
    assert report.identifiers == {
        "PATIENT": R,  # by name
        "FIRST": A,
        "SSN": G,
        "NOTE": A,  # the patient's name, found by known values
        "COMMENT": D,  # a phone number, found by value
        "contact": F,  # by value: every value is an email address
    }
    assert [item.source for item in report.column("NOTE").evidence] == ["known-values"]
    assert report.column("CODE").identifier is None
    assert report.column("TOTAL_CLAIM_COST").identifier is None
    assert [verdict.column for verdict in report.columns] == list(pq.read_schema(extract).names)


def test_rows_scanned_counts_rows_and_rates_count_non_empty_values(extract):
    note = scan_dataset(extract).column("NOTE")

    # 35 rows, of which one null and one empty: the known name is in 1 of 33 values
    assert note.rows_scanned == 35
    known = next(item for item in note.evidence if item.source == "known-values")
    assert (known.matches, known.rate) == (1, pytest.approx(1 / 33))


def test_progress_is_called_after_each_batch_with_the_rows_so_far(extract):
    seen: list[int] = []
    scan_dataset(extract, progress=seen.append)
    assert seen == [10, 20, 30, 35]


@pytest.mark.parametrize(
    ("sample_rows", "scanned", "progress"),
    [
        (15, 15, [10, 15]),  # part of the second batch
        (10, 10, [10]),  # exactly the first batch: the second is never read
        (99, 35, [10, 20, 30, 35]),  # more rows than there are
    ],
)
def test_sample_rows_scans_only_the_first_rows(extract, sample_rows, scanned, progress):
    seen: list[int] = []
    report = scan_dataset(extract, sample_rows=sample_rows, progress=seen.append)

    assert (report.rows_scanned, report.sample_rows, seen) == (scanned, sample_rows, progress)
    assert {verdict.rows_scanned for verdict in report.columns} == {scanned}


def test_the_first_rows_hold_none_of_the_planted_note_values(extract):
    # the planted name and phone are on rows 30 and 32 (counted from 0), past a sample of 30 rows
    report = scan_dataset(extract, sample_rows=30)
    assert (report.column("NOTE").identifier, report.column("COMMENT").identifier) == (None, None)


@pytest.mark.parametrize("sample_rows", [0, -1])
def test_sample_rows_must_be_positive(extract, sample_rows):
    with pytest.raises(ValueError, match="at least 1"):
        scan_dataset(extract, sample_rows=sample_rows)


def test_known_values_come_from_the_batch_they_are_searched_in(tmp_path):
    # the name is in row 0's FIRST and row 15's NOTE, in different row groups: per-batch known values
    # (bounded memory) do not connect them; the same rows in one batch do
    columns = {
        "FIRST": ["Zyxwanda913"] + ["Qorvath1"] * 19,
        "NOTE": ["ok"] * 15 + ["Zyxwanda913 seen"] + ["ok"] * 4,
    }
    apart = _write(tmp_path / "apart.parquet", columns, row_group_size=10)
    together = _write(tmp_path / "together.parquet", columns)

    assert scan_dataset(apart).column("NOTE").identifier is None
    assert scan_dataset(together).column("NOTE").identifier is A


@pytest.mark.parametrize(
    "text_type",
    [pa.string(), pa.large_string(), pa.string_view(), pa.dictionary(pa.int32(), pa.string())],
    ids=["string", "large_string", "string_view", "dictionary"],
)
def test_every_text_layout_is_scanned_alike(tmp_path, text_type):
    def text(values: list[str | None]) -> pa.Array:
        return pa.array(values, pa.string()).cast(text_type)

    path = _write(
        tmp_path / "extract.parquet",
        {
            "FIRST": text(["Zyxwanda913", "Qorvath1", ""]),
            # a null and an empty value hold nothing: the name is in the one value that could hold it
            "NOTE": text(["Zyxwanda913 seen", None, ""]),
            "contact": text(["zyx@example.org", "", "qor@example.org"]),
        },
    )

    report = scan_dataset(path)

    assert report.identifiers == {"FIRST": A, "NOTE": A, "contact": F}
    assert report.column("NOTE").evidence[0].rate == 1.0
    assert report.column("contact").matches == 2


def test_csv_is_scanned_like_parquet(tmp_path, extract):
    csv_path = tmp_path / "extract.csv"
    pa.csv.write_csv(pq.read_table(extract), csv_path)
    assert scan_dataset(csv_path).identifiers == scan_dataset(extract).identifiers


class TestReport:
    def test_json_has_the_issues_keys_and_letters(self, extract):
        document = json.loads(scan_dataset(extract).to_json())

        assert set(document) >= {"input", "rows_scanned", "sample_rows", "columns"}
        for column in document["columns"]:
            assert set(column) >= {
                "column",
                "identifier",
                "confidence",
                "evidence",
                "rows_scanned",
                "matches",
            }
            assert "runner_up" in column
        ssn = next(column for column in document["columns"] if column["column"] == "SSN")
        assert (ssn["identifier"], ssn["confidence"]) == ("G", "high")
        assert ssn["evidence"][0] == {
            "source": "name",
            "detector": None,
            "identifier": "G",
            "confidence": None,
            "rate": None,
            "matches": None,
        }

    def test_json_round_trips(self, extract):
        report = scan_dataset(extract)
        assert ScanReport.model_validate_json(report.to_json()) == report

    def test_no_value_is_in_the_report(self, extract):
        text = scan_dataset(extract).to_json()
        table = pq.read_table(extract)
        for name in ("PATIENT", "FIRST", "SSN", "NOTE", "COMMENT", "contact", "CODE"):
            for value in table[name].to_pylist():
                if value:  # "" is in any text
                    assert value not in text
        assert "402-555-0134" not in text and "Zyxwanda31" not in text

    def test_an_unknown_column_is_a_key_error(self, extract):
        with pytest.raises(KeyError):
            scan_dataset(extract).column("nope")
