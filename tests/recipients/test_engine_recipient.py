"""The policy run checks its own recipient: listed in the registry, and fit for what the output is."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from airflow_phi_guard.engine.executor import govern
from airflow_phi_guard.exceptions import RecipientNotPermittedError
from airflow_phi_guard.policy.loader import parse_policy
from airflow_phi_guard.recipients import parse_recipient_registry
from tests.engine.test_executor import AS_OF, KEY, POLICY, SUBJECTS, _consent, _source

EXPERT = POLICY % {"undeclared": "refuse"}
SAFE_HARBOR = EXPERT.replace(
    """  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD (biostatistics)"
    determined: 2000-01-01
    report: ED-TEST-1
    expires: 2099-01-01
""",
    """  method: safe-harbor
  attestation: {by: "P. Officer, Privacy Officer", date: 2026-01-01, statement: "No actual knowledge."}
""",
).replace("{treatment: pseudonymize, as: PATIENT_KEY,", "{treatment: drop,")


def registry(baa: str = "") -> object:
    return parse_recipient_registry(
        f"""
recipients:
  internal-ml-platform:
    name: Internal ML platform
    destinations: [s3://hospital-ml/]
    region: us-east-1
{baa}
"""
    )


IN_FORCE = """    baa: {id: BAA-INT-1, signed: 2026-01-01, effective: 2026-01-01, expires: 2027-01-01,
          permitted_uses: [model-training], data: phi}"""
EXPIRED = IN_FORCE.replace("expires: 2027-01-01", "expires: 2026-12-01")  # AS_OF is the expiry day
RESEARCH_ONLY = IN_FORCE.replace("[model-training]", "[research]")


def run(tmp_path: Path, policy_text: str, recipients):
    output = tmp_path / "out" / "governed.parquet"
    result = govern(
        parse_policy(policy_text),
        _source(tmp_path),
        output,
        consent=_consent(tmp_path),
        as_of=AS_OF,
        pseudonym_key=KEY,
        recipients=recipients,
    )
    return result, output


def test_the_premises_of_the_table(tmp_path: Path):
    result, _ = run(tmp_path, SAFE_HARBOR, None)
    assert result.report.safe_harbor.status.value == "met"
    assert date(2026, 12, 1) == AS_OF  # the day EXPIRED expires


# (policy, registry, published): the rule's answer for the policy's own recipient
CASES = [
    # expert determination keeps pseudonyms: PHI; the recipient's BAA is in force for model training
    (EXPERT, IN_FORCE, True),
    # PHI to the recipient without a BAA: withdrawn (164.502(e)(1))
    (EXPERT, "", False),
    # the BAA's expiry day is the run date: no longer in force (164.504(e))
    (EXPERT, EXPIRED, False),
    # a BAA for research does not permit model training (164.504(e)(2)(i))
    (EXPERT, RESEARCH_ONLY, False),
    # Safe Harbor met: no agreement needed (164.502(d)(2))
    (SAFE_HARBOR, "", True),
]


@pytest.mark.parametrize(("policy", "baa", "published"), CASES)
def test_the_run_checks_its_recipient(tmp_path: Path, policy: str, baa: str, published: bool):
    result, output = run(tmp_path, policy, registry(baa))

    assert result.report.published is published
    assert output.exists() is published
    if not published:
        assert result.report.rows.read > 0  # judged on the verdict, after the pass
        with pytest.raises(RecipientNotPermittedError, match="internal-ml-platform") as refused:
            result.raise_for_verdict()
        for subject in SUBJECTS:
            assert str(subject) not in str(refused.value)
            assert str(subject) not in result.report.to_json()


def test_a_recipient_missing_from_the_registry_is_refused_before_rows_are_read(tmp_path: Path):
    other = parse_recipient_registry(
        "recipients:\n  someone-else: {name: X, destinations: ['s3://x/'], region: EU}\n"
    )

    result, output = run(tmp_path, SAFE_HARBOR, other)

    assert not result.report.published
    assert result.report.rows.read == 0
    assert not output.exists()
    assert any("not in the recipient registry" in refusal for refusal in result.report.refusals)


def test_without_a_registry_nothing_changes(tmp_path: Path):
    result, _ = run(tmp_path, EXPERT, None)
    assert result.report.published


def test_apply_refuses_with_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    from airflow_phi_guard.cli import EXIT_REFUSED, main

    monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", KEY.decode())
    policy = tmp_path / "policy.yaml"
    policy.write_text(EXPERT)
    recipients = tmp_path / "recipients.yaml"
    recipients.write_text(registry().model_dump_json())
    output = tmp_path / "out" / "governed.parquet"

    status = main(
        [
            "apply",
            "--policy", str(policy),
            "--input", str(_source(tmp_path)),
            "--output", str(output),
            "--consent", str(_consent(tmp_path)),
            "--as-of", AS_OF.isoformat(),
            "--recipients", str(recipients),
        ]
    )  # fmt: skip

    assert status == EXIT_REFUSED
    assert not output.exists()
    assert "internal-ml-platform has no business associate agreement" in capsys.readouterr().err
