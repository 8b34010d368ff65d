"""The plan: what happens to every source column, decided from policy and schema before any row is read."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from airflow_phi_guard.arrow_types import holds_ids, holds_text, is_scannable, is_text
from airflow_phi_guard.deid.methods import text_detectors, treatment_refusal
from airflow_phi_guard.exceptions import (
    PolicyViolationError,
    ReidentificationRiskError,
    SubjectColumnMissingError,
    SubjectColumnTypeError,
    TreatmentNotApplicableError,
    TreatmentNotPermittedError,
    UndeclaredColumnsError,
    name_some,
)
from airflow_phi_guard.phi.detectors import ValueDetector
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.known import SEARCHED_IDENTIFIERS
from airflow_phi_guard.phi.names import identify_column
from airflow_phi_guard.policy.models import DATE_TREATMENTS, Policy, Treatment, UndeclaredColumns


@dataclass(frozen=True)
class ColumnPlan:
    """One source column: its identity by name, its treatment, and its output name (None when not written).

    :param source: the input column.
    :param identifier: the Safe Harbor identifier its name reveals, or None.
    :param treatment: the declared treatment; ``drop`` for an undeclared column dropped by the policy.
    :param output: the output column, or None when the column is not published.
    :param declared: whether the policy names the column.
    """

    source: str
    identifier: SafeHarborIdentifier | None
    treatment: Treatment
    output: str | None
    declared: bool = True

    @property
    def read(self) -> bool:
        """Whether the engine reads the column at all."""
        return self.output is not None


@dataclass(frozen=True)
class Refusal:
    """A rule the data breaks, with the error class that stands for it; the message names no value."""

    error: type[PolicyViolationError]
    message: str


@dataclass(frozen=True)
class Plan:
    """The decision for every source column, and the refusals that stop the run before data moves.

    :param policy: the policy the plan carries out.
    :param schema: the source schema the plan was made for.
    :param columns: one entry per source column, in source order.
    :param refusals: rules broken by the schema alone; a plan with refusals must not run.
    """

    policy: Policy
    schema: pa.Schema
    columns: tuple[ColumnPlan, ...]
    refusals: tuple[Refusal, ...]

    @property
    def read_columns(self) -> list[str]:
        """Source columns the engine reads: the published ones, the subject column, and the identifier
        columns whose values are searched for in kept text."""
        names = [column.source for column in self.columns if column.read]
        extra = [self.policy.subject] if self.policy.subject in self.schema.names else []
        extra += list(self.known_value_columns)
        return names + [name for name in dict.fromkeys(extra) if name not in names]

    @property
    def kept_text(self) -> tuple[ColumnPlan, ...]:
        """Published columns whose text is kept as it is, and so scanned for identifiers."""
        return tuple(
            column
            for column in self.published
            if column.treatment is Treatment.KEEP and holds_text(self.schema.field(column.source).type)
        )

    @property
    def text_detectors(self) -> tuple[ValueDetector, ...]:
        """The value detectors whose finds in kept text refuse the run under the policy's method."""
        return text_detectors(self.policy.deidentification.method)

    @property
    def known_value_columns(self) -> dict[str, SafeHarborIdentifier]:
        """Identifier columns whose values are searched for in kept text: a patient's name copied into a
        note is found because the name column is read too, even when it is dropped. None without kept
        text, since there is nothing to search then."""
        if not self.kept_text:
            return {}
        return {
            column.source: column.identifier
            for column in self.columns
            if column.identifier in SEARCHED_IDENTIFIERS
        }

    @property
    def published(self) -> tuple[ColumnPlan, ...]:
        return tuple(column for column in self.columns if column.read)

    def uses(self, treatment: Treatment) -> bool:
        return any(column.treatment is treatment for column in self.published)


def _is_number(data_type: pa.DataType) -> bool:
    return pa.types.is_integer(data_type) or pa.types.is_floating(data_type) or pa.types.is_decimal(data_type)


#: Arrow types each treatment can read. Text is accepted where the treatment parses it; numbers in a date
#: column only when the column declares Excel serials (see make_plan).
_DATE_LIKE = (pa.types.is_date, pa.types.is_timestamp, is_text)
_ACCEPTS = {
    Treatment.YEAR: _DATE_LIKE,
    Treatment.AGE: _DATE_LIKE,
    Treatment.BIRTH_YEAR: _DATE_LIKE,
    Treatment.MONTH: _DATE_LIKE,
    Treatment.QUARTER: _DATE_LIKE,
    Treatment.DATE_SHIFT: _DATE_LIKE,
    # ages in years, or birth dates
    Treatment.AGE_BAND: (*_DATE_LIKE, pa.types.is_integer, pa.types.is_floating),
    Treatment.ZIP3: (is_text, pa.types.is_integer),
    Treatment.STATE: (is_text, pa.types.is_integer),
    Treatment.TOP_BOTTOM_CODE: (_is_number,),
    Treatment.SURROGATE: (holds_ids,),
}
_EXPECTED = {
    Treatment.ZIP3: "ZIP codes as text or integers",
    Treatment.STATE: "ZIP codes or prefixes as text or integers",
    Treatment.TOP_BOTTOM_CODE: "an integer, floating-point or decimal number",
    Treatment.SURROGATE: "text or integer identifiers",
    Treatment.AGE_BAND: "ages as numbers, or birth dates as a date, timestamp or ISO 8601 text",
}


