"""The subject manifest of a published run: keyed hashes of exactly the admitted subjects, beside the output,
published with it or not at all, and pinned by its digest.

Expected values come from issue 4 ("each published run stores a manifest of its admitted subjects as keyed
hashes (HMAC, with a key separate from the pseudonym key), beside its output") and from the admission
rules of the README's consent section, applied by hand to the registry below.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.consent import manifest
from airflow_phi_guard.engine import executor
from airflow_phi_guard.engine.executor import govern
from airflow_phi_guard.exceptions import ManifestKeyError, SubjectManifestError
from airflow_phi_guard.policy import parse_policy
from airflow_phi_guard.report import Verdict

AS_OF = date(2026, 12, 1)
PSEUDONYM_KEY = b"pseudonym-key-not-a-secret-0123456789abcdef"
MANIFEST_KEY = b"manifest-key-not-a-secret-0123456789abcdefgh"
#: The label the manifest prefixes to every id, spelled out so that a change to the hash fails here.
LABEL = b"airflow-phi-guard subject manifest v1\x00"

POLICY = """\
name: manifest-test
version: 1
purpose: model-training
model: {name: manifest-model, version: "1"}
recipient: internal-ml-platform
subject: PATIENT
consent:
  bases: [research-authorization, irb-waiver]
deidentification:
  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD (biostatistics)"
    determined: 2000-01-01
    report: ED-TEST-1
    expires: 2099-01-01
columns:
  PATIENT: {treatment: pseudonymize, as: PATIENT_KEY, justification: "split by patient"}
  NOTE:    {treatment: keep, justification: "free text, scanned"}
