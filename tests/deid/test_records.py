"""The records an expert-determination or limited-data-set policy rests on: present, in force at the run's
reference date, and (for a data use agreement) permitting the policy's purpose."""

from __future__ import annotations

import datetime

import pytest
from pydantic import ValidationError

from airflow_phi_guard.deid.methods import record_refusals
from airflow_phi_guard.policy.models import DeidentificationMethod, DeidentificationPolicy

DETERMINATION = {
    "expert": "A. Expert, PhD (biostatistics)",
    "determined": "2026-01-15",
    "report": "ED-2026-001",
    "expires": "2027-01-15",
}
AGREEMENT = {
    "id": "DUA-2026-7",
    "parties": ["Nebraska Medical Center", "Internal ML platform"],
    "permitted_purposes": ["model-training", "research"],
    "signed": "2026-02-01",
    "expires": "2028-02-01",
}


def deidentification(method, **records):
    return DeidentificationPolicy.model_validate({"method": method, **records})


# (method, records, purpose, as-of date, refused): a determination or agreement holds from its first
# day to the day before it expires (expires is its first day no longer in force); a data use agreement
# only for the purposes it permits (45 CFR 164.514(e)(4)). A method that needs a record and has none does
# not load (MALFORMED below).
RECORDS = [
    ("safe-harbor", {}, "model-training", "2026-06-01", False),
    ("expert-determination", {"expert_determination": DETERMINATION}, "model-training", "2026-06-01", False),
    ("expert-determination", {"expert_determination": DETERMINATION}, "model-training", "2026-01-15", False),
    ("expert-determination", {"expert_determination": DETERMINATION}, "model-training", "2026-01-14", True),
    ("expert-determination", {"expert_determination": DETERMINATION}, "model-training", "2027-01-14", False),
    ("expert-determination", {"expert_determination": DETERMINATION}, "model-training", "2027-01-15", True),
    ("limited-data-set", {"data_use_agreement": AGREEMENT}, "model-training", "2026-06-01", False),
    ("limited-data-set", {"data_use_agreement": AGREEMENT}, "research", "2026-06-01", False),
    ("limited-data-set", {"data_use_agreement": AGREEMENT}, "marketing", "2026-06-01", True),
    ("limited-data-set", {"data_use_agreement": AGREEMENT}, "model-training", "2028-02-01", True),
    ("limited-data-set", {"data_use_agreement": AGREEMENT}, "model-training", "2026-01-31", True),
]


@pytest.mark.parametrize(("method", "records", "purpose", "as_of", "refused"), RECORDS)
def test_a_run_rests_only_on_a_record_in_force_for_its_purpose(method, records, purpose, as_of, refused):
    refusals = record_refusals(
        deidentification(method, **records), purpose, datetime.date.fromisoformat(as_of)
    )

    assert bool(refusals) is refused


def test_a_purpose_outside_the_agreement_names_the_agreement_and_the_rule():
    (refusal,) = record_refusals(
        deidentification("limited-data-set", data_use_agreement=AGREEMENT),
        "marketing",
        datetime.date(2026, 6, 1),
    )

    assert "DUA-2026-7" in refusal and "marketing" in refusal and "164.514(e)(4)" in refusal


# A record under the wrong method, a missing record, or an impossible period, is a policy error at load.
MALFORMED = [
    ("expert-determination", {}),
    ("limited-data-set", {}),
    ("safe-harbor", {"expert_determination": DETERMINATION}),
    ("limited-data-set", {"expert_determination": DETERMINATION, "data_use_agreement": AGREEMENT}),
    ("expert-determination", {"expert_determination": {**DETERMINATION, "expires": "2026-01-15"}}),
    ("limited-data-set", {"data_use_agreement": {**AGREEMENT, "parties": ["only one"]}}),
    ("limited-data-set", {"data_use_agreement": {**AGREEMENT, "permitted_purposes": ["selling"]}}),
    ("limited-data-set", {"data_use_agreement": {**AGREEMENT, "permitted_purposes": []}}),
]


@pytest.mark.parametrize(("method", "records"), MALFORMED)
def test_a_malformed_record_does_not_load(method, records):
    with pytest.raises(ValidationError):
        deidentification(method, **records)


@pytest.mark.parametrize("method", ["expert-determination", "limited-data-set"])
def test_a_method_without_its_record_is_refused_even_when_built_past_validation(method):
    # Defence in depth: a section built without validation (model_construct) still cannot rest on nothing.
    section = DeidentificationPolicy.model_construct(method=DeidentificationMethod(method))

    (refusal,) = record_refusals(section, "model-training", datetime.date(2026, 6, 1))

    assert "records no" in refusal
