"""The re-identification risk of a governed dataset: k-anonymity and l-diversity over its declared
quasi-identifiers, measured out of core.

An equivalence class is the set of output rows that agree on every quasi-identifier. The
:class:`RiskAccumulator` is fed the output's record batches and keeps, per class, only its row count and,
for l-diversity, the distinct sensitive values seen in it: rows are buffered and reduced with Arrow's hash
aggregation whenever the buffer outgrows a fixed size or twice the last reduction, so memory is bounded by
that size plus a few times the number of classes (and of distinct class and sensitive value pairs), never
by the number of rows. Expert determination (45 CFR 164.514(b)(1)) names no threshold; k, l and the share
of unique records over declared quasi-identifiers are the usual evidence, and the policy sets the minimums.

Values are compared exactly as the output stores them, as Arrow's hashing compares them: a missing value
matches only a missing value, NaN matches NaN, and ``-0.0`` is not ``0.0`` (a reader of the output can
tell them apart). Nothing here logs, and no message or model carries a value: names and counts only.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from airflow_phi_guard.exceptions import ReidentificationRiskError, name_some

#: How missing values count, as the result states it. A missing quasi-identifier is the value "missing",
#: which is what a reader of the output sees: two rows that are both missing in a column are alike there,
#: and a missing value never joins the class of a present one. That is exact for the published data and
#: never larger than the "a missing value matches anything" convention, so it cannot overstate k. A missing
#: sensitive value discloses nothing, so it adds no diversity: a class whose sensitive values are all
#: missing has l = 0.
MISSING_VALUES_RULE = (
    "a missing quasi-identifier value is a value of its own: it matches only a missing value in the same "
    "column, never a present one; a missing sensitive value adds no diversity to its class"
)

#: Buffered rows and partial aggregates are merged once they hold more rows than this, or than twice the
#: last merge's, whichever is more: merging stays amortised (each merge at least halves what it reads when
#: rows repeat classes) while memory stays this plus a small multiple of the number of classes.
DEFAULT_MERGE_ROWS = 1 << 19

_ROWS = "_rows"

ColumnName = Annotated[str, StringConstraints(min_length=1)]


class BelowK(StrEnum):
    """What to do when the output has equivalence classes smaller than ``k_min``."""

    REFUSE = "refuse"
    SUPPRESS = "suppress"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LDiversity(_Frozen):
    """The l-diversity threshold: every class holds at least ``l_min`` distinct values of each sensitive
    column."""

    sensitive: tuple[ColumnName, ...] = Field(
        min_length=1, description="Output columns whose values must be diverse within each class."
    )
    l_min: int = Field(
        ge=2, description="Fewest distinct values of each sensitive column that every class must hold."
    )


class RiskThresholds(_Frozen):
    """Which output columns are quasi-identifiers, and the thresholds the output must meet."""

    quasi_identifiers: tuple[ColumnName, ...] = Field(
        min_length=1,
        description="Output columns that someone could link to other sources to single a person out.",
    )
    k_min: int = Field(ge=2, description="Fewest rows that every equivalence class must hold.")
    l_diversity: LDiversity | None = Field(default=None, description="Optional l-diversity threshold.")
    below_k: BelowK = Field(
        default=BelowK.REFUSE,
        description="refuse the run when a class is smaller than k_min (default), or suppress its rows.",
    )

    @model_validator(mode="after")
    def _distinct_columns(self) -> RiskThresholds:
        declared = list(self.quasi_identifiers) + list(self.sensitive)
        repeated = sorted({name for name in declared if declared.count(name) > 1})
        if repeated:
            raise ValueError(
                f"column(s) {name_some(repeated)} declared more than once: a column is either a "
                "quasi-identifier or sensitive, once"
            )
        return self

    @property
    def sensitive(self) -> tuple[str, ...]:
        """The sensitive columns, none when no l-diversity is declared."""
        return self.l_diversity.sensitive if self.l_diversity else ()

    @property
    def l_min(self) -> int | None:
        """The l-diversity minimum, None when none is declared."""
        return self.l_diversity.l_min if self.l_diversity else None


class ReidentificationRisk(_Frozen):
    """The measured risk of the rows the output publishes (after suppression, when there was any)."""

    quasi_identifiers: tuple[str, ...] = Field(description="The quasi-identifier columns measured.")
    sensitive: tuple[str, ...] = Field(description="The sensitive columns of l-diversity, if any.")
    k_min: int = Field(description="The policy's k minimum.")
    l_min: int | None = Field(description="The policy's l minimum, if any.")
    below_k: BelowK = Field(description="What the policy does with classes smaller than k_min.")
    rows: int = Field(description="Rows measured: those published.")
    k: int | None = Field(description="Rows in the smallest class; None when no row is published.")
    classes: int = Field(description="Equivalence classes among the published rows.")
    classes_below_k: int = Field(
        description="Classes smaller than k_min before any suppression: refused, or suppressed."
    )
    unique_share: float = Field(description="Share of published rows that are alone in their class.")
    l: int | None = Field(  # noqa: E741 - the name the literature and the report use
        description="Fewest distinct values of a sensitive column in a class; None without l-diversity."
    )
    classes_below_l: int = Field(description="Published classes with fewer than l_min distinct values.")
    suppressed_rows: int = Field(description="Rows removed because their class was smaller than k_min.")
    rows_with_missing_quasi_identifier: int = Field(
        description="Published rows with at least one missing quasi-identifier value."
    )
    missing_values: str = Field(default=MISSING_VALUES_RULE, description="How missing values count.")


class EquivalenceClasses:
    """A set of equivalence classes, given by their quasi-identifier values, that tells which rows of a
    batch belong to one of them.

    Membership is exact and vectorised: each quasi-identifier value of the batch is replaced by its
    position among the set's values of that column (a missing value finds a missing one), and the rows whose
    positions form one of the set's classes are found with a hash semi-join on those integers. Integer
    positions never miss, so the join needs no null semantics of its own.

    :param classes: one row per class, the quasi-identifier columns under their internal key names.
    :param quasi_identifiers: the quasi-identifier column names, in key order.
    :param rows: how many of the measured rows fall into these classes.
    """

    def __init__(self, classes: pa.Table, quasi_identifiers: Sequence[str], rows: int) -> None:
        self.quasi_identifiers = tuple(quasi_identifiers)
        self.rows = rows
        self._key_schema = classes.schema
        self._values = [pc.unique(classes.column(i)) for i in range(classes.num_columns)]
        self._codes = pa.table(
            {
                _code(i): pc.index_in(classes.column(i), value_set=self._values[i], skip_nulls=False)
                for i in range(classes.num_columns)
            }
        )
        self.table = classes.rename_columns(list(self.quasi_identifiers))

    def __len__(self) -> int:
        return self._codes.num_rows

    def mask(self, batch: pa.RecordBatch | pa.Table) -> pa.BooleanArray:
        """True for each row of ``batch`` whose class is in this set, False for the others.

        :param batch: rows holding the quasi-identifier columns (other columns are ignored).
        :raises ReidentificationRiskError: a quasi-identifier column is missing or of another type.
        """
        if len(self) == 0 or batch.num_rows == 0:
            return pa.array(np.zeros(batch.num_rows, dtype=bool))
        keys = _key_table(batch, self.quasi_identifiers, ())
        _require_schema(keys, self._key_schema, self.quasi_identifiers)
        return self._members(keys)

    def _members(self, keys: pa.Table) -> pa.BooleanArray:
        """The membership mask of rows whose first columns are the quasi-identifiers, in key order."""
        rows = keys.num_rows
        if len(self) == 0 or rows == 0:
            return pa.array(np.zeros(rows, dtype=bool))
        columns = {
            # A value outside the set's values of its column cannot be in any of its classes: -1 matches
            # no class.
            _code(i): pc.fill_null(
                pc.index_in(keys.column(i), value_set=self._values[i], skip_nulls=False), -1
            )
            for i in range(len(self._values))
        }
        columns["_row"] = pa.array(np.arange(rows, dtype=np.int64))
        matched = pa.table(columns).join(
            self._codes, keys=list(self._codes.column_names), join_type="left semi"
        )

        members = np.zeros(rows, dtype=bool)
        members[matched.column("_row").to_numpy()] = True
        return pa.array(members)


class RiskAccumulator:
    """Measures k-anonymity and l-diversity of a dataset fed to it batch by batch.

    Feed it every batch of the governed output with :meth:`add`, then read :meth:`measure`. Under
    ``below_k: suppress``, :meth:`classes_below_k` gives the classes to remove in a second pass over the
    output; :meth:`measure` already describes the rows that remain, and after that pass each remaining
    class holds at least ``k_min`` rows.

    :param thresholds: the quasi-identifiers, the sensitive columns and the minimums.
    :param merge_rows: partial aggregates held before they are merged (see :data:`DEFAULT_MERGE_ROWS`).
    """

    def __init__(self, thresholds: RiskThresholds, *, merge_rows: int = DEFAULT_MERGE_ROWS) -> None:
        self.thresholds = thresholds
        self._quasi_identifiers = tuple(thresholds.quasi_identifiers)
        self._sensitive = tuple(thresholds.sensitive)
        self._keys = [_quasi_key(i) for i in range(len(self._quasi_identifiers))]
        self._schema: pa.Schema | None = None
        self._counts = _PartialAggregate(self._keys, _ROWS, merge_rows)
        # Known shortcoming: l-diversity keeps every distinct (class, sensitive value) pair, so its memory is
        # bounded by classes times the sensitive column's distinct values, not by classes alone; a sensitive
        # column of near-unique values (a lab result, free text) approaches one pair per row. Keeping only
        # the first l_min values per class would bound it, at the price of reporting l as "at least l_min".
        self._pairs = [
            _PartialAggregate([*self._keys, _sensitive_key(j)], None, merge_rows)
            for j in range(len(self._sensitive))
        ]

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Count the rows of one batch into their classes.

        :param batch: rows of the output holding at least the quasi-identifier and sensitive columns.
        :raises ReidentificationRiskError: a declared column is missing, of a type that cannot be compared
            exactly, or of another type than in earlier batches.
        """
        keys = _key_table(batch, self._quasi_identifiers, self._sensitive)
        if self._schema is None:
            self._schema = keys.schema
        _require_schema(keys, self._schema, self._quasi_identifiers + self._sensitive)
        if keys.num_rows == 0:
            return

        # Rows are buffered as they come, each counting 1, and grouped only when the buffer is merged:
        # grouping each batch on its own costs a second hash pass whenever classes are about as many as the
        # rows of a batch, and saves nothing otherwise but the buffer's size, which the merge bounds.
        ones = pa.repeat(pa.scalar(1, pa.int64()), keys.num_rows)
        self._counts.add(keys.select(self._keys).append_column(_ROWS, ones))
        for j, pairs in enumerate(self._pairs):
            pairs.add(keys.select([*self._keys, _sensitive_key(j)]))

    @property
    def held_rows(self) -> int:
        """Rows held in memory, buffered or merged: at most about ``merge_rows`` plus twice the number of
        classes (and of class and sensitive value pairs) per aggregate, whatever the number of rows added."""
        return self._counts.held_rows + sum(pairs.held_rows for pairs in self._pairs)

    def classes_below_k(self) -> EquivalenceClasses:
        """The classes smaller than ``k_min``, whose rows ``below_k: suppress`` removes."""
        counts = self._class_counts()
        small = counts.filter(pc.less(counts.column(_ROWS), self.thresholds.k_min))
        rows = pc.sum(small.column(_ROWS)).as_py() or 0
        return EquivalenceClasses(small.select(self._keys), self._quasi_identifiers, rows)

    def measure(self) -> ReidentificationRisk:
        """The risk of the rows the output publishes: all of them under ``refuse``, those of classes of at
        least ``k_min`` rows under ``suppress``."""
        thresholds = self.thresholds
        counts = self._class_counts()
        small = pc.less(counts.column(_ROWS), thresholds.k_min)
        classes_below_k = pc.sum(small).as_py() or 0
        suppressed_rows = 0
        below = None
        if thresholds.below_k is BelowK.SUPPRESS and classes_below_k:
            below = self.classes_below_k()
            suppressed_rows = below.rows
            counts = counts.filter(pc.invert(small))

        sizes = counts.column(_ROWS)
        rows = pc.sum(sizes).as_py() or 0
        singletons = pc.sum(pc.equal(sizes, 1)).as_py() or 0
        missing = _any_null(counts, self._keys)
        l_achieved, classes_below_l = self._diversity(below)
        return ReidentificationRisk(
            quasi_identifiers=self._quasi_identifiers,
            sensitive=self._sensitive,
            k_min=thresholds.k_min,
            l_min=thresholds.l_min,
            below_k=thresholds.below_k,
            rows=rows,
            k=pc.min(sizes).as_py(),
            classes=counts.num_rows,
            classes_below_k=classes_below_k,
            unique_share=singletons / rows if rows else 0.0,
            l=l_achieved,
            classes_below_l=classes_below_l,
            suppressed_rows=suppressed_rows,
            rows_with_missing_quasi_identifier=pc.sum(sizes.filter(missing)).as_py() or 0,
        )

    def _class_counts(self) -> pa.Table:
        return self._counts.merged(self._empty(self._keys, with_rows=True))

    def _diversity(self, suppressed: EquivalenceClasses | None) -> tuple[int | None, int]:
        """The smallest distinct count of a sensitive column in a published class, and how many published
        classes fall short of ``l_min`` in some sensitive column."""
        if not self._pairs:
            return None, 0
        l_min = self.thresholds.l_min
        smallest: int | None = None
        short: list[pa.Table] = []
        for j, pairs in enumerate(self._pairs):
            sensitive = _sensitive_key(j)
            merged = pairs.merged(self._empty([*self._keys, sensitive], with_rows=False))
            # "count" skips nulls: a missing sensitive value adds no diversity (MISSING_VALUES_RULE). Every
            # class has at least one pair, missing or not, so every class is counted.
            distinct = merged.group_by(self._keys).aggregate([(sensitive, "count")])
            distinct = distinct.select([*self._keys, f"{sensitive}_count"])
            if suppressed is not None:
                distinct = distinct.filter(pc.invert(suppressed._members(distinct)))
            if distinct.num_rows == 0:
                continue
            values = distinct.column(f"{sensitive}_count")
            least = pc.min(values).as_py()
            smallest = least if smallest is None else min(smallest, least)
            short.append(distinct.filter(pc.less(values, l_min)).select(self._keys))
        if not short:
            return smallest, 0
        # A class short in several sensitive columns is one class short.
        return smallest, pa.concat_tables(short).group_by(self._keys).aggregate([]).num_rows

    def _empty(self, keys: list[str], *, with_rows: bool) -> pa.Table:
        schema = self._schema
        fields = [schema.field(key) if schema is not None else pa.field(key, pa.null()) for key in keys]
        if with_rows:
            fields.append(pa.field(_ROWS, pa.int64()))
        return pa.schema(fields).empty_table()


