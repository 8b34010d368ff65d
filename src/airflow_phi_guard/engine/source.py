"""Datasets on disk: open a source (files, folders, hive partitions, globs) and lay out a partitioned set."""

from __future__ import annotations

import errno
import glob
import logging
import os
import re
import shutil
import urllib.parse
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_dataset
import pyarrow.fs as pa_fs
import pyarrow.parquet as pq

from airflow_phi_guard.engine.paths import folder_name_problem
from airflow_phi_guard.engine.plan import ColumnPlan, Plan, Refusal
from airflow_phi_guard.exceptions import (
    DataProcessingError,
    PartitionNotPermittedError,
    SourceDatasetError,
    name_some,
)
from airflow_phi_guard.policy.models import Treatment

log = logging.getLogger(__name__)

#: CSV type inference reads this much of each file; a later value that does not fit the inferred type
#: fails the run as an I/O error (fail closed) rather than being coerced.
CSV_INFERENCE_BLOCK_BYTES = 16 * 1024 * 1024

#: The file beside the partitions of a governed set that holds its whole schema, partition columns
#: included, in the order of the policy: a folder name cannot say whether ``005`` is text or a number.
PARTITION_SCHEMA_FILE = "_common_metadata"

#: Names pyarrow's dataset discovery leaves out (hidden files, and metadata such as ``_SUCCESS``).
_IGNORED_PREFIXES = (".", "_")
_GLOB_CHARACTERS = re.compile(r"[*?\[]")
_CANONICAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_INT32_RANGE = range(-(2**31), 2**31)
_PER_PERSON_TREATMENTS = frozenset({Treatment.PSEUDONYMIZE, Treatment.SURROGATE, Treatment.DATE_SHIFT})

#: A source as callers give it: one path (a file, a folder, or a glob pattern) or a list of files.
Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def open_source(source: Source) -> pa_dataset.Dataset:
    """Open ``source`` for a streaming scan, reading no rows: only file listings, Parquet footers and the
    first block of each CSV file.

    A folder is read with its hive partitions (``year=2020/``): each partition key becomes a column, which
    the plan judges like any other, so an undeclared one is refused before data moves. Its type is the one
    recorded in :data:`PARTITION_SCHEMA_FILE` when the folder has one (a set this package published), else
    ``int32`` when every value is an integer written without leading zeros, else text: ``00501`` stays the
    text it was. Files of one source are all CSV (``.csv``) or all Parquet; their schemas are unified, so a
    column present in one file only is still seen, and one whose types disagree fails the run.

    CSV timestamps are read as the text that was recorded: Arrow's CSV reader converts an offset such as
    ``-05:00`` to UTC, which can move a timestamp into the next year, the one date element Safe Harbor
    keeps. Columns that are empty in every inferred block are read as text.

    :param source: a Parquet or CSV file; a folder of either, hive-partitioned or not; a glob pattern such
        as ``extract/part-*.parquet``; or a list of files.
    A partitioned governed set whose run published no row holds only :data:`PARTITION_SCHEMA_FILE`; it
    opens as a dataset without files, of the recorded schema.

    A hive key that is also a column of the files is refused: the folder's value would silently replace
    the file's own values (a subject id among them), so consent would be judged on the folder name.

    :raises FileNotFoundError: a path that does not exist, a pattern that matches nothing, or a folder
        without data files and without a recorded schema; or a data file that vanished or cannot be
        opened (named by the source's root and a count, never by a path below a partition folder).
    :raises SourceDatasetError: CSV and Parquet files mixed in one source, a file given twice, or a
        partition key that is also a column of the files.
    :raises DataProcessingError: a file that cannot be read, or schemas that cannot be unified.
    """
    # Known shortcoming: local paths only. The executor resolves its source as a local path, so an fsspec
    # URL (s3://...) is not opened here; passing pyarrow a filesystem from fsspec would add it.
    files, base = _source_files(source)
    root = base if base is not None else _common_folder(files)
    try:
        return _open(source, files, base)
    except (SourceDatasetError, DataProcessingError):
        raise
    except FileNotFoundError:
        # pyarrow's message quotes the file's path, whose partition folders hold values
        raise FileNotFoundError(
            errno.ENOENT,
            f"a data file of the source ({len(files)} file(s)) vanished or cannot be opened",
            str(root),
        ) from None
    except (OSError, pa.ArrowException) as error:
        retryable = isinstance(error, pa.ArrowIOError) or type(error) is OSError
        raise DataProcessingError(str(root), type(error).__name__, retryable=retryable) from None


