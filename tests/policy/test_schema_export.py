"""The policy JSON Schema export: the committed file matches the models, every shipped and sample policy
validates against it, and what the loader refuses for an unknown key or a wrong type the schema refuses.

An editor validates what it reads as YAML 1.2, where an unquoted ``2026-01-15`` is text, so the YAML is
turned into JSON data the way an editor sees it: dates as their ISO text, keys as written.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError

from airflow_phi_guard.cli import main
from airflow_phi_guard.exceptions import PolicyError
from airflow_phi_guard.phi.inventory import ScanReport, decide_column
from airflow_phi_guard.policy.draft import draft_policy
from airflow_phi_guard.policy.loader import parse_policy
from airflow_phi_guard.policy.schema import (
    SCHEMA_DIALECT,
    policy_json_schema,
    policy_schema_text,
    schema_drift,
    shipped_schema_path,
)
from airflow_phi_guard.yaml_documents import to_python
from tests import cli_fixtures
from tests.conftest import MINIMAL_POLICY, REPO
from tests.lineage import conftest as lineage_fixtures

COMMITTED = REPO / "src" / "airflow_phi_guard" / "policy" / "schema" / "policy.schema.json"


def _readme_policy() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A policy") :]
    return section[section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", 10)]


#: The sample policies of the test fixtures and the README, by where they live.
SAMPLE_POLICIES = {
    "tests/conftest.py MINIMAL_POLICY": MINIMAL_POLICY,
    "tests/cli_fixtures.py POLICY": cli_fixtures.POLICY,
    "tests/lineage/conftest.py POLICY_TEXT": lineage_fixtures.POLICY_TEXT,
    "README.md A policy": _readme_policy(),
}


def _editor_view(text: str) -> Any:
    """The policy as an editor's YAML language server validates it: JSON data, dates as ISO text."""
    data, _ = to_python(yaml.compose(text, Loader=yaml.SafeLoader), "<policy>", PolicyError)
    return json.loads(json.dumps(data, default=_iso))


