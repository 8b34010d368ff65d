"""Known values: a dataset's own identifier values, searched for in its free-text columns.

A patient's name copied into a note, or an MRN pasted into a comment, is found without a language model
by looking for the values that the dataset already holds in its identifier columns. Everything is
vectorised with ``pyarrow.compute``: text is split into tokens, the tokens are looked up in the known set
with ``is_in``, and ``list_parent_indices`` maps the hits back to the values (rows) that contain them.

Three kinds of token, one per way an identifier is written:

- **Words**, for names (A): case-insensitive, whole words of letters and digits, at least three letters,
  and not in :data:`COMMON_WORDS`. A patient named Will, May or Brown would otherwise be "found" in every
  note that says "will", "May 3" or "brown eyes", and a race column holding "white" would be taken for a
  surname; the stop list trades those few names for a search that stays precise. Synthea's names carry
  digits (``Alice368``), which makes them distinct from any word.
- **Numbers**, for the numbers and codes of D, E, G to M and R: letters and digits with the separators
  people type taken out, so that ``(402) 555-0134`` in a note is found for ``402-555-0134`` in the phone
  column. A value counts only with at least :data:`MINIMUM_NUMBER_LENGTH` characters, four of them
  digits, since shorter codes recur in any text.
- **Addresses**, for email addresses (F), URLs (N) and IP addresses (O): lowercased and trimmed of the
  punctuation that surrounds them in a sentence.

Geographic subdivisions (B) and dates (C) are not searched: a city, a ZIP code or a date is shared by many
people and reads as ordinary text, and the value detectors find them by form. Biometrics (P) and photos
(Q) are not text. The values are held in memory only: nothing here logs them, a :class:`KnownValues`
prints as counts, refuses to be pickled, and an Arrow error is replaced by one that quotes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_phi_guard.arrow_types import holds_text
from airflow_phi_guard.exceptions import DataProcessingError
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier

_I = SafeHarborIdentifier


class _Kind(Enum):
    WORDS = "words"
    NUMBERS = "numbers"
    ADDRESSES = "addresses"


#: How the values of each searched identifier are written, and so how text is split to find them.
SEARCHED_IDENTIFIERS: dict[SafeHarborIdentifier, _Kind] = {
    _I.NAMES: _Kind.WORDS,
    _I.TELEPHONE_NUMBER: _Kind.NUMBERS,
    _I.FAX_NUMBER: _Kind.NUMBERS,
    _I.SOCIAL_SECURITY_NUMBER: _Kind.NUMBERS,
    _I.MEDICAL_RECORD_NUMBER: _Kind.NUMBERS,
    _I.HEALTH_PLAN_BENEFICIARY_NUMBER: _Kind.NUMBERS,
    _I.ACCOUNT_NUMBER: _Kind.NUMBERS,
    _I.CERTIFICATE_OR_LICENSE_NUMBER: _Kind.NUMBERS,
    _I.VEHICLE_IDENTIFIER: _Kind.NUMBERS,
    _I.DEVICE_IDENTIFIER: _Kind.NUMBERS,
    _I.OTHER_UNIQUE_IDENTIFIER: _Kind.NUMBERS,
    _I.EMAIL_ADDRESS: _Kind.ADDRESSES,
    _I.WEB_URL: _Kind.ADDRESSES,
    _I.IP_ADDRESS: _Kind.ADDRESSES,
}

#: A name word must have this many letters: initials and two-letter names (Al, Jo) match too much text.
MINIMUM_NAME_LETTERS = 3

#: A number or code must have this many letters and digits (and at least four digits) to be searched.
MINIMUM_NUMBER_LENGTH = 6
MINIMUM_NUMBER_DIGITS = 4

#: The shortest email address, URL or IP address searched (``a@b.co``, ``1.2.3.4`` has seven).
MINIMUM_ADDRESS_LENGTH = 6

#: Words of three letters or more that are also given names, surnames, titles or name suffixes, and
#: that ordinary or clinical text uses as words. A name column's value that is one of these is not
#: searched. The list is short on purpose: each entry is a name that will not be found.
COMMON_WORDS: frozenset[str] = frozenset(
    {
        # Function words, and the words of dates.
        "the", "and", "for", "but", "not", "nor", "yet", "with", "from", "into", "onto", "upon", "over",
        "under", "than", "then", "that", "this", "these", "those", "who", "whom", "whose", "why", "how",
        "what", "when", "where", "which", "while", "all", "any", "each", "few", "more", "most", "some",
        "such", "own", "same", "very", "can", "will", "may", "might", "must", "shall", "should", "would",
        "could", "has", "had", "have", "was", "were", "are", "his", "her", "him", "she", "they", "them",
        "their", "our", "out", "off", "one", "two", "six", "ten", "new", "old", "now", "per", "via", "day",
        "days", "due", "see", "saw", "january", "february", "march", "april", "june", "july", "august",
        "september", "october", "november", "december", "monday", "tuesday", "wednesday", "thursday",
        "friday", "saturday", "sunday", "spring", "summer", "autumn", "fall", "winter", "dawn", "eve",
        "noon",
        # Colours, which race and eye-colour fields use as words.
        "white", "black", "brown", "green", "gray", "grey", "red", "rose", "amber", "ruby", "pearl",
        "violet", "olive", "coral",
        # Given names that are words.
        "bill", "mark", "frank", "rich", "sue", "pat", "art", "gene", "dean", "guy", "jack", "joy",
        "hope", "faith", "grace", "patience", "prudence", "charity", "honor", "honour", "constance",
        "major", "sterling", "love",
        # Surnames that are words.
        "young", "king", "small", "little", "long", "short", "strong", "hill", "hall", "wood", "woods",
        "field", "fields", "ford", "bell", "bush", "lane", "park", "rivers", "river", "stone", "cook",
        "baker", "page", "case", "cross", "dale", "glen", "wells", "north", "south",
        "east", "west",
        # Titles and suffixes, which name columns such as Synthea's PREFIX and SUFFIX hold.
        "doctor", "nurse", "patient", "mister", "miss", "mrs", "sir", "dame", "madam", "lord", "lady",
        "rev", "esq", "phd", "dds", "dvm", "jnr", "snr", "junior", "senior", "iii",
    }
)  # fmt: skip

# One text type for every token, whatever the columns' (string, large string, view, dictionary): tokens
# of differently typed columns are concatenated and compared. Large, so that no batch's text overflows.
_TOKEN_TYPE = pa.large_string()
_COMMON_WORDS = pa.array(sorted(COMMON_WORDS), _TOKEN_TYPE)

# Word tokens: runs of letters and digits. Numbers: the separators typed inside numbers and codes are
# removed first (dash, dot, slash, parentheses), then spaces between digit groups.
_NOT_WORD = r"[^\p{L}\p{N}]+"
_NUMBER_SEPARATORS = r"[-./()]"
_SPACED_DIGITS = r"([0-9]) +([0-9])"
# Addresses are split at white space and the punctuation that brackets or lists them in a sentence,
# then trimmed of what ends a sentence.
_ADDRESS_BOUNDARIES = "[\\s<>()\\[\\]{},;\"']+"
_ADDRESS_TRIM = ".:;!?"


class KnownValues:
    """The identifier values of a dataset (or of one of its batches), held in memory to search text.

    Build it with :meth:`from_batch`. Its ``repr`` and ``str`` show how many distinct tokens it holds
    per identifier, never a value; it cannot be pickled, so it cannot reach a file, a queue or XCom.
    """

    __slots__ = ("_tokens",)

    def __init__(self, tokens: Mapping[SafeHarborIdentifier, pa.Array] | None = None) -> None:
        self._tokens: dict[SafeHarborIdentifier, pa.Array] = {
            identifier: values for identifier, values in (tokens or {}).items() if len(values)
        }

    @classmethod
    def from_batch(
        cls, batch: pa.RecordBatch | pa.Table, columns: Mapping[str, SafeHarborIdentifier]
    ) -> KnownValues:
        """Collect the searchable values of the identifier columns of ``batch``.

        Columns of an identifier that is not searched (B, C, P, Q), columns absent from the batch, and
        columns whose type holds neither text nor integers are ignored.

        :param batch: a record batch or table of the dataset.
        :param columns: the identifier columns, each with the identifier its name reveals.
        :raises DataProcessingError: Arrow could not read a column; its message is withheld.
        """
        collected: dict[SafeHarborIdentifier, list[pa.Array]] = {}
        for column, identifier in columns.items():
            kind = SEARCHED_IDENTIFIERS.get(identifier)
            if kind is None or column not in batch.schema.names:
                continue
            text = _as_text(batch.column(column), allow_integers=True)
            if text is None:
                continue
            values = text.dictionary if pa.types.is_dictionary(text.type) else text
            collected.setdefault(identifier, []).append(_guarded(pc.cast, values, _TOKEN_TYPE))

        # The columns of one identifier (first, last and maiden names) are tokenised together, in one pass.
        tokens = {
            identifier: _guarded(_known_tokens, pa.concat_arrays(arrays), SEARCHED_IDENTIFIERS[identifier])
            for identifier, arrays in collected.items()
        }
        return cls(tokens)

    def search(self, values: pa.Array | pa.ChunkedArray) -> dict[SafeHarborIdentifier, int]:
        """How many values of a free-text column contain a known value, per identifier of its source.

        A value counts once per identifier however many known values it contains; nulls are no finding,
        and a column that is not text returns an empty result.

        :param values: a text column (string, large string, string view, dictionary of strings).
        :returns: the identifiers found, each with the number of values containing one; absent is zero.
        :raises DataProcessingError: Arrow could not read the column; its message is withheld.
        """
        text = _as_text(values, allow_integers=False)
        if text is None or not self._tokens:
            return {}
        return _guarded(self._search, text)

    def counts(self) -> dict[SafeHarborIdentifier, int]:
        """How many distinct tokens are known per identifier (a two-word name is two)."""
        return {identifier: len(values) for identifier, values in self._tokens.items()}

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def __repr__(self) -> str:
        held = ", ".join(
            f"{identifier.letter}: {count}" for identifier, count in sorted(self.counts().items())
        )
        return f"KnownValues({held or 'empty'})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("known values are held in memory only and cannot be pickled or copied")

    def _search(self, text: pa.Array) -> dict[SafeHarborIdentifier, int]:
        """Count per identifier, matching the distinct entries of a dictionary column only once each."""
        if not pa.types.is_dictionary(text.type):
            # Free-text columns of an extract repeat their values (descriptions, codes, categories): the
            # distinct values are tokenised once each, and rows counted through the indices.
            text = pc.dictionary_encode(text)
        entries, indices = text.dictionary.cast(_TOKEN_TYPE), text.indices

        split: dict[_Kind, pa.Array] = {}
        found: dict[SafeHarborIdentifier, int] = {}
        for identifier, known in self._tokens.items():
            kind = SEARCHED_IDENTIFIERS[identifier]
            if kind not in split:
                split[kind] = _text_tokens(entries, kind)
            tokens = split[kind]
            hit_entries = pc.unique(pc.filter(pc.list_parent_indices(tokens), _flat_hits(tokens, known)))
            rows = pc.is_in(indices, value_set=hit_entries.cast(indices.type))
            count = int(pc.sum(rows).as_py() or 0)
            if count:
                found[identifier] = count
        return found


def _flat_hits(tokens: pa.Array, known: pa.Array) -> pa.Array:
    flat = pc.list_flatten(tokens)
    if len(known) <= 4 * len(flat):
        return pc.is_in(flat, value_set=known)
    # Many known values (a batch's encounter ids) against the few tokens of a column's distinct entries:
    # hashing the tokens and probing the known values is the cheaper way to the same answer.
    present = known.filter(pc.is_in(known, value_set=flat))
    return pc.is_in(flat, value_set=present)


def _as_text(values: pa.Array | pa.ChunkedArray, *, allow_integers: bool) -> pa.Array | None:
    """One array of text (a dictionary kept as it is), or None for a type that cannot hold the values."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if holds_text(values.type):
        return values
    if allow_integers and pa.types.is_integer(values.type):
        # a phone or SSN column stored as integers still holds the digits that text may quote
        return values.cast(pa.string())
    return None