def _open(source: Source, files: list[Path], base: Path | None) -> pa_dataset.Dataset:
    if not files and base is not None:
        # a governed set that published no row: partition folders exist only for rows, so the recorded
        # schema is all that was written, and it is read as an empty set of that schema
        return pa_dataset.FileSystemDataset(
            [], _recorded_schema(base), pa_dataset.ParquetFileFormat(), pa_fs.LocalFileSystem()
        )
    csv = _is_csv(files, source)
    partitioning = _hive_partitioning(files, base) if base is not None else None
    options = pa_dataset.FileSystemFactoryOptions(
        partition_base_dir=str(base) if base is not None else "",
        partitioning=partitioning,
        exclude_invalid_files=False,
    )
    filesystem = pa_fs.LocalFileSystem()
    paths = [str(file) for file in files]
    # The files' own schema, without the partition keys, so that a key that is also a file column is seen.
    unpartitioned = pa_dataset.FileSystemFactoryOptions(exclude_invalid_files=False)
    if not csv:
        parquet = pa_dataset.ParquetFileFormat()
        schema = pa_dataset.FileSystemDatasetFactory(filesystem, paths, parquet, unpartitioned).inspect(
            fragments=None
        )
        if partitioning is not None:
            _refuse_colliding_keys(schema, partitioning, base)
            schema = pa.unify_schemas([schema, partitioning.schema])
        factory = pa_dataset.FileSystemDatasetFactory(filesystem, paths, parquet, options)
        return factory.finish(_in_recorded_order(schema, base))

    read_options = pa_csv.ReadOptions(block_size=CSV_INFERENCE_BLOCK_BYTES)
    inferring = pa_dataset.CsvFileFormat(read_options=read_options)
    inferred = pa_dataset.FileSystemDatasetFactory(filesystem, paths, inferring, unpartitioned).inspect(
        # one file says an empty column is null and the next that it is a number: that is a number
        promote_options="permissive",
        fragments=None,
    )
    if partitioning is not None:
        _refuse_colliding_keys(inferred, partitioning, base)
    column_types = {
        field.name: (
            pa.string() if pa.types.is_timestamp(field.type) or pa.types.is_null(field.type) else field.type
        )
        for field in inferred
    }
    # Every file is read with the types inferred over all of them, so that no file is converted otherwise.
    convert_options = pa_csv.ConvertOptions(column_types=column_types, strings_can_be_null=True)
    csv_format = pa_dataset.CsvFileFormat(read_options=read_options, convert_options=convert_options)
    schema = pa.schema([inferred.field(name).with_type(kind) for name, kind in column_types.items()])
    if partitioning is not None:
        schema = pa.unify_schemas([schema, partitioning.schema])
    return pa_dataset.FileSystemDatasetFactory(filesystem, paths, csv_format, options).finish(schema)


def source_location(source: Source) -> Path:
    """The one path that names a source in the report and the lineage: the file or folder itself, or, for
    a list of files or a glob, the deepest folder that holds all of them (the OpenLineage convention of
    naming a multi-file dataset by its folder).

    :param source: as for :func:`open_source`.
    :raises FileNotFoundError: as for :func:`open_source`.
    """
    if isinstance(source, str | os.PathLike) and not _is_pattern(source):
        return Path(source).resolve()
    files, _ = _source_files(source)
    if len(files) == 1:
        return files[0]
    # Known shortcoming: the audit trail fingerprints the dataset by this name, so for a list or a glob it
    # hashes every file of the folder, including files the run did not read; fingerprinting the files read
    # (a fingerprint that takes the list) would fix it.
    return Path(os.path.commonpath([str(file.parent) for file in files]))


