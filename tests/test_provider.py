"""The package is an Airflow provider: its entry point loads, names real modules, and Airflow lists it."""

from __future__ import annotations

import csv
import importlib
import inspect
import io
import json
import os
import re
import subprocess
import sys
import uuid
from importlib.metadata import entry_points
from pathlib import Path

import jsonschema
import pytest
from airflow.sdk import BaseHook, BaseOperatorLink

import airflow_phi_guard
from airflow_phi_guard.consent.sql import SqlConsentSource
from airflow_phi_guard.operators.hooks import ConsentRegistryHook
from tests.conftest import REPO, PostgresSchema
from tests.engine.test_executor import CONSENT
from tests.operators.conftest import make_policy_operator
from tests.operators.test_consent_hook import COLUMNS

AIRFLOW_PACKAGE = Path(importlib.import_module("airflow").__file__).parent
OPERATORS_SOURCE = REPO / "src" / "airflow_phi_guard" / "operators"

#: The connection types the issue asks for (consent registry, pseudonym key, recipient registry), plus
#: the subject manifest key and the date shift key, which the operators read too.
CONNECTION_TYPES = {
    "phi_guard_consent_registry": "ConsentRegistryHook",
    "phi_guard_pseudonym_key": "PseudonymKeyHook",
    "phi_guard_recipient_registry": "RecipientRegistryHook",
    "phi_guard_manifest_key": "ManifestKeyHook",
    "phi_guard_date_shift_key": "DateShiftKeyHook",
}
KEY_CONNECTION_TYPES = ("phi_guard_pseudonym_key", "phi_guard_manifest_key", "phi_guard_date_shift_key")

#: Every operator that reads each option of [phi_guard] (the cluster policy reads recipient_registry too):
#: an option's description must name all of them, or a deployment cannot tell what setting it changes.
OPTION_READERS = {
    "policy_folder": {"PhiPolicyOperator"},
    "trail": {"PhiPolicyOperator", "RecipientGateOperator"},
    "recipient_registry": {"RecipientGateOperator", "BatchInferenceOperator"},
}
OPERATOR_NAMES = {"PhiPolicyOperator", "RecipientGateOperator", "BatchInferenceOperator"}
CANARY_PASSWORD = "CANARY-REGISTRY-PASSWORD-5151"


@pytest.fixture(scope="module")
def info() -> dict:
    """The provider info exactly as Airflow's provider manager gets it: through the entry point."""
    (entry,) = [
        point
        for point in entry_points(group="apache_airflow_provider")
        if point.value.startswith("airflow_phi_guard")
    ]
    return entry.load()()


def _airflow(tmp_path: Path, *arguments: str) -> str:
    """Run the ``airflow`` command of this environment under an empty AIRFLOW_HOME; its standard output."""
    airflow = Path(sys.executable).with_name("airflow")
    environment = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    completed = subprocess.run(
        [str(airflow), *arguments], env=environment, capture_output=True, text=True, timeout=180, check=True
    )
    return completed.stdout


def _json_output(stdout: str) -> list[dict]:
    return json.loads(stdout[stdout.index("[") :])


