"""The Arrow executor: carries out a plan in one streaming pass and publishes only if every check passed."""

from __future__ import annotations

import hmac
import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_phi_guard.consent import manifest as subject_manifest
from airflow_phi_guard.consent.admission import ConsentAdmission
from airflow_phi_guard.consent.purposes import covering_codes
from airflow_phi_guard.consent.registry import DATE_RULE
from airflow_phi_guard.consent.sources import ConsentSource, consent_display_name, read_consent_registry
from airflow_phi_guard.deid import treatments
from airflow_phi_guard.engine.plan import ColumnPlan, Plan, Refusal, make_plan
from airflow_phi_guard.engine.source import open_source
from airflow_phi_guard.exceptions import (
    ConsentRegistryError,
    ConsentSubjectMismatchError,
    DataProcessingError,
    InvalidValuesError,
    ManifestKeyError,
    PolicyViolationError,
    PseudonymKeyError,
    ResidualPhiError,
    TreatmentNotApplicableError,
)
from airflow_phi_guard.phi.detectors import ValueDetector, scan_values
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.known import KnownValues
from airflow_phi_guard.policy.models import Policy, Treatment
from airflow_phi_guard.report import (
    ColumnDecision,
    ConsentSummary,
    Finding,
    GovernanceReport,
    PolicyIdentity,
    RowCounts,
    SubjectManifestRecord,
    Verdict,
)

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 64 * 1024

#: The shortest pseudonym key accepted: 256 bits, the size of the HMAC-SHA256 output.
MINIMUM_KEY_BYTES = 32

_OUTPUT_TYPES = {
    Treatment.YEAR: pa.int32(),
    Treatment.AGE: pa.int32(),
    Treatment.BIRTH_YEAR: pa.int32(),
    Treatment.ZIP3: pa.string(),
    Treatment.PSEUDONYMIZE: pa.string(),
}


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

    @property
    def refused(self) -> bool:
        return bool(self.findings or self.invalid)


