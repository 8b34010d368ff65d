"""Tests of the purpose vocabulary: registry spellings, covering codes, and the policy's purpose at load."""

from __future__ import annotations

import pytest

from airflow_phi_guard.consent.purposes import (
    PURPOSE_OF_USE,
    PURPOSE_OF_USE_SYSTEM,
    covering_codes,
    is_known_purpose,
    purpose_code,
)
from airflow_phi_guard.exceptions import PolicyError
from airflow_phi_guard.policy import parse_policy

SYSTEM = PURPOSE_OF_USE_SYSTEM

# A registry purpose: a product name, or a PurposeOfUse code bare or with its system; anything else is
# unknown (None), which makes a registry malformed.
SPELLINGS = [
    pytest.param("model-training", "MLTRAINING", id="product-name"),
    pytest.param("  research ", "HRESCH", id="product-name-trimmed"),
    pytest.param("treatment", "TREAT", id="treatment-name"),
    pytest.param("HRESCH", "HRESCH", id="bare-code"),
    pytest.param(f"{SYSTEM}|CLINTRCH", "CLINTRCH", id="system-bar-code"),
    pytest.param(f"{SYSTEM}#HQUALIMP", "HQUALIMP", id="system-hash-code"),
    pytest.param("MLTRAINING", "MLTRAINING", id="ml-training-code"),
    # HL7 codes are case-sensitive; a product name is spelled as listed.
    pytest.param("hresch", None, id="code-in-lower-case"),
    pytest.param("Model-Training", None, id="name-in-other-case"),
    pytest.param("http://example.org/purposes|HRESCH", None, id="other-system"),
    pytest.param("newsletters", None, id="unknown-word"),
    pytest.param("", None, id="empty"),
]


@pytest.mark.parametrize(("token", "code"), SPELLINGS)
def test_registry_spellings(token: str, code: str | None) -> None:
    assert purpose_code(token) == code
    assert is_known_purpose(token) is (code is not None)


def test_the_codes_the_issue_names_are_in_the_vocabulary() -> None:
    required = {"TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "CLINTRCH", "PUBHLTH", "HMARKT"}
    assert required | {"HQUALIMP", "PATRQT", "MLTRAINING"} <= set(PURPOSE_OF_USE)


# Which codes cover a policy's purpose: narrow by default, widened only by what the policy lists.
COVERING = [
    pytest.param("model-training", (), {"MLTRAINING"}, id="training-only-by-MLTRAINING"),
    # A research consent does not cover model training unless the policy says so.
    pytest.param("model-training", ("HRESCH",), {"MLTRAINING", "HRESCH"}, id="widened-by-research-code"),
    pytest.param("model-training", ("research",), {"MLTRAINING", "HRESCH"}, id="widened-by-research-name"),
    pytest.param("research", (), {"HRESCH"}, id="research"),
    pytest.param("HQUALIMP", (), {"HQUALIMP"}, id="policy-purpose-as-code"),
]


@pytest.mark.parametrize(("purpose", "widened", "expected"), COVERING)
def test_covering_codes(purpose: str, widened: tuple[str, ...], expected: set[str]) -> None:
    assert covering_codes(purpose, widened) == expected


def test_a_research_code_does_not_cover_training_by_default() -> None:
    assert "HRESCH" not in covering_codes("model-training")
    assert "CLINTRCH" not in covering_codes("model-training")


def test_unknown_purpose_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown purpose"):
        covering_codes("newsletters")


POLICY = """\
name: p
version: 1
purpose: {purpose}
model: {{name: m, version: "1"}}
recipient: r
subject: PATIENT
consent:
  bases: [research-authorization]
  purposes_covering: {covering}
deidentification: {{method: safe-harbor}}
columns:
  PATIENT: {{treatment: drop, justification: "x"}}
"""


def test_a_policy_purpose_outside_the_vocabulary_is_refused_at_load() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(POLICY.format(purpose="newsletters", covering="[]"))
    assert caught.value.key == "purpose"
    assert caught.value.line == 3


def test_an_unknown_covering_purpose_is_refused_at_load() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(POLICY.format(purpose="model-training", covering="[HRESCH, whatever]"))
    assert caught.value.key is not None and caught.value.key.startswith("consent.purposes_covering")


def test_a_policy_may_widen_training_to_research_explicitly() -> None:
    policy = parse_policy(POLICY.format(purpose="model-training", covering="[HRESCH]"))
    assert policy.consent.purposes_covering == ("HRESCH",)
    assert covering_codes(policy.purpose, policy.consent.purposes_covering) == {"MLTRAINING", "HRESCH"}
