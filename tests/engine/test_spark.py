"""The Spark executor against the Arrow executor on the same inputs: the same output, the same report, the
same refusals, nothing published when refused, and no value in Spark's logs or messages."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.cli import main
from airflow_phi_guard.engine import spark as spark_engine
from airflow_phi_guard.engine.executor import GovernanceResult, govern
from airflow_phi_guard.engine.source import open_source
from airflow_phi_guard.engine.spark import govern_spark, local_session
from airflow_phi_guard.exceptions import (
    ConsentRegistryError,
    ConsentSubjectMismatchError,
    DataProcessingError,
    PartitionNotPermittedError,
    ReidentificationRiskError,
    ResidualPhiError,
    SourceDatasetError,
    UndeclaredColumnsError,
)
from airflow_phi_guard.policy import parse_policy
from airflow_phi_guard.policy.loader import load_policy
from airflow_phi_guard.report import Verdict
from tests.conftest import DEMO_POLICY, REPO, SYNTHEA

AS_OF = date(2026, 12, 1)
PSEUDONYM_KEY = b"spark-pseudonym-key-not-a-secret-0123456789"
SHIFT_KEY = b"spark-date-shift-key-not-a-secret-0123456789"
MANIFEST_KEY = b"spark-manifest-key-not-a-secret-0123456789ab"

#: Planted values that must never leave the dataset: subject ids, a record number and a social security
#: number in free text.
SUBJECTS = [f"canary-subject-{i:02d}" for i in range(12)]
CANARY_SSN = "219-09-9999"
CANARY_MRN = "canary-mrn-"

#: Every subject consented; the last one revoked before the as-of date.
CONSENT = "subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference\n" + "".join(
    f"{subject},research-authorization,model-training,2020-01-01,,{revoked},AUTH-{i}\n"
    for i, (subject, revoked) in enumerate(zip(SUBJECTS, [""] * 11 + ["2026-06-01"], strict=True))
)

#: Every kind of treatment, under an expert determination, with a risk gate that suppresses small classes.
EVERY_TREATMENT = """\
name: every-treatment
version: 1
purpose: model-training
model: {name: spark-model, version: "1"}
recipient: internal-ml-platform
subject: PATIENT
undeclared: refuse
consent:
  bases: [research-authorization]
deidentification:
  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD"
    determined: 2026-01-15
    report: ED-2026-1
    expires: 2027-01-15
  date_shift_window_days: 30
  quasi_identifiers: [AGE_BAND, GENDER]
  k_min: 3
  below_k: suppress
columns:
  PATIENT:    {treatment: pseudonymize, as: PATIENT_KEY, justification: "split"}
  MRN:        {treatment: surrogate, namespace: record, as: RECORD_KEY, justification: "joins"}
  SSN:        {treatment: drop, justification: "not needed"}
  BIRTHDATE:  {treatment: age, as: AGE, justification: "predictor"}
  DOB:        {treatment: birth-year, as: BIRTH_YEAR, justification: "cohort"}
  AGE_YEARS:  {treatment: age-band, bands: [0, 18, 65, 90], as: AGE_BAND, justification: "predictor"}
  ZIP:        {treatment: zip3, as: ZIP3, justification: "region"}
  HOME_ZIP:   {treatment: state, as: STATE, justification: "region"}
  VISIT_DATE: {treatment: year, as: VISIT_YEAR, justification: "trend"}
  ADMITTED:   {treatment: date-shift, justification: "intervals"}
  SEEN:       {treatment: month, justification: "season"}
  DISCHARGED: {treatment: quarter, justification: "season"}
  INCOME:     {treatment: top-bottom-code, bottom: 10000, top: 200000, justification: "predictor"}
  GENDER:     {treatment: keep, justification: "predictor"}
  NOTE:       {treatment: keep, justification: "free text, scanned"}
"""

ROWS = 40


def _every_treatment_source(path: Path, *, notes: list[str] | None = None, extra: dict | None = None) -> Path:
    """Forty rows of twelve subjects, in the Arrow types that Spark does not keep as they are: dictionary
    text, UTC and naive timestamps, unsigned integers."""
    subjects = [SUBJECTS[i % 12] for i in range(ROWS)]
    subjects[5] = None  # a row without a subject id
    subjects[6] = "canary-subject-unknown"  # one the registry does not know
    columns = {
        "PATIENT": pa.array(subjects, pa.string()),
        "MRN": pa.array([f"{CANARY_MRN}{i % 12:03d}" if i != 7 else None for i in range(ROWS)]),
        "SSN": pa.array([CANARY_SSN] * ROWS),
        "BIRTHDATE": pa.array([date(1930 + (i % 12) * 7, 1 + i % 12, 1 + i % 28) for i in range(ROWS)]),
        "DOB": pa.array([f"{1935 + (i % 12) * 6}-0{1 + i % 9}-15" for i in range(ROWS)]),
        "AGE_YEARS": pa.array([(i * 7) % 95 for i in range(ROWS)], pa.uint16()),
        "ZIP": pa.array(["68504", "69210", "10001", "02139-4307", "03601"] * (ROWS // 5)),
        "HOME_ZIP": pa.array([68504, 10001, 2139, 99501] * (ROWS // 4), pa.int64()),
        "VISIT_DATE": pa.array(
            [datetime(2020 + i % 5, 12, 31, 23, 30, tzinfo=UTC) for i in range(ROWS)],
            pa.timestamp("ms", tz="UTC"),
        ),
        "ADMITTED": pa.array([date(2024, 1, 1 + i % 28) for i in range(ROWS)]),
        "SEEN": pa.array([datetime(2024, 1 + i % 12, 28, 12, 0) for i in range(ROWS)], pa.timestamp("us")),
        "DISCHARGED": pa.array([f"2024-{1 + i % 12:02d}-05" for i in range(ROWS)]),
        "INCOME": pa.array([None if i == 3 else 5_000 * i for i in range(ROWS)], pa.int64()),
        "GENDER": pa.array(["F", "M"] * (ROWS // 2)).dictionary_encode(),
        "NOTE": pa.array(notes if notes is not None else ["routine visit"] * ROWS),
    }
    columns.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One Spark session in local mode for the module: two cores, two shuffle partitions, no UI, UTC."""
    from pyspark import SparkContext

    session = local_session("phi-guard-tests")
    yield session
    session.stop()
    # Close the JVM gateway now, while the test run's streams are open: left to the interpreter's exit,
    # py4j logs its closing to a stream that is already closed.
    if SparkContext._gateway is not None:
        SparkContext._gateway.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None


def _load_dag_module(name: str) -> ModuleType:
    specification = importlib.util.spec_from_file_location(name, REPO / "dags" / f"{name}.py")
    assert specification is not None and specification.loader is not None
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    return module


