"""``phi-guard apply`` with the de-identification of issue 5: the surrogate mapping options, the date
shift key variable, and what the command prints (the Safe Harbor verdict with its notice, and k)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.cli import main
from tests.engine.test_deidentification import (
    BIRTHS,
    CONSENT,
    EXPERT_DETERMINATION,
    INCOMES,
    SAFE_HARBOR,
    SUBJECTS,
    ZIPS,
    policy_text,
    safe_harbor_columns,
    source,
)

#: The variable the issue names for the date shift key, spelled out so that a rename fails here.
DATE_SHIFT_KEY_VARIABLE = "PHI_GUARD_DATE_SHIFT_KEY"


def _apply(tmp_path: Path, text: str, capsys, *options: str) -> tuple[int, str, str]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    consent = tmp_path / "consent.csv"
    consent.write_text(CONSENT)
    table = source(tmp_path, BIRTHDATE=BIRTHS, ZIP=ZIPS, INCOME=INCOMES)
    arguments = [
        "apply",
        "--policy",
        str(policy),
        "--input",
        str(table),
        "--output",
        str(tmp_path / "out.parquet"),
    ]
    arguments += [
        "--consent",
        str(consent),
        "--as-of",
        "2026-12-01",
        "--report",
        str(tmp_path / "report.json"),
    ]
    capsys.readouterr()
    code = main([*arguments, *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _safe_harbor(risk: str = "") -> str:
    return policy_text(SAFE_HARBOR + risk, safe_harbor_columns())


def test_a_parquet_mapping_publishes_and_the_verdict_is_printed_with_its_notice(tmp_path: Path, capsys):
    mapping = tmp_path / "private" / "mapping.parquet"

    code, out, err = _apply(tmp_path, _safe_harbor(), capsys, "--surrogate-mapping", str(mapping))

    assert code == 0, err
    assert "Safe Harbor: met" in out and "not legal advice" in out
    assert pq.read_table(mapping).num_rows == len(SUBJECTS)
    for subject in SUBJECTS:
        assert subject not in out + err + (tmp_path / "report.json").read_text()


def test_k_is_printed(tmp_path: Path, capsys):
    code, out, err = _apply(
        tmp_path,
        _safe_harbor("\n  quasi_identifiers: [STATE]\n  k_min: 2\n  below_k: suppress"),
        capsys,
        "--surrogate-mapping",
        str(tmp_path / "mapping.parquet"),
    )

    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0, err
    # STATE by row: NE x10, NY, MA: NY and MA are classes of one row, suppressed under k_min 2
    assert report["risk"]["k"] == 10 and report["risk"]["suppressed_rows"] == 2
    assert "k 10 (k_min 2)" in out and "2 row(s) suppressed" in out


def test_a_sql_mapping_needs_its_table(tmp_path: Path, capsys, postgres_url):
    code, _out, err = _apply(tmp_path, _safe_harbor(), capsys, "--surrogate-mapping", postgres_url)

    assert code == 1
    assert "--surrogate-mapping-table" in err


def test_a_sql_mapping_publishes(tmp_path: Path, capsys, postgres_schema):
    table = f"{postgres_schema.name}.cli_mapping"

    code, _out, err = _apply(
        tmp_path,
        _safe_harbor(),
        capsys,
        "--surrogate-mapping",
        postgres_schema.url,
        "--surrogate-mapping-table",
        table,
    )

    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["surrogate_mapping"]["store"].endswith(f"table {table}")
    assert report["surrogate_mapping"]["committed"] is True


@pytest.mark.parametrize(("key", "code"), [(None, 3), ("k" * 31, 3), ("k" * 32, 0)])
def test_the_date_shift_key_comes_from_its_variable(tmp_path: Path, capsys, monkeypatch, key, code):
    if key is None:
        monkeypatch.delenv(DATE_SHIFT_KEY_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(DATE_SHIFT_KEY_VARIABLE, key)
    columns = {
        "PATIENT": 'treatment: drop, justification: "x"',
        "BIRTHDATE": 'treatment: date-shift, justification: "x"',
        "ZIP": 'treatment: drop, justification: "x"',
        "INCOME": 'treatment: drop, justification: "x"',
    }
    text = policy_text(f"{EXPERT_DETERMINATION}\n  date_shift_window_days: 10", columns)

    exit_code, out, err = _apply(tmp_path, text, capsys)

    assert exit_code == code, err
    if code == 3:
        assert DATE_SHIFT_KEY_VARIABLE in err
    else:
        assert "Safe Harbor: not-met: BIRTHDATE (C)" in out
    if key:
        assert key not in out + err + (tmp_path / "report.json").read_text()
