"""The policy models: which columns a purpose may use, how each is treated, and which consent admits a record.

A policy is a reviewable file per purpose and model. It is parsed into frozen pydantic models that refuse
unknown keys, so a typo in a treatment or a key is an error, never a silently ignored rule. The field
descriptions here feed the JSON Schema that editors and the docs use.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from airflow_phi_guard.consent.purposes import is_known_purpose, vocabulary_hint
from airflow_phi_guard.deid.risk import BelowK, LDiversity, RiskThresholds

if TYPE_CHECKING:
    from airflow_phi_guard.deid.generalize import AgeBands
    from airflow_phi_guard.deid.treatments import DateReading

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Treatment(StrEnum):
    """What happens to a column's values on the way into the governed dataset."""

    KEEP = "keep"
    DROP = "drop"
    YEAR = "year"
    BIRTH_YEAR = "birth-year"
    AGE = "age"
    ZIP3 = "zip3"
    PSEUDONYMIZE = "pseudonymize"
    SURROGATE = "surrogate"
    AGE_BAND = "age-band"
    MONTH = "month"
    QUARTER = "quarter"
    STATE = "state"
    TOP_BOTTOM_CODE = "top-bottom-code"
    DATE_SHIFT = "date-shift"

    @property
    def changes_values(self) -> bool:
        """Whether the output values differ from the source values (OpenLineage ``masking``)."""
        return self not in (Treatment.KEEP, Treatment.DROP)


class ConsentBasis(StrEnum):
    """The permission a consent registry record grants, in the words of 45 CFR 164."""

    RESEARCH_AUTHORIZATION = "research-authorization"
    IRB_WAIVER = "irb-waiver"
    LIMITED_DATA_SET = "limited-data-set"
    HEALTH_CARE_OPERATIONS = "health-care-operations"
    BUSINESS_ASSOCIATE = "business-associate"
    TREATMENT_CONSENT = "treatment-consent"
    OPT_OUT = "opt-out"


#: Bases that can never admit a record for training: consent to treatment (164.506(b)) is no
#: permission to train, and an opt-out is an objection, not a grant.
NON_ADMITTING_BASES = frozenset({ConsentBasis.TREATMENT_CONSENT, ConsentBasis.OPT_OUT})


class DeidentificationMethod(StrEnum):
    """The de-identification route the output claims (45 CFR 164.514)."""

    SAFE_HARBOR = "safe-harbor"
    EXPERT_DETERMINATION = "expert-determination"
    LIMITED_DATA_SET = "limited-data-set"


class Zip3Vintage(StrEnum):
    """The Census vintage whose list of restricted three-digit ZIP prefixes applies."""

    CENSUS_2000 = "census-2000"
    CENSUS_2010 = "census-2010"
    CENSUS_2020 = "census-2020"


class UndeclaredColumns(StrEnum):
    """What to do with an input column that the allowlist does not name."""

    REFUSE = "refuse"
    DROP = "drop"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ModelReference(_Frozen):
    """The model the governed dataset is prepared for."""

    name: Name = Field(description="Model name, as the training task and the audit know it.")
    version: Name = Field(description="Model version, quoted in YAML so that 1.10 stays '1.10'.")

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class UuidCase(StrEnum):
    """Whether subject ids that are UUIDs compare without regard to case."""

    FOLD = "fold"
    EXACT = "exact"


class DigitIds(StrEnum):
    """How subject ids made only of digits compare."""

    TEXT = "text"
    INTEGER = "integer"


class SubjectIdNormalization(_Frozen):
    """How subject ids are made comparable; the dataset's subject column and the registry get the same.

    Ids are always trimmed of surrounding whitespace, and integer columns compare as their decimal text.
    """

    uuid_case: UuidCase = Field(
        default=UuidCase.FOLD,
        description="fold (default): an id in the 8-4-4-4-12 hex form of a UUID compares in lower case, "
        "since UUIDs are case-insensitive; exact: case matters.",
    )
    digits: DigitIds = Field(
        default=DigitIds.TEXT,
        description="text (default): an id of digits compares as written, so 00042 is not 42; integer: "
        "leading zeros are ignored, for a side that lost them to an integer column.",
    )

    @property
    def rule(self) -> str:
        """The normalisation as one value-free label, for the report."""
        return f"trim; uuid-case {self.uuid_case.value}; digits as {self.digits.value}"