def risk_refusals(risk: ReidentificationRisk) -> list[str]:
    """Why the measured risk refuses the run: classes smaller than ``k_min`` under ``refuse``, nothing left
    after suppression, or classes less diverse than ``l_min``. Empty when the output may be published.

    l-diversity below ``l_min`` always refuses: suppressing classes for their sensitive values would remove
    rows by the very attribute (often the model's label) the training set is for, and bias it silently.

    :param risk: the result of :meth:`RiskAccumulator.measure`.
    """
    quasi_identifiers = name_some(risk.quasi_identifiers)
    refusals = []
    if risk.below_k is BelowK.REFUSE and risk.classes_below_k:
        refusals.append(
            f"re-identification risk: {risk.classes_below_k} of {risk.classes} equivalence class(es) over "
            f"quasi-identifier(s) {quasi_identifiers} hold fewer than k_min {risk.k_min} rows (k is "
            f"{risk.k}); generalise these columns, declare fewer, or set below_k: suppress"
        )
    if risk.below_k is BelowK.SUPPRESS and risk.rows == 0 and risk.suppressed_rows:
        refusals.append(
            f"re-identification risk: all {risk.suppressed_rows} row(s) are in equivalence classes over "
            f"quasi-identifier(s) {quasi_identifiers} smaller than k_min {risk.k_min}, so suppression "
            "leaves nothing to publish; generalise these columns or declare fewer"
        )
    if risk.l_min is not None and risk.classes_below_l:
        refusals.append(
            f"l-diversity: {risk.classes_below_l} of {risk.classes} equivalence class(es) over "
            f"quasi-identifier(s) {quasi_identifiers} hold fewer than l_min {risk.l_min} distinct value(s) "
            f"of sensitive column(s) {name_some(risk.sensitive)} (l is {risk.l}); generalise the "
            "quasi-identifiers further"
        )
    return refusals


