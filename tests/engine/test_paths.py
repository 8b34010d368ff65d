"""Where a run reads and writes: colliding partition keys, outputs over inputs, folder names and staging."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.cli import main
from airflow_phi_guard.engine.paths import folder_name_problem
from airflow_phi_guard.exceptions import (
    DataProcessingError,
    OutputPathError,
    PartitionNotPermittedError,
    ReidentificationRiskError,
    SourceDatasetError,
)
from airflow_phi_guard.report import Verdict
from tests.engine.test_partitioned import (
    AS_OF,
    CANARY_ZIP,
    KEY,
    POLICY,
    RECORDS,
    SUBJECTS,
    _consent,
    _govern,
    _policy,
    _table,
)

SSN = "987-65-4321"
RISK = "  quasi_identifiers: [VISIT_YEAR]\n  k_min: 2"


def _bytes(folder: Path) -> dict[str, bytes]:
    return {
        os.path.relpath(os.path.join(root, name), folder): Path(root, name).read_bytes()
        for root, _, names in os.walk(folder)
        for name in names
    }


class TestCollidingPartitionKeys:
    """A hive key that is also a file column would replace the file's values: refused before any row."""

    @pytest.mark.parametrize("file_format", ["parquet", "csv"])
    def test_a_subject_folder_over_files_with_their_own_subject_is_refused(self, tmp_path: Path, file_format):
        # The files hold p-11, who has no consent; the folder claims p-0, who has.
        source = tmp_path / "visits"
        (source / "PATIENT=p-0").mkdir(parents=True)
        table = _table(20).set_column(0, "PATIENT", pa.array(["p-11"] * 20))
        if file_format == "csv":
            pa_csv.write_csv(table, source / "PATIENT=p-0" / "part.csv")
        else:
            pq.write_table(table, source / "PATIENT=p-0" / "part.parquet")
        output = tmp_path / "governed.parquet"

        with pytest.raises(SourceDatasetError) as raised:
            _govern(tmp_path, source, output)

        assert "PATIENT" in str(raised.value)
        assert "p-0" not in str(raised.value) and "p-11" not in str(raised.value)
        assert not output.exists()


class TestOutputApartFromInputs:
    def _source(self, tmp_path: Path) -> Path:
        source = tmp_path / "in" / "visits.parquet"
        source.parent.mkdir()
        pq.write_table(_table(), source)
        return source

    @pytest.mark.parametrize(
        "output_of",
        [
            pytest.param(lambda source: source, id="the-input-itself"),
            pytest.param(lambda source: source.parent, id="the-folder-holding-the-input"),
            pytest.param(lambda source: source.parent / "sub" / ".." / source.name, id="the-input-by-dots"),
        ],
    )
    def test_an_output_over_an_input_is_refused_and_the_input_survives(self, tmp_path: Path, output_of):
        source = self._source(tmp_path)
        before = _bytes(source.parent)
        # A refused run withdraws its output: here that would delete the source.
        policy = _policy(risk="  quasi_identifiers: [VISIT_YEAR]\n  k_min: 500")

        with pytest.raises(OutputPathError):
            _govern(tmp_path, source, output_of(source), policy)

        assert _bytes(source.parent) == before

    def test_an_output_inside_an_input_folder_is_refused(self, tmp_path: Path):
        source = self._source(tmp_path)
        before = _bytes(source.parent)

        with pytest.raises(OutputPathError):
            _govern(tmp_path, source.parent, source.parent / "governed.parquet")

        assert _bytes(source.parent) == before

    def test_an_output_that_is_a_link_to_the_input_is_refused(self, tmp_path: Path):
        source = self._source(tmp_path)
        link = tmp_path / "governed.parquet"
        link.symlink_to(source)
        before = source.read_bytes()

        with pytest.raises(OutputPathError):
            _govern(tmp_path, source, link)

        assert source.read_bytes() == before and link.is_symlink()

    def test_a_file_given_twice_is_refused(self, tmp_path: Path):
        source = self._source(tmp_path)
        (source.parent / "x").mkdir()
        again = source.parent / "x" / ".." / source.name

        with pytest.raises(SourceDatasetError, match="more than once"):
            _govern(tmp_path, [source, again], tmp_path / "governed.parquet")

    def test_a_link_to_a_listed_file_is_the_same_file(self, tmp_path: Path):
        source = self._source(tmp_path)
        link = tmp_path / "alias.parquet"
        link.symlink_to(source)

        with pytest.raises(SourceDatasetError, match="more than once"):
            _govern(tmp_path, [source, link], tmp_path / "governed.parquet")


