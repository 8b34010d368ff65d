"""Fixtures of the recipient tests: the gate tests' registry as a PostgreSQL table, and its rows."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from airflow_phi_guard.recipients import RecipientRegistry
from tests.conftest import PostgresSchema
from tests.operators.conftest import key_connection  # noqa: F401 (a fixture of the policy operator tests)
from tests.recipients.test_gate import REGISTRY

#: The table as README.md documents it.
DDL = """
    recipient_id text PRIMARY KEY,
    name text NOT NULL,
    destinations text[] NOT NULL,
    region text NOT NULL,
    sale_of_phi boolean NOT NULL DEFAULT false,
    baa_id text,
    baa_signed date,
    baa_effective date,
    baa_expires date,
    baa_permitted_uses text[],
    baa_data text,
    sale_authorization_id text,
    sale_authorization_recorded date,
    sale_authorization_expires date
"""
#: The same columns without constraints, so that malformed rows can be stored.
LOOSE = ", ".join(" ".join(line.strip().rstrip(",").split()[:2]) for line in DDL.strip().splitlines())


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _rows(registry: RecipientRegistry) -> list[tuple]:
    """The registry's recipients as rows of the table, one each."""
    rows = []
    for recipient_id, recipient in registry.recipients.items():
        baa, sale = recipient.baa, recipient.sale_authorization
        rows.append(
            (
                recipient_id,
                recipient.name,
                list(recipient.destinations),
                recipient.region,
                recipient.sale_of_phi,
                *(
                    (baa.id, baa.signed, baa.effective, baa.expires, list(baa.permitted_uses), baa.data.value)
                    if baa
                    else (None,) * 6
                ),
                *((sale.id, sale.recorded, sale.expires) if sale else (None,) * 3),
            )
        )
    return rows


@pytest.fixture(scope="module")
def registry_table(postgres_schema: PostgresSchema) -> str:
    """The gate tests' registry (tests/recipients/test_gate.py REGISTRY) as a PostgreSQL table."""
    return postgres_schema.create_table(_unique("recipients"), DDL, _rows(REGISTRY))


def _unchained(error: BaseException) -> bool:
    """Whether no other error (a driver's, pydantic's) is chained to ``error``, so none is ever printed."""
    return error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def _good_row(recipient_id: str = "vendor", **cells) -> tuple:
    row = {
        "recipient_id": recipient_id,
        "name": "Vendor",
        "destinations": [f"s3://{recipient_id}/"],
        "region": "us-east-1",
        "sale_of_phi": False,
        "baa_id": "BAA-1",
        "baa_signed": date(2026, 1, 1),
        "baa_effective": date(2026, 1, 1),
        "baa_expires": date(2027, 1, 1),
        "baa_permitted_uses": ["model-training", "inference"],
        "baa_data": "phi",
        "sale_authorization_id": None,
        "sale_authorization_recorded": None,
        "sale_authorization_expires": None,
    }
    return tuple((row | cells).values())