class _PartialAggregate:
    """Buffered rows of one grouping and their last merge, merged again once they outgrow it.

    :param keys: the grouping columns.
    :param rows: the count column (1 in a buffered row) to sum on merging, or None to keep distinct keys.
    :param merge_rows: the fewest buffered rows that trigger a merge.
    """

    def __init__(self, keys: list[str], rows: str | None, merge_rows: int) -> None:
        self._keys = keys
        self._rows = rows
        self._merge_rows = merge_rows
        self._parts: list[pa.Table] = []
        self._buffered = 0
        self._last_merge = 0
        self._pending = False

    def add(self, part: pa.Table) -> None:
        self._parts.append(part)
        self._buffered += part.num_rows
        self._pending = True
        if self._buffered > max(self._merge_rows, 2 * self._last_merge):
            self._merge()

    @property
    def held_rows(self) -> int:
        return self._buffered

    def merged(self, empty: pa.Table) -> pa.Table:
        """All parts merged into one row per group; ``empty`` when nothing was added."""
        if not self._parts:
            return empty
        if self._pending:
            self._merge()
        return self._parts[0]

    def _merge(self) -> None:
        # Known shortcoming: rows are grouped on their values, text keys hashed as text, which with the read
        # of the output makes the measure 3.7 to 10 times slower than DuckDB's GROUP BY over the same file
        # at 1 to 30 million rows (benchmarks/scale.py). Grouping on integer codes of a dictionary kept
        # across batches would cut both the read and the hashing.
        parts = pa.concat_tables(self._parts)
        if self._rows is None:
            merged = parts.group_by(self._keys).aggregate([]).select(self._keys)
        else:
            merged = parts.group_by(self._keys).aggregate([(self._rows, "sum")])
            merged = merged.select([*self._keys, f"{self._rows}_sum"]).rename_columns(
                [*self._keys, self._rows]
            )
        self._parts = [merged]
        self._buffered = self._last_merge = merged.num_rows
        self._pending = False