class TestPartitionFolderNames:
    @pytest.mark.parametrize(
        ("name", "safe"),
        [
            # the rule: no separator, no '..', no '=', no control character or NUL, no leading dot
            ("VISIT_YEAR", True),
            ("visit year", True),
            ("../../X", False),
            ("a/b", False),
            ("a\\b", False),
            ("..", False),
            ("a..b", False),
            ("A=B", False),
            (".hidden", False),
            ("x\x00", False),
            ("x\ny", False),
            ("", False),
        ],
    )
    def test_which_names_may_name_folders(self, name: str, safe: bool):
        assert (folder_name_problem(name) is None) is safe

    def test_a_climbing_partition_column_is_refused_and_writes_nothing_outside(self, tmp_path: Path):
        source = tmp_path / "visits.parquet"
        pq.write_table(_table(), source)
        output = tmp_path / "a" / "b" / "governed"

        result = _govern(tmp_path, source, output, partition_by=["../../X"])

        assert result.report.verdict is Verdict.REFUSED
        assert {refusal.error for refusal in result.refusals} == {PartitionNotPermittedError}
        assert set(os.listdir(tmp_path)) <= {"visits.parquet", "consent.csv", "a"}
        assert not output.exists()


class TestErrorsNameNoPartitionValue:
    def _hive(self, tmp_path: Path) -> Path:
        source = tmp_path / "visits"
        (source / "SSN=123-45-6789").mkdir(parents=True)
        (source / f"SSN={SSN}").mkdir()
        pq.write_table(_table(20), source / "SSN=123-45-6789" / "part.parquet")
        return source

    def test_a_dangling_file_is_named_by_the_source_root(self, tmp_path: Path):
        source = self._hive(tmp_path)
        (source / f"SSN={SSN}" / "part.parquet").symlink_to(tmp_path / "gone.parquet")

        with pytest.raises(FileNotFoundError) as raised:
            _govern(tmp_path, source, tmp_path / "governed.parquet")

        assert SSN not in str(raised.value) and "123-45-6789" not in str(raised.value)
        assert str(source) in str(raised.value)

    def test_a_file_gone_mid_read_is_a_retryable_error_that_names_the_source_root(
        self, tmp_path: Path, monkeypatch, caplog
    ):
        from airflow_phi_guard.engine import executor

        source = self._hive(tmp_path)
        part = source / f"SSN={SSN}" / "part.parquet"
        pq.write_table(_table(20), part)
        planned = executor.make_plan

        def plan_then_break_the_link(*arguments):
            # the source is open and its files listed: the file becomes a dangling link before it is read
            part.unlink()
            part.symlink_to(tmp_path / "gone.parquet")
            return planned(*arguments)

        monkeypatch.setattr(executor, "make_plan", plan_then_break_the_link)
        caplog.set_level(logging.DEBUG)

        # SSN, the partition key of the source, is declared: the run reaches the rows
        policy = _policy(extra="  SSN: {treatment: drop, justification: 'not needed'}\n")

        with pytest.raises(DataProcessingError) as raised:
            _govern(tmp_path, source, tmp_path / "governed.parquet", policy)

        error = raised.value
        assert error.retryable
        assert error.source == str(source)
        assert error.cause in {"FileNotFoundError", "OSError"}
        chain, link = [], error
        while link is not None:
            chain.append(link)
            link = link.__cause__ or link.__context__
        texts = [str(link) for link in chain] + [repr(link.args) for link in chain]
        texts += [str(getattr(link, "filename", "")) for link in chain]
        texts += [record.getMessage() for record in caplog.records]
        assert not [text for text in texts if SSN in text]

    def test_a_corrupt_file_is_named_by_the_source_root(self, tmp_path: Path):
        source = self._hive(tmp_path)
        (source / f"SSN={SSN}" / "part.parquet").write_bytes(b"not parquet at all")

        with pytest.raises(DataProcessingError) as raised:
            _govern(tmp_path, source, tmp_path / "governed.parquet")

        assert SSN not in str(raised.value)

    def test_the_command_line_prints_no_partition_value(self, tmp_path: Path, monkeypatch, capsys):
        monkeypatch.setenv("PHI_GUARD_PSEUDONYM_KEY", KEY.decode())
        source = self._hive(tmp_path)
        (source / f"SSN={SSN}" / "part.parquet").symlink_to(tmp_path / "gone.parquet")
        policy = tmp_path / "policy.yaml"
        fields = {"method": "expert-determination", "record": RECORDS["expert-determination"], "risk": ""}
        extra = "  SSN: {treatment: drop, justification: 'not needed'}\n"
        policy.write_text(POLICY % {**fields, "zip": "zip3, as: ZIP3", "extra": extra})

        status = main(
            [
                *("apply", "--policy", str(policy), "--consent", str(_consent(tmp_path))),
                *("--as-of", AS_OF.isoformat(), "--input", str(source)),
                *("--output", str(tmp_path / "governed.parquet")),
            ]
        )

        printed = capsys.readouterr()
        assert status != 0
        assert "error" in printed.err
        assert SSN not in printed.err + printed.out