class TestProviderInfo:
    def test_the_entry_point_loads_and_every_named_module_imports(self, info: dict):
        assert info["package-name"] == "airflow-phi-guard"
        assert info["versions"] == [airflow_phi_guard.__version__]
        modules = [
            module
            for section in ("operators", "hooks")
            for group in info[section]
            for module in group["python-modules"]
        ]
        for module in modules:
            importlib.import_module(module)

    def test_it_is_valid_for_airflow(self, info: dict):
        schema = json.loads((AIRFLOW_PACKAGE / "provider_info.schema.json").read_text())
        jsonschema.validate(info, schema)
        # the connection forms follow provider.yaml's stricter definition of a connection type
        yaml_schema = json.loads((AIRFLOW_PACKAGE / "provider.yaml.schema.json").read_text())
        connection_type = yaml_schema["properties"]["connection-types"]["items"]
        for entry in info["connection-types"]:
            jsonschema.validate(entry, connection_type)

    def test_the_connection_types_are_those_of_their_hooks(self, info: dict):
        listed = {entry["connection-type"]: entry for entry in info["connection-types"]}

        assert set(listed) == set(CONNECTION_TYPES)
        for connection_type, entry in listed.items():
            module, _, name = entry["hook-class-name"].rpartition(".")
            assert name == CONNECTION_TYPES[connection_type]
            hook = getattr(importlib.import_module(module), name)
            assert issubclass(hook, BaseHook)
            # Airflow maps a connection to its hook by conn_type, and builds the hook with conn_name_attr
            assert hook.conn_type == connection_type
            assert re.fullmatch(r"[a-z_]+_conn_id", hook.conn_name_attr)
            # one display name, whether Airflow reads it from here or from the class
            assert entry["hook-name"] == hook.hook_name
            assert "ui-field-behaviour" in entry

    def test_a_key_connection_shows_only_its_password(self, info: dict):
        listed = {entry["connection-type"]: entry for entry in info["connection-types"]}
        for connection_type in KEY_CONNECTION_TYPES:
            behaviour = listed[connection_type]["ui-field-behaviour"]
            assert set(behaviour["hidden-fields"]) == {"host", "port", "login", "schema", "extra"}
            assert "password" in behaviour["relabeling"]

    def test_every_extra_link_is_an_operator_link(self, info: dict):
        assert info["extra-links"] == ["airflow_phi_guard.operators.quality.DataDocsLink"]
        for path in info["extra-links"]:
            module, _, name = path.rpartition(".")
            assert issubclass(getattr(importlib.import_module(module), name), BaseOperatorLink)

    def test_every_configuration_option_is_documented_and_read_by_an_operator(self, info: dict):
        section = info["config"]["phi_guard"]
        sources = "\n".join(path.read_text() for path in OPERATORS_SOURCE.glob("*.py"))

        assert section["description"]
        assert set(section["options"]) == {"policy_folder", "trail", "recipient_registry"}
        for name, option in section["options"].items():
            assert option["version_added"] == "0.1.0"
            assert option["type"] == "string" and option["description"] and option["example"]
            assert option["default"] == ""
            # an option no operator reads would promise a setting that changes nothing
            assert re.search(rf'conf\.get\(\s*"phi_guard",\s*"{name}"', sources), name

    def test_each_option_names_the_operators_that_read_it(self, info: dict):
        options = info["config"]["phi_guard"]["options"]
        assert set(options) == set(OPTION_READERS)
        for name, readers in OPTION_READERS.items():
            named = {operator for operator in OPERATOR_NAMES if operator in options[name]["description"]}
            assert named == readers, name

    def test_the_default_date_shift_connection_is_of_the_declared_type(self, info: dict):
        from airflow_phi_guard.operators.hooks import DateShiftKeyHook
        from airflow_phi_guard.operators.policy import PhiPolicyOperator

        default = inspect.signature(PhiPolicyOperator.__init__).parameters["date_shift_key_conn_id"].default
        assert default == DateShiftKeyHook.default_conn_name
        assert DateShiftKeyHook.conn_type in {entry["connection-type"] for entry in info["connection-types"]}

    def test_it_imports_nothing_heavy(self):
        # Airflow's provider manager calls it in every process; it must stay a literal.
        probe = (
            "import sys, airflow_phi_guard; airflow_phi_guard.get_provider_info(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('airflow', 'pyarrow', 'great_expectations', 'pandas', 'pydantic', 'openlineage')))"
        )
        completed = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
        )
        assert completed.stdout.strip() == "[]"


