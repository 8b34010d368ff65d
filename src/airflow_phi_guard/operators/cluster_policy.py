"""The Airflow cluster policy that refuses, when a DAG is parsed, a task exporting PHI to a recipient unfit.

Installed through the ``airflow.policy`` entry point, so every Airflow process with the package loads it.
It judges a task whose inlets are governed sets and whose outlets (Assets) lie at a destination of the
recipient registry: the governed set's policy file says what the data is expected to be
(:func:`~airflow_phi_guard.recipients.gate.expected_release`), and the recipient that owns the outlet must
have what that data needs on the day the DAG is parsed. A governed set is an inlet Asset that either is
the output of a :class:`~airflow_phi_guard.operators.policy.PhiPolicyOperator` of the same DAG, or carries
``extra={"phi_guard_policy": "<policy file>"}``. It also judges a
:class:`~airflow_phi_guard.operators.inference.BatchInferenceOperator` whose ``recipient`` (the vendor
serving the model) is given: scoring discloses the input to that recipient, so its agreement must permit
``inference``; the input is expected to be PHI unless the task names the governance report of a
:class:`~airflow_phi_guard.operators.policy.PhiPolicyOperator` of the same DAG whose policy can yield
Safe Harbor output. No data is read: only the policy file and the registry, each read once per change of
the file.

The registry is ``[phi_guard] recipient_registry`` in the Airflow configuration, or the environment
variable ``PHI_GUARD_RECIPIENT_REGISTRY`` (a YAML file); without either, the policy judges nothing.

What it cannot see, and leaves to the gates at run time: an export whose destination is not an Asset
outlet (a task that uploads without declaring it), a templated recipient or path (rendered only when the
task runs), and anything a registry kept in a SQL table says (the DAG processor would query the database
at every parse; the operators read such a registry with ``recipient_registry_conn_id``).
"""

from __future__ import annotations

import functools
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowClusterPolicyViolation
from airflow.policies import hookimpl

if TYPE_CHECKING:
    from airflow_phi_guard.policy.models import Policy
    from airflow_phi_guard.recipients.models import RecipientRegistry

log = logging.getLogger(__name__)

#: The key of an inlet Asset's ``extra`` that names the policy file of the governed set it stands for.
POLICY_EXTRA = "phi_guard_policy"


@hookimpl
def task_policy(task: Any) -> None:
    """Refuse a task whose outlets would send a governed set to a recipient lacking what the data needs.

    :param task: the task being bagged.
    :raises AirflowClusterPolicyViolation: an outlet's recipient lacks what the data needs, or a policy
        file or the registry cannot be read (fail closed).
    """
    from airflow_phi_guard.operators.recipients import configured_registry_path

    outlets = [uri for uri in (_uri(item) for item in task.outlets or ()) if uri]
    policies = _inlet_policies(task) if outlets else []
    recipient = _inference_recipient(task)
    if not policies and recipient is None:
        return
    registry_path = configured_registry_path()
    if not registry_path:
        log.debug("no recipient registry is configured: task %s is not judged", task.task_id)
        return

    refusals = _refusals(task, policies, outlets, registry_path) if policies else []
    if recipient is not None:
        refusals.extend(_inference_refusals(task, recipient, registry_path))
    if refusals:
        raise AirflowClusterPolicyViolation(
            f"task {task.task_id} of DAG {_dag_id(task)} may not export its governed set: "
            + "; ".join(refusals)
        )


def _refusals(task: Any, policies: list[str], outlets: list[str], registry_path: str) -> list[str]:
    from airflow_phi_guard.exceptions import PolicyError, RecipientRegistryError
    from airflow_phi_guard.recipients.gate import decide, expected_release

    try:
        registry = _registry(registry_path, _mtime(registry_path))
    except (RecipientRegistryError, OSError) as error:
        return [f"the recipient registry cannot be used ({error})"]

    # Known shortcoming: judged on the day of parsing, not on a run date, which is not known when a DAG is
    # parsed. An agreement that lapses later is the gate's to refuse at run time; but one that takes effect
    # later refuses the DAG until that day, and a backfill of dates an expired agreement covered is refused
    # too. Each run's own date is judged by the gates that run with it (the policy run, the gate operator,
    # the inference operator), which is where an agreement's term is enforced.
    today = datetime.now(UTC).date()
    refusals = []
    for policy_path in policies:
        try:
            release = expected_release(_policy(policy_path, _mtime(policy_path)))
        except (PolicyError, OSError) as error:
            refusals.append(f"policy {policy_path} of an inlet cannot be read ({error})")
            continue
        for outlet in outlets:
            try:
                owned = registry.owner_of(outlet)
            except ValueError as error:
                refusals.append(f"outlet {outlet}: {error}")
                continue
            # An outlet no recipient owns (an intermediate file, a model) is not judged here: the
            # registry lists where data leaves the covered entity, and the gate judges every export.
            if owned is None:
                continue
            decision = decide(release, outlet, registry, today)
            refusals.extend(decision.refusals)
    return refusals


