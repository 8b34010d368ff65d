"""The redaction allowlist of the phiGuard facets, through the Airflow OpenLineage provider's own redactor."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import attr
import pytest
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde

from airflow_phi_guard.lineage.build import lineage_for_report
from airflow_phi_guard.lineage.facets import (
    COLUMNS_FACET,
    CONSENT_FACET,
    DEIDENTIFICATION_FACET,
    FACET_CLASSES,
    INVENTORY_FACET,
    POLICY_FACET,
    PRODUCER,
    TRAIL_FACET,
    PhiGuardDeidentificationRunFacet,
)
from tests.lineage.conftest import make_report

#: The fields of each facet that stay redactable, because they could carry a location or free text.
#: Every other field must be on the allowlist: a new field fails the test below until someone decides.
REDACTABLE = {
    POLICY_FACET: {"refusals"},
    CONSENT_FACET: {"registry", "manifest"},
    COLUMNS_FACET: {"sourceDataset"},
    INVENTORY_FACET: {"columns"},
    DEIDENTIFICATION_FACET: {"safeHarbor", "surrogateMapping", "expertDetermination", "dataUseAgreement"},
    TRAIL_FACET: {"trail"},
}
BASE_FIELDS = {"_producer", "_schemaURL", "_deleted"}

#: A database password planted in the surrogate mapping's store location, registered as a secret.
PASSWORD = "canary-pw-7f3a9c"


def _redactor(*secrets: str):
    """The provider's redactor, made the way its adapter makes it, over a masker that knows ``secrets``."""
    from airflow.providers.openlineage.utils.utils import OpenLineageRedactor

    try:
        from airflow.sdk._shared.secrets_masker import SecretsMasker
    except ImportError:  # older task SDKs
        from airflow.sdk.execution_time.secrets_masker import SecretsMasker

    masker = SecretsMasker()
    for secret in secrets:
        masker.add_mask(secret)
    return OpenLineageRedactor.from_masker(masker)


@pytest.mark.parametrize("key", sorted(FACET_CLASSES))
def test_every_field_is_either_allowlisted_or_deliberately_redactable(key):
    cls = FACET_CLASSES[key]
    fields = {field.name for field in attr.fields(cls)} - BASE_FIELDS
    allowlisted = set(cls._additional_skip_redact)
    assert allowlisted | REDACTABLE[key] == fields
    assert not allowlisted & REDACTABLE[key]
    # the client's own allowlist is kept, not replaced
    assert {"_producer", "_schemaURL"} <= set(cls(**_minimal(key)).skip_redact)


def _minimal(key: str) -> dict:
    required = [field for field in attr.fields(FACET_CLASSES[key]) if field.default is attr.NOTHING]
    return {field.name: None for field in required}


def _event(policy) -> RunEvent:
    lineage = lineage_for_report(make_report(policy), policy)
    facets = dict(lineage.run_facets)
    facets[DEIDENTIFICATION_FACET] = PhiGuardDeidentificationRunFacet(
        method="expert-determination",
        risk={"quasiIdentifiers": ["AGE", "ZIP3"], "kMin": 5, "k": 7, "classes": 40, "uniqueShare": 0.0},
        dateShift={"windowDays": 30, "keyFingerprint": "fp-0123456789abcdef", "columns": ["START"]},
        surrogateMapping={
            "store": f"postgresql://phi:{PASSWORD}@db.internal/phi surrogate_mapping",
            "namespaces": [{"namespace": "patient", "codes": 3}],
            "committed": True,
        },
    )
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=datetime(2024, 7, 1, tzinfo=UTC).isoformat(),
        run=Run(runId="0190a0a0-0000-7000-8000-000000000000", facets=facets),
        job=Job(namespace="airflow", name="dag.govern"),
        inputs=list(lineage.inputs),
        outputs=list(lineage.outputs),
        producer=PRODUCER,
    )


def test_the_provider_s_redactor_keeps_the_allowlisted_fields_and_masks_the_rest(policy):
    """Secrets that collide with safe values (a basis name, a policy name, part of a digest) leave the
    allowlisted fields verbatim; a password in a store location is still masked."""
    event = _event(policy)
    before = Serde.to_dict(event)
    digest_part = policy.digest.removeprefix("sha256:")[8:24]
    secrets = ("irb-waiver", policy.name, digest_part, "fp-0123456789abcdef", PASSWORD)

    after = Serde.to_dict(_redactor(*secrets).redact(copy.deepcopy(event), max_depth=20))

    for key, cls in FACET_CLASSES.items():
        if key in before["run"]["facets"]:
            facet_before, facet_after = before["run"]["facets"][key], after["run"]["facets"][key]
            for name in cls._additional_skip_redact:
                assert facet_after.get(name) == facet_before.get(name), (key, name)
    columns_before = before["outputs"][0]["facets"][COLUMNS_FACET]
    columns_after = after["outputs"][0]["facets"][COLUMNS_FACET]
    for name in FACET_CLASSES[COLUMNS_FACET]._additional_skip_redact:
        assert columns_after[name] == columns_before[name]
    # spot checks of the values the audit reads, against the policy
    assert after["run"]["facets"][POLICY_FACET]["consentBases"] == ["research-authorization", "irb-waiver"]
    assert after["run"]["facets"][POLICY_FACET]["digest"] == policy.digest
    assert (
        after["run"]["facets"][DEIDENTIFICATION_FACET]["dateShift"]["keyFingerprint"] == "fp-0123456789abcdef"
    )

    # the redactor did run: the password in the redactable store location is gone
    store = after["run"]["facets"][DEIDENTIFICATION_FACET]["surrogateMapping"]["store"]
    assert PASSWORD not in store and "***" in store
    assert PASSWORD not in str(after)


def test_without_the_allowlist_the_same_secrets_would_corrupt_the_figures(policy, monkeypatch):
    """The control: the allowlist is what keeps those fields, not the secrets' failing to match."""
    from airflow_phi_guard.lineage import facets

    monkeypatch.setattr(facets.PhiGuardPolicyRunFacet, "_additional_skip_redact", [])
    after = Serde.to_dict(_redactor("irb-waiver").redact(copy.deepcopy(_event(policy)), max_depth=20))
    assert after["run"]["facets"][POLICY_FACET]["consentBases"] == ["research-authorization", "***"]