def _both(
    tmp_path: Path, spark, policy, source: Path, **options
) -> tuple[GovernanceResult, GovernanceResult]:
    """The Arrow run and the Spark run of the same inputs, each into a folder of its own; a surrogate
    mapping given as a path is copied, so that both start from the same codes."""
    mapping = options.pop("surrogate_mapping", None)
    results = []
    for engine in ("arrow", "spark"):
        folder = tmp_path / engine
        folder.mkdir()
        own = dict(options)
        if mapping is not None:
            own["surrogate_mapping"] = folder / "mapping.parquet"
            if Path(mapping).exists():
                shutil.copy(mapping, own["surrogate_mapping"])
        output = folder / "out" / "governed.parquet"
        if engine == "arrow":
            results.append(govern(policy, source, output, **own))
        else:
            results.append(govern_spark(policy, source, output, spark=spark, **own))
    return results[0], results[1]


def _report(result: GovernanceResult) -> dict:
    """The report without what names the run's own files."""
    report = json.loads(result.report.to_json())
    for key in ("output",):
        report.pop(key)
    if report.get("manifest"):
        report["manifest"].pop("path", None)
    if report.get("surrogate_mapping"):
        report["surrogate_mapping"].pop("store", None)
    return report


def _sorted(table: pa.Table) -> pa.Table:
    """The rows in one order, whatever order the engine wrote them in; dictionary columns as their values,
    which Arrow sorts, and floating point columns as their bits, so that NaN equals NaN and -0.0 is not 0.0
    (the schemas are compared apart)."""

    def comparable(column: pa.ChunkedArray) -> pa.ChunkedArray:
        if pa.types.is_dictionary(column.type):
            return column.cast(column.type.value_type)
        if pa.types.is_float64(column.type):
            return pa.chunked_array([chunk.view(pa.int64()) for chunk in column.chunks], pa.int64())
        return column

    plain = pa.table(
        {name: comparable(column) for name, column in zip(table.column_names, table.columns, strict=True)}
    )
    return plain.sort_by([(name, "ascending") for name in plain.column_names])


def _read(output: str | Path) -> pa.Table:
    """A governed set as a reader finds it: a file, or a folder of parts read as one dataset."""
    return open_source(output).to_table()


def assert_same_output(arrow: GovernanceResult, spark: GovernanceResult) -> None:
    # The Spark executor publishes a folder of parts written by its workers, the Arrow executor one file.
    assert Path(spark.report.output).is_dir()
    arrow_table = _read(arrow.report.output)
    spark_table = _read(spark.report.output)
    assert spark_table.schema == arrow_table.schema
    assert spark_table.num_rows == arrow_table.num_rows
    assert _sorted(spark_table).equals(_sorted(arrow_table))


def _mapping_with_codes(tmp_path: Path, policy, source: Path) -> Path:
    """A surrogate mapping that already holds a code for every record number of the source."""
    mapping = tmp_path / "warm" / "mapping.parquet"
    mapping.parent.mkdir()
    warm = govern(
        policy,
        source,
        tmp_path / "warm" / "out.parquet",
        consent=_consent(tmp_path),
        as_of=AS_OF,
        pseudonym_key=PSEUDONYM_KEY,
        date_shift_key=SHIFT_KEY,
        surrogate_mapping=mapping,
    )
    assert warm.report.published, warm.refusals
    return mapping


def _consent(tmp_path: Path) -> Path:
    path = tmp_path / "consent.csv"
    path.write_text(CONSENT)
    return path


class TestSameOutputAndReport:
    def test_every_treatment_kind_with_suppression(self, tmp_path: Path, spark):
        policy = parse_policy(EVERY_TREATMENT)
        source = _every_treatment_source(tmp_path / "source.parquet")
        mapping = _mapping_with_codes(tmp_path, policy, source)

        arrow, on_spark = _both(
            tmp_path,
            spark,
            policy,
            source,
            consent=_consent(tmp_path),
            as_of=AS_OF,
            pseudonym_key=PSEUDONYM_KEY,
            date_shift_key=SHIFT_KEY,
            manifest_key=MANIFEST_KEY,
            surrogate_mapping=mapping,
        )

        assert arrow.report.verdict is Verdict.PUBLISHED, arrow.refusals
        # The inputs exercise what the report counts: rows without id, unknown and revoked subjects, and
        # rows of classes smaller than k_min.
        assert arrow.report.rows.excluded == {"no-record": 1, "no-subject-id": 1, "revoked": 3}
        assert arrow.report.rows.suppressed > 0
        assert arrow.report.risk is not None and arrow.report.surrogate_mapping is not None
        assert on_spark.report.verdict is Verdict.PUBLISHED, on_spark.refusals
        assert _report(on_spark) == _report(arrow)
        assert_same_output(arrow, on_spark)
        # The subject manifests hash the same admitted subjects with the same key.
        assert on_spark.report.manifest is not None
        assert on_spark.report.manifest.digest == arrow.report.manifest.digest

    def test_new_surrogate_codes_are_drawn_once_per_person_and_committed(self, tmp_path: Path, spark):
        policy = parse_policy(EVERY_TREATMENT)
        source = _every_treatment_source(tmp_path / "source.parquet")
        mapping = tmp_path / "mapping.parquet"
        output = tmp_path / "out" / "governed.parquet"

        result = govern_spark(
            policy,
            source,
            output,
            spark=spark,
            consent=_consent(tmp_path),
            as_of=AS_OF,
            pseudonym_key=PSEUDONYM_KEY,
            date_shift_key=SHIFT_KEY,
            surrogate_mapping=mapping,
        )

        assert result.report.published, result.refusals
        [namespace] = result.report.surrogate_mapping.namespaces
        # 12 record numbers in the source; row 7 has none, and the admitted rows hold 10 distinct ones
        # (subjects 05 (no id at row 5 only), 06 (unknown at row 6 only) and the revoked 11 drop out at
        # some rows): counted from the table rather than assumed.
        table = pq.read_table(source)
        admitted = {
            mrn
            for subject, mrn in zip(table["PATIENT"].to_pylist(), table["MRN"].to_pylist(), strict=True)
            if subject in SUBJECTS[:11] and mrn is not None
        }
        assert namespace.new_codes == len(admitted)
        assert result.report.surrogate_mapping.committed
        governed = pq.read_table(output)
        codes = pq.read_table(mapping)
        assert set(governed["RECORD_KEY"].drop_null().to_pylist()) <= set(codes["code"].to_pylist())

    def test_the_demo_extract(self, tmp_path: Path, spark):
        extract = _load_dag_module("demo_extract").write_encounter_extract(
            SYNTHEA, tmp_path / "extract.parquet"
        )
        registry = tmp_path / "consent.csv"
        _load_dag_module("demo_consent").write_demo_consent_registry(SYNTHEA / "patients.csv", registry)
        policy = load_policy(DEMO_POLICY)
        mapping = tmp_path / "warm-mapping.parquet"
        warm = govern(
            policy,
            extract,
            tmp_path / "warm.parquet",
            consent=registry,
            as_of=AS_OF,
            surrogate_mapping=mapping,
        )
        assert warm.report.published, warm.refusals

        arrow, on_spark = _both(
            tmp_path, spark, policy, extract, consent=registry, as_of=AS_OF, surrogate_mapping=mapping
        )

        assert arrow.report.published and arrow.report.rows.admitted > 0, arrow.refusals
        assert _report(on_spark) == _report(arrow)
        assert_same_output(arrow, on_spark)


