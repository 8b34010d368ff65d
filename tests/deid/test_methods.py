"""Which treatment each de-identification method permits per identifier, from REGULATORY.md's tables."""

from __future__ import annotations

import pytest

from airflow_phi_guard.deid.methods import permitted_treatments, treatment_refusal
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier as I
from airflow_phi_guard.policy.models import ColumnPolicy
from airflow_phi_guard.policy.models import DeidentificationMethod as M
from airflow_phi_guard.policy.models import Treatment as T  # noqa: N817

EVERY = set(T)
DIRECT = [
    I.NAMES,
    I.TELEPHONE_NUMBER,
    I.FAX_NUMBER,
    I.EMAIL_ADDRESS,
    I.SOCIAL_SECURITY_NUMBER,
    I.MEDICAL_RECORD_NUMBER,
    I.HEALTH_PLAN_BENEFICIARY_NUMBER,
    I.ACCOUNT_NUMBER,
    I.CERTIFICATE_OR_LICENSE_NUMBER,
    I.VEHICLE_IDENTIFIER,
    I.DEVICE_IDENTIFIER,
    I.WEB_URL,
    I.IP_ADDRESS,
    I.BIOMETRIC_IDENTIFIER,
    I.FULL_FACE_PHOTOGRAPH,
]

CODE_OR_DROP = {T.DROP, T.SURROGATE}
SAFE_HARBOR_DATES = {T.DROP, T.YEAR, T.AGE, T.BIRTH_YEAR, T.AGE_BAND, T.TOP_BOTTOM_CODE}

PERMITTED = [
    # Safe Harbor, 164.514(b)(2): A and D to Q dropped or replaced by a 164.514(c) code (a random surrogate
    # kept in a private mapping); B dropped except ZIP3 or the State; C reduced to the year, an age of at
    # most 89 (ages over 89 one category) or its band, or top-coded; R dropped or a surrogate code: a keyed
    # pseudonym is derived from the person, so it is no 164.514(c) code. A surrogate is no place or date.
    *[(M.SAFE_HARBOR, letter, CODE_OR_DROP) for letter in DIRECT],
    (M.SAFE_HARBOR, I.GEOGRAPHIC_SUBDIVISION, {T.DROP, T.ZIP3, T.STATE}),
    (M.SAFE_HARBOR, I.DATES, SAFE_HARBOR_DATES),
    (M.SAFE_HARBOR, I.OTHER_UNIQUE_IDENTIFIER, CODE_OR_DROP),
    # Limited data set, 164.514(e): the 16 direct identifiers go; dates, town, State, ZIP and codes may stay.
    *[(M.LIMITED_DATA_SET, letter, CODE_OR_DROP) for letter in DIRECT],
    (M.LIMITED_DATA_SET, I.GEOGRAPHIC_SUBDIVISION, EVERY),
    (M.LIMITED_DATA_SET, I.DATES, EVERY),
    (M.LIMITED_DATA_SET, I.OTHER_UNIQUE_IDENTIFIER, EVERY),
    # Expert determination: Safe Harbor plus pseudonyms, months, quarters and date shifts, which the
    # recorded determination is there to cover.
    *[(M.EXPERT_DETERMINATION, letter, CODE_OR_DROP) for letter in DIRECT],
    (M.EXPERT_DETERMINATION, I.GEOGRAPHIC_SUBDIVISION, {T.DROP, T.ZIP3, T.STATE}),
    (M.EXPERT_DETERMINATION, I.DATES, SAFE_HARBOR_DATES | {T.MONTH, T.QUARTER, T.DATE_SHIFT}),
    (M.EXPERT_DETERMINATION, I.OTHER_UNIQUE_IDENTIFIER, {T.DROP, T.SURROGATE, T.PSEUDONYMIZE}),
    # a column that is no identifier takes any treatment under any method
    *[(method, None, EVERY) for method in M],
]


@pytest.mark.parametrize(("method", "identifier", "expected"), PERMITTED)
def test_permitted_treatments(method, identifier, expected):
    assert permitted_treatments(identifier, method) == expected