"""

#: At AS_OF (2026-12-01) the README's rules admit CANARY-ID-A (research authorization) and CANARY-ID-B
#: (IRB waiver); CANARY-ID-C is revoked on AS_OF, CANARY-ID-D opted out, CANARY-ID-E has no record.
CONSENT = """\
subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference
CANARY-ID-A,research-authorization,model-training,2020-01-01,,,CANARY-REF-A
CANARY-ID-B,irb-waiver,model-training,2021-01-01,,,CANARY-REF-B
CANARY-ID-C,research-authorization,model-training,2020-01-01,,2026-12-01,CANARY-REF-C
CANARY-ID-D,research-authorization,model-training,2020-01-01,,,CANARY-REF-D
CANARY-ID-D,opt-out,,2026-06-01,,,CANARY-REF-D2
"""
ADMITTED = ("CANARY-ID-A", "CANARY-ID-B")

#: Two encounters of A (one with blanks around the id, which the admission trims), one each of the others.
SUBJECTS = ["CANARY-ID-A", " CANARY-ID-A ", "CANARY-ID-B", "CANARY-ID-C", "CANARY-ID-D", "CANARY-ID-E"]
CANARIES = {*{subject.strip() for subject in SUBJECTS}, "CANARY-REF-A", "CANARY-REF-B", "CANARY-NOTE"}


def _expected_hash(subject: str, key: bytes = MANIFEST_KEY) -> bytes:
    return hmac.new(key, LABEL + subject.encode(), hashlib.sha256).digest()


def _inputs(tmp_path: Path, consent: str = CONSENT) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "source.parquet"
    pq.write_table(
        pa.table({"PATIENT": SUBJECTS, "NOTE": [f"CANARY-NOTE stable {n}" for n in range(len(SUBJECTS))]}),
        source,
    )
    registry = tmp_path / "consent.csv"
    registry.write_text(consent, encoding="utf-8")
    return source, registry


def _govern(tmp_path: Path, *, manifest_key: bytes | None = MANIFEST_KEY, **options):
    source, registry = _inputs(tmp_path)
    output = tmp_path / "governed" / "training.parquet"
    result = govern(
        parse_policy(POLICY),
        source,
        output,
        consent=registry,
        as_of=AS_OF,
        pseudonym_key=options.pop("pseudonym_key", PSEUDONYM_KEY),
        manifest_key=manifest_key,
        **options,
    )
    return result, output


def _hashes(path: Path) -> list[bytes]:
    return pq.read_table(path).column(0).to_pylist()


UUID = "3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e"


class TestContent:
    def test_the_manifest_is_beside_the_output_and_named_after_it(self, tmp_path):
        result, output = _govern(tmp_path)
        assert result.report.verdict is Verdict.PUBLISHED
        path = output.with_name("training.parquet.subjects.parquet")
        assert manifest.manifest_path(output) == path
        assert path.exists()
        assert result.report.manifest.path == str(path)

    def test_it_holds_one_sorted_column_of_the_keyed_hashes_of_exactly_the_admitted_subjects(self, tmp_path):
        _result, output = _govern(tmp_path)
        table = pq.read_table(manifest.manifest_path(output))
        assert table.column_names == [manifest.MANIFEST_COLUMN]
        assert table.schema.field(0).type == pa.binary(32)
        # HMAC-SHA256 under the manifest key; A's two encounters (one with blanks) are one subject
        assert _hashes(manifest.manifest_path(output)) == sorted(_expected_hash(s) for s in ADMITTED)

    def test_the_report_pins_the_file_by_its_sha256_and_the_key_by_a_fingerprint(self, tmp_path):
        result, output = _govern(tmp_path)
        record = result.report.manifest
        content = manifest.manifest_path(output).read_bytes()
        assert record.digest == "sha256:" + hashlib.sha256(content).hexdigest()
        label = b"airflow-phi-guard manifest key fingerprint v1"
        assert record.key_fingerprint == hmac.new(MANIFEST_KEY, label, hashlib.sha256).hexdigest()[:16]
        assert record.subjects == len(ADMITTED)

    def test_manifest_hashes_are_not_the_pseudonyms_even_under_the_same_key(self):
        ids = pa.array(["CANARY-ID-A"])
        pseudonym = hmac.new(MANIFEST_KEY, b"CANARY-ID-A", hashlib.sha256).digest()
        assert manifest.hash_subjects(ids, MANIFEST_KEY).to_pylist() != [pseudonym]

    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            # the admission's normalisation: trimmed text, integers as their decimal text, UUIDs in
            # lower case by default, blanks left out
            (pa.array([" p1 ", "p1", "p2"]), ["p1", "p2"]),
            (pa.array([123, 123]), ["123"]),
            (pa.array(["", "  ", None, "p3"]), ["p3"]),
            (pa.array([UUID.upper(), UUID]), [UUID]),
        ],
    )
    def test_ids_are_normalised_as_the_admission_compares_them(self, values, expected):
        assert sorted(manifest.normalise_subject_ids(values).to_pylist()) == expected

    def test_the_normalisation_recorded_with_the_manifest_is_the_policys(self, tmp_path):
        result, _output = _govern(tmp_path)
        assert result.report.manifest.subject_ids == result.plan.policy.consent.subject_ids

    def test_many_batches_give_the_manifest_of_one(self, tmp_path):
        _one, output = _govern(tmp_path / "one")
        _many, outputs = _govern(tmp_path / "many", batch_rows=1)
        assert _hashes(manifest.manifest_path(output)) == _hashes(manifest.manifest_path(outputs))


class TestPublishedTogetherOrNotAtAll:
    def test_without_a_key_the_run_publishes_without_manifest_and_the_report_says_so(self, tmp_path, caplog):
        with caplog.at_level(logging.WARNING):
            result, output = _govern(tmp_path, manifest_key=None)
        assert result.report.verdict is Verdict.PUBLISHED
        assert output.exists()
        assert not manifest.manifest_path(output).exists()
        assert result.report.manifest is None
        assert json.loads(result.report.to_json())["manifest"] is None
        assert "no subject manifest" in caplog.text

    def test_a_run_without_a_key_withdraws_the_manifest_of_the_set_it_replaces(self, tmp_path):
        _govern(tmp_path)
        _result, output = _govern(tmp_path, manifest_key=None)
        assert not manifest.manifest_path(output).exists()

    def test_a_refused_run_leaves_neither_output_nor_manifest_even_from_an_earlier_run(self, tmp_path):
        _first, output = _govern(tmp_path)
        assert manifest.manifest_path(output).exists()
        refused, _ = _govern(tmp_path, pseudonym_key=None)
        assert refused.report.verdict is Verdict.REFUSED
        assert refused.report.manifest is None
        assert sorted(path.name for path in output.parent.iterdir()) == []

    def test_a_report_that_cannot_be_written_withdraws_both(self, tmp_path):
        result, output = _govern(tmp_path)
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the report's folder should be")
        with pytest.raises(FileExistsError):
            result.write_report(blocker / "report.json")
        assert sorted(path.name for path in output.parent.iterdir()) == []

    def test_an_output_that_cannot_be_renamed_into_place_takes_its_manifest_with_it(
        self, tmp_path, monkeypatch
    ):
        real_replace = os.replace

        def replace(source, target):
            if Path(target).name == "training.parquet":
                raise PermissionError(13, "Permission denied", str(target))
            real_replace(source, target)

        monkeypatch.setattr(executor.os, "replace", replace)
        with pytest.raises(PermissionError):
            _govern(tmp_path)
        assert sorted(path.name for path in (tmp_path / "governed").iterdir()) == []

    @pytest.mark.parametrize(
        ("key", "named"),
        [
            # a short key could be found from the hashes of known ids (as for the pseudonym key)
            (b"short-manifest-key", "shorter than 32 bytes"),
            # the issue: a key separate from the pseudonym key
            (PSEUDONYM_KEY, "is the pseudonym key"),
        ],
    )
    def test_a_weak_or_shared_manifest_key_refuses_the_run(self, tmp_path, key, named):
        result, output = _govern(tmp_path, manifest_key=key)
        assert result.report.verdict is Verdict.REFUSED
        with pytest.raises(ManifestKeyError, match=named):
            result.raise_for_verdict()
        assert not output.exists()
        assert not manifest.manifest_path(output).exists()


class TestReading:
    def test_a_manifest_with_its_recorded_digest_reads_back(self, tmp_path):
        result, _output = _govern(tmp_path)
        record = result.report.manifest
        hashes = manifest.read_manifest(record.path, digest=record.digest, subjects=record.subjects)
        assert sorted(hashes.to_pylist()) == sorted(_expected_hash(s) for s in ADMITTED)

    def test_a_changed_manifest_is_an_error_not_an_answer(self, tmp_path):
        result, _output = _govern(tmp_path)
        record = result.report.manifest
        # same shape, one more subject: only the digest can tell
        pq.write_table(
            pa.table(
                {manifest.MANIFEST_COLUMN: pa.array([*_hashes(Path(record.path)), b"\0" * 32], pa.binary(32))}
            ),
            record.path,
        )
        with pytest.raises(SubjectManifestError, match="changed since the run"):
            manifest.read_manifest(record.path, digest=record.digest)

    def test_a_missing_manifest_is_an_error(self, tmp_path):
        with pytest.raises(SubjectManifestError, match="does not exist"):
            manifest.read_manifest(tmp_path / "gone.subjects.parquet", digest="sha256:" + "0" * 64)

    def test_a_file_that_is_not_a_manifest_is_refused_even_with_its_digest(self, tmp_path):
        path = tmp_path / "other.parquet"
        pq.write_table(pa.table({"subject_id": ["CANARY-ID-A"]}), path)
        with pytest.raises(SubjectManifestError, match="not a manifest") as caught:
            manifest.read_manifest(path, digest=manifest.file_digest(path))
        assert "CANARY" not in str(caught.value)


def test_no_id_reaches_the_manifest_the_report_or_the_logs(tmp_path, caplog):
    with caplog.at_level(logging.DEBUG):
        result, output = _govern(tmp_path)
    content = manifest.manifest_path(output).read_bytes()
    report = result.report.to_json()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for canary in CANARIES:
        assert canary.encode() not in content
        assert canary not in report
        assert canary not in logged
