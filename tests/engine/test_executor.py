"""The engine end to end on small synthetic datasets: what is published, what is refused, and that a
refused run publishes nothing."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.engine.executor import govern
from airflow_phi_guard.exceptions import (
    ConsentRegistryError,
    ConsentSubjectMismatchError,
    PolicyViolationError,
    PseudonymKeyError,
    ResidualPhiError,
    SubjectColumnMissingError,
    UndeclaredColumnsError,
)
from airflow_phi_guard.policy import parse_policy
from airflow_phi_guard.report import Verdict

AS_OF = date(2026, 12, 1)
KEY = b"test-key-not-a-secret-0123456789abcdef"

POLICY = """\
name: test-policy
version: 3
purpose: model-training
model: {name: test-model, version: "2"}
recipient: internal-ml-platform
subject: PATIENT
undeclared: %(undeclared)s
consent:
  bases: [research-authorization, irb-waiver]
deidentification:
  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD (biostatistics)"
    determined: 2000-01-01
    report: ED-TEST-1
    expires: 2099-01-01
  zip3_vintage: census-2020
columns:
  PATIENT:   {treatment: pseudonymize, as: PATIENT_KEY, justification: "split by patient"}
  BIRTHDATE: {treatment: age, as: AGE, justification: "predictor"}
  ZIP:       {treatment: zip3, as: ZIP3, justification: "region"}
  VISIT_DATE: {treatment: year, as: VISIT_YEAR, justification: "trend"}
  SSN:       {treatment: drop, justification: "not needed"}
  NOTE:      {treatment: keep, justification: "free text, scanned"}
"""

CONSENT = """\
subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference
p-admitted,research-authorization,model-training;research,2020-01-01,,,AUTH-1
p-waiver,irb-waiver,model-training,2026-12-01,,,IRB-1
p-treatment,treatment-consent,model-training,2020-01-01,,,TC-1
p-purpose,research-authorization,research,2020-01-01,,,AUTH-2
p-future,research-authorization,model-training,2026-12-02,,,AUTH-3
p-expired,research-authorization,model-training,2020-01-01,2026-12-01,,AUTH-4
p-revoked,research-authorization,model-training,2020-01-01,,2026-12-01,AUTH-5
p-opted,research-authorization,model-training,2020-01-01,,,AUTH-6
p-opted,opt-out,,2026-11-30,,,OPT-1
"""

SUBJECTS = [
    "p-admitted",
    "p-waiver",
    "p-treatment",
    "p-purpose",
    "p-future",
    "p-expired",
    "p-revoked",
    "p-opted",
    "p-unknown",
    None,
]


EXPERT_DETERMINATION = """\
  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD (biostatistics)"
    determined: 2000-01-01
    report: ED-TEST-1
    expires: 2099-01-01
"""

DATA_USE_AGREEMENT = """\
  method: limited-data-set
  data_use_agreement:
    id: DUA-TEST-1
    parties: [covered entity, recipient]
    permitted_purposes: [model-training]
    signed: 2000-01-01
    expires: 2099-01-01
