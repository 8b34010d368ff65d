"""The 18 Safe Harbor identifiers of 45 CFR 164.514(b)(2)(i), letters A to R, as one vocabulary."""

from __future__ import annotations

from enum import StrEnum


class SafeHarborIdentifier(StrEnum):
    """One of the 18 identifiers; the value is its letter in 164.514(b)(2)(i)."""

    NAMES = "A"
    GEOGRAPHIC_SUBDIVISION = "B"
    DATES = "C"
    TELEPHONE_NUMBER = "D"
    FAX_NUMBER = "E"
    EMAIL_ADDRESS = "F"
    SOCIAL_SECURITY_NUMBER = "G"
    MEDICAL_RECORD_NUMBER = "H"
    HEALTH_PLAN_BENEFICIARY_NUMBER = "I"
    ACCOUNT_NUMBER = "J"
    CERTIFICATE_OR_LICENSE_NUMBER = "K"
    VEHICLE_IDENTIFIER = "L"
    DEVICE_IDENTIFIER = "M"
    WEB_URL = "N"
    IP_ADDRESS = "O"
    BIOMETRIC_IDENTIFIER = "P"
    FULL_FACE_PHOTOGRAPH = "Q"
    OTHER_UNIQUE_IDENTIFIER = "R"

    @property
    def letter(self) -> str:
        return self.value

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


#: The identifiers under their letters, for tables that cite the regulation's letters (A names ... R codes).
A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, P, Q, R = SafeHarborIdentifier  # noqa: E741 - the rule's letters

_DESCRIPTIONS = {
    SafeHarborIdentifier.NAMES: "names",
    SafeHarborIdentifier.GEOGRAPHIC_SUBDIVISION: "geographic subdivisions smaller than a State",
    SafeHarborIdentifier.DATES: "dates (except year) related to the individual, and ages over 89",
    SafeHarborIdentifier.TELEPHONE_NUMBER: "telephone numbers",
    SafeHarborIdentifier.FAX_NUMBER: "fax numbers",
    SafeHarborIdentifier.EMAIL_ADDRESS: "email addresses",
    SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER: "social security numbers",
    SafeHarborIdentifier.MEDICAL_RECORD_NUMBER: "medical record numbers",
    SafeHarborIdentifier.HEALTH_PLAN_BENEFICIARY_NUMBER: "health plan beneficiary numbers",
    SafeHarborIdentifier.ACCOUNT_NUMBER: "account numbers",
    SafeHarborIdentifier.CERTIFICATE_OR_LICENSE_NUMBER: "certificate and license numbers",
    SafeHarborIdentifier.VEHICLE_IDENTIFIER: "vehicle identifiers and serial numbers, license plates",
    SafeHarborIdentifier.DEVICE_IDENTIFIER: "device identifiers and serial numbers",
    SafeHarborIdentifier.WEB_URL: "web URLs",
    SafeHarborIdentifier.IP_ADDRESS: "IP addresses",
    SafeHarborIdentifier.BIOMETRIC_IDENTIFIER: "biometric identifiers, including finger and voice prints",
    SafeHarborIdentifier.FULL_FACE_PHOTOGRAPH: "full-face photographs and comparable images",
    SafeHarborIdentifier.OTHER_UNIQUE_IDENTIFIER: (
        "any other unique identifying number, characteristic or code"
    ),
}