def _refused_pair(tmp_path: Path, spark, policy_text: str, source: Path, **options):
    policy = parse_policy(policy_text)
    options = {
        "consent": _consent(tmp_path),
        "as_of": AS_OF,
        "pseudonym_key": PSEUDONYM_KEY,
        "date_shift_key": SHIFT_KEY,
        "surrogate_mapping": None,
        **options,
    }
    if options["surrogate_mapping"] is None:
        options["surrogate_mapping"] = tmp_path / "mapping.parquet"
    return _both(tmp_path, spark, policy, source, **options)


def _assert_refused_alike(arrow: GovernanceResult, on_spark: GovernanceResult, error: type) -> None:
    assert arrow.report.verdict is Verdict.REFUSED
    assert on_spark.report.verdict is Verdict.REFUSED
    assert _report(on_spark) == _report(arrow)
    assert [(r.error, r.message) for r in on_spark.refusals] == [(r.error, r.message) for r in arrow.refusals]
    with pytest.raises(error):
        on_spark.raise_for_verdict()
    folder = Path(on_spark.report.input).parent / "spark" / "out"
    # Nothing published, and no hidden temporary file or part left behind.
    assert not folder.exists() or list(folder.iterdir()) == []


#: A policy whose risk gate the cases below set; the kept columns are the quasi-identifiers and the
#: sensitive values of the cases.
RISK_POLICY = """\
name: risk-cases
version: 1
purpose: model-training
model: {{name: spark-model, version: "1"}}
recipient: internal-ml-platform
subject: PATIENT
undeclared: refuse
consent:
  bases: [research-authorization]
deidentification:
  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD"
    determined: 2026-01-15
    report: ED-2026-1
    expires: 2027-01-15
{risk}
columns:
  PATIENT: {{treatment: pseudonymize, as: PATIENT_KEY, justification: "split"}}
  BAND:    {{treatment: keep, justification: "predictor"}}
  SEX:     {{treatment: keep, justification: "predictor"}}
  SCORE:   {{treatment: keep, justification: "predictor"}}
  DX:      {{treatment: keep, justification: "label"}}
  DX2:     {{treatment: keep, justification: "label"}}
  DOSE:    {{treatment: keep, justification: "predictor"}}
"""

_NAN = float("nan")

#: The rows of the risk cases, each (BAND, SEX, SCORE, DX, DX2). Over (BAND, SEX) the classes are (a, F)
#: of 3 rows, (missing, F) of 3, (missing, M) of 2, (b, missing) of 3 and, with the singleton, (c, M) of 1.
#: Over SCORE they are 0.0 (3 rows), -0.0 (3), NaN (3), missing (2) and, with the singleton, 1.5 (1).
_RISK_ROWS = [
    ("a", "F", 0.0, "x", "p"),
    ("a", "F", 0.0, "y", "q"),
    ("a", "F", 0.0, "x", None),
    (None, "F", -0.0, "x", "p"),
    (None, "F", -0.0, "y", "p"),
    (None, "F", -0.0, "z", "q"),
    (None, "M", _NAN, "x", "p"),
    (None, "M", _NAN, "y", "q"),
    ("b", None, _NAN, "x", "p"),
    ("b", None, None, "y", "q"),
    ("b", None, None, None, "r"),
]
_SINGLETON = ("c", "M", 1.5, "x", "p")
#: A row of a subject who revoked consent: never published, so never measured.
_REVOKED = ("a", "M", 0.0, "z", "r")