class TestAirflowShowsTheProvider:
    def test_providers_list(self, tmp_path: Path):
        providers = {entry["package_name"]: entry for entry in _json_output(
            _airflow(tmp_path, "providers", "list", "--output", "json")
        )}  # fmt: skip
        assert providers["airflow-phi-guard"]["version"] == airflow_phi_guard.__version__

    def test_config_list_shows_the_section_with_descriptions(self, tmp_path: Path):
        listed = _airflow(
            tmp_path, "config", "list", "--section", "phi_guard", "--include-descriptions", "--defaults"
        )
        assert "[phi_guard]" in listed
        for name in ("policy_folder", "trail", "recipient_registry"):
            assert f"AIRFLOW__PHI_GUARD__{name.upper()}" in listed
        assert "relative policy_path of PhiPolicyOperator" in listed

    def test_connection_forms_and_extra_links(self, tmp_path: Path):
        behaviours = _json_output(_airflow(tmp_path, "providers", "behaviours", "--output", "json"))
        links = _json_output(_airflow(tmp_path, "providers", "links", "--output", "json"))

        assert set(CONNECTION_TYPES) <= {entry["field_behaviours"] for entry in behaviours}
        assert {"extra_link_class_name": "airflow_phi_guard.operators.quality.DataDocsLink"} in links


class TestTheConfigurationIsRead:
    @pytest.fixture
    def key_connection(self, monkeypatch: pytest.MonkeyPatch) -> str:
        monkeypatch.setenv(
            "AIRFLOW_CONN_PHI_GUARD_TEST_KEY", json.dumps({"conn_type": "generic", "password": "k" * 32})
        )
        return "phi_guard_test_key"

    def test_policy_folder_and_trail(self, tmp_path: Path, key_connection: str, monkeypatch):
        operator = make_policy_operator(tmp_path, key_connection)
        operator.policy_path = Path(operator.policy_path).name  # relative: found only through the option
        trail = tmp_path / "audit-trail.jsonl"
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)  # not where the policy is
        monkeypatch.setenv("AIRFLOW__PHI_GUARD__POLICY_FOLDER", str(tmp_path))
        monkeypatch.setenv("AIRFLOW__PHI_GUARD__TRAIL", str(trail))

        summary = operator.execute(context={})

        assert summary["verdict"] == "published"
        (record,) = [json.loads(line) for line in trail.read_text().splitlines()]
        assert record["task_id"] == "govern"

    def test_without_the_option_a_relative_policy_is_not_found(
        self, tmp_path: Path, key_connection: str, monkeypatch
    ):
        from airflow.sdk.exceptions import AirflowFailException

        operator = make_policy_operator(tmp_path, key_connection)
        operator.policy_path = Path(operator.policy_path).name
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        monkeypatch.delenv("AIRFLOW__PHI_GUARD__POLICY_FOLDER", raising=False)

        with pytest.raises(AirflowFailException, match="bad policy"):
            operator.execute(context={})
        assert not Path(operator.output_path).exists()


class TestDateShiftKeyHook:
    def test_the_key_is_the_password_of_a_connection_of_its_type(self, monkeypatch: pytest.MonkeyPatch):
        from airflow_phi_guard.operators.hooks import DateShiftKeyHook

        connection = {"conn_type": "phi_guard_date_shift_key", "password": CANARY_PASSWORD}
        monkeypatch.setenv("AIRFLOW_CONN_PHI_GUARD_TEST_SHIFT_KEY", json.dumps(connection))

        assert DateShiftKeyHook("phi_guard_test_shift_key").get_key() == CANARY_PASSWORD.encode()

    def test_a_missing_connection_is_no_key(self, monkeypatch: pytest.MonkeyPatch):
        from airflow_phi_guard.operators.hooks import DateShiftKeyHook

        monkeypatch.delenv("AIRFLOW_CONN_PHI_GUARD_TEST_NO_SHIFT_KEY", raising=False)

        # no key: the engine then refuses a policy that shifts dates (tests/operators/test_policy_operator.py)
        assert DateShiftKeyHook("phi_guard_test_no_shift_key").get_key() is None

    def test_the_policy_operator_reads_the_key_through_it(self, monkeypatch: pytest.MonkeyPatch, tmp_path):
        from airflow_phi_guard.operators.policy import PhiPolicyOperator

        connection = {"conn_type": "phi_guard_date_shift_key", "password": "d" * 32}
        monkeypatch.setenv("AIRFLOW_CONN_PHI_GUARD_TEST_SHIFT_KEY", json.dumps(connection))
        operator = PhiPolicyOperator(
            task_id="govern",
            policy_path="p.yaml",
            input_path="i",
            output_path="o",
            report_path="r",
            date_shift_key_conn_id="phi_guard_test_shift_key",
        )

        assert operator._date_shift_key() == b"d" * 32