def govern(
    policy: Policy,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    consent: ConsentSource | str | os.PathLike[str] | None,
    as_of: date,
    pseudonym_key: bytes | None = None,
    manifest_key: bytes | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
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
    :param batch_rows: rows per record batch, which bounds memory.
    """
    source_path, output_path = Path(source).resolve(), Path(output).resolve()
    try:
        return _govern(
            policy, source_path, output_path, consent, as_of, pseudonym_key, manifest_key, batch_rows
        )
    except FileNotFoundError:
        raise
    except pa.ArrowException as error:
        retryable = isinstance(error, pa.ArrowIOError)
        raise DataProcessingError(str(source_path), type(error).__name__, retryable=retryable) from None


def _govern(
    policy: Policy,
    source_path: Path,
    output_path: Path,
    consent: ConsentSource | str | os.PathLike[str] | None,
    as_of: date,
    pseudonym_key: bytes | None,
    manifest_key: bytes | None,
    batch_rows: int,
) -> GovernanceResult:
    dataset = open_source(source_path)
    plan = make_plan(policy, dataset.schema)
    refusals = list(plan.refusals)

    admission, consent_refusals = _consent_admission(policy, consent, as_of)
    refusals.extend(consent_refusals)
    refusals.extend(_key_refusals(plan, pseudonym_key))
    refusals.extend(_manifest_key_refusals(manifest_key, pseudonym_key))

    def report(
        verdict: Verdict,
        tally: _Tally,
        published_at: Path | None,
        manifest: SubjectManifestRecord | None = None,
    ) -> GovernanceReport:
        return _build_report(
            policy, plan, source_path, consent, as_of, pseudonym_key, verdict, tally, refusals, published_at
        ).model_copy(update={"manifest": manifest})

    tally = _Tally()
    if refusals:
        _withdraw(output_path)
        log.info("policy %s refused the input before reading rows: %d refusal(s)", policy.name, len(refusals))
        return GovernanceResult(report(Verdict.REFUSED, tally, None), plan, tuple(refusals))

    assert admission is not None
    treat = _treatments(policy, as_of, pseudonym_key)
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
        refusals.extend(_refusals_from(tally))
        if refusals:
            _withdraw(output_path)
            log.info(
                "policy %s refused the data after %d row(s): %d refusal(s)",
                policy.name,
                tally.read,
                len(refusals),
            )
            return GovernanceResult(report(Verdict.REFUSED, tally, None), plan, tuple(refusals))
        manifest = _publish(temporary, output_path, tally, manifest_key)
    finally:
        temporary.unlink(missing_ok=True)

    log.info(
        "policy %s (%s) published %d of %d row(s), %d column(s)",
        policy.name,
        policy.digest,
        tally.admitted,
        tally.read,
        len(plan.published),
    )
    return GovernanceResult(report(Verdict.PUBLISHED, tally, output_path, manifest), plan)


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


def _withdraw(output: Path, because: str = "this run was refused") -> None:
    """Remove a governed set and its subject manifest: a refused run, or one whose record is missing,
    leaves neither at ``output``."""
    if output.exists():
        output.unlink()
        log.info("withdrew the governed set at %s because %s", output, because)
    if subject_manifest.withdraw_manifest(output):
        log.info("withdrew the subject manifest beside %s because %s", output, because)


def _treatments(
    policy: Policy, as_of: date, key: bytes | None
) -> dict[Treatment, Callable[[pa.Array], pa.Array]]:
    vintage = policy.deidentification.zip3_vintage
    return {
        Treatment.KEEP: lambda values: values,
        Treatment.YEAR: treatments.to_year,
        Treatment.AGE: lambda values: treatments.to_age(values, as_of),
        Treatment.BIRTH_YEAR: lambda values: treatments.to_birth_year(values, as_of),
        Treatment.ZIP3: lambda values: treatments.to_zip3(values, vintage),
        Treatment.PSEUDONYMIZE: lambda values: treatments.pseudonymize(values, key),
    }


def output_schema(plan: Plan) -> pa.Schema:
    """The schema a plan publishes: each published column under its output name and treated type."""
    fields = []
    for column in plan.published:
        source_type = plan.schema.field(column.source).type
        fields.append(pa.field(column.output, _OUTPUT_TYPES.get(column.treatment, source_type)))
    return pa.schema(fields)


def _govern_batch(
    batch: pa.RecordBatch,
    plan: Plan,
    schema: pa.Schema,
    admission: ConsentAdmission,
    treat: dict[Treatment, Callable[[pa.Array], pa.Array]],
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
            arrays.append(treat[column.treatment](values))
        except InvalidValuesError as error:
            previous = tally.invalid.get(column.source)
            count = error.count + (previous.count if previous else 0)
            tally.invalid[column.source] = InvalidValuesError(count, error.expected)
    if tally.invalid:
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
    refusals = _consent_refusals(tally)
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
    pseudonym_key: bytes | None,
    verdict: Verdict,
    tally: _Tally,
    refusals: list[Refusal],
    published_at: Path | None,
) -> GovernanceReport:
    return GovernanceReport(
        verdict=verdict,
        policy=PolicyIdentity(name=policy.name, version=policy.version, digest=policy.digest),
        purpose=policy.purpose,
        model={"name": policy.model.name, "version": policy.model.version},
        recipient=policy.recipient,
        input=str(source),
        output=str(published_at) if published_at else None,
        method=policy.deidentification.method,
        zip3_vintage=policy.deidentification.zip3_vintage.value,
        as_of=as_of,
        consent_registry=consent_display_name(consent) if consent is not None else None,
        consent_bases=[basis.value for basis in policy.consent.bases],
        pseudonym_key_fingerprint=(
            treatments.key_fingerprint(pseudonym_key)
            if pseudonym_key and plan.uses(Treatment.PSEUDONYMIZE)
            else None
        ),
        rows=RowCounts(
            read=tally.read, admitted=tally.admitted, excluded=dict(sorted(tally.excluded.items()))
        ),
        consent=_consent_summary(policy, as_of, tally),
        columns=[
            ColumnDecision(
                source=column.source,
                output=column.output,
                identifier=column.identifier,
                treatment=column.treatment,
                declared=column.declared,
            )
            for column in plan.columns
        ],
        findings=[
            Finding(column=source, identifier=identifier, count=count)
            for (source, identifier), count in sorted(tally.findings.items())
        ],
        refusals=[refusal.message for refusal in refusals],
    )
