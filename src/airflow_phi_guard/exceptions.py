"""The errors of airflow-phi-guard: a policy file problem, a refusal by the policy, or a failed check.

The hierarchy is free of Airflow so that the CLI and the tests use it as it is; the operators decide, in
one place, that a refusal fails a task without retry. No message ever carries a cell value, a row or a
subject id: only file names, keys, line numbers, column names, identifier letters and counts.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_NAMED = 10


def name_some(names: Iterable[str], limit: int = MAX_NAMED) -> str:
    """Join at most ``limit`` names for a message, with a count of the rest.

    :param names: column names, rule ids or other non-sensitive labels.
    :param limit: how many to name before summarising the rest as a count.
    """
    names = list(names)
    shown = ", ".join(names[:limit])
    rest = len(names) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


class PhiGuardError(Exception):
    """Base class of every error this package raises on purpose."""


class FileKeyError(PhiGuardError, ValueError):
    """A configuration file that cannot be used: unreadable, not YAML, an unknown key, a bad value.

    :param file: the file.
    :param key: the dotted path of the offending key, or None for the whole file.
    :param line: the 1-based line of that key in the file, or None when unknown.
    :param problem: what is wrong, and what to do about it.
    """

    #: How a message names the file when no key is at fault.
    subject = "file"

    def __init__(self, file: str, key: str | None, line: int | None, problem: str) -> None:
        self.file = file
        self.key = key
        self.line = line
        self.problem = problem
        where = file if line is None else f"{file}:{line}"
        subject = f"key '{key}'" if key else self.subject
        super().__init__(f"{where}: {subject}: {problem}")


class PolicyError(FileKeyError):
    """A policy file that cannot be used: unreadable, not YAML, an unknown key, a bad value."""

    subject = "policy"


class PolicyViolationError(PhiGuardError):
    """The policy refused the data: nothing was published.

    :param refusals: one reason per violated rule, naming columns and identifier letters, never values.
    :param report_path: where the full governance report was written, if it was.
    """

    def __init__(self, refusals: list[str], report_path: str | None = None) -> None:
        self.refusals = list(refusals)
        self.report_path = report_path
        message = "policy refused the data, nothing was published: " + "; ".join(self.refusals)
        if report_path:
            message += f" (full report: {report_path})"
        super().__init__(message)


class UndeclaredColumnsError(PolicyViolationError):
    """The input has columns that the policy's allowlist does not declare."""


class SubjectColumnMissingError(PolicyViolationError):
    """The input lacks the column that names the individual, so consent cannot be checked."""


class SubjectColumnTypeError(PolicyViolationError):
    """The subject column holds neither text nor integer ids, so its values cannot be matched to consent."""


class TreatmentNotPermittedError(PolicyViolationError):
    """A treatment would publish an identifier that the policy's de-identification method removes."""


class TreatmentNotApplicableError(PolicyViolationError):
    """A treatment cannot be applied to a column: wrong type, unparsable values, or no key."""


class ResidualPhiError(PolicyViolationError):
    """Values of a kept column still contain identifiers."""


class ReidentificationRiskError(PolicyViolationError):
    """The output's re-identification risk (k-anonymity, l-diversity) misses the policy's thresholds, or
    cannot be measured exactly."""


class PartitionNotPermittedError(PolicyViolationError):
    """An output column whose values must not name the folders of a partitioned output: an identifier, a
    pseudonym, free text, or a column that is not in the output."""


class OutputPathError(PolicyViolationError):
    """The output of a run is one of its inputs, lies inside an input folder or holds an input: publishing or
    withdrawing it would overwrite or delete the source, so the run stops before anything is written."""


class ConsentRegistryError(PolicyViolationError):
    """The consent registry is missing, unreadable or malformed, so no record can be admitted."""


class ConsentRegistryUnavailableError(PhiGuardError):
    """The consent registry could not be reached (a database or storage that is down): a retry may heal it.

    Not a refusal by the policy: nothing was decided and nothing was published. The driver's message is
    withheld, because database drivers quote statements, parameters and rows in theirs.

    :param source: the registry's display name, without a password.
    :param cause: the class name of the underlying error.
    """

    retryable = True

    def __init__(self, source: str, cause: str) -> None:
        self.source = source
        self.cause = cause
        super().__init__(
            f"consent registry {source} is unreachable ({cause}; the underlying message is withheld); "
            "nothing was published; retry once it is reachable"
        )


class ConsentSubjectMismatchError(ConsentRegistryError):
    """No subject of the dataset occurs in the consent registry: likely a wrong subject column or registry."""


class PseudonymKeyError(PolicyViolationError):
    """A ``pseudonymize`` treatment was asked for, but no pseudonym key was provided."""


class SurrogateMappingError(PolicyViolationError):
    """The private mapping of surrogate codes cannot be read or written, or changed under the run; no output
    is published (a run refused because another one added codes at the same time may be run again)."""


class ManifestKeyError(PolicyViolationError):
    """The subject manifest key is too short, or is the pseudonym key, which it must never be."""


class DateShiftKeyError(PolicyViolationError):
    """A ``date-shift`` treatment was asked for, but no date shift key of at least 32 bytes was provided."""


class DeidentificationRecordError(PolicyViolationError):
    """The expert determination or data use agreement a policy rests on is missing, not yet or no longer in
    force at the run's reference date, or does not permit the policy's purpose."""


