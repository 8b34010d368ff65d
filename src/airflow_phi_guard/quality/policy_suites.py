"""Suites from policies as files under version control: writing them, telling drift, and loading them whole.

``phi-guard expectations generate`` writes, for each policy, the Great Expectations suite it implies
(:func:`~airflow_phi_guard.quality.suite.expectations_from_policy`) as GX's own JSON into a folder,
``expectations/`` at the repository's root, where a reviewer reads it beside the policy and a test fails
when the two drift apart. The suite's ``meta`` pins the policy by name, version and digest, so a suite
loaded for a run can be refused when it was made from another policy than the one that governed the set.

Loading a suite file checks that Great Expectations built every expectation the file lists, in order and
of the same type: GX logs and drops an expectation whose class it does not know (a custom one not
imported, a misspelt type), and a suite with a check missing passes too much.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_phi_guard.files import write_text_atomically
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.quality.suite import (
    ExpectationSpec,
    RiskCheck,
    build_expectation_suite,
    expectations_from_policy,
    register_expectations,
)

if TYPE_CHECKING:
    from airflow_phi_guard.policy.models import Policy

#: Where the generated suites live, relative to the repository's root.
DEFAULT_SUITES_DIR = "expectations"


@dataclass(frozen=True)
class LoadedSuite:
    """A suite read from a file, every expectation of which Great Expectations built.

    :param name: the suite's name.
    :param specs: its expectations as specs, in the file's order.
    :param meta: the suite's meta, which names the policy it was made from.
    """

    name: str
    specs: tuple[ExpectationSpec, ...]
    meta: Mapping[str, Any]

    @property
    def policy_digest(self) -> str | None:
        """The digest of the policy the suite was generated from, when it says."""
        return (self.meta.get("phi_guard") or {}).get("policy_digest")


def suite_name(policy: Policy) -> str:
    """The name of a policy's suite: ``<policy>-v<version>``, as validation names its runs."""
    return f"{policy.name}-v{policy.version}"


def suite_path(output_dir: str | os.PathLike[str], policy: Policy) -> Path:
    """The file of a policy's suite in ``output_dir``: ``<policy name>.json``."""
    return Path(output_dir) / f"{policy.name}.json"


def policy_suite_document(policy: Policy, *, risk: RiskCheck | None = None) -> str:
    """The JSON text of the suite a policy implies, as ``phi-guard expectations generate`` writes it.

    The text is stable (keys sorted, no ids, no dates), so that it changes only when the policy, the
    product's checks or Great Expectations' format change.

    :param policy: the policy.
    :param risk: the quasi-identifiers and ``k_min``, when not read from the policy.
    """
    suite = build_expectation_suite(
        suite_name(policy),
        expectations_from_policy(policy, risk=risk),
        meta={
            "phi_guard": {
                "policy": policy.name,
                "policy_version": policy.version,
                "policy_digest": policy.digest,
                "method": policy.deidentification.method.value,
                "zip3_vintage": policy.deidentification.zip3_vintage.value,
                "generated_by": "phi-guard expectations generate",
            }
        },
    )
    document = suite.to_json_dict()
    document.pop("id", None)
    for expectation in document["expectations"]:
        expectation.pop("id", None)
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_policy_suites(
    policies: Iterable[Policy], output_dir: str | os.PathLike[str] = DEFAULT_SUITES_DIR
) -> list[Path]:
    """Write the suite of each policy into ``output_dir``, creating it; returns the files written.

    :param policies: the policies.
    :param output_dir: the suites' folder.
    """
    written = []
    for policy in policies:
        path = suite_path(output_dir, policy)
        write_text_atomically(path, policy_suite_document(policy))
        written.append(path)
    return written


def drifted_suites(policies: Iterable[Policy], output_dir: str | os.PathLike[str]) -> list[str]:
    """The policies whose committed suite is missing or differs from the one they imply now.

    :param policies: the policies.
    :param output_dir: the folder of the committed suites.
    :returns: one line per drifted policy: its name and why.
    """
    drifted = []
    for policy in policies:
        path = suite_path(output_dir, policy)
        if not path.is_file():
            drifted.append(f"{policy.name}: no suite at {path}")
        elif path.read_text(encoding="utf-8") != policy_suite_document(policy):
            drifted.append(f"{policy.name}: {path} differs from the suite the policy implies")
    return drifted


def load_suite(path: str | os.PathLike[str]) -> LoadedSuite:
    """Read a suite file, checking that Great Expectations built every expectation it lists.

    :param path: a suite file, e.g. one that :func:`write_policy_suites` wrote.
    :raises ValueError: when the file is not a suite, or GX did not build one of its expectations (an
        unknown type), naming the types it dropped.
    """
    import great_expectations as gx

    document = json.loads(Path(path).read_text(encoding="utf-8"))
    listed = document.get("expectations") if isinstance(document, dict) else None
    if not isinstance(listed, list) or not document.get("name"):
        raise ValueError(f"{path} is not a Great Expectations suite: it needs a name and expectations")

    register_expectations()
    suite = gx.ExpectationSuite(
        name=document["name"], expectations=[dict(item) for item in listed], meta=document.get("meta")
    )
    expected = [item.get("type") for item in listed]
    built = [expectation.expectation_type for expectation in suite.expectations]
    if built != expected:
        dropped = [name for name in expected if name not in built] or ["(order changed)"]
        raise ValueError(
            f"Great Expectations built {len(built)} of the {len(expected)} expectations of {path}; "
            f"not built: {', '.join(map(str, dropped))}; an unknown expectation type cannot be checked"
        )

    specs = []
    for item in listed:
        marks = (item.get("meta") or {}).get("phi_guard") or {}
        letter = marks.get("identifier")
        specs.append(
            ExpectationSpec(
                item["type"],
                dict(item.get("kwargs") or {}),
                marks.get("meaning") or item.get("notes") or "",
                SafeHarborIdentifier(letter) if letter else None,
            )
        )
    return LoadedSuite(name=document["name"], specs=tuple(specs), meta=dict(document.get("meta") or {}))
