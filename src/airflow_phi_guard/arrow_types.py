"""Arrow type predicates that the engine, the treatments, the scanner, the checks and the readers share."""

from __future__ import annotations

import pyarrow as pa


def is_text(data_type: pa.DataType) -> bool:
    """Whether values of ``data_type`` are text: string, large string or string view."""
    return (
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
    )


def holds_text(data_type: pa.DataType) -> bool:
    """Whether values of ``data_type`` are text, dictionary-encoded or not."""
    if pa.types.is_dictionary(data_type):
        return is_text(data_type.value_type)
    return is_text(data_type)


def holds_ids(data_type: pa.DataType) -> bool:
    """Whether ``data_type`` can hold subject ids: text or integers, dictionary-encoded or not."""
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    return is_text(data_type) or pa.types.is_integer(data_type)


def is_scannable(data_type: pa.DataType) -> bool:
    """Whether the value scan can prove a column free of identifiers, so that it may be kept: text it
    reads, or a type that cannot hold text (numbers, booleans, dates)."""
    if pa.types.is_dictionary(data_type):
        return is_scannable(data_type.value_type)
    return (
        is_text(data_type)
        or pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or pa.types.is_decimal(data_type)
        or pa.types.is_boolean(data_type)
        or pa.types.is_temporal(data_type)
        or pa.types.is_null(data_type)
    )
