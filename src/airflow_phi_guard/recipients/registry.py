"""Read a recipient registry from a YAML file, with errors that name the file, the key and the line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from airflow_phi_guard.exceptions import RecipientRegistryError
from airflow_phi_guard.recipients.models import RecipientRegistry

KeyPath = tuple[str, ...]

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

    lines: dict[KeyPath, int] = {}
    data = _to_python(root, (), lines, file)
    try:
        return RecipientRegistry.model_validate(data)
    except ValidationError as error:
        # A misspelt key also makes the right one missing: name the misspelling, which says what to fix.
        first = min(error.errors(), key=lambda detail: detail["type"] != "extra_forbidden")
        key_path = tuple(str(part) for part in first["loc"])
        raise RecipientRegistryError(
            file, ".".join(key_path) or None, _line_of(key_path, lines), _describe(first)
        ) from None


def _to_python(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: str) -> Any:
    """Convert a composed YAML node, recording the line of every key; a key given twice is an error, so
    that a second entry for a recipient cannot silently replace the first."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise RecipientRegistryError(
                    file, ".".join(path) or None, key_node.start_mark.line + 1, "keys must be text"
                )
            child = (*path, key_node.value)
            if key_node.value in result:
                raise RecipientRegistryError(
                    file, ".".join(child), key_node.start_mark.line + 1, "key given twice"
                )
            lines[child] = key_node.start_mark.line + 1
            result[key_node.value] = _to_python(value_node, child, lines, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, str(index)), lines, file) for index, item in enumerate(node.value)]
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
        return "unknown key; check its spelling against the registry reference in the README"
    if kind == "missing":
        return "required key is missing"
    if kind == "enum":
        return f"unknown value; expected one of {error.get('ctx', {}).get('expected', '')}"
    return str(error["msg"]).removeprefix("Value error, ")
