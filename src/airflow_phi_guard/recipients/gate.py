"""The recipient gate: may a governed set go to a destination, given what the data is and who owns it.

The rules (45 CFR 164, REGULATORY.md "Business associates"): data whose Safe Harbor verdict is ``met`` is
de-identified and may go anywhere (164.502(d)(2)). Anything else is still PHI (a limited data set, an
expert determination with pseudonyms, a set awaiting its attestation): it goes only to a recipient of the
registry (a destination no recipient owns is refused) whose business associate agreement is in force at
the run date, lets PHI flow, and permits the policy's purpose (164.502(e), 164.504(e)); and when the flow
is a sale of PHI, only with a recorded authorization (164.502(a)(5)(ii), 164.508(a)(4)). Every refusal
names the recipient, the agreement and the section. The decision reads names, dates and verdicts only.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_phi_guard.exceptions import RecipientNotPermittedError
from airflow_phi_guard.recipients.models import AgreementData, Destination, Recipient, RecipientRegistry

if TYPE_CHECKING:
    from airflow_phi_guard.policy.models import Policy

#: The Safe Harbor status that makes a governed set de-identified (deid.verdict.SafeHarborStatus.MET).
SAFE_HARBOR_MET = "met"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Release(_Record):
    """What the gate needs to know about a governed set: whether it is still PHI, and for which purpose."""

    policy: str = Field(description="The policy that governed the set.")
    policy_digest: str | None = Field(default=None, description="That policy's digest, when known.")
    purpose: str = Field(description="The policy's purpose, which the agreement must permit.")
    published: bool = Field(description="Whether the run published the set at all.")
    safe_harbor: str | None = Field(description="The Safe Harbor status of the report, None when unknown.")

    @property
    def still_phi(self) -> bool:
        """Whether the set is still PHI: anything whose Safe Harbor verdict is not ``met``."""
        return self.safe_harbor != SAFE_HARBOR_MET

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> Release:
        """Read a governance report, as its JSON or ``model_dump``.

        :param report: the report's fields.
        """
        safe_harbor = report.get("safe_harbor")
        policy = report.get("policy") or {}
        return cls(
            policy=str(policy.get("name", "")),
            policy_digest=policy.get("digest"),
            purpose=str(report.get("purpose", "")),
            published=report.get("verdict") == "published",
            safe_harbor=safe_harbor.get("status") if isinstance(safe_harbor, Mapping) else None,
        )

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], purpose: str | None = None) -> Release:
        """Read the XCom summary of the policy operator.

        :param summary: :meth:`GovernanceReport.summary`, which names the purpose.
        :param purpose: the policy's purpose, for a summary of an older version that names none; when both
            name one, they must agree.
        :raises ValueError: no purpose, or two that differ.
        """
        recorded = summary.get("purpose")
        if recorded and purpose and str(recorded) != purpose:
            raise ValueError("the summary's purpose is not the purpose given")
        chosen = str(recorded) if recorded else purpose
        if not chosen:
            raise ValueError("the summary names no purpose; give the policy's purpose")
        return cls(
            policy=str(summary.get("policy", "")),
            policy_digest=summary.get("policy_digest"),
            purpose=chosen,
            published=summary.get("verdict") == "published",
            safe_harbor=summary.get("safe_harbor"),
        )


class GateDecision(_Record):
    """The gate's answer for one destination: allowed or refused, and why, in names and sections only."""

    allowed: bool
    destination: str = Field(description="The destination, without any user or password.")
    recipient: str | None = Field(description="The id of the recipient that owns it, None when none does.")
    agreement: str | None = Field(description="The id of that recipient's agreement, None when it has none.")
    data: str = Field(description="phi or de-identified: what the set is.")
    purpose: str
    policy: str
    policy_digest: str | None = None
    run_date: datetime.date
    rules: list[str] = Field(description="The sections of 45 CFR 164 the decision rests on.")
    refusals: list[str] = Field(default_factory=list, description="Why it was refused; empty when allowed.")

    def summary(self) -> dict[str, object]:
        """The value-free dict an Airflow task returns to XCom and the audit trail records."""
        return self.model_dump(mode="json")

    def raise_for_refusal(self, report_path: str | None = None) -> None:
        """Raise when the gate refused.

        :param report_path: the governance report the decision read, for the message.
        :raises RecipientNotPermittedError: the export is refused.
        """
        if not self.allowed:
            raise RecipientNotPermittedError(self.refusals, report_path)