def _risk_source(path: Path, *, singleton: bool) -> Path:
    rows = [*_RISK_ROWS, *([_SINGLETON] if singleton else [])]
    subjects = [SUBJECTS[i % 11] for i in range(len(rows))] + [SUBJECTS[11]]
    rows.append(_REVOKED)
    columns = dict(zip(("BAND", "SEX", "SCORE", "DX", "DX2"), zip(*rows, strict=True), strict=True))
    table = pa.table(
        {
            "PATIENT": pa.array(subjects),
            **{name: pa.array(values) for name, values in columns.items()},
            "DOSE": pa.array(range(len(rows)), pa.int64()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _risk_block(quasi: str, k_min: int, below_k: str, diversity: str | None) -> str:
    block = f"  quasi_identifiers: [{quasi}]\n  k_min: {k_min}\n  below_k: {below_k}"
    return block + (f"\n  l_diversity: {diversity}" if diversity else "")


# Each case: the risk declaration, whether the singleton row is in the data, and what the rules of
# deid/risk.py give, counted by hand from the rows above: the measured risk of a published run, or a
# phrase of the refusal.
RISK_CASES = [
    pytest.param(
        # refuse: classes (missing, M) of 2 and (c, M) of 1 are below k_min 3
        ("BAND, SEX", 3, "refuse", None),
        True,
        "2 of 5 equivalence class(es) over quasi-identifier(s) BAND, SEX hold fewer than k_min 3 rows "
        "(k is 1)",
        id="refuse-below-k",
    ),
    pytest.param(
        # refuse, the smallest class holds exactly k_min rows: published; a missing value is a value of its
        # own, so (missing, F) and (missing, M) are two classes, not merged into (a, F) or (b, ...)
        ("BAND, SEX", 2, "refuse", None),
        False,
        {
            "rows": 11,
            "k": 2,
            "classes": 4,
            "classes_below_k": 0,
            "suppressed_rows": 0,
            "unique_share": 0.0,
            "l": None,
            "classes_below_l": 0,
            "rows_with_missing_quasi_identifier": 8,
        },
        id="refuse-k-exactly-k_min",
    ),
    pytest.param(
        # suppress: only (c, M) goes; (missing, M), of exactly k_min rows, stays; two sensitive columns
        ("BAND, SEX", 2, "suppress", "{sensitive: [DX, DX2], l_min: 2}"),
        True,
        {
            "rows": 11,
            "k": 2,
            "classes": 4,
            "classes_below_k": 1,
            "suppressed_rows": 1,
            "unique_share": 0.0,
            "l": 2,
            "classes_below_l": 0,
            "rows_with_missing_quasi_identifier": 8,
        },
        id="suppress-keeps-a-class-of-k_min",
    ),
    pytest.param(
        # suppress with k_min 3: (missing, M) and (c, M) go, 3 rows
        ("BAND, SEX", 3, "suppress", "{sensitive: [DX, DX2], l_min: 2}"),
        True,
        {
            "rows": 9,
            "k": 3,
            "classes": 3,
            "classes_below_k": 2,
            "suppressed_rows": 3,
            "unique_share": 0.0,
            "l": 2,
            "classes_below_l": 0,
            "rows_with_missing_quasi_identifier": 6,
        },
        id="suppress-two-classes",
    ),
    pytest.param(
        # l-diversity is judged on what suppression leaves: each of the 3 classes holds 2 distinct values
        # of DX or DX2, fewer than l_min 3; l never suppresses, it refuses
        ("BAND, SEX", 3, "suppress", "{sensitive: [DX, DX2], l_min: 3}"),
        True,
        "l-diversity: 3 of 3 equivalence class(es) over quasi-identifier(s) BAND, SEX hold fewer than "
        "l_min 3 distinct value(s) of sensitive column(s) DX, DX2 (l is 2)",
        id="l-below-l_min-after-suppression",
    ),
    pytest.param(
        # over SEX: F of 6 rows (x, y, z), M of 3 (x, y), missing of 3 (x, y and a missing DX, which adds
        # no diversity): M and the missing class are short of l_min 3
        ("SEX", 3, "refuse", "{sensitive: [DX], l_min: 3}"),
        True,
        "l-diversity: 2 of 3 equivalence class(es) over quasi-identifier(s) SEX hold fewer than l_min 3 "
        "distinct value(s) of sensitive column(s) DX (l is 2)",
        id="missing-sensitive-value-adds-no-diversity",
    ),
    pytest.param(
        # floating point values compare as the output stores them: -0.0 is not 0.0, NaN matches NaN; the
        # missing class (2 rows) and 1.5 (1 row) are suppressed
        ("SCORE", 3, "suppress", None),
        True,
        {
            "rows": 9,
            "k": 3,
            "classes": 3,
            "classes_below_k": 2,
            "suppressed_rows": 3,
            "unique_share": 0.0,
            "l": None,
            "classes_below_l": 0,
            "rows_with_missing_quasi_identifier": 0,
        },
        id="float-zero-signs-and-nan",
    ),
]


class TestRiskAsAggregations:
    @pytest.mark.parametrize(("declaration", "singleton", "expected"), RISK_CASES)
    def test_the_risk_gate_on_spark_answers_as_the_rules_and_the_arrow_executor_do(
        self, tmp_path: Path, spark, declaration, singleton, expected
    ):
        policy = parse_policy(RISK_POLICY.format(risk=_risk_block(*declaration)))
        source = _risk_source(tmp_path / "source.parquet", singleton=singleton)

        arrow, on_spark = _both(
            tmp_path,
            spark,
            policy,
            source,
            consent=_consent(tmp_path),
            as_of=AS_OF,
            pseudonym_key=PSEUDONYM_KEY,
        )

        assert arrow.report.rows.excluded == {"revoked": 1}
        if isinstance(expected, str):
            _assert_refused_alike(arrow, on_spark, ReidentificationRiskError)
            assert any(expected in refusal.message for refusal in on_spark.refusals), on_spark.refusals
            return
        assert on_spark.report.published, on_spark.refusals
        measured = on_spark.report.risk.model_dump()
        assert {key: measured[key] for key in expected} == expected
        assert on_spark.report.rows.suppressed == expected["suppressed_rows"]
        assert _report(on_spark) == _report(arrow)
        assert_same_output(arrow, on_spark)


class TestPartitionedOutput:
    def test_partition_by_publishes_the_folder_the_arrow_executor_publishes(self, tmp_path: Path, spark):
        from airflow_phi_guard.quality.validate import validate_governed_dataset

        policy = parse_policy(EVERY_TREATMENT)
        source = _every_treatment_source(tmp_path / "source.parquet")
        mapping = _mapping_with_codes(tmp_path, policy, source)

        arrow, on_spark = _both(
            tmp_path,
            spark,
            policy,
            source,
            consent=_consent(tmp_path),
            as_of=AS_OF,
            pseudonym_key=PSEUDONYM_KEY,
            date_shift_key=SHIFT_KEY,
            surrogate_mapping=mapping,
            partition_by=["VISIT_YEAR"],
        )

        assert arrow.report.published and on_spark.report.published, on_spark.refusals
        assert _report(on_spark) == _report(arrow)
        assert_same_output(arrow, on_spark)
        folder = Path(on_spark.report.output)
        # as the Arrow executor lays it out: one folder per year (2020 to 2024), and the schema file
        assert sorted(path.name for path in folder.iterdir()) == [
            "VISIT_YEAR=2020",
            "VISIT_YEAR=2021",
            "VISIT_YEAR=2022",
            "VISIT_YEAR=2023",
            "VISIT_YEAR=2024",
            "_common_metadata",
        ]
        summary = validate_governed_dataset(
            folder,
            on_spark.report,
            suite_name="spark-partitioned",
            data_docs_dir=tmp_path / "docs",
            gx_project_dir=tmp_path / "gx",
        )
        assert summary.success, summary.failures

    def test_a_column_that_must_not_name_folders_is_refused_alike(self, tmp_path: Path, spark):
        source = _every_treatment_source(tmp_path / "source.parquet")
        arrow, on_spark = _refused_pair(
            tmp_path, spark, EVERY_TREATMENT, source, partition_by=["PATIENT_KEY"]
        )
        _assert_refused_alike(arrow, on_spark, PartitionNotPermittedError)
        assert on_spark.report.rows.read == 0

    def test_a_failure_while_writing_leaves_nothing_and_the_earlier_set_untouched(
        self, tmp_path: Path, spark
    ):
        policy = parse_policy(RISK_POLICY.format(risk=""))
        options = {
            "spark": spark,
            "consent": _consent(tmp_path),
            "as_of": AS_OF,
            "pseudonym_key": PSEUDONYM_KEY,
        }
        output = tmp_path / "out" / "governed"
        first = govern_spark(
            policy, _risk_source(tmp_path / "small.parquet", singleton=True), output, **options
        )
        assert first.report.published, first.refusals
        before = {path: path.read_bytes() for path in output.rglob("*") if path.is_file()}
        # 3000 distinct doses: more partitions than pyarrow writes from one batch (1024) in any task of
        # two, a real fault that comes only after every check passed; each dose is given to all 11
        # consented people, so that every folder holds the 11 people it needs
        rows = 3000 * 11
        many = pa.table(
            {
                "PATIENT": pa.array([SUBJECTS[i % 11] for i in range(rows)]),
                "BAND": pa.array(["a"] * rows),
                "SEX": pa.array(["F"] * rows),
                "SCORE": pa.array([1.0] * rows),
                "DX": pa.array(["x"] * rows),
                "DX2": pa.array(["p"] * rows),
                "DOSE": pa.array([i // 11 for i in range(rows)], pa.int64()),
            }
        )
        pq.write_table(many, tmp_path / "many.parquet")

        with pytest.raises(DataProcessingError):
            govern_spark(policy, tmp_path / "many.parquet", output, partition_by=["DOSE"], **options)

        assert {path: path.read_bytes() for path in output.rglob("*") if path.is_file()} == before
        assert [path.name for path in output.parent.iterdir()] == ["governed"]


class TestPartitionFoldersAndEmptySets:
    """The Arrow executor's refusals of folders of fewer than k_min people (11 without a risk gate) and of
    a risk-gated run left with no row, given alike by Spark."""

    def test_folders_of_too_few_people_without_a_risk_gate(self, tmp_path: Path, spark):
        # DOSE differs on every row: each folder would name one person, and 11 are needed
        source = _risk_source(tmp_path / "source.parquet", singleton=True)
        arrow, on_spark = _refused_pair(
            tmp_path, spark, RISK_POLICY.format(risk=""), source, partition_by=["DOSE"]
        )
        _assert_refused_alike(arrow, on_spark, PartitionNotPermittedError)
        assert "12 of 12 partition folder(s)" in on_spark.refusals[0].message
        assert "fewer than 11 distinct subjects" in on_spark.refusals[0].message

    @staticmethod
    def _dosed(path: Path, doses: list[int]) -> Path:
        """The risk cases with the singleton, DOSE set per row (the last row is the revoked one's)."""
        source = _risk_source(path, singleton=True)
        table = pq.read_table(source)
        pq.write_table(table.set_column(6, "DOSE", pa.array(doses, pa.int64())), source)
        return source

    def test_folders_of_too_few_people_after_suppression(self, tmp_path: Path, spark):
        # k_min 3 over (BAND, SEX) suppresses rows 6 and 7 (missing, M) and 11 (c, M), all of DOSE 3: that
        # folder goes; DOSE 1 keeps 7 people and DOSE 2 two (rows 9 and 10), too few
        source = self._dosed(tmp_path / "source.parquet", [1, 1, 1, 1, 1, 1, 3, 3, 1, 2, 2, 3, 2])
        risk = _risk_block("BAND, SEX", 3, "suppress", None)
        arrow, on_spark = _refused_pair(
            tmp_path, spark, RISK_POLICY.format(risk=risk), source, partition_by=["DOSE"]
        )
        _assert_refused_alike(arrow, on_spark, PartitionNotPermittedError)
        assert "1 of 2 partition folder(s)" in on_spark.refusals[0].message
        assert "fewer than 3 distinct subjects" in on_spark.refusals[0].message
        assert on_spark.report.rows.suppressed == 3

    def test_folders_of_enough_people_are_published_alike(self, tmp_path: Path, spark):
        # after suppression DOSE 1 holds 6 people (rows 0 to 5) and DOSE 2 three (rows 8 to 10)
        source = self._dosed(tmp_path / "source.parquet", [1, 1, 1, 1, 1, 1, 3, 3, 2, 2, 2, 3, 2])
        risk = _risk_block("BAND, SEX", 3, "suppress", None)
        policy = parse_policy(RISK_POLICY.format(risk=risk))
        arrow, on_spark = _both(
            tmp_path,
            spark,
            policy,
            source,
            consent=_consent(tmp_path),
            as_of=AS_OF,
            pseudonym_key=PSEUDONYM_KEY,
            partition_by=["DOSE"],
        )
        assert arrow.report.published and on_spark.report.published, on_spark.refusals
        assert _report(on_spark) == _report(arrow)
        assert_same_output(arrow, on_spark)
        assert sorted(path.name for path in Path(on_spark.report.output).iterdir()) == [
            "DOSE=1",
            "DOSE=2",
            "_common_metadata",
        ]

    def test_no_row_left_under_a_risk_gate(self, tmp_path: Path, spark):
        revoked = tmp_path / "revoked.csv"
        # every subject revoked consent before the as-of date
        revoked.write_text(
            "subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference\n"
            + "".join(
                f"{subject},research-authorization,model-training,2020-01-01,,2021-01-01,AUTH-{i}\n"
                for i, subject in enumerate(SUBJECTS)
            )
        )
        source = _risk_source(tmp_path / "source.parquet", singleton=True)
        risk = _risk_block("BAND, SEX", 2, "refuse", None)
        arrow, on_spark = _refused_pair(
            tmp_path, spark, RISK_POLICY.format(risk=risk), source, consent=revoked
        )
        _assert_refused_alike(arrow, on_spark, ReidentificationRiskError)
        assert on_spark.report.rows.admitted == 0
        assert "no row remains to publish" in on_spark.refusals[0].message


class TestStagingLock:
    def test_a_spark_run_removes_stale_staging_and_holds_the_arrow_cleanup_off(
        self, tmp_path: Path, spark, monkeypatch
    ):
        import uuid

        source = _risk_source(tmp_path / "source.parquet", singleton=False)
        policy = parse_policy(RISK_POLICY.format(risk=""))
        options = {"consent": _consent(tmp_path), "as_of": AS_OF, "pseudonym_key": PSEUDONYM_KEY}
        out = tmp_path / "out"
        out.mkdir()
        ours = out / f".governed.{uuid.uuid4().hex}.tmp"
        (ours / "part-0.parquet").parent.mkdir()
        (ours / "part-0.parquet").write_bytes(b"rows of a killed run")
        theirs = out / f".other.parquet.{uuid.uuid4().hex}.tmp"
        theirs.write_bytes(b"rows of a killed run, or of a live one")
        seen_during_spark = []
        write_parts = spark_engine._write_parts

        def write_while_an_arrow_run_starts(*arguments):
            # the Arrow run at a sibling output finds the folder in use, so it may remove no staging
            assert govern(policy, source, out / "other.parquet", **options).report.published
            seen_during_spark.append(theirs.exists())
            return write_parts(*arguments)

        monkeypatch.setattr(spark_engine, "_write_parts", write_while_an_arrow_run_starts)
        result = govern_spark(policy, source, out / "governed", spark=spark, **options)

        assert result.report.published, result.refusals
        assert not ours.exists()
        assert seen_during_spark == [True]
        # once the folder is free, the next run removes the other output's stale staging
        assert govern(policy, source, out / "other.parquet", **options).report.published
        assert sorted(path.name for path in out.iterdir()) == ["governed", "other.parquet"]


class TestSameRefusals:
    def test_an_undeclared_column(self, tmp_path: Path, spark):
        source = _every_treatment_source(tmp_path / "source.parquet", extra={"EMAIL": pa.array(["x"] * ROWS)})
        arrow, on_spark = _refused_pair(tmp_path, spark, EVERY_TREATMENT, source)
        _assert_refused_alike(arrow, on_spark, UndeclaredColumnsError)
        assert on_spark.report.rows.read == 0

    def test_no_consent_registry(self, tmp_path: Path, spark):
        source = _every_treatment_source(tmp_path / "source.parquet")
        arrow, on_spark = _refused_pair(tmp_path, spark, EVERY_TREATMENT, source, consent=None)
        _assert_refused_alike(arrow, on_spark, ConsentRegistryError)

    def test_a_registry_that_knows_no_subject_of_the_data(self, tmp_path: Path, spark):
        source = _every_treatment_source(tmp_path / "source.parquet")
        other = tmp_path / "other.csv"
        other.write_text(CONSENT.replace("canary-subject-", "other-subject-"))
        arrow, on_spark = _refused_pair(tmp_path, spark, EVERY_TREATMENT, source, consent=other)
        _assert_refused_alike(arrow, on_spark, ConsentSubjectMismatchError)
        assert on_spark.report.rows.read == ROWS

    def test_residual_phi_in_kept_text(self, tmp_path: Path, spark):
        notes = ["routine visit"] * ROWS
        notes[0] = f"patient SSN {CANARY_SSN} on file"
        notes[13] = f"call back at 402-555-0147 re {CANARY_SSN}"
        source = _every_treatment_source(tmp_path / "source.parquet", notes=notes)
        arrow, on_spark = _refused_pair(tmp_path, spark, EVERY_TREATMENT, source)
        _assert_refused_alike(arrow, on_spark, ResidualPhiError)
        assert on_spark.report.findings, "the planted identifiers were not found"


class TestFailClosed:
    def test_a_refused_run_withdraws_an_earlier_set_and_leaves_no_parts(self, tmp_path: Path, spark):
        policy = parse_policy(EVERY_TREATMENT)
        output = tmp_path / "out" / "governed.parquet"
        options = {
            "spark": spark,
            "consent": _consent(tmp_path),
            "as_of": AS_OF,
            "pseudonym_key": PSEUDONYM_KEY,
            "date_shift_key": SHIFT_KEY,
            "surrogate_mapping": tmp_path / "mapping.parquet",
        }
        clean = _every_treatment_source(tmp_path / "clean" / "source.parquet")
        assert govern_spark(policy, clean, output, **options).report.published
        assert output.exists()

        notes = ["routine visit"] * ROWS
        notes[30] = f"SSN {CANARY_SSN}"
        dirty = _every_treatment_source(tmp_path / "dirty" / "source.parquet", notes=notes)
        result = govern_spark(policy, dirty, output, **options)

        assert result.report.verdict is Verdict.REFUSED
        assert list(output.parent.iterdir()) == []

    @pytest.mark.parametrize(
        "kind",
        [
            "csv",  # the Spark engine reads Parquet only
            "list",  # and one path, not a list of files
        ],
    )
    def test_a_source_spark_cannot_read_is_a_source_dataset_error(self, tmp_path: Path, spark, kind):
        source = tmp_path / "source.csv"
        source.write_text("PATIENT\ncanary-subject-00\n")
        given = source if kind == "csv" else [_every_treatment_source(tmp_path / "source.parquet")]
        with pytest.raises(SourceDatasetError, match=r"Parquet|one path"):
            govern_spark(
                parse_policy(EVERY_TREATMENT),
                given,
                tmp_path / "o.parquet",
                spark=spark,
                consent=None,
                as_of=AS_OF,
            )

    def test_the_session_runs_no_speculative_task_copies(self, spark):
        assert spark.sparkContext.getConf().get("spark.speculation") == "false"

    def test_a_part_no_returned_attempt_wrote_stops_publication(self, tmp_path: Path):
        """A task attempt still running after its job (a speculative copy) could add a file to the folder
        after the driver kept the returned attempts' files: the folder is checked again before publishing."""
        folder = tmp_path / "parts"
        folder.mkdir()
        for name in ("part-00000-0.parquet", "part-00000-1.parquet", "_common_metadata"):
            (folder / name).write_bytes(b"")
        with pytest.raises(DataProcessingError) as caught:
            spark_engine._check_parts(
                folder, frozenset({"part-00000-0.parquet", "_common_metadata"}), tmp_path / "source"
            )
        assert caught.value.retryable


#: A policy for small sources of a subject, a text code and a number, all kept but the subject.
SMALL = """\
name: small
version: 1
purpose: model-training
model: {name: m, version: "1"}
recipient: internal-ml-platform
subject: PATIENT
undeclared: refuse
consent:
  bases: [research-authorization]
deidentification:
  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD"
    determined: 2026-01-15
    report: ED-2026-1
    expires: 2027-01-15
columns:
  PATIENT: {treatment: pseudonymize, as: PATIENT_KEY, justification: "split"}
  CODE:    {treatment: keep, justification: "code"}
  NOTE:    {treatment: keep, justification: "free text, scanned"}
"""

#: 123 consented, 00123 did not; 00124 did.
SMALL_CONSENT = (
    "subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference\n"
    "123,research-authorization,model-training,2020-01-01,,,A\n"
    "00124,research-authorization,model-training,2020-01-01,,,B\n"
)


def _small_options(tmp_path: Path) -> dict:
    consent = tmp_path / "small-consent.csv"
    consent.write_text(SMALL_CONSENT)
    return {"consent": consent, "as_of": AS_OF, "pseudonym_key": PSEUDONYM_KEY}


class TestSourceReadAsOpenSourceReadsIt:
    def test_a_hive_partitioned_source_keeps_folder_text_and_whose_consent_it_is(self, tmp_path: Path, spark):
        """Folder names are text unless written as Arrow writes integers: ``PATIENT=00123`` is the subject
        00123, who has no consent record (123 has), and ``CODE=007`` stays ``007``."""
        source = tmp_path / "source"
        for subject, code in (("00123", "007"), ("00124", "010")):
            folder = source / f"PATIENT={subject}" / f"CODE={code}"
            folder.mkdir(parents=True)
            pq.write_table(pa.table({"NOTE": ["routine visit", "follow-up"]}), folder / "part-0.parquet")
        policy = parse_policy(SMALL)

        arrow, on_spark = _both(tmp_path, spark, policy, source, **_small_options(tmp_path))

        assert arrow.report.published, arrow.refusals
        assert (arrow.report.rows.read, arrow.report.rows.admitted) == (4, 2)
        assert arrow.report.rows.excluded == {"no-record": 2}
        assert _read(arrow.report.output).column("CODE").to_pylist() == ["010", "010"]
        assert _report(on_spark) == _report(arrow)
        assert_same_output(arrow, on_spark)

    def test_nanosecond_timestamps_are_read_to_the_nanosecond(self, tmp_path: Path, spark):
        """Spark cannot read ``INT64 TIMESTAMP(NANOS)`` as timestamps; the engine reads their counts and casts
        them back, so that a value one nanosecond before a new year keeps its year and its nanoseconds."""
        last = 1_609_459_199_999_999_999  # 2020-12-31T23:59:59.999999999
        source = tmp_path / "source.parquet"
        pq.write_table(
            pa.table(
                {
                    "PATIENT": ["00124", "00124"],
                    "CODE": pa.array([last, last + 1], pa.timestamp("ns")),
                    "NOTE": ["routine visit", "follow-up"],
                }
            ),
            source,
        )
        assert "NANOS" in str(pq.ParquetFile(source).schema.column(1).logical_type).upper()
        policy = parse_policy(SMALL)

        arrow, on_spark = _both(tmp_path, spark, policy, source, **_small_options(tmp_path))

        assert arrow.report.published, arrow.refusals
        assert _read(arrow.report.output).column("CODE").cast(pa.int64()).to_pylist() == [last, last + 1]
        assert _report(on_spark) == _report(arrow)
        assert_same_output(arrow, on_spark)


def _swap_before_writing(monkeypatch, source: Path, table: pa.Table) -> None:
    """Replace ``source`` between the engine's checking passes and its write pass, as an upstream writer
    replacing the extract mid-run would."""
    original = spark_engine._write_parts

    def swapped(*arguments, **options):
        pq.write_table(table, source)
        return original(*arguments, **options)

    monkeypatch.setattr(spark_engine, "_write_parts", swapped)


class TestASourceThatChangesDuringTheRun:
    def _source(self, tmp_path: Path) -> Path:
        source = tmp_path / "source.parquet"
        pq.write_table(pa.table({"PATIENT": ["00124"] * 2, "CODE": ["a", "b"], "NOTE": ["fine"] * 2}), source)
        return source

    def test_the_write_pass_scans_the_rows_it_writes(self, tmp_path: Path, spark, monkeypatch):
        """Whatever the earlier passes read, an identifier in the rows written refuses the run: the check
        holds even where the source's files look unchanged."""
        source = self._source(tmp_path)
        dirty = pa.table(
            {"PATIENT": ["00124"] * 2, "CODE": ["a", "b"], "NOTE": [f"SSN {CANARY_SSN}", "fine"]}
        )
        _swap_before_writing(monkeypatch, source, dirty)
        monkeypatch.setattr(spark_engine, "_fingerprint", lambda path: (), raising=False)
        output = tmp_path / "out" / "governed"

        result = govern_spark(parse_policy(SMALL), source, output, spark=spark, **_small_options(tmp_path))

        assert result.report.verdict is Verdict.REFUSED
        assert {refusal.error for refusal in result.refusals} == {ResidualPhiError}
        assert [(f.column, f.identifier.letter, f.count) for f in result.report.findings] == [
            ("NOTE", "G", 1)
        ]
        assert not output.exists()
        assert [path.name for path in output.parent.iterdir()] == []

    def test_a_source_replaced_between_passes_publishes_nothing(self, tmp_path: Path, spark, monkeypatch):
        """Clean rows of the same count, but not the rows the plan and the scan pass read: the source's
        files changed during the run, so nothing is published and a retry may succeed."""
        source = self._source(tmp_path)
        other = pa.table({"PATIENT": ["00124"] * 2, "CODE": ["c", "d"], "NOTE": ["also fine"] * 2})
        _swap_before_writing(monkeypatch, source, other)
        output = tmp_path / "out" / "governed"

        with pytest.raises(DataProcessingError) as caught:
            govern_spark(parse_policy(SMALL), source, output, spark=spark, **_small_options(tmp_path))

        assert caught.value.retryable
        assert not output.exists()
        assert [path.name for path in output.parent.iterdir()] == []


class TestErrorClasses:
    def test_a_query_spark_refuses_is_not_retryable(self, tmp_path: Path, spark):
        """Spark 4.3 cannot read a ``TIME`` column (an ``AnalysisException``): retrying cannot heal that."""
        source = tmp_path / "source.parquet"
        times = pa.array([1, 2], pa.time64("us"))
        pq.write_table(pa.table({"PATIENT": ["00124"] * 2, "CODE": times, "NOTE": ["fine"] * 2}), source)

        with pytest.raises(DataProcessingError) as caught:
            govern_spark(parse_policy(SMALL), source, tmp_path / "o", spark=spark, **_small_options(tmp_path))

        assert caught.value.cause == "AnalysisException"
        assert not caught.value.retryable

    def test_a_file_gone_while_spark_reads_it_is_retryable(self, tmp_path: Path, spark, monkeypatch):
        """Storage that fails under a job (here a file removed after Spark listed it) may heal on retry."""
        source = tmp_path / "source"
        source.mkdir()
        for i in range(2):
            pq.write_table(
                pa.table({"PATIENT": ["00124"], "CODE": ["a"], "NOTE": ["fine"]}),
                source / f"part-{i}.parquet",
            )
        original = spark_engine._joined

        def listed_then_removed(*arguments):
            rows = original(*arguments)
            (source / "part-1.parquet").unlink()
            return rows

        monkeypatch.setattr(spark_engine, "_joined", listed_then_removed)
        with pytest.raises(DataProcessingError) as caught:
            govern_spark(parse_policy(SMALL), source, tmp_path / "o", spark=spark, **_small_options(tmp_path))

        # Spark's own failure, not the engine's later check of the source's files
        assert caught.value.cause != "SourceChangedDuringRun"
        assert caught.value.retryable

    def test_a_lost_connection_to_spark_is_retryable(self, tmp_path: Path):
        from py4j.protocol import Py4JNetworkError

        error = spark_engine._processing_error(Py4JNetworkError("the JVM went away"), tmp_path / "source")
        assert error.retryable

    def test_the_operator_fails_a_source_of_the_wrong_kind_without_retry(self, tmp_path: Path, monkeypatch):
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_phi_guard.operators.policy import PhiPolicyOperator

        monkeypatch.setenv(
            "AIRFLOW_CONN_PHI_GUARD_TEST_SPARK", json.dumps({"conn_type": "spark", "host": "local[2]"})
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_PHI_GUARD_TEST_KEY",
            json.dumps({"conn_type": "generic", "password": PSEUDONYM_KEY.decode()}),
        )
        policy = tmp_path / "policy.yaml"
        policy.write_text(SMALL)
        source = tmp_path / "source.csv"
        source.write_text("PATIENT,CODE,NOTE\n00124,a,fine\n")
        operator = PhiPolicyOperator(
            task_id="govern",
            policy_path=str(policy),
            input_path=str(source),
            output_path=str(tmp_path / "governed"),
            consent_path=str(_small_options(tmp_path)["consent"]),
            report_path=str(tmp_path / "report.json"),
            as_of=AS_OF.isoformat(),
            pseudonym_key_conn_id="phi_guard_test_key",
            engine="spark",
            spark_conn_id="phi_guard_test_spark",
        )
        with pytest.raises(AirflowFailException, match="Parquet"):
            operator.execute(context={})


class TestNoValueLeaves:
    def test_no_canary_in_logs_messages_or_report(self, tmp_path: Path, spark, caplog, capfd):
        caplog.set_level(logging.DEBUG)
        notes = ["routine visit"] * ROWS
        notes[2] = f"SSN {CANARY_SSN} for canary-subject-02"
        source = _every_treatment_source(tmp_path / "source.parquet", notes=notes)
        result = govern_spark(
            parse_policy(EVERY_TREATMENT),
            source,
            tmp_path / "out" / "governed.parquet",
            spark=spark,
            consent=_consent(tmp_path),
            as_of=AS_OF,
            pseudonym_key=PSEUDONYM_KEY,
            date_shift_key=SHIFT_KEY,
            surrogate_mapping=tmp_path / "mapping.parquet",
        )
        assert result.report.verdict is Verdict.REFUSED
        with pytest.raises(ResidualPhiError) as caught:
            result.raise_for_verdict()

        captured = capfd.readouterr()
        texts = [caplog.text, captured.out, captured.err, str(caught.value), result.report.to_json()]
        for text in texts:
            for canary in [*SUBJECTS, CANARY_SSN, CANARY_MRN]:
                assert canary not in text

    def test_a_worker_failure_names_no_value_and_is_not_retryable(self, tmp_path: Path, spark, caplog, capfd):
        """A timestamp in the year 24152 cannot be reduced to its month: pyarrow's error quotes the value.
        In a Spark worker the executor's guard turns it into an error naming the class only, before Spark
        logs it, and the driver keeps it not retryable, as the Arrow executor does."""
        from airflow_phi_guard.deid import generalize

        far = 700 * 10**15  # microseconds: 24152-02-12
        with pytest.raises(pa.ArrowInvalid) as raw:
            generalize.to_month(pa.array([far], pa.int64()).cast(pa.timestamp("us")), None, AS_OF)
        canary = "24152-02-12"
        assert canary in str(raw.value), "the planted value is not what pyarrow quotes"

        seen = pa.array([datetime(2024, 1 + i % 12, 28, 12, 0) for i in range(ROWS)], pa.timestamp("us"))
        counts = seen.cast(pa.int64()).to_pylist()
        counts[4] = far
        source = _every_treatment_source(
            tmp_path / "source.parquet", extra={"SEEN": pa.array(counts, pa.int64()).cast(pa.timestamp("us"))}
        )
        options = {
            "consent": _consent(tmp_path),
            "as_of": AS_OF,
            "pseudonym_key": PSEUDONYM_KEY,
            "date_shift_key": SHIFT_KEY,
        }
        policy = parse_policy(EVERY_TREATMENT)
        with pytest.raises(DataProcessingError) as on_arrow:
            govern(
                policy,
                source,
                tmp_path / "arrow.parquet",
                surrogate_mapping=tmp_path / "a.parquet",
                **options,
            )
        caplog.set_level(logging.DEBUG)
        capfd.readouterr()

        with pytest.raises(DataProcessingError) as on_spark:
            govern_spark(
                policy,
                source,
                tmp_path / "spark",
                spark=spark,
                surrogate_mapping=tmp_path / "s.parquet",
                **options,
            )

        assert (on_spark.value.cause, on_spark.value.retryable) == (on_arrow.value.cause, False)
        assert on_spark.value.cause == "ArrowInvalid"
        captured = capfd.readouterr()
        for text in (str(on_spark.value), caplog.text, captured.out, captured.err):
            assert canary not in text
            assert CANARY_SSN not in text
            for subject in SUBJECTS:
                assert subject not in text


def test_cli_apply_with_engine_spark_publishes_what_arrow_publishes(
    tmp_path: Path, spark, monkeypatch, capsys
):
    monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", PSEUDONYM_KEY.decode())
    monkeypatch.setenv("PHI_GUARD_DATE_SHIFT_KEY", SHIFT_KEY.decode())
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(EVERY_TREATMENT)
    source = _every_treatment_source(tmp_path / "source.parquet")
    mapping = _mapping_with_codes(tmp_path, parse_policy(EVERY_TREATMENT), source)
    reports = {}
    for engine in ("arrow", "spark"):
        own_mapping = tmp_path / f"{engine}-mapping.parquet"
        shutil.copy(mapping, own_mapping)
        arguments = ["apply", "--policy", str(policy_file), "--input", str(source)]
        arguments += [
            "--output",
            str(tmp_path / engine / "governed.parquet"),
            "--consent",
            str(_consent(tmp_path)),
        ]
        arguments += ["--as-of", AS_OF.isoformat(), "--report", str(tmp_path / f"{engine}.json")]
        arguments += ["--surrogate-mapping", str(own_mapping), "--engine", engine]
        assert main(arguments) == 0, capsys.readouterr().err
        reports[engine] = json.loads((tmp_path / f"{engine}.json").read_text())
        for key in ("output", "surrogate_mapping"):
            reports[engine].pop(key)
    assert reports["spark"] == reports["arrow"]
    arrow_table = pq.read_table(tmp_path / "arrow" / "governed.parquet")
    spark_table = pq.read_table(tmp_path / "spark" / "governed.parquet")
    assert _sorted(spark_table).equals(_sorted(arrow_table))


def test_the_operator_with_engine_spark_takes_the_master_from_a_spark_connection(
    tmp_path: Path, spark, monkeypatch
):
    from airflow_phi_guard.operators.hooks import SparkSessionHook
    from airflow_phi_guard.operators.policy import PhiPolicyOperator

    monkeypatch.setenv(
        "AIRFLOW_CONN_PHI_GUARD_TEST_SPARK", json.dumps({"conn_type": "spark", "host": "local[2]"})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_PHI_GUARD_TEST_KEY",
        json.dumps({"conn_type": "generic", "password": PSEUDONYM_KEY.decode()}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_PHI_GUARD_TEST_SHIFT",
        json.dumps({"conn_type": "generic", "password": SHIFT_KEY.decode()}),
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(EVERY_TREATMENT)
    source = _every_treatment_source(tmp_path / "source.parquet")
    mapping = _mapping_with_codes(tmp_path, parse_policy(EVERY_TREATMENT), source)
    assert SparkSessionHook("phi_guard_test_spark").master() == "local[2]"

    summaries = {}
    for engine in ("arrow", "spark"):
        operator = PhiPolicyOperator(
            task_id=f"govern_{engine}",
            policy_path=str(policy),
            input_path=str(source),
            output_path=str(tmp_path / engine / "governed.parquet"),
            consent_path=str(_consent(tmp_path)),
            report_path=str(tmp_path / f"{engine}.json"),
            as_of=AS_OF.isoformat(),
            pseudonym_key_conn_id="phi_guard_test_key",
            date_shift_key_conn_id="phi_guard_test_shift",
            surrogate_mapping_path=str(shutil.copy(mapping, tmp_path / f"{engine}-mapping.parquet")),
            engine=engine,
            spark_conn_id="phi_guard_test_spark",
        )
        summaries[engine] = operator.execute(context={})
    assert summaries["spark"]["verdict"] == "published"
    for summary in summaries.values():
        summary.pop("output", None)
    assert summaries["spark"] == summaries["arrow"]
    assert _sorted(pq.read_table(tmp_path / "spark" / "governed.parquet")).equals(
        _sorted(pq.read_table(tmp_path / "arrow" / "governed.parquet"))
    )


def test_an_unknown_engine_is_refused_when_the_dag_is_parsed():
    from airflow_phi_guard.operators.policy import PhiPolicyOperator

    with pytest.raises(ValueError, match="engine"):
        PhiPolicyOperator(
            task_id="govern",
            policy_path="p.yaml",
            input_path="i",
            output_path="o",
            report_path="r",
            engine="dask",
        )
