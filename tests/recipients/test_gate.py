"""The recipient gate: one commented row per rule of issue 8 and REGULATORY.md "Business associates"."""

from __future__ import annotations

from datetime import date

import pytest

from airflow_phi_guard.exceptions import RecipientNotPermittedError
from airflow_phi_guard.recipients import Release, decide, decide_for_recipient, parse_recipient_registry

REGISTRY = parse_recipient_registry(
    """
recipients:
  internal-ml-platform:
    name: Internal ML platform
    destinations: [s3://hospital-ml/, postgresql://ml-db.internal:5432/features]
    region: us-east-1
    baa:
      id: BAA-INTERNAL-1
      signed: 2025-12-15
      effective: 2026-01-01
      expires: 2027-01-01
      permitted_uses: [model-training]
      data: phi
  no-baa-vendor:
    name: Vendor without an agreement
    destinations: [https://api.no-baa.example]
    region: us-west-2
  baa-vendor:
    name: Vendor with an agreement
    destinations: [s3://baa-vendor/inbound]
    region: us-east-2
    baa:
      id: BAA-VENDOR-7
      signed: 2026-03-01
      effective: 2026-03-01
      expires: 2026-12-01
      permitted_uses: [model-training, inference]
      data: phi
  deid-only-vendor:
    name: Vendor whose agreement covers de-identified data only
    destinations: [s3://deid-only/]
    region: EU
    baa:
      id: BAA-DEID-3
      signed: 2026-01-01
      effective: 2026-01-01
      expires: 2028-01-01
      permitted_uses: [model-training]
      data: deidentified-only
  labelling-buyer:
    name: Labelling service that pays for the data
    destinations: [sftp://sftp.buyer.example/drop]
    region: us-east-1
    sale_of_phi: true
    baa:
      id: BAA-BUYER-2
      signed: 2026-01-01
      effective: 2026-01-01
      expires: 2028-01-01
      permitted_uses: [model-training]
      data: phi
  authorized-buyer:
    name: Buyer with a recorded authorization
    destinations: [sftp://sftp.authorized.example/drop]
    region: us-east-1
    sale_of_phi: true
    sale_authorization: {id: AUTH-SALE-9, recorded: 2026-02-01}
    baa:
      id: BAA-AUTH-5
      signed: 2026-01-01
      effective: 2026-01-01
      expires: 2028-01-01
      permitted_uses: [model-training]
      data: phi
""",
    "recipients.yaml",
)

RUN = date(2026, 6, 1)


def release(safe_harbor: str | None, *, purpose: str = "model-training", published: bool = True) -> Release:
    return Release(policy="p", purpose=purpose, published=published, safe_harbor=safe_harbor)