def decide(
    release: Release, destination: str, registry: RecipientRegistry, run_date: datetime.date
) -> GateDecision:
    """Decide whether a governed set may go to a destination on a run date.

    :param release: what the set is (:meth:`Release.from_report`).
    :param destination: where it would go: a URI or a local path.
    :param registry: the recipients and their agreements.
    :param run_date: the calendar date the agreements are judged on.
    """
    try:
        target = Destination.parse(destination)
    except ValueError as error:
        shown = _without_credentials(destination)
        return _refused(release, shown, None, None, run_date, [f"destination {shown} refused: {error}"])
    owner = registry.owner_of(destination)
    recipient_id, recipient = owner if owner is not None else (None, None)
    return _decide(release, str(target), recipient_id, recipient, run_date)


def decide_for_recipient(
    release: Release, recipient_id: str, registry: RecipientRegistry, run_date: datetime.date
) -> GateDecision:
    """Decide whether a governed set may go to a named recipient, as the policy run does for its own.

    :param release: what the set is.
    :param recipient_id: the recipient, as the policy names it.
    :param registry: the recipients and their agreements.
    :param run_date: the calendar date the agreements are judged on.
    """
    recipient = registry.recipients.get(recipient_id)
    if recipient is None:
        # A recipient the registry does not know is refused whatever the data: the registry is the list of
        # those the covered entity discloses to, and a policy naming another one is a mistake to fix.
        return _refused(
            release,
            f"recipient:{recipient_id}",
            recipient_id,
            None,
            run_date,
            [
                f"recipient {recipient_id} is not in the recipient registry (agreement: none); add it with "
                "its business associate agreement, or name a listed recipient in the policy "
                "(45 CFR 164.502(e))"
            ],
        )
    return _decide(release, f"recipient:{recipient_id}", recipient_id, recipient, run_date)


def _decide(
    release: Release,
    destination: str,
    recipient_id: str | None,
    recipient: Recipient | None,
    run_date: datetime.date,
) -> GateDecision:
    if not release.published:
        return _refused(
            release,
            destination,
            recipient_id,
            recipient,
            run_date,
            [f"policy {release.policy} published nothing: there is no governed set to export"],
        )
    if not release.still_phi:
        # De-identified data is not PHI (164.502(d)(2)): no agreement is needed, whoever receives it.
        return GateDecision(
            allowed=True,
            destination=destination,
            recipient=recipient_id,
            agreement=recipient.baa.id if recipient is not None and recipient.baa is not None else None,
            data="de-identified",
            purpose=release.purpose,
            policy=release.policy,
            policy_digest=release.policy_digest,
            run_date=run_date,
            rules=["164.502(d)(2)"],
        )
    refusals = _phi_refusals(release, destination, recipient_id, recipient, run_date)
    if refusals:
        return _refused(release, destination, recipient_id, recipient, run_date, refusals)
    assert recipient is not None and recipient.baa is not None
    rules = ["164.502(e)", "164.504(e)"] + (["164.508(a)(4)"] if recipient.sale_of_phi else [])
    return GateDecision(
        allowed=True,
        destination=destination,
        recipient=recipient_id,
        agreement=recipient.baa.id,
        data="phi",
        purpose=release.purpose,
        policy=release.policy,
        policy_digest=release.policy_digest,
        run_date=run_date,
        rules=rules,
    )