class TestPartitionFoldersHoldEnoughPeople:
    """Each folder name must stand for at least k_min distinct subjects (11 without risk thresholds)."""

    def _source(self, tmp_path: Path, holders: int) -> Path:
        # Every visit has dose 10, except that the first ``holders`` admitted subjects also got dose 999.
        table = _table(130)
        rare = [subject for subject in SUBJECTS if subject != "p-11"][:holders]
        extra = _table(len(rare)).set_column(0, "PATIENT", pa.array(rare))
        table = pa.concat_tables([table, extra]).set_column(
            3, "DOSE_MG", pa.array([10] * 130 + [999] * len(rare), pa.int64())
        )
        source = tmp_path / "visits.parquet"
        pq.write_table(table, source)
        return source

    @pytest.mark.parametrize(("holders", "published"), [(11, True), (10, False)])
    def test_without_risk_thresholds_each_folder_needs_eleven_people(self, tmp_path, holders, published):
        output = tmp_path / "governed"

        result = _govern(tmp_path, self._source(tmp_path, holders), output, partition_by=["DOSE_MG"])

        assert result.report.published is published, result.refusals
        if not published:
            assert {refusal.error for refusal in result.refusals} == {PartitionNotPermittedError}
            assert not output.exists()
            assert os.listdir(tmp_path / ".") and not any(".tmp" in name for name in os.listdir(tmp_path))

    @pytest.mark.parametrize(("holders", "published"), [(2, True), (1, False)])
    def test_with_risk_thresholds_each_folder_needs_k_min_people(self, tmp_path, holders, published):
        policy = _policy(risk=RISK)

        result = _govern(
            tmp_path, self._source(tmp_path, holders), tmp_path / "governed", policy, partition_by=["DOSE_MG"]
        )

        assert result.report.published is published, result.refusals

    def test_rows_of_one_person_count_once(self, tmp_path: Path):
        # 40 visits of one consented person with the rare dose: one person, however many rows
        table = _table(130)
        extra = _table(40).set_column(0, "PATIENT", pa.array(["p-0"] * 40))
        table = pa.concat_tables([table, extra]).set_column(
            3, "DOSE_MG", pa.array([10] * 130 + [999] * 40, pa.int64())
        )
        source = tmp_path / "visits.parquet"
        pq.write_table(table, source)

        result = _govern(tmp_path, source, tmp_path / "governed", partition_by=["DOSE_MG"], batch_rows=16)

        assert {refusal.error for refusal in result.refusals} == {PartitionNotPermittedError}
        assert CANARY_ZIP not in " ".join(refusal.message for refusal in result.refusals)


