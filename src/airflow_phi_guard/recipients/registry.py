"""Read a recipient registry from a YAML file, with errors that name the file, the key and the line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from airflow_phi_guard.exceptions import RecipientRegistryError
from airflow_phi_guard.recipients.models import RecipientRegistry
from airflow_phi_guard.yaml_documents import line_of, to_python

#: Where the cluster policy and the CLI find the registry outside the Airflow configuration.
RECIPIENT_REGISTRY_VARIABLE = "PHI_GUARD_RECIPIENT_REGISTRY"


def load_recipient_registry(path: str | os.PathLike[str]) -> RecipientRegistry:
    """Read and validate a recipient registry file.

    :param path: a YAML file with a top-level ``recipients`` mapping.
    :raises RecipientRegistryError: the file is unreadable, not YAML, or not a valid registry.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise RecipientRegistryError(file, None, None, f"cannot read the file ({error.strerror})") from None
    return parse_recipient_registry(text, file)


def parse_recipient_registry(text: str, file: str = "<recipients>") -> RecipientRegistry:
    """Validate recipient registry YAML text; ``file`` names it in errors.

    :param text: the YAML document.
    :param file: how errors name the document.
    :raises RecipientRegistryError: the text is not YAML or not a valid registry.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise RecipientRegistryError(file, None, line, "not valid YAML") from None
    if root is None:
        raise RecipientRegistryError(file, None, None, "the file is empty")

    data, lines = to_python(root, file, RecipientRegistryError)
    try:
        return RecipientRegistry.model_validate(data)
    except ValidationError as error:
        # A misspelt key also makes the right one missing: name the misspelling, which says what to fix.
        first = min(error.errors(), key=lambda detail: detail["type"] != "extra_forbidden")
        key_path = tuple(str(part) for part in first["loc"])
        raise RecipientRegistryError(
            file, ".".join(key_path) or None, line_of(key_path, lines), _describe(first)
        ) from None


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key; check its spelling against the registry reference in the README"
    if kind == "missing":
        return "required key is missing"
    if kind == "enum":
        return f"unknown value; expected one of {error.get('ctx', {}).get('expected', '')}"
    return str(error["msg"]).removeprefix("Value error, ")
