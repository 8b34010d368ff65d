"""Engine-neutral steps of a governance run: the checks before rows are read, the treatments as pyarrow
functions, the counts of a pass, the risk gate, publication and withdrawal, and the governance report."""

from __future__ import annotations

import hmac
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_phi_guard.consent import manifest as subject_manifest
from airflow_phi_guard.consent.admission import ConsentAdmission
from airflow_phi_guard.consent.purposes import covering_codes
from airflow_phi_guard.consent.registry import DATE_RULE
from airflow_phi_guard.consent.sources import ConsentSource, consent_display_name, read_consent_registry
from airflow_phi_guard.deid import dateshift, generalize, treatments
from airflow_phi_guard.deid.methods import is_birth_date, option_refusal, record_refusals
from airflow_phi_guard.deid.risk import ReidentificationRisk, RiskAccumulator, risk_refusals
from airflow_phi_guard.deid.surrogate import MappingStore, SurrogateCodes, locked_parquet_mapping
from airflow_phi_guard.deid.verdict import (
    SafeHarborBreach,
    SafeHarborStatus,
    SafeHarborVerdict,
    safe_harbor_verdict,
)
from airflow_phi_guard.deid.zip3 import vintage_record
from airflow_phi_guard.engine.paths import check_output_apart
from airflow_phi_guard.engine.plan import ColumnPlan, Plan, Refusal
from airflow_phi_guard.engine.source import remove_dataset, replace_dataset
from airflow_phi_guard.exceptions import (
    ConsentRegistryError,
    ConsentSubjectMismatchError,
    DataProcessingError,
    DateShiftKeyError,
    DeidentificationRecordError,
    InvalidValuesError,
    ManifestKeyError,
    PseudonymKeyError,
    RecipientNotPermittedError,
    ReidentificationRiskError,
    ResidualPhiError,
    SurrogateMappingError,
    TreatmentNotApplicableError,
)
from airflow_phi_guard.phi.detectors import ValueDetector, scan_values
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.known import KnownValues
from airflow_phi_guard.policy.models import DeidentificationMethod, Policy, Treatment
from airflow_phi_guard.recipients.models import RecipientRegistry
from airflow_phi_guard.report import (
    ColumnDecision,
    ConsentSummary,
    DateShiftRecord,
    Finding,
    GovernanceReport,
    PolicyIdentity,
    RowCounts,
    SubjectManifestRecord,
    SurrogateMappingRecord,
    SurrogateNamespace,
    Verdict,
)

if TYPE_CHECKING:
    from airflow_phi_guard.trail.chain import TrailHead
    from airflow_phi_guard.trail.records import RunIds
    from airflow_phi_guard.trail.store import AuditTrail

log = logging.getLogger(__name__)

#: The shortest pseudonym key accepted: 256 bits, the size of the HMAC-SHA256 output.
MINIMUM_KEY_BYTES = 32


#: Where the CLI reads the date shift key outside Airflow; in Airflow, a connection's password.
DATE_SHIFT_KEY_VARIABLE = "PHI_GUARD_DATE_SHIFT_KEY"


_OUTPUT_TYPES = {
    Treatment.YEAR: pa.int32(),
    Treatment.AGE: pa.int32(),
    Treatment.BIRTH_YEAR: pa.int32(),
    Treatment.ZIP3: pa.string(),
    Treatment.PSEUDONYMIZE: pa.string(),
    Treatment.SURROGATE: pa.string(),
    Treatment.AGE_BAND: pa.string(),
    Treatment.MONTH: pa.string(),
    Treatment.QUARTER: pa.string(),
    Treatment.STATE: pa.string(),
}


#: A treatment of one column: its values and the batch they come from (a date shift reads the subject).
ColumnTreatment = Callable[[pa.Array, pa.RecordBatch], pa.Array]


@dataclass
class Tally:
    """The counts of a run as its passes add them up: rows read and admitted, exclusions by reason,
    identifiers found per column, values a treatment could not read, and refusals that are no count.

    Counts and column names only, never a value: the report is built from it.
    """

    read: int = 0
    admitted: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    findings: Counter[tuple[str, SafeHarborIdentifier]] = field(default_factory=Counter)
    invalid: dict[str, InvalidValuesError] = field(default_factory=dict)
    # the admission of the pass, which accumulates the consent counts; None until a batch was admitted
    admission: ConsentAdmission | None = None
    subject: str | None = None
    # refusals met during the pass that are no count: a surrogate mapping or a risk measure that failed
    failures: list[Refusal] = field(default_factory=list)
    suppressed: int = 0

    @property
    def refused(self) -> bool:
        return bool(self.findings or self.invalid or self.failures)


