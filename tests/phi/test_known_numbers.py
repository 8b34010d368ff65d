"""Known numbers and codes: the token of an identifier value is its letters and digits, lower-cased."""

from __future__ import annotations

import pyarrow as pa
import pytest

from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.known import KnownValues

_R = SafeHarborIdentifier.OTHER_UNIQUE_IDENTIFIER
_G = SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER


@pytest.mark.parametrize(
    ("values", "note", "found"),
    [
        # ids of one format (one width, separators at the same places): a note quoting one, any case
        (["982192B6-6843-4011-EF46-32CAAF87D8A9", "2de0b259-6c63-700d-9ac4-edcabff0861a"],
         "see 982192b6684340 11ef4632caaf87d8a9 and 2de0b259-6c63-700d-9ac4-edcabff0861a", True),
        (["982192B6-6843-4011-EF46-32CAAF87D8A9", "2de0b259-6c63-700d-9ac4-edcabff0861a"],
         "encounter 2DE0B2596C63700D9AC4EDCABFF0861A reviewed", True),
        # ids of mixed widths and formats
        (["A-1234567", "b.987654321", "77-12-34"], "card b987654321 on file", True),
        (["A-1234567", "b.987654321", "77-12-34"], "code 771234 noted", True),
        # too short, or too few digits, to be searched (six characters, four of them digits)
        (["12-345", "AB-CDEF1"], "ref 12345 and abcdef1", False),
        # a value that is not ASCII goes the other way, to the same tokens
        (["Ü-123456"], "id ü123456", True),
        # no identifier quoted
        (["982192B6-6843-4011-EF46-32CAAF87D8A9"], "Encounter for problem", False),
    ],
)  # fmt: skip
def test_a_quoted_number_is_found_in_text(values: list[str | None], note: str, found: bool) -> None:
    known = KnownValues.from_batch(pa.table({"ENCOUNTER": pa.array([*values, None])}), {"ENCOUNTER": _R})

    assert known.search(pa.array([note, "nothing here", None])) == ({_R: 1} if found else {})


def test_tokens_of_several_columns_of_one_identifier_are_searched_together() -> None:
    batch = pa.table({"SSN": ["999-12-3456", "999-65-4321"], "SSN_SPOUSE": pa.array(["999-11-2222", None])})
    known = KnownValues.from_batch(batch, {"SSN": _G, "SSN_SPOUSE": _G})

    assert known.counts() == {_G: 3}
    assert known.search(pa.array(["ssn 999112222", "999 65 4321", "none"])) == {_G: 2}