def _known_tokens(values: pa.Array, kind: _Kind) -> pa.Array:
    """The distinct searchable tokens of an identifier column's values."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary
    # An identifier column repeats a patient's values on each of their rows: each is tokenised once.
    values = pc.unique(values).cast(_TOKEN_TYPE)
    ascii_only = bool(pc.all(pc.string_is_ascii(values)).as_py())
    lowered = pc.ascii_lower(values) if ascii_only else pc.utf8_lower(values)

    if kind is _Kind.WORDS:
        tokens = pc.list_flatten(pc.split_pattern_regex(lowered, _NOT_WORD))
        letters = pc.utf8_length(pc.replace_substring_regex(tokens, r"[^\p{L}]+", ""))
        keep = pc.and_(
            pc.greater_equal(letters, MINIMUM_NAME_LETTERS),
            pc.invert(pc.is_in(tokens, value_set=_COMMON_WORDS)),
        )
    elif kind is _Kind.NUMBERS:
        tokens, digits = _letters_and_digits(pc.drop_null(lowered))
        keep = pc.and_(
            pc.greater_equal(pc.utf8_length(tokens), MINIMUM_NUMBER_LENGTH),
            pc.greater_equal(digits, MINIMUM_NUMBER_DIGITS),
        )
    else:
        tokens = pc.utf8_trim(pc.utf8_trim_whitespace(lowered), _ADDRESS_TRIM)
        keep = pc.greater_equal(pc.utf8_length(tokens), MINIMUM_ADDRESS_LENGTH)
    return pc.unique(pc.filter(tokens, pc.fill_null(keep, False)))


def _letters_and_digits(lowered: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Each value with every character but letters and digits taken out, and its number of digits.

    ASCII text (ids, SSNs, licence numbers) is reduced with numpy on Arrow's buffers, which gives the same
    tokens many times faster than a Unicode regular expression on a batch of unique ids; other text goes
    through the regular expression.

    :param lowered: lower-cased values of the token type, without nulls.
    """
    if len(lowered) == 0 or not pc.all(pc.string_is_ascii(lowered)).as_py():
        tokens = pc.replace_substring_regex(lowered, _NOT_WORD, "")
        return tokens, pc.utf8_length(pc.replace_substring_regex(tokens, r"[^0-9]+", ""))

    _, offsets_buffer, data_buffer = lowered.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        lowered.offset : lowered.offset + len(lowered) + 1
    ]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    data, offsets = data[offsets[0] : offsets[-1]], offsets - offsets[0]
    # unsigned differences wrap around, so one comparison tests a range
    digit = (data - np.uint8(ord("0"))) < 10
    kept = digit | ((data - np.uint8(ord("a"))) < 26)
    width = int(offsets[1]) if len(offsets) > 1 else 0
    if width and (np.diff(offsets) == width).all():
        # Ids of one format (UUIDs, SSNs) have one width and their separators at the same places: the
        # tokens are then columns of a matrix of the values.
        rows, kept_rows = data.reshape(-1, width), kept.reshape(-1, width)
        if (kept_rows == kept_rows[0]).all():
            kept_width = int(kept_rows[0].sum())
            token_offsets = np.arange(0, (len(lowered) + 1) * kept_width, kept_width, dtype=np.int64)
            token_data = np.ascontiguousarray(rows[:, kept_rows[0]])
            tokens = pa.Array.from_buffers(
                _TOKEN_TYPE, len(lowered), [None, pa.py_buffer(token_offsets), pa.py_buffer(token_data)]
            )
            return tokens, pa.array(digit.reshape(-1, width).sum(axis=1, dtype=np.int64))
    tokens = pa.Array.from_buffers(
        _TOKEN_TYPE,
        len(lowered),
        [
            None,
            pa.py_buffer(np.concatenate([[0], np.cumsum(_per_value(kept, offsets))])),
            pa.py_buffer(data[kept]),
        ],
    )
    return tokens, pa.array(_per_value(digit, offsets))