@dataclass(frozen=True)
class Keys:
    """The secret keys of a run, each None when not given: for ``pseudonymize``, for the subject manifest's
    hashes and for ``date-shift``. Only their fingerprints reach the report."""

    pseudonym: bytes | None
    manifest: bytes | None
    date_shift: bytes | None


@dataclass
class Deidentified:
    """What the run learnt about its de-identification along the way, for the report."""

    codes: dict[str, SurrogateCodes] = field(default_factory=dict)
    store: MappingStore | None = None
    committed: bool = False
    risk: ReidentificationRisk | None = None


@contextmanager
def mapping_store(
    policy: Policy, mapping: MappingStore | str | os.PathLike[str] | None
) -> Iterator[MappingStore | None]:
    """The surrogate mapping of the run; a Parquet file is locked for the whole run, so that two runs
    cannot give one new person two codes."""
    if mapping is None or not policy.uses(Treatment.SURROGATE):
        yield None
    elif isinstance(mapping, str | os.PathLike):
        with locked_parquet_mapping(mapping) as store:
            yield store
    else:
        yield mapping


def surrogate_codes(plan: Plan, store: MappingStore | None, deidentified: Deidentified) -> list[Refusal]:
    """Open the codes of every surrogate namespace the plan uses, before any row is read."""
    namespaces = sorted(
        {
            plan.policy.columns[column.source].namespace or ""
            for column in plan.published
            if column.treatment is Treatment.SURROGATE
        }
    )
    if not namespaces:
        return []
    if store is None:
        return [
            Refusal(
                SurrogateMappingError,
                "the policy gives columns surrogate codes but no surrogate mapping was given, so codes "
                "could not stay the same across runs; pass --surrogate-mapping (a Parquet file kept "
                "private) or, in Airflow, surrogate_mapping_path or surrogate_mapping_conn_id",
            )
        ]
    try:
        for namespace in namespaces:
            deidentified.codes[namespace] = SurrogateCodes(store, namespace)
    except SurrogateMappingError as error:
        return [Refusal(SurrogateMappingError, reason) for reason in error.refusals]
    return []


def commit_surrogates(deidentified: Deidentified) -> list[Refusal]:
    """Write the run's new surrogate codes, which only a run about to publish does; a failure refuses it.

    Namespaces are committed one by one: if a later one fails, the codes of the earlier ones stay in the
    mapping although nothing is published. That is harmless (those people keep those codes in later runs)
    and cannot be avoided without one transaction across stores.
    """
    try:
        for codes in deidentified.codes.values():
            codes.commit()
    except SurrogateMappingError as error:
        return [Refusal(SurrogateMappingError, reason) for reason in error.refusals]
    deidentified.committed = bool(deidentified.codes)
    return []


def measure_batch(accumulator: RiskAccumulator, governed: pa.RecordBatch, tally: Tally) -> None:
    try:
        accumulator.add(governed)
    except ReidentificationRiskError as error:
        tally.failures.extend(Refusal(ReidentificationRiskError, reason) for reason in error.refusals)


def risk_gate(
    accumulator: RiskAccumulator, temporary: Path, batch_rows: int, tally: Tally, deidentified: Deidentified
) -> list[Refusal]:
    """Measure k and l on the written rows; refuse below the thresholds, or suppress the small classes."""
    try:
        risk = accumulator.measure()
    except ReidentificationRiskError as error:
        return [Refusal(ReidentificationRiskError, reason) for reason in error.refusals]
    deidentified.risk = risk
    refusals = [Refusal(ReidentificationRiskError, reason) for reason in risk_refusals(risk)]
    if refusals or not risk.suppressed_rows:
        return refusals

    return suppression_refusals(risk, suppress(temporary, accumulator, batch_rows), tally)


def suppression_refusals(risk: ReidentificationRisk, removed: int, tally: Tally) -> list[Refusal]:
    """Refuse when suppression removed another number of rows than the measure counted in classes smaller
    than k_min; otherwise record the suppression in ``tally``.

    :param risk: the measure, with the rows it counted in small classes.
    :param removed: the rows the suppression pass removed.
    :param tally: the counts of the run.
    """
    if removed != risk.suppressed_rows:
        # The measure and the pass disagree on which rows are in small classes: publish nothing rather
        # than rows whose risk nobody measured.
        return [
            Refusal(
                ReidentificationRiskError,
                f"re-identification risk: suppression removed {removed} row(s) where the measure counted "
                f"{risk.suppressed_rows} in classes smaller than k_min; nothing was published",
            )
        ]
    tally.suppressed = removed
    log.info(
        "suppressed %d row(s) of %d equivalence class(es) smaller than k_min %d",
        removed,
        risk.classes_below_k,
        risk.k_min,
    )
    return []


