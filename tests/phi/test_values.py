"""The first import path of the value detectors, which the engine and the expectation suite use: it offers
the detectors of ``phi.detectors`` themselves, and ``scan_values`` keeps its contract of counts per
identifier, per row, at any confidence."""

from __future__ import annotations

import pyarrow as pa
import pytest

from airflow_phi_guard.phi import detectors, values
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.values import DETECTORS, ValueDetector, scan_values

C = SafeHarborIdentifier.DATES
D = SafeHarborIdentifier.TELEPHONE_NUMBER
F = SafeHarborIdentifier.EMAIL_ADDRESS
G = SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER
R = SafeHarborIdentifier.OTHER_UNIQUE_IDENTIFIER


@pytest.mark.parametrize("name", values.__all__)
def test_the_old_path_offers_the_same_objects(name):
    assert getattr(values, name) is getattr(detectors, name)


@pytest.mark.parametrize(
    ("value", "found"),
    [
        # The forms issue 2 named, as the engine refuses them in kept text.
        ("CANARYNOTE ssn 123-45-6789 on file", {G: 1}),  # the canary of the system test
        ("SSN 999-49-3983 on file", {G: 1}),  # never issued: low confidence, still counted
        ("call 402-555-0199 after 5pm", {D: 1}),
        ("contact: alice368@example.org.", {F: 1}),
        # Dates are identifiers since issue 3: the engine refuses them in kept text as well.
        ("admitted 2022-07-20", {C: 1}),
        # Ordinary extract text.
        ("Routine visit CANARYTEXT", {}),
        ("Well child visit (procedure)", {}),
        ("410620009", {}),
    ],
)
def test_scan_values_counts_identifiers_at_any_confidence(value, found):
    assert scan_values(pa.array([value])) == found


def test_nulls_are_no_finding():
    assert scan_values(pa.array([None, None], pa.string())) == {}
    assert scan_values(pa.array([None, "123-45-6789", None])) == {G: 1}


def test_a_row_counts_once_per_identifier_whatever_its_detectors():
    # ssn and ssn-never-issued both find this row; it is one row holding identifier G.
    assert scan_values(pa.array(["123-45-6789 and 999-49-3983", "123-45-6789"])) == {G: 2}


def test_a_detector_made_the_new_way_extends_the_default_table():
    canary = ValueDetector("canary", R, r"CANARY[0-9]{4}")
    note = pa.array(["seen CANARY0042 today"])

    assert scan_values(note) == {}
    assert scan_values(note, (*DETECTORS, canary)) == {R: 1}
