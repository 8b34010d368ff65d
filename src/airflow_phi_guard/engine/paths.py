"""Where a run reads and writes: the output kept apart from the inputs, safe folder names, stale staging."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from airflow_phi_guard.exceptions import OutputPathError

log = logging.getLogger(__name__)

#: The fewest distinct subjects every partition folder must hold when the policy declares no risk
#: thresholds (no ``k_min``): the small-cell threshold of 11 that CMS applies to published counts.
DEFAULT_PARTITION_K_MIN = 11

_UNSAFE_CHARACTERS = re.compile(r"[/\\=\x00-\x1f\x7f]")
_SUBJECT = "__phi_guard_subject__"


def check_output_apart(inputs: Sequence[Path], output: Path) -> None:
    """Refuse, before anything is written, an output that is an input of the run, lies inside an input
    folder, or holds an input: publishing or withdrawing it would overwrite or delete the source.

    Paths are compared after resolving symlinks, so a link to the input is the input.

    :param inputs: the run's data files and the folder they were found in, if any.
    :param output: the governed set's path.
    :raises OutputPathError: the output and an input overlap; the message names the output only.
    """
    target = Path(os.path.realpath(output))
    for given in inputs:
        source = Path(os.path.realpath(given))
        if target == source or target.is_relative_to(source) or source.is_relative_to(target):
            raise OutputPathError(
                [
                    f"the output {output} is, lies inside or holds an input of the run; publishing or "
                    "withdrawing it would overwrite or delete the source, so nothing was written: give "
                    "an output path apart from every input"
                ]
            )


def folder_name_problem(name: str) -> str | None:
    """Why a column name cannot name a partition folder (``NAME=value``), or None when it can.

    A plain rule: no path separator, no ``=``, no control character or NUL, no leading dot (hidden, and
    ``..`` climbs), and not empty.

    :param name: an output column name.
    """
    if not name:
        return "it is empty"
    if name.startswith("."):
        return "it starts with a dot"
    if ".." in name:
        return "it contains '..'"
    if _UNSAFE_CHARACTERS.search(name):
        return "it contains a path separator, '=' or a control character"
    return None


def staging_names(output: Path) -> re.Pattern[str]:
    """The names the executors give the staging of ``output``: ``.<name>.<32 hex>.tmp`` (a file or a
    folder), with ``.partitions`` or ``.suppressed`` after it, and ``.<name>.<32 hex>.replaced``.

    :param output: the governed set's path.
    """
    return re.compile(
        rf"\.{re.escape(output.name)}\.[0-9a-f]{{32}}\.(tmp(\.partitions|\.suppressed)?|replaced)"
    )


@contextmanager
def staging_guard(output: Path, inputs: Sequence[Path]) -> Iterator[None]:
    """Hold a shared lock on the output's folder for a run and, when no other run holds one, first remove
    the staging of ``output`` that a killed run left (rows that never passed its checks).

    The lock is an advisory ``flock`` on the folder itself, so no file is added beside the output; a run
    that finds the folder in use leaves every staging name alone, since it may belong to that run.

    :param output: the governed set's path; its folder must exist.
    :param inputs: the run's inputs, never removed even when named like staging.
    """
    folder = output.parent
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            log.info("another run uses the folder of %s: stale staging is left for later", output)
        else:
            _remove_stale_staging(output, inputs)
        fcntl.flock(descriptor, fcntl.LOCK_SH)
        yield
    finally:
        os.close(descriptor)


def _remove_stale_staging(output: Path, inputs: Sequence[Path]) -> None:
    from airflow_phi_guard.engine.source import remove_tree

    pattern = staging_names(output)
    kept = {os.path.realpath(path) for path in inputs}
    removed = 0
    for entry in output.parent.iterdir():
        if not pattern.fullmatch(entry.name) or os.path.realpath(entry) in kept:
            continue
        if entry.is_dir() and not entry.is_symlink():
            remove_tree(entry)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info(
            "removed %d stale staging file(s) or folder(s) of %s left by an unfinished run", removed, output
        )


def small_folders_problem(small: int, folders: int, k_min: int) -> str | None:
    """Why partition folders may not be published, or None when none holds fewer than ``k_min`` subjects;
    the one text of both executors.

    :param small: the folders holding fewer than ``k_min`` distinct subjects.
    :param folders: all the folders the output would have.
    :param k_min: the fewest distinct subjects a folder must hold.
    """
    if not small:
        return None
    return (
        f"{small} of {folders} partition folder(s) would each hold fewer than "
        f"{k_min} distinct subjects, so their names would single people out"
    )


class PartitionSubjects:
    """The distinct subjects behind each partition folder of an output, counted batch by batch.

    Holds distinct (partition values, quasi-identifier values, subject) rows, merged whenever the held
    rows double, so memory grows with the distinct combinations, not with the rows; the quasi-identifiers
    let the rows of classes that the risk gate suppressed be taken out before counting.

    :param partition_by: the output columns that name folders.
    :param quasi_identifiers: the output columns of the policy's risk measure, or none.
    :param k_min: the fewest distinct subjects a folder must hold.
    """

    def __init__(self, partition_by: Sequence[str], quasi_identifiers: Sequence[str], k_min: int) -> None:
        self.partition_by = list(partition_by)
        self.columns = self.partition_by + [name for name in quasi_identifiers if name not in partition_by]
        self.k_min = k_min
        self._parts: list[pa.Table] = []
        self._held = 0
        self._merged = 0

    def add(self, governed: pa.RecordBatch, subjects: pa.Array) -> None:
        """Count the subjects of one written batch.

        :param governed: the batch as written, output columns.
        :param subjects: the subject id of each of its rows.
        """
        table = pa.table(
            [governed.column(name) for name in self.columns] + [subjects], [*self.columns, _SUBJECT]
        )
        part = table.group_by([*self.columns, _SUBJECT], use_threads=False).aggregate([])
        self._parts.append(part)
        self._held += part.num_rows
        if self._held > max(2 * self._merged, 65536):
            self._merge()

    def problem(self, suppressed: object | None = None) -> str | None:
        """Why the folders may not be published (a count of folders holding fewer than ``k_min``
        subjects), or None.

        :param suppressed: the risk gate's suppressed classes
            (:class:`~airflow_phi_guard.deid.risk.EquivalenceClasses`), whose rows are not published.
        """
        self._merge()
        if not self._parts:
            return None
        held = self._parts[0]
        if suppressed is not None and len(suppressed):
            held = held.filter(pc.invert(suppressed.mask(held)))
        counts = held.group_by(self.partition_by, use_threads=False).aggregate([(_SUBJECT, "count_distinct")])
        small = counts.filter(pc.less(counts.column(f"{_SUBJECT}_count_distinct"), self.k_min))
        return small_folders_problem(small.num_rows, counts.num_rows, self.k_min)

    def _merge(self) -> None:
        if len(self._parts) > 1:
            merged = pa.concat_tables(self._parts).group_by([*self.columns, _SUBJECT], use_threads=False)
            self._parts = [merged.aggregate([])]
        self._held = self._merged = self._parts[0].num_rows if self._parts else 0
