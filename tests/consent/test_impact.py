"""Revocation impact from lineage events, subject manifests and the registry as it is now.

Expected counts come from the README's admission rules applied by hand: a revocation takes effect from its
date on (``as_of < revoked_at`` admits), an opt-out in force excludes, an expiry ends a grant on its date,
and a subject the registry no longer holds has no record. The events are the real ones: each run goes
through the engine and the lineage builder and is appended with the OpenLineage client's file transport.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.consent.impact import ImpactStatus, render_json, render_text, revocation_impact
from airflow_phi_guard.consent.sources import read_consent_registry
from airflow_phi_guard.engine.executor import govern
from airflow_phi_guard.lineage.audit import read_events
from airflow_phi_guard.lineage.build import lineage_for_report
from airflow_phi_guard.lineage.emit import DEFAULT_JOB_NAMESPACE, emit_event, new_run_id
from airflow_phi_guard.policy import parse_policy
from tests.lineage.openlineage_validation import validate_event

RUN_AS_OF = date(2026, 12, 1)
PSEUDONYM_KEY = b"pseudonym-key-not-a-secret-0123456789abcdef"
MANIFEST_KEY = b"manifest-key-not-a-secret-0123456789abcdefgh"
OTHER_KEY = b"another-manifest-key-not-a-secret-0123456789"

POLICY = """\
name: impact-test
version: 1
purpose: model-training
model: {name: impact-model, version: "%(version)s"}
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

HEADER = "subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference\n"

#: At the run (2026-12-01) the rules admit A, B, F, G and H; C was revoked before the run.
REGISTRY_AT_RUN = HEADER + (
    "CANARY-A,research-authorization,model-training,2020-01-01,,,CANARY-REF-A\n"
    "CANARY-B,irb-waiver,model-training,2021-01-01,,,CANARY-REF-B\n"
    "CANARY-C,research-authorization,model-training,2020-01-01,,2026-06-01,CANARY-REF-C\n"
    "CANARY-F,research-authorization,model-training,2020-01-01,2027-01-01,,CANARY-REF-F\n"
    "CANARY-G,research-authorization,model-training,2020-01-01,,,CANARY-REF-G\n"
    "CANARY-H,irb-waiver,model-training,2020-01-01,,,CANARY-REF-H\n"
)

#: Later: A revokes on 2027-01-05, B opts out on 2027-01-02, F's grant expired on 2027-01-01 as it said,
#: G was deleted from the registry, H is unchanged.
REGISTRY_LATER = HEADER + (
    "CANARY-A,research-authorization,model-training,2020-01-01,,2027-01-05,CANARY-REF-A\n"
    "CANARY-B,irb-waiver,model-training,2021-01-01,,,CANARY-REF-B\n"
    "CANARY-B,opt-out,,2027-01-02,,,CANARY-REF-B2\n"
    "CANARY-C,research-authorization,model-training,2020-01-01,,2026-06-01,CANARY-REF-C\n"
    "CANARY-F,research-authorization,model-training,2020-01-01,2027-01-01,,CANARY-REF-F\n"
    "CANARY-H,irb-waiver,model-training,2020-01-01,,,CANARY-REF-H\n"
)

SUBJECTS = ["CANARY-A", "CANARY-B", "CANARY-C", "CANARY-F", "CANARY-G", "CANARY-H", "CANARY-A"]
CANARIES = {*SUBJECTS, *(f"CANARY-REF-{letter}" for letter in "ABCFGH"), "CANARY-NOTE"}


