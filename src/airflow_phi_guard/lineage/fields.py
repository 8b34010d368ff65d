"""Reading fields of OpenLineage events, which may come from any producer and hold anything at any key.

Every access to an event's content goes through these, so that a missing key or a value of another type
reads as absent instead of raising: the audit, the datasheet, the HTML report and revocation impact never
crash on an event they did not write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def field_at(value: Any, *keys: str) -> Any:
    """The value at ``keys`` inside nested mappings, or None where a key or a mapping is missing."""
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def text_of(value: Any) -> str | None:
    """The value when it is non-empty text, else None."""
    return value if isinstance(value, str) and value else None


def list_of(value: Any) -> list[Any]:
    """The value when it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def count_of(value: Any) -> int | None:
    """The value when it is an integer (not a boolean), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def count_map_of(value: Any) -> dict[str, int] | None:
    """A mapping of names to counts, keeping the well-formed entries; None when there is no mapping."""
    if not isinstance(value, Mapping):
        return None
    return {
        key: count for key, count in value.items() if isinstance(key, str) and count_of(count) is not None
    }
