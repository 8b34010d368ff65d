"""``phi-guard assess``: the four checks of a model's AI risk assessment, from lineage, trail and registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_phi_guard.cli import EXIT_PUBLISHED, EXIT_REFUSED, main
from airflow_phi_guard.trail.inference import inference_audit
from tests.cli_fixtures import MODEL_NAME, MODEL_VERSION, PSEUDONYM_KEY, Workspace, canaries, source_rows

REGISTRY = """\
recipients:
  internal-ml-platform:
    name: The hospital's ML platform
    destinations: [s3://hospital-ml/]
    region: us-east-1
    baa: {id: BAA-T-1, signed: 2025-12-01, effective: 2026-01-01, expires: 2028-01-01,
          permitted_uses: [model-training], data: phi}
"""

#: The same recipient, without an agreement.
REGISTRY_WITHOUT_BAA = """\
recipients:
  internal-ml-platform:
    name: The hospital's ML platform
    destinations: [s3://hospital-ml/]
    region: us-east-1
"""

#: An agreement that ended before the run's consent date (2026-12-01).
REGISTRY_LAPSED = REGISTRY.replace("expires: 2028-01-01", "expires: 2026-06-01")


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.delenv("OPENLINEAGE_DISABLED", raising=False)


@pytest.fixture
def governed(tmp_path: Path) -> Workspace:
    """A published run of the expert determination policy (output still PHI), and one logged batch."""
    workspace = Workspace(tmp_path)
    source = workspace.write()
    trail = tmp_path / "audit-trail.jsonl"
    assert main(workspace.apply_arguments(source, trail=str(trail))) == EXIT_PUBLISHED
    with inference_audit(MODEL_NAME, MODEL_VERSION, workspace.output, trail=trail):
        pass
    return workspace


def _assess(workspace: Workspace, capsys, *extra: str, registry: str | None = REGISTRY, trail: bool = True):
    arguments = ["assess", "--events", str(workspace.events), "--model", f"{MODEL_NAME}:{MODEL_VERSION}"]
    if trail:
        arguments += ["--trail", str(workspace.root / "audit-trail.jsonl")]
    if registry is not None:
        path = workspace.root / "recipients.yaml"
        path.write_text(registry, encoding="utf-8")
        arguments += ["--recipients", str(path)]
    capsys.readouterr()
    code = main([*arguments, "--format", "json", *extra])
    return code, json.loads(capsys.readouterr().out)


def _checks(assessment: dict) -> dict[str, bool]:
    return {check["name"]: check["passed"] for check in assessment["checks"]}


def test_the_four_checks_of_a_model_trained_on_phi_under_a_baa(governed, capsys):
    code, assessment = _assess(governed, capsys)

    # BAA in force at 2026-12-01 for model-training and PHI; the expert determination is recorded; one
    # batch is logged in an intact trail; but the policy declares no quasi-identifiers, so no risk was
    # measured: the AI-specific risk assessment is incomplete.
    assert _checks(assessment) == {
        "baa": True,
        "deidentification": True,
        "inference-logging": True,
        "risk-assessment": False,
    }
    assert code == EXIT_REFUSED
    assert {(column["column"], column["treatment"]) for column in assessment["phi_reached"]} == {
        ("PATIENT", "pseudonymize"),
        ("BIRTHDATE", "age"),
        ("ZIP", "zip3"),
        ("START", "year"),
    }
    assert assessment["recipients"][0]["baa"] == "BAA-T-1"
    assert assessment["recipients"][0]["needed"] is True
    assert assessment["inference"]["batches"] == 1


@pytest.mark.parametrize(
    ("registry", "problem"),
    [
        # 164.502(e): PHI to a business associate needs a BAA in force
        (None, "no recipient registry"),
        (REGISTRY_WITHOUT_BAA, "has no BAA"),
        (REGISTRY_LAPSED, "not in force"),
    ],
)
def test_phi_without_a_baa_in_force_fails_the_baa_check(governed, capsys, registry, problem):
    _, assessment = _assess(governed, capsys, registry=registry)

    assert _checks(assessment)["baa"] is False
    high = [finding for finding in assessment["findings"] if finding["check"] == "baa"]
    assert high and high[0]["severity"] == "high" and problem in high[0]["message"]
    assert "internal-ml-platform" in high[0]["message"]
    # ranked: every high finding comes before every medium and low one
    ranks = [{"high": 0, "medium": 1, "low": 2}[finding["severity"]] for finding in assessment["findings"]]
    assert ranks == sorted(ranks)


def test_without_a_trail_inference_logging_fails(governed, capsys):
    _, assessment = _assess(governed, capsys, trail=False)

    assert _checks(assessment)["inference-logging"] is False


def test_a_tampered_trail_fails_inference_logging(governed, capsys):
    trail = governed.root / "audit-trail.jsonl"
    lines = trail.read_text(encoding="utf-8").splitlines()
    trail.write_text(lines[1] + "\n", encoding="utf-8")  # the first record deleted

    _, assessment = _assess(governed, capsys)

    assert _checks(assessment)["inference-logging"] is False


@pytest.mark.parametrize("output_format", ["text", "json", "html"])
def test_no_value_in_any_format(governed, capsys, output_format):
    registry = governed.root / "recipients.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    capsys.readouterr()
    main(
        [
            "assess",
            "--events",
            str(governed.events),
            "--model",
            MODEL_NAME,
            "--trail",
            str(governed.root / "audit-trail.jsonl"),
            "--recipients",
            str(registry),
            "--format",
            output_format,
        ]
    )
    printed = capsys.readouterr()

    assert "baa" in printed.out
    assert {value for value in canaries(source_rows()) if value in printed.out + printed.err} == set()