def suppress(temporary: Path, accumulator: RiskAccumulator, batch_rows: int) -> int:
    """Rewrite the temporary output without the rows of classes smaller than k_min; returns how many went.

    A second pass over what the first one wrote, batch by batch, so memory stays bounded; the subject
    manifest still lists the admitted subjects whose every row was suppressed (revocation impact then
    counts the run as affected for them, which errs on the side of telling).
    """
    small = accumulator.classes_below_k()
    kept = temporary.with_name(f"{temporary.name}.suppressed")
    removed = 0
    try:
        reader = pq.ParquetFile(temporary)
        try:
            with pq.ParquetWriter(kept, reader.schema_arrow) as writer:
                for batch in reader.iter_batches(batch_size=batch_rows):
                    members = small.mask(batch)
                    removed += int(pc.sum(members).as_py() or 0)
                    writer.write_batch(batch.filter(pc.invert(members)))
        finally:
            reader.close()
        os.replace(kept, temporary)
    finally:
        kept.unlink(missing_ok=True)
    return removed


def consent_admission(
    policy: Policy, consent: ConsentSource | str | os.PathLike[str] | None, as_of: date
) -> tuple[ConsentAdmission | None, list[Refusal]]:
    """Read the registry and prepare the admission; without a usable registry nothing can be admitted."""
    if consent is None:
        reason = "no consent registry was given, so no record can be admitted; pass --consent or consent_path"
        return None, [Refusal(ConsentRegistryError, reason)]
    try:
        registry = read_consent_registry(consent)
        admission = ConsentAdmission(
            registry,
            policy.consent.bases,
            policy.purpose,
            as_of,
            purposes_covering=policy.consent.purposes_covering,
            subject_ids=policy.consent.subject_ids,
        )
    except ConsentRegistryError as error:
        return None, [Refusal(ConsentRegistryError, reason) for reason in error.refusals]
    log.info(
        "consent registry %s: %d record(s) of %d subject(s); purpose %s covered by %s; ids: %s",
        registry.source,
        len(registry),
        admission.counts().registry_subjects,
        policy.purpose,
        ", ".join(sorted(admission.covering)),
        policy.consent.subject_ids.rule,
    )
    return admission, []


def consent_refusals(tally: Tally) -> list[Refusal]:
    """The end-of-pass check of consent: rows were read, yet not one subject of them is in the registry."""
    if tally.admission is None or tally.read == 0:
        return []
    counts = tally.admission.counts()
    if counts.rows_matched:
        return []
    return [
        Refusal(
            ConsentSubjectMismatchError,
            f"none of the {tally.read} row(s) read has a subject id in column {tally.subject} that the "
            f"consent registry knows ({counts.registry_subjects} subject(s) in "
            f"{tally.admission.registry.source}), "
            f"after normalising ids ({tally.admission.normalization.rule}); the subject column or the "
            "registry is likely the wrong one: check the policy's 'subject', the registry's subject_id and "
            "consent.subject_ids",
        )
    ]


def consent_summary(policy: Policy, as_of: date, tally: Tally) -> ConsentSummary:
    """The report's consent block: the rules of this run, and its counts when rows were admitted."""
    summary = ConsentSummary(
        as_of=as_of,
        date_rule=DATE_RULE,
        subject_id_normalization=policy.consent.subject_ids.rule,
        subject_ids=policy.consent.subject_ids,
        purpose_codes=sorted(covering_codes(policy.purpose, policy.consent.purposes_covering)),
        excluded_rows_by_reason=dict(sorted(tally.excluded.items())),
    )
    if tally.admission is None:
        return summary
    counts = tally.admission.counts()
    return summary.model_copy(
        update={
            "registry_records": len(tally.admission.registry),
            "registry_subjects": counts.registry_subjects,
            "subjects_matched": counts.subjects_seen,
            "rows_matched": counts.rows_matched,
            "admitted_rows_by_basis": {basis.value: n for basis, n in counts.admitted_rows_by_basis.items()},
            "admitted_subjects_by_basis": {
                basis.value: n for basis, n in counts.admitted_subjects_by_basis.items()
            },
        }
    )


