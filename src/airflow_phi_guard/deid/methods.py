"""Which treatments each de-identification method permits for a column of each Safe Harbor identifier.

A policy declares its method; the plan refuses a treatment that would publish what the method forbids,
before any row is read. The tables follow 45 CFR 164.514:

- Safe Harbor, 164.514(b)(2): every identifier is removed, except the first three ZIP digits under the
  ZIP3 rule or the State (B) and the year of a date, an age of at most 89 or its band (C); a birth year is
  published only as ``birth-year``, which suppresses it for a person over 89. A random surrogate code kept
  in a private mapping is a 164.514(c) re-identification code and may replace any identifier but a place
  or a date (B, C); a keyed pseudonym is derived from the identifier, so it is no such code and cannot
  stay (R). Months, quarters and shifted dates keep date elements other than the year.
- Limited data set, 164.514(e): the 16 direct identifiers are removed; dates, town, State, ZIP and other
  codes may stay.
- Expert determination, 164.514(b)(1): the expert decides what may stay; the policy records the
  determination (:func:`record_refusals` checks it is in force). This method permits what Safe Harbor
  permits plus keyed pseudonyms, months, quarters and date shifts, which such determinations are most
  commonly asked to cover; the risk gate (``quasi_identifiers``, ``k_min``) is the evidence a run gives.

Some treatments are Safe Harbor compatible only with the right options (age bands whose top band holds
every age over 89, top coding of an age at 90 or below): :func:`option_refusal` judges them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from airflow_phi_guard.consent.purposes import purpose_code
from airflow_phi_guard.phi.detectors import DETECTORS, ValueDetector
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.names import column_words
from airflow_phi_guard.policy.models import (
    ColumnPolicy,
    DeidentificationMethod,
    DeidentificationPolicy,
    Treatment,
)

_I = SafeHarborIdentifier
_T = Treatment

#: Identifiers every method removes: the direct identifiers of 164.514(e)(2), which Safe Harbor removes too.
DIRECT_IDENTIFIERS = frozenset(
    {
        _I.NAMES,
        _I.TELEPHONE_NUMBER,
        _I.FAX_NUMBER,
        _I.EMAIL_ADDRESS,
        _I.SOCIAL_SECURITY_NUMBER,
        _I.MEDICAL_RECORD_NUMBER,
        _I.HEALTH_PLAN_BENEFICIARY_NUMBER,
        _I.ACCOUNT_NUMBER,
        _I.CERTIFICATE_OR_LICENSE_NUMBER,
        _I.VEHICLE_IDENTIFIER,
        _I.DEVICE_IDENTIFIER,
        _I.WEB_URL,
        _I.IP_ADDRESS,
        _I.BIOMETRIC_IDENTIFIER,
        _I.FULL_FACE_PHOTOGRAPH,
    }
)

# A surrogate code replaces an identifier by a random code that a private mapping alone ties to the person
# (164.514(c)); a place or a date is no code, so B and C cannot take one.
_CODE_OR_DROP = frozenset({_T.DROP, _T.SURROGATE})
_SAFE_HARBOR_PLACES = frozenset({_T.DROP, _T.ZIP3, _T.STATE})
_SAFE_HARBOR_DATES = frozenset({_T.DROP, _T.YEAR, _T.AGE, _T.BIRTH_YEAR, _T.AGE_BAND, _T.TOP_BOTTOM_CODE})
_EVERY_TREATMENT = frozenset(Treatment)

_PERMITTED: dict[DeidentificationMethod, dict[SafeHarborIdentifier, frozenset[Treatment]]] = {
    DeidentificationMethod.SAFE_HARBOR: {
        _I.GEOGRAPHIC_SUBDIVISION: _SAFE_HARBOR_PLACES,
        _I.DATES: _SAFE_HARBOR_DATES,
        _I.OTHER_UNIQUE_IDENTIFIER: _CODE_OR_DROP,
    },
    DeidentificationMethod.EXPERT_DETERMINATION: {
        _I.GEOGRAPHIC_SUBDIVISION: _SAFE_HARBOR_PLACES,
        _I.DATES: _SAFE_HARBOR_DATES | {_T.MONTH, _T.QUARTER, _T.DATE_SHIFT},
        _I.OTHER_UNIQUE_IDENTIFIER: _CODE_OR_DROP | {_T.PSEUDONYMIZE},
    },
    DeidentificationMethod.LIMITED_DATA_SET: {
        # Street addresses must go under a limited data set while town, State and ZIP may stay: the
        # letter alone does not tell them apart, so treatment_refusal() reads the column's name.
        _I.GEOGRAPHIC_SUBDIVISION: _EVERY_TREATMENT,
        _I.DATES: _EVERY_TREATMENT,
        _I.OTHER_UNIQUE_IDENTIFIER: _EVERY_TREATMENT,
    },
}

#: What a limited data set may keep in free text as in columns: dates (C) and the ZIP code, though no
#: other part of a postal address (164.514(e)(2)(ii)).
_LIMITED_DATA_SET_TEXT = frozenset({"zip-code"})


def text_detectors(
    method: DeidentificationMethod, detectors: Sequence[ValueDetector] = DETECTORS
) -> tuple[ValueDetector, ...]:
    """The value detectors whose finds in kept text are identifiers ``method`` removes, so refuse a run.

    :param method: the policy's de-identification method.
    :param detectors: the detectors to choose from; every built-in one by default.
    """
    if method is not DeidentificationMethod.LIMITED_DATA_SET:
        return tuple(detectors)
    return tuple(
        detector
        for detector in detectors
        if detector.identifier is not SafeHarborIdentifier.DATES
        and detector.name not in _LIMITED_DATA_SET_TEXT
    )


#: Why a keyed pseudonym cannot stay under Safe Harbor (REGULATORY.md, letter R).
_PSEUDONYM_REASON = (
    "a keyed pseudonym is derived from the identifier, so it is no re-identification code under "
    "45 CFR 164.514(c)"
)

_BIRTH_WORDS = frozenset({"dob", "born", "birth", "birthdate", "birthday", "birthdatetime"})


def permitted_treatments(
    identifier: SafeHarborIdentifier | None, method: DeidentificationMethod
) -> frozenset[Treatment]:
    """The treatments ``method`` permits for a column of ``identifier`` (every one for a non-identifier).

    :param identifier: the column's Safe Harbor identifier, or None.
    :param method: the policy's de-identification method.
    """
    if identifier is None:
        return _EVERY_TREATMENT
    if identifier in DIRECT_IDENTIFIERS:
        return _CODE_OR_DROP
    return _PERMITTED[method][identifier]


def is_birth_date(column: str) -> bool:
    """Whether a column's name says it holds a birth date (``BIRTHDATE``, ``dob``, ``date_of_birth``)."""
    words = set(column_words(column))
    return bool(words & _BIRTH_WORDS) or "birth" in column.lower().replace("birthplace", "")


