"""Re-identification risk: k-anonymity and l-diversity against hand counts and an independent count.

Besides pyCANON itself (``test_risk_pycanon.py``, on data without missing values, since pyCANON drops rows
with a missing quasi-identifier), the cross-check here is an independent implementation in plain Python
(tuples in a ``Counter``, values in sets) with pyCANON's definitions: k is the size of the smallest class,
l the smallest number of distinct values of a sensitive column in a class (pyCANON's ``gen=True``), and a
missing value is a value of its own.
"""

from __future__ import annotations

import datetime
import json
import logging
import random
from collections import Counter, defaultdict
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from airflow_phi_guard.deid.risk import (
    DEFAULT_MERGE_ROWS,
    MISSING_VALUES_RULE,
    BelowK,
    ReidentificationRisk,
    RiskAccumulator,
    RiskThresholds,
    risk_refusals,
)
from airflow_phi_guard.exceptions import PolicyViolationError, ReidentificationRiskError

NAN = float("nan")


def thresholds(qi, k_min=2, sensitive=(), l_min=2, below_k="refuse") -> RiskThresholds:
    diversity = {"sensitive": list(sensitive), "l_min": l_min} if sensitive else None
    return RiskThresholds(quasi_identifiers=qi, k_min=k_min, l_diversity=diversity, below_k=below_k)


def measure(table: pa.Table, rules: RiskThresholds, batch_rows: int | None = None, merge_rows: int = 3):
    accumulator = RiskAccumulator(rules, merge_rows=merge_rows)
    for batch in table.to_batches(max_chunksize=batch_rows or max(table.num_rows, 1)):
        accumulator.add(batch)
    return accumulator


def reference(table: pa.Table, rules: RiskThresholds) -> dict[str, object]:
    """The risk by plain counting: each row's quasi-identifier tuple is its class; None equals None."""
    rows = table.to_pylist()
    qi, sensitive = rules.quasi_identifiers, rules.sensitive
    sizes = Counter(tuple(row[c] for c in qi) for row in rows)
    distinct: dict[tuple, list[set]] = defaultdict(lambda: [set() for _ in sensitive])
    for row in rows:
        cls = tuple(row[c] for c in qi)
        distinct[cls]  # every class has an entry, even with only missing sensitive values
        for j, column in enumerate(sensitive):
            if row[column] is not None:
                distinct[cls][j].add(row[column])

    small = {cls for cls, size in sizes.items() if size < rules.k_min}
    published = {
        cls: size for cls, size in sizes.items() if rules.below_k is BelowK.REFUSE or cls not in small
    }
    total = sum(published.values())
    per_class_l = (
        {cls: min(len(values) for values in distinct[cls]) for cls in published} if sensitive else {}
    )
    return {
        "rows": total,
        "k": min(published.values(), default=None),
        "classes": len(published),
        "classes_below_k": len(small),
        "unique_share": sum(1 for size in published.values() if size == 1) / total if total else 0.0,
        "l": min(per_class_l.values(), default=None) if sensitive else None,
        "classes_below_l": sum(1 for n in per_class_l.values() if n < rules.l_min) if sensitive else 0,
        "suppressed_rows": sum(sizes[c] for c in small) if rules.below_k is BelowK.SUPPRESS else 0,
        "rows_with_missing_quasi_identifier": sum(
            size for cls, size in published.items() if any(v is None for v in cls)
        ),
    }


def as_figures(risk: ReidentificationRisk) -> dict[str, object]:
    return risk.model_dump(include=set(reference_keys()))


def reference_keys() -> list[str]:
    return [
        "rows",
        "k",
        "classes",
        "classes_below_k",
        "unique_share",
        "l",
        "classes_below_l",
        "suppressed_rows",
        "rows_with_missing_quasi_identifier",
    ]


# --- hand-counted tables ------------------------------------------------------------------------------------

# age, sex -> dx. Classes: (30,F) 2 rows, dx {a,b}; (40,M) 3 rows, dx {a,c}; (missing,missing) 2 rows, dx
# {x} (a missing dx adds nothing); (50,F) 1 row, dx {z}. k = 1, 4 classes, 1 below k_min 2, 1 of 8 rows
# unique, l = 1, 2 classes below l_min 2, 2 rows with a missing quasi-identifier.
CLINIC = pa.table(
    {
        "age": [30, 30, 40, 40, 40, None, None, 50],
        "sex": ["F", "F", "M", "M", "M", None, None, "F"],
        "dx": ["a", "b", "a", "a", "c", None, "x", "z"],
    }
)