def key_refusals(plan: Plan, key: bytes | None) -> list[Refusal]:
    if not plan.uses(Treatment.PSEUDONYMIZE):
        return []
    if not key:
        problem = "no pseudonym key was provided"
    elif len(key) < MINIMUM_KEY_BYTES:
        # A short key can be guessed offline from any pseudonym of a known id, and every pseudonym of an
        # enumerable id (an MRN) then reversed.
        problem = f"the pseudonym key is shorter than {MINIMUM_KEY_BYTES} bytes"
    else:
        return []
    return [
        Refusal(
            PseudonymKeyError,
            f"the policy pseudonymizes columns but {problem}; set PHI_GUARD_PSEUDONYM_KEY or, in Airflow, "
            "the password of the pseudonym key connection, to a random key such as the output of "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`",
        )
    ]


def date_shift_key_refusals(plan: Plan, key: bytes | None) -> list[Refusal]:
    if not plan.uses(Treatment.DATE_SHIFT):
        return []
    if not key:
        problem = "no date shift key was provided"
    elif len(key) < dateshift.MINIMUM_KEY_BYTES:
        # Shifts recovered from one known date would test each guess of a short key offline.
        problem = f"the date shift key is shorter than {dateshift.MINIMUM_KEY_BYTES} bytes"
    else:
        return []
    return [
        Refusal(
            DateShiftKeyError,
            f"the policy shifts dates but {problem}; set {DATE_SHIFT_KEY_VARIABLE} or, in Airflow, the "
            "password of the date shift key connection, to a random key such as the output of "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`",
        )
    ]


def manifest_key_refusals(manifest_key: bytes | None, pseudonym_key: bytes | None) -> list[Refusal]:
    if not manifest_key:
        return []
    if len(manifest_key) < subject_manifest.MINIMUM_KEY_BYTES:
        problem = f"is shorter than {subject_manifest.MINIMUM_KEY_BYTES} bytes"
    elif pseudonym_key and hmac.compare_digest(manifest_key, pseudonym_key):
        # One key for both would let whoever may reverse pseudonyms test manifests too: they are kept apart.
        problem = "is the pseudonym key; the two keys must differ"
    else:
        return []
    return [
        Refusal(
            ManifestKeyError,
            f"the subject manifest key {problem}; set {subject_manifest.MANIFEST_KEY_VARIABLE} or, in "
            "Airflow, the password of the manifest key connection, to a random key of its own such as the "
            "output of `python -c 'import secrets; print(secrets.token_hex(32))'`",
        )
    ]


def recipient_refusals(
    policy: Policy, report: GovernanceReport | None, recipients: RecipientRegistry, as_of: date
) -> list[Refusal]:
    """The recipient gate for the policy's own recipient, on the report's verdict (or, before any row was
    read, on what the policy is expected to yield)."""
    from airflow_phi_guard.recipients.gate import Release, decide_for_recipient, expected_release

    release = expected_release(policy) if report is None else Release.from_report(report.model_dump())
    decision = decide_for_recipient(release, policy.recipient, recipients, as_of)
    return [Refusal(RecipientNotPermittedError, refusal) for refusal in decision.refusals]


def withdraw(output: Path, because: str = "this run was refused") -> None:
    """Remove a governed set and its subject manifest: a refused run, or one whose record is missing,
    leaves neither at ``output`` (a file, or a partitioned folder)."""
    if remove_dataset(output):
        log.info("withdrew the governed set at %s because %s", output, because)
    if subject_manifest.withdraw_manifest(output):
        log.info("withdrew the subject manifest beside %s because %s", output, because)


def publish(
    temporary: Path, output_path: Path, tally: Tally, manifest_key: bytes | None
) -> SubjectManifestRecord | None:
    """Rename the governed set into place, its subject manifest first: both are published, or neither.

    Two renames are not one atomic step: between them the new manifest sits beside the previous set. A
    crash there leaves a manifest that no report or lineage event names, and the previous run's recorded
    digest no longer matches it, which revocation impact reports as an error instead of trusting it.
    """
    manifest = None
    try:
        if tally.admission is not None and manifest_key:
            # The ids as the admission normalised them, so that impact, normalising the registry by the
            # same rule, finds the same hashes.
            manifest = subject_manifest.write_manifest(
                tally.admission.admitted_subjects(),
                subject_manifest.manifest_path(output_path),
                manifest_key,
                subject_ids=tally.admission.normalization,
            )
        elif subject_manifest.withdraw_manifest(output_path):
            # The manifest of an earlier set at this path would describe data that is about to be replaced.
            log.info("withdrew the subject manifest beside %s: this run writes none", output_path)
        replace_dataset(temporary, output_path)
    except OSError:
        withdraw(output_path, because="it could not be published with its subject manifest")
        raise
    if manifest is None:
        log.warning(
            "no manifest key, so no subject manifest was written beside %s: revocation impact cannot answer "
            "for this run; set %s or, in Airflow, the manifest key connection",
            output_path,
            subject_manifest.MANIFEST_KEY_VARIABLE,
        )
    else:
        log.info("wrote the subject manifest of %d subject(s), %s", manifest.subjects, manifest.digest)
    return manifest


