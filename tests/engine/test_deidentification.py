"""De-identification wired into the engine (issue 5): generalisations, dates read by declared rules, birth
years, surrogate codes and their mapping, date shifts, the risk gate, the records a method rests on, and
the Safe Harbor verdict, end to end on small synthetic datasets; every refusal publishes nothing and
names no value."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.deid.dateshift import MAXIMUM_WINDOW_DAYS
from airflow_phi_guard.deid.surrogate import SqlMappingStore
from airflow_phi_guard.engine.executor import govern
from airflow_phi_guard.exceptions import (
    DateShiftKeyError,
    DeidentificationRecordError,
    PolicyError,
    ReidentificationRiskError,
    SurrogateMappingError,
    TreatmentNotApplicableError,
    TreatmentNotPermittedError,
)
from airflow_phi_guard.policy import parse_policy
from airflow_phi_guard.report import Verdict

AS_OF = date(2026, 12, 1)
PSEUDONYM_KEY = b"pseudonym-key-not-a-secret-0123456789abcdef"
SHIFT_KEY = b"date-shift-key-not-a-secret-0123456789abcdef"

#: Synthetic subjects whose ids are canaries: none may appear in a report, a message or a log line.
SUBJECTS = [f"canary-subject-{i:02d}" for i in range(12)]

CONSENT = "subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference\n" + "".join(
    f"{subject},research-authorization,model-training,2020-01-01,,,AUTH-{i}\n"
    for i, subject in enumerate(SUBJECTS)
)

HEADER = """\
name: deid-test
version: 1
purpose: model-training
model: {name: deid-model, version: "1"}
recipient: internal-ml-platform
subject: PATIENT
consent:
  bases: [research-authorization]