@pytest.mark.parametrize(
    ("table", "rules", "expected"),
    [
        # The clinic above, refused: the figures of the comment.
        (CLINIC, thresholds(["age", "sex"], sensitive=["dx"]),
         dict(rows=8, k=1, classes=4, classes_below_k=1, unique_share=1 / 8, l=1, classes_below_l=2,
              suppressed_rows=0, rows_with_missing_quasi_identifier=2)),
        # Suppressed: (50,F) goes, 7 rows in 3 classes remain, k = 2; the all-missing-dx class still has l 1.
        (CLINIC, thresholds(["age", "sex"], sensitive=["dx"], below_k="suppress"),
         dict(rows=7, k=2, classes=3, classes_below_k=1, unique_share=0.0, l=1, classes_below_l=1,
              suppressed_rows=1, rows_with_missing_quasi_identifier=2)),
        # age alone: 30 x2, 40 x3, missing x2, 50 x1; with k_min 3 three classes are below it.
        (CLINIC, thresholds(["age"], k_min=3),
         dict(rows=8, k=1, classes=4, classes_below_k=3, unique_share=1 / 8, l=None, classes_below_l=0,
              suppressed_rows=0, rows_with_missing_quasi_identifier=2)),
        # A missing value matches only a missing value: (30,missing) is not (30,F); (missing,F) is not (30,F).
        (pa.table({"age": [30, 30, None, 30], "sex": [None, "F", "F", None]}), thresholds(["age", "sex"]),
         dict(rows=4, k=1, classes=3, classes_below_k=2, unique_share=2 / 4, l=None, classes_below_l=0,
              suppressed_rows=0, rows_with_missing_quasi_identifier=3)),
        # Floats as stored: NaN matches NaN, -0.0 is not 0.0 (a reader of the output tells them apart),
        # a missing value is neither: classes NaN x2, 0.0 x1, -0.0 x1, missing x1.
        (pa.table({"lab": [NAN, NAN, 0.0, -0.0, None]}), thresholds(["lab"]),
         dict(rows=5, k=1, classes=4, classes_below_k=3, unique_share=3 / 5, l=None, classes_below_l=0,
              suppressed_rows=0, rows_with_missing_quasi_identifier=1)),
        # Every class large enough: k is the smallest, 2; nothing below.
        (pa.table({"zip3": ["681", "681", "681", "685", "685"]}), thresholds(["zip3"]),
         dict(rows=5, k=2, classes=2, classes_below_k=0, unique_share=0.0, l=None, classes_below_l=0,
              suppressed_rows=0, rows_with_missing_quasi_identifier=0)),
        # Two sensitive columns: class A has dx {a,b} but drug {p}: its l is 1; class B has dx {a} and drug
        # {p,q}: l 1; class C has dx {a,b}, drug {p,q}: l 2. Classes A and B each fall short once: 2 short.
        (pa.table({"g": ["A", "A", "B", "B", "C", "C"], "dx": ["a", "b", "a", "a", "a", "b"],
                   "drug": ["p", "p", "p", "q", "p", "q"]}),
         thresholds(["g"], sensitive=["dx", "drug"]),
         dict(rows=6, k=2, classes=3, classes_below_k=0, unique_share=0.0, l=1, classes_below_l=2,
              suppressed_rows=0, rows_with_missing_quasi_identifier=0)),
        # A class short in both sensitive columns counts once; l_min 3 puts every class short: 3.
        (pa.table({"g": ["A", "A", "B", "B", "C", "C"], "dx": ["a", "b", "a", "a", "a", "b"],
                   "drug": ["p", "p", "p", "q", "p", "q"]}),
         thresholds(["g"], sensitive=["dx", "drug"], l_min=3),
         dict(rows=6, k=2, classes=3, classes_below_k=0, unique_share=0.0, l=1, classes_below_l=3,
              suppressed_rows=0, rows_with_missing_quasi_identifier=0)),
        # A class whose sensitive values are all missing discloses nothing, and is not diverse: l = 0.
        (pa.table({"g": ["A", "A", "B", "B"], "dx": [None, None, "a", "b"]}),
         thresholds(["g"], sensitive=["dx"]),
         dict(rows=4, k=2, classes=2, classes_below_k=0, unique_share=0.0, l=0, classes_below_l=1,
              suppressed_rows=0, rows_with_missing_quasi_identifier=0)),
        # Suppression of the one small class leaves l over the rest: B (dx {a,b}) alone, l = 2.
        (pa.table({"g": ["A", "B", "B"], "dx": ["a", "a", "b"]}),
         thresholds(["g"], sensitive=["dx"], below_k="suppress"),
         dict(rows=2, k=2, classes=1, classes_below_k=1, unique_share=0.0, l=2, classes_below_l=0,
              suppressed_rows=1, rows_with_missing_quasi_identifier=0)),
        # Every class below k_min and suppressed: nothing is left, k and l are undefined.
        (pa.table({"g": ["A", "B"], "dx": ["a", "b"]}),
         thresholds(["g"], sensitive=["dx"], below_k="suppress"),
         dict(rows=0, k=None, classes=0, classes_below_k=2, unique_share=0.0, l=None, classes_below_l=0,
              suppressed_rows=2, rows_with_missing_quasi_identifier=0)),
    ],
)  # fmt: skip
def test_hand_counted_tables(table, rules, expected):
    for batch_rows in (1, 7, None):
        for merge_rows in (1, 3, DEFAULT_MERGE_ROWS):  # merged on every batch, now and then, only at the end
            assert as_figures(measure(table, rules, batch_rows, merge_rows).measure()) == expected