def column_treatments(
    plan: Plan, as_of: date, keys: Keys, codes: dict[str, SurrogateCodes]
) -> dict[str, ColumnTreatment]:
    """The treatment of each published column, with its declared options bound."""
    return {column.source: column_treatment(plan, column, as_of, keys, codes) for column in plan.published}


def column_treatment(
    plan: Plan, column: ColumnPlan, as_of: date, keys: Keys, codes: dict[str, SurrogateCodes]
) -> ColumnTreatment:
    """The treatment of one published column as a function of its values and their batch.

    :param plan: the plan of the run.
    :param column: the published column.
    :param as_of: the reference date of ages and of two-digit years.
    :param keys: the run's keys.
    :param codes: the surrogate codes of the run per namespace (or an object with the same ``codes_for``).
    :raises AssertionError: a treatment without a function, which the policy model does not let through.
    """
    policy = plan.policy
    declaration = policy.columns[column.source]
    reading = declaration.date_reading
    method = policy.deidentification.method
    treatment = column.treatment

    if treatment is Treatment.KEEP:
        return lambda values, batch: values
    if treatment is Treatment.YEAR:
        if is_birth_date(column.source) and method is not DeidentificationMethod.LIMITED_DATA_SET:
            # The year of a birth date indicates the age: for a person aged 90 or more (or of unknown age)
            # it is suppressed, 164.514(b)(2)(i)(C). The plan refuses this column under these methods; the
            # mask keeps a plan that let it through from publishing such a year.
            return lambda values, batch: treatments.suppressed(
                treatments.to_year(values, reading, as_of), treatments.aged_90_or_over(values, as_of, reading)
            )
        return lambda values, batch: treatments.to_year(values, reading, as_of)
    if treatment is Treatment.AGE:
        return lambda values, batch: treatments.to_age(values, as_of, reading)
    if treatment is Treatment.BIRTH_YEAR:
        return lambda values, batch: treatments.to_birth_year(values, as_of, reading)
    if treatment is Treatment.ZIP3:
        vintage = policy.deidentification.zip3_vintage
        return lambda values, batch: treatments.to_zip3(values, vintage)
    if treatment is Treatment.PSEUDONYMIZE:
        return lambda values, batch: treatments.pseudonymize(values, keys.pseudonym)
    if treatment is Treatment.SURROGATE:
        namespace = codes[declaration.namespace or ""]
        return lambda values, batch: namespace.codes_for(values)
    if treatment is Treatment.AGE_BAND:
        bands = declaration.age_bands
        safe_harbor = method is DeidentificationMethod.SAFE_HARBOR
        return lambda values, batch: generalize.to_age_band(
            values, bands, reference=as_of, reading=reading, safe_harbor=safe_harbor
        )
    if treatment is Treatment.MONTH:
        return lambda values, batch: generalize.to_month(values, reading, as_of)
    if treatment is Treatment.QUARTER:
        return lambda values, batch: generalize.to_quarter(values, reading, as_of)
    if treatment is Treatment.STATE:
        prefixes = declaration.prefixes
        return lambda values, batch: generalize.to_state(values, prefixes=prefixes)
    if treatment is Treatment.TOP_BOTTOM_CODE:
        bottom, top = declaration.bottom, declaration.top
        return lambda values, batch: generalize.top_bottom_code(values, bottom=bottom, top=top)
    if treatment is Treatment.DATE_SHIFT:
        window = policy.deidentification.date_shift_window_days or 0
        subject = policy.subject
        # Known shortcoming: the shift hashes the subject id trimmed, without the consent rule's UUID case
        # folding, so one person written in two cases would get two shifts.
        return lambda values, batch: dateshift.shift_dates_by_subject(
            values, batch.column(subject), keys.date_shift or b"", window, reading, as_of
        )
    raise AssertionError(f"no treatment function for {treatment}")


def output_schema(plan: Plan) -> pa.Schema:
    """The schema a plan publishes: each published column under its output name and treated type."""
    fields = []
    for column in plan.published:
        source_type = plan.schema.field(column.source).type
        fields.append(pa.field(column.output, output_type(column.treatment, source_type)))
    return pa.schema(fields)


def output_type(treatment: Treatment, source_type: pa.DataType) -> pa.DataType:
    """The Arrow type a treatment publishes for a column of ``source_type``.

    :param treatment: the column's treatment.
    :param source_type: the column's type in the source.
    """
    if treatment in _OUTPUT_TYPES:
        return _OUTPUT_TYPES[treatment]
    value_type = source_type.value_type if pa.types.is_dictionary(source_type) else source_type
    if treatment is Treatment.TOP_BOTTOM_CODE:
        return value_type
    if treatment is Treatment.DATE_SHIFT:
        # Dates and timestamps keep their type; text and serial numbers are read into calendar dates.
        temporal = pa.types.is_date(value_type) or pa.types.is_timestamp(value_type)
        return value_type if temporal else pa.date32()
    return source_type