def test_every_letter_has_a_row_for_every_method():
    covered = {(method, identifier) for method, identifier, _ in PERMITTED}
    assert covered == {(method, identifier) for method in M for identifier in [*I, None]}


@pytest.mark.parametrize(
    ("column", "identifier", "treatment", "method", "refused"),
    [
        ("FIRST", I.NAMES, T.KEEP, M.EXPERT_DETERMINATION, True),
        ("SSN", I.SOCIAL_SECURITY_NUMBER, T.PSEUDONYMIZE, M.LIMITED_DATA_SET, True),
        ("PATIENT", I.OTHER_UNIQUE_IDENTIFIER, T.PSEUDONYMIZE, M.SAFE_HARBOR, True),
        ("PATIENT", I.OTHER_UNIQUE_IDENTIFIER, T.PSEUDONYMIZE, M.EXPERT_DETERMINATION, False),
        ("LAT", I.GEOGRAPHIC_SUBDIVISION, T.KEEP, M.SAFE_HARBOR, True),
        # the year of a birth date indicates an age over 89 for some people: Safe Harbor suppresses it
        ("BIRTHDATE", I.DATES, T.YEAR, M.SAFE_HARBOR, True),
        ("date_of_birth", I.DATES, T.YEAR, M.EXPERT_DETERMINATION, True),
        ("BIRTHDATE", I.DATES, T.BIRTH_YEAR, M.SAFE_HARBOR, False),
        ("BIRTHDATE", I.DATES, T.YEAR, M.LIMITED_DATA_SET, False),  # dates may stay in a limited data set
        ("START", I.DATES, T.YEAR, M.SAFE_HARBOR, False),
        ("BIRTHDATE", I.DATES, T.KEEP, M.SAFE_HARBOR, True),
        # a limited data set keeps town or city, State and ZIP code, and no other postal address
        # information or geocode (164.514(e)(2)(ii))
        ("CITY", I.GEOGRAPHIC_SUBDIVISION, T.KEEP, M.LIMITED_DATA_SET, False),
        ("patient_zip", I.GEOGRAPHIC_SUBDIVISION, T.KEEP, M.LIMITED_DATA_SET, False),
        ("postal_code", I.GEOGRAPHIC_SUBDIVISION, T.ZIP3, M.LIMITED_DATA_SET, False),
        ("Town", I.GEOGRAPHIC_SUBDIVISION, T.KEEP, M.LIMITED_DATA_SET, False),
        ("ADDRESS", I.GEOGRAPHIC_SUBDIVISION, T.KEEP, M.LIMITED_DATA_SET, True),
        ("street_name", I.GEOGRAPHIC_SUBDIVISION, T.KEEP, M.LIMITED_DATA_SET, True),
        ("COUNTY", I.GEOGRAPHIC_SUBDIVISION, T.KEEP, M.LIMITED_DATA_SET, True),
        ("LAT", I.GEOGRAPHIC_SUBDIVISION, T.KEEP, M.LIMITED_DATA_SET, True),
        ("ADDRESS", I.GEOGRAPHIC_SUBDIVISION, T.DROP, M.LIMITED_DATA_SET, False),
        # a surrogate code meets 164.514(c) for any code-like identifier, never for a place or a date
        ("PATIENT", I.OTHER_UNIQUE_IDENTIFIER, T.SURROGATE, M.SAFE_HARBOR, False),
        ("MRN", I.MEDICAL_RECORD_NUMBER, T.SURROGATE, M.SAFE_HARBOR, False),
        ("ZIP", I.GEOGRAPHIC_SUBDIVISION, T.SURROGATE, M.SAFE_HARBOR, True),
        ("START", I.DATES, T.SURROGATE, M.SAFE_HARBOR, True),
        # a State is no subdivision smaller than a State; months, quarters and shifted dates keep elements
        # of a date other than the year, so they serve expert determination only
        ("ZIP", I.GEOGRAPHIC_SUBDIVISION, T.STATE, M.SAFE_HARBOR, False),
        ("START", I.DATES, T.MONTH, M.SAFE_HARBOR, True),
        ("START", I.DATES, T.QUARTER, M.SAFE_HARBOR, True),
        ("START", I.DATES, T.DATE_SHIFT, M.SAFE_HARBOR, True),
        ("START", I.DATES, T.MONTH, M.EXPERT_DETERMINATION, False),
        ("START", I.DATES, T.DATE_SHIFT, M.EXPERT_DETERMINATION, False),
        ("START", I.DATES, T.DATE_SHIFT, M.LIMITED_DATA_SET, False),
        ("BIRTHDATE", I.DATES, T.AGE_BAND, M.SAFE_HARBOR, False),
    ],
)
def test_treatment_refusal_names_column_letter_and_remedy(column, identifier, treatment, method, refused):
    reason = treatment_refusal(column, identifier, treatment, method)

    assert (reason is not None) == refused
    if refused:
        assert column in reason
        assert "use" in reason


