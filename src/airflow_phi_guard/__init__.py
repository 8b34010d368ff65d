"""airflow-phi-guard: minimum-necessary, consent-checked, de-identified training sets, with audit lineage."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airflow-phi-guard")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

_INTEGRATION = "PHI Guard"
_HOOKS = "airflow_phi_guard.operators.hooks"

# The standard connection fields a key connection does not use: only the password holds the key.
_KEY_FIELDS_HIDDEN = ["host", "port", "login", "schema", "extra"]


def get_provider_info() -> dict[str, object]:
    """Describe this package to Airflow's provider manager (the ``apache_airflow_provider`` entry point).

    Airflow calls it in every process that lists providers, connection types or configuration, so it
    builds a literal and imports nothing. Connection forms are declared here (``ui-field-behaviour``),
    the way Airflow 3.2 and later read them without importing the hooks.
    """
    return {
        "package-name": "airflow-phi-guard",
        "name": _INTEGRATION,
        "description": "Enforces HIPAA minimum-necessary policies, consent and de-identification on training "
        "datasets, with Great Expectations checks and OpenLineage audit records.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://github.com/airflow-phi-guard/airflow-phi-guard",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_phi_guard.operators.policy",
                    "airflow_phi_guard.operators.quality",
                    "airflow_phi_guard.operators.scan",
                    "airflow_phi_guard.operators.recipients",
                    "airflow_phi_guard.operators.inference",
                ],
            }
        ],
        "hooks": [{"integration-name": _INTEGRATION, "python-modules": [_HOOKS]}],
        "connection-types": _connection_types(),
        "extra-links": ["airflow_phi_guard.operators.quality.DataDocsLink"],
        "config": {"phi_guard": _configuration()},
    }


def _connection_types() -> list[dict[str, object]]:
    """The connection types of the hooks, with the form Airflow's UI shows for each."""
    # Known shortcoming: Airflow 3.0 and 3.1 read connection forms only from hook classmethods
    # (get_ui_field_behaviour), which 3.2 deprecated, so there they show the standard fields unnamed.
    # Adding the classmethods as well would fix it at the price of a deprecation warning on newer Airflow.
    return [
        {
            "connection-type": "phi_guard_pseudonym_key",
            "hook-class-name": f"{_HOOKS}.PseudonymKeyHook",
            "hook-name": "PHI Guard pseudonym key",
            "ui-field-behaviour": {
                "hidden-fields": _KEY_FIELDS_HIDDEN,
                "relabeling": {"password": "Pseudonym key"},
                "placeholders": {
                    "description": "HMAC key of the pseudonymize treatment (at least 32 bytes); only its "
                    "fingerprint is ever recorded",
                },
            },
        },
        {
            "connection-type": "phi_guard_date_shift_key",
            "hook-class-name": f"{_HOOKS}.DateShiftKeyHook",
            "hook-name": "PHI Guard date shift key",
            "ui-field-behaviour": {
                "hidden-fields": _KEY_FIELDS_HIDDEN,
                "relabeling": {"password": "Date shift key"},
                "placeholders": {
                    "description": "key of the date-shift treatment's per-subject shifts (at least 32 "
                    "bytes); only its fingerprint is ever recorded",
                },
            },
        },
        {
            "connection-type": "phi_guard_manifest_key",
            "hook-class-name": f"{_HOOKS}.ManifestKeyHook",
            "hook-name": "PHI Guard subject manifest key",
            "ui-field-behaviour": {
                "hidden-fields": _KEY_FIELDS_HIDDEN,
                "relabeling": {"password": "Subject manifest key"},
                "placeholders": {
                    "description": "key of the subject manifest's hashes; must differ from the pseudonym key",
                },
            },
        },
        {
            "connection-type": "phi_guard_consent_registry",
            "hook-class-name": f"{_HOOKS}.ConsentRegistryHook",
            "hook-name": "PHI Guard consent registry",
            "ui-field-behaviour": _database_form("consent"),
        },
        {
            "connection-type": "phi_guard_recipient_registry",
            "hook-class-name": f"{_HOOKS}.RecipientRegistryHook",
            "hook-name": "PHI Guard recipient registry",
            "ui-field-behaviour": _database_form("recipient"),
        },
    ]


def _database_form(registry: str) -> dict[str, object]:
    """The form of a registry kept in a PostgreSQL database: the standard fields, named for a database.

    :param registry: which registry, for the placeholders.
    """
    return {
        "hidden-fields": [],
        "relabeling": {"schema": "Database", "login": "User"},
        "placeholders": {
            "host": "postgres.example.internal",
            "port": "5432",
            "schema": "the database that holds the table",
            "description": f"the {registry} registry's database; the table is the operator's argument",
        },
    }


def _configuration() -> dict[str, object]:
    """The ``[phi_guard]`` section of the Airflow configuration: only options that the operators read."""
    return {
        "description": "Defaults of the PHI Guard operators for the whole deployment. An operator's own "
        "argument wins over its option.",
        "options": {
            "policy_folder": {
                "description": "The folder a relative policy_path of PhiPolicyOperator is read from. "
                "Empty: a relative path is taken from the worker's working directory.",
                "version_added": "0.1.0",
                "type": "string",
                "example": "/opt/airflow/policies",
                "default": "",
            },
            "trail": {
                "description": "The audit trail PhiPolicyOperator records each run in, and "
                "RecipientGateOperator each gate decision, when the task gives no trail_path: a JSONL "
                "file, or a PostgreSQL URL with #schema.table. Empty: no record.",
                "version_added": "0.1.0",
                "type": "string",
                "example": "/var/lib/phi-guard/audit-trail.jsonl",
                "default": "",
            },
            "recipient_registry": {
                "description": "The recipient registry (YAML) of RecipientGateOperator and of "
                "BatchInferenceOperator (for a model a recipient serves) when the task gives no "
                "recipients_path or registry connection, and of the cluster policy that judges exports "
                "when DAGs are parsed. Empty: the PHI_GUARD_RECIPIENT_REGISTRY environment variable, else "
                "none.",
                "version_added": "0.1.0",
                "type": "string",
                "example": "/opt/airflow/phi-guard/recipients.yaml",
                "default": "",
            },
        },
    }