def _quasi_key(i: int) -> str:
    return f"_q{i}"


def _sensitive_key(j: int) -> str:
    return f"_s{j}"


def _code(i: int) -> str:
    return f"_c{i}"


def _key_table(
    batch: pa.RecordBatch | pa.Table, quasi_identifiers: Sequence[str], sensitive: Sequence[str]
) -> pa.Table:
    """The declared columns of ``batch`` under internal names, in a form that Arrow hashes exactly.

    Dictionaries are decoded (so that two batches with different dictionaries agree), string and binary
    views become large strings and binaries, half floats become floats: each is a lossless change of
    representation that every Arrow hash kernel accepts.
    """
    names = batch.schema.names
    absent = [name for name in (*quasi_identifiers, *sensitive) if name not in names]
    if absent:
        raise ReidentificationRiskError(
            [
                f"re-identification risk cannot be measured: the output has no column {name_some(absent)}; "
                "declare output column names as quasi-identifiers and sensitive columns"
            ]
        )
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    columns = {}
    for i, name in enumerate(quasi_identifiers):
        columns[_quasi_key(i)] = _hashable(name, table.column(name))
    for j, name in enumerate(sensitive):
        columns[_sensitive_key(j)] = _hashable(name, table.column(name))
    return pa.table(columns)


