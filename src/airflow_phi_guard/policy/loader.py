"""Load a policy file into a :class:`Policy`, with errors that name the file, the key and the line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from airflow_phi_guard.exceptions import PolicyError
from airflow_phi_guard.policy.models import Policy
from airflow_phi_guard.yaml_documents import line_of, to_python


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file.

    :param path: a YAML policy file.
    :raises PolicyError: the file is unreadable, not YAML, or not a valid policy.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(file, None, None, f"cannot read the policy file ({error.strerror})") from error
    return parse_policy(text, file)


def parse_policy(text: str, file: str = "<policy>") -> Policy:
    """Validate policy YAML text; ``file`` names it in errors.

    :param text: the YAML document.
    :param file: how errors name the document.
    :raises PolicyError: the text is not YAML or not a valid policy.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise PolicyError(file, None, line, f"not valid YAML: {problem}") from error
    if root is None:
        raise PolicyError(file, None, None, "the file is empty")

    data, lines = to_python(root, file, PolicyError)
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        key_path = tuple(str(part) for part in first["loc"])
        raise PolicyError(
            file, ".".join(key_path) or None, line_of(key_path, lines), _describe(first)
        ) from error


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key; check its spelling against the policy reference"
    if kind == "missing":
        return "required key is missing"
    if kind == "string_too_short":
        if error["loc"] and error["loc"][-1] == "justification":
            return "must not be empty: write why the purpose needs this column, or why it is dropped"
        return "must not be empty"
    if kind == "enum":
        expected = error.get("ctx", {}).get("expected", "")
        return f"unknown value; expected one of {expected}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")
