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

from airflow_phi_guard.exceptions import (
    ConsentRegistryError,
    PhiGuardError,
    PolicyError,
    PolicyViolationError,
)
from airflow_phi_guard.files import write_text_atomically
from airflow_phi_guard.report import GovernanceReport

if TYPE_CHECKING:
    from airflow_phi_guard.consent.sources import ConsentSource
    from airflow_phi_guard.engine.executor import GovernanceResult
    from airflow_phi_guard.lineage.audit import AuditQuery, EventSource
    from airflow_phi_guard.lineage.build import RunLineage
    from airflow_phi_guard.phi.inventory import ScanReport
    from airflow_phi_guard.policy.models import Policy
    from airflow_phi_guard.recipients.models import RecipientRegistry

log = logging.getLogger(__name__)

EXIT_PUBLISHED = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

PSEUDONYM_KEY_VARIABLE = "PHI_GUARD_PSEUDONYM_KEY"
#: The variable of the date shift key (engine.executor.DATE_SHIFT_KEY_VARIABLE, spelled out so that this
#: module stays cheap to import).
DATE_SHIFT_KEY_VARIABLE = "PHI_GUARD_DATE_SHIFT_KEY"
#: The variable of the subject manifest key (the same name as consent.manifest.MANIFEST_KEY_VARIABLE,
#: spelled out so that this module stays cheap to import).
MANIFEST_KEY_VARIABLE = "PHI_GUARD_MANIFEST_KEY"
#: The lineage archive's table when none is given (lineage.archive.DEFAULT_ARCHIVE_TABLE, spelled out so
#: that this module stays cheap to import; a test holds the two equal).
DEFAULT_ARCHIVE_TABLE = "phi_guard.lineage_events"

RECIPIENTS_TABLE_HELP = "the recipient registry table of a database --recipients, schema.table"


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
        # Never str(error) nor a library's strerror: pyarrow puts whole paths (partition folders, whose
        # names hold values) and data into them. The errno's own text, and the file up to its first
        # partition folder.
        reason = os.strerror(error.errno) if error.errno else "I/O error"
        where = f" ({_without_partition_folders(error.filename)})" if error.filename else ""
        _say("error:", f"{type(error).__name__}: {_own_reason(error, reason)}{where}")
        return EXIT_ERROR
    except Exception as error:
        # the message of an unexpected error may quote data: name its class only
        _say("error:", f"unexpected {type(error).__name__}; its message is withheld")
        return EXIT_ERROR


def _own_reason(error: OSError, reason: str) -> str:
    """This package's own reason for an I/O error (counts and no path), else the errno's text."""
    own = error.strerror if isinstance(error.strerror, str) else None
    return own if own and "/" not in own and "=" not in own else reason