def _inference_recipient(task: Any) -> str | None:
    """The recipient of a batch inference task that names one; None for any other task or a template."""
    from airflow_phi_guard.operators.inference import BatchInferenceOperator

    if not isinstance(task, BatchInferenceOperator) or not task.recipient:
        return None
    if "{{" in str(task.recipient):
        log.debug("task %s names its recipient by a template: judged at run time only", task.task_id)
        return None
    return str(task.recipient)


def _inference_refusals(task: Any, recipient: str, registry_path: str) -> list[str]:
    """Why the recipient serving a batch inference task's model may not receive its input, if it may not."""
    from airflow_phi_guard.exceptions import PolicyError, RecipientRegistryError
    from airflow_phi_guard.operators.policy import PhiPolicyOperator
    from airflow_phi_guard.recipients.gate import Release, decide_for_recipient, expected_release
    from airflow_phi_guard.recipients.models import INFERENCE

    try:
        registry = _registry(registry_path, _mtime(registry_path))
    except (RecipientRegistryError, OSError) as error:
        return [f"the recipient registry cannot be used ({error})"]

    # The input is expected to be PHI, as the operator treats it at run time, unless the task names the
    # report of a policy task of this DAG that publishes exactly its input.
    release = Release(policy="-", purpose=INFERENCE, published=True, safe_harbor=None)
    dag = getattr(task, "dag", None)
    for other in dag.tasks if dag is not None and task.report_path else ():
        same = (other.output_path, other.report_path) == (task.input_path, task.report_path)
        if isinstance(other, PhiPolicyOperator) and same:
            try:
                expected = expected_release(_policy(other.policy_file(), _mtime(other.policy_file())))
            except (PolicyError, OSError) as error:
                return [f"policy {other.policy_file()} of the scored input cannot be read ({error})"]
            release = expected.model_copy(update={"purpose": INFERENCE})
    return decide_for_recipient(release, recipient, registry, datetime.now(UTC).date()).refusals


def _inlet_policies(task: Any) -> list[str]:
    """The policy files of the governed sets among the task's inlets."""
    from airflow_phi_guard.lineage.datasets import asset_uri
    from airflow_phi_guard.operators.policy import PhiPolicyOperator

    produced: dict[str, str] = {}
    dag = getattr(task, "dag", None)
    for other in dag.tasks if dag is not None else ():
        if isinstance(other, PhiPolicyOperator) and "{{" not in str(other.output_path):
            produced[asset_uri(other.output_path)] = other.policy_file()

    policies = []
    for inlet in task.inlets or ():
        extra = getattr(inlet, "extra", None) or {}
        named = extra.get(POLICY_EXTRA)
        if named:
            base = Path(getattr(dag, "fileloc", "") or ".").parent
            policies.append(str((base / named).resolve()))
        elif _uri(inlet) in produced:
            policies.append(produced[_uri(inlet)])
    return policies


def _uri(item: Any) -> str | None:
    uri = getattr(item, "uri", None)
    return uri if isinstance(uri, str) else None


def _dag_id(task: Any) -> str:
    dag = getattr(task, "dag", None)
    return dag.dag_id if dag is not None else "-"


def _mtime(path: str) -> int:
    return os.stat(path).st_mtime_ns


@functools.lru_cache(maxsize=32)
def _registry(path: str, mtime: int) -> RecipientRegistry:
    """The registry, read again only when the file changed (``mtime`` is the cache key)."""
    from airflow_phi_guard.recipients.registry import load_recipient_registry

    return load_recipient_registry(path)


@functools.lru_cache(maxsize=128)
def _policy(path: str, mtime: int) -> Policy:
    """The policy, read again only when the file changed (``mtime`` is the cache key)."""
    from airflow_phi_guard.policy.loader import load_policy

    return load_policy(path)