def make_plan(policy: Policy, schema: pa.Schema) -> Plan:
    """Decide, from names and types only, what happens to each source column.

    :param policy: the policy to carry out.
    :param schema: the schema of the source dataset.
    """
    columns = tuple(_plan_column(policy, field) for field in schema)
    refusals: list[Refusal] = []

    undeclared = [column.source for column in columns if not column.declared]
    if undeclared and policy.undeclared is UndeclaredColumns.REFUSE:
        refusals.append(
            Refusal(
                UndeclaredColumnsError,
                f"{len(undeclared)} input column(s) not declared by the policy: {name_some(undeclared)}; "
                "declare each with a treatment and a justification, or drop it upstream",
            )
        )

    if policy.subject not in schema.names:
        refusals.append(
            Refusal(
                SubjectColumnMissingError,
                f"subject column '{policy.subject}' is not in the input, so consent cannot be checked; "
                "extract it with the data, or name the right column under 'subject'",
            )
        )
    elif not holds_ids(schema.field(policy.subject).type):
        refusals.append(
            Refusal(
                SubjectColumnTypeError,
                f"subject column '{policy.subject}' has type {schema.field(policy.subject).type}; consent "
                "is matched on text or integer ids",
            )
        )

    missing = [name for name in policy.columns if name not in schema.names and name != policy.subject]
    if missing:
        refusals.append(
            Refusal(
                UndeclaredColumnsError,
                f"{len(missing)} declared column(s) are not in the input: {name_some(missing)}; "
                "the governed set would not match its policy: remove them from the policy or the extract's "
                "selection must include them",
            )
        )

    method = policy.deidentification.method
    for column in columns:
        declaration = policy.columns.get(column.source)
        reason = treatment_refusal(column.source, column.identifier, column.treatment, method, declaration)
        if reason:
            refusals.append(Refusal(TreatmentNotPermittedError, reason))

    refusals.extend(_risk_column_refusals(policy, columns))

    for column in (column for column in columns if column.read):
        accepted = _ACCEPTS.get(column.treatment)
        field_type = schema.field(column.source).type
        if column.treatment in DATE_TREATMENTS and _declares_serials(policy, column.source):
            accepted = (*(accepted or ()), _is_number)
        if column.treatment is Treatment.KEEP and not is_scannable(field_type):
            refusals.append(
                Refusal(
                    TreatmentNotApplicableError,
                    f"column {column.source}: type {field_type} cannot be scanned for identifiers, so it "
                    "cannot be kept; flatten it upstream or drop it",
                )
            )
        elif column.treatment is Treatment.TOP_BOTTOM_CODE and not _bounds_fit(
            policy, column.source, field_type
        ):
            refusals.append(
                Refusal(
                    TreatmentNotApplicableError,
                    f"column {column.source}: a top or bottom coding bound is not a whole number, and the "
                    f"column holds integers ({field_type}); give whole-number bounds",
                )
            )
        elif accepted and not any(check(field_type) for check in accepted):
            expected = _EXPECTED.get(column.treatment, "a date, timestamp or ISO 8601 text")
            refusals.append(
                Refusal(
                    TreatmentNotApplicableError,
                    f"column {column.source}: treatment '{column.treatment}' cannot read type {field_type}; "
                    f"store it as {expected}",
                )
            )

    return Plan(policy=policy, schema=schema, columns=columns, refusals=tuple(refusals))


def _bounds_fit(policy: Policy, source: str, field_type: pa.DataType) -> bool:
    """Whether the top and bottom coding bounds can be written in an integer column unchanged."""
    declaration = policy.columns[source]
    value_type = field_type.value_type if pa.types.is_dictionary(field_type) else field_type
    if not pa.types.is_integer(value_type):
        return True
    return all(
        float(bound).is_integer() for bound in (declaration.top, declaration.bottom) if bound is not None
    )


def _declares_serials(policy: Policy, source: str) -> bool:
    declaration = policy.columns.get(source)
    return bool(declaration and declaration.dates and declaration.dates.excel_serials != "refuse")


def _risk_column_refusals(policy: Policy, columns: tuple[ColumnPlan, ...]) -> list[Refusal]:
    """The risk gate measures output columns: a quasi-identifier or sensitive column that the run does not
    publish would leave k or l unmeasured, so it refuses before data moves."""
    thresholds = policy.deidentification.risk_thresholds
    if thresholds is None:
        return []
    outputs = {column.output for column in columns if column.read}
    declared = [*thresholds.quasi_identifiers, *thresholds.sensitive]
    absent = [name for name in declared if name not in outputs]
    if not absent:
        return []
    return [
        Refusal(
            ReidentificationRiskError,
            f"{len(absent)} quasi-identifier or sensitive column(s) are not output columns: "
            f"{name_some(absent)}; name the published columns (their 'as' names) under "
            "deidentification.quasi_identifiers and l_diversity.sensitive",
        )
    ]


def _plan_column(policy: Policy, field: pa.Field) -> ColumnPlan:
    identifier = identify_column(field.name)
    declared = policy.columns.get(field.name)
    if declared is None:
        return ColumnPlan(field.name, identifier, Treatment.DROP, output=None, declared=False)
    if identifier is None and declared.treatment in DATE_TREATMENTS:
        # A treatment that reads dates says the column holds dates, whatever its name (ADMITTED, SEEN):
        # it is judged as letter C, so that a month or a shifted date is never taken for a non-identifier.
        identifier = SafeHarborIdentifier.DATES
    return ColumnPlan(field.name, identifier, declared.treatment, output=policy.output_name(field.name))