@pytest.mark.parametrize(
    ("treatment", "reason"),
    [
        (T.PSEUDONYMIZE, "164.514(c)"),
        (T.MONTH, "other than the year"),
        (T.QUARTER, "other than the year"),
        (T.DATE_SHIFT, "keeps a day and a month"),
    ],
)
def test_a_treatment_that_is_never_safe_harbor_is_refused_with_its_reason(treatment, reason):
    column, identifier = (
        ("PATIENT", I.OTHER_UNIQUE_IDENTIFIER) if treatment is T.PSEUDONYMIZE else ("START", I.DATES)
    )
    refusal = treatment_refusal(column, identifier, treatment, M.SAFE_HARBOR)

    assert refusal is not None and reason in refusal


def _column(**declaration) -> ColumnPolicy:
    return ColumnPolicy.model_validate({"justification": "j", **declaration})


@pytest.mark.parametrize(
    ("column", "declaration", "method", "refused"),
    [
        # 164.514(b)(2)(i)(C): every age over 89 in one category, so the open top band starts at 90 or below
        ("BIRTHDATE", {"treatment": "age-band", "bands": [0, 18, 65, 90]}, M.SAFE_HARBOR, False),
        ("BIRTHDATE", {"treatment": "age-band", "bands": [0, 65]}, M.SAFE_HARBOR, False),
        ("BIRTHDATE", {"treatment": "age-band", "bands": [0, 18, 65, 90, 95]}, M.SAFE_HARBOR, True),
        ("AGE", {"treatment": "age-band", "bands": [0, 18, 65, 100]}, M.EXPERT_DETERMINATION, True),
        ("AGE", {"treatment": "age-band", "bands": [0, 18, 65, 100]}, M.LIMITED_DATA_SET, False),
        # top coding an age: at 90 or below, every age over 89 is one category
        ("AGE", {"treatment": "top-bottom-code", "top": 90}, M.SAFE_HARBOR, False),
        ("AGE", {"treatment": "top-bottom-code", "top": 85, "bottom": 18}, M.SAFE_HARBOR, False),
        ("AGE", {"treatment": "top-bottom-code", "top": 95}, M.SAFE_HARBOR, True),
        ("AGE", {"treatment": "top-bottom-code", "bottom": 18}, M.SAFE_HARBOR, True),
        ("AGE", {"treatment": "top-bottom-code", "top": 95}, M.LIMITED_DATA_SET, False),
        # a number that is no age or date is no identifier: any bound will do
        ("INCOME", {"treatment": "top-bottom-code", "top": 250000}, M.SAFE_HARBOR, False),
    ],
)
def test_options_that_break_safe_harbor_are_refused(column, declaration, method, refused):
    from airflow_phi_guard.phi.names import identify_column

    reason = treatment_refusal(
        column, identify_column(column), T(declaration["treatment"]), method, _column(**declaration)
    )

    assert (reason is not None) == refused
    if refused:
        assert column in reason and "164.514(b)(2)(i)(C)" in reason
