"""The benchmark's labelled set: re-created byte for byte, and its labels true to the formats they claim."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import REPO


def _load_generator():
    path = REPO / "benchmarks" / "labelled_set.py"
    spec = importlib.util.spec_from_file_location("benchmark_labelled_set", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


labelled_set = _load_generator()


@pytest.fixture(scope="module")
def rows() -> list[dict[str, object]]:
    return labelled_set.build_rows()


def _spans(rows, kind):
    return [
        row["text"][span["start"] : span["end"]]
        for row in rows
        for span in row["spans"]
        if span["kind"] == kind
    ]


def test_the_generator_recreates_the_committed_file_byte_for_byte(rows) -> None:
    committed = Path(labelled_set.LABELLED_SET).read_bytes()

    assert labelled_set.render(rows) == committed
    assert labelled_set.render(labelled_set.build_rows()) == committed  # a second run, the same bytes


def test_check_mode_fails_on_a_file_that_differs(tmp_path) -> None:
    stale = tmp_path / "labelled-values.jsonl"
    stale.write_bytes(labelled_set.LABELLED_SET.read_bytes()[:-200])

    assert labelled_set.main(["--check", "--output", str(stale)]) == 1
    assert labelled_set.main(["--check"]) == 0


def test_spans_lie_inside_their_text_and_do_not_overlap(rows) -> None:
    for row in rows:
        ends = 0
        for span in sorted(row["spans"], key=lambda span: span["start"]):
            assert 0 <= span["start"] < span["end"] <= len(row["text"]), row["id"]
            assert span["start"] >= ends, row["id"]
            assert span["letter"] is None or span["letter"] in "ABCDEFGHIJKLMNOPQR"
            ends = span["end"]


def test_ids_are_unique(rows) -> None:
    assert len({row["id"] for row in rows}) == len(rows)


# Each planted kind, its letter, and the written form the span must have (from the identifier's own rule).
@pytest.mark.parametrize(
    ("kind", "letter", "form"),
    [
        # G: area-group-serial, hyphens or spaces; unseparated only beside a word that names it.
        ("ssn", "G", r"[0-9]{3}([- ])[0-9]{2}\1[0-9]{4}"),
        ("ssn-unseparated", "G", r"[0-9]{9}"),
        ("ssn-never-issued", "G", r"9[0-9]{2}-[0-9]{2}-[0-9]{4}"),  # Synthea's, area 9xx
        # D, E: NANP numbers, area code and exchange starting with 2-9.
        ("phone", "D", r"(\+1 |1-)?\(?[2-9][0-9]{2}\)?[ .-][2-9][0-9]{2}[ .-][0-9]{4}"),
        ("phone-e164", "D", r"\+1[2-9][0-9]{2}[2-9][0-9]{6}"),
        ("phone-unseparated", "D", r"[2-9][0-9]{2}[2-9][0-9]{6}"),
        ("fax", "E", r"(\+1 ?|1-)?\(?[2-9][0-9]{2}\)?[ .-]?[2-9][0-9]{2}[ .-]?[0-9]{4}"),
        ("email", "F", r"[a-z0-9.]+@[a-z.-]+\.(com|org|net)"),
        ("url", "N", r"(https?://)?[a-z.-]+\.(org|com|net)(/[a-z0-9/]*)?"),
        ("ipv4", "O", r"([0-9]{1,3}\.){3}[0-9]{1,3}"),
        ("ipv6", "O", r"2001:db8:[0-9a-f:]+"),
        ("mrn", "H", labelled_set.MRN_PATTERN),
        ("mac-address", "M", r"[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}(\.[0-9A-Fa-f]{4}){2}"),
        ("zip-in-address", "B", r"[0-9]{5}(-[0-9]{4})?"),
        ("uuid", "R", r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        ("timestamp", "C", r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"),
    ],
)
def test_planted_values_have_their_written_form(rows, kind, letter, form) -> None:
    spans = [span for row in rows for span in row["spans"] if span["kind"] == kind]
    texts = _spans(rows, kind)

    assert spans
    assert {span["letter"] for span in spans} == {letter}
    assert [text for text in texts if not re.fullmatch(form, text)] == []


def test_planted_ssns_have_an_issued_area() -> None:
    # 000, 666 and 900-999 are never issued (SSA); group 00 and serial 0000 neither.
    texts = _spans(labelled_set.build_rows(), "ssn") + _spans(labelled_set.build_rows(), "ssn-unseparated")
    for digits in (re.sub("[^0-9]", "", text) for text in texts):
        area, group, serial = int(digits[:3]), int(digits[3:5]), int(digits[5:])
        assert area not in (0, 666) and area < 900 and group and serial


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, character in enumerate(reversed(digits)):
        value = int(character) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


# ISO 3779 transliteration and weights (49 CFR 565.15).
_VIN_VALUES = dict(
    zip(
        "ABCDEFGHJKLMNPRSTUVWXYZ",
        [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9],
        strict=True,
    )
)
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def _vin_check_digit(vin: str) -> str:
    total = sum(
        (int(c) if c.isdigit() else _VIN_VALUES[c]) * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True)
    )
    return "X" if total % 11 == 10 else str(total % 11)


@pytest.mark.parametrize(
    ("vin", "valid"),
    [
        ("1HGCM82633A004352", True),  # the check digit example quoted in most VIN references
        ("11111111111111111", True),  # 1 x sum of weights 89, 89 mod 11 = 1
        ("1HGCM82643A004352", False),  # one digit changed
    ],
)
def test_the_test_vin_check_digit_rule(vin, valid) -> None:
    assert (_vin_check_digit(vin) == vin[8]) is valid


def test_planted_cards_pass_luhn_and_vins_their_check_digit(rows) -> None:
    cards = [re.sub("[^0-9]", "", text) for text in _spans(rows, "payment-card")]
    vins = _spans(rows, "vin")

    assert cards and all(len(card) in (15, 16) and _luhn_valid(card) for card in cards)
    assert vins and all(re.fullmatch("[A-HJ-NPR-Z0-9]{17}", vin) for vin in vins)
    assert all(_vin_check_digit(vin) == vin[8] for vin in vins)


def test_planted_mbis_follow_the_cms_format(rows) -> None:
    # C A AN N A AN N A A N N; letters without S, L, O, I, B, Z; first character 1-9.
    letter, either = "[AC-HJKMNP-RT-Y]", "[AC-HJKMNP-RT-Y0-9]"
    form = f"[1-9]{letter}{either}[0-9]-?{letter}{either}[0-9]-?{letter}{letter}[0-9][0-9]"
    texts = _spans(rows, "mbi")

    assert texts and all(re.fullmatch(form, text) for text in texts)


@pytest.mark.parametrize(
    ("text", "possible"),
    [
        ("2024-13-15", False),  # the issue's example: month 13
        ("2021-02-30", False),
        ("2024-02-29", True),  # a leap day is a date
    ],
)
def test_the_impossible_date_rule(text, possible) -> None:
    assert _is_calendar_date(text) is possible


def _is_calendar_date(text: str) -> bool:
    numbers = [int(part) for part in re.split("[-/]", text)]
    year, month, day = numbers if numbers[0] > 31 else (numbers[2], numbers[0], numbers[1])
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def test_impossible_dates_are_negatives_and_truly_impossible(rows) -> None:
    spans = [span for row in rows for span in row["spans"] if span["kind"] == "impossible-date"]

    assert spans and {span["letter"] for span in spans} == {None}
    assert not any(_is_calendar_date(text) for text in _spans(rows, "impossible-date"))


def test_every_scored_letter_and_every_trap_of_the_issue_is_present(rows) -> None:
    letters = Counter(letter for row in rows for letter in {s["letter"] for s in row["spans"] if s["letter"]})
    kinds = Counter(span["kind"] for row in rows for span in row["spans"] if span["letter"] is None)

    assert all(letters[letter] >= 50 for letter in "BCDEFGHIJKLMNO"), letters
    # The issue's traps: SNOMED and LOINC codes, A1c, H1, B43, money, an impossible date, a digit group that
    # no NANP number has; UUIDs are labelled R (a code) and are negatives for every other letter.
    for kind in ("snomed", "loinc", "a1c", "h1", "b43", "money", "impossible-date", "not-a-nanp-number"):
        assert kinds[kind] >= 50, kind
    assert letters["R"] >= 50


def test_a_quarter_of_the_notes_or_so_hold_no_identifier(rows) -> None:
    notes = [row for row in rows if row["source"] == "generated:note"]
    clean = [row for row in notes if not any(span["letter"] for span in row["spans"])]

    assert len(notes) == labelled_set.NOTES
    assert 0.2 <= len(clean) / len(notes) <= 0.5