# (release, destination, run date, allowed, sections the decision must cite)
RULES = [
    # Safe Harbor met: de-identified, no agreement needed, whoever receives it (164.502(d)(2)) ...
    (release("met"), "https://api.no-baa.example/v1/upload", RUN, True, {"164.502(d)(2)"}),
    # ... even a destination no recipient owns
    (release("met"), "s3://somewhere-else/x.parquet", RUN, True, {"164.502(d)(2)"}),
    # expert determination with pseudonyms is not Safe Harbor: PHI, and the vendor has no BAA
    (release("not-met"), "https://api.no-baa.example/v1/upload", RUN, False, {"164.502(e)(1)", "164.504(e)"}),
    # awaiting the attestation is not met: still PHI
    (release("awaiting-attestation"), "https://api.no-baa.example/v1", RUN, False, {"164.502(e)(1)"}),
    # an unknown verdict is treated as PHI (fail closed)
    (release(None), "https://api.no-baa.example/v1", RUN, False, {"164.502(e)(1)"}),
    # PHI to a vendor whose BAA is in force and permits model training: allowed
    (release("not-met"), "s3://baa-vendor/inbound/set.parquet", RUN, True, {"164.502(e)", "164.504(e)"}),
    # the BAA's first day counts (effective <= run date)
    (release("not-met"), "s3://baa-vendor/inbound/a", date(2026, 3, 1), True, {"164.504(e)"}),
    # the day before it takes effect does not
    (release("not-met"), "s3://baa-vendor/inbound/a", date(2026, 2, 28), False, {"164.504(e)"}),
    # the expiry day is the first day it no longer holds (run date < expires)
    (release("not-met"), "s3://baa-vendor/inbound/a", date(2026, 12, 1), False, {"164.504(e)"}),
    # the last day before expiry still counts
    (release("not-met"), "s3://baa-vendor/inbound/a", date(2026, 11, 30), True, {"164.504(e)"}),
    # a BAA that does not permit the purpose refuses it (164.504(e)(2)(i))
    (release("not-met", purpose="research"), "s3://baa-vendor/inbound/a", RUN, False, {"164.504(e)(2)(i)"}),
    # a BAA for de-identified data only refuses PHI
    (release("not-met"), "s3://deid-only/x", RUN, False, {"164.504(e)(2)"}),
    # ... and lets de-identified data through
    (release("met"), "s3://deid-only/x", RUN, True, {"164.502(d)(2)"}),
    # a sale of PHI without a recorded authorization is refused even with a BAA (164.502(a)(5)(ii))
    (
        release("not-met"),
        "sftp://sftp.buyer.example/drop/x",
        RUN,
        False,
        {"164.502(a)(5)(ii)", "164.508(a)(4)"},
    ),
    # with a recorded authorization it is allowed
    (release("not-met"), "sftp://sftp.authorized.example/drop/x", RUN, True, {"164.508(a)(4)"}),
    # a sale of de-identified data is not a sale of PHI
    (release("met"), "sftp://sftp.buyer.example/drop/x", RUN, True, {"164.502(d)(2)"}),
    # a PHI destination no recipient owns is refused
    (release("not-met"), "s3://somewhere-else/x.parquet", RUN, False, {"164.502(e)(1)"}),
    # a prefix matches whole segments only: s3://baa-vendor/inbound-evil is not the vendor's
    (release("not-met"), "s3://baa-vendor/inbound-evil/x", RUN, False, {"164.502(e)(1)"}),
    # nor does a longer host name (api.no-baa.example.attacker.net)
    (release("not-met"), "s3://hospital-ml.attacker/x", RUN, False, {"164.502(e)(1)"}),
    # '..' could leave the owned prefix: refused as ambiguous
    (release("not-met"), "s3://baa-vendor/inbound/../elsewhere/x", RUN, False, set()),
    # a run that published nothing has nothing to export
    (release("not-met", published=False), "s3://baa-vendor/inbound/a", RUN, False, set()),
    # scheme and host compare without case; the internal platform's database with its BAA
    (release("not-met"), "POSTGRESQL://ML-DB.internal:5432/features", RUN, True, {"164.504(e)"}),
]


@pytest.mark.parametrize(("data", "destination", "run_date", "allowed", "sections"), RULES)
def test_gate_rule_table(data, destination, run_date, allowed, sections):
    decision = decide(data, destination, REGISTRY, run_date)

    assert decision.allowed is allowed
    assert sections <= set(decision.rules)
    assert bool(decision.refusals) is not allowed


@pytest.mark.parametrize(
    ("destination", "allowed"),
    [
        # a literal '..' is refused, and so is every spelling a server may decode to it
        ("s3://baa-vendor/inbound/../x", False),
        ("s3://baa-vendor/inbound/%2e%2e/x", False),
        ("s3://baa-vendor/inbound/%2E%2E/x", False),
        ("s3://baa-vendor/inbound/.%2e/x", False),
        ("s3://baa-vendor/inbound/%2e./x", False),
        ("s3://baa-vendor/inbound/%2e/x", False),
        # an encoded '/' makes one segment two once decoded
        ("s3://baa-vendor/inbound/a%2f..%2fb", False),
        ("s3://baa-vendor/inbound/a%2Fb", False),
        # dots that decode to neither '.' nor '..' are plain names
        ("s3://baa-vendor/inbound/...", True),
        ("s3://baa-vendor/inbound/%2e%2e%2e/x", True),
        ("s3://baa-vendor/inbound/.hidden/x", True),
        ("s3://baa-vendor/inbound/a%20b/x", True),
        # decoded once: '%252e%252e' is the literal name '%2e%2e', not a dot segment
        ("s3://baa-vendor/inbound/%252e%252e/x", True),
    ],
)
def test_percent_encoded_dot_segments_and_slashes_are_refused(destination: str, allowed: bool):
    decision = decide(release("not-met"), destination, REGISTRY, RUN)

    assert decision.allowed is allowed, decision.refusals
    assert bool(decision.refusals) is not allowed