class TestNoRowUnderARiskGate:
    def _revoked(self, tmp_path: Path) -> Path:
        registry = tmp_path / "revoked.csv"
        registry.write_text(
            "subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference\n"
            + "".join(
                f"{subject},research-authorization,model-training,2020-01-01,,2021-01-01,AUTH-{number}\n"
                for number, subject in enumerate(SUBJECTS)
            )
        )
        return registry

    def test_no_row_left_cannot_prove_k_and_is_refused(self, tmp_path: Path):
        from airflow_phi_guard.engine.executor import govern

        source = tmp_path / "visits.parquet"
        pq.write_table(_table(), source)
        output = tmp_path / "governed.parquet"

        result = govern(
            _policy(risk=RISK),
            source,
            output,
            consent=self._revoked(tmp_path),
            as_of=AS_OF,
            pseudonym_key=KEY,
        )

        assert result.report.verdict is Verdict.REFUSED
        assert {refusal.error for refusal in result.refusals} == {ReidentificationRiskError}
        assert not output.exists()

    def test_every_row_suppressed_is_refused(self, tmp_path: Path):
        source = tmp_path / "visits.parquet"
        pq.write_table(_table(), source)
        policy = _policy(risk="  quasi_identifiers: [VISIT_YEAR]\n  k_min: 500\n  below_k: suppress")

        result = _govern(tmp_path, source, tmp_path / "governed.parquet", policy)

        assert result.report.verdict is Verdict.REFUSED
        assert ReidentificationRiskError in {refusal.error for refusal in result.refusals}


class TestStaleStaging:
    def test_a_killed_runs_staging_is_removed_and_nothing_else(self, tmp_path: Path):
        source = tmp_path / "in" / "visits.parquet"
        source.parent.mkdir()
        pq.write_table(_table(), source)
        out = tmp_path / "out"
        out.mkdir()
        ours = [
            out / f".governed.{uuid.uuid4().hex}.tmp",
            out / f".governed.{uuid.uuid4().hex}.tmp.suppressed",
            out / f".governed.{uuid.uuid4().hex}.replaced",
        ]
        for path in ours:
            path.write_bytes(b"rows that never passed")
        staged_folder = out / f".governed.{uuid.uuid4().hex}.tmp.partitions"
        (staged_folder / "VISIT_YEAR=2019").mkdir(parents=True)
        (staged_folder / "VISIT_YEAR=2019" / "part-0.parquet").write_bytes(b"x")
        others = [
            out / f".other.{uuid.uuid4().hex}.tmp",
            out / ".governed.not-a-uuid.tmp",
            out / f"governed.{uuid.uuid4().hex}.tmp",
            out / "notes.txt",
        ]
        for path in others:
            path.write_bytes(b"keep")

        result = _govern(tmp_path, source, out / "governed")

        assert result.report.published, result.refusals
        assert sorted(os.listdir(out)) == sorted(["governed", *(path.name for path in others)])


@pytest.mark.parametrize(
    ("error", "hidden"),
    [
        # pyarrow's own FileNotFoundError: the whole message, path included, is its strerror
        (FileNotFoundError(f"Failed to open local file '/data/SSN={SSN}/part.parquet'"), SSN),
        (OSError(5, "Input/output error", f"/data/SSN={SSN}/part.parquet"), SSN),
    ],
)
def test_the_command_line_prints_no_path_below_a_partition_folder(monkeypatch, capsys, error, hidden):
    import airflow_phi_guard.cli as cli

    def failing(arguments, console):
        raise error

    monkeypatch.setattr(cli, "_parser", lambda: _Parser(failing))

    assert main([]) != 0
    assert hidden not in capsys.readouterr().err


class _Parser:
    def __init__(self, run):
        self.run = run

    def parse_args(self, argv):
        import argparse

        return argparse.Namespace(run=self.run)