"""


def with_method(policy_text: str, method: str) -> str:
    """The policy under another method, with the record that method rests on."""
    record = {
        "expert-determination": EXPERT_DETERMINATION,
        "limited-data-set": DATA_USE_AGREEMENT,
        "safe-harbor": "  method: safe-harbor\n",
    }[method]
    assert EXPERT_DETERMINATION in policy_text
    return policy_text.replace(EXPERT_DETERMINATION, record)


def _source(tmp_path: Path, *, notes: list[str | None] | None = None, extra: dict | None = None) -> Path:
    rows = len(SUBJECTS)
    columns = {
        "PATIENT": pa.array(SUBJECTS, pa.string()),
        "BIRTHDATE": pa.array([date(1980, 6, 15), date(1934, 11, 20)] + [date(2000, 1, 1)] * (rows - 2)),
        "ZIP": pa.array(["68504", "69210"] + ["02139-4307"] * (rows - 2)),
        "VISIT_DATE": pa.array(["2020-12-31T22:30:00-05:00", "2022-07-20"] + ["2024-03-01"] * (rows - 2)),
        "SSN": pa.array(["999-49-3983"] * rows),
        "NOTE": pa.array(notes if notes is not None else ["routine visit"] * rows),
    }
    columns.update(extra or {})
    path = tmp_path / "source.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def _consent(tmp_path: Path, text: str = CONSENT) -> Path:
    path = tmp_path / "consent.csv"
    path.write_text(text)
    return path


def _run(
    tmp_path: Path,
    *,
    undeclared: str = "refuse",
    key: bytes | None = KEY,
    consent: str | None = CONSENT,
    **source_options,
):
    policy = parse_policy(POLICY % {"undeclared": undeclared})
    output = tmp_path / "out" / "governed.parquet"
    result = govern(
        policy,
        _source(tmp_path, **source_options),
        output,
        consent=_consent(tmp_path, consent) if consent is not None else None,
        as_of=AS_OF,
        pseudonym_key=key,
    )
    return result, output


def _expected_pseudonym(value: str) -> str:
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


class TestPublished:
    def test_only_consented_rows_are_published_and_the_rest_counted_by_reason(self, tmp_path: Path):
        result, output = _run(tmp_path)
        report = result.report

        assert report.verdict is Verdict.PUBLISHED
        assert report.rows.read == 10
        assert report.rows.admitted == 2  # p-admitted (granted before), p-waiver (granted on the as-of date)
        assert report.rows.excluded == {
            "basis-not-accepted": 1,
            "expired": 1,
            "no-record": 1,
            "no-subject-id": 1,
            "not-yet-valid": 1,
            "opted-out": 1,
            "purpose-not-covered": 1,
            "revoked": 1,
        }
        assert pq.read_table(output).num_rows == 2

    def test_output_has_exactly_the_treated_allowlisted_columns(self, tmp_path: Path):
        _result, output = _run(tmp_path)
        table = pq.read_table(output)

        assert table.column_names == ["PATIENT_KEY", "AGE", "ZIP3", "VISIT_YEAR", "NOTE"]
        assert table["PATIENT_KEY"].to_pylist() == [
            _expected_pseudonym("p-admitted"),
            _expected_pseudonym("p-waiver"),
        ]
        # born 1980-06-15: 46 on 2026-12-01; born 1934-11-20: 92, so "90 or older"
        assert table["AGE"].to_pylist() == [46, 90]
        # 685 is open; 692 is restricted in every vintage and becomes 000
        assert table["ZIP3"].to_pylist() == ["685", "000"]
        # the year as recorded, not after conversion to UTC (which would give 2021)
        assert table["VISIT_YEAR"].to_pylist() == [2020, 2022]

    def test_report_names_each_column_with_identifier_and_treatment(self, tmp_path: Path):
        result, _output = _run(tmp_path)
        by_source = {column.source: column for column in result.report.columns}

        assert by_source["SSN"].output is None and by_source["SSN"].identifier == "G"
        assert by_source["BIRTHDATE"].output == "AGE" and by_source["BIRTHDATE"].identifier == "C"
        assert by_source["ZIP"].identifier == "B"
        assert by_source["NOTE"].identifier is None
        assert result.report.pseudonym_key_fingerprint is not None
        assert KEY.decode() not in result.report.to_json()

    def test_undeclared_columns_are_dropped_when_the_policy_says_drop(self, tmp_path: Path):
        result, output = _run(tmp_path, undeclared="drop", extra={"FIRST": pa.array(["Alice368"] * 10)})

        assert result.report.published
        assert "FIRST" not in pq.read_table(output).column_names
        first = next(column for column in result.report.columns if column.source == "FIRST")
        assert (first.declared, first.output, first.identifier) == (False, None, "A")


class TestRefused:
    @pytest.mark.parametrize(
        ("options", "error", "named"),
        [
            # a column the policy does not declare, under `undeclared: refuse`
            ({"extra": {"FIRST": pa.array(["Alice368"] * 10)}}, UndeclaredColumnsError, ["FIRST"]),
            # kept free text holding an SSN, a phone number, an email address: named by column and letter
            ({"notes": ["call 402-555-0199"] + ["ok"] * 9}, ResidualPhiError, ["NOTE", "D"]),
            ({"notes": ["ssn 123-45-6789"] + ["ok"] * 9}, ResidualPhiError, ["NOTE", "G"]),
            ({"notes": ["mail jane.doe@example.org"] + ["ok"] * 9}, ResidualPhiError, ["NOTE", "F"]),
            # no pseudonym key for a pseudonymize treatment
            ({"key": None}, PseudonymKeyError, ["pseudonym key"]),
            # no consent registry, an empty one, a malformed one
            ({"consent": None}, ConsentRegistryError, ["consent registry"]),
            ({"consent": "subject_id,basis\n"}, ConsentRegistryError, []),
            ({"consent": CONSENT.replace("irb-waiver,model", "verbal-ok,model")}, ConsentRegistryError, []),
        ],
    )
    def test_refusal_publishes_nothing_and_names_no_value(self, tmp_path: Path, options, error, named):
        result, output = _run(tmp_path, **options)

        assert result.report.verdict is Verdict.REFUSED
        assert result.report.output is None
        assert not output.exists()
        assert _leftovers(output.parent) == []  # no temporary file left behind either
        with pytest.raises(error) as caught:
            result.raise_for_verdict("report.json")
        message = str(caught.value)
        for name in named:
            assert name in message
        for value in ("402-555-0199", "123-45-6789", "jane.doe@example.org", "Alice368", "p-admitted"):
            assert value not in message
            assert value not in result.report.to_json()

    def test_subject_column_missing(self, tmp_path: Path):
        policy = parse_policy(POLICY % {"undeclared": "refuse"})
        source = tmp_path / "no_subject.parquet"
        pq.write_table(
            pa.table(
                {
                    "BIRTHDATE": [date(1980, 1, 1)],
                    "ZIP": ["68504"],
                    "VISIT_DATE": ["2020-01-01"],
                    "SSN": ["x"],
                    "NOTE": ["y"],
                }
            ),
            source,
        )

        result = govern(
            policy,
            source,
            tmp_path / "out.parquet",
            consent=_consent(tmp_path),
            as_of=AS_OF,
            pseudonym_key=KEY,
        )

        assert not result.report.published
        with pytest.raises(SubjectColumnMissingError, match="PATIENT"):
            result.raise_for_verdict()

    def test_a_refused_run_withdraws_an_earlier_output(self, tmp_path: Path):
        # exit 3 means "nothing at OUT" (the issue): a reader of OUT must not find the set a later run refused
        _result, output = _run(tmp_path)
        assert output.exists()

        refused, _ = _run(tmp_path, notes=["call 402-555-0199"] * 10)

        assert not refused.report.published
        assert not output.exists()
        assert _leftovers(output.parent) == []

    def test_a_refusal_before_any_row_is_read_also_withdraws_an_earlier_output(self, tmp_path: Path):
        _result, output = _run(tmp_path)

        refused, _ = _run(tmp_path, key=None)

        assert refused.report.rows.read == 0
        assert not output.exists()

    @pytest.mark.parametrize("key", [b"short-key", b"x" * 31])
    def test_a_pseudonym_key_shorter_than_32_bytes_is_refused(self, tmp_path: Path, key: bytes):
        result, output = _run(tmp_path, key=key)

        assert not output.exists()
        with pytest.raises(PseudonymKeyError, match="shorter than 32 bytes"):
            result.raise_for_verdict()
        assert key.decode() not in result.report.to_json()

    def test_several_refusals_are_all_reported(self, tmp_path: Path):
        result, _ = _run(tmp_path, key=None, extra={"FIRST": pa.array(["Alice368"] * 10)})

        with pytest.raises(PolicyViolationError) as caught:
            result.raise_for_verdict()
        assert len(caught.value.refusals) == 2


def test_a_subject_column_of_floats_is_refused_before_rows_are_read(tmp_path: Path):
    from airflow_phi_guard.exceptions import SubjectColumnTypeError

    policy = parse_policy(POLICY % {"undeclared": "refuse"})
    source = tmp_path / "float_subject.parquet"
    table = pa.table(
        {
            "PATIENT": [1.5],
            "BIRTHDATE": [date(1980, 1, 1)],
            "ZIP": ["68504"],
            "VISIT_DATE": ["2020-01-01"],
            "SSN": ["x"],
            "NOTE": ["y"],
        }
    )
    pq.write_table(table, source)

    result = govern(
        policy, source, tmp_path / "out.parquet", consent=_consent(tmp_path), as_of=AS_OF, pseudonym_key=KEY
    )

    assert result.report.rows.read == 0
    with pytest.raises(SubjectColumnTypeError, match="PATIENT"):
        result.raise_for_verdict()


class TestKnownValues:
    """Values of the dataset's own identifier columns found in kept text (issue 3), even when dropped."""

    @pytest.mark.parametrize(
        ("names", "notes", "refused"),
        [
            # the admitted patient's own name copied into the note
            (["Alice368"] * 10, ["Alice368 doing well"] + ["ok"] * 9, True),
            # another patient's name, one whose row consent excludes, is PHI in any note it appears in
            ([f"Name{n}x" for n in range(9)] + ["Zed368"], ["spoke with zed368"] + ["ok"] * 9, True),
            # notes that name nobody in the dataset
            (["Alice368"] * 10, ["doing well"] * 10, False),
        ],
    )
    def test_a_name_from_the_names_column_in_kept_text_refuses(self, tmp_path: Path, names, notes, refused):
        result, output = _run(tmp_path, undeclared="drop", extra={"FIRST": pa.array(names)}, notes=notes)

        assert result.report.published is not refused
        assert output.exists() is not refused
        if refused:
            assert [(f.column, f.identifier.letter, f.count) for f in result.report.findings] == [
                ("NOTE", "A", 1)
            ]
            for name in names:
                assert name not in result.report.to_json()