def test_the_result_states_the_rule_for_missing_values_and_the_thresholds():
    risk = measure(CLINIC, thresholds(["age", "sex"], k_min=3, sensitive=["dx"], l_min=2)).measure()
    assert risk.missing_values == MISSING_VALUES_RULE
    assert "matches only a missing value" in risk.missing_values
    assert (risk.quasi_identifiers, risk.sensitive, risk.k_min, risk.l_min) == (("age", "sex"), ("dx",), 3, 2)
    assert json.loads(risk.model_dump_json())["below_k"] == "refuse"


def test_an_empty_output_has_no_classes_and_no_refusal():
    accumulator = RiskAccumulator(thresholds(["age"], sensitive=["dx"]))
    risk = accumulator.measure()
    assert (risk.rows, risk.k, risk.classes, risk.l, risk.unique_share) == (0, None, 0, None, 0.0)
    assert risk_refusals(risk) == []
    assert len(accumulator.classes_below_k()) == 0
    assert accumulator.classes_below_k().mask(CLINIC).to_pylist() == [False] * 8


# --- independent cross-check on random data -----------------------------------------------------------------


def random_table(seed: int, rows: int = 300) -> pa.Table:
    """Synthetic rows with a few small-domain quasi-identifiers, about 10% missing in each column."""
    rng = random.Random(seed)

    def pick(values, missing=0.1):
        return None if rng.random() < missing else rng.choice(values)

    bands = [0, 18, 30, 45, 65, 90]
    years = [datetime.date(y, 1, 1) for y in (2019, 2020, 2021)]
    return pa.table(
        {
            "age_band": pa.array([pick(bands) for _ in range(rows)], pa.int16()),
            "sex": [pick(["F", "M", "X"]) for _ in range(rows)],
            "zip3": pa.array([pick(["681", "685", "689", "693"]) for _ in range(rows)]).dictionary_encode(),
            "year": pa.array([pick(years) for _ in range(rows)], pa.date32()),
            "dx": [pick(["I10", "E11", "J45", "F32", "C50"], missing=0.2) for _ in range(rows)],
            "los": [pick([1, 2, 3]) for _ in range(rows)],
        }
    )


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(
    ("qi", "k_min", "sensitive", "l_min"),
    [
        (["age_band", "sex"], 3, ["dx"], 2),
        (["age_band", "sex", "zip3"], 2, ["dx", "los"], 2),
        (["age_band", "sex", "zip3", "year"], 5, ["dx"], 3),  # mostly small classes
        (["sex"], 10, [], 2),
    ],
)
@pytest.mark.parametrize("below_k", ["refuse", "suppress"])
def test_agrees_with_an_independent_count(seed, qi, k_min, sensitive, l_min, below_k):
    table = random_table(seed)
    rules = thresholds(qi, k_min=k_min, sensitive=sensitive, l_min=l_min, below_k=below_k)
    assert as_figures(measure(table, rules, batch_rows=64).measure()) == reference(table, rules)