class RecipientNotPermittedError(PolicyViolationError):
    """The recipient of a destination lacks what the data needs: no business associate agreement in force
    for the purpose, an agreement for de-identified data only, a sale of PHI without authorization, or a
    destination no recipient owns. Each refusal names the recipient, the agreement and the rule."""


class RecipientRegistryError(FileKeyError):
    """A recipient registry that cannot be used: unreadable, not YAML, an unknown key, a bad value; or a
    registry table that lacks columns or has malformed rows (named by column and count, never by value)."""

    subject = "recipient registry"


class RecipientRegistryUnavailableError(PhiGuardError):
    """The recipient registry's database could not be reached: a retry may heal it.

    Nothing was judged, so nothing may be exported or sent. The driver's message is withheld, because
    database drivers quote statements, parameters and rows in theirs.

    :param source: the registry's display name, without a password.
    :param cause: the class name of the underlying error.
    """

    retryable = True

    def __init__(self, source: str, cause: str) -> None:
        self.source = source
        self.cause = cause
        super().__init__(
            f"recipient registry {source} is unreachable ({cause}; the underlying message is withheld); "
            "nothing was judged or sent; retry once it is reachable"
        )


class SubjectManifestError(PhiGuardError):
    """A subject manifest that cannot be trusted: missing, unreadable, misshapen, or changed since its run.

    :param path: the manifest file.
    :param problem: what is wrong and what to do; never a subject id or a hash from the file.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"subject manifest {path}: {problem}")


class LineageArchiveError(PhiGuardError):
    """The lineage archive refused a load or a query: a bad URL, table name or retention, or a statement
    the database rejected. Nothing was loaded; the driver's message is withheld (it may quote events).

    :param archive: the archive's display name, without a password.
    :param problem: what is wrong and what to do.
    """

    def __init__(self, archive: str, problem: str) -> None:
        self.archive = archive
        self.problem = problem
        super().__init__(f"lineage archive {archive}: {problem}")


class LineageArchiveUnavailableError(LineageArchiveError):
    """The lineage archive's database could not be reached; a retry may heal it.

    :param archive: the archive's display name, without a password.
    :param cause: the class name of the underlying error.
    """

    retryable = True

    def __init__(self, archive: str, cause: str) -> None:
        self.cause = cause
        super().__init__(
            archive,
            f"the database is unreachable ({cause}; the underlying message is withheld); nothing was "
            "loaded or read; check the URL and that the server accepts connections, then retry",
        )


class AuditTrailError(PhiGuardError):
    """The audit trail refused an append or could not be read: a store whose last record is unreadable or
    does not verify, a record that is not value-free, or a database that rejected a statement. Nothing was
    appended; the driver's message is withheld (it may quote records).

    :param trail: the trail's display name, without a password.
    :param problem: what is wrong and what to do.
    """

    def __init__(self, trail: str, problem: str) -> None:
        self.trail = trail
        self.problem = problem
        super().__init__(f"audit trail {trail}: {problem}")


class ModelNotInLineageError(PhiGuardError, LookupError):
    """No governance run in the events names the model a datasheet was asked for: nothing to document."""


class InvalidValuesError(PhiGuardError, ValueError):
    """Values that a treatment cannot read, such as text that is not a date in a date column.

    Raised by the treatments, which do not know column names; the engine turns it into a refusal that
    names the column. Carries a count and what was expected, never the values.

    :param count: how many values could not be read.
    :param expected: what a readable value looks like, e.g. "ISO 8601 dates".
    """

    def __init__(self, count: int, expected: str) -> None:
        self.count = count
        self.expected = expected
        super().__init__(f"{count} value(s) are not {expected}")


class QualityCheckFailedError(PolicyViolationError):
    """The governed dataset failed a Great Expectations check derived from its policy."""

    def __init__(self, refusals: list[str], report_path: str | None = None) -> None:
        super().__init__(refusals, report_path)
        message = "the governed dataset failed its validation: " + "; ".join(self.refusals)
        if report_path:
            message += f" (full report: {report_path})"
        self.args = (message,)


class DataProcessingError(PhiGuardError):
    """Reading, converting or writing the data failed; the underlying message is withheld.

    Arrow's messages quote the values they could not convert, so they never reach a log or a task
    failure. An I/O failure may heal on retry; a value that does not fit its column's type will not.

    :param source: the dataset being processed.
    :param cause: the class name of the underlying error.
    :param retryable: whether the cause was I/O, which a retry may heal.
    """

    def __init__(self, source: str, cause: str, *, retryable: bool) -> None:
        self.source = source
        self.cause = cause
        self.retryable = retryable
        advice = (
            "retry once the storage is reachable"
            if retryable
            else "a value does not fit its column's type: give the source explicit types (Parquet, or a CSV "
            "whose early rows show each column's type) and inspect the data where PHI may be seen"
        )
        super().__init__(
            f"{cause} while processing {source}; the underlying message is withheld because it may quote "
            f"cell values; {advice}"
        )


class SourceDatasetError(PhiGuardError, ValueError):
    """A source that cannot be read as one dataset, such as CSV and Parquet files mixed in one folder.

    :param source: the path, pattern or folder given.
    :param problem: what is wrong, and what to do about it.
    """

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"source {source} {problem}")