class TestBatchInferenceReadsTheRecipientRegistryOption:
    def test_without_recipients_path_the_configured_registry_judges_the_batch(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from airflow_phi_guard.operators.inference import BatchInferenceOperator
        from tests.recipients.test_inference_gate import REGISTRY_TEXT

        registry = tmp_path / "recipients.yaml"
        registry.write_text(REGISTRY_TEXT)
        monkeypatch.setenv("AIRFLOW__PHI_GUARD__RECIPIENT_REGISTRY", str(registry))
        scored = tmp_path / "input.parquet"
        pq.write_table(pa.table({"AGE": [61, 44]}), scored)

        def score(input_path: str, output_path: str) -> int:
            pq.write_table(pa.table({"score": [0.1, 0.2]}), output_path)
            return 2

        operator = BatchInferenceOperator(
            task_id="score",
            model_name="m",
            model_version="1",
            input_path=str(scored),
            output_path=str(tmp_path / "scores.parquet"),
            trail_path=str(tmp_path / "trail.jsonl"),
            score=score,
            recipient="inference-vendor",
            run_date="2026-06-01",
        )

        operator.execute(context={})

        gate = json.loads((tmp_path / "trail.jsonl").read_text().splitlines()[0])
        # only the configured registry lists this vendor's agreement: without it the gate would refuse
        assert (gate["kind"], gate["verdict"]) == ("gate-decision", "passed")
        assert gate["details"]["agreement"] == "BAA-INF-1"


def test_a_consent_registry_connection_reads_its_postgresql_database(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str, postgres_schema: PostgresSchema
):
    rows = [
        (row["subject_id"], row["basis"], row["purposes"].split(";") if row["purposes"] else [],
         row["granted_at"], row["expires_at"] or None, row["revoked_at"] or None, row["reference"])
        for row in csv.DictReader(io.StringIO(CONSENT))
    ]  # fmt: skip
    table = postgres_schema.create_table(f"provider_{uuid.uuid4().hex[:8]}", COLUMNS, rows)
    server = re.match(
        r"postgresql\+psycopg://(?P<user>[^@:]+)@(?P<host>[^:/]+):(?P<port>\d+)/(?P<db>\w+)", postgres_url
    )
    assert server is not None, "the test server's URL has the default form"
    connection = {
        "conn_type": "phi_guard_consent_registry",
        "host": server["host"],
        "port": int(server["port"]),
        "login": server["user"],
        "password": CANARY_PASSWORD,  # trust authentication ignores it; it must not show anywhere
        "schema": server["db"],
    }
    monkeypatch.setenv("AIRFLOW_CONN_PHI_GUARD_TEST_REGISTRY", json.dumps(connection))

    source = ConsentRegistryHook("phi_guard_test_registry", table=table).get_source()

    assert isinstance(source, SqlConsentSource)
    assert source.display_name == f"postgres://{server['host']}:{server['port']}/{server['db']}.{table}"
    assert CANARY_PASSWORD not in source.display_name + repr(source)
    assert len(source.read()) == len(rows)
