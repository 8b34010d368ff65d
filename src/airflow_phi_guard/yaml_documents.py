"""YAML documents as plain data with the line of every key, for errors that name the file, key and line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

#: The keys from the document's root to one value.
KeyPath = tuple[str, ...]

#: Builds the caller's error from the file, the dotted key (None for the document), the line and the problem.
ErrorFactory = Callable[[str, str | None, int | None, str], Exception]


def to_python(node: yaml.Node, file: str, error: ErrorFactory) -> tuple[Any, dict[KeyPath, int]]:
    """Convert a composed YAML node into plain data, and the 1-based line of every key.

    Mapping keys stay the text the author wrote, so a key such as ``NO`` or ``ON`` is not read as a boolean,
    and a key given twice is an error instead of a silent overwrite of the first entry.

    :param node: the document's root, from ``yaml.compose``.
    :param file: how errors name the document.
    :param error: makes the error raised for a key that is not text or is given twice.
    """
    lines: dict[KeyPath, int] = {}
    return _convert(node, (), lines, file, error), lines


def line_of(key_path: KeyPath, lines: dict[KeyPath, int]) -> int | None:
    """The line of a key, or of its nearest enclosing key that has one; None when none has.

    :param key_path: the keys from the root, as a validation error locates a value.
    :param lines: the lines :func:`to_python` recorded.
    """
    for end in range(len(key_path), -1, -1):
        if key_path[:end] in lines:
            return lines[key_path[:end]]
    return None


def _convert(
    node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: str, error: ErrorFactory
) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise error(file, ".".join(path) or None, key_node.start_mark.line + 1, "keys must be text")
            key = key_node.value
            child = (*path, key)
            if key in result:
                raise error(file, ".".join(child), key_node.start_mark.line + 1, "key given twice")
            lines[child] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, child, lines, file, error)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, str(index)), lines, file, error) for index, item in enumerate(node.value)
        ]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
