"""Policy files: what parses, and what is refused with the file, the key and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_phi_guard.exceptions import PolicyError
from airflow_phi_guard.policy import (
    ConsentBasis,
    DeidentificationMethod,
    Treatment,
    UndeclaredColumns,
    Zip3Vintage,
    load_policy,
    parse_policy,
)
from tests.conftest import DEMO_POLICY, MINIMAL_POLICY


class TestPolicyConstruction:
    def test_minimal_policy_parses_with_the_documented_defaults(self):
        policy = parse_policy(MINIMAL_POLICY)

        assert policy.name == "readmission-risk"
        assert policy.model.version == "1"
        assert policy.undeclared is UndeclaredColumns.REFUSE  # refuse is the default
        assert policy.deidentification.method is DeidentificationMethod.EXPERT_DETERMINATION
        assert policy.deidentification.zip3_vintage is Zip3Vintage.CENSUS_2020  # newest vintage by default
        assert policy.consent.bases == (ConsentBasis.RESEARCH_AUTHORIZATION, ConsentBasis.IRB_WAIVER)
        assert policy.columns["BIRTHDATE"].treatment is Treatment.AGE
        assert policy.output_name("BIRTHDATE") == "AGE"  # `as` renames the output
        assert policy.output_name("ZIP") == "ZIP"
        assert policy.output_name("SSN") is None  # dropped columns have no output

    def test_the_demo_policy_parses(self):
        policy = load_policy(DEMO_POLICY)
        assert policy.subject in policy.columns

    def test_frozen(self):
        policy = parse_policy(MINIMAL_POLICY)
        with pytest.raises(Exception):  # noqa: B017, PT011 - pydantic raises its own frozen error
            policy.name = "other"

    def test_digest_ignores_layout_and_comments_but_not_content(self):
        policy = parse_policy(MINIMAL_POLICY)
        relaid = parse_policy("# a comment\n" + MINIMAL_POLICY.replace("version: 1", "version:    1"))
        changed = parse_policy(MINIMAL_POLICY.replace('justification: "region"', 'justification: "area"'))

        assert policy.digest == relaid.digest
        assert policy.digest != changed.digest
        assert policy.digest.startswith("sha256:") and len(policy.digest) == len("sha256:") + 64

    def test_a_column_named_like_a_yaml_boolean_stays_text(self):
        policy = parse_policy(MINIMAL_POLICY + '  NO:        {treatment: keep, justification: "flag"}\n')
        assert "NO" in policy.columns


def _line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), start=1) if needle in line)


# Each row: an edit to the minimal policy, the key the error must name, and the text on the offending line.
REFUSED_POLICIES = [
    # an unknown key anywhere is refused, not ignored
    (
        '  SSN:       {treatment: drop, justification: "not needed"}',
        '  SSN:       {treatment: drop, justification: "not needed", reason: x}',
        "columns.SSN.reason",
        "SSN:",
    ),
    ("recipient: internal-ml-platform", "recipient: internal-ml-platform\nowner: someone", "owner", "owner:"),
    # an unknown treatment
    ("{treatment: zip3,", "{treatment: zip5,", "columns.ZIP.treatment", "ZIP:"),
    # an unknown basis
    (
        "[research-authorization, irb-waiver]",
        "[research-authorization, verbal-ok]",
        "consent.bases.1",
        "bases:",
    ),
    # consent to treatment is no basis for training (164.506(b))
    ("[research-authorization, irb-waiver]", "[treatment-consent]", "consent.bases", "bases:"),
    # every allowlist entry needs a justification, and a blank one does not count
    (
        '{treatment: drop, justification: "not needed"}',
        "{treatment: drop}",
        "columns.SSN.justification",
        "SSN:",
    ),
    (
        '{treatment: drop, justification: "not needed"}',
        '{treatment: drop, justification: "  "}',
        "columns.SSN.justification",
        "SSN:",
    ),
    # an unknown method and vintage
    ("method: expert-determination", "method: anonymized", "deidentification.method", "method:"),
    (
        "method: expert-determination",
        "method: expert-determination\n  zip3_vintage: census-1990",
        "deidentification.zip3_vintage",
        "zip3_vintage:",
    ),
    # the subject column must be declared
    ("subject: PATIENT", "subject: PERSON_ID", None, None),
    # a key given twice is an error, not a silent overwrite
    (
        "recipient: internal-ml-platform",
        "recipient: internal-ml-platform\nrecipient: vendor",
        "recipient",
        "recipient: vendor",
    ),
]


@pytest.mark.parametrize(("old", "new", "key", "line_text"), REFUSED_POLICIES)
def test_bad_policy_names_file_key_and_line(
    tmp_path: Path, old: str, new: str, key: str | None, line_text: str | None
):
    assert old in MINIMAL_POLICY
    text = MINIMAL_POLICY.replace(old, new, 1)
    path = tmp_path / "bad.yaml"
    path.write_text(text)

    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    error = caught.value
    assert error.file == str(path)
    assert str(path) in str(error)
    if key is not None:
        assert error.key == key
        assert error.line == _line_of(text, line_text)
        assert f":{error.line}:" in str(error)


def test_unreadable_and_not_yaml_files_are_policy_errors(tmp_path: Path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML") as caught:
        load_policy(broken)
    assert caught.value.line is not None


def test_two_columns_written_under_one_name_are_refused():
    text = MINIMAL_POLICY.replace(
        '{treatment: zip3, justification: "region"}', '{treatment: zip3, as: AGE, justification: "region"}'
    )
    with pytest.raises(PolicyError, match="AGE"):
        parse_policy(text)


def test_policy_error_is_a_value_error():
    assert issubclass(PolicyError, ValueError)


def test_the_readme_sample_policy_loads_and_claims_what_it_shows():
    """The policy of the README's "A policy" section is a policy, not a sketch of one."""
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A policy") :]
    sample = section[section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", 10)]

    policy = parse_policy(sample)

    assert policy.deidentification.method is DeidentificationMethod.SAFE_HARBOR
    assert policy.deidentification.risk_thresholds.k_min == 5
    assert policy.columns["PATIENT"].namespace == "patient"