def scan_column(
    column: ColumnPlan,
    values: pa.Array,
    detectors: Sequence[ValueDetector],
    known: KnownValues | None,
    tally: Tally,
) -> None:
    """Count the values of a kept text column holding an identifier, by detector or as a known value."""
    found = Counter(scan_values(values, detectors))
    if known is not None:
        for identifier, count in known.search(values).items():
            # a value found both ways is one value: keep the larger count, not the sum
            found[identifier] = max(found[identifier], count)
    for identifier, count in found.items():
        if count:
            tally.findings[(column.source, identifier)] += count


def refusals_from(tally: Tally) -> list[Refusal]:
    """The refusals the counts of a pass call for: consent, failures, unreadable values, residual PHI.

    :param tally: the counts of the run so far.
    """
    refusals = consent_refusals(tally) + tally.failures
    refusals += [
        Refusal(
            TreatmentNotApplicableError,
            f"column {source}: {error.count} value(s) are not {error.expected}; correct or null them "
            "upstream, or drop the column",
        )
        for source, error in sorted(tally.invalid.items())
    ]
    for (source, identifier), count in sorted(tally.findings.items()):
        refusals.append(
            Refusal(
                ResidualPhiError,
                f"column {source}: {count} value(s) contain identifier {identifier.letter} "
                f"({identifier.description}); drop or treat the column, or clean it upstream",
            )
        )
    return refusals


class ReportOfRun(Protocol):
    """The report of a run at a verdict, as :func:`report_builder` returns it."""

    def __call__(
        self,
        verdict: Verdict,
        tally: Tally,
        published_at: Path | None,
        manifest: SubjectManifestRecord | None = None,
    ) -> GovernanceReport: ...


def report_builder(
    policy: Policy,
    plan: Plan,
    source: Path,
    consent: ConsentSource | str | os.PathLike[str] | None,
    as_of: date,
    keys: Keys,
    deidentified: Deidentified,
    refusals: list[Refusal],
) -> ReportOfRun:
    """The run's :func:`build_report` with what stays fixed during the run bound; ``refusals`` is read when
    the report is built, so refusals added later are in it.

    :param policy: the policy enforced.
    :param plan: the plan carried out.
    :param source: the path that names the source dataset.
    :param consent: the consent registry as the run was given it.
    :param as_of: the reference date of consent and ages.
    :param keys: the run's keys.
    :param deidentified: what the run learns of its de-identification.
    :param refusals: the run's refusals, as the run adds to them.
    """

    def report(
        verdict: Verdict,
        tally: Tally,
        published_at: Path | None,
        manifest: SubjectManifestRecord | None = None,
    ) -> GovernanceReport:
        built = build_report(
            policy, plan, source, consent, as_of, keys, deidentified, verdict, tally, refusals, published_at
        )
        return built.model_copy(update={"manifest": manifest})

    return report


class _RunResult(Protocol):
    report: GovernanceReport
    trail_head: TrailHead | None


_Result = TypeVar("_Result", bound=_RunResult)


def record_in_trail(
    result: _Result, trail: AuditTrail | str | os.PathLike[str] | None, trail_ids: RunIds | None
) -> _Result:
    """Record a finished run in the audit trail, and return its result with the record's head; a published
    set whose record cannot be written is withdrawn, since it needs its record, and the error raised.

    :param result: the run's result (a :class:`~airflow_phi_guard.engine.executor.GovernanceResult`).
    :param trail: the audit trail, or None to record nothing.
    :param trail_ids: the DAG, task and run ids of the record.
    """
    from airflow_phi_guard.trail.chain import TrailHead
    from airflow_phi_guard.trail.records import record_run

    if trail is None:
        return result
    try:
        record = record_run(trail, result.report, ids=trail_ids)
    except Exception:
        if result.report.output is not None:
            withdraw(Path(result.report.output), because="its audit trail record could not be written")
        raise
    return replace(result, trail_head=TrailHead(sequence=record.sequence, digest=record.digest))