class Lineage:
    """A folder of runs and the event log they append to."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.events = root / "events.jsonl"
        source = root / "source.parquet"
        root.mkdir(parents=True, exist_ok=True)
        notes = [f"CANARY-NOTE stable {n}" for n in range(len(SUBJECTS))]
        pq.write_table(pa.table({"PATIENT": SUBJECTS, "NOTE": notes}), source)
        self.source = source

    def registry(self, text: str, name: str = "consent.csv") -> Path:
        path = self.root / name
        path.write_text(text, encoding="utf-8")
        return path

    def run(
        self,
        output: str,
        *,
        registry: str = REGISTRY_AT_RUN,
        as_of: date = RUN_AS_OF,
        manifest_key: bytes | None = MANIFEST_KEY,
        pseudonym_key: bytes | None = PSEUDONYM_KEY,
        version: str = "1",
    ):
        policy = parse_policy(POLICY % {"version": version})
        result = govern(
            policy,
            self.source,
            self.root / output,
            consent=self.registry(registry, f"{output}.consent.csv"),
            as_of=as_of,
            pseudonym_key=pseudonym_key,
            manifest_key=manifest_key,
        )
        lineage = lineage_for_report(
            result.report, policy, input_schema=result.plan.schema, output_schema=result.output_schema
        )
        emit_event(
            "COMPLETE" if result.report.published else "FAIL",
            lineage,
            events_path=self.events,
            job_namespace=DEFAULT_JOB_NAMESPACE,
            job_name=f"apply.{policy.name}",
            run_id=new_run_id(),
        )
        return result

    def impact(self, as_of: date, *, registry: str = REGISTRY_LATER, key: bytes | None = MANIFEST_KEY):
        registry_path = self.registry(registry, "consent-now.csv")
        return revocation_impact(
            read_events(self.events), read_consent_registry(registry_path), as_of, manifest_key=key
        )


@pytest.fixture
def lineage(tmp_path: Path) -> Lineage:
    return Lineage(tmp_path)


@pytest.mark.parametrize(
    ("as_of", "still_admitted", "excluded"),
    [
        # before any dated change took effect, only G's deletion counts: it has no record at any date
        (date(2026, 12, 31), 4, {"no-record": 1}),
        # F expired on 2027-01-01, B's opt-out is in force from 2027-01-02, A's revocation is not yet
        # (as_of < revoked_at), and G has no record at any date
        (date(2027, 1, 3), 2, {"no-record": 1, "expired": 1, "opted-out": 1}),
        # A's revocation takes effect on its date
        (date(2027, 1, 5), 1, {"no-record": 1, "expired": 1, "revoked": 1, "opted-out": 1}),
    ],
)
def test_counts_the_run_s_subjects_the_registry_now_excludes_by_reason(
    lineage, as_of, still_admitted, excluded
):
    lineage.run("governed.parquet")
    answer = lineage.impact(as_of)
    (run,) = answer.runs
    assert run.status is ImpactStatus.ANSWERED
    # C was not admitted by the run, so its revocation concerns no run
    assert run.subjects == 5
    assert run.still_admitted == still_admitted
    assert run.excluded == excluded
    (model,) = answer.models
    assert (model.model.name, model.model.version) == ("impact-model", "1")
    assert model.affected_runs == 1


def test_each_run_is_judged_on_its_own_manifest(lineage):
    # the second run, at 2027-01-06 under the later registry, admits only H
    lineage.run("first.parquet", version="1")
    lineage.run("second.parquet", registry=REGISTRY_LATER, as_of=date(2027, 1, 6), version="2")
    answer = lineage.impact(date(2027, 1, 6))
    by_version = {run.model.version: run for run in answer.runs}
    assert by_version["1"].excluded == {"no-record": 1, "expired": 1, "revoked": 1, "opted-out": 1}
    assert (by_version["2"].subjects, by_version["2"].still_admitted, by_version["2"].excluded) == (1, 1, {})
    assert {(m.model.version, m.affected_runs) for m in answer.models} == {("1", 1), ("2", 0)}


def test_a_refused_run_is_no_run_of_the_answer(lineage):
    lineage.run("refused.parquet", pseudonym_key=None)
    assert lineage.impact(date(2027, 1, 5)).runs == []


class TestUnanswered:
    def test_a_run_without_manifest_is_listed_as_unanswered_never_as_unaffected(self, lineage):
        lineage.run("governed.parquet", manifest_key=None)
        (run,) = lineage.impact(date(2027, 1, 5)).runs
        assert run.status is ImpactStatus.NO_MANIFEST
        assert (run.subjects, run.affected, run.excluded) == (None, None, {})

    def test_a_changed_manifest_is_an_error(self, lineage):
        result = lineage.run("governed.parquet")
        path = Path(result.report.manifest.path)
        table = pq.read_table(path)
        pq.write_table(table.slice(1), path)
        (run,) = lineage.impact(date(2027, 1, 5)).runs
        assert run.status is ImpactStatus.MANIFEST_UNAVAILABLE
        assert "changed since the run" in run.problem

    def test_a_manifest_replaced_by_a_later_run_at_the_same_output_is_an_error_for_the_earlier(self, lineage):
        lineage.run("governed.parquet")
        lineage.run("governed.parquet", registry=REGISTRY_LATER, as_of=date(2027, 1, 6))
        first, second = sorted(lineage.impact(date(2027, 1, 6)).runs, key=lambda run: run.event_time)
        assert first.status is ImpactStatus.MANIFEST_UNAVAILABLE
        assert second.status is ImpactStatus.ANSWERED

    def test_a_deleted_manifest_is_an_error(self, lineage):
        Path(lineage.run("governed.parquet").report.manifest.path).unlink()
        (run,) = lineage.impact(date(2027, 1, 5)).runs
        assert run.status is ImpactStatus.MANIFEST_UNAVAILABLE
        assert "does not exist" in run.problem

    @pytest.mark.parametrize(
        ("key", "status"), [(None, ImpactStatus.NO_KEY), (OTHER_KEY, ImpactStatus.KEY_MISMATCH)]
    )
    def test_without_the_run_s_key_the_run_is_not_answered(self, lineage, key, status):
        # hashing the registry with another key would find nobody and call everyone no-record
        lineage.run("governed.parquet")
        (run,) = lineage.impact(date(2027, 1, 5), key=key).runs
        assert run.status is status


def test_events_with_the_manifest_validate_against_the_official_and_shipped_schemas(lineage):
    result = lineage.run("governed.parquet")
    (event,) = read_events(lineage.events)
    assert validate_event(event) is not None
    manifest = event["run"]["facets"]["phiGuard_consent"]["manifest"]
    assert manifest == {
        "location": {"namespace": "file", "name": result.report.manifest.path},
        "digest": result.report.manifest.digest,
        "keyFingerprint": result.report.manifest.key_fingerprint,
        "subjects": 5,
        "subjectIds": {"uuidCase": "fold", "digits": "text"},
    }


def test_no_id_or_reference_reaches_the_events_or_the_answer(lineage):
    lineage.run("governed.parquet")
    lineage.run("plain.parquet", manifest_key=None)
    answer = lineage.impact(date(2027, 1, 5))
    texts = [lineage.events.read_text(encoding="utf-8"), render_text(answer), render_json(answer)]
    for text in texts:
        for canary in CANARIES:
            assert canary not in text
    assert "revoked" in texts[1]


def test_impact_judges_by_the_rules_the_run_admitted_with(tmp_path):
    # The run matched lower-case dataset UUIDs to upper-case registry ones (uuid_case: fold, the default)
    # and accepted HRESCH records as covering model-training (purposes_covering). Judged by any other rule,
    # impact would call both subjects no-record or purpose-not-covered; by the run's, one revoked.
    first, second = "3F2B8C1E-4D5A-4B6C-8D7E-9F0A1B2C3D4E", "9E8D7C6B-5A49-4382-9170-6F5E4D3C2B1A"
    policy = parse_policy(
        (POLICY % {"version": "1"}).replace(
            "  bases: [research-authorization, irb-waiver]",
            "  bases: [research-authorization, irb-waiver]\n  purposes_covering: [HRESCH]",
        )
    )
    source = tmp_path / "source.parquet"
    pq.write_table(pa.table({"PATIENT": [first.lower(), second.lower()], "NOTE": ["a", "b"]}), source)
    at_run = HEADER + (
        f"{first},research-authorization,HRESCH,2020-01-01,,,\n{second},research-authorization,HRESCH,2020-01-01,,,\n"
    )
    (tmp_path / "consent.csv").write_text(at_run, encoding="utf-8")
    result = govern(
        policy,
        source,
        tmp_path / "governed.parquet",
        consent=tmp_path / "consent.csv",
        as_of=RUN_AS_OF,
        pseudonym_key=PSEUDONYM_KEY,
        manifest_key=MANIFEST_KEY,
    )
    assert result.report.rows.admitted == 2
    events = tmp_path / "events.jsonl"
    emit_event(
        "COMPLETE",
        lineage_for_report(result.report, policy, input_schema=result.plan.schema),
        events_path=events,
        job_namespace=DEFAULT_JOB_NAMESPACE,
        job_name="apply.impact-test",
        run_id=new_run_id(),
    )
    later = tmp_path / "later.csv"
    later.write_text(
        at_run.replace(
            f"{second},research-authorization,HRESCH,2020-01-01,,,",
            f"{second},research-authorization,HRESCH,2020-01-01,,2027-01-02,",
        ),
        encoding="utf-8",
    )

    (run,) = revocation_impact(
        read_events(events), read_consent_registry(later), date(2027, 1, 3), manifest_key=MANIFEST_KEY
    ).runs

    assert (run.status, run.subjects, run.still_admitted, run.excluded) == (
        ImpactStatus.ANSWERED,
        2,
        1,
        {"revoked": 1},
    )
