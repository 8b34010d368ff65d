"""Which treatment each de-identification method permits per identifier, from REGULATORY.md's tables."""

from __future__ import annotations

import pytest

from airflow_phi_guard.deid.methods import permitted_treatments, treatment_refusal
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier as I
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

PERMITTED = [
    # Safe Harbor, 164.514(b)(2): A and D to Q dropped; B dropped except ZIP3; C reduced to the year (ages
    # over 89 in one category); R dropped: a keyed pseudonym is derived from the person (164.514(c)).
    *[(M.SAFE_HARBOR, letter, {T.DROP}) for letter in DIRECT],
    (M.SAFE_HARBOR, I.GEOGRAPHIC_SUBDIVISION, {T.DROP, T.ZIP3}),
    (M.SAFE_HARBOR, I.DATES, {T.DROP, T.YEAR, T.AGE, T.BIRTH_YEAR}),
    (M.SAFE_HARBOR, I.OTHER_UNIQUE_IDENTIFIER, {T.DROP}),
    # Limited data set, 164.514(e): the 16 direct identifiers go; dates, town, State, ZIP and codes may stay.
    *[(M.LIMITED_DATA_SET, letter, {T.DROP}) for letter in DIRECT],
    (M.LIMITED_DATA_SET, I.GEOGRAPHIC_SUBDIVISION, EVERY),
    (M.LIMITED_DATA_SET, I.DATES, EVERY),
    (M.LIMITED_DATA_SET, I.OTHER_UNIQUE_IDENTIFIER, EVERY),
    # Expert determination, until the determination itself is recorded: Safe Harbor plus pseudonyms.
    *[(M.EXPERT_DETERMINATION, letter, {T.DROP}) for letter in DIRECT],
    (M.EXPERT_DETERMINATION, I.GEOGRAPHIC_SUBDIVISION, {T.DROP, T.ZIP3}),
    (M.EXPERT_DETERMINATION, I.DATES, {T.DROP, T.YEAR, T.AGE, T.BIRTH_YEAR}),
    (M.EXPERT_DETERMINATION, I.OTHER_UNIQUE_IDENTIFIER, {T.DROP, T.PSEUDONYMIZE}),
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
    ],
)
def test_treatment_refusal_names_column_letter_and_remedy(column, identifier, treatment, method, refused):
    reason = treatment_refusal(column, identifier, treatment, method)

    assert (reason is not None) == refused
    if refused:
        assert column in reason
        assert "use" in reason
