"""The ``phi-guard`` command: the same engine as the operators, without Airflow."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from airflow_phi_guard.exceptions import PhiGuardError, PolicyError, PolicyViolationError
from airflow_phi_guard.files import write_text_atomically
from airflow_phi_guard.report import GovernanceReport

if TYPE_CHECKING:
    from airflow_phi_guard.engine.executor import GovernanceResult
    from airflow_phi_guard.lineage.build import RunLineage
    from airflow_phi_guard.phi.inventory import ScanReport
    from airflow_phi_guard.policy.models import Policy

log = logging.getLogger(__name__)

EXIT_PUBLISHED = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

PSEUDONYM_KEY_VARIABLE = "PHI_GUARD_PSEUDONYM_KEY"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else EXIT_PUBLISHED
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # No markup: messages carry file and column names, and a name such as "dose[/day]" would be taken
    # for a Rich tag (mangled, or a MarkupError raised while reporting the error it was part of).
    console = Console(stderr=False, soft_wrap=True, markup=False, highlight=False)
    try:
        return arguments.run(arguments, console)
    except PolicyError as error:
        _say("bad policy:", str(error))
        return EXIT_USAGE
    except PhiGuardError as error:
        _say("error:", str(error))
        return EXIT_ERROR
    except OSError as error:
        # strerror and filename, never str(error): some libraries put data into I/O error messages
        where = f" ({error.filename})" if error.filename else ""
        _say("error:", f"{type(error).__name__}: {error.strerror or 'I/O error'}{where}")
        return EXIT_ERROR
    except Exception as error:
        # the message of an unexpected error may quote data: name its class only
        _say("error:", f"unexpected {type(error).__name__}; its message is withheld")
        return EXIT_ERROR


def _say(label: str, message: str) -> None:
    """Print a refusal or an error on standard error, where it cannot mix with JSON output."""
    errors = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
    errors.print(Text.assemble((label, "red"), " ", message))


def _require_input(path: Path) -> None:
    # pyarrow's FileNotFoundError has neither strerror nor filename, so the message could not say which
    # of the command's files is missing.
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phi-guard",
        description="Enforce minimum-necessary, consent and de-identification policies on training data, "
        "and audit which PHI reached which model.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    apply = commands.add_parser("apply", help="govern a dataset under a policy and publish it, or refuse")
    apply.add_argument("--policy", required=True, type=Path, help="the policy file (YAML)")
    apply.add_argument("--input", required=True, type=Path, help="the source dataset (Parquet or CSV)")
    apply.add_argument("--output", required=True, type=Path, help="the governed Parquet file to publish")
    apply.add_argument("--consent", type=Path, help="the consent registry (CSV or Parquet)")
    apply.add_argument("--as-of", type=_iso_date, default=None, help="reference date, YYYY-MM-DD (today)")
    apply.add_argument("--report", type=Path, help="write the governance report (JSON) here")
    apply.add_argument("--events", type=Path, help="append OpenLineage START and COMPLETE/FAIL events here")
    apply.set_defaults(run=_apply)

    plan = commands.add_parser("plan", help="show what a policy would do to each column, reading no rows")
    plan.add_argument("--policy", required=True, type=Path)
    plan.add_argument("--input", required=True, type=Path)
    plan.set_defaults(run=_plan)

    audit = commands.add_parser("audit", help="which PHI reached a model, from OpenLineage events")
    audit.add_argument("--events", required=True, type=Path, help="an OpenLineage event log (JSON lines)")
    audit.add_argument("--model", help="NAME or NAME:VERSION; every model when omitted")
    audit.add_argument("--format", choices=("text", "json"), default="text")
    audit.set_defaults(run=_audit)

    scan = commands.add_parser("scan", help="find the identifier columns of a dataset, by name and by value")
    scan.add_argument("--input", required=True, type=Path, help="the dataset (Parquet or CSV)")
    scan.add_argument("--format", choices=("text", "json"), default="text")
    scan.add_argument("--sample-rows", type=_positive_int, help="scan only the first N rows")
    scan.set_defaults(run=_scan)

    policy = commands.add_parser("policy", help="write policies")
    policy_commands = policy.add_subparsers(required=True, metavar="COMMAND")
    init = policy_commands.add_parser(
        "init", help="write a draft policy from a scan; it loads once every justification is written"
    )
    init.add_argument("--input", required=True, type=Path, help="the dataset (Parquet or CSV)")
    init.add_argument("--output", type=Path, help="the policy file to write; standard output when omitted")
    init.add_argument("--name", help="the policy's and the model's name; the input's file name by default")
    init.add_argument("--purpose", help="the purpose consent records must name (model-training)")
    init.add_argument("--recipient", help="who receives the governed dataset (internal)")
    init.add_argument("--sample-rows", type=_positive_int, help="scan only the first N rows")
    init.add_argument("--force", action="store_true", help="overwrite an existing --output file")
    init.set_defaults(run=_policy_init)
    return parser


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {text!r}")
    return number


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a date in the form YYYY-MM-DD: {text!r}") from error


def _apply(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.engine.executor import govern
    from airflow_phi_guard.policy.loader import load_policy

    policy = load_policy(arguments.policy)
    as_of = arguments.as_of or datetime.now(UTC).date()
    key = os.environ.get(PSEUDONYM_KEY_VARIABLE)
    lineage = _CliLineage(arguments, policy, as_of) if arguments.events else None
    if lineage:
        lineage.start()

    try:
        _require_input(arguments.input)
        result = govern(
            policy,
            arguments.input,
            arguments.output,
            consent=arguments.consent,
            as_of=as_of,
            pseudonym_key=key.encode() if key else None,
        )
        if arguments.report:
            result.write_report(arguments.report)
    except Exception:
        if lineage:
            lineage.fail()
        raise

    report = result.report
    if lineage:
        lineage.finish(result)
    _print_report(report, console)
    if report.published:
        return EXIT_PUBLISHED
    try:
        result.raise_for_verdict(str(arguments.report) if arguments.report else None)
    except PolicyViolationError as error:
        _say("refused:", str(error))
    return EXIT_REFUSED


def _plan(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.engine.plan import make_plan
    from airflow_phi_guard.engine.source import open_source
    from airflow_phi_guard.policy.loader import load_policy

    policy = load_policy(arguments.policy)
    _require_input(arguments.input)
    plan = make_plan(policy, open_source(arguments.input).schema)
    table = Table(title=f"plan of policy {policy.name} v{policy.version} ({policy.digest[:19]})")
    for heading in ("source column", "identifier", "treatment", "output column"):
        table.add_column(heading)
    for column in plan.columns:
        table.add_row(
            column.source,
            column.identifier.letter if column.identifier else "-",
            column.treatment.value if column.declared else "drop (undeclared)",
            column.output or "-",
        )
    console.print(table)
    for refusal in plan.refusals:
        _say("would refuse:", refusal.message)
    return EXIT_REFUSED if plan.refusals else EXIT_PUBLISHED


def _audit(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.lineage import audit

    events = audit.read_events(arguments.events)
    if arguments.model:
        name, _, version = arguments.model.partition(":")
        answers = [audit.audit_model(events, name, version or None)]
    else:
        answers = audit.audit_all(events)
    if arguments.format == "json":
        sys.stdout.write(audit.render_json(answers if not arguments.model else answers[0]))
    else:
        for answer in answers:
            sys.stdout.write(audit.render_text(answer))
    return EXIT_PUBLISHED


def _scan(arguments: argparse.Namespace, console: Console) -> int:
    _require_input(arguments.input)
    report = _scan_with_progress(arguments.input, arguments.sample_rows)
    if arguments.format == "json":
        sys.stdout.write(report.to_json())
        return EXIT_PUBLISHED

    sample = f", first {arguments.sample_rows} asked" if arguments.sample_rows else ""
    table = Table(title=f"PHI scan of {report.input} ({report.rows_scanned} row(s){sample})")
    # a column name cut short with an ellipsis could be read as another column's
    table.add_column("column", overflow="fold")
    for heading in ("identifier", "confidence"):
        table.add_column(heading, no_wrap=True, min_width=len(heading))
    table.add_column("evidence")
    for heading in ("runner-up", "rows", "matches"):
        table.add_column(heading, no_wrap=True)
    for verdict in report.columns:
        table.add_row(
            verdict.column,
            verdict.identifier.letter if verdict.identifier else "-",
            verdict.confidence.value if verdict.confidence else "-",
            "; ".join(item.describe() for item in verdict.evidence) or "-",
            verdict.runner_up.letter if verdict.runner_up else "-",
            str(verdict.rows_scanned),
            str(verdict.matches),
        )
    console.print(table)
    found = sorted(set(report.identifiers.values()))
    for identifier in found:
        console.print(f"  {identifier.letter}: {identifier.description}")
    console.print(f"{len(report.identifiers)} of {len(report.columns)} column(s) hold an identifier")
    return EXIT_PUBLISHED


def _policy_init(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.engine.source import open_source
    from airflow_phi_guard.policy import draft

    output: Path | None = arguments.output
    if output is not None and output.exists() and not arguments.force:
        _say("error:", f"{output} exists; a draft never replaces a policy unless --force is given")
        return EXIT_USAGE
    _require_input(arguments.input)

    report = _scan_with_progress(arguments.input, arguments.sample_rows)
    policy = draft.draft_policy(
        report,
        open_source(arguments.input).schema,
        name=arguments.name,
        purpose=arguments.purpose or draft.DEFAULT_PURPOSE,
        recipient=arguments.recipient or draft.DEFAULT_RECIPIENT,
    )
    text = policy.to_yaml()
    if output is None:
        sys.stdout.write(text)
    else:
        write_text_atomically(output, text)

    treatments = list(policy.treatments().values())
    summary = ", ".join(f"{treatments.count(kind)} {kind}" for kind in dict.fromkeys(treatments))
    where = f"written to {output}" if output else "written to standard output"
    # the summary goes to standard error when the draft itself is on standard output
    say = console.print if output else Console(stderr=True, soft_wrap=True, markup=False).print
    say(
        f"draft policy {policy.name} {where}: {len(treatments)} column(s) ({summary}), "
        f"method {policy.method}; write the {len(treatments)} justification(s), then check it with "
        "`phi-guard plan`"
    )
    return EXIT_PUBLISHED


def _scan_with_progress(path: Path, sample_rows: int | None) -> ScanReport:
    """Scan ``path``, with a progress bar on standard error when it is a terminal (never in a pipe)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from airflow_phi_guard.phi.inventory import scan_dataset

    # isatty itself, not Rich's is_terminal, which FORCE_COLOR turns on in a CI log or a pipe
    isatty = getattr(sys.stderr, "isatty", None)
    if not (isatty and isatty()):
        return scan_dataset(path, sample_rows=sample_rows)
    errors = Console(file=sys.stderr, force_terminal=True, markup=False, highlight=False)

    columns = (SpinnerColumn(), TextColumn("scanning"), BarColumn(), TextColumn("{task.completed} rows"))
    with Progress(*columns, TimeElapsedColumn(), console=errors, transient=True) as bar:
        task = bar.add_task("scan", total=sample_rows or _row_count(path))
        return scan_dataset(
            path, sample_rows=sample_rows, progress=lambda rows: bar.update(task, completed=rows)
        )