#: Words of a column name that say it holds a town or city, or a ZIP code: the postal address information
#: a limited data set may keep (164.514(e)(2)(ii)); the State is no identifier at all.
_TOWN_OR_ZIP_WORDS = frozenset(
    {"city", "town", "zip", "zipcode", "zip5", "postal", "postcode", "municipality"}
)


def is_town_or_zip(column: str) -> bool:
    """Whether a geographic column's name says it holds a town or city or a ZIP code (``CITY``,
    ``patient_zip``, ``postal_code``), and so may stay in a limited data set; anything else of letter B,
    such as ``ADDRESS``, ``COUNTY`` or ``LAT``, may not."""
    return bool(set(column_words(column)) & _TOWN_OR_ZIP_WORDS)


#: Why each treatment that is never Safe Harbor compatible is not, for the refusal's message.
_NOT_SAFE_HARBOR_REASONS = {
    Treatment.PSEUDONYMIZE: _PSEUDONYM_REASON,
    Treatment.MONTH: "a month is an element of a date other than the year (45 CFR 164.514(b)(2)(i)(C))",
    Treatment.QUARTER: "a quarter is an element of a date other than the year (45 CFR 164.514(b)(2)(i)(C))",
    Treatment.DATE_SHIFT: "a shifted date keeps a day and a month, and its shift is derived from the subject "
    "id (45 CFR 164.514(b)(2)(i)(C))",
}


def treatment_refusal(
    column: str,
    identifier: SafeHarborIdentifier | None,
    treatment: Treatment,
    method: DeidentificationMethod,
    options: ColumnPolicy | None = None,
) -> str | None:
    """Why ``method`` forbids ``treatment`` on ``column``, or None when it permits it.

    :param column: the source column's name.
    :param identifier: the column's Safe Harbor identifier, or None.
    :param treatment: the declared treatment.
    :param method: the policy's de-identification method.
    :param options: the column's declaration, whose options (age bands, top code) some treatments need
        judged too (:func:`option_refusal`); None judges the treatment alone.
    """
    permitted = permitted_treatments(identifier, method)
    if treatment not in permitted:
        assert identifier is not None
        allowed = ", ".join(sorted(permitted))
        reason = _NOT_SAFE_HARBOR_REASONS.get(treatment)
        because = f" because {reason}" if reason else ""
        return (
            f"column {column} holds identifier {identifier.letter} ({identifier.description}): treatment "
            f"'{treatment}' is not permitted under {method}{because}; use {allowed}"
        )
    if (
        method is DeidentificationMethod.LIMITED_DATA_SET
        and identifier is SafeHarborIdentifier.GEOGRAPHIC_SUBDIVISION
        and treatment is not Treatment.DROP
        and not is_town_or_zip(column)
    ):
        return (
            f"column {column} holds geographic information other than a town or city, State or ZIP code "
            "(a street address, county or geocode, by its name), which a limited data set removes "
            "(45 CFR 164.514(e)(2)(ii)); use drop, or keep only the town, State or ZIP code"
        )
    if (
        treatment is Treatment.YEAR
        and identifier is SafeHarborIdentifier.DATES
        and method is not DeidentificationMethod.LIMITED_DATA_SET
        and is_birth_date(column)
    ):
        return (
            f"column {column} is a birth date: 'year' would publish the birth year of people over 89, "
            f"which {method} suppresses (45 CFR 164.514(b)(2)(i)(C)); use birth-year or age"
        )
    if options is not None:
        return option_refusal(column, identifier, options, method)
    return None


