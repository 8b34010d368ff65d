"""The JSON Schema of a policy file, exported from the policy models for editors, the docs and drift checks.

The models are the one source of truth: :func:`policy_json_schema` is ``Policy.model_json_schema()`` with
the draft 2020-12 dialect and the schema's published ``$id`` added. The package ships the export as
``policy.schema.json`` beside this module, and a test fails when that file drifts from the models.

The schema checks the shape of a policy (keys, types, enumerations, required entries, lengths, ranges), so
an editor flags an unknown key or a wrong type as it is typed. Rules that only the models' validators know
(a purpose outside the vocabulary, a consent basis that never admits, a subject column left undeclared,
options of another treatment, the record a de-identification method needs) are checked when the policy
loads, not by the schema.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from airflow_phi_guard.files import write_text_atomically

#: The JSON Schema dialect of the export; pydantic generates draft 2020-12.
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: The name of the shipped export, in this package.
SCHEMA_FILE_NAME = "policy.schema.json"

#: Where the export is published: the committed file in the repository, as the facet schemas are.
SCHEMA_ID = (
    "https://raw.githubusercontent.com/airflow-phi-guard/airflow-phi-guard/main/"
    f"src/airflow_phi_guard/policy/schema/{SCHEMA_FILE_NAME}"
)


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, as the policy models describe it.

    The schema is stricter than the loader where pydantic converts a value: ``model.version`` must be
    text, while the loader also takes an unquoted whole number (``version: 1``), and text such as ``"5"``
    or ``yes`` loads as a number or a flag. An editor flags those although they load; a schema that
    allowed them would need a ``json_schema_input_type`` on each such field of the models.

    :return: the schema, with ``$schema`` and ``$id`` first and the nested models under ``$defs``.
    """
    from airflow_phi_guard.policy.models import Policy

    return {"$schema": SCHEMA_DIALECT, "$id": SCHEMA_ID, **Policy.model_json_schema()}


def policy_schema_text() -> str:
    """The export as the text of ``policy.schema.json``: indented JSON ending in a newline.

    :return: the file's text.
    """
    return json.dumps(policy_json_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_schema_path() -> Path:
    """Where the package holds its copy of the export.

    :return: the path of ``policy.schema.json`` in the installed package.
    """
    return Path(str(resources.files(__name__) / SCHEMA_FILE_NAME))


def write_policy_schema(path: str | os.PathLike[str]) -> None:
    """Write the export to ``path``, whole or not at all.

    :param path: the file to write; its folder is created if needed.
    """
    write_text_atomically(path, policy_schema_text())


def schema_drift(path: str | os.PathLike[str]) -> list[str]:
    """How a schema file differs from the export of the current models; empty when it matches.

    The comparison is of the JSON documents, so indentation and key order do not count as drift.

    :param path: a schema file, such as the committed ``policy.schema.json``.
    :raises OSError: the file cannot be read.
    :return: one line per difference: the file is no JSON, a top-level entry or a definition differs.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        written = json.loads(text)
    except json.JSONDecodeError as error:
        return [f"{path}: not JSON (line {error.lineno}); write it again with `phi-guard policy schema`"]
    exported = policy_json_schema()
    if written == exported:
        return []
    if not isinstance(written, dict):
        return [f"{path}: not a JSON Schema object"]

    differences = []
    for key in sorted(set(written) | set(exported), key=str):
        if key == "$defs" or written.get(key) == exported.get(key):
            continue
        if key not in written:
            differences.append(f"{path}: '{key}' is missing")
        elif key not in exported:
            differences.append(f"{path}: '{key}' is not in the policy models' export")
        else:
            differences.append(f"{path}: '{key}' differs from the policy models' export")
    written_definitions = written.get("$defs") if isinstance(written.get("$defs"), dict) else {}
    exported_definitions = exported["$defs"]
    for name in sorted(set(written_definitions) | set(exported_definitions)):
        if name not in exported_definitions:
            differences.append(f"{path}: definition {name} is no longer a policy model")
        elif name not in written_definitions:
            differences.append(f"{path}: definition {name} is missing")
        elif written_definitions[name] != exported_definitions[name]:
            differences.append(f"{path}: definition {name} differs from the policy models' export")
    return differences
