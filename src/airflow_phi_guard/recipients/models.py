"""The recipient registry's models: who receives governed data, under which business associate agreement.

Each recipient (the internal ML platform, a model API vendor, a labelling service, a cloud trainer) owns
destinations, given as URI prefixes, and may hold a business associate agreement (45 CFR 164.502(e),
164.504(e)) that says from when to when it holds, which uses it permits and whether PHI or only
de-identified data may flow under it. The models are frozen and refuse unknown keys, so a typo in a
registry is an error, never a silently ignored agreement.
"""

from __future__ import annotations

import datetime
import posixpath
from enum import StrEnum
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from airflow_phi_guard.consent.purposes import is_known_purpose, purpose_code, vocabulary_hint

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

#: A use a business associate agreement can permit beyond the purpose vocabulary: running a model on PHI.
INFERENCE = "inference"


def is_known_use(use: str) -> bool:
    """Whether an agreement's permitted use belongs to the vocabulary (a purpose, or ``inference``).

    :param use: a product purpose name, a PurposeOfUse code, or ``inference``.
    """
    return use.strip() == INFERENCE or is_known_purpose(use)


def use_key(use: str) -> str | None:
    """What a use is compared by: its PurposeOfUse code, ``inference``, or None when unknown.

    :param use: a product purpose name, a PurposeOfUse code, or ``inference``.
    """
    use = use.strip()
    return INFERENCE if use == INFERENCE else purpose_code(use)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AgreementData(StrEnum):
    """What data may flow under an agreement."""

    PHI = "phi"
    DEIDENTIFIED_ONLY = "deidentified-only"