def _iso(value: object) -> str:
    if isinstance(value, datetime.date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _errors(validator: Draft202012Validator, text: str) -> list[SchemaError]:
    return list(validator.iter_errors(_editor_view(text)))


def _all(errors: list[SchemaError]) -> Iterator[SchemaError]:
    for error in errors:
        yield error
        yield from _all(list(error.context or ()))


def _refuses_at(errors: list[SchemaError], key: str) -> bool:
    """Whether one of the errors (or of their anyOf branches) is about the dotted ``key``."""
    path = tuple(key.split("."))
    for error in _all(errors):
        at = tuple(str(part) for part in error.absolute_path)
        if at == path:
            return True
        # an unknown key is reported on the object that holds it
        if error.validator == "additionalProperties" and at == path[:-1] and repr(path[-1]) in error.message:
            return True
    return False


class TestTheCommittedFile:
    def test_it_matches_the_models(self):
        # The drift test: a model changed without `phi-guard policy schema --output` fails here.
        assert schema_drift(COMMITTED) == []

    def test_it_is_the_file_the_package_ships(self):
        assert shipped_schema_path().resolve() == COMMITTED.resolve()

    def test_it_declares_draft_2020_12_and_its_published_place(self):
        schema = json.loads(COMMITTED.read_text(encoding="utf-8"))

        assert schema["$schema"] == SCHEMA_DIALECT == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith("/src/airflow_phi_guard/policy/schema/policy.schema.json")
        Draft202012Validator.check_schema(schema)  # a valid schema by the 2020-12 meta-schema

    def test_it_is_what_the_export_writes(self):
        assert COMMITTED.read_text(encoding="utf-8") == policy_schema_text()


class TestDrift:
    @pytest.fixture
    def exported(self) -> dict[str, Any]:
        return policy_json_schema()

    def _written(self, tmp_path: Path, document: object) -> Path:
        path = tmp_path / "policy.schema.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        return path

    def test_a_definition_that_lost_a_key_is_drift(self, tmp_path, exported):
        del exported["$defs"]["ExpertDetermination"]["properties"]["expires"]
        assert schema_drift(self._written(tmp_path, exported)) == [
            f"{tmp_path / 'policy.schema.json'}: definition ExpertDetermination differs from the policy "
            "models' export"
        ]

    def test_a_missing_definition_and_a_changed_top_level_are_drift(self, tmp_path, exported):
        del exported["$defs"]["Treatment"]
        exported["required"] = ["name"]
        drift = schema_drift(self._written(tmp_path, exported))
        assert [line.split(": ", 1)[1] for line in drift] == [
            "'required' differs from the policy models' export",
            "definition Treatment is missing",
        ]

    def test_a_file_that_is_no_json_is_drift(self, tmp_path):
        path = tmp_path / "policy.schema.json"
        path.write_text("{not json", encoding="utf-8")
        (line,) = schema_drift(path)
        assert "not JSON" in line

    def test_layout_is_no_drift(self, tmp_path, exported):
        path = tmp_path / "policy.schema.json"
        path.write_text(json.dumps(exported, sort_keys=True), encoding="utf-8")
        assert schema_drift(path) == []


@pytest.mark.parametrize(
    "path", sorted((REPO / "dags" / "policies").glob("*.yaml")), ids=lambda path: path.name
)
def test_every_example_policy_validates(validator, path):
    text = path.read_text(encoding="utf-8")
    parse_policy(text, str(path))  # the loader takes it too
    assert _errors(validator, text) == []


def test_there_are_example_policies():
    assert len(list((REPO / "dags" / "policies").glob("*.yaml"))) >= 2


@pytest.mark.parametrize("text", list(SAMPLE_POLICIES.values()), ids=list(SAMPLE_POLICIES))
def test_every_sample_policy_of_the_fixtures_validates(validator, text):
    parse_policy(text)
    assert _errors(validator, text) == []


#: The allowlist of the minimal policy, to the end of the text.
COLUMNS = MINIMAL_POLICY[MINIMAL_POLICY.index("columns:\n") :]

# Each row: an edit to the minimal policy (text replaced, replacement) and the key the loader names. The
# loader refuses each; the schema must refuse it at the same key.
REFUSED = [
    # -- unknown keys, at every level
    ("recipient: internal-ml-platform\n", "recipient: internal-ml-platform\nowner: someone\n", "owner"),
    ('version: "1"}', 'version: "1", id: 7}', "model.id"),
    ("  bases: [", "  basis: x\n  bases: [", "consent.basis"),
    ("  bases: [", "  subject_ids: {case: fold}\n  bases: [", "consent.subject_ids.case"),
    ("  method: expert", "  zip_vintage: census-2020\n  method: expert", "deidentification.zip_vintage"),
    (
        "    report: ED-TEST-1\n",
        "    report: ED-TEST-1\n    reviewer: someone\n",
        "deidentification.expert_determination.reviewer",
    ),
    ('justification: "not needed"}', 'justification: "not needed", reason: x}', "columns.SSN.reason"),
    (
        '{treatment: age, as: AGE, justification: "predictor"}',
        '{treatment: age, as: AGE, dates: {format: iso-8601}, justification: "predictor"}',
        "columns.BIRTHDATE.dates.format",
    ),
    # -- wrong types
    ("version: 1\n", "version: one\n", "version"),
    ("version: 1\n", "version: 1.5\n", "version"),
    ("version: 1\n", "version: 0\n", "version"),  # below the least version
    ('model: {name: readmission-risk, version: "1"}', "model: readmission-risk", "model"),
    ("recipient: internal-ml-platform", "recipient: [a, b]", "recipient"),
    ("subject: PATIENT", "subject: 7", "subject"),
    ("subject: PATIENT\n", "subject: PATIENT\nundeclared: ignore\n", "undeclared"),
    ("  bases: [research-authorization, irb-waiver]", "  bases: research-authorization", "consent.bases"),
    ("[research-authorization, irb-waiver]", "[research-authorization, 3]", "consent.bases.1"),
    ("  method: expert-determination", "  method: expert", "deidentification.method"),
    (
        "    determined: 2000-01-01",
        "    determined: yesterday",
        "deidentification.expert_determination.determined",
    ),
    (
        '    expert: "A. Expert, PhD (biostatistics)"',
        '    expert: ""',
        "deidentification.expert_determination.expert",
    ),
    (
        "    expires: 2099-01-01\n",
        "    expires: 2099-01-01\n  quasi_identifiers: [AGE]\n  k_min: five\n",
        "deidentification.k_min",
    ),
    ("{treatment: zip3,", "{treatment: 3,", "columns.ZIP.treatment"),
    ('justification: "region"', 'justification: ""', "columns.ZIP.justification"),
    ('justification: "region"', "justification: null", "columns.ZIP.justification"),
    (
        '{treatment: zip3, justification: "region"}',
        '{treatment: state, prefixes: maybe, justification: "region"}',
        "columns.ZIP.prefixes",
    ),
    (
        '{treatment: age, as: AGE, justification: "predictor"}',
        '{treatment: age-band, bands: [0, eighteen], justification: "predictor"}',
        "columns.BIRTHDATE.bands.1",
    ),
    (COLUMNS, "columns: [PATIENT, SSN]\n", "columns"),
]


@pytest.mark.parametrize(("old", "new", "key"), REFUSED, ids=[f"{row[2]}:{row[1][:30]}" for row in REFUSED])
def test_what_the_loader_refuses_the_schema_refuses(validator, old, new, key):
    assert MINIMAL_POLICY.count(old) == 1, old
    text = MINIMAL_POLICY.replace(old, new)

    with pytest.raises(PolicyError) as refused:
        parse_policy(text, "policy.yaml")
    assert refused.value.key == key

    errors = _errors(validator, text)
    assert _refuses_at(errors, key), [f"{list(error.absolute_path)}: {error.message}" for error in errors]


class TestTheDraft:
    """A draft of ``phi-guard policy init`` that claims expert determination is refused by the schema too
    until its determination is written, and validates once it is."""

    @pytest.fixture
    def text(self) -> str:
        schema = pa.schema([("PATIENT", pa.string()), ("GENDER", pa.string())])
        columns = [decide_column(field.name, rows_scanned=1, values_scanned=1, hits=()) for field in schema]
        report = ScanReport(input="/data/extract.parquet", rows_scanned=1, sample_rows=None, columns=columns)
        draft = draft_policy(report, schema)
        return draft.to_yaml().replace('justification: ""', 'justification: "written by the reviewer"')

    def test_its_empty_determination_is_refused(self, validator, text):
        errors = _errors(validator, text)
        for entry in ("expert", "determined", "report", "expires"):
            assert _refuses_at(errors, f"deidentification.expert_determination.{entry}"), entry

    def test_written_it_validates(self, validator, text):
        written = {
            "expert": '"A. Expert"',
            "determined": "2026-01-15",
            "report": "ED-1",
            "expires": "2099-01-01",
        }
        for entry, value in written.items():
            text = text.replace(f'    {entry}: ""\n', f"    {entry}: {value}\n")
        parse_policy(text)
        assert _errors(validator, text) == []


class TestTheCommand:
    def test_it_prints_the_export(self, capsys):
        assert main(["policy", "schema"]) == 0
        assert json.loads(capsys.readouterr().out) == policy_json_schema()

    def test_it_writes_a_file_that_checks(self, tmp_path, capsys):
        output = tmp_path / "schemas" / "policy.schema.json"

        assert main(["policy", "schema", "--output", str(output)]) == 0
        assert output.read_text(encoding="utf-8") == policy_schema_text()
        assert main(["policy", "schema", "--check", str(output)]) == 0
        assert "matches the policy models" in capsys.readouterr().out

    def test_the_committed_file_checks(self):
        assert main(["policy", "schema", "--check", str(COMMITTED)]) == 0

    def test_a_drifted_file_fails_the_check_and_says_how_to_fix_it(self, tmp_path, capsys):
        drifted = policy_json_schema()
        drifted["$defs"]["Treatment"]["enum"].remove("zip3")
        path = tmp_path / "policy.schema.json"
        path.write_text(json.dumps(drifted), encoding="utf-8")

        assert main(["policy", "schema", "--check", str(path)]) == 1
        err = capsys.readouterr().err
        assert "drifted:" in err and "definition Treatment" in err
        assert f"phi-guard policy schema --output {path}" in err

    def test_a_missing_file_fails_the_check(self, tmp_path, capsys):
        assert main(["policy", "schema", "--check", str(tmp_path / "none.json")]) == 1
        assert "none.json" in capsys.readouterr().err

    def test_output_and_check_exclude_each_other(self, tmp_path):
        arguments = ["policy", "schema", "--output", str(tmp_path / "a.json"), "--check", str(COMMITTED)]
        assert main(arguments) == 2


def test_the_docs_reference_renders_the_export():
    path = REPO / "docs" / "_ext" / "phi_guard_reference.py"
    spec = importlib.util.spec_from_file_location("phi_guard_reference_under_test", path)
    assert spec is not None and spec.loader is not None
    extension = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extension)

    assert extension.policy_schema() == policy_json_schema()
    assert json.dumps(policy_json_schema(), indent=2) in extension.policy_reference()


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        # Rules of the models' validators, which no JSON Schema keyword states: the loader alone refuses.
        ("subject: PATIENT", "subject: MRN", None),  # the subject undeclared: a rule of the whole policy
        ("[research-authorization, irb-waiver]", "[treatment-consent]", "consent.bases"),
        ("purpose: model-training", "purpose: selling-data", "purpose"),
        ("  method: expert-determination", "  method: safe-harbor", "deidentification"),
    ],
)
def test_the_schema_leaves_the_validators_rules_to_the_loader(validator, old, new, key):
    # The module docstring of policy.schema says so; this holds it to that: the schema takes these whole.
    text = MINIMAL_POLICY.replace(old, new)

    with pytest.raises(PolicyError) as refused:
        parse_policy(text)

    assert refused.value.key == key
    assert _errors(validator, text) == []