@pytest.mark.parametrize("seed", [11, 12])
@pytest.mark.parametrize("merge_rows", [1, 5, 1 << 19])
def test_the_result_does_not_depend_on_how_rows_are_batched(seed, merge_rows):
    table = random_table(seed, rows=120)
    rules = thresholds(["age_band", "sex", "zip3"], k_min=3, sensitive=["dx", "los"], below_k="suppress")
    results = {
        batch_rows: measure(table, rules, batch_rows, merge_rows).measure() for batch_rows in (1, 7, None)
    }
    assert results[1] == results[7] == results[None]
    assert as_figures(results[None]) == reference(table, rules)


def test_memory_is_bounded_by_the_classes_not_the_rows():
    # 5 classes, each with 2 distinct dx values: 5 count rows and 10 pairs once merged, however many rows.
    batch = pa.table({"g": ["A", "B", "C", "D", "E"] * 2, "dx": ["a"] * 5 + ["b"] * 5})
    accumulator = RiskAccumulator(thresholds(["g"], sensitive=["dx"]), merge_rows=40)
    most = 0
    for _ in range(500):
        accumulator.add(batch)
        most = max(most, accumulator.held_rows)
    # Each aggregate holds at most its merge threshold plus one batch's part: 40 + 5 and 40 + 10.
    assert most <= 95
    risk = accumulator.measure()
    assert (risk.rows, risk.k, risk.classes, risk.l) == (5000, 1000, 5, 2)


# --- suppression: a second pass leaves k >= k_min -----------------------------------------------------------


@pytest.mark.parametrize("seed", [21, 22, 23, 24])
@pytest.mark.parametrize("k_min", [2, 3, 6])
def test_a_second_pass_without_the_small_classes_is_k_anonymous(seed, k_min):
    table = random_table(seed)
    rules = thresholds(["age_band", "sex", "zip3"], k_min=k_min, sensitive=["dx"], below_k="suppress")
    first = measure(table, rules, batch_rows=50)
    risk = first.measure()
    small = first.classes_below_k()
    assert risk.classes_below_k == len(small) > 0

    kept, suppressed = [], 0
    for batch in table.to_batches(max_chunksize=37):
        members = small.mask(batch)
        suppressed += pc.sum(members).as_py() or 0
        kept.append(batch.filter(pc.invert(members)))
    published = pa.Table.from_batches(kept, schema=table.schema)

    again = measure(published, thresholds(["age_band", "sex", "zip3"], k_min=k_min, sensitive=["dx"]))
    after = again.measure()
    assert after.k is None or after.k >= k_min
    assert after.classes_below_k == 0
    assert suppressed == risk.suppressed_rows == small.rows == table.num_rows - published.num_rows
    assert (after.rows, after.k, after.classes, after.l, after.unique_share) == (
        risk.rows,
        risk.k,
        risk.classes,
        risk.l,
        risk.unique_share,
    )


def test_the_classes_below_k_are_a_table_of_their_quasi_identifier_values():
    accumulator = measure(CLINIC, thresholds(["age", "sex"], k_min=3))
    small = accumulator.classes_below_k()
    # (30,F) x2, (missing,missing) x2 and (50,F) x1 are below 3; (40,M) x3 is not.
    assert small.table.column_names == ["age", "sex"]
    assert sorted(small.table.to_pylist(), key=repr) == sorted(
        [{"age": 30, "sex": "F"}, {"age": None, "sex": None}, {"age": 50, "sex": "F"}], key=repr
    )
    assert small.rows == 5
    # The mask reads any batch holding the columns, whatever else it holds.
    extra = CLINIC.append_column("note", pa.array(["n"] * 8))
    assert small.mask(extra).to_pylist() == [True, True, False, False, False, True, True, True]


def test_the_mask_matches_missing_values_only_with_missing_values():
    accumulator = measure(pa.table({"a": [1, None], "b": [None, "x"]}), thresholds(["a", "b"]))
    small = accumulator.classes_below_k()  # (1, missing) and (missing, x)
    probe = pa.table({"a": [1, 1, None, None, None, 2], "b": [None, "x", "x", None, "y", None]})
    assert small.mask(probe).to_pylist() == [True, False, True, False, False, False]


# --- refusals -----------------------------------------------------------------------------------------------


def test_classes_below_k_refuse_unless_suppressed():
    refused = measure(CLINIC, thresholds(["age", "sex"])).measure()
    [message] = risk_refusals(refused)
    assert "1 of 4 equivalence class(es)" in message
    assert "age, sex" in message
    assert "k_min 2" in message
    assert "below_k: suppress" in message

    assert risk_refusals(measure(CLINIC, thresholds(["age", "sex"], below_k="suppress")).measure()) == []


