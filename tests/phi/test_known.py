"""Known values: a dataset's own names, numbers and addresses are found in its free text, whole and
case-insensitive, common words and short values are not, counts are per value, and no value ever leaves
the object (repr, str, pickling, exceptions).

The expected values come from the issue ("values of the dataset's own identifier columns (names, MRNs,
phone numbers) are searched for in its free-text columns ... held in memory only, never emitted") and the
rules the module states (names: whole words, case-insensitive, at least 3 letters, no common words)."""

from __future__ import annotations

import copy
import pickle

import pyarrow as pa
import pytest

from airflow_phi_guard.exceptions import DataProcessingError
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.known import KnownValues

A = SafeHarborIdentifier.NAMES
B = SafeHarborIdentifier.GEOGRAPHIC_SUBDIVISION
C = SafeHarborIdentifier.DATES
D = SafeHarborIdentifier.TELEPHONE_NUMBER
F = SafeHarborIdentifier.EMAIL_ADDRESS
G = SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER
H = SafeHarborIdentifier.MEDICAL_RECORD_NUMBER
K = SafeHarborIdentifier.CERTIFICATE_OR_LICENSE_NUMBER
N = SafeHarborIdentifier.WEB_URL
O = SafeHarborIdentifier.IP_ADDRESS  # noqa: E741 - the regulation's letter
R = SafeHarborIdentifier.OTHER_UNIQUE_IDENTIFIER


def _known(
    identifier: SafeHarborIdentifier, *values: object, type_: pa.DataType | None = None
) -> KnownValues:
    return KnownValues.from_batch(pa.table({"source": pa.array(values, type_)}), {"source": identifier})


def _found(known: KnownValues, *texts: str | None) -> dict[SafeHarborIdentifier, int]:
    return known.search(pa.array(texts, pa.string()))


@pytest.mark.parametrize(
    ("name", "text", "found"),
    [
        # Whole words, whatever their case and the punctuation around them.
        ("Alice368", "Seen Alice368 today", True),
        ("Alice368", "SEEN ALICE368.", True),
        ("alice368", "Alice368, follow up", True),
        ("O'Brien", "Mr O'Brien called back", True),
        ("Zoë", "zoë called back", True),  # letters beyond ASCII
        ("Mary Ann", "Ann was seen", True),  # each word of a name is a name
        ("Gleason633", "(Gleason633)", True),
        # Never part of a longer word or code.
        ("Alice368", "Alice3689 was seen", False),
        ("Alice", "malice aforethought", False),
        ("Ann", "annual review", False),
        # Names that are common words are not searched: "will", "may", "brown" would match any note.
        ("Will", "will return in two weeks", False),
        ("May", "seen on May 3", False),
        ("Brown", "brown eyes", False),
        ("White", "white", False),  # a race column's value is no surname
        ("Mrs.", "Mrs. Smith called", False),  # a title, as Synthea's PREFIX holds
        # Fewer than three letters: initials and short names match too much text.
        ("Jo", "Jo called", False),
        ("Al", "Al called", False),
    ],
)
def test_names_are_found_as_whole_words(name, text, found):
    assert _found(_known(A, name), text) == ({A: 1} if found else {})


@pytest.mark.parametrize(
    ("identifier", "value", "text", "found"),
    [
        # The separators people type are ignored, in the column and in the text.
        (G, "999-49-3983", "ssn 999 49 3983 on file", True),
        (G, "999-49-3983", "SSN:999493983", True),
        (G, "999-49-3983", "ssn 999-49-3984", False),
        (D, "402-555-0134", "call (402) 555-0134 after 5", True),
        (D, "(402) 555-0134", "call 402.555.0134", True),
        (D, "402-555-0134", "call 402-555-0135", False),
        (K, "S99999830", "licence s99999830 seen", True),
        (H, "MRN-0042-7781", "chart mrn00427781", True),
        (R, "982192b6-6843-4011-ef46-32caaf87d8a9", "see 982192B6-6843-4011-EF46-32CAAF87D8A9", True),
        # A number is only searched when it is long enough not to recur in any text: six letters or
        # digits, four of them digits.
        (H, "12345", "12345 units", False),
        (H, "AB-12", "AB12", False),
        (K, "ABCDEFG1", "abcdefg1", False),  # one digit
        # Never part of a longer number.
        (G, "999-49-3983", "9994939830", False),
    ],
)
def test_numbers_are_found_whatever_their_separators(identifier, value, text, found):
    assert _found(_known(identifier, value), text) == ({identifier: 1} if found else {})


def test_numbers_stored_as_integers_are_found_in_text():
    known = _known(D, 4025550134, type_=pa.int64())
    assert _found(known, "call 402-555-0134") == {D: 1}


@pytest.mark.parametrize(
    ("identifier", "value", "text", "found"),
    [
        (F, "Alice368@Example.org", "mail alice368@example.org.", True),
        (F, "alice368@example.org", "<alice368@example.org>", True),
        (F, "alice368@example.org", "(alice368@example.org, bob@example.org)", True),
        (F, "alice368@example.org", "xalice368@example.org", False),
        (N, "https://alice368.example.org/me", "see https://alice368.example.org/me.", True),
        (O, "10.20.30.40", "from 10.20.30.40;", True),
        (O, "10.20.30.40", "from 10.20.30.41", False),
    ],
)
def test_addresses_are_found_as_whole_tokens(identifier, value, text, found):
    assert _found(_known(identifier, value), text) == ({identifier: 1} if found else {})