def _per_value(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """How many flags are set within each value, the values being ``flags[offsets[i]:offsets[i + 1]]``."""
    counts = np.zeros(len(offsets) - 1, dtype=np.int64)
    filled = offsets[1:] > offsets[:-1]
    if flags.size:
        counts[filled] = np.add.reduceat(flags, offsets[:-1][filled], dtype=np.int64)
    return counts


def _text_tokens(text: pa.Array, kind: _Kind) -> pa.Array:
    """Each text value as a list of tokens, normalised the way the known values of ``kind`` are."""
    lowered = pc.utf8_lower(text)
    if kind is _Kind.WORDS:
        return pc.split_pattern_regex(lowered, _NOT_WORD)
    if kind is _Kind.NUMBERS:
        joined = pc.replace_substring_regex(lowered, _NUMBER_SEPARATORS, "")
        # twice, since one pass cannot join a group that the previous match already consumed ("1 2 3")
        for _ in range(2):
            joined = pc.replace_substring_regex(joined, _SPACED_DIGITS, r"\1\2")
        return pc.split_pattern_regex(joined, _NOT_WORD)
    tokens = pc.split_pattern_regex(lowered, _ADDRESS_BOUNDARIES)
    return pa.ListArray.from_arrays(tokens.offsets, pc.utf8_trim(tokens.values, _ADDRESS_TRIM))


def _guarded(function, *arguments):
    """Run an Arrow computation on identifier values; its error message may quote them, so it is dropped."""
    try:
        return function(*arguments)
    except pa.ArrowException as error:
        raise DataProcessingError("known values", type(error).__name__, retryable=False) from None
