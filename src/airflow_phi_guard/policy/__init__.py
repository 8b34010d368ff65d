"""Policies: the per-purpose, per-model column allowlist with treatments, consent bases and method."""

from __future__ import annotations

from airflow_phi_guard.policy.loader import load_policy, parse_policy
from airflow_phi_guard.policy.models import (
    ColumnPolicy,
    ConsentBasis,
    ConsentPolicy,
    DeidentificationMethod,
    DeidentificationPolicy,
    ModelReference,
    Policy,
    Treatment,
    UndeclaredColumns,
    Zip3Vintage,
)

__all__ = [
    "ColumnPolicy",
    "ConsentBasis",
    "ConsentPolicy",
    "DeidentificationMethod",
    "DeidentificationPolicy",
    "ModelReference",
    "Policy",
    "Treatment",
    "UndeclaredColumns",
    "Zip3Vintage",
    "load_policy",
    "parse_policy",
]
