"""Reading the recipient registry: valid files load, and every error names the file, the key and the line."""

from __future__ import annotations

from datetime import date

import pytest

from airflow_phi_guard.exceptions import RecipientRegistryError
from airflow_phi_guard.recipients import load_recipient_registry, parse_recipient_registry

VALID = """\
recipients:
  vendor:
    name: Vendor
    destinations: [s3://vendor/inbound]
    region: us-east-1
    baa:
      id: BAA-1
      signed: 2026-01-01
      effective: 2026-01-01
      expires: 2027-01-01
      permitted_uses: [model-training, inference, MLTRAINING]
      data: phi
"""


def test_a_valid_registry_loads(tmp_path):
    path = tmp_path / "recipients.yaml"
    path.write_text(VALID)

    registry = load_recipient_registry(path)

    agreement = registry.recipients["vendor"].baa
    assert agreement.in_force(date(2026, 1, 1))
    assert not agreement.in_force(date(2027, 1, 1))
    assert agreement.permits("model-training")
    assert agreement.permits("inference")
    assert not agreement.permits("research")
    assert registry.owner_of("s3://vendor/inbound/x.parquet")[0] == "vendor"
    assert registry.owner_of("s3://vendor/other/x.parquet") is None


@pytest.mark.parametrize(
    ("replace", "by", "key", "line"),
    [
        # a misspelt key is an error, never an ignored rule
        ("    region: us-east-1\n", "    regoin: us-east-1\n", "recipients.vendor.regoin", 5),
        # a required key is missing
        ("    region: us-east-1\n", "", "recipients.vendor.region", 2),
        # expires must come after effective
        ("      expires: 2027-01-01\n", "      expires: 2025-01-01\n", "recipients.vendor.baa", 6),
        # an agreement cannot take effect before it was signed
        ("      effective: 2026-01-01\n", "      effective: 2025-06-01\n", "recipients.vendor.baa", 6),
        # a use outside the vocabulary
        (
            "[model-training, inference, MLTRAINING]",
            "[model-training, selling]",
            "recipients.vendor.baa.permitted_uses",
            11,
        ),
        # what may flow is phi or deidentified-only
        ("      data: phi\n", "      data: everything\n", "recipients.vendor.baa.data", 12),
        # a destination with '..' is not plain
        ("[s3://vendor/inbound]", "[s3://vendor/inbound/../all]", "recipients.vendor.destinations", 4),
    ],
)
def test_errors_name_the_key_and_line(replace, by, key, line):
    text = VALID.replace(replace, by)
    assert text != VALID

    with pytest.raises(RecipientRegistryError) as caught:
        parse_recipient_registry(text, "recipients.yaml")

    assert (caught.value.key, caught.value.line) == (key, line)
    assert str(caught.value).startswith(f"recipients.yaml:{line}: ")


def test_a_recipient_listed_twice_is_an_error():
    text = VALID + VALID.removeprefix("recipients:\n")

    with pytest.raises(RecipientRegistryError, match="key given twice") as caught:
        parse_recipient_registry(text, "recipients.yaml")
    assert caught.value.line == 13


def test_a_destination_owned_by_two_recipients_is_an_error():
    text = VALID + VALID.removeprefix("recipients:\n").replace("  vendor:", "  other:")

    with pytest.raises(RecipientRegistryError, match="listed by both vendor and other"):
        parse_recipient_registry(text, "recipients.yaml")


def test_an_unreadable_file_is_named(tmp_path):
    with pytest.raises(RecipientRegistryError, match="cannot read"):
        load_recipient_registry(tmp_path / "missing.yaml")


def test_a_sale_authorization_needs_a_sale():
    text = VALID.replace(
        "    region: us-east-1\n",
        "    region: us-east-1\n    sale_authorization: {id: A, recorded: 2026-01-01}\n",
    )

    with pytest.raises(RecipientRegistryError, match="sale_of_phi"):
        parse_recipient_registry(text, "recipients.yaml")
