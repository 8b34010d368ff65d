"""The Arrow executor: carries out a plan in one streaming pass and publishes only if every check passed."""

from __future__ import annotations

import hmac
import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

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
from airflow_phi_guard.engine.plan import ColumnPlan, Plan, Refusal, make_plan
from airflow_phi_guard.engine.source import open_source
from airflow_phi_guard.exceptions import (
    ConsentRegistryError,
    ConsentSubjectMismatchError,
    DataProcessingError,
    DateShiftKeyError,
    DeidentificationRecordError,
    InvalidValuesError,
    ManifestKeyError,
    PolicyViolationError,
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
from airflow_phi_guard.trail.chain import TrailHead
from airflow_phi_guard.trail.records import RunIds, record_run
from airflow_phi_guard.trail.store import AuditTrail

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 64 * 1024

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


@dataclass(frozen=True)
class GovernanceResult:
    """A run's report, with the refusals behind a ``refused`` verdict as error classes.

    :param report: the governance report, published or refused.
    :param plan: the plan the run carried out.
    :param refusals: why nothing was published; empty when the verdict is ``published``.
    """

    report: GovernanceReport
    plan: Plan
    refusals: tuple[Refusal, ...] = ()
    #: the run's record in the audit trail (sequence and digest), None when no trail was configured
    trail_head: TrailHead | None = None

    @property
    def output_schema(self) -> pa.Schema:
        """The schema of the governed set: the published columns, under their output names and types."""
        return output_schema(self.plan)

    def write_report(self, path: str | os.PathLike[str]) -> None:
        """Write the governance report; if that fails, withdraw the published set, which needs its record.

        :param path: where to write the report (JSON).
        :raises OSError: the report could not be written.
        """
        try:
            self.report.write(path)
        except OSError:
            if self.report.output is not None:
                _withdraw(Path(self.report.output), because="its governance report could not be written")
            raise

    def raise_for_verdict(self, report_path: str | None = None) -> None:
        """Raise the refusal's error when nothing was published.

        :param report_path: where the caller wrote the full report, for the message.
        :raises PolicyViolationError: or the subclass that stands for the first refusal.
        """
        if self.report.published:
            return
        kinds = {refusal.error for refusal in self.refusals}
        error = kinds.pop() if len(kinds) == 1 else PolicyViolationError
        raise error([refusal.message for refusal in self.refusals], report_path)


@dataclass
class _Tally:
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


def govern(
    policy: Policy,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    consent: ConsentSource | str | os.PathLike[str] | None,
    as_of: date,
    pseudonym_key: bytes | None = None,
    manifest_key: bytes | None = None,
    date_shift_key: bytes | None = None,
    surrogate_mapping: MappingStore | str | os.PathLike[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    recipients: RecipientRegistry | None = None,
    trail: AuditTrail | str | os.PathLike[str] | None = None,
    trail_ids: RunIds | None = None,
) -> GovernanceResult:
    """Apply ``policy`` to ``source`` and publish the governed set at ``output`` only if every check passed.

    One streaming pass: read the planned columns, admit rows by consent, treat, scan kept text for
    identifiers, write Parquet to a hidden temporary file beside ``output``; rename it into place at the
    end, or delete it when anything was refused. I/O errors propagate (a retry may heal them); refusals
    are returned in the result (a retry cannot). With a manifest key, the keyed hashes of the admitted
    subjects are published beside the output (:func:`~airflow_phi_guard.consent.manifest.manifest_path`),
    together with it or not at all; without one, no manifest is written and the report's ``manifest`` is
    None, so revocation impact cannot answer for the run.

    :param policy: the policy to enforce.
    :param source: the source dataset (Parquet file or folder, or CSV).
    :param output: the Parquet file to publish.
    :param consent: the consent registry: a source (consent/sources.py), or the path or fsspec URL of a
        CSV or Parquet file; without one nothing can be admitted.
    :param as_of: reference date of consent and of ages.
    :param pseudonym_key: the key of the ``pseudonymize`` treatment, from a secret, never the policy.
    :param manifest_key: the key of the subject manifest's hashes, from a secret apart from the pseudonym
        key; None writes no manifest.
    :param date_shift_key: the key of the ``date-shift`` treatment, from a secret, never the policy.
    :param surrogate_mapping: the private mapping of ``surrogate`` codes: a Parquet file (locked for the
        whole run) or a store such as :class:`~airflow_phi_guard.deid.surrogate.SqlMappingStore`. New codes
        are written to it only when the run publishes, before the output is renamed into place.
    :param batch_rows: rows per record batch, which bounds memory.
    :param recipients: the recipient registry; with one, the policy's ``recipient`` must be listed in it
        (checked before rows are read) and, once the verdict is known, have what the output needs
        (:func:`~airflow_phi_guard.recipients.gate.decide_for_recipient`), or nothing is published.
    :param trail: the audit trail (a store, a JSONL path or a database URL) to record the run in, published
        or refused, once its report is final; None records nothing. A run whose record cannot be appended
        is withdrawn and the error raised: a published set needs its record.
    :param trail_ids: the DAG, task and run ids for the trail record.
    """
    source_path, output_path = Path(source).resolve(), Path(output).resolve()
    keys = _Keys(pseudonym_key, manifest_key, date_shift_key)
    try:
        with _mapping_store(policy, surrogate_mapping) as store:
            result = _govern(
                policy, source_path, output_path, consent, as_of, keys, store, batch_rows, recipients
            )
    except FileNotFoundError:
        raise
    except pa.ArrowException as error:
        retryable = isinstance(error, pa.ArrowIOError)
        raise DataProcessingError(str(source_path), type(error).__name__, retryable=retryable) from None
    if trail is None:
        return result
    try:
        record = record_run(trail, result.report, ids=trail_ids)
    except Exception:
        if result.report.output is not None:
            _withdraw(Path(result.report.output), because="its audit trail record could not be written")
        raise
    return replace(result, trail_head=TrailHead(sequence=record.sequence, digest=record.digest))


@dataclass(frozen=True)
class _Keys:
    pseudonym: bytes | None
    manifest: bytes | None
    date_shift: bytes | None


@dataclass
class _Deidentified:
    """What the run learnt about its de-identification along the way, for the report."""

    codes: dict[str, SurrogateCodes] = field(default_factory=dict)
    store: MappingStore | None = None
    committed: bool = False
    risk: ReidentificationRisk | None = None


@contextmanager
def _mapping_store(
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


def _govern(
    policy: Policy,
    source_path: Path,
    output_path: Path,
    consent: ConsentSource | str | os.PathLike[str] | None,
    as_of: date,
    keys: _Keys,
    store: MappingStore | None,
    batch_rows: int,
    recipients: RecipientRegistry | None = None,
) -> GovernanceResult:
    dataset = open_source(source_path)
    plan = make_plan(policy, dataset.schema)
    refusals = list(plan.refusals)
    refusals.extend(
        Refusal(DeidentificationRecordError, reason)
        for reason in record_refusals(policy.deidentification, policy.purpose, as_of)
    )

    admission, consent_refusals = _consent_admission(policy, consent, as_of)
    refusals.extend(consent_refusals)
    refusals.extend(_key_refusals(plan, keys.pseudonym))
    refusals.extend(_manifest_key_refusals(keys.manifest, keys.pseudonym))
    refusals.extend(_date_shift_key_refusals(plan, keys.date_shift))
    if recipients is not None and policy.recipient not in recipients.recipients:
        refusals.extend(_recipient_refusals(policy, None, recipients, as_of))
    deidentified = _Deidentified(store=store)
    if not refusals:
        refusals.extend(_surrogate_codes(plan, store, deidentified))

    def report(
        verdict: Verdict,
        tally: _Tally,
        published_at: Path | None,
        manifest: SubjectManifestRecord | None = None,
    ) -> GovernanceReport:
        return _build_report(
            policy,
            plan,
            source_path,
            consent,
            as_of,
            keys,
            deidentified,
            verdict,
            tally,
            refusals,
            published_at,
        ).model_copy(update={"manifest": manifest})

    tally = _Tally()
    if refusals:
        _withdraw(output_path)
        log.info("policy %s refused the input before reading rows: %d refusal(s)", policy.name, len(refusals))
        return GovernanceResult(report(Verdict.REFUSED, tally, None), plan, tuple(refusals))

    assert admission is not None
    treat = _treatments(plan, as_of, keys, deidentified.codes)
    thresholds = policy.deidentification.risk_thresholds
    accumulator = RiskAccumulator(thresholds) if thresholds is not None else None
    temporary = output_path.with_name(f".{output_path.name}.{uuid.uuid4().hex}.tmp")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        schema = output_schema(plan)
        with pq.ParquetWriter(temporary, schema) as writer:
            for batch in dataset.to_batches(columns=plan.read_columns, batch_size=batch_rows):
                governed = _govern_batch(batch, plan, schema, admission, treat, tally)
                # Once the run is sure to be refused, scanning goes on for complete counts, but no more
                # data is written, not even to the hidden temporary file.
                if governed is not None and not tally.refused:
                    writer.write_batch(governed)
                    if accumulator is not None:
                        _measure(accumulator, governed, tally)
        refusals.extend(_refusals_from(tally))
        if not refusals and accumulator is not None:
            refusals.extend(_risk_gate(accumulator, temporary, batch_rows, tally, deidentified))
        if not refusals and recipients is not None:
            # the output's Safe Harbor verdict decides whether the recipient needs an agreement
            candidate = report(Verdict.PUBLISHED, tally, output_path)
            refusals.extend(_recipient_refusals(policy, candidate, recipients, as_of))
        if not refusals:
            refusals.extend(_commit_surrogates(deidentified))
        if refusals:
            _withdraw(output_path)
            log.info(
                "policy %s refused the data after %d row(s): %d refusal(s)",
                policy.name,
                tally.read,
                len(refusals),
            )
            return GovernanceResult(report(Verdict.REFUSED, tally, None), plan, tuple(refusals))
        manifest = _publish(temporary, output_path, tally, keys.manifest)
    finally:
        temporary.unlink(missing_ok=True)

    log.info(
        "policy %s (%s) published %d of %d row(s), %d column(s)",
        policy.name,
        policy.digest,
        tally.admitted - tally.suppressed,
        tally.read,
        len(plan.published),
    )
    return GovernanceResult(report(Verdict.PUBLISHED, tally, output_path, manifest), plan)


def _surrogate_codes(plan: Plan, store: MappingStore | None, deidentified: _Deidentified) -> list[Refusal]:
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


def _commit_surrogates(deidentified: _Deidentified) -> list[Refusal]:
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


def _measure(accumulator: RiskAccumulator, governed: pa.RecordBatch, tally: _Tally) -> None:
    try:
        accumulator.add(governed)
    except ReidentificationRiskError as error:
        tally.failures.extend(Refusal(ReidentificationRiskError, reason) for reason in error.refusals)


def _risk_gate(
    accumulator: RiskAccumulator, temporary: Path, batch_rows: int, tally: _Tally, deidentified: _Deidentified
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

    removed = _suppress(temporary, accumulator, batch_rows)
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


def _suppress(temporary: Path, accumulator: RiskAccumulator, batch_rows: int) -> int:
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


def _publish(
    temporary: Path, output_path: Path, tally: _Tally, manifest_key: bytes | None
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
        os.replace(temporary, output_path)
    except OSError:
        _withdraw(output_path, because="it could not be published with its subject manifest")
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


def _consent_admission(
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


def _consent_refusals(tally: _Tally) -> list[Refusal]:
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


def _consent_summary(policy: Policy, as_of: date, tally: _Tally) -> ConsentSummary:
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


def _key_refusals(plan: Plan, key: bytes | None) -> list[Refusal]:
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


def _date_shift_key_refusals(plan: Plan, key: bytes | None) -> list[Refusal]:
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


def _manifest_key_refusals(manifest_key: bytes | None, pseudonym_key: bytes | None) -> list[Refusal]:
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


def _recipient_refusals(
    policy: Policy, report: GovernanceReport | None, recipients: RecipientRegistry, as_of: date
) -> list[Refusal]:
    """The recipient gate for the policy's own recipient, on the report's verdict (or, before any row was
    read, on what the policy is expected to yield)."""
    from airflow_phi_guard.recipients.gate import Release, decide_for_recipient, expected_release

    release = expected_release(policy) if report is None else Release.from_report(report.model_dump())
    decision = decide_for_recipient(release, policy.recipient, recipients, as_of)
    return [Refusal(RecipientNotPermittedError, refusal) for refusal in decision.refusals]


def _withdraw(output: Path, because: str = "this run was refused") -> None:
    """Remove a governed set and its subject manifest: a refused run, or one whose record is missing,
    leaves neither at ``output``."""
    if output.exists():
        output.unlink()
        log.info("withdrew the governed set at %s because %s", output, because)
    if subject_manifest.withdraw_manifest(output):
        log.info("withdrew the subject manifest beside %s because %s", output, because)


def _treatments(
    plan: Plan, as_of: date, keys: _Keys, codes: dict[str, SurrogateCodes]
) -> dict[str, ColumnTreatment]:
    """The treatment of each published column, with its declared options bound."""
    return {column.source: _treatment(plan, column, as_of, keys, codes) for column in plan.published}


def _treatment(
    plan: Plan, column: ColumnPlan, as_of: date, keys: _Keys, codes: dict[str, SurrogateCodes]
) -> ColumnTreatment:
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
        fields.append(pa.field(column.output, _output_type(column.treatment, source_type)))
    return pa.schema(fields)


def _output_type(treatment: Treatment, source_type: pa.DataType) -> pa.DataType:
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


def _govern_batch(
    batch: pa.RecordBatch,
    plan: Plan,
    schema: pa.Schema,
    admission: ConsentAdmission,
    treat: dict[str, ColumnTreatment],
    tally: _Tally,
) -> pa.RecordBatch | None:
    tally.read += batch.num_rows
    # Known values come from every row read, excluded ones too: a name is PHI in any note it appears in.
    known = KnownValues.from_batch(batch, plan.known_value_columns) if plan.known_value_columns else None
    tally.admission, tally.subject = admission, plan.policy.subject
    admitted, excluded = admission.admit(batch.column(plan.policy.subject))
    tally.excluded.update({str(reason): count for reason, count in excluded.items() if count})
    batch = batch.filter(admitted)
    tally.admitted += batch.num_rows

    for column in plan.kept_text:
        _scan(column, batch.column(column.source), plan.text_detectors, known, tally)

    arrays = []
    for column in plan.published:
        values = batch.column(column.source)
        try:
            arrays.append(treat[column.source](values, batch))
        except InvalidValuesError as error:
            previous = tally.invalid.get(column.source)
            count = error.count + (previous.count if previous else 0)
            tally.invalid[column.source] = InvalidValuesError(count, error.expected)
        except SurrogateMappingError as error:
            tally.failures.extend(Refusal(SurrogateMappingError, reason) for reason in error.refusals)
            return None
    if tally.invalid or tally.failures:
        return None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _scan(
    column: ColumnPlan,
    values: pa.Array,
    detectors: Sequence[ValueDetector],
    known: KnownValues | None,
    tally: _Tally,
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


def _refusals_from(tally: _Tally) -> list[Refusal]:
    refusals = _consent_refusals(tally) + tally.failures
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


def _build_report(
    policy: Policy,
    plan: Plan,
    source: Path,
    consent: ConsentSource | str | os.PathLike[str] | None,
    as_of: date,
    keys: _Keys,
    deidentified: _Deidentified,
    verdict: Verdict,
    tally: _Tally,
    refusals: list[Refusal],
    published_at: Path | None,
) -> GovernanceReport:
    deidentification = policy.deidentification
    columns = [
        ColumnDecision(
            source=column.source,
            output=column.output,
            identifier=column.identifier,
            treatment=column.treatment,
            declared=column.declared,
        )
        for column in plan.columns
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
        date_shift=_date_shift_record(plan, keys.date_shift),
        surrogate_mapping=_surrogate_record(deidentified),
        expert_determination=deidentification.expert_determination,
        data_use_agreement=deidentification.data_use_agreement,
        risk=deidentified.risk if published else None,
        safe_harbor=_safe_harbor(plan, columns, findings) if published else None,
        rows=RowCounts(
            read=tally.read,
            admitted=tally.admitted,
            excluded=dict(sorted(tally.excluded.items())),
            suppressed=tally.suppressed,
        ),
        consent=_consent_summary(policy, as_of, tally),
        columns=columns,
        findings=findings,
        refusals=[refusal.message for refusal in refusals],
    )


def _safe_harbor(plan: Plan, columns: list[ColumnDecision], findings: list[Finding]) -> SafeHarborVerdict:
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


def _date_shift_record(plan: Plan, key: bytes | None) -> DateShiftRecord | None:
    if not plan.uses(Treatment.DATE_SHIFT) or not key or len(key) < dateshift.MINIMUM_KEY_BYTES:
        return None
    return DateShiftRecord(
        window_days=plan.policy.deidentification.date_shift_window_days or 0,
        key_fingerprint=dateshift.key_fingerprint(key),
        columns=[column.source for column in plan.published if column.treatment is Treatment.DATE_SHIFT],
    )


def _surrogate_record(deidentified: _Deidentified) -> SurrogateMappingRecord | None:
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