@pytest.mark.parametrize(
    ("method", "note", "refused_letter"),
    [
        # a date in kept text is an identifier (C) unless the output is a limited data set (164.514(e))
        ("expert-determination", "seen on 03/14/2024", "C"),
        ("limited-data-set", "seen on 03/14/2024", None),
        # a limited data set keeps the ZIP code but no street address (B)
        ("limited-data-set", "moved to ZIP 68504", None),
        ("limited-data-set", "moved to 406 Kohler Camp", "B"),
        ("safe-harbor", "moved to 406 Kohler Camp", "B"),
    ],
)
def test_what_kept_text_may_hold_depends_on_the_method(tmp_path: Path, method, note, refused_letter):
    policy_text = with_method(POLICY % {"undeclared": "refuse"}, method)
    # PATIENT is dropped so that every method accepts the columns; only the kept NOTE differs
    policy_text = policy_text.replace("{treatment: pseudonymize, as: PATIENT_KEY,", "{treatment: drop,")
    result = govern(
        parse_policy(policy_text),
        _source(tmp_path, notes=[note] * 10),
        tmp_path / "out.parquet",
        consent=_consent(tmp_path),
        as_of=AS_OF,
    )

    assert [finding.identifier.letter for finding in result.report.findings] == (
        [refused_letter] if refused_letter else []
    )
    assert result.report.published is (refused_letter is None)