class BusinessAssociateAgreement(_Frozen):
    """A business associate agreement (164.504(e)): its id, its term, the uses it permits, and whether
    PHI may flow under it. It is in force from ``effective`` (included) to ``expires`` (excluded)."""

    id: Name = Field(description="The agreement's id, as the contract register knows it.")
    signed: datetime.date = Field(description="When the agreement was signed.")
    effective: datetime.date = Field(description="First day the agreement holds.")
    expires: datetime.date = Field(
        description="First day the agreement no longer holds; an agreement without an end is recorded with "
        "the end of the service contract, so that a lapsed one cannot pass for one in force."
    )
    permitted_uses: tuple[Name, ...] = Field(
        min_length=1,
        description="The uses the agreement permits: product purposes (model-training...), HL7 v3 "
        "PurposeOfUse codes, or inference.",
    )
    data: AgreementData = Field(
        description="phi: PHI may flow under the agreement; deidentified-only: only de-identified data."
    )

    @field_validator("permitted_uses")
    @classmethod
    def _known_uses(cls, uses: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [use for use in uses if not is_known_use(use)]
        if unknown:
            raise ValueError(f"unknown use(s) {', '.join(unknown)}; use {INFERENCE} or {vocabulary_hint()}")
        return uses

    @model_validator(mode="after")
    def _dates_in_order(self) -> BusinessAssociateAgreement:
        if self.effective < self.signed:
            raise ValueError("'effective' cannot come before 'signed'")
        if self.expires <= self.effective:
            raise ValueError("'expires' must come after 'effective'")
        return self

    def in_force(self, on: datetime.date) -> bool:
        """Whether the agreement holds on a calendar date: effective <= on < expires.

        :param on: the run date.
        """
        return self.effective <= on < self.expires

    def permits(self, use: str) -> bool:
        """Whether the agreement permits a use (compared by PurposeOfUse code).

        :param use: the policy's purpose, or ``inference``.
        """
        wanted = use_key(use)
        return wanted is not None and wanted in {use_key(permitted) for permitted in self.permitted_uses}


class SaleAuthorization(_Frozen):
    """The authorization a sale of PHI needs, which states that the disclosure is paid (164.508(a)(4))."""

    id: Name = Field(description="The authorization's id, or the reference of the authorizations' record.")
    recorded: datetime.date = Field(description="When the authorization was recorded.")
    expires: datetime.date | None = Field(default=None, description="First day it no longer holds.")

    def in_force(self, on: datetime.date) -> bool:
        """Whether the authorization holds on a calendar date.

        :param on: the run date.
        """
        return self.recorded <= on and (self.expires is None or on < self.expires)


class Destination(_Frozen):
    """A URI prefix, split so that a prefix matches only whole path segments of the same host."""

    scheme: str
    host: str
    path: str

    @classmethod
    def parse(cls, uri: str) -> Destination:
        """Split a URI or a local path; the user and password of a URL are dropped, never kept.

        :param uri: ``s3://bucket/key``, ``https://host/path``, ``postgresql://host:5432/db``, or a path.
        :raises ValueError: the URI has ``.`` or ``..`` segments, also percent-encoded (``%2e%2e``), or a
            segment with an encoded ``/`` (``%2f``), so where it points is not plain.
        """
        uri = uri.strip()
        parts = urlsplit(uri) if "://" in uri else urlsplit("file://" + uri)
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        segments = [segment for segment in parts.path.split("/") if segment]
        # A server or a client library may decode the octets before it resolves the path, so each segment is
        # judged as it decodes; the path is kept as given, so an encoded prefix covers only itself.
        decoded = [unquote(segment) for segment in segments]
        if any(segment in (".", "..") for segment in decoded):
            raise ValueError("a destination with '.' or '..' segments is ambiguous: give it resolved")
        if any("/" in segment for segment in decoded):
            raise ValueError("a destination with an encoded '/' in a segment is ambiguous: give it resolved")
        path = posixpath.join("/", *segments) if segments else "/"
        return cls(scheme=parts.scheme.lower(), host=host.lower(), path=path)

    def covers(self, other: Destination) -> bool:
        """Whether ``other`` lies at or under this prefix: same scheme and host, whole path segments.

        :param other: the destination of an export.
        """
        if (self.scheme, self.host) != (other.scheme, other.host):
            return False
        return self.path == "/" or other.path == self.path or other.path.startswith(self.path + "/")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"


class Recipient(_Frozen):
    """One recipient of governed data: the destinations it owns, its region and its agreement."""

    name: Name = Field(description="Who the recipient is, for people (the id is the key it is listed under).")
    destinations: tuple[Name, ...] = Field(
        min_length=1,
        description="URI prefixes the recipient owns: buckets (s3://bucket/prefix), hosts "
        "(https://api.vendor.example), databases (postgresql://host:5432/db), local folders.",
    )
    region: Name = Field(description="Where the recipient keeps the data (e.g. us-east-1, EU).")
    baa: BusinessAssociateAgreement | None = Field(
        default=None, description="The business associate agreement with the recipient, if there is one."
    )
    sale_of_phi: bool = Field(
        default=False,
        description="Whether disclosing PHI to the recipient is paid for by it: a sale of PHI "
        "(164.502(a)(5)(ii)), which needs an authorization that says so.",
    )
    sale_authorization: SaleAuthorization | None = Field(
        default=None, description="The recorded authorization a sale of PHI needs (164.508(a)(4))."
    )

    @field_validator("destinations")
    @classmethod
    def _plain_destinations(cls, destinations: tuple[str, ...]) -> tuple[str, ...]:
        for destination in destinations:
            Destination.parse(destination)
        return destinations

    @model_validator(mode="after")
    def _authorization_for_a_sale(self) -> Recipient:
        if self.sale_authorization is not None and not self.sale_of_phi:
            raise ValueError("'sale_authorization' belongs to a recipient with 'sale_of_phi: true'")
        return self

    @property
    def prefixes(self) -> tuple[Destination, ...]:
        """The parsed destination prefixes."""
        return tuple(Destination.parse(destination) for destination in self.destinations)


class RecipientRegistry(_Frozen):
    """Every recipient, keyed by the id that policies name in ``recipient``."""

    recipients: dict[Name, Recipient] = Field(
        description="The recipients, by id; a policy's `recipient` is one of these ids."
    )

    @model_validator(mode="after")
    def _one_owner_per_destination(self) -> RecipientRegistry:
        owners: dict[Destination, str] = {}
        for recipient_id, recipient in self.recipients.items():
            for prefix in recipient.prefixes:
                if prefix in owners and owners[prefix] != recipient_id:
                    raise ValueError(
                        f"destination {prefix} is listed by both {owners[prefix]} and {recipient_id}"
                    )
                owners[prefix] = recipient_id
        return self

    def owner_of(self, destination: str) -> tuple[str, Recipient] | None:
        """The recipient whose longest prefix covers a destination, or None when no recipient owns it.

        :param destination: a URI or a local path.
        :raises ValueError: the destination has ``.`` or ``..`` segments.
        """
        target = Destination.parse(destination)
        best: tuple[int, str, Recipient] | None = None
        for recipient_id, recipient in self.recipients.items():
            for prefix in recipient.prefixes:
                if prefix.covers(target) and (best is None or len(prefix.path) > best[0]):
                    best = (len(prefix.path), recipient_id, recipient)
        return None if best is None else (best[1], best[2])
