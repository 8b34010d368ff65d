"""Open a source dataset (Parquet file or folder, or CSV) as a ``pyarrow.dataset``, reading no rows."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_dataset

#: CSV type inference reads this much of the file; a later value that does not fit the inferred type
#: fails the run as an I/O error (fail closed) rather than being coerced.
CSV_INFERENCE_BLOCK_BYTES = 16 * 1024 * 1024


def open_source(path: str | os.PathLike[str]) -> pa_dataset.Dataset:
    """Open ``path`` for a streaming scan: ``.csv`` as CSV, anything else as Parquet.

    CSV timestamps are read as the text that was recorded: Arrow's CSV reader converts an offset such as
    ``-05:00`` to UTC, which can move a timestamp into the next year, the one date element Safe Harbor
    keeps. Columns that are empty in the inferred block are read as text.

    :param path: a Parquet file, a folder of Parquet files, or a CSV file.
    """
    location = Path(path)
    if location.suffix.lower() != ".csv":
        return pa_dataset.dataset(str(location), format="parquet")

    read_options = pa_csv.ReadOptions(block_size=CSV_INFERENCE_BLOCK_BYTES)
    inferred = pa_dataset.dataset(
        str(location), format=pa_dataset.CsvFileFormat(read_options=read_options)
    ).schema
    as_text = {
        field.name: pa.string()
        for field in inferred
        if pa.types.is_timestamp(field.type) or pa.types.is_null(field.type)
    }
    convert_options = pa_csv.ConvertOptions(column_types=as_text, strings_can_be_null=True)
    csv_format = pa_dataset.CsvFileFormat(read_options=read_options, convert_options=convert_options)
    return pa_dataset.dataset(str(location), format=csv_format)