def _without_partition_folders(filename: object) -> str:
    """A path cut before its first ``key=value`` folder, whose name holds a value."""
    parts = Path(os.fsdecode(filename) if isinstance(filename, str | bytes) else str(filename)).parts
    for index, part in enumerate(parts):
        if "=" in part:
            return f"{Path(*parts[:index])} (a file below it)"
    return str(Path(*parts)) if parts else ""


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
    apply.add_argument(
        "--input",
        required=True,
        type=Path,
        action="append",
        help="the source dataset: a Parquet or CSV file, a folder of them (hive partitions become columns), "
        "or a quoted glob pattern; repeat it to give a list of files",
    )
    apply.add_argument(
        "--output", required=True, type=Path, help="the governed Parquet file (folder with --partition-by)"
    )
    apply.add_argument(
        "--partition-by",
        action="append",
        default=[],
        metavar="COLUMN",
        help="publish --output as a folder hive-partitioned by this output column, outermost first; repeat "
        "for nested folders. Folder names are outside the dataset: identifiers, pseudonyms, shifted dates "
        "and kept text are refused",
    )
    apply.add_argument(
        "--consent",
        help="the consent registry: a CSV or Parquet path or fsspec URL (memory://, file://, s3://...), "
        "or a SQLAlchemy URL (postgresql+psycopg://user@host:5432/db) with --consent-table or "
        "--consent-query",
    )
    apply.add_argument("--consent-table", help="the registry table of a database --consent, schema.table")
    apply.add_argument("--consent-query", help="instead of a table, a query returning the registry's columns")
    apply.add_argument("--as-of", type=_iso_date, default=None, help="reference date, YYYY-MM-DD (today)")
    apply.add_argument("--report", type=Path, help="write the governance report (JSON) here")
    apply.add_argument("--events", type=Path, help="append OpenLineage START and COMPLETE/FAIL events here")
    apply.add_argument(
        "--surrogate-mapping",
        help="the private mapping of surrogate codes: a Parquet file (locked for the run), or a SQLAlchemy "
        "URL with --surrogate-mapping-table",
    )
    apply.add_argument("--surrogate-mapping-table", help="the mapping table of a database, schema.table")
    apply.add_argument(
        "--recipients",
        help="the recipient registry: a YAML file, or a SQLAlchemy URL with --recipients-table; the "
        "policy's recipient must be in it and fit for the output",
    )
    apply.add_argument("--recipients-table", help=RECIPIENTS_TABLE_HELP)
    apply.add_argument(
        "--trail", help="record the run in this audit trail: a JSONL file, or a PostgreSQL URL[#schema.table]"
    )
    apply.add_argument(
        "--engine",
        choices=("arrow", "spark"),
        default="arrow",
        help="arrow (default): one streaming pass in this process; spark: the same plan on Spark in local "
        "mode (needs the spark extra and Java; one Parquet input; publishes a folder of parts)",
    )
    apply.set_defaults(run=_apply)

    trail = commands.add_parser("trail", help="the hash-chained audit trail of decisions")
    trail_commands = trail.add_subparsers(required=True, metavar="COMMAND")
    verify = trail_commands.add_parser(
        "verify", help="check that no record was edited, deleted, inserted or moved, and say where"
    )
    verify.add_argument("--trail", required=True, help="a JSONL file, or a PostgreSQL URL[#schema.table]")
    verify.add_argument(
        "--events",
        type=Path,
        action="append",
        default=[],
        help="an OpenLineage event log whose recorded trail heads must be in the chain (shows a cut tail); "
        "may be repeated",
    )
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(run=_trail_verify)

    assess = commands.add_parser(
        "assess", help="the AI risk assessment of a model: BAAs, de-identification, inference logging, risk"
    )
    assess_origin = assess.add_mutually_exclusive_group(required=True)
    assess_origin.add_argument("--events", type=Path, help="an OpenLineage event log (JSON lines)")
    assess_origin.add_argument("--archive", help="the lineage archive's PostgreSQL URL")
    assess.add_argument("--archive-table", help=f"the archive table, schema.table ({DEFAULT_ARCHIVE_TABLE})")
    assess.add_argument("--model", required=True, help="NAME or NAME:VERSION")
    assess.add_argument("--trail", help="the audit trail: a JSONL file, or a PostgreSQL URL[#schema.table]")
    assess.add_argument(
        "--recipients",
        help="the recipient registry: a YAML file, or a SQLAlchemy URL with --recipients-table",
    )
    assess.add_argument("--recipients-table", help=RECIPIENTS_TABLE_HELP)
    assess.add_argument("--format", choices=("text", "json", "html"), default="text")
    assess.add_argument("--output", type=Path, help="write it here; standard output when omitted")
    assess.set_defaults(run=_assess)

    gate = commands.add_parser(
        "gate", help="may a governed set go to a destination: the recipient gate, outside Airflow"
    )
    gate.add_argument("--report", required=True, type=Path, help="the governance report (JSON)")
    gate.add_argument("--destination", required=True, help="the URI or path the export would write to")
    gate.add_argument(
        "--recipients",
        help="the recipient registry: a YAML file, or a SQLAlchemy URL with --recipients-table; "
        "PHI_GUARD_RECIPIENT_REGISTRY by default",
    )
    gate.add_argument("--recipients-table", help=RECIPIENTS_TABLE_HELP)
    gate.add_argument("--date", type=_iso_date, default=None, help="the run date, YYYY-MM-DD (today)")
    gate.add_argument("--format", choices=("text", "json"), default="text")
    gate.set_defaults(run=_gate)

    plan = commands.add_parser("plan", help="show what a policy would do to each column, reading no rows")
    plan.add_argument("--policy", required=True, type=Path)
    plan.add_argument("--input", required=True, type=Path)
    plan.set_defaults(run=_plan)

    audit = commands.add_parser(
        "audit", help="which PHI reached which model, from OpenLineage events or their archive"
    )
    origin = audit.add_mutually_exclusive_group(required=True)
    origin.add_argument("--events", type=Path, help="an OpenLineage event log (JSON lines)")
    origin.add_argument(
        "--archive", help="the lineage archive's PostgreSQL URL (see `phi-guard lineage archive`)"
    )
    audit.add_argument("--archive-table", help=f"the archive table, schema.table ({DEFAULT_ARCHIVE_TABLE})")
    audit.add_argument("--model", help="NAME or NAME:VERSION; every model when omitted")
    audit.add_argument("--dataset", help="with --column: a source dataset, as the audit prints it (a URI)")
    audit.add_argument("--column", help="with --dataset: the source column whose models are listed")
    audit.add_argument("--since", type=_window_start, help="runs completed from, an ISO date or timestamp")
    audit.add_argument("--until", type=_window_end, help="runs completed before (a date: through that day)")
    audit.add_argument(
        "--format", choices=("text", "json", "html"), default="text", help="html: a page with the graph"
    )
    audit.add_argument("--output", type=Path, help="write the answer here; standard output when omitted")
    audit.set_defaults(run=_audit)

    datasheet = commands.add_parser(
        "datasheet", help="the training-data section of a model's EU AI Act documentation, from lineage"
    )
    datasheet_origin = datasheet.add_mutually_exclusive_group(required=True)
    datasheet_origin.add_argument("--events", type=Path, help="an OpenLineage event log (JSON lines)")
    datasheet_origin.add_argument("--archive", help="the lineage archive's PostgreSQL URL")
    datasheet.add_argument(
        "--archive-table", help=f"the archive table, schema.table ({DEFAULT_ARCHIVE_TABLE})"
    )
    datasheet.add_argument("--model", required=True, help="NAME or NAME:VERSION")
    datasheet.add_argument("--format", choices=("markdown", "html"), default="markdown")
    datasheet.add_argument("--output", type=Path, help="write it to this file; standard output when omitted")
    datasheet.set_defaults(run=_datasheet)

    lineage = commands.add_parser("lineage", help="keep OpenLineage events")
    lineage_commands = lineage.add_subparsers(required=True, metavar="COMMAND")
    archive = lineage_commands.add_parser(
        "archive", help="load event logs into the PostgreSQL lineage archive; loading twice adds nothing"
    )
    archive.add_argument("--events", required=True, nargs="+", type=Path, help="OpenLineage event logs")
    archive.add_argument(
        "--archive", required=True, help="a PostgreSQL URL, postgresql+psycopg://user@host/db"
    )
    archive.add_argument("--archive-table", help=f"the archive table, schema.table ({DEFAULT_ARCHIVE_TABLE})")
    archive.add_argument(
        "--retention-years",
        type=_positive_int,
        default=6,
        help="years to keep each event; at least 6 (HIPAA)",
    )
    archive.set_defaults(run=_lineage_archive)

    impact = commands.add_parser(
        "impact", help="which runs and models hold subjects whose consent has since ended, counted"
    )
    impact.add_argument("--events", required=True, type=Path, help="an OpenLineage event log (JSON lines)")
    impact.add_argument(
        "--consent",
        required=True,
        help="the consent registry as it is now: a file, an fsspec URL, or a SQLAlchemy URL with "
        "--consent-table or --consent-query",
    )
    impact.add_argument("--consent-table", help="the registry table of a database --consent, schema.table")
    impact.add_argument("--consent-query", help="a query that returns the registry from a database --consent")
    impact.add_argument("--as-of", type=_iso_date, default=None, help="judge consent at, YYYY-MM-DD (today)")
    impact.add_argument("--format", choices=("text", "json"), default="text")
    impact.set_defaults(run=_impact)

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
    schema = policy_commands.add_parser(
        "schema", help="print the JSON Schema of a policy file, for editors; or write or check a copy of it"
    )
    schema_target = schema.add_mutually_exclusive_group()
    schema_target.add_argument("--output", type=Path, help="the file to write; standard output when omitted")
    schema_target.add_argument(
        "--check", type=Path, metavar="FILE", help="write nothing; exit 1 when FILE differs from the export"
    )
    schema.set_defaults(run=_policy_schema)

    expectations = commands.add_parser("expectations", help="Great Expectations suites from policies")
    expectations_commands = expectations.add_subparsers(required=True, metavar="COMMAND")
    generate = expectations_commands.add_parser(
        "generate", help="write the suite each policy implies, as GX JSON, for version control"
    )
    generate.add_argument(
        "--policy",
        action="append",
        type=Path,
        help="a policy file; repeat for several (every dags/policies/*.yaml by default)",
    )
    generate.add_argument("--output-dir", type=Path, default=Path("expectations"), help="(expectations/)")
    generate.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a committed suite drifted"
    )
    generate.set_defaults(run=_expectations_generate)
    return parser


