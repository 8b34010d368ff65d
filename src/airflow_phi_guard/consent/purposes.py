"""The purpose vocabulary: product purpose names, HL7 v3 PurposeOfUse codes, and which codes cover which.

Consent registries and policies name uses in two ways: by the product's purpose names (``model-training``,
``research``...) and by HL7 v3 PurposeOfUse codes of the code system
``http://terminology.hl7.org/CodeSystem/v3-ActReason`` (``HRESCH``, ``TREAT``...), which is what FHIR
``Consent.provision.purpose`` carries. Both map onto the codes of :data:`PURPOSE_OF_USE`:

- a **registry record** lists purposes; each is a product name (which stands for its one code in
  :data:`PRODUCT_PURPOSES`) or a PurposeOfUse code, bare (``HRESCH``) or with its system
  (``http://terminology.hl7.org/CodeSystem/v3-ActReason|HRESCH``, or ``#`` instead of ``|``). Anything
  else is an unknown purpose, which makes the registry malformed. Codes are case-sensitive, as in HL7.
- a **policy** names one purpose, a product name or a code; the codes that *cover* it are its default
  covering codes (:data:`PRODUCT_PURPOSES`), widened only by what the policy lists explicitly under
  ``consent.purposes_covering``. A purpose outside the vocabulary is refused when the policy loads.
- a record covers the policy when its codes intersect the policy's covering codes.

The default mapping is conservative: ``model-training`` is covered by ``MLTRAINING`` alone. A research
authorization (``HRESCH``) or a clinical-trial consent (``CLINTRCH``) does not cover training a model
unless the policy says so with ``purposes_covering: [HRESCH]``, because whether a research consent's
described purpose extends to model training (45 CFR 164.508(c)(1)(iv)) is a reading of the document
that a person has to make, not the software.

``MLTRAINING`` ("machine learning training: to perform one or more operations on information used in
training a machine learning (AI) model"), with ``TREATDS`` and ``PMTDS``, is listed as a code of
v3-ActReason (terminology.hl7.org 7.5.0) by the value set ``ai-purposeofuse`` of the HL7 FHIR
implementation guide draft "Consent About AI" (J. Moehrke, build.fhir.org/ig/JohnMoehrke/ConsentAboutAI,
version 0.2.0, draft of 2026-11-17). The other codes and their meanings are those of the PurposeOfUse
hierarchy of v3-ActReason.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

#: The code system of HL7 v3 PurposeOfUse codes, as FHIR names it.
PURPOSE_OF_USE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"

#: The PurposeOfUse codes the product knows, with their meaning. Order matters: a code's position is its
#: bit in the masks the registry computes, so new codes go at the end (at most 63).
PURPOSE_OF_USE: MappingProxyType[str, str] = MappingProxyType(
    {
        "TREAT": "treatment",
        "ETREAT": "emergency treatment",
        "HPAYMT": "healthcare payment",
        "HOPERAT": "healthcare operations",
        "HQUALIMP": "health quality improvement",
        "HRESCH": "healthcare research",
        "CLINTRCH": "clinical trial research",
        "PUBHLTH": "public health",
        "HMARKT": "healthcare marketing",
        "PATRQT": "patient requested",
        "MLTRAINING": "machine learning training",
        "TREATDS": "decision support assisted treatment decision",
        "PMTDS": "decision support assisted payment decision",
    }
)

#: The product's purpose names: the one PurposeOfUse code each stands for in a registry, and the codes
#: that cover it by default when a policy names it as its purpose. Covering is deliberately narrow: a
#: policy widens it only with ``consent.purposes_covering``.
PRODUCT_PURPOSES: MappingProxyType[str, tuple[str, frozenset[str]]] = MappingProxyType(
    {
        # name: (the code it stands for, the codes that cover it by default)
        "model-training": ("MLTRAINING", frozenset({"MLTRAINING"})),
        "research": ("HRESCH", frozenset({"HRESCH"})),
        # research that builds a disease or outcome registry: research, and nothing more specific
        "registry-research": ("HRESCH", frozenset({"HRESCH"})),
        "clinical-trial": ("CLINTRCH", frozenset({"CLINTRCH"})),
        "treatment": ("TREAT", frozenset({"TREAT"})),
        "emergency-treatment": ("ETREAT", frozenset({"ETREAT"})),
        "payment": ("HPAYMT", frozenset({"HPAYMT"})),
        "health-care-operations": ("HOPERAT", frozenset({"HOPERAT"})),
        "quality-improvement": ("HQUALIMP", frozenset({"HQUALIMP"})),
        "public-health": ("PUBHLTH", frozenset({"PUBHLTH"})),
        "marketing": ("HMARKT", frozenset({"HMARKT"})),
        "patient-request": ("PATRQT", frozenset({"PATRQT"})),
        "decision-support": ("TREATDS", frozenset({"TREATDS"})),
    }
)

if len(PURPOSE_OF_USE) > 63:  # pragma: no cover - a guard for whoever extends the table
    raise RuntimeError("the purpose masks are 64-bit: at most 63 PurposeOfUse codes")

_SYSTEM_PREFIXES = (f"{PURPOSE_OF_USE_SYSTEM}|", f"{PURPOSE_OF_USE_SYSTEM}#")


def purpose_code(token: str) -> str | None:
    """The PurposeOfUse code a registry purpose stands for, or None when it is not in the vocabulary.

    :param token: a product purpose name, or a PurposeOfUse code with or without its system; surrounding
        whitespace is ignored.
    """
    token = token.strip()
    if token in PRODUCT_PURPOSES:
        return PRODUCT_PURPOSES[token][0]
    for prefix in _SYSTEM_PREFIXES:
        if token.startswith(prefix):
            token = token[len(prefix) :]
            break
    return token if token in PURPOSE_OF_USE else None


def is_known_purpose(token: str) -> bool:
    """Whether a purpose (name or code) belongs to the vocabulary.

    :param token: a product purpose name or a PurposeOfUse code.
    """
    return purpose_code(token) is not None


def covering_codes(purpose: str, widened_by: Iterable[str] = ()) -> frozenset[str]:
    """The PurposeOfUse codes whose records cover a policy's purpose.

    :param purpose: the policy's purpose, a product name or a PurposeOfUse code.
    :param widened_by: further purposes (names or codes) the policy explicitly accepts as covering it.
    :raises ValueError: a purpose outside the vocabulary (the message names the purpose, which is policy
        text, never registry data).
    """
    purpose = purpose.strip()
    if purpose in PRODUCT_PURPOSES:
        codes = set(PRODUCT_PURPOSES[purpose][1])
    else:
        code = purpose_code(purpose)
        if code is None:
            raise ValueError(f"unknown purpose {purpose!r}; {vocabulary_hint()}")
        codes = {code}
    for extra in widened_by:
        code = purpose_code(extra)
        if code is None:
            raise ValueError(f"unknown purpose {extra.strip()!r}; {vocabulary_hint()}")
        codes.add(code)
    return frozenset(codes)


def code_bit(code: str) -> int:
    """The bit of a PurposeOfUse code in a purpose mask.

    :param code: a code of :data:`PURPOSE_OF_USE`.
    """
    return 1 << list(PURPOSE_OF_USE).index(code)


def codes_mask(codes: Iterable[str]) -> int:
    """The purpose mask of a set of PurposeOfUse codes: one bit per code.

    :param codes: codes of :data:`PURPOSE_OF_USE`.
    """
    mask = 0
    for code in codes:
        mask |= code_bit(code)
    return mask


def mask_codes(mask: int) -> tuple[str, ...]:
    """The PurposeOfUse codes of a purpose mask, in the order of :data:`PURPOSE_OF_USE`.

    :param mask: a mask made by :func:`codes_mask`.
    """
    return tuple(code for code in PURPOSE_OF_USE if mask & code_bit(code))


def token_table() -> tuple[list[str], list[int]]:
    """Every spelling of a known purpose with its mask, for vectorised lookups of registry purposes."""
    tokens: list[str] = []
    masks: list[int] = []
    for name, (code, _) in PRODUCT_PURPOSES.items():
        tokens.append(name)
        masks.append(code_bit(code))
    for code in PURPOSE_OF_USE:
        for spelling in (code, *(prefix + code for prefix in _SYSTEM_PREFIXES)):
            tokens.append(spelling)
            masks.append(code_bit(code))
    return tokens, masks


def vocabulary_hint() -> str:
    """A sentence that says what a known purpose looks like, for error messages."""
    return (
        f"use a product purpose ({', '.join(PRODUCT_PURPOSES)}) or an HL7 v3 PurposeOfUse code of "
        f"{PURPOSE_OF_USE_SYSTEM} ({', '.join(PURPOSE_OF_USE)})"
    )