class ConsentPolicy(_Frozen):
    """Which consent bases admit a record for this purpose."""

    bases: tuple[ConsentBasis, ...] = Field(
        min_length=1,
        description="Accepted bases; `treatment-consent` and `opt-out` are refused: neither admits.",
    )
    purposes_covering: tuple[Name, ...] = Field(
        default=(),
        description="Purposes (product names or HL7 v3 PurposeOfUse codes, such as HRESCH) whose records "
        "the policy also accepts as covering its purpose, beyond the vocabulary's narrow default.",
    )
    subject_ids: SubjectIdNormalization = Field(
        default_factory=SubjectIdNormalization,
        description="How subject ids of the dataset and of the registry are normalised before matching.",
    )

    @field_validator("purposes_covering")
    @classmethod
    def _known_purposes(cls, purposes: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [purpose for purpose in purposes if not is_known_purpose(purpose)]
        if unknown:
            raise ValueError(f"unknown purpose(s) {', '.join(unknown)}; {vocabulary_hint()}")
        return purposes

    @field_validator("bases")
    @classmethod
    def _only_admitting_bases(cls, bases: tuple[ConsentBasis, ...]) -> tuple[ConsentBasis, ...]:
        if ConsentBasis.TREATMENT_CONSENT in bases:
            raise ValueError(
                "'treatment-consent' is not a basis for model training: consent to treatment "
                "(45 CFR 164.506(b)) does not extend to it; accept research-authorization, irb-waiver, "
                "limited-data-set, health-care-operations or business-associate instead"
            )
        if ConsentBasis.OPT_OUT in bases:
            raise ValueError("'opt-out' is an objection, not a basis; it always excludes a record")
        if len(set(bases)) != len(bases):
            raise ValueError("a basis is listed twice")
        return bases


class SafeHarborAttestation(_Frozen):
    """A person's statement that the covered entity has no actual knowledge that the remaining information
    could identify an individual (45 CFR 164.514(b)(2)(ii)); software cannot make it."""

    by: Name = Field(description="Who makes the statement, with their role (e.g. 'J. Doe, Privacy Officer').")
    date: datetime.date = Field(description="When the statement was made.")
    statement: Name = Field(
        description="The statement itself, in the person's words, about this policy's output."
    )


class ExpertDetermination(_Frozen):
    """The expert determination a policy rests on (45 CFR 164.514(b)(1)): who made it, when, where it is
    written down, and until when it holds."""

    expert: Name = Field(description="The expert who made the determination, with their qualification.")
    determined: datetime.date = Field(description="When the determination was made.")
    report: Name = Field(description="Reference of the written determination (document id or location).")
    expires: datetime.date | None = Field(
        default=None,
        description="First day the determination no longer holds; determinations are usually time-limited.",
    )

    @model_validator(mode="after")
    def _expires_after_determined(self) -> ExpertDetermination:
        if self.expires is not None and self.expires <= self.determined:
            raise ValueError("'expires' must come after 'determined'")
        return self


class DataUseAgreement(_Frozen):
    """The data use agreement a limited data set is disclosed under (45 CFR 164.514(e)(4))."""

    id: Name = Field(description="The agreement's id.")
    parties: tuple[Name, ...] = Field(
        min_length=2, description="The parties: the covered entity and the recipient at least."
    )
    permitted_purposes: tuple[Name, ...] = Field(
        min_length=1,
        description="The uses the agreement permits (product purposes or HL7 v3 PurposeOfUse codes); the "
        "policy's purpose must be among them.",
    )
    signed: datetime.date = Field(description="When the agreement was signed.")
    expires: datetime.date | None = Field(default=None, description="First day it no longer holds.")

    @field_validator("permitted_purposes")
    @classmethod
    def _known_purposes(cls, purposes: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [purpose for purpose in purposes if not is_known_purpose(purpose)]
        if unknown:
            raise ValueError(f"unknown purpose(s) {', '.join(unknown)}; {vocabulary_hint()}")
        return purposes

    @model_validator(mode="after")
    def _expires_after_signed(self) -> DataUseAgreement:
        if self.expires is not None and self.expires <= self.signed:
            raise ValueError("'expires' must come after 'signed'")
        return self


class DeidentificationPolicy(_Frozen):
    """The de-identification route and the data it depends on."""

    method: DeidentificationMethod = Field(
        description="safe-harbor, expert-determination or limited-data-set."
    )
    zip3_vintage: Zip3Vintage = Field(
        default=Zip3Vintage.CENSUS_2020,
        description="Census vintage of the restricted ZIP3 list used by the `zip3` treatment.",
    )
    attestation: SafeHarborAttestation | None = Field(
        default=None,
        description="The statement of no actual knowledge that Safe Harbor also needs (164.514(b)(2)(ii)); "
        "without it a dataset that passes every check is reported as awaiting attestation.",
    )
    expert_determination: ExpertDetermination | None = Field(
        default=None,
        description="The determination an `expert-determination` policy rests on; required there.",
    )
    data_use_agreement: DataUseAgreement | None = Field(
        default=None, description="The agreement a `limited-data-set` policy discloses under; required there."
    )
    quasi_identifiers: tuple[Name, ...] = Field(
        default=(),
        description="Output columns someone could link to other sources to single a person out; with "
        "`k_min`, the run measures k-anonymity over them and refuses (or suppresses) classes below it.",
    )
    k_min: int | None = Field(
        default=None, ge=2, description="Fewest output rows every equivalence class must hold."
    )
    l_diversity: LDiversity | None = Field(
        default=None,
        description="Optional l-diversity: `sensitive` output columns and the `l_min` distinct values of "
        "each that every class must hold.",
    )
    below_k: BelowK = Field(
        default=BelowK.REFUSE,
        description="refuse (default): a class smaller than k_min refuses the run; suppress: its rows are "
        "removed and counted.",
    )
    date_shift_window_days: int | None = Field(
        default=None,
        ge=1,
        le=36525,
        description="For `date-shift` columns: each subject's dates move by the same non-zero number of days "
        "within plus or minus this window.",
    )

    @model_validator(mode="after")
    def _record_of_the_method(self) -> DeidentificationPolicy:
        method = self.method
        if method is DeidentificationMethod.EXPERT_DETERMINATION and self.expert_determination is None:
            raise ValueError(
                "an expert-determination policy records its determination: add 'expert_determination' "
                "(expert, determined, report, expires) under 'deidentification' (45 CFR 164.514(b)(1))"
            )
        if method is DeidentificationMethod.LIMITED_DATA_SET and self.data_use_agreement is None:
            raise ValueError(
                "a limited-data-set policy records its data use agreement: add 'data_use_agreement' (id, "
                "parties, permitted_purposes, signed, expires) under 'deidentification' "
                "(45 CFR 164.514(e)(4))"
            )
        if (
            method is not DeidentificationMethod.EXPERT_DETERMINATION
            and self.expert_determination is not None
        ):
            raise ValueError(
                f"'expert_determination' belongs to an expert-determination policy, not {method}"
            )
        if method is not DeidentificationMethod.LIMITED_DATA_SET and self.data_use_agreement is not None:
            raise ValueError(f"'data_use_agreement' belongs to a limited-data-set policy, not {method}")
        return self

    @model_validator(mode="after")
    def _risk_thresholds_complete(self) -> DeidentificationPolicy:
        if self.quasi_identifiers and self.k_min is None:
            raise ValueError("'quasi_identifiers' need 'k_min', the fewest rows every class must hold")
        if not self.quasi_identifiers and (
            self.k_min is not None or self.l_diversity is not None or "below_k" in self.model_fields_set
        ):
            raise ValueError("'k_min', 'l_diversity' and 'below_k' need 'quasi_identifiers' to measure over")
        self.risk_thresholds  # noqa: B018 - the thresholds' own checks (a column declared twice)
        return self

    @property
    def risk_thresholds(self) -> RiskThresholds | None:
        """The re-identification thresholds the run must meet, or None when the policy declares none."""
        if not self.quasi_identifiers or self.k_min is None:
            return None
        return RiskThresholds(
            quasi_identifiers=self.quasi_identifiers,
            k_min=self.k_min,
            l_diversity=self.l_diversity,
            below_k=self.below_k,
        )


#: Treatments that read a column's values as dates, and so take a ``dates`` reading.
DATE_TREATMENTS = frozenset(
    {
        Treatment.YEAR,
        Treatment.AGE,
        Treatment.BIRTH_YEAR,
        Treatment.MONTH,
        Treatment.QUARTER,
        Treatment.AGE_BAND,
        Treatment.DATE_SHIFT,
    }
)


class DateRules(_Frozen):
    """How a date column is read (``dates:`` of a column): the rules of
    :class:`~airflow_phi_guard.deid.treatments.DateReading`, declared per column, never guessed."""

    text_formats: tuple[Literal["iso-8601", "month-day-year", "day-month-year"], ...] = Field(
        default=("iso-8601",), min_length=1, description="Text formats read; ISO 8601 only by default."
    )
    two_digit_years: Literal["refuse", "not-after-reference", "cutoff"] = Field(
        default="refuse",
        description="refuse (default); not-after-reference: the latest century that puts the date on or "
        "before the reference date (birth dates); cutoff: the century that ends at two_digit_year_cutoff.",
    )
    two_digit_year_cutoff: int | None = Field(
        default=None, description="For two_digit_years: cutoff, the latest year a two-digit year can mean."
    )
    excel_serials: Literal["refuse", "excel-1900", "excel-1904"] = Field(
        default="refuse", description="Whether numbers in the column are spreadsheet serial dates, and which."
    )

    @model_validator(mode="after")
    def _readable(self) -> DateRules:
        from pydantic import ValidationError

        try:
            self.reading  # noqa: B018 - the reading's own consistency rules
        except ValidationError as error:
            raise ValueError("; ".join(detail["msg"] for detail in error.errors())) from None
        return self

    @property
    def reading(self) -> DateReading:
        """The treatments' reading of these rules."""
        # Imported here: the treatments import this module for Zip3Vintage.
        from airflow_phi_guard.deid.treatments import DateReading

        return DateReading.model_validate(self.model_dump())


class ColumnPolicy(_Frozen):
    """One allowlisted source column: its treatment and why the purpose needs it."""

    treatment: Treatment = Field(
        description="keep, drop, year, birth-year, age, age-band, month, quarter, date-shift, zip3, state, "
        "top-bottom-code, surrogate or pseudonymize."
    )
    output_name: Name | None = Field(
        default=None, alias="as", description="Name of the output column; the source name by default."
    )
    justification: Name = Field(
        description="Why the purpose needs this column, or why it is dropped (minimum necessary, 164.514(d))."
    )
    dates: DateRules | None = Field(
        default=None,
        description="For a treatment that reads dates: the text formats, two-digit year and serial number "
        "rules of this column; ISO 8601 only by default.",
    )
    bands: tuple[int, ...] | None = Field(
        default=None,
        description="For age-band: the ages that start each band, increasing; the last band is open "
        "([0, 18, 65, 90] gives 0-17, 18-64, 65-89, 90+).",
    )
    prefixes: bool = Field(
        default=False, description="For state: the values are already three-digit ZIP prefixes."
    )
    bottom: int | float | None = Field(
        default=None, description="For top-bottom-code: the lowest value published."
    )
    top: int | float | None = Field(
        default=None, description="For top-bottom-code: the highest value published."
    )
    namespace: Name | None = Field(
        default=None,
        description="For surrogate: the kind of identifier (such as patient), so that tables naming the same "
        "people share their codes.",
    )

    @model_validator(mode="after")
    def _no_rename_of_dropped(self) -> ColumnPolicy:
        if self.treatment is Treatment.DROP and self.output_name is not None:
            raise ValueError("a dropped column has no output, so it takes no 'as'")
        return self

    @model_validator(mode="after")
    def _options_of_the_treatment(self) -> ColumnPolicy:
        treatment = self.treatment
        owners = {
            "dates": DATE_TREATMENTS,
            "bands": {Treatment.AGE_BAND},
            "prefixes": {Treatment.STATE},
            "bottom": {Treatment.TOP_BOTTOM_CODE},
            "top": {Treatment.TOP_BOTTOM_CODE},
            "namespace": {Treatment.SURROGATE},
        }
        stray = [
            key
            for key, treatments in owners.items()
            if key in self.model_fields_set and treatment not in treatments
        ]
        if stray:
            raise ValueError(f"treatment '{treatment}' takes no {', '.join(repr(key) for key in stray)}")
        if treatment is Treatment.AGE_BAND:
            if self.bands is None:
                raise ValueError(
                    "age-band needs 'bands', the ages that start each band (e.g. [0, 18, 65, 90])"
                )
            self.age_bands  # noqa: B018 - the bands' own checks
        if treatment is Treatment.TOP_BOTTOM_CODE:
            if self.top is None and self.bottom is None:
                raise ValueError("top-bottom-code needs 'top', 'bottom' or both")
            if self.top is not None and self.bottom is not None and self.bottom > self.top:
                raise ValueError("'bottom' lies above 'top'")
        if treatment is Treatment.SURROGATE and self.namespace is None:
            raise ValueError("surrogate needs 'namespace', the kind of identifier (e.g. patient)")
        return self

    @property
    def age_bands(self) -> AgeBands | None:
        """The declared bands of an age-band column, or None."""
        if self.bands is None:
            return None
        from pydantic import ValidationError

        from airflow_phi_guard.deid.generalize import AgeBands

        try:
            return AgeBands(edges=self.bands)
        except ValidationError as error:
            raise ValueError("; ".join(detail["msg"] for detail in error.errors())) from None

    @property
    def date_reading(self) -> DateReading:
        """How the column's dates are read: its ``dates`` rules, or ISO 8601 only."""
        from airflow_phi_guard.deid.treatments import ISO_DATES

        return self.dates.reading if self.dates is not None else ISO_DATES


class Policy(_Frozen):
    """A minimum-necessary policy for one purpose and model."""

    name: Name = Field(description="Policy id.")
    version: int = Field(ge=1, description="Policy version; raise it with every change.")
    purpose: Name = Field(
        description="The use: a product purpose such as model-training, or an HL7 v3 PurposeOfUse code; "
        "consent records cover it when their purposes map onto a code that covers it."
    )
    model: ModelReference = Field(description="The model trained on the governed dataset.")
    recipient: Name = Field(description="Who receives the governed dataset.")
    subject: Name = Field(description="The column that names the individual; consent is checked on it.")
    undeclared: UndeclaredColumns = Field(
        default=UndeclaredColumns.REFUSE,
        description="What to do with input columns the allowlist does not name: refuse (default) or drop.",
    )
    consent: ConsentPolicy
    deidentification: DeidentificationPolicy
    columns: dict[Name, ColumnPolicy] = Field(
        min_length=1,
        description="The allowlist: every source column the purpose may read, with its treatment.",
    )

    @field_validator("purpose")
    @classmethod
    def _known_purpose(cls, purpose: str) -> str:
        if not is_known_purpose(purpose):
            raise ValueError(f"unknown purpose; {vocabulary_hint()}")
        return purpose

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.subject not in self.columns:
            raise ValueError(
                f"the subject column '{self.subject}' must be declared under 'columns' with its treatment"
            )
        outputs = [self.output_name(source) for source in self.columns]
        clashes = sorted({name for name in outputs if name is not None and outputs.count(name) > 1})
        if clashes:
            raise ValueError(
                f"two columns would be written as {', '.join(clashes)}; give one a different 'as'"
            )
        if self.uses(Treatment.DATE_SHIFT) and self.deidentification.date_shift_window_days is None:
            raise ValueError(
                "date-shift columns need 'date_shift_window_days' under 'deidentification', the window "
                "each subject's shift is drawn from"
            )
        return self

    def output_name(self, source: str) -> str | None:
        """The output column of a declared source column, or None when it is dropped."""
        column = self.columns[source]
        if column.treatment is Treatment.DROP:
            return None
        return column.output_name or source

    def uses(self, treatment: Treatment) -> bool:
        """Whether any declared column takes ``treatment``."""
        return any(column.treatment is treatment for column in self.columns.values())

    @property
    def digest(self) -> str:
        """A SHA-256 of the policy's content, independent of the file's layout and comments."""
        canonical = json.dumps(
            self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
        )
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