def _expectations_generate(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.policy.loader import load_policy
    from airflow_phi_guard.quality.policy_suites import drifted_suites, write_policy_suites

    paths = arguments.policy or sorted(Path("dags", "policies").glob("*.yaml"))
    if not paths:
        _say("error:", "no policy given and none found in dags/policies; name one with --policy")
        return EXIT_USAGE
    for path in paths:
        _require_input(path)
    policies = [load_policy(path) for path in paths]
    if arguments.check:
        drifted = drifted_suites(policies, arguments.output_dir)
        for line in drifted:
            _say("drifted:", line)
        if drifted:
            return EXIT_ERROR
        console.print(f"{len(policies)} suite(s) in {arguments.output_dir} match their policies")
        return EXIT_PUBLISHED
    for written in write_policy_suites(policies, arguments.output_dir):
        console.print(f"wrote {written}")
    return EXIT_PUBLISHED


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


def _govern_on_spark(
    policy: Policy, source: object, arguments: argparse.Namespace, options: dict[str, object]
) -> GovernanceResult:
    """The run on Spark in local mode, with the options of the Arrow run."""
    from airflow_phi_guard.engine.spark import govern_spark, local_session

    return govern_spark(
        policy,
        source,
        arguments.output,
        spark=local_session(),
        partition_by=arguments.partition_by,
        **options,
    )


def _apply(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.engine.executor import govern
    from airflow_phi_guard.policy.loader import load_policy

    policy = load_policy(arguments.policy)
    as_of = arguments.as_of or datetime.now(UTC).date()
    key = os.environ.get(PSEUDONYM_KEY_VARIABLE)
    manifest_key = os.environ.get(MANIFEST_KEY_VARIABLE)
    date_shift_key = os.environ.get(DATE_SHIFT_KEY_VARIABLE)
    lineage = _CliLineage(arguments, policy, as_of) if arguments.events else None
    if lineage:
        lineage.start()

    options = {
        "consent": _consent_source(arguments),
        "as_of": as_of,
        "pseudonym_key": key.encode() if key else None,
        "manifest_key": manifest_key.encode() if manifest_key else None,
        "date_shift_key": date_shift_key.encode() if date_shift_key else None,
        "surrogate_mapping": _surrogate_mapping(arguments),
        "trail": arguments.trail,
        "recipients": _recipient_registry(arguments),
    }
    try:
        if arguments.engine == "spark":
            result = _govern_on_spark(policy, _source(arguments.input), arguments, options)
        else:
            result = govern(
                policy,
                _source(arguments.input),
                arguments.output,
                partition_by=arguments.partition_by,
                **options,
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


def _source(inputs: list[Path]) -> Path | list[Path]:
    """The source the ``--input`` arguments name: one path or glob pattern, or the list of files given."""
    from airflow_phi_guard.engine.source import is_source_pattern

    for path in inputs:
        if not is_source_pattern(path):
            _require_input(path)
    return inputs[0] if len(inputs) == 1 else inputs


def _trail_verify(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.trail.anchors import verify_trail
    from airflow_phi_guard.trail.store import open_trail

    for path in arguments.events:
        _require_input(path)
    if "://" not in arguments.trail:
        _require_input(Path(arguments.trail))
    verification = verify_trail(open_trail(arguments.trail), arguments.events)
    if arguments.format == "json":
        sys.stdout.write(verification.model_dump_json(indent=2) + "\n")
    else:
        console.print(verification.describe())
    return EXIT_PUBLISHED if verification.intact else EXIT_REFUSED


def _recipient_registry(
    arguments: argparse.Namespace, *, location: str | None = None, require_file: bool = False
) -> RecipientRegistry | None:
    """The registry ``--recipients`` (with ``--recipients-table`` for a database) names, or None.

    :param arguments: the command's arguments.
    :param location: the registry when ``--recipients`` is not given (an environment variable's value).
    :param require_file: whether a missing YAML file is an I/O error, as for the command's other inputs.
    """
    from airflow_phi_guard.exceptions import RecipientRegistryError
    from airflow_phi_guard.recipients.sql import read_recipient_registry

    location = arguments.recipients or location
    table = arguments.recipients_table
    if not location:
        if table:
            raise RecipientRegistryError(
                "--recipients-table", None, None, "needs --recipients, the URL of the database that holds it"
            )
        return None
    if require_file and "://" not in location:
        _require_input(Path(location))
    return read_recipient_registry(location, table=table)


def _gate(arguments: argparse.Namespace, console: Console) -> int:
    """The recipient gate on a report: exit 0 when the export may go, 3 when it is refused."""
    import json

    from airflow_phi_guard.recipients.gate import Release, decide
    from airflow_phi_guard.recipients.registry import RECIPIENT_REGISTRY_VARIABLE

    registry = _recipient_registry(arguments, location=os.environ.get(RECIPIENT_REGISTRY_VARIABLE))
    if registry is None:
        _say("error:", f"give --recipients, or set {RECIPIENT_REGISTRY_VARIABLE}")
        return EXIT_USAGE
    _require_input(arguments.report)
    try:
        release = Release.from_report(json.loads(arguments.report.read_text(encoding="utf-8")))
    except ValueError:
        _say("error:", f"{arguments.report} is not a governance report (JSON); nothing may be exported")
        return EXIT_ERROR
    decision = decide(release, arguments.destination, registry, arguments.date or datetime.now(UTC).date())

    if arguments.format == "json":
        console.print_json(decision.model_dump_json())
    else:
        console.print(
            f"{'allowed' if decision.allowed else 'refused'}: policy {decision.policy} ({decision.data}) to "
            f"{decision.destination}, recipient {decision.recipient or '-'}, agreement "
            f"{decision.agreement or '-'}, on {decision.run_date.isoformat()} ({', '.join(decision.rules)})"
        )
    for refusal in decision.refusals:
        _say("refused:", refusal)
    return EXIT_PUBLISHED if decision.allowed else EXIT_REFUSED


def _assess(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard import assess
    from airflow_phi_guard.lineage import audit
    from airflow_phi_guard.trail.store import open_trail

    name, _, version = arguments.model.partition(":")
    if arguments.archive is not None:
        from airflow_phi_guard.lineage.archive import LineageArchive

        with LineageArchive(arguments.archive, arguments.archive_table or DEFAULT_ARCHIVE_TABLE) as source:
            events = source.events_for(audit.ModelQuery(name, version or None))
    else:
        _require_input(arguments.events)
        events = audit.read_events(arguments.events)
    registry = _recipient_registry(arguments, require_file=True)
    if arguments.trail is not None and "://" not in arguments.trail:
        _require_input(Path(arguments.trail))
    trail = open_trail(arguments.trail) if arguments.trail is not None else None

    result = assess.assess(events, name, version or None, trail=trail, recipients=registry)
    render = {"json": assess.render_json, "html": assess.render_html}.get(
        arguments.format, assess.render_text
    )
    _write_output(arguments.output, render(result))
    return EXIT_PUBLISHED if result.passed else EXIT_REFUSED


def _surrogate_mapping(arguments: argparse.Namespace) -> object:
    """The surrogate mapping ``--surrogate-mapping`` names: a Parquet path, or a database table."""
    from airflow_phi_guard.exceptions import SurrogateMappingError

    mapping, table = arguments.surrogate_mapping, arguments.surrogate_mapping_table
    if mapping is None:
        if table:
            raise SurrogateMappingError(
                ["--surrogate-mapping-table needs --surrogate-mapping, a database URL"]
            )
        return None
    if "://" not in mapping:
        if table:
            raise SurrogateMappingError(
                ["--surrogate-mapping-table is for a database URL, not a Parquet file"]
            )
        return Path(mapping)
    if not table:
        raise SurrogateMappingError(["a database --surrogate-mapping needs --surrogate-mapping-table"])
    from airflow_phi_guard.deid.surrogate import SqlMappingStore

    return SqlMappingStore.from_url(mapping, table)


def _consent_source(arguments: argparse.Namespace) -> ConsentSource | None:
    """The registry ``--consent`` names (with ``--consent-table`` or ``--consent-query`` for a database)."""
    from airflow_phi_guard.consent.sources import consent_source

    table, query = getattr(arguments, "consent_table", None), getattr(arguments, "consent_query", None)
    if arguments.consent is None:
        if table is not None or query is not None:
            raise ConsentRegistryError(
                ["--consent-table and --consent-query need a database URL as --consent"]
            )
        return None
    return consent_source(arguments.consent, table=table, query=query)


def _consent_name(arguments: argparse.Namespace) -> str | None:
    """The registry's display name for lineage (never a password), or None without a registry."""
    source = _consent_source(arguments)
    return source.display_name if source is not None else None


def _plan(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.engine.plan import make_plan
    from airflow_phi_guard.engine.source import open_source
    from airflow_phi_guard.policy.loader import load_policy

    policy = load_policy(arguments.policy)
    plan = make_plan(policy, open_source(_source([arguments.input])).schema)
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

    if (arguments.dataset is None) != (arguments.column is None):
        _say("error:", "--dataset and --column go together: the source column of one dataset")
        return EXIT_USAGE
    window = arguments.since is not None or arguments.until is not None
    if arguments.dataset is not None and (arguments.model or window):
        _say("error:", "--dataset/--column cannot be combined with --model, --since or --until")
        return EXIT_USAGE
    name, _, version = (arguments.model or "").partition(":")
    if arguments.dataset is not None:
        query: audit.AuditQuery = audit.ColumnQuery(arguments.dataset, arguments.column)
    elif window:
        query = audit.WindowQuery(arguments.since, arguments.until)
    elif arguments.model:
        query = audit.ModelQuery(name, version or None)
    else:
        query = audit.AllModelsQuery()

    if arguments.archive is not None:
        from airflow_phi_guard.lineage.archive import LineageArchive

        with LineageArchive(arguments.archive, arguments.archive_table or DEFAULT_ARCHIVE_TABLE) as source:
            answer, events = _answer_with_events(source, query)
    else:
        answer, events = _answer_with_events(audit.EventLogSource((arguments.events,)), query)

    if isinstance(answer, audit.WindowAudit) and arguments.model:
        kept = [
            model
            for model in answer.models
            if model.model.name == name and (not version or model.model.version == version)
        ]
        answer = answer.model_copy(update={"models": kept})
    if arguments.format == "html":
        from airflow_phi_guard.lineage import html

        text = html.render_html(answer, events)
    elif arguments.format == "json":
        text = audit.render_json(answer)
    elif isinstance(answer, audit.ColumnAudit):
        text = audit.render_column_text(answer)
    elif isinstance(answer, audit.WindowAudit):
        text = audit.render_window_text(answer)
    else:
        text = "".join(
            audit.render_text(each) for each in ([answer] if isinstance(answer, audit.ModelAudit) else answer)
        )
    _write_output(arguments.output, text)
    return EXIT_PUBLISHED


def _answer_with_events(source: EventSource, query: AuditQuery) -> tuple[object, list[dict]]:
    """The audit's answer and the events it read, for the HTML page's graph (one reading of an archive)."""
    from airflow_phi_guard.lineage.html import answer_with_events

    return answer_with_events(source, query)


def _write_output(output: Path | None, text: str) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        write_text_atomically(output, text)


def _datasheet(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.lineage import audit, datasheet

    name, _, version = arguments.model.partition(":")
    query = audit.ModelQuery(name, version or None)
    if arguments.archive is not None:
        from airflow_phi_guard.lineage.archive import LineageArchive

        # The archive selects a model's governance runs and the runs that wrote from their output; a
        # validation run writes nothing, so its results are only in a datasheet built from an event log.
        with LineageArchive(arguments.archive, arguments.archive_table or DEFAULT_ARCHIVE_TABLE) as source:
            events = source.events_for(query)
    else:
        _require_input(arguments.events)
        events = audit.EventLogSource((arguments.events,)).events_for(query)

    sheet = datasheet.build_datasheet(events, name, version or None)
    if arguments.format == "html":
        text = datasheet.render_html(sheet, events)
    else:
        text = datasheet.render_markdown(sheet)
    _write_output(arguments.output, text)
    if arguments.output is not None:
        console.print(f"datasheet of model {arguments.model} written to {arguments.output}")
    return EXIT_PUBLISHED


def _lineage_archive(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.lineage.archive import LineageArchive

    for path in arguments.events:
        _require_input(path)
    with LineageArchive(arguments.archive, arguments.archive_table or DEFAULT_ARCHIVE_TABLE) as archive:
        summary = archive.load(arguments.events, retention_years=arguments.retention_years)
        console.print(f"{summary.describe()} ({archive.display_name})")
    return EXIT_PUBLISHED


def _window_start(text: str) -> datetime:
    return _instant(text, end=False)


def _window_end(text: str) -> datetime:
    return _instant(text, end=True)


def _instant(text: str, *, end: bool) -> datetime:
    from airflow_phi_guard.lineage.audit import parse_instant

    try:
        return parse_instant(text, end=end)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"not an ISO date (YYYY-MM-DD) or timestamp (YYYY-MM-DDTHH:MM:SS+00:00): {text!r}"
        ) from error


def _impact(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.consent import impact
    from airflow_phi_guard.consent.sources import read_consent_registry
    from airflow_phi_guard.lineage.audit import read_events

    events = read_events(arguments.events)
    registry = read_consent_registry(_consent_source(arguments))
    key = os.environ.get(MANIFEST_KEY_VARIABLE)
    answer = impact.revocation_impact(
        events,
        registry,
        arguments.as_of or datetime.now(UTC).date(),
        manifest_key=key.encode() if key else None,
    )
    if arguments.format == "json":
        sys.stdout.write(impact.render_json(answer))
    else:
        sys.stdout.write(impact.render_text(answer))
    if answer.unanswered:
        # An answer with runs missing must not pass for a complete one in a script.
        _say(
            "error:",
            f"{len(answer.unanswered)} of {len(answer.runs)} published run(s) could not be answered: "
            + "; ".join(f"{run.run_id}: {run.status.value}" for run in answer.unanswered[:10])
            + (f" and {len(answer.unanswered) - 10} more" if len(answer.unanswered) > 10 else ""),
        )
        return EXIT_ERROR
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


def _policy_schema(arguments: argparse.Namespace, console: Console) -> int:
    from airflow_phi_guard.policy import schema

    if arguments.check is not None:
        _require_input(arguments.check)
        drifted = schema.schema_drift(arguments.check)
        for line in drifted:
            _say("drifted:", line)
        if drifted:
            _say("to fix:", f"phi-guard policy schema --output {arguments.check}")
            return EXIT_ERROR
        console.print(f"{arguments.check} matches the policy models")
        return EXIT_PUBLISHED
    if arguments.output is None:
        sys.stdout.write(schema.policy_schema_text())
        return EXIT_PUBLISHED
    schema.write_policy_schema(arguments.output)
    console.print(f"wrote {arguments.output}")
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
        f"method {policy.method}; write {policy.to_write()}, then check it with `phi-guard plan`"
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
    if report.risk is not None:
        risk = report.risk
        console.print(
            f"re-identification risk over {', '.join(risk.quasi_identifiers)}: k {risk.k} (k_min "
            f"{risk.k_min}), {risk.classes} class(es), {risk.classes_below_k} below k_min, "
            f"{risk.suppressed_rows} row(s) suppressed, unique share {risk.unique_share:.4f}"
            + (f", l {risk.l} (l_min {risk.l_min})" if risk.l_min is not None else "")
        )
    if report.safe_harbor is not None:
        verdict = report.safe_harbor
        letters = ", ".join(f"{breach.column} ({breach.identifier.letter})" for breach in verdict.breaches)
        console.print(f"Safe Harbor: {verdict.status.value}" + (f": {letters}" if letters else ""))
        console.print(f"  {verdict.notice}")
    if report.published:
        manifest = report.manifest
        console.print(
            f"subject manifest of {manifest.subjects} subject(s) at {manifest.path} ({manifest.digest})"
            if manifest is not None
            else f"no subject manifest: {MANIFEST_KEY_VARIABLE} is not set, so `phi-guard impact` cannot "
            "answer for this run"
        )


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
        from airflow_phi_guard.lineage.build import lineage_for_report, trail_facet
        from airflow_phi_guard.trail.store import open_trail

        event_type = "COMPLETE" if result.report.published else "FAIL"
        head, trail = result.trail_head, self.arguments.trail
        self._emit(
            event_type,
            lambda: lineage_for_report(
                result.report,
                self.policy,
                input_schema=result.plan.schema,
                output_schema=result.output_schema,
                trail=trail_facet(open_trail(trail).display_name, head) if head and trail else None,
            ),
        )

    def fail(self) -> None:
        self._emit("FAIL", self._start_lineage)

    def start(self) -> None:
        self._emit("START", self._start_lineage)

    def _start_lineage(self) -> RunLineage:
        from airflow_phi_guard.engine.source import source_location
        from airflow_phi_guard.lineage.build import lineage_for_start

        # The START event names the input even when it is missing, so that the FAIL event that follows has
        # a run to close: the input is checked when the run reads it, not here.
        inputs = self.arguments.input
        return lineage_for_start(
            self.policy,
            input_path=source_location(inputs[0] if len(inputs) == 1 else inputs),
            output_path=self.arguments.output,
            consent_registry=_consent_name(self.arguments),
            as_of=self.as_of,
        )

    def _emit(self, event_type: str, build: Callable[[], RunLineage]) -> None:
        """Build and emit one event; lineage never fails the command."""
        from airflow_phi_guard.lineage.emit import DEFAULT_JOB_NAMESPACE, emit_built

        emit_built(
            event_type,
            build,
            events_path=self.arguments.events,
            job_namespace=DEFAULT_JOB_NAMESPACE,
            job_name=self.job_name,
            run_id=self.run_id,
        )


if __name__ == "__main__":
    raise SystemExit(main())