@pytest.mark.parametrize(
    "identifier",
    [
        B,  # a city or ZIP code is shared by many people and reads as ordinary text
        C,  # so is a date; the value detectors find both by form
    ],
)
def test_geography_and_dates_are_not_searched(identifier):
    known = _known(identifier, "Lincoln")
    assert known.counts() == {}
    assert _found(known, "seen in Lincoln") == {}


def test_a_value_counts_once_per_identifier_and_nulls_are_no_finding():
    known = KnownValues.from_batch(
        pa.table({"FIRST": ["Alice368", "Lou594"], "SSN": ["999-49-3983", "999-17-9786"]}),
        {"FIRST": A, "SSN": G},
    )
    texts = [
        "Alice368 and Lou594, 999-49-3983",  # two names, one SSN: one value for each identifier
        "Lou594",
        None,
        "",
        "nothing here",
    ]

    assert _found(known, *texts) == {A: 2, G: 1}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda texts: pa.array(texts, pa.string()),
        lambda texts: pa.array(texts, pa.large_string()),
        lambda texts: pa.array(texts, pa.string_view()),
        lambda texts: pa.array(texts, pa.string()).dictionary_encode(),
        lambda texts: pa.chunked_array([texts[:2], texts[2:]], pa.string()),
    ],
    ids=["string", "large_string", "string_view", "dictionary", "chunked"],
)
def test_every_text_layout_gives_the_same_counts(wrap):
    known = _known(A, "Alice368")
    texts = ["Alice368 seen", "Alice368 seen", None, "Lou594", "Alice368 again"]

    # the dictionary repeats "Alice368 seen", which counts on each of its rows
    assert known.search(wrap(texts)) == {A: 3}


def test_identifier_columns_of_every_text_layout_are_combined():
    batch = pa.table(
        {
            "FIRST": pa.array(["Alice368"], pa.string()),
            "LAST": pa.array(["Gleason633"], pa.large_string()),
            "MAIDEN": pa.array(["Lou594"], pa.string_view()),
            "SUFFIX": pa.array(["Zed123"], pa.string()).dictionary_encode(),
        }
    )
    known = KnownValues.from_batch(batch, dict.fromkeys(batch.column_names, A))

    assert known.counts() == {A: 4}
    assert _found(known, "Alice368", "Gleason633", "Lou594", "Zed123", "nobody") == {A: 4}


def test_a_text_column_that_is_not_text_is_not_searched():
    known = _known(H, "00427781")
    assert known.search(pa.array([427781, 427781])) == {}


def test_the_known_values_are_counted_per_identifier_and_deduplicated():
    batch = pa.table({"FIRST": ["Alice368", "Alice368", "Jo"], "LAST": ["Gleason633", None, "Will"]})
    assert KnownValues.from_batch(batch, {"FIRST": A, "LAST": A}).counts() == {A: 2}


def test_columns_absent_from_the_batch_are_ignored():
    known = KnownValues.from_batch(pa.table({"FIRST": ["Alice368"]}), {"FIRST": A, "SSN": G})
    assert known.counts() == {A: 1}


def test_an_empty_set_finds_nothing():
    known = KnownValues.from_batch(pa.table({"NOTE": ["Alice368"]}), {})
    assert not known
    assert known.search(pa.array(["Alice368"])) == {}


class TestNoValueLeaves:
    """The canaries are planted in the identifier columns; none may appear outside the object."""

    CANARIES = ("Zyxwanda913", "Qorvath477", "999-61-4417", "q.canary@example.org")

    @pytest.fixture
    def known(self) -> KnownValues:
        batch = pa.table(
            {
                "FIRST": [self.CANARIES[0]],
                "LAST": [self.CANARIES[1]],
                "SSN": [self.CANARIES[2]],
                "EMAIL": [self.CANARIES[3]],
            }
        )
        return KnownValues.from_batch(batch, {"FIRST": A, "LAST": A, "SSN": G, "EMAIL": F})

    def _assert_clean(self, text: str) -> None:
        for canary in self.CANARIES:
            for form in (canary, canary.lower(), canary.replace("-", "")):
                assert form not in text

    def test_repr_and_str_show_counts_only(self, known):
        for text in (repr(known), str(known), f"{known}", f"{known!r}"):
            self._assert_clean(text)
        assert repr(known) == "KnownValues(A: 2, F: 1, G: 1)"

    @pytest.mark.parametrize(
        "copying",
        [pickle.dumps, copy.copy, copy.deepcopy],
        ids=["pickle", "copy", "deepcopy"],
    )
    def test_it_cannot_be_pickled_or_copied(self, known, copying):
        with pytest.raises(TypeError) as raised:
            copying(known)
        self._assert_clean(str(raised.value))

    def test_an_arrow_error_quotes_no_value(self, known):
        # text that is not valid UTF-8 makes Arrow's string kernels fail
        broken = pa.array([self.CANARIES[0].encode() + b"\xff"], pa.binary()).cast(pa.string(), safe=False)

        with pytest.raises(DataProcessingError) as raised:
            known.search(broken)

        self._assert_clean(str(raised.value))
        assert raised.value.__cause__ is None and raised.value.__suppress_context__
