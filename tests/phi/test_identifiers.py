"""The vocabulary of the 18 Safe Harbor identifiers (45 CFR 164.514(b)(2)(i), letters A to R)."""

from __future__ import annotations

from airflow_phi_guard.phi import identifiers
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier


def test_eighteen_identifiers_lettered_a_to_r_in_the_rule_s_order():
    assert [identifier.letter for identifier in SafeHarborIdentifier] == list("ABCDEFGHIJKLMNOPQR")


def test_each_letter_alias_is_its_identifier():
    for identifier in SafeHarborIdentifier:
        assert getattr(identifiers, identifier.letter) is identifier


def test_the_letters_name_the_rule_s_identifiers():
    assert SafeHarborIdentifier("A").description == "names"
    assert SafeHarborIdentifier("G").description == "social security numbers"
    assert SafeHarborIdentifier("R").description.startswith("any other unique identifying number")
