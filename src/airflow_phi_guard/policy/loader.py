"""Load a policy file into a :class:`Policy`, with errors that name the file, the key and the line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from airflow_phi_guard.exceptions import PolicyError
from airflow_phi_guard.policy.models import Policy

KeyPath = tuple[str, ...]


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

    lines: dict[KeyPath, int] = {}
    data = _to_python(root, (), lines, file)
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        key_path = tuple(str(part) for part in first["loc"])
        raise PolicyError(
            file, ".".join(key_path) or None, _line_of(key_path, lines), _describe(first)
        ) from error


def _to_python(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: str) -> Any:
    """Convert a composed YAML node, recording the line of every mapping key.

    Mapping keys stay the text the author wrote, so a column named ``NO`` or ``ON`` is not read as a
    boolean, and a key given twice is an error instead of a silent overwrite.
    """
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise PolicyError(
                    file, ".".join(path) or None, key_node.start_mark.line + 1, "keys must be text"
                )
            key = key_node.value
            child = (*path, key)
            if key in result:
                raise PolicyError(file, ".".join(child), key_node.start_mark.line + 1, "key given twice")
            lines[child] = key_node.start_mark.line + 1
            result[key] = _to_python(value_node, child, lines, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, str(index)), lines, file) for index, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _line_of(key_path: KeyPath, lines: dict[KeyPath, int]) -> int | None:
    for end in range(len(key_path), -1, -1):
        if key_path[:end] in lines:
            return lines[key_path[:end]]
    return None


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