def _hashable(name: str, values: pa.ChunkedArray) -> pa.ChunkedArray:
    declared = values.type
    if pa.types.is_dictionary(declared):
        key_type = _key_type(declared.value_type)
        values = pa.chunked_array(
            [chunk.dictionary.cast(key_type).take(chunk.indices) for chunk in values.chunks], type=key_type
        )
    elif _key_type(declared) != declared:
        values = values.cast(_key_type(declared))
    if not _is_exact_key(values.type):
        raise ReidentificationRiskError(
            [
                f"re-identification risk cannot be measured: column {name} is of type {declared}, whose "
                "values cannot be compared exactly as class keys; declare a column of scalar values"
            ]
        )
    return values


def _key_type(data_type: pa.DataType) -> pa.DataType:
    """The type a value of ``data_type`` is hashed as: the same, or one that holds it losslessly and that
    every hash kernel accepts."""
    if pa.types.is_string_view(data_type):
        return pa.large_string()
    if pa.types.is_binary_view(data_type):
        return pa.large_binary()
    if pa.types.is_float16(data_type):
        return pa.float32()
    return data_type


def _is_exact_key(data_type: pa.DataType) -> bool:
    """Whether Arrow's grouping and set lookup both compare values of ``data_type`` exactly."""
    return (
        pa.types.is_null(data_type)
        or pa.types.is_boolean(data_type)
        or pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or pa.types.is_decimal(data_type)
        or pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_fixed_size_binary(data_type)
        or pa.types.is_temporal(data_type)
    )


def _require_schema(keys: pa.Table, schema: pa.Schema, names: Sequence[str]) -> None:
    changed = [name for name, got, want in zip(names, keys.schema, schema, strict=True) if got != want]
    if changed:
        raise ReidentificationRiskError(
            [
                f"re-identification risk cannot be measured: column(s) {name_some(changed)} changed type "
                "between batches; give the output one schema"
            ]
        )


def _any_null(table: pa.Table, keys: Sequence[str]) -> pa.ChunkedArray | pa.Array:
    """True for each row of ``table`` with a missing value in one of ``keys``."""
    missing = pc.is_null(table.column(keys[0]))
    for key in keys[1:]:
        missing = pc.or_(missing, pc.is_null(table.column(key)))
    return missing
