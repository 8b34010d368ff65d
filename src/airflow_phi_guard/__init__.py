"""airflow-phi-guard: minimum-necessary, consent-checked, de-identified training sets, with audit lineage."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airflow-phi-guard")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"


def get_provider_info() -> dict[str, object]:
    """Describe this package to Airflow's provider manager (the ``apache_airflow_provider`` entry point)."""
    return {
        "package-name": "airflow-phi-guard",
        "name": "PHI Guard",
        "description": "Enforces HIPAA minimum-necessary policies, consent and de-identification on training "
        "datasets, with Great Expectations checks and OpenLineage audit records.",
        "versions": [__version__],
        "operators": [
            {
                "integration-name": "PHI Guard",
                "python-modules": [
                    "airflow_phi_guard.operators.policy",
                    "airflow_phi_guard.operators.quality",
                    "airflow_phi_guard.operators.scan",
                    "airflow_phi_guard.operators.recipients",
                    "airflow_phi_guard.operators.inference",
                ],
            }
        ],
        "hooks": [
            {
                "integration-name": "PHI Guard",
                "python-modules": ["airflow_phi_guard.operators.hooks"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_phi_guard.operators.hooks.PseudonymKeyHook",
                "connection-type": "phi_guard_pseudonym_key",
            },
            {
                "hook-class-name": "airflow_phi_guard.operators.hooks.ManifestKeyHook",
                "connection-type": "phi_guard_manifest_key",
            },
        ],
        "integrations": [
            {
                "integration-name": "PHI Guard",
                "external-doc-url": "https://github.com/airflow-phi-guard/airflow-phi-guard",
                "tags": ["software"],
            }
        ],
    }
