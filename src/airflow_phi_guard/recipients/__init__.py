"""Recipients of governed data, their business associate agreements, and the gate that judges an export."""

from __future__ import annotations

from airflow_phi_guard.recipients.gate import GateDecision, Release, decide, decide_for_recipient
from airflow_phi_guard.recipients.models import (
    BusinessAssociateAgreement,
    Recipient,
    RecipientRegistry,
    SaleAuthorization,
)
from airflow_phi_guard.recipients.registry import load_recipient_registry, parse_recipient_registry

__all__ = [
    "BusinessAssociateAgreement",
    "GateDecision",
    "Recipient",
    "RecipientRegistry",
    "Release",
    "SaleAuthorization",
    "decide",
    "decide_for_recipient",
    "load_recipient_registry",
    "parse_recipient_registry",
]
