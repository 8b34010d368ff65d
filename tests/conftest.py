"""Shared fixtures: the repository's paths and a minimal valid policy text."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYNTHEA = REPO / "data" / "synthea-nebraska"
DEMO_POLICY = REPO / "dags" / "policies" / "readmission_risk.yaml"

MINIMAL_POLICY = """\
name: readmission-risk
version: 1
purpose: model-training
model: {name: readmission-risk, version: "1"}
recipient: internal-ml-platform
subject: PATIENT
consent:
  bases: [research-authorization, irb-waiver]
deidentification:
  method: expert-determination
columns:
  PATIENT:   {treatment: pseudonymize, justification: "groups encounters per patient"}
  BIRTHDATE: {treatment: age, as: AGE, justification: "predictor"}
  ZIP:       {treatment: zip3, justification: "region"}
  SSN:       {treatment: drop, justification: "not needed"}
"""


@pytest.fixture
def minimal_policy_text() -> str:
    return MINIMAL_POLICY