def test_l_below_l_min_refuses_even_under_suppression():
    rules = thresholds(["age", "sex"], sensitive=["dx"], below_k="suppress")
    [message] = risk_refusals(measure(CLINIC, rules).measure())
    assert message.startswith("l-diversity: 1 of 3 equivalence class(es)")
    assert "l_min 2" in message
    assert "dx" in message


def test_suppressing_every_row_refuses():
    rules = thresholds(["g"], k_min=3, below_k="suppress")
    [message] = risk_refusals(measure(pa.table({"g": ["A", "A", "B"]}), rules).measure())
    assert "all 3 row(s)" in message
    assert "nothing to publish" in message


def test_meeting_both_thresholds_refuses_nothing():
    table = pa.table({"g": ["A", "A", "B", "B"], "dx": ["a", "b", "a", "b"]})
    assert risk_refusals(measure(table, thresholds(["g"], sensitive=["dx"])).measure()) == []


# --- every Arrow type of a quasi-identifier, compared exactly -----------------------------------------------

NEW_YEAR = datetime.datetime(2020, 1, 1)
NEW_YEAR_UTC = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("values", "data_type"),
    [
        ([1, 1, None, 2**62], pa.int64()),
        ([-1, -1, None, 127], pa.int8()),
        ([2**64 - 1, 2**64 - 1, None, 0], pa.uint64()),  # beyond int64: no silent cast
        ([True, True, None, False], pa.bool_()),
        ([0.1, 0.1, None, 0.30000000000000004], pa.float64()),
        ([1.5, 1.5, None, 2.5], pa.float16()),
        ([Decimal("1.10"), Decimal("1.10"), None, Decimal("1.11")], pa.decimal128(5, 2)),
        ([Decimal("1.1"), Decimal("1.1"), None, Decimal("2")], pa.decimal256(40, 1)),
        (["681", "681", None, "0681"], pa.string()),
        (["681", "681", None, "68"], pa.large_string()),
        (["681", "681", None, "682"], pa.string_view()),
        ([b"\x00a", b"\x00a", None, b"a"], pa.binary()),
        ([b"ab", b"ab", None, b"ba"], pa.binary(2)),
        ([b"ab", b"ab", None, b"b"], pa.large_binary()),
        ([b"ab", b"ab", None, b"b"], pa.binary_view()),
        ([datetime.date(2020, 2, 29)] * 2 + [None, datetime.date(2020, 3, 1)], pa.date32()),
        ([datetime.date(2020, 2, 29)] * 2 + [None, datetime.date(2020, 3, 1)], pa.date64()),
        ([NEW_YEAR_UTC] * 2 + [None, NEW_YEAR_UTC + datetime.timedelta(seconds=1)],
         pa.timestamp("us", tz="America/New_York")),
        ([NEW_YEAR] * 2 + [None, NEW_YEAR + datetime.timedelta(microseconds=1)], pa.timestamp("us")),
        ([datetime.time(1)] * 2 + [None, datetime.time(2)], pa.time64("us")),
        ([datetime.timedelta(days=1)] * 2 + [None, datetime.timedelta(days=2)], pa.duration("s")),
        ([None, None, None, None], pa.null()),
    ],
)  # fmt: skip
@pytest.mark.parametrize("encode", [False, True])
def test_each_arrow_type_of_a_quasi_identifier_is_compared_exactly(values, data_type, encode):
    array = pa.array(values, data_type)
    if encode and not pa.types.is_null(data_type):
        array = array.dictionary_encode()
    table = pa.table({"qi": array})
    accumulator = measure(table, thresholds(["qi"], k_min=2), batch_rows=1)
    risk = accumulator.measure()
    if pa.types.is_null(data_type):
        # All four missing: one class of 4.
        assert (risk.k, risk.classes, risk.classes_below_k, risk.rows_with_missing_quasi_identifier) == (
            4,
            1,
            0,
            4,
        )
        assert accumulator.classes_below_k().mask(table).to_pylist() == [False] * 4
        return
    # The first two rows alike, the missing one alone, the last one alone (it differs from the first in
    # the least the type can tell apart).
    assert (risk.k, risk.classes, risk.classes_below_k, risk.rows_with_missing_quasi_identifier) == (
        1,
        3,
        2,
        1,
    )
    assert risk.unique_share == 2 / 4
    # The mask finds exactly the rows of the small classes, the missing one among them.
    assert accumulator.classes_below_k().mask(table).to_pylist() == [False, False, True, True]


