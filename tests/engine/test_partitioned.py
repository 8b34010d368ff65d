"""Partitioned and multi-file input, and partitioned output published whole or not at all."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_dataset
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.cli import main
from airflow_phi_guard.engine.executor import govern
from airflow_phi_guard.engine.plan import make_plan
from airflow_phi_guard.engine.source import CSV_INFERENCE_BLOCK_BYTES, open_source
from airflow_phi_guard.exceptions import (
    DataProcessingError,
    PartitionNotPermittedError,
    ReidentificationRiskError,
    ResidualPhiError,
    SourceDatasetError,
    UndeclaredColumnsError,
)
from airflow_phi_guard.lineage.build import lineage_for_report
from airflow_phi_guard.policy import parse_policy
from airflow_phi_guard.report import Verdict

AS_OF = date(2026, 12, 1)
KEY = b"test-key-not-a-secret-0123456789abcdef"

#: Planted values that must never appear in a folder name, a message or a report.
CANARY_NOTE = "canary-note-7f3a"
CANARY_ZIP = "68123"
CANARY_SUBJECT = "p-canary-subject"

POLICY = """\
name: partition-policy
version: 1
purpose: model-training
model: {name: test-model, version: "1"}
recipient: internal-ml-platform
subject: PATIENT
undeclared: refuse
consent:
  bases: [research-authorization]
deidentification:
  method: %(method)s
%(record)s
  zip3_vintage: census-2020
%(risk)s
columns:
  PATIENT:    {treatment: pseudonymize, as: PATIENT_KEY, justification: "split by patient"}
  VISIT_DATE: {treatment: year, as: VISIT_YEAR, justification: "trend"}
  ZIP:        {treatment: %(zip)s, justification: "region"}
  DOSE_MG:    {treatment: keep, justification: "predictor"}
  NOTE:       {treatment: keep, justification: "free text, scanned"}