def _phi_refusals(
    release: Release,
    destination: str,
    recipient_id: str | None,
    recipient: Recipient | None,
    run_date: datetime.date,
) -> list[str]:
    """Every rule a disclosure of PHI to this recipient breaks, each naming recipient, agreement, section."""
    if recipient is None:
        return [
            f"destination {destination} belongs to no recipient of the registry (agreement: none); PHI goes "
            "only to a business associate with an agreement (45 CFR 164.502(e)(1)); register the "
            "destination under its recipient, or export a Safe Harbor set"
        ]
    baa = recipient.baa
    if baa is None:
        refusals = [
            f"recipient {recipient_id} has no business associate agreement (agreement: none); PHI may be "
            "disclosed to it only under one (45 CFR 164.502(e)(1), 164.504(e)); export a Safe Harbor set "
            "or sign an agreement first"
        ]
    else:
        refusals = []
        if not baa.in_force(run_date):
            when = "not yet in force" if run_date < baa.effective else "expired"
            refusals.append(
                f"recipient {recipient_id}: agreement {baa.id} is {when} on {run_date.isoformat()} (in force "
                f"from {baa.effective.isoformat()} until {baa.expires.isoformat()}) "
                "(45 CFR 164.502(e), 164.504(e))"
            )
        if baa.data is AgreementData.DEIDENTIFIED_ONLY:
            refusals.append(
                f"recipient {recipient_id}: agreement {baa.id} covers de-identified data only, and this set "
                f"is PHI (Safe Harbor {release.safe_harbor or 'unknown'}) (45 CFR 164.504(e)(2))"
            )
        if not baa.permits(release.purpose):
            refusals.append(
                f"recipient {recipient_id}: agreement {baa.id} does not permit the purpose {release.purpose} "
                f"(it permits {', '.join(baa.permitted_uses)}) (45 CFR 164.504(e)(2)(i))"
            )
    if recipient.sale_of_phi:
        authorization = recipient.sale_authorization
        if authorization is None or not authorization.in_force(run_date):
            state = "none recorded" if authorization is None else f"{authorization.id} not in force"
            refusals.append(
                f"recipient {recipient_id}: the flow is a sale of PHI and needs an authorization that says "
                f"so ({state}; agreement: {baa.id if baa else 'none'}) (45 CFR 164.502(a)(5)(ii), "
                "164.508(a)(4))"
            )
    return refusals


def _refused(
    release: Release,
    destination: str,
    recipient_id: str | None,
    recipient: Recipient | None,
    run_date: datetime.date,
    refusals: list[str],
) -> GateDecision:
    return GateDecision(
        allowed=False,
        destination=destination,
        recipient=recipient_id,
        agreement=recipient.baa.id if recipient is not None and recipient.baa is not None else None,
        data="phi" if release.still_phi else "de-identified",
        purpose=release.purpose,
        policy=release.policy,
        policy_digest=release.policy_digest,
        run_date=run_date,
        rules=sorted({section for refusal in refusals for section in _sections(refusal)}),
        refusals=refusals,
    )


def _without_credentials(destination: str) -> str:
    """A destination as messages may show it: without the user and password a URL can carry."""
    scheme, separator, rest = destination.strip().partition("://")
    if not separator:
        return destination.strip()
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def _sections(refusal: str) -> list[str]:
    """The 164.x sections a refusal message cites."""
    return re.findall(r"164\.\d+(?:\([a-z0-9]+\))*", refusal)


def expected_release(policy: Policy) -> Release:
    """What a policy's output is expected to be, before any run: for judging a DAG when it is parsed.

    Only a Safe Harbor policy with its attestation can yield a set whose verdict is ``met``; anything else
    is expected to be PHI. The run's own verdict may still be worse (a residual identifier refuses the run;
    a missing attestation leaves it awaiting), and the gate at run time judges that verdict, not this one.

    :param policy: the policy that will govern the set.
    """
    from airflow_phi_guard.policy.models import DeidentificationMethod

    deidentification = policy.deidentification
    safe_harbor = (
        deidentification.method is DeidentificationMethod.SAFE_HARBOR
        and deidentification.attestation is not None
    )
    return Release(
        policy=policy.name,
        policy_digest=policy.digest,
        purpose=policy.purpose,
        published=True,
        safe_harbor=SAFE_HARBOR_MET if safe_harbor else "expected-not-met",
    )