deidentification:
%(deidentification)s
columns:
%(columns)s
"""

SAFE_HARBOR = """\
  method: safe-harbor
  attestation: {by: "J. Doe, Privacy Officer", date: 2026-11-30, statement: "No actual knowledge."}"""

EXPERT_DETERMINATION = """\
  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD"
    determined: 2026-01-15
    report: ED-2026-1
    expires: 2027-01-15"""


LIMITED_DATA_SET = """\
  method: limited-data-set
  data_use_agreement:
    id: DUA-7
    parties: [covered entity, recipient]
    permitted_purposes: [model-training]
    signed: 2026-01-01"""


def policy_text(deidentification: str, columns: dict[str, str]) -> str:
    lines = "\n".join(f"  {name}: {{{declaration}}}" for name, declaration in columns.items())
    return HEADER % {"deidentification": deidentification, "columns": lines}


def source(tmp_path: Path, **columns: pa.Array) -> Path:
    """Twelve rows, one per subject, with the columns given (PATIENT added)."""
    table = pa.table({"PATIENT": pa.array(SUBJECTS), **columns})
    path = tmp_path / "source.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def run(tmp_path: Path, text: str, table: Path, **options):
    consent = tmp_path / "consent.csv"
    consent.write_text(CONSENT)
    output = tmp_path / "out" / "governed.parquet"
    result = govern(
        parse_policy(text), table, output, consent=consent, as_of=options.pop("as_of", AS_OF), **options
    )
    return result, output


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        for subject in SUBJECTS:
            assert subject not in text


def assert_refused(result, output: Path, error: type, *named: str) -> None:
    assert result.report.verdict is Verdict.REFUSED
    assert not output.exists()
    assert sorted(path.name for path in output.parent.iterdir()) == [] if output.parent.exists() else True
    with pytest.raises(error) as caught:
        result.raise_for_verdict()
    for name in named:
        assert name in str(caught.value)
    assert_no_canary(str(caught.value), result.report.to_json())


BIRTHS = pa.array([date(1930, 1, 1), date(1936, 12, 1), date(1936, 12, 2), None] + [date(1990, 5, 5)] * 8)
ZIPS = pa.array(["68504", "69210", "10001", "02139-4307"] + ["68504"] * 8)
INCOMES = pa.array([5, 20_000, 1_000_000, None] + [50_000] * 8, pa.int64())


def safe_harbor_columns(**more: str) -> dict[str, str]:
    return {
        "PATIENT": 'treatment: surrogate, namespace: patient, as: PATIENT_KEY, justification: "split"',
        "BIRTHDATE": 'treatment: age-band, bands: [0, 18, 65, 90], as: AGE_BAND, justification: "predictor"',
        "ZIP": 'treatment: state, as: STATE, justification: "region"',
        "INCOME": 'treatment: top-bottom-code, bottom: 10000, top: 200000, justification: "predictor"',
        **more,
    }


class TestSafeHarborRun:
    """A Safe Harbor policy with surrogate codes, age bands, States and top coding."""

    def _run(self, tmp_path: Path, mapping: Path | None = None, deidentification: str = SAFE_HARBOR, **more):
        table = source(tmp_path, BIRTHDATE=BIRTHS, ZIP=ZIPS, INCOME=INCOMES)
        mapping = mapping or tmp_path / "private" / "mapping.parquet"
        text = policy_text(deidentification, safe_harbor_columns(**more))
        return run(tmp_path, text, table, surrogate_mapping=mapping)

    def test_the_output_is_generalised_as_declared(self, tmp_path: Path):
        result, output = self._run(tmp_path)
        table = pq.read_table(output)

        assert result.report.published
        # ages at 2026-12-01: 96, 90 (birthday today), 89 (birthday tomorrow), unknown, 36
        assert table["AGE_BAND"].to_pylist()[:5] == ["90+", "90+", "65-89", None, "18-64"]
        # 69210 is in Nebraska: a State is no subdivision smaller than a State
        assert table["STATE"].to_pylist()[:4] == ["NE", "NE", "NY", "MA"]
        assert table["INCOME"].to_pylist()[:4] == [10_000, 20_000, 200_000, None]
        codes = table["PATIENT_KEY"].to_pylist()
        assert len(set(codes)) == 12 and all(len(code) == 32 for code in codes)

    def test_the_verdict_is_met_with_the_attestation_and_awaits_it_without(self, tmp_path: Path):
        met, _ = self._run(tmp_path / "with")
        awaiting, _ = self._run(tmp_path / "without", deidentification="  method: safe-harbor")

        assert met.report.safe_harbor.status == "met"
        assert met.report.safe_harbor.attestation.by == "J. Doe, Privacy Officer"
        assert "not legal advice" in met.report.safe_harbor.notice
        assert awaiting.report.safe_harbor.status == "awaiting-attestation"
        assert awaiting.report.safe_harbor.breaches == []

    def test_the_same_person_gets_the_same_code_across_runs_and_the_mapping_is_private(self, tmp_path: Path):
        mapping = tmp_path / "private" / "mapping.parquet"
        first, first_output = self._run(tmp_path / "first", mapping=mapping)
        second, second_output = self._run(tmp_path / "second", mapping=mapping)

        assert pq.read_table(first_output)["PATIENT_KEY"] == pq.read_table(second_output)["PATIENT_KEY"]
        assert first.report.surrogate_mapping.namespaces[0].new_codes == 12
        assert second.report.surrogate_mapping.namespaces[0].model_dump() == {
            "namespace": "patient",
            "known_codes": 12,
            "new_codes": 0,
        }
        assert first.report.surrogate_mapping.committed
        # the codes are random: none is a digest or a form of its identifier
        stored = pq.read_table(mapping)
        assert sorted(stored["identifier"].to_pylist()) == SUBJECTS
        assert_no_canary(first.report.to_json(), pq.read_table(first_output).to_string())

    def test_a_refused_run_adds_no_code_to_the_mapping(self, tmp_path: Path):
        mapping = tmp_path / "private" / "mapping.parquet"
        table = source(
            tmp_path, BIRTHDATE=BIRTHS, ZIP=ZIPS, INCOME=INCOMES, NOTE=pa.array(["call 402-555-0199"] * 12)
        )
        text = policy_text(SAFE_HARBOR, safe_harbor_columns(NOTE='treatment: keep, justification: "text"'))

        result, _output = run(tmp_path, text, table, surrogate_mapping=mapping)

        assert result.report.verdict is Verdict.REFUSED
        assert not mapping.exists()
        assert result.report.surrogate_mapping.committed is False

    @pytest.mark.parametrize(
        ("mapping", "named"),
        [
            # no mapping at all: codes could not stay the same across runs
            (None, "no surrogate mapping"),
            # a file that is no Parquet, and a Parquet file of other columns
            ("not-parquet", "cannot be read"),
            ("wrong-columns", "does not have the columns"),
        ],
    )
    def test_a_mapping_that_cannot_be_used_refuses_before_any_row_is_read(
        self, tmp_path: Path, caplog, mapping, named
    ):
        path = tmp_path / "private" / "mapping.parquet"
        path.parent.mkdir()
        if mapping == "not-parquet":
            path.write_text(f"{SUBJECTS[0]},code\n")
        elif mapping == "wrong-columns":
            pq.write_table(pa.table({"who": [SUBJECTS[0]]}), path)
        table = source(tmp_path, BIRTHDATE=BIRTHS, ZIP=ZIPS, INCOME=INCOMES)
        text = policy_text(SAFE_HARBOR, safe_harbor_columns())

        with caplog.at_level(logging.DEBUG):
            result, output = run(tmp_path, text, table, surrogate_mapping=None if mapping is None else path)

        assert_refused(result, output, SurrogateMappingError, named)
        assert result.report.rows.read == 0
        assert_no_canary(caplog.text)

    def test_a_mapping_that_changed_during_the_run_withdraws_the_output(self, tmp_path: Path, postgres_url):
        import sqlalchemy

        # A SQL mapping whose codes another run inserted first: the commit fails, nothing is published.
        engine = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
        table_name = f"surrogate_race_{tmp_path.name[-12:].replace('-', '_')}"

        class RacedStore(SqlMappingStore):
            def add(self, namespace, new):
                SqlMappingStore(engine, table_name).add(namespace, new)  # the other run
                super().add(namespace, new)

        store = RacedStore(engine, table_name)
        try:
            table = source(tmp_path, BIRTHDATE=BIRTHS, ZIP=ZIPS, INCOME=INCOMES)
            result, output = run(
                tmp_path, policy_text(SAFE_HARBOR, safe_harbor_columns()), table, surrogate_mapping=store
            )
            assert_refused(result, output, SurrogateMappingError, "another run")
        finally:
            store.table.drop(engine, checkfirst=True)


class TestRiskGate:
    """k-anonymity over the declared quasi-identifiers: refuse, or suppress the small classes."""

    # GENDER by class: F x6, M x4, X x2 (a class of 2 rows)
    GENDERS = pa.array(["F"] * 6 + ["M"] * 4 + ["X"] * 2)
    LABELS = pa.array([True, False] * 6)

    def _run(self, tmp_path: Path, risk: str):
        table = source(tmp_path, GENDER=self.GENDERS, LABEL=self.LABELS)
        columns = {
            "PATIENT": 'treatment: drop, justification: "not needed"',
            "GENDER": 'treatment: keep, justification: "predictor"',
            "LABEL": 'treatment: keep, justification: "label"',
        }
        return run(tmp_path, policy_text("  method: safe-harbor\n" + risk, columns), table)

    @pytest.mark.parametrize(
        ("k_min", "refused", "k", "classes_below_k"),
        [
            # the smallest class holds 2 rows: k is 2, so k_min 2 passes and k_min 3 refuses
            (2, False, 2, 0),
            (3, True, 2, 1),
            (5, True, 2, 2),
        ],
    )
    def test_below_k_refuses_by_default(self, tmp_path: Path, k_min, refused, k, classes_below_k):
        result, output = self._run(tmp_path, f"  quasi_identifiers: [GENDER]\n  k_min: {k_min}")

        if refused:
            assert_refused(result, output, ReidentificationRiskError, "k_min", "GENDER")
            assert result.report.risk is None
        else:
            assert result.report.published
            assert (result.report.risk.k, result.report.risk.classes) == (k, 3)
        assert classes_below_k == sum(1 for size in (6, 4, 2) if size < k_min)

    @pytest.mark.parametrize(("k_min", "suppressed", "kept"), [(3, 2, {"F": 6, "M": 4}), (5, 6, {"F": 6})])
    def test_suppress_removes_and_counts_the_rows_of_small_classes(
        self, tmp_path: Path, k_min, suppressed, kept
    ):
        result, output = self._run(
            tmp_path, f"  quasi_identifiers: [GENDER]\n  k_min: {k_min}\n  below_k: suppress"
        )
        table = pq.read_table(output)

        assert result.report.published
        assert Counter(table["GENDER"].to_pylist()) == kept
        assert result.report.rows.suppressed == result.report.risk.suppressed_rows == suppressed
        assert result.report.risk.k >= k_min
        assert result.report.summary()["k"] == result.report.risk.k

    def test_l_diversity_below_l_min_refuses(self, tmp_path: Path):
        # the class X holds labels True and False: l is 2, so l_min 3 refuses
        result, output = self._run(
            tmp_path,
            "  quasi_identifiers: [GENDER]\n  k_min: 2\n  l_diversity: {sensitive: [LABEL], l_min: 3}",
        )

        assert_refused(result, output, ReidentificationRiskError, "l_min", "LABEL")

    def test_a_quasi_identifier_that_is_not_an_output_column_is_refused_by_the_plan(self, tmp_path: Path):
        result, output = self._run(tmp_path, "  quasi_identifiers: [PATIENT]\n  k_min: 2")

        assert_refused(result, output, ReidentificationRiskError, "PATIENT", "not output columns")
        assert result.report.rows.read == 0


class TestExpertDeterminationRun:
    """Keyed pseudonyms and per-subject date shifts under a recorded expert determination."""

    COLUMNS = {
        "PATIENT": 'treatment: pseudonymize, as: PATIENT_KEY, justification: "split"',
        "ADMITTED": 'treatment: date-shift, justification: "intervals"',
        "DISCHARGED": 'treatment: date-shift, justification: "intervals"',
        "SEEN": 'treatment: month, justification: "season"',
    }
    ADMITTED = pa.array([date(2024, 1, 10 + i) for i in range(12)])
    DISCHARGED = pa.array([date(2024, 2, 1 + i) for i in range(12)])
    SEEN = pa.array(["2024-03-31T23:30:00-05:00"] * 12)

    def _run(self, tmp_path: Path, deidentification: str = EXPERT_DETERMINATION, window: int = 30, **options):
        table = source(tmp_path, ADMITTED=self.ADMITTED, DISCHARGED=self.DISCHARGED, SEEN=self.SEEN)
        text = policy_text(f"{deidentification}\n  date_shift_window_days: {window}", self.COLUMNS)
        options = {"pseudonym_key": PSEUDONYM_KEY, "date_shift_key": SHIFT_KEY, **options}
        return run(tmp_path, text, table, **options)

    def test_dates_shift_per_subject_within_the_window_and_intervals_stay(self, tmp_path: Path):
        result, output = self._run(tmp_path)
        table = pq.read_table(output)

        shifts = [
            (shifted - original).days
            for shifted, original in zip(
                table["ADMITTED"].to_pylist(), self.ADMITTED.to_pylist(), strict=True
            )
        ]
        assert all(1 <= abs(shift) <= 30 for shift in shifts)
        stays = [
            (out - inn).days
            for inn, out in zip(table["ADMITTED"].to_pylist(), table["DISCHARGED"].to_pylist(), strict=True)
        ]
        assert stays == [22] * 12
        # the month as recorded: 2024-03-31 local, not 2024-04 after a conversion to UTC
        assert table["SEEN"].to_pylist() == ["2024-03"] * 12
        assert result.report.date_shift.window_days == 30
        assert result.report.date_shift.columns == ["ADMITTED", "DISCHARGED"]
        assert SHIFT_KEY.decode() not in result.report.to_json()

    def test_it_is_labelled_not_safe_harbor_with_the_columns_and_letters(self, tmp_path: Path):
        result, _ = self._run(tmp_path)
        verdict = result.report.safe_harbor

        assert verdict.status == "not-met"
        assert sorted((breach.column, breach.identifier.letter) for breach in verdict.breaches) == [
            ("ADMITTED", "C"),
            ("DISCHARGED", "C"),
            ("PATIENT", "R"),
            ("SEEN", "C"),
        ]
        assert result.report.expert_determination.report == "ED-2026-1"

    @pytest.mark.parametrize(
        ("key", "named"),
        [(None, "no date shift key"), (b"short", "shorter than 32 bytes")],
    )
    def test_a_missing_or_short_key_refuses(self, tmp_path: Path, key, named):
        result, output = self._run(tmp_path, date_shift_key=key)

        assert_refused(result, output, DateShiftKeyError, named, "PHI_GUARD_DATE_SHIFT_KEY")

    @pytest.mark.parametrize(
        ("as_of", "refused"),
        [
            # the determination holds from 2026-01-15 until the day before 2027-01-15
            (date(2026, 1, 14), True),
            (date(2026, 1, 15), False),
            (date(2027, 1, 14), False),
            (date(2027, 1, 15), True),
        ],
    )
    def test_a_run_outside_the_determination_is_refused(self, tmp_path: Path, as_of, refused):
        result, output = self._run(tmp_path, as_of=as_of)

        if refused:
            assert_refused(result, output, DeidentificationRecordError, "expert determination")
        else:
            assert result.report.published

    def test_a_data_use_agreement_that_does_not_permit_the_purpose_refuses(self, tmp_path: Path):
        agreement = """\
  method: limited-data-set
  data_use_agreement:
    id: DUA-7
    parties: [covered entity, recipient]
    permitted_purposes: [public-health]
    signed: 2026-01-01"""

        result, output = self._run(tmp_path, deidentification=agreement)

        assert_refused(result, output, DeidentificationRecordError, "DUA-7", "model-training")

    @pytest.mark.parametrize("treatment", ["month", "quarter", "date-shift"])
    def test_under_safe_harbor_the_plan_refuses_it(self, tmp_path: Path, treatment):
        columns = {
            "PATIENT": 'treatment: drop, justification: "not needed"',
            "SEEN": f'treatment: {treatment}, justification: "season"',
        }
        table = source(tmp_path, SEEN=self.SEEN)
        text = policy_text("  method: safe-harbor\n  date_shift_window_days: 30", columns)

        result, output = run(tmp_path, text, table, date_shift_key=SHIFT_KEY)

        assert_refused(result, output, TreatmentNotPermittedError, "SEEN", "safe-harbor")


class TestDatesAndBirthYears:
    def _run(self, tmp_path: Path, declaration: str, values: pa.Array, method: str = "  method: safe-harbor"):
        columns = {"PATIENT": 'treatment: drop, justification: "x"', "BIRTHDATE": declaration}
        return run(tmp_path, policy_text(method, columns), source(tmp_path, BIRTHDATE=values))

    def test_a_birth_year_is_suppressed_for_90_and_over_and_for_an_unknown_age(self, tmp_path: Path):
        _result, output = self._run(
            tmp_path, 'treatment: birth-year, as: BIRTH_YEAR, justification: "x"', BIRTHS
        )

        years = pq.read_table(output)["BIRTH_YEAR"].to_pylist()
        assert years[:5] == [None, None, 1936, None, 1990]

    @pytest.mark.parametrize(
        ("dates", "values", "ages"),
        [
            # two-digit years: no birth date after the reference date, so 27 is 1927 and 03 is 2003
            (
                "{text_formats: [month-day-year], two_digit_years: not-after-reference}",
                ["03/04/27", "11/30/03"],
                [90, 23],
            ),
            # Excel 1900 serials as numbers: 25569 is 1970-01-01
            ("{excel_serials: excel-1900}", [25569, 36526], [56, 26]),
            # leap-day birthday: 29 February 2000 is 26 on 1 December 2026
            ("{text_formats: [iso-8601]}", ["2000-02-29", "1936-12-01"], [26, 90]),
        ],
    )
    def test_dates_are_read_by_the_declared_rule(self, tmp_path: Path, dates, values, ages):
        values = pa.array(values * 6)
        result, output = self._run(
            tmp_path, f'treatment: age, as: AGE, dates: {dates}, justification: "x"', values
        )

        assert result.report.published, result.report.refusals
        assert pq.read_table(output)["AGE"].to_pylist()[:2] == ages

    @pytest.mark.parametrize(
        "values",
        [
            pa.array(["2024-13-15"] + ["2000-01-01"] * 11),  # impossible month
            pa.array(["2023-02-29"] + ["2000-01-01"] * 11),  # no 29 February in 2023
            pa.array(["03/04/27"] + ["2000-01-01"] * 11),  # a two-digit year without a declared rule
        ],
    )
    def test_a_date_no_declared_rule_reads_is_refused(self, tmp_path: Path, values):
        result, output = self._run(tmp_path, 'treatment: age, as: AGE, justification: "x"', values)

        assert_refused(result, output, TreatmentNotApplicableError, "BIRTHDATE", "1 value(s)")

    def test_numbers_in_a_date_column_need_a_declared_serial_system(self, tmp_path: Path):
        result, output = self._run(
            tmp_path, 'treatment: age, as: AGE, justification: "x"', pa.array([25569] * 12)
        )

        assert_refused(result, output, TreatmentNotApplicableError, "BIRTHDATE", "cannot read type int64")

    def test_age_bands_above_90_are_refused_unless_a_limited_data_set_which_is_reported_not_safe_harbor(
        self, tmp_path: Path
    ):
        declaration = 'treatment: age-band, bands: [0, 65, 95], as: AGE_BAND, justification: "x"'
        refused, refused_output = self._run(tmp_path / "sh", declaration, BIRTHS)
        published, _ = self._run(tmp_path / "lds", declaration, BIRTHS, method=LIMITED_DATA_SET)

        assert_refused(refused, refused_output, TreatmentNotPermittedError, "BIRTHDATE", "90")
        assert published.report.published
        assert published.report.data_use_agreement.id == "DUA-7"
        assert [(b.column, b.identifier.letter) for b in published.report.safe_harbor.breaches] == [
            ("BIRTHDATE", "C")
        ]


@pytest.mark.parametrize(
    ("declaration", "problem"),
    [
        ('treatment: age-band, justification: "x"', "needs 'bands'"),
        ('treatment: age-band, bands: [18, 10], justification: "x"', "increase"),
        ('treatment: age, bands: [0, 18], justification: "x"', "takes no 'bands'"),
        ('treatment: keep, prefixes: true, justification: "x"', "takes no 'prefixes'"),
        ('treatment: top-bottom-code, justification: "x"', "'top', 'bottom' or both"),
        ('treatment: top-bottom-code, bottom: 9, top: 1, justification: "x"', "above"),
        ('treatment: surrogate, justification: "x"', "needs 'namespace'"),
        ('treatment: keep, namespace: patient, justification: "x"', "takes no 'namespace'"),
        ('treatment: keep, dates: {}, justification: "x"', "takes no 'dates'"),
        (
            'treatment: year, dates: {text_formats: [month-day-year, day-month-year]}, justification: "x"',
            "ambiguous",
        ),
        ('treatment: year, dates: {two_digit_years: cutoff}, justification: "x"', "cutoff"),
        ('treatment: date-shift, justification: "x"', "date_shift_window_days"),
    ],
)
def test_a_treatment_option_out_of_place_does_not_load(declaration, problem):
    text = policy_text(EXPERT_DETERMINATION, {"PATIENT": declaration})

    with pytest.raises(PolicyError, match=problem):
        parse_policy(text)


@pytest.mark.parametrize(
    ("risk", "problem"),
    [
        ("  quasi_identifiers: [AGE]", "need 'k_min'"),
        ("  k_min: 5", "need 'quasi_identifiers'"),
        ("  below_k: suppress", "need 'quasi_identifiers'"),
        ("  quasi_identifiers: [AGE]\n  k_min: 1", "greater than or equal to 2"),
        (
            "  quasi_identifiers: [AGE]\n  k_min: 5\n  l_diversity: {sensitive: [AGE], l_min: 2}",
            "more than once",
        ),
        (f"  date_shift_window_days: {MAXIMUM_WINDOW_DAYS + 1}", "less than or equal"),
    ],
)
def test_risk_thresholds_out_of_place_do_not_load(risk, problem):
    text = policy_text(f"{EXPERT_DETERMINATION}\n{risk}", {"PATIENT": 'treatment: drop, justification: "x"'})

    with pytest.raises(PolicyError, match=problem):
        parse_policy(text)


def test_the_date_rules_of_a_policy_are_those_of_the_treatments():
    from typing import get_args

    from airflow_phi_guard.deid.treatments import DateTextFormat, ExcelSerials, TwoDigitYears
    from airflow_phi_guard.policy.models import DateRules

    fields = DateRules.model_fields
    assert set(get_args(get_args(fields["text_formats"].annotation)[0])) == {f.value for f in DateTextFormat}
    assert set(get_args(fields["two_digit_years"].annotation)) == {rule.value for rule in TwoDigitYears}
    assert set(get_args(fields["excel_serials"].annotation)) == {system.value for system in ExcelSerials}


def test_a_window_of_the_declared_size_is_recorded(tmp_path: Path):
    # Sanity of the record: it is the policy's window, and the fingerprint is sixteen hex digits.
    result, _ = TestExpertDeterminationRun()._run(tmp_path, window=7)

    assert result.report.date_shift.window_days == 7
    assert len(result.report.date_shift.key_fingerprint) == 16


def test_a_fractional_coding_bound_on_an_integer_column_is_refused_by_the_plan(tmp_path: Path):
    columns = {
        "PATIENT": 'treatment: drop, justification: "x"',
        "INCOME": 'treatment: top-bottom-code, top: 200000.5, justification: "x"',
    }
    result, output = run(tmp_path, policy_text(SAFE_HARBOR, columns), source(tmp_path, INCOME=INCOMES))

    assert_refused(result, output, TreatmentNotApplicableError, "INCOME", "whole number")
    assert result.report.rows.read == 0