class TestConsentEndOfPass:
    """Issue 4: a run where no subject of the dataset is in the registry is refused as a wrong column."""

    def test_no_subject_in_the_registry_is_refused_with_counts(self, tmp_path: Path, caplog):
        # The registry is well formed, but none of its subjects occurs in the dataset's PATIENT column.
        others = CONSENT.replace("p-", "q-")
        result, output = _run(tmp_path, consent=others)

        assert result.report.verdict is Verdict.REFUSED
        assert not output.exists()
        (refusal,) = [r for r in result.refusals if r.error is ConsentSubjectMismatchError]
        assert "none of the 10 row(s)" in refusal.message
        assert "column PATIENT" in refusal.message
        assert "8 subject(s)" in refusal.message
        with pytest.raises(ConsentRegistryError):
            result.raise_for_verdict()
        for text in [refusal.message, result.report.to_json(), caplog.text]:
            assert "q-admitted" not in text and "p-admitted" not in text

    def test_one_matching_subject_is_enough(self, tmp_path: Path):
        """The refusal is about a wrong subject column, not about few admissions: one match publishes."""
        only_one = CONSENT.replace("p-", "q-").replace("q-admitted", "p-admitted")
        result, _ = _run(tmp_path, consent=only_one)
        assert result.report.verdict is Verdict.PUBLISHED
        assert result.report.rows.admitted == 1

    def test_the_report_records_rules_and_counts_per_basis(self, tmp_path: Path):
        result, _ = _run(tmp_path)
        consent = result.report.consent
        assert consent is not None
        assert consent.as_of == AS_OF
        assert consent.date_rule == "calendar-date-as-recorded"
        assert consent.subject_id_normalization == "trim; uuid-case fold; digits as text"
        assert consent.purpose_codes == ["MLTRAINING"]
        # p-admitted by its research authorization, p-waiver by its IRB waiver.
        assert consent.admitted_rows_by_basis == {"research-authorization": 1, "irb-waiver": 1}
        assert consent.admitted_subjects_by_basis == {"research-authorization": 1, "irb-waiver": 1}
        assert consent.excluded_rows_by_reason == result.report.rows.excluded
        assert (consent.registry_records, consent.registry_subjects) == (9, 8)
        # every dataset subject but p-unknown and the null one has records
        assert (consent.subjects_matched, consent.rows_matched) == (8, 8)