def option_refusal(
    column: str,
    identifier: SafeHarborIdentifier | None,
    options: ColumnPolicy,
    method: DeidentificationMethod,
) -> str | None:
    """Why a treatment's options break Safe Harbor on ``column`` (or an expert determination, which permits
    what Safe Harbor does with these), or None.

    Age bands must put every age over 89 into one open top band, and a top code of an age must lie at 90 or
    below, since 164.514(b)(2)(i)(C) aggregates all ages over 89 into one category.

    :param column: the source column's name.
    :param identifier: the column's Safe Harbor identifier, or None.
    :param options: the column's declaration.
    :param method: the policy's de-identification method.
    """
    if method is DeidentificationMethod.LIMITED_DATA_SET or identifier is not SafeHarborIdentifier.DATES:
        return None
    treatment = options.treatment
    bands = options.age_bands
    if treatment is Treatment.AGE_BAND and bands is not None and not bands.safe_harbor_compatible:
        return (
            f"column {column}: age bands with an edge above 90 show ages over 89, which {method} puts in one "
            "category '90 or older' (45 CFR 164.514(b)(2)(i)(C)); end the edges at 90 or below"
        )
    if treatment is Treatment.TOP_BOTTOM_CODE and (options.top is None or options.top > 90):
        return (
            f"column {column} holds ages or dates (letter C): top coding must stop at 90 or below, so that "
            f"every age over 89 is one category under {method} (45 CFR 164.514(b)(2)(i)(C)); set 'top'"
        )
    return None


def record_refusals(deidentification: DeidentificationPolicy, purpose: str, as_of: date) -> list[str]:
    """Why the determination or agreement a policy rests on does not hold for a run at ``as_of``.

    An expert determination holds from the day it was made until it expires; a data use agreement from
    its signature until it expires, and only for the purposes it permits (164.514(e)(4)). A policy whose
    method needs a record and has none is refused here too, so that a run never rests on a record that
    nobody wrote down.

    :param deidentification: the policy's de-identification section.
    :param purpose: the policy's purpose.
    :param as_of: the run's reference date.
    """
    method = deidentification.method
    if method is DeidentificationMethod.EXPERT_DETERMINATION:
        record = deidentification.expert_determination
        if record is None:
            return [
                "the policy claims expert-determination but records no determination; add "
                "'expert_determination' (expert, determined, report, expires) under 'deidentification'"
            ]
        return _period_refusals("the expert determination", record.determined, record.expires, as_of)
    if method is DeidentificationMethod.LIMITED_DATA_SET:
        agreement = deidentification.data_use_agreement
        if agreement is None:
            return [
                "the policy claims limited-data-set but records no data use agreement; add "
                "'data_use_agreement' (id, parties, permitted_purposes, signed, expires) under "
                "'deidentification'"
            ]
        refusals = _period_refusals(
            f"data use agreement {agreement.id}", agreement.signed, agreement.expires, as_of
        )
        permitted = {purpose_code(permitted) for permitted in agreement.permitted_purposes}
        if purpose_code(purpose) not in permitted:
            refusals.append(
                f"data use agreement {agreement.id} does not permit the purpose {purpose} "
                f"(it permits {', '.join(agreement.permitted_purposes)}); 45 CFR 164.514(e)(4) limits "
                "the recipient to the agreement's purposes"
            )
        return refusals
    return []


def _period_refusals(what: str, start: date, expires: date | None, as_of: date) -> list[str]:
    if as_of < start:
        return [f"{what} dates from {start}, after the run's reference date {as_of}, so it cannot cover it"]
    if expires is not None and expires <= as_of:
        return [f"{what} expired on {expires}, at or before the run's reference date {as_of}; renew it"]
    return []
