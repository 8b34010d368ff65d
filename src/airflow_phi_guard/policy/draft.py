"""Draft a policy from a scan: a treatment per column by its identifier, and a justification for a person.

``phi-guard policy init`` turns a dataset's PHI inventory (:mod:`airflow_phi_guard.phi.inventory`) into a
policy file that a person completes. Each column gets the treatment its identifier calls for:

- direct identifiers (A, D to Q) are dropped, and so is any column whose identifier only its values
  reveal (a note holding SSNs): it can be kept once it is cleaned, which is a person's call;
- birth dates become ``age`` (90 or older is one category), other dates ``year``; a date column of a
  type that no date treatment reads (an age or a year stored as a number) is dropped;
- ZIP codes become ``zip3``; every other geographic subdivision (B) is dropped;
- keys (R) are pseudonymized;
- everything else is kept, unless its type cannot be scanned for identifiers.

The method follows from the treatments: a keyed pseudonym is derived from the identifier, so it is not a
164.514(c) code, and a draft with one claims ``expert-determination``; without, ``safe-harbor``. Either
way the treatments satisfy :mod:`airflow_phi_guard.deid.methods`, so a completed draft passes the plan.

Every ``justification`` is left empty: the minimum-necessary judgement (45 CFR 164.514(d)) is a person's,
and the loader refuses an empty justification, so the draft cannot be used before it is written. A draft
that claims ``expert-determination`` writes the ``expert_determination`` block the method needs
(164.514(b)(1)) with every entry empty, which the loader refuses too: only the covered entity knows its
expert, the date, the report and its expiry. The file carries only column names, identifier letters,
detector names and match rates, never a value.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from airflow_phi_guard.arrow_types import holds_ids, is_scannable, is_text
from airflow_phi_guard.deid.methods import DIRECT_IDENTIFIERS, is_birth_date
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.inventory import ColumnVerdict, ScanReport
from airflow_phi_guard.phi.names import column_words, identify_column
from airflow_phi_guard.policy.models import (
    ConsentBasis,
    DeidentificationMethod,
    ExpertDetermination,
    Treatment,
)

_I = SafeHarborIdentifier
_EXPERT_DETERMINATION = DeidentificationMethod.EXPERT_DETERMINATION
_SAFE_HARBOR = DeidentificationMethod.SAFE_HARBOR

#: The purpose written into a draft unless another is given; consent records are matched against it.
DEFAULT_PURPOSE = "model-training"

#: The recipient written into a draft unless another is given: the covered entity's own use.
DEFAULT_RECIPIENT = "internal"

#: The consent bases of a draft: a research authorization or an IRB waiver, the two that admit a record
#: for research on their own (164.508, 164.512(i)).
DEFAULT_BASES: tuple[ConsentBasis, ...] = (ConsentBasis.RESEARCH_AUTHORIZATION, ConsentBasis.IRB_WAIVER)

#: Words of a key's name that say it names the individual, and so make it the subject column.
SUBJECT_WORDS = frozenset({"patient", "person", "member", "subject", "pt", "mbr", "beneficiary"})

#: The endings of a ZIP code column's name (in words); a name ending in ``3`` holds a ZIP3 already.
_ZIP_ENDINGS = (("zip",), ("zip", "code"), ("zipcode",), ("postal", "code"), ("postcode",), ("post", "code"))

#: The width of the draft's comments, as the project's code.
_WIDTH = 100

#: What the draft's comment on an ``expert_determination`` entry adds to the model's description of it.
_DETERMINATION_HINTS = {
    "determined": "Write it as YYYY-MM-DD; a run dated before it is refused.",
    "expires": "Write it as YYYY-MM-DD; a run dated on or after it is refused. Delete the line only when "
    "the determination sets no end.",
}

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_SCALAR = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})


@dataclass(frozen=True)
class DraftColumn:
    """One column of a draft: its identifier, the treatment chosen, and why (no value).

    :param source: the column's name.
    :param identifier: its identifier by the scan's verdict, or None.
    :param treatment: the treatment the draft gives it.
    :param reason: why, in words for the comment above the column.
    """

    source: str
    identifier: SafeHarborIdentifier | None
    treatment: Treatment
    reason: str


@dataclass(frozen=True)
class PolicyDraft:
    """A policy that lacks its justifications, ready to be written as YAML with comments.

    :param name: the policy's (and the model's) name.
    :param purpose: the purpose consent records are matched against.
    :param recipient: who receives the governed dataset.
    :param bases: the accepted consent bases.
    :param subject: the column that names the individual, or None when no key could be chosen.
    :param subject_note: what a person should check about the subject column, if anything.
    :param method: the de-identification method the treatments are consistent with.
    :param columns: every column of the dataset, in its order.
    :param input: the dataset scanned.
    :param rows_scanned: how many rows the scan read.
    :param sample_rows: the scan's row limit, or None.
    """

    name: str
    purpose: str
    recipient: str
    bases: tuple[ConsentBasis, ...]
    subject: str | None
    subject_note: str | None
    method: DeidentificationMethod
    columns: tuple[DraftColumn, ...]
    input: str
    rows_scanned: int
    sample_rows: int | None = None

    def treatments(self) -> dict[str, Treatment]:
        """The treatment of every column."""
        return {column.source: column.treatment for column in self.columns}

    def to_write(self) -> str:
        """What a person must write before the draft loads, in words for the header and the command.

        :return: the justifications, and the expert determination when the draft claims one.
        """
        justifications = f"the {len(self.columns)} justification(s)"
        if self.method is not DeidentificationMethod.EXPERT_DETERMINATION:
            return justifications
        entries = ", ".join(ExpertDetermination.model_fields)
        return f"{justifications} and the expert determination ({entries})"

    def to_yaml(self) -> str:
        """The draft as a policy file: a header saying what to fill in, and a comment above each column."""
        lines = [*_header(self), ""]
        lines += [f"name: {_scalar(self.name)}", "version: 1"]
        lines += [f"purpose: {_scalar(self.purpose)}  # consent records must name this purpose"]
        lines += [f'model: {{name: {_scalar(self.name)}, version: "1"}}']
        lines += [f"recipient: {_scalar(self.recipient)}  # who receives the governed dataset"]
        if self.subject_note:
            lines += textwrap.wrap(self.subject_note, _WIDTH, initial_indent="# ", subsequent_indent="# ")
        lines += [f"subject: {_scalar(self.subject or '')}"]
        lines += ["undeclared: refuse  # a column that appears later is refused until it is declared"]
        lines += ["consent:", f"  bases: [{', '.join(self.bases)}]"]
        lines += ["deidentification:", *_method_comment(self), f"  method: {self.method}"]
        if self.method is DeidentificationMethod.EXPERT_DETERMINATION:
            lines += _determination_block()
        lines += ["  zip3_vintage: census-2020", "", "columns:"]
        for column in self.columns:
            lines += [
                f"  # {column.reason}",
                f'  {_key(column.source)}: {{treatment: {column.treatment}, justification: ""}}',
            ]
        return "\n".join(lines) + "\n"


def draft_policy(
    report: ScanReport,
    schema: pa.Schema,
    *,
    name: str | None = None,
    purpose: str = DEFAULT_PURPOSE,
    recipient: str = DEFAULT_RECIPIENT,
    bases: Sequence[ConsentBasis] = DEFAULT_BASES,
) -> PolicyDraft:
    """The draft policy for a scanned dataset.

    :param report: the dataset's scan.
    :param schema: the dataset's schema, whose types decide which treatments can apply.
    :param name: the policy's name; the dataset's file name by default.
    :param purpose: the purpose consent records are matched against.
    :param recipient: who receives the governed dataset.
    :param bases: the accepted consent bases.
    """
    columns = tuple(_draft_column(verdict, schema.field(verdict.column).type) for verdict in report.columns)
    subject, subject_note = _subject(columns, schema)
    pseudonymized = any(column.treatment is Treatment.PSEUDONYMIZE for column in columns)
    method = _EXPERT_DETERMINATION if pseudonymized else _SAFE_HARBOR
    return PolicyDraft(
        name=name or _name_from(report.input),
        purpose=purpose,
        recipient=recipient,
        bases=tuple(bases),
        subject=subject,
        subject_note=subject_note,
        method=method,
        columns=columns,
        input=report.input,
        rows_scanned=report.rows_scanned,
        sample_rows=report.sample_rows,
    )


def init_policy(
    path: str | os.PathLike[str],
    *,
    sample_rows: int | None = None,
    name: str | None = None,
    purpose: str = DEFAULT_PURPOSE,
    recipient: str = DEFAULT_RECIPIENT,
    progress: Callable[[int], None] | None = None,
) -> PolicyDraft:
    """Scan a dataset and draft its policy.

    :param path: a Parquet file or folder, or a CSV file.
    :param sample_rows: scan only the first this many rows; the whole dataset when None.
    :param name: the policy's name; the dataset's file name by default.
    :param purpose: the purpose consent records are matched against.
    :param recipient: who receives the governed dataset.
    :param progress: called after each batch with the number of rows scanned so far.
    """
    from airflow_phi_guard.engine.source import open_source
    from airflow_phi_guard.phi.inventory import scan_dataset

    report = scan_dataset(path, sample_rows=sample_rows, progress=progress)
    return draft_policy(report, open_source(path).schema, name=name, purpose=purpose, recipient=recipient)


def _draft_column(verdict: ColumnVerdict, field_type: pa.DataType) -> DraftColumn:
    identifier = verdict.identifier
    source = verdict.column
    if identifier is None:
        return _unidentified(verdict, field_type)

    letter = identifier.letter
    if identify_column(source) is not identifier:
        evidence = ", ".join(item.describe() for item in verdict.evidence if item.identifier is identifier)
        reason = f"{letter} by its values ({evidence}): dropped; keep it only once it is cleaned"
        return DraftColumn(source, identifier, Treatment.DROP, reason)
    if identifier in DIRECT_IDENTIFIERS:
        return DraftColumn(
            source, identifier, Treatment.DROP, f"{letter} by name: a direct identifier, dropped"
        )
    if identifier is _I.GEOGRAPHIC_SUBDIVISION:
        if _is_zip_code(source) and (is_text(field_type) or pa.types.is_integer(field_type)):
            reason = f"{letter} by name: a ZIP code, reduced to its first 3 digits (000 where restricted)"
            return DraftColumn(source, identifier, Treatment.ZIP3, reason)
        return DraftColumn(
            source, identifier, Treatment.DROP, f"{letter} by name: smaller than a State, dropped"
        )
    if identifier is _I.DATES:
        return _date(source, field_type)
    if identifier is _I.OTHER_UNIQUE_IDENTIFIER:
        reason = f"{letter} by name: a key, pseudonymized (a keyed hash is no 164.514(c) code)"
        return DraftColumn(source, identifier, Treatment.PSEUDONYMIZE, reason)
    return DraftColumn(source, identifier, Treatment.DROP, f"{letter} by name: dropped")


def _unidentified(verdict: ColumnVerdict, field_type: pa.DataType) -> DraftColumn:
    if not is_scannable(field_type):
        reason = f"no identifier found, but type {field_type} cannot be scanned for one: dropped"
        return DraftColumn(verdict.column, None, Treatment.DROP, reason)
    doubt = ""
    if verdict.runner_up is not None:
        weaker = ", ".join(
            item.describe() for item in verdict.evidence if item.identifier is verdict.runner_up
        )
        doubt = f" (weak evidence of {verdict.runner_up.letter}: {weaker})"
    return DraftColumn(verdict.column, None, Treatment.KEEP, f"no identifier found{doubt}: kept")


def _date(source: str, field_type: pa.DataType) -> DraftColumn:
    date_like = pa.types.is_date(field_type) or pa.types.is_timestamp(field_type) or is_text(field_type)
    if not date_like:
        reason = f"C by name, stored as {field_type}, which no date treatment reads: dropped"
        return DraftColumn(source, _I.DATES, Treatment.DROP, reason)
    if is_birth_date(source):
        reason = "C by name: a birth date, reduced to the age (90 or older is one category)"
        return DraftColumn(source, _I.DATES, Treatment.AGE, reason)
    return DraftColumn(source, _I.DATES, Treatment.YEAR, "C by name: reduced to the year")


def _subject(columns: Sequence[DraftColumn], schema: pa.Schema) -> tuple[str | None, str | None]:
    """The key that names the individual: one whose name says so, else the first key, else none."""
    keys = [
        column.source
        for column in columns
        if column.treatment is Treatment.PSEUDONYMIZE and holds_ids(schema.field(column.source).type)
    ]
    for key in keys:
        if SUBJECT_WORDS & set(column_words(key)):
            return key, None
    if keys:
        note = (
            f"no key's name says patient, person or member: check that {keys[0]} names the individual "
            "whose consent admits each row"
        )
        return keys[0], note
    return None, (
        "no key names the individual: write the column whose values are the subject ids of the consent "
        "registry, and declare it under columns"
    )


def _is_zip_code(source: str) -> bool:
    # "ZIP3" loses its trailing 3 as an ordinal, but holds three digits that zip3 would pad and suppress
    if source.rstrip().endswith("3"):
        return False
    words = column_words(source)
    return any(words[-len(ending) :] == ending for ending in _ZIP_ENDINGS)


def _name_from(source: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", Path(source).stem.lower()).strip("-")
    return slug or "draft"


def _header(draft: PolicyDraft) -> list[str]:
    scanned = f"{draft.rows_scanned} row(s)" + (" (a sample)" if draft.sample_rows is not None else "")
    empty = len(draft.columns)
    found = sorted({column.identifier for column in draft.columns if column.identifier})
    determination = ""
    if draft.method is DeidentificationMethod.EXPERT_DETERMINATION:
        determination = (
            ", and every entry of the `expert_determination` that its method rests on (45 CFR "
            "164.514(b)(1)), under `deidentification`"
        )
    paragraph = (
        f"It does not load until a person has written all {empty} `justification` entries: why the "
        "purpose needs each kept column, or why a column is dropped (minimum necessary, 45 CFR 164.502(b) "
        f"and 164.514(d)){determination}. Review as well: the purpose, the model, the recipient, the "
        "consent bases, the subject column and every treatment. The comment above each column says what "
        "the scan found (identifier letters, detector names and match rates). Identification by software "
        "can miss what a person would see; this draft is no compliance verdict and no legal advice."
    )
    return [
        "# DRAFT minimum-necessary policy, written by `phi-guard policy init` from a scan of",
        f"# {draft.input} ({scanned}).",
        "#",
        *_comment(paragraph, ""),
        "#",
        "# Identifier letters (45 CFR 164.514(b)(2)(i)):",
        *(f"#   {identifier.letter}: {identifier.description}" for identifier in found),
    ]


def _method_comment(draft: PolicyDraft) -> list[str]:
    if draft.method is DeidentificationMethod.EXPERT_DETERMINATION:
        return _comment(
            "Keyed pseudonyms are derived from the identifier (no 164.514(c) codes), so the output is not "
            "Safe Harbor: it rests on an expert determination (164.514(b)(1)). Drop the keys, choose "
            "safe-harbor and delete expert_determination where no expert determines the pseudonymized set.",
            "  ",
        )
    return ["  # Every identifier is dropped or reduced as 164.514(b)(2) requires."]


def _determination_block() -> list[str]:
    """The ``expert_determination`` entries with empty values, which the loader refuses until written."""
    explanation = (
        "The determination (45 CFR 164.514(b)(1)): a person with appropriate knowledge of and experience "
        "with generally accepted statistical and scientific principles and methods for rendering "
        "information not individually identifiable determines that the risk is very small that the "
        "information could be used, alone or with other reasonably available information, by an "
        "anticipated recipient (the recipient above) to identify an individual, and documents the "
        "methods and results. The rule sets no numeric threshold; k-anonymity over declared "
        "quasi_identifiers (with k_min), which each run then measures, is the usual evidence. The "
        "policy does not load while an entry is empty: write each from the expert's report."
    )
    lines = [*_comment(explanation, "  "), "  expert_determination:"]
    for key, field in ExpertDetermination.model_fields.items():
        hint = _DETERMINATION_HINTS.get(key, "")
        lines += _comment(f"{field.description} {hint}".strip(), "    ")
        lines.append(f'    {key}: ""')
    return lines


def _comment(text: str, indent: str) -> list[str]:
    """``text`` as YAML comment lines at ``indent``, wrapped to the draft's width."""
    prefix = f"{indent}# "
    return textwrap.wrap(text, _WIDTH, initial_indent=prefix, subsequent_indent=prefix)


def _scalar(text: str) -> str:
    """A YAML scalar that reads back as the same text: plain when it is a simple word that YAML 1.1
    does not read as a boolean or null, double-quoted otherwise."""
    if _PLAIN_SCALAR.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _key(name: str) -> str:
    # the loader keeps keys as the text written (NO stays "NO"), so only names outside [A-Za-z0-9_] are
    # quoted; JSON's double-quoted strings are YAML's too
    return name if _PLAIN_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)