%(extra)s"""

RECORDS = {
    "expert-determination": """\
  expert_determination:
    expert: "A. Expert, PhD (biostatistics)"
    determined: 2000-01-01
    report: ED-TEST-1
    expires: 2099-01-01""",
    "limited-data-set": """\
  data_use_agreement:
    id: DUA-TEST-1
    parties: [covered entity, recipient]
    permitted_purposes: [model-training]
    signed: 2000-01-01
    expires: 2099-01-01""",
}

SUBJECTS = [f"p-{number}" for number in range(12)] + [CANARY_SUBJECT]
#: p-11 has no consent record, so its rows are excluded.
CONSENT = "subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference\n" + "".join(
    f"{subject},research-authorization,model-training,2020-01-01,,,AUTH-{number}\n"
    for number, subject in enumerate(SUBJECTS)
    if subject != "p-11"
)


def _policy(
    *,
    method: str = "expert-determination",
    zip_treatment: str = "zip3",
    extra: str = "",
    risk: str = "",
):
    text = POLICY % {
        "method": method,
        "record": RECORDS[method],
        "risk": risk,
        "zip": "zip3, as: ZIP3" if zip_treatment == "zip3" else zip_treatment,
        "extra": extra,
    }
    return parse_policy(text)


def _table(rows: int = 120, *, phi_at: int | None = None) -> pa.Table:
    """Synthetic visits over three years; ``phi_at`` plants an SSN in the note of that row."""
    notes = [f"visit {number} {CANARY_NOTE}" for number in range(rows)]
    if phi_at is not None:
        notes[phi_at] = "patient SSN 123-45-6789 on file"
    return pa.table(
        {
            "PATIENT": pa.array([SUBJECTS[number % len(SUBJECTS)] for number in range(rows)]),
            "VISIT_DATE": pa.array([date(2019 + number % 3, 1 + number % 12, 1) for number in range(rows)]),
            "ZIP": pa.array([CANARY_ZIP if number % 2 else "10001" for number in range(rows)]),
            "DOSE_MG": pa.array([10 * (number % 4) for number in range(rows)], pa.int64()),
            "NOTE": pa.array(notes),
        }
    )


def _consent(tmp_path: Path) -> Path:
    path = tmp_path / "consent.csv"
    path.write_text(CONSENT)
    return path


def _govern(tmp_path: Path, source, output: Path, policy=None, **options):
    return govern(
        policy or _policy(),
        source,
        output,
        consent=_consent(tmp_path),
        as_of=AS_OF,
        pseudonym_key=KEY,
        **options,
    )


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in table.column_names])


def _paths(folder: Path) -> list[str]:
    return [
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    ]


def _everything_under(folder: Path) -> list[str]:
    """Every file and folder name under ``folder``, relative to it."""
    found = []
    for root, folders, names in os.walk(folder):
        found.extend(os.path.relpath(os.path.join(root, name), folder) for name in folders + names)
    return found


class TestHiveInput:
    def _hive_source(self, tmp_path: Path) -> Path:
        folder = tmp_path / "visits"
        table = _table().append_column("REGION", pa.array(["north", "south", "east"] * 40))
        pa_dataset.write_dataset(
            table, folder, format="parquet", partitioning=["REGION"], partitioning_flavor="hive"
        )
        return folder

    def test_the_plan_sees_partition_keys_as_columns(self, tmp_path: Path):
        folder = self._hive_source(tmp_path)

        plan = make_plan(_policy(), open_source(folder).schema)

        assert "REGION" in plan.schema.names
        assert pa.types.is_string(plan.schema.field("REGION").type)
        # undeclared, so refused like any other undeclared column
        assert [refusal.error for refusal in plan.refusals] == [UndeclaredColumnsError]
        assert "REGION" in plan.refusals[0].message

    def test_an_undeclared_partition_key_is_refused_before_any_row_is_read(self, tmp_path: Path):
        folder = self._hive_source(tmp_path)
        output = tmp_path / "out" / "governed.parquet"

        result = _govern(tmp_path, folder, output)

        assert result.report.verdict is Verdict.REFUSED
        assert result.report.rows.read == 0
        assert UndeclaredColumnsError in {refusal.error for refusal in result.refusals}
        assert not output.exists()

    def test_a_declared_partition_key_is_published_with_its_values(self, tmp_path: Path):
        folder = self._hive_source(tmp_path)
        output = tmp_path / "out" / "governed.parquet"
        policy = _policy(extra='  REGION:     {treatment: keep, justification: "site effect"}\n')

        result = _govern(tmp_path, folder, output, policy)

        assert result.report.published, result.refusals
        published = pq.read_table(output)
        assert "REGION" in published.column_names
        assert set(published["REGION"].to_pylist()) == {"north", "south", "east"}
        assert result.report.rows.read == 120

    def test_only_the_planned_columns_are_read_and_partitions_prune(self, tmp_path: Path):
        folder = self._hive_source(tmp_path)
        dataset = open_source(folder)

        north = dataset.to_table(columns=["PATIENT", "REGION"], filter=pa_dataset.field("REGION") == "north")

        assert north.column_names == ["PATIENT", "REGION"]
        assert set(north["REGION"].to_pylist()) == {"north"}
        assert north.num_rows == 40
        # the filter on a partition key selects folders: the other regions' files are not opened
        fragments = list(dataset.get_fragments(filter=pa_dataset.field("REGION") == "north"))
        assert len(fragments) == 1

    def test_a_key_with_leading_zeros_stays_text_and_plain_integers_become_numbers(self, tmp_path: Path):
        folder = tmp_path / "by-code"
        for code, year in (("00501", 2020), ("10001", 2021)):
            part = folder / f"CODE={code}" / f"BATCH={year}"
            part.mkdir(parents=True)
            pq.write_table(pa.table({"PATIENT": ["p-0"]}), part / "part-0.parquet")

        dataset = open_source(folder)

        assert dataset.schema.field("CODE").type == pa.string()
        assert dataset.schema.field("BATCH").type == pa.int32()
        assert sorted(dataset.to_table()["CODE"].to_pylist()) == ["00501", "10001"]


class TestMultiFileInput:
    def _single(self, tmp_path: Path) -> pa.Table:
        source = tmp_path / "single.parquet"
        pq.write_table(_table(), source)
        output = tmp_path / "single-out.parquet"
        assert _govern(tmp_path, source, output).report.published
        return pq.read_table(output)

    def _split(self, tmp_path: Path, suffix: str) -> list[Path]:
        folder = tmp_path / f"parts-{suffix}"
        folder.mkdir()
        table, files = _table(), []
        for number, start in enumerate(range(0, table.num_rows, 50)):
            part = table.slice(start, 50)
            path = folder / f"part-{number}.{suffix}"
            if suffix == "csv":
                pa_csv.write_csv(part, path)
            else:
                pq.write_table(part, path)
            files.append(path)
        return files

    @pytest.mark.parametrize(
        "shape",
        [
            # (how the source is given, file format)
            ("list", "parquet"),
            ("glob", "parquet"),
            ("folder", "parquet"),
            ("list", "csv"),
            ("glob", "csv"),
            ("folder", "csv"),
        ],
    )
    def test_a_multi_file_source_publishes_what_one_file_does(self, tmp_path: Path, shape):
        how, suffix = shape
        expected = self._single(tmp_path)
        files = self._split(tmp_path, suffix)
        source = {
            "list": files,
            "glob": str(files[0].parent / f"part-*.{suffix}"),
            "folder": files[0].parent,
        }[how]
        output = tmp_path / "multi-out.parquet"

        result = _govern(tmp_path, source, output)

        assert result.report.published, result.refusals
        published = pq.read_table(output)
        assert published.schema.names == expected.schema.names
        assert _sorted(published).equals(_sorted(expected.cast(published.schema)))
        assert result.report.rows.read == 120
        # the report names the folder that holds the files
        assert result.report.input == str(files[0].parent)

    def test_a_column_present_in_one_file_only_is_seen_and_refused(self, tmp_path: Path):
        folder = tmp_path / "parts"
        folder.mkdir()
        pq.write_table(_table().slice(0, 60), folder / "part-0.parquet")
        later = _table().slice(60).append_column("SSN", pa.array(["123-45-6789"] * 60))
        pq.write_table(later, folder / "part-1.parquet")
        output = tmp_path / "out.parquet"

        result = _govern(tmp_path, folder, output)

        assert result.report.verdict is Verdict.REFUSED
        assert result.report.rows.read == 0
        assert any("SSN" in refusal.message for refusal in result.refusals)

    def test_csv_and_parquet_mixed_in_one_folder_are_refused(self, tmp_path: Path):
        folder = tmp_path / "mixed"
        folder.mkdir()
        pq.write_table(_table().slice(0, 10), folder / "a.parquet")
        pa_csv.write_csv(_table().slice(10, 10), folder / "b.csv")

        with pytest.raises(SourceDatasetError, match="mixes CSV and Parquet"):
            open_source(folder)

    def test_a_pattern_that_matches_nothing_is_a_missing_file(self, tmp_path: Path):
        with pytest.raises(FileNotFoundError):
            open_source(str(tmp_path / "none-*.parquet"))


class TestPartitionedOutput:
    def _unpartitioned(self, tmp_path: Path, source: Path) -> pa.Table:
        output = tmp_path / "flat.parquet"
        assert _govern(tmp_path, source, output).report.published
        return pq.read_table(output)

    @pytest.mark.parametrize("partition_by", [["VISIT_YEAR"], ["VISIT_YEAR", "ZIP3"], ["DOSE_MG"]])
    def test_partitioned_output_holds_the_rows_of_the_unpartitioned_one(self, tmp_path: Path, partition_by):
        source = tmp_path / "source.parquet"
        pq.write_table(_table(), source)
        expected = self._unpartitioned(tmp_path, source)
        output = tmp_path / "out" / "governed"

        result = _govern(tmp_path, source, output, partition_by=partition_by)

        assert result.report.published, result.refusals
        assert result.report.output == str(output)
        assert output.is_dir()
        published = open_source(output).to_table()
        assert published.schema == expected.schema
        assert _sorted(published).equals(_sorted(expected))
        # one folder level per partition column, named key=value, one top folder per value
        for path in _paths(output):
            if path != "_common_metadata":
                levels = Path(path).parts[:-1]
                assert [level.partition("=")[0] for level in levels] == partition_by
        outer = partition_by[0]
        assert {Path(path).parts[0] for path in _paths(output)} == {"_common_metadata"} | {
            f"{outer}={value}" for value in expected[outer].to_pylist()
        }

    def test_the_lineage_names_the_folder_and_its_whole_schema(self, tmp_path: Path):
        source = tmp_path / "source.parquet"
        pq.write_table(_table(), source)
        output = tmp_path / "governed"
        result = _govern(tmp_path, source, output, partition_by=["VISIT_YEAR"])

        lineage = lineage_for_report(
            result.report,
            result.plan.policy,
            input_schema=result.plan.schema,
            output_schema=result.output_schema,
        )

        (governed,) = lineage.outputs
        assert (governed.namespace, governed.name) == ("file", str(output.resolve()))
        fields = [field.name for field in governed.facets["schema"].fields]
        assert fields == ["PATIENT_KEY", "VISIT_YEAR", "ZIP3", "DOSE_MG", "NOTE"]

    def test_a_later_unpartitioned_run_replaces_a_partitioned_set_and_back(self, tmp_path: Path):
        source = tmp_path / "source.parquet"
        pq.write_table(_table(), source)
        output = tmp_path / "governed"

        assert _govern(tmp_path, source, output, partition_by=["VISIT_YEAR"]).report.published
        assert output.is_dir()
        assert _govern(tmp_path, source, output).report.published
        assert output.is_file()
        assert _govern(tmp_path, source, output, partition_by=["ZIP3"]).report.published
        assert output.is_dir()
        assert {Path(path).parts[0] for path in _paths(output)} == {
            "_common_metadata",
            "ZIP3=100",
            "ZIP3=681",
        }
        assert sorted(os.listdir(tmp_path)) == ["consent.csv", "governed", "source.parquet"]


class TestAtomicity:
    def _published_before(self, tmp_path: Path, output: Path) -> None:
        source = tmp_path / "clean.parquet"
        pq.write_table(_table(), source)
        assert _govern(tmp_path, source, output, partition_by=["VISIT_YEAR"]).report.published
        assert output.is_dir()

    def test_a_run_refused_for_residual_phi_in_its_last_batch_leaves_no_folder(self, tmp_path: Path):
        output = tmp_path / "out" / "governed"
        self._published_before(tmp_path, output)
        source = tmp_path / "dirty.parquet"
        pq.write_table(_table(phi_at=119), source)

        result = _govern(tmp_path, source, output, partition_by=["VISIT_YEAR"], batch_rows=16)

        assert result.report.verdict is Verdict.REFUSED
        assert {refusal.error for refusal in result.refusals} == {ResidualPhiError}
        assert result.report.rows.read == 120
        # the earlier set is withdrawn, as for a single file, and nothing is left behind
        assert os.listdir(output.parent) == []

    def test_a_run_refused_by_the_risk_gate_leaves_no_folder(self, tmp_path: Path):
        output = tmp_path / "out" / "governed"
        source = tmp_path / "source.parquet"
        pq.write_table(_table(), source)
        policy = _policy(risk="  quasi_identifiers: [VISIT_YEAR, ZIP3, DOSE_MG]\n  k_min: 50")

        result = _govern(tmp_path, source, output, policy, partition_by=["VISIT_YEAR"])

        assert result.report.verdict is Verdict.REFUSED
        assert {refusal.error for refusal in result.refusals} == {ReidentificationRiskError}
        assert os.listdir(output.parent) == []

    def test_a_failure_while_writing_partitions_leaves_nothing_and_the_earlier_set_untouched(
        self, tmp_path: Path
    ):
        output = tmp_path / "out" / "governed"
        self._published_before(tmp_path, output)
        before = {path: (output / path).read_bytes() for path in _paths(output)}
        # 1100 distinct doses, each given to all 13 subjects (12 admitted, enough for the folders' k_min of
        # 11): more partitions than pyarrow writes from one batch (1024), a real fault that comes after
        # every check passed
        rows = 1100 * len(SUBJECTS)
        doses = pa.array([number // len(SUBJECTS) for number in range(rows)], pa.int64())
        table = _table(rows).set_column(3, "DOSE_MG", doses)
        source = tmp_path / "many.parquet"
        pq.write_table(table, source)

        with pytest.raises(DataProcessingError) as raised:
            _govern(tmp_path, source, output, partition_by=["DOSE_MG"], batch_rows=rows)

        assert "ArrowInvalid" in str(raised.value)
        assert {path: (output / path).read_bytes() for path in _paths(output)} == before
        assert os.listdir(output.parent) == ["governed"]

    def test_a_failure_while_reading_a_later_file_leaves_nothing(self, tmp_path: Path):
        output = tmp_path / "out" / "governed"
        self._published_before(tmp_path, output)
        before = {path: (output / path).read_bytes() for path in _paths(output)}
        folder = tmp_path / "extract"
        folder.mkdir()
        pa_csv.write_csv(_table().slice(0, 60), folder / "part-0.csv")
        # past the block the types are inferred from, a dose that is no number: the read fails mid-pass
        rows = 60 + CSV_INFERENCE_BLOCK_BYTES // 40
        pa_csv.write_csv(_table(rows).slice(60), folder / "part-1.csv")
        assert (folder / "part-1.csv").stat().st_size > CSV_INFERENCE_BLOCK_BYTES
        with open(folder / "part-1.csv", "a", encoding="utf-8") as stream:
            stream.write(f"p-0,2020-01-01,10001,not-a-dose,{CANARY_NOTE}\n")

        with pytest.raises(DataProcessingError) as raised:
            _govern(tmp_path, folder, output, partition_by=["VISIT_YEAR"])

        assert "not-a-dose" not in str(raised.value)
        assert {path: (output / path).read_bytes() for path in _paths(output)} == before
        assert os.listdir(output.parent) == ["governed"]


class TestRefusedPartitionColumns:
    @pytest.mark.parametrize(
        ("method", "zip_treatment", "partition_by", "problem"),
        [
            # (method, ZIP's treatment, partition columns, what the refusal says)
            ("expert-determination", "zip3", ["PATIENT_KEY"], "it is the subject column"),
            ("expert-determination", "zip3", ["NOTE"], "keeps text as it is"),
            ("limited-data-set", "keep", ["ZIP"], "keeps identifier B as it is"),
            ("expert-determination", "zip3", ["VISIT_YEAR", "SSN"], "not output columns: SSN"),
        ],
    )
    def test_a_column_that_must_not_name_folders_is_refused_before_rows_are_read(
        self, tmp_path: Path, method, zip_treatment, partition_by, problem
    ):
        source = tmp_path / "source.parquet"
        pq.write_table(_table(), source)
        output = tmp_path / "out" / "governed"
        policy = _policy(method=method, zip_treatment=zip_treatment)

        result = _govern(tmp_path, source, output, policy, partition_by=partition_by)

        assert result.report.verdict is Verdict.REFUSED
        assert result.report.rows.read == 0
        assert {refusal.error for refusal in result.refusals} == {PartitionNotPermittedError}
        assert any(problem in refusal.message for refusal in result.refusals)
        assert not output.exists()
        names = "\n".join(_everything_under(tmp_path))
        text = json.dumps(result.report.model_dump(mode="json")) + " ".join(
            r.message for r in result.refusals
        )
        for canary in (CANARY_NOTE, CANARY_ZIP, CANARY_SUBJECT):
            assert canary not in names
            assert canary not in text

    def test_allowed_partitions_never_carry_a_value_of_another_column(self, tmp_path: Path):
        source = tmp_path / "source.parquet"
        pq.write_table(_table(), source)
        output = tmp_path / "governed"

        assert _govern(tmp_path, source, output, partition_by=["VISIT_YEAR", "ZIP3"]).report.published

        names = "\n".join(_everything_under(output))
        for canary in (CANARY_NOTE, CANARY_ZIP, CANARY_SUBJECT):
            assert canary not in names


class TestCommandLine:
    def _arguments(self, tmp_path: Path, *extra: str) -> list[str]:
        policy = tmp_path / "policy.yaml"
        policy.write_text(
            POLICY
            % {
                "method": "expert-determination",
                "record": RECORDS["expert-determination"],
                "risk": "",
                "zip": "zip3, as: ZIP3",
                "extra": "",
            }
        )
        return [
            "apply",
            "--policy",
            str(policy),
            "--consent",
            str(_consent(tmp_path)),
            "--as-of",
            AS_OF.isoformat(),
            *extra,
        ]

    def test_partition_by_publishes_a_partitioned_folder(self, tmp_path: Path, monkeypatch):
        monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", KEY.decode())
        first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
        pq.write_table(_table().slice(0, 70), first)
        pq.write_table(_table().slice(70), second)
        output = tmp_path / "governed"
        report = tmp_path / "report.json"

        status = main(
            self._arguments(
                tmp_path,
                "--input",
                str(first),
                "--input",
                str(second),
                "--output",
                str(output),
                "--partition-by",
                "VISIT_YEAR",
                "--report",
                str(report),
            )
        )

        assert status == 0
        assert sorted(path.name for path in output.iterdir()) == [
            "VISIT_YEAR=2019",
            "VISIT_YEAR=2020",
            "VISIT_YEAR=2021",
            "_common_metadata",
        ]
        assert open_source(output).count_rows() == json.loads(report.read_text())["rows"]["admitted"]

    def test_partition_by_a_pseudonym_exits_refused(self, tmp_path: Path, monkeypatch, capsys):
        monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", KEY.decode())
        source = tmp_path / "source.parquet"
        pq.write_table(_table(), source)
        output = tmp_path / "governed"

        status = main(
            self._arguments(
                tmp_path, "--input", str(source), "--output", str(output), "--partition-by", "PATIENT_KEY"
            )
        )

        assert status == 3
        assert "PATIENT_KEY cannot name partition folders" in capsys.readouterr().err
        assert not output.exists()


class TestPartitionRules:
    @pytest.mark.parametrize(
        ("column", "treatment", "partition_type", "problem"),
        [
            # (source column, its treatment, its type, what the refusal says; None: allowed)
            ("ENCOUNTER", "pseudonymize", pa.string(), "treatment 'pseudonymize' gives one value per person"),
            ("SCORE", "keep", pa.float64(), "does not read back from a folder name unchanged"),
            ("WARD_CODE", "keep", pa.int16(), None),
            ("ADMITTED", "quarter", pa.date32(), None),
        ],
    )
    def test_which_output_columns_may_name_folders(self, column, treatment, partition_type, problem):
        from airflow_phi_guard.engine.source import partition_refusals

        policy = _policy(extra=f'  {column}: {{treatment: {treatment}, justification: "test"}}\n')
        schema = _table(1).schema.append(pa.field(column, partition_type))
        plan = make_plan(policy, schema)
        assert plan.refusals == ()

        refusals = partition_refusals(plan, [policy.output_name(column)])

        if problem is None:
            assert refusals == []
        else:
            assert [refusal.error for refusal in refusals] == [PartitionNotPermittedError]
            assert problem in refusals[0].message


def test_great_expectations_validates_a_partitioned_set_as_the_unpartitioned_one(tmp_path: Path):
    from airflow_phi_guard.quality.validate import validate_governed_dataset

    source = tmp_path / "source.parquet"
    pq.write_table(_table(), source)
    summaries = []
    for name, partition_by in (("flat", []), ("partitioned", ["VISIT_YEAR", "ZIP3"])):
        output = tmp_path / name
        result = _govern(tmp_path, source, output, partition_by=partition_by)
        assert result.report.published, result.refusals
        summaries.append(
            validate_governed_dataset(
                output,
                result.report,
                suite_name=name,
                data_docs_dir=tmp_path / "docs",
                gx_project_dir=tmp_path / "gx",
            )
        )

    flat, partitioned = summaries
    assert flat.success, flat.failures
    # the partition columns are read from the folder names: the allowlist check finds every column
    assert partitioned.success, partitioned.failures
    assert partitioned.statistics.evaluated == flat.statistics.evaluated


def test_the_subject_manifest_of_a_partitioned_set_sits_beside_its_folder_and_goes_with_it(tmp_path: Path):
    manifest_key = b"manifest-key-not-a-secret-0123456789abcdef"
    source = tmp_path / "source.parquet"
    pq.write_table(_table(), source)
    output = tmp_path / "out" / "governed"

    published = _govern(tmp_path, source, output, partition_by=["VISIT_YEAR"], manifest_key=manifest_key)
    pq.write_table(_table(phi_at=3), source)
    refused = _govern(tmp_path, source, output, partition_by=["VISIT_YEAR"], manifest_key=manifest_key)

    assert published.report.manifest is not None
    assert published.report.manifest.path == str(output.parent / "governed.subjects.parquet")
    assert refused.report.verdict is Verdict.REFUSED
    assert os.listdir(output.parent) == []


def test_a_partitioned_set_of_no_rows_reads_back_empty_with_its_schema_and_validates(tmp_path: Path):
    """Every subject has revoked consent, so the run publishes no row; partition folders exist only for
    rows, so the set is its recorded schema alone, and it must read back and validate as an empty set."""
    from airflow_phi_guard.quality.validate import validate_governed_dataset

    source = tmp_path / "source.parquet"
    pq.write_table(_table(), source)
    flat = _govern(tmp_path, source, tmp_path / "flat")
    assert flat.report.published, flat.refusals
    revoked = tmp_path / "revoked.csv"
    revoked.write_text(
        "subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference\n"
        + "".join(
            f"{subject},research-authorization,model-training,2020-01-01,,2021-01-01,AUTH-{number}\n"
            for number, subject in enumerate(SUBJECTS)
        )
    )
    output = tmp_path / "partitioned"

    result = govern(
        _policy(),
        source,
        output,
        consent=revoked,
        as_of=AS_OF,
        pseudonym_key=KEY,
        partition_by=["VISIT_YEAR", "ZIP3"],
    )

    assert result.report.published, result.refusals
    read_back = open_source(output).to_table()
    assert read_back.num_rows == 0
    assert read_back.schema == open_source(tmp_path / "flat").schema
    summary = validate_governed_dataset(
        output,
        result.report,
        suite_name="no-rows",
        data_docs_dir=tmp_path / "docs",
        gx_project_dir=tmp_path / "gx",
    )
    assert summary.success, summary.failures
    assert summary.statistics.evaluated > 0