def is_source_pattern(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is a glob pattern rather than a path (a path that exists is never a pattern).

    :param source: a path or pattern.
    """
    return _is_pattern(source)


def write_partitioned(
    parquet_file: Path, folder: Path, partition_by: Sequence[str], *, batch_rows: int
) -> None:
    """Rewrite a governed Parquet file as a hive-partitioned folder that :func:`open_source` reads back to
    the same rows and schema.

    The partitions are streamed from ``parquet_file`` batch by batch; the full schema (in its column order,
    partition columns with their types) goes into :data:`PARTITION_SCHEMA_FILE`. Which columns may name
    folders is the executor's decision, made before any row is read.

    :param parquet_file: the written, checked output of a run.
    :param folder: the folder to create; it must not exist.
    :param partition_by: the output columns whose values name the folders, outermost first.
    :param batch_rows: rows per batch read from ``parquet_file``.
    :raises pyarrow.ArrowException: for instance more distinct partitions than pyarrow's limit (1024).
    """
    governed = pa_dataset.dataset(str(parquet_file), format="parquet")
    keys = pa.schema([governed.schema.field(name) for name in partition_by])
    folder.mkdir()
    pa_dataset.write_dataset(
        governed.scanner(batch_size=batch_rows),
        str(folder),
        format="parquet",
        partitioning=pa_dataset.partitioning(keys, flavor="hive"),
        basename_template="part-{i}.parquet",
        existing_data_behavior="error",
        create_dir=True,
    )
    pq.write_metadata(governed.schema, folder / PARTITION_SCHEMA_FILE)


def replace_dataset(staged: Path, target: Path) -> None:
    """Move a staged governed set (a file or a partitioned folder) to ``target``, replacing the governed set
    there, whichever of the two it is.

    A file replaces a file in one atomic rename. A folder cannot be renamed over another folder or a file,
    so the earlier set is first renamed aside and removed once the new one is in place: between the two
    renames a reader finds nothing at ``target``, never a mix of the two sets. If the second rename fails,
    the earlier set is removed all the same, as a failed publication withdraws it.

    :param staged: the checked set, beside ``target``.
    :param target: where it is published.
    :raises FileExistsError: ``target`` is a folder that is not a governed set; nothing is moved.
    """
    if staged.is_file() and not target.is_dir():
        os.replace(staged, target)
        return
    if target.is_dir() and not _is_governed_folder(target):
        raise FileExistsError(errno.EEXIST, "a folder that is not a governed set is in the way", str(target))
    aside = target.with_name(f".{target.name}.{uuid.uuid4().hex}.replaced")
    if target.exists():
        os.replace(target, aside)
    try:
        os.replace(staged, target)
    finally:
        remove_dataset(aside)


def remove_dataset(target: Path) -> bool:
    """Remove a governed set: a file, or a partitioned folder this package wrote; returns whether one was
    there. A folder of anything else is left alone, with a warning.

    :param target: the governed set's path.
    :raises OSError: the set could not be removed; the error names ``target``, never a partition folder,
        whose name holds a value.
    """
    if target.is_dir():
        if not _is_governed_folder(target):
            log.warning("left the folder at %s in place: it is not a governed set this package wrote", target)
            return False
        remove_tree(target)
        return True
    if target.exists() or target.is_symlink():
        target.unlink()
        return True
    return False


def remove_tree(folder: Path) -> None:
    """Remove a folder and everything under it, with errors that name only ``folder``.

    :param folder: a staging or governed folder; nothing happens when it does not exist.
    :raises OSError: something under it could not be removed.
    """

    def failed(function: object, path: str, exc_info: tuple[type, BaseException, object]) -> None:
        error = exc_info[1]
        code = error.errno if isinstance(error, OSError) else None
        raise OSError(code or errno.EIO, "could not remove a file of the folder", str(folder)) from None

    if folder.exists():
        # onerror, not onexc: the floor is Python 3.11
        shutil.rmtree(folder, onerror=failed)


def source_inputs(source: Source) -> list[Path]:
    """The paths a run reads: the folder of a folder source, else its files, resolved.

    :param source: as for :func:`open_source`.
    :raises FileNotFoundError: as for :func:`open_source`.
    """
    files, base = _source_files(source)
    return [base] if base is not None else files


def _refuse_colliding_keys(schema: pa.Schema, partitioning: pa_dataset.HivePartitioning, base: Path) -> None:
    colliding = [name for name in partitioning.schema.names if name in schema.names]
    if colliding:
        raise SourceDatasetError(
            str(base),
            f"has {len(colliding)} partition key(s) that are also columns of its files: "
            f"{name_some(colliding)}; the folder names would replace the files' values, so nothing is "
            "read: rename the partition folders or drop the column from the files",
        )


def _common_folder(files: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(file.parent) for file in files])) if files else Path(".")


def _is_governed_folder(folder: Path) -> bool:
    """Whether a folder looks as :func:`write_partitioned` left it: the schema file, hive folders and
    Parquet files, and nothing else."""
    if not (folder / PARTITION_SCHEMA_FILE).is_file():
        return False
    for root, folders, names in os.walk(folder):
        if any("=" not in name for name in folders):
            return False
        top = Path(root) == folder
        if any(not (name.endswith(".parquet") or (top and name == PARTITION_SCHEMA_FILE)) for name in names):
            return False
    return True


def partition_refusals(plan: Plan, partition_by: Sequence[str]) -> list[Refusal]:
    """Refuse, before any row is read, output columns whose values must not name folders.

    A value in a folder name is outside the dataset: whoever may list the folder sees it without the right
    to read the files, object stores log it in every access record, tools that log file paths copy it,
    and no column-level control or later drop of the column removes it. So a partition column must hold a
    value that many subjects share and that is no identifier: a non-identifier column kept as it is
    (numbers, codes), or the coarse output of a generalising treatment (year, age, age band, month,
    quarter, ZIP3, state). Refused are: the subject column; pseudonyms and surrogate codes (one folder per
    person would list every subject); shifted dates (a folder per person and day); an identifier kept as
    it is (under a limited data set, a date or a town); text kept as it is (the value scan has known gaps,
    and what it misses in the dataset at least stays behind the dataset's access controls); and any type
    other than integers and text, which a folder name cannot carry back unchanged.

    :param plan: the run's plan.
    :param partition_by: output column names, outermost folder first.
    """
    if not partition_by:
        return []
    unsafe = {name: problem for name in partition_by if (problem := folder_name_problem(name)) is not None}
    if unsafe:
        # a name such as ../../x would write outside the output; say so without going further
        return [
            Refusal(
                PartitionNotPermittedError,
                f"{len(unsafe)} partition column name(s) cannot name a folder ("
                + "; ".join(f"{name!r}: {problem}" for name, problem in list(unsafe.items())[:10])
                + "); partition by columns whose names are plain folder names",
            )
        ]
    by_output = {column.output: column for column in plan.published}
    unknown = [name for name in partition_by if name not in by_output]
    problems = {name: _partition_problem(plan, by_output[name]) for name in partition_by if name in by_output}
    refusals = []
    if unknown:
        refusals.append(
            Refusal(
                PartitionNotPermittedError,
                f"{len(unknown)} partition column(s) are not output columns: {name_some(unknown)}; "
                "partition by published columns, under their output ('as') names",
            )
        )
    for name, problem in problems.items():
        if problem is None:
            continue
        refusals.append(
            Refusal(
                PartitionNotPermittedError,
                f"output column {name} cannot name partition folders: {problem}; "
                "folder names are outside the dataset and outside the value scan, so partition by a "
                "generalised column (year, age band, ZIP3, state) or a non-identifier",
            )
        )
    if len(set(partition_by)) != len(partition_by):
        refusals.append(Refusal(PartitionNotPermittedError, "a partition column is named twice"))
    elif not unknown and len(partition_by) >= len(plan.published):
        refusals.append(
            Refusal(
                PartitionNotPermittedError,
                "partitioning by every output column leaves no column in the files",
            )
        )
    return refusals


def _partition_problem(plan: Plan, column: ColumnPlan) -> str | None:
    """Why an output column may not name folders, or None when it may."""
    from airflow_phi_guard.engine.common import output_type

    output = output_type(column.treatment, plan.schema.field(column.source).type)
    if column.source == plan.policy.subject:
        return "it is the subject column"
    if column.treatment in _PER_PERSON_TREATMENTS:
        return f"treatment '{column.treatment}' gives one value per person"
    if column.treatment is Treatment.KEEP and column.identifier is not None:
        return f"it keeps identifier {column.identifier.letter} as it is"
    if column in plan.kept_text:
        return "it keeps text as it is"
    if not (pa.types.is_integer(output) or pa.types.is_string(output) or pa.types.is_large_string(output)):
        return f"its type {output} does not read back from a folder name unchanged"
    return None


def _is_pattern(source: str | os.PathLike[str]) -> bool:
    text = os.fspath(source)
    return bool(_GLOB_CHARACTERS.search(text)) and not Path(text).exists()


def _source_files(source: Source) -> tuple[list[Path], Path | None]:
    """The data files of a source, sorted, and the folder their hive partitions are relative to (None for a
    single file, a list or a pattern, whose folders are not read as partitions); no file, with the folder,
    for a governed folder that holds only its recorded schema."""
    if not isinstance(source, str | os.PathLike):
        files = [Path(item).resolve() for item in source]
        if not files:
            raise FileNotFoundError(errno.ENOENT, "an empty list of files", "[]")
        missing = [file for file in files if not file.is_file()]
        if missing:
            # a listed file's path can run through partition folders, whose names hold values
            raise FileNotFoundError(
                errno.ENOENT,
                f"{len(missing)} of {len(files)} listed file(s) are missing",
                str(_common_folder(files)),
            )
        return _once(files, "the list of files"), None
    if _is_pattern(source):
        matches = sorted(Path(match).resolve() for match in glob.glob(os.fspath(source), recursive=True))
        files = [match for match in matches if match.is_file()]
        if not files:
            raise FileNotFoundError(errno.ENOENT, "no file matches the pattern", os.fspath(source))
        return _once(files, os.fspath(source)), None
    location = Path(source).resolve()
    if location.is_file():
        return [location], None
    if not location.is_dir():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(location))
    files = _once(sorted(_data_files(location)), str(location))
    if not files and (location / PARTITION_SCHEMA_FILE).is_file():
        return [], location
    if not files:
        raise FileNotFoundError(errno.ENOENT, "a folder without data files", str(location))
    return files, location


def _once(files: list[Path], where: str) -> list[Path]:
    """Refuse a source that names one file twice (a link, a second path to it): its rows would be counted
    twice, and a class or a partition folder would seem to hold more people than it does."""
    seen: set[tuple[int, int]] = set()
    repeated = 0
    for file in files:
        try:
            status = os.stat(file)
        except FileNotFoundError:
            # a dangling link; its path can run through partition folders, whose names hold values
            raise FileNotFoundError(
                errno.ENOENT,
                f"a data file of the source ({len(files)} file(s)) vanished or cannot be opened",
                where,
            ) from None
        identity = (status.st_dev, status.st_ino)
        repeated += identity in seen
        seen.add(identity)
    if repeated:
        raise SourceDatasetError(
            where,
            f"names {repeated} file(s) more than once (after resolving links); each file may be read once, "
            "or its rows would be counted twice",
        )
    return files


def _data_files(folder: Path) -> Iterable[Path]:
    for root, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(_IGNORED_PREFIXES)]
        yield from (Path(root, name) for name in names if not name.startswith(_IGNORED_PREFIXES))


def _is_csv(files: Sequence[Path], source: Source) -> bool:
    csv = {file.suffix.lower() == ".csv" for file in files}
    if len(csv) > 1:
        where = os.fspath(source) if isinstance(source, str | os.PathLike) else "the list of files"
        raise SourceDatasetError(
            where, "mixes CSV and Parquet files; give one format per source, or convert the CSV files"
        )
    return csv.pop()


def _hive_partitioning(files: Sequence[Path], base: Path) -> pa_dataset.HivePartitioning | None:
    """The hive partitioning of a folder, with the types of its keys decided from the folder names alone."""
    values: dict[str, set[str]] = {}
    for file in files:
        for segment in file.relative_to(base).parent.parts:
            key, equals, value = segment.partition("=")
            if equals and key:
                values.setdefault(urllib.parse.unquote(key), set()).add(urllib.parse.unquote(value))
    if not values:
        return None
    recorded = _recorded_schema(base)
    fields = []
    for key, seen in values.items():
        if recorded is not None and key in recorded.names:
            fields.append(recorded.field(key))
        else:
            fields.append(pa.field(key, pa.int32() if _all_int32(seen - {_HIVE_NULL}) else pa.string()))
    return pa_dataset.HivePartitioning(pa.schema(fields), null_fallback=_HIVE_NULL, segment_encoding="uri")


def _all_int32(values: set[str]) -> bool:
    # Only integers written as Arrow writes them read back unchanged; a ZIP code such as 00501 stays text.
    return bool(values) and all(
        _CANONICAL_INTEGER.fullmatch(value) and int(value) in _INT32_RANGE for value in values
    )


def _recorded_schema(base: Path) -> pa.Schema | None:
    recorded = base / PARTITION_SCHEMA_FILE
    return pq.read_schema(recorded) if recorded.is_file() else None


def _in_recorded_order(schema: pa.Schema, base: Path | None) -> pa.Schema:
    """The columns in the order the governed set recorded, partition columns in place; as found otherwise."""
    recorded = _recorded_schema(base) if base is not None else None
    if recorded is None or sorted(recorded.names) != sorted(schema.names):
        return schema
    return pa.schema([schema.field(name) for name in recorded.names])