def _row_count(path: Path) -> int | None:
    """The rows of a Parquet dataset, from its metadata; None for CSV, which would have to be read twice."""
    from airflow_phi_guard.engine.source import open_source

    if path.suffix.lower() == ".csv":
        return None
    return open_source(path).count_rows()


def _print_report(report: GovernanceReport, console: Console) -> None:
    rows = report.rows
    columns = sum(1 for column in report.columns if column.output)
    # a refused run published nothing; its plan's column count is no "published" count
    outcome = f"{columns} column(s) published" if report.published else "nothing published"
    console.print(
        f"{report.verdict.value}: policy {report.policy.name} v{report.policy.version}, "
        f"{rows.admitted} of {rows.read} row(s) admitted, {outcome}"
    )
    for reason, count in rows.excluded.items():
        console.print(f"  excluded {reason}: {count}")


class _CliLineage:
    """START, then COMPLETE or FAIL, appended to an event log; never fails the command."""

    def __init__(self, arguments: argparse.Namespace, policy: Policy, as_of: date) -> None:
        from airflow_phi_guard.lineage.emit import new_run_id

        self.arguments = arguments
        self.policy = policy
        self.as_of = as_of
        self.run_id = new_run_id()
        self.job_name = f"apply.{policy.name}"

    def finish(self, result: GovernanceResult) -> None:
        from airflow_phi_guard.lineage.build import lineage_for_report

        event_type = "COMPLETE" if result.report.published else "FAIL"
        self._emit(
            event_type,
            lambda: lineage_for_report(
                result.report,
                self.policy,
                input_schema=result.plan.schema,
                output_schema=result.output_schema,
            ),
        )

    def fail(self) -> None:
        self._emit("FAIL", self._start_lineage)

    def start(self) -> None:
        self._emit("START", self._start_lineage)

    def _start_lineage(self) -> RunLineage:
        from airflow_phi_guard.lineage.build import lineage_for_start

        return lineage_for_start(
            self.policy,
            input_path=self.arguments.input,
            output_path=self.arguments.output,
            consent_registry=self.arguments.consent,
            as_of=self.as_of,
        )

    def _emit(self, event_type: str, build: Callable[[], RunLineage]) -> None:
        """Build and emit one event; lineage never fails the command (emission itself never raises)."""
        from airflow_phi_guard.lineage.emit import DEFAULT_JOB_NAMESPACE, emit_event

        try:
            lineage = build()
        except Exception as error:
            log.warning("could not build the OpenLineage %s event: %s", event_type, type(error).__name__)
            log.debug("lineage failure details", exc_info=True)
            return
        emit_event(
            event_type,
            lineage,
            events_path=self.arguments.events,
            job_namespace=DEFAULT_JOB_NAMESPACE,
            job_name=self.job_name,
            run_id=self.run_id,
        )


if __name__ == "__main__":
    raise SystemExit(main())