def test_a_refusal_names_recipient_agreement_and_rule():
    decision = decide(release("not-met"), "s3://baa-vendor/inbound/a", REGISTRY, date(2027, 1, 5))

    (refusal,) = decision.refusals
    assert "baa-vendor" in refusal
    assert "BAA-VENDOR-7" in refusal
    assert "164.504(e)" in refusal
    assert "expired" in refusal
    assert (decision.recipient, decision.agreement) == ("baa-vendor", "BAA-VENDOR-7")


def test_a_refusal_without_agreement_says_so():
    decision = decide(release("not-met"), "https://api.no-baa.example/v1", REGISTRY, RUN)

    assert "no-baa-vendor" in decision.refusals[0]
    assert "agreement: none" in decision.refusals[0]
    with pytest.raises(RecipientNotPermittedError, match="no-baa-vendor"):
        decision.raise_for_refusal("report.json")


def test_the_destination_is_recorded_without_its_password():
    canary = "CANARY-PASSWORD-7731"
    decision = decide(release("not-met"), f"s3://user:{canary}@baa-vendor/inbound/x", REGISTRY, RUN)

    assert decision.allowed
    assert canary not in decision.model_dump_json()
    assert "user" not in decision.destination
    refused = decide(release("not-met"), f"s3://user:{canary}@baa-vendor/inbound/../x", REGISTRY, RUN)
    assert not refused.allowed
    assert canary not in refused.model_dump_json()


@pytest.mark.parametrize(
    ("recipient", "data", "allowed"),
    [
        # the policy's own recipient, with a BAA for its purpose: allowed for PHI
        ("internal-ml-platform", "not-met", True),
        # a recipient the registry does not know: refused, even for de-identified data
        ("unknown-recipient", "met", False),
        # the policy names a vendor without a BAA and its output is still PHI
        ("no-baa-vendor", "not-met", False),
        # the same vendor receiving Safe Harbor output: allowed
        ("no-baa-vendor", "met", True),
    ],
)
def test_decide_for_the_policy_recipient(recipient, data, allowed):
    assert decide_for_recipient(release(data), recipient, REGISTRY, RUN).allowed is allowed


def test_release_from_report_and_summary_agree():
    report = {
        "verdict": "published",
        "policy": {"name": "p", "version": 1, "digest": "sha256:ab"},
        "purpose": "model-training",
        "safe_harbor": {"status": "not-met"},
    }
    summary = {"verdict": "published", "policy": "p", "policy_digest": "sha256:ab", "safe_harbor": "not-met"}

    assert Release.from_report(report) == Release.from_summary(summary, "model-training")
    assert Release.from_report(report).still_phi
    # a summary that names its purpose needs none given, and refuses one that differs
    assert Release.from_summary({**summary, "purpose": "model-training"}) == Release.from_report(report)
    with pytest.raises(ValueError, match="not the purpose given"):
        Release.from_summary({**summary, "purpose": "model-training"}, "marketing")
    with pytest.raises(ValueError, match="names no purpose"):
        Release.from_summary(summary)


def test_the_cli_gives_the_same_decision(tmp_path, capsys):
    from airflow_phi_guard.cli import EXIT_PUBLISHED, EXIT_REFUSED, main

    registry = tmp_path / "recipients.yaml"
    registry.write_text(REGISTRY.model_dump_json())  # JSON is YAML
    report = tmp_path / "report.json"
    report.write_text(
        '{"verdict": "published", "policy": {"name": "p", "version": 1, "digest": "sha256:ab"}, '
        '"purpose": "model-training", "safe_harbor": {"status": "not-met"}}'
    )
    common = ["gate", "--report", str(report), "--recipients", str(registry), "--date", "2026-06-01"]

    refused = main([*common, "--destination", "https://api.no-baa.example/v1"])
    refused_err = capsys.readouterr().err
    allowed = main([*common, "--destination", "s3://baa-vendor/inbound/x", "--format", "json"])

    assert refused == EXIT_REFUSED
    assert "no-baa-vendor" in refused_err
    assert "164.502(e)(1)" in refused_err
    assert allowed == EXIT_PUBLISHED
    assert '"agreement": "BAA-VENDOR-7"' in capsys.readouterr().out