def test_batches_with_different_dictionaries_fall_into_the_same_classes():
    first = pa.table({"zip3": pa.array(["681", "685"]).dictionary_encode()})
    second = pa.table({"zip3": pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int32()), ["685", "681"])})
    accumulator = RiskAccumulator(thresholds(["zip3"]))
    accumulator.add(first)
    accumulator.add(second)
    risk = accumulator.measure()
    assert (risk.classes, risk.k) == (2, 2)


@pytest.mark.parametrize(
    "array",
    [
        pa.array([["CANARY-LIST"]]),
        pa.array([{"name": "CANARY-STRUCT"}]),
        pa.array([[("CANARY-MAP", 1)]], pa.map_(pa.string(), pa.int64())),
    ],
)
def test_a_column_that_cannot_be_compared_exactly_refuses_without_its_values(array):
    with pytest.raises(ReidentificationRiskError) as raised:
        RiskAccumulator(thresholds(["qi"])).add(pa.table({"qi": array}))
    assert isinstance(raised.value, PolicyViolationError)
    assert "column qi is of type" in str(raised.value)
    assert "CANARY" not in str(raised.value)


def test_a_missing_column_refuses_naming_it():
    with pytest.raises(ReidentificationRiskError, match=r"no column ZIP3, dx"):
        RiskAccumulator(thresholds(["ZIP3"], sensitive=["dx"])).add(pa.table({"AGE": [1]}))


def test_a_type_that_changes_between_batches_refuses():
    accumulator = RiskAccumulator(thresholds(["age"]))
    accumulator.add(pa.table({"age": pa.array([1], pa.int32())}))
    with pytest.raises(ReidentificationRiskError, match=r"column\(s\) age changed type"):
        accumulator.add(pa.table({"age": pa.array([1], pa.int64())}))


# --- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"quasi_identifiers": [], "k_min": 2},  # nothing to measure
        {"quasi_identifiers": ["AGE"], "k_min": 1},  # every dataset is 1-anonymous: no threshold at all
        {"quasi_identifiers": ["AGE"], "k_min": 2, "l_diversity": {"sensitive": ["DX"], "l_min": 1}},
        {"quasi_identifiers": ["AGE"], "k_min": 2, "l_diversity": {"sensitive": [], "l_min": 2}},
        {"quasi_identifiers": ["AGE", "AGE"], "k_min": 2},  # declared twice
        {"quasi_identifiers": ["AGE"], "k_min": 2, "l_diversity": {"sensitive": ["AGE"], "l_min": 2}},
        {"quasi_identifiers": ["AGE"], "k_min": 2, "below_k": "drop"},  # unknown choice
        {"quasi_identifiers": ["AGE"], "k_min": 2, "k_max": 5},  # unknown key
    ],
)
def test_thresholds_that_make_no_sense_are_refused(config):
    with pytest.raises(ValidationError):
        RiskThresholds.model_validate(config)


def test_thresholds_default_to_refusing_and_are_frozen():
    rules = RiskThresholds(quasi_identifiers=["AGE"], k_min=5)
    assert rules.below_k is BelowK.REFUSE
    assert (rules.sensitive, rules.l_min) == ((), None)
    with pytest.raises(ValidationError):
        rules.k_min = 1


# --- nothing leaks ------------------------------------------------------------------------------------------


def test_no_value_reaches_the_result_the_refusals_or_the_log(caplog):
    canaries = ["CANARY-SUBJECT-4471", "CANARY-ZIP-99901", "CANARY-DX-7781"]
    table = pa.table(
        {
            "subject": [canaries[0], "s2", "s3"],
            "zip3": [canaries[1], "681", "681"],
            "dx": [canaries[2], "a", "a"],
        }
    )
    caplog.set_level(logging.DEBUG)
    for below_k in ("refuse", "suppress"):
        rules = thresholds(["subject", "zip3"], sensitive=["dx"], below_k=below_k)
        accumulator = measure(table, rules, batch_rows=1)
        risk = accumulator.measure()
        text = risk.model_dump_json() + repr(risk) + " ".join(risk_refusals(risk))
        assert risk_refusals(risk)
        for canary in canaries:
            assert canary not in text
            assert canary not in caplog.text