@contextmanager
def arrow_errors(source: Path) -> Iterator[None]:
    """Turn a pyarrow error into a :class:`~airflow_phi_guard.exceptions.DataProcessingError` that names
    ``source`` and the error class only (pyarrow's messages can quote the value that failed); I/O errors
    stay retryable. An ``OSError`` raised mid-read (a file gone, a dangling link) names a path that can run
    through ``KEY=value`` partition folders of the source, so one that names a path below the source is
    turned into a retryable one too. A missing source, named by itself, and an error of the output side
    (a rename that failed) propagate as they are.

    :param source: the source dataset of the run.
    """
    try:
        yield
    except OSError as error:
        # pyarrow's I/O errors are OSErrors too, and are always turned
        if not isinstance(error, pa.ArrowException) and not _names_a_path_below(error, source):
            raise
        _forget_paths(error)
        raise DataProcessingError(str(source), type(error).__name__, retryable=True) from None
    except pa.ArrowException as error:
        retryable = isinstance(error, pa.ArrowIOError)
        raise DataProcessingError(str(source), type(error).__name__, retryable=retryable) from None


def _names_a_path_below(error: OSError, source: Path) -> bool:
    """Whether ``error`` names a file below ``source``, in its file names or its message (pyarrow's I/O
    errors carry the path in the message only)."""
    root = str(source).rstrip(os.sep) + os.sep
    named = [os.fspath(name) for name in (error.filename, error.filename2) if name is not None]
    if any(str(name).startswith(root) for name in named):
        return True
    return root in str(error)


def _forget_paths(error: OSError) -> None:
    """Clear the message and paths of ``error``: ``from None`` hides it from tracebacks, but it stays the
    new error's ``__context__``, where a handler walking the chain would find its path."""
    error.args = ()
    error.strerror = error.filename = error.filename2 = None


def build_report(
    policy: Policy,
    plan: Plan,
    source: Path,
    consent: ConsentSource | str | os.PathLike[str] | None,
    as_of: date,
    keys: Keys,
    deidentified: Deidentified,
    verdict: Verdict,
    tally: Tally,
    refusals: list[Refusal],
    published_at: Path | None,
) -> GovernanceReport:
    """The governance report of a run, from its plan, counts and refusals: names, counts and digests only.

    :param policy: the policy enforced.
    :param plan: the plan carried out.
    :param source: the path that names the source dataset.
    :param consent: the consent registry as the run was given it.
    :param as_of: the reference date of consent and ages.
    :param keys: the run's keys, recorded by fingerprint only.
    :param deidentified: what the run learnt of its de-identification (surrogate codes, risk).
    :param verdict: published or refused.
    :param tally: the run's counts.
    :param refusals: why nothing was published; empty when published.
    :param published_at: the governed set's path when published, else None.
    """
    deidentification = policy.deidentification
    columns = [
        ColumnDecision(
            source=column.source,
            output=column.output,
            identifier=column.identifier,
            treatment=column.treatment,
            declared=column.declared,
            # the declared bands and bounds, which the checks of a suite derived from the report need
            bands=declaration.bands if declaration else None,
            bottom=declaration.bottom if declaration else None,
            top=declaration.top if declaration else None,
        )
        for column in plan.columns
        for declaration in [policy.columns.get(column.source)]
    ]
    findings = [
        Finding(column=source, identifier=identifier, count=count)
        for (source, identifier), count in sorted(tally.findings.items())
    ]
    published = verdict is Verdict.PUBLISHED
    return GovernanceReport(
        verdict=verdict,
        policy=PolicyIdentity(name=policy.name, version=policy.version, digest=policy.digest),
        purpose=policy.purpose,
        model={"name": policy.model.name, "version": policy.model.version},
        recipient=policy.recipient,
        input=str(source),
        output=str(published_at) if published_at else None,
        method=deidentification.method,
        zip3_vintage=deidentification.zip3_vintage.value,
        as_of=as_of,
        consent_registry=consent_display_name(consent) if consent is not None else None,
        consent_bases=[basis.value for basis in policy.consent.bases],
        pseudonym_key_fingerprint=(
            # A refused short key gets no fingerprint: a digest of a short key is a test of guesses at it.
            treatments.key_fingerprint(keys.pseudonym)
            if keys.pseudonym
            and len(keys.pseudonym) >= MINIMUM_KEY_BYTES
            and plan.uses(Treatment.PSEUDONYMIZE)
            else None
        ),
        zip3=vintage_record(deidentification.zip3_vintage) if plan.uses(Treatment.ZIP3) else None,
        date_shift=date_shift_record(plan, keys.date_shift),
        surrogate_mapping=surrogate_record(deidentified),
        expert_determination=deidentification.expert_determination,
        data_use_agreement=deidentification.data_use_agreement,
        risk=deidentified.risk if published else None,
        safe_harbor=safe_harbor(plan, columns, findings) if published else None,
        rows=RowCounts(
            read=tally.read,
            admitted=tally.admitted,
            excluded=dict(sorted(tally.excluded.items())),
            suppressed=tally.suppressed,
        ),
        consent=consent_summary(policy, as_of, tally),
        columns=columns,
        findings=findings,
        refusals=[refusal.message for refusal in refusals],
    )


def safe_harbor(plan: Plan, columns: list[ColumnDecision], findings: list[Finding]) -> SafeHarborVerdict:
    """The Safe Harbor verdict of the published output: the treatments and findings, judged by
    :func:`~airflow_phi_guard.deid.verdict.safe_harbor_verdict`, and the options that some treatments need
    judged too (age bands, top codes of ages)."""
    verdict = safe_harbor_verdict(columns, findings, plan.policy.deidentification.attestation)
    judged = {breach.column for breach in verdict.breaches}
    extra = []
    for column in plan.published:
        if column.source in judged or column.identifier is None:
            continue
        rule = option_refusal(
            column.source,
            column.identifier,
            plan.policy.columns[column.source],
            DeidentificationMethod.SAFE_HARBOR,
        )
        if rule is not None:
            extra.append(
                SafeHarborBreach(
                    column=column.source, output=column.output, identifier=column.identifier, rule=rule
                )
            )
    if not extra:
        return verdict
    return verdict.model_copy(
        update={"status": SafeHarborStatus.NOT_MET, "breaches": [*verdict.breaches, *extra]}
    )


def date_shift_record(plan: Plan, key: bytes | None) -> DateShiftRecord | None:
    if not plan.uses(Treatment.DATE_SHIFT) or not key or len(key) < dateshift.MINIMUM_KEY_BYTES:
        return None
    return DateShiftRecord(
        window_days=plan.policy.deidentification.date_shift_window_days or 0,
        key_fingerprint=dateshift.key_fingerprint(key),
        columns=[column.source for column in plan.published if column.treatment is Treatment.DATE_SHIFT],
    )


def surrogate_record(deidentified: Deidentified) -> SurrogateMappingRecord | None:
    if deidentified.store is None:
        return None
    return SurrogateMappingRecord(
        store=deidentified.store.describe(),
        namespaces=[
            SurrogateNamespace(namespace=namespace, known_codes=codes.known_codes, new_codes=codes.new_codes)
            for namespace, codes in sorted(deidentified.codes.items())
        ],
        committed=deidentified.committed,
    )


def preflight(
    plan: Plan,
    consent: ConsentSource | str | os.PathLike[str] | None,
    as_of: date,
    keys: Keys,
    store: MappingStore | None,
    recipients: RecipientRegistry | None,
    *,
    inputs: Sequence[Path] = (),
    output: Path | None = None,
) -> tuple[ConsentAdmission | None, list[Refusal], Deidentified]:
    """Every check a run makes before it reads a row: the output apart from the inputs, the plan's
    refusals, the de-identification records, the consent registry, the keys, the recipient and the
    surrogate mapping.

    :param plan: the plan of the run.
    :param consent: the consent registry, as :func:`~airflow_phi_guard.engine.executor.govern` takes it.
    :param as_of: the reference date of consent and ages.
    :param keys: the run's keys.
    :param store: the surrogate mapping, or None.
    :param recipients: the recipient registry, or None.
    :param inputs: the paths the run reads (:func:`~airflow_phi_guard.engine.source.source_inputs`).
    :param output: the governed set's path; with ``inputs``, checked apart from them.
    :returns: the admission (None when the registry was refused), the refusals so far, and what the run
        holds of its de-identification (the surrogate codes opened when nothing was refused).
    :raises OutputPathError: the output is, lies inside or holds an input; raised rather than returned,
        so that no refusal withdraws (deletes) the output, which is the source.
    """
    if output is not None:
        check_output_apart(inputs, output)
    policy = plan.policy
    refusals = list(plan.refusals)
    refusals.extend(
        Refusal(DeidentificationRecordError, reason)
        for reason in record_refusals(policy.deidentification, policy.purpose, as_of)
    )

    admission, registry_refusals = consent_admission(policy, consent, as_of)
    refusals.extend(registry_refusals)
    refusals.extend(key_refusals(plan, keys.pseudonym))
    refusals.extend(manifest_key_refusals(keys.manifest, keys.pseudonym))
    refusals.extend(date_shift_key_refusals(plan, keys.date_shift))
    if recipients is not None and policy.recipient not in recipients.recipients:
        refusals.extend(recipient_refusals(policy, None, recipients, as_of))
    deidentified = Deidentified(store=store)
    if not refusals:
        refusals.extend(surrogate_codes(plan, store, deidentified))
    return admission, refusals, deidentified
