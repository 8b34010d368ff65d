"""The policy models: which columns a purpose may use, how each is treated, and which consent admits a record.

A policy is a reviewable file per purpose and model. It is parsed into frozen pydantic models that refuse
unknown keys, so a typo in a treatment or a key is an error, never a silently ignored rule. The field
descriptions here feed the JSON Schema that editors and the docs use.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

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


class ConsentPolicy(_Frozen):
    """Which consent bases admit a record for this purpose."""

    bases: tuple[ConsentBasis, ...] = Field(
        min_length=1,
        description="Accepted bases; `treatment-consent` and `opt-out` are refused: neither admits.",
    )

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


class DeidentificationPolicy(_Frozen):
    """The de-identification route and the data it depends on."""

    method: DeidentificationMethod = Field(
        description="safe-harbor, expert-determination or limited-data-set."
    )
    zip3_vintage: Zip3Vintage = Field(
        default=Zip3Vintage.CENSUS_2020,
        description="Census vintage of the restricted ZIP3 list used by the `zip3` treatment.",
    )


class ColumnPolicy(_Frozen):
    """One allowlisted source column: its treatment and why the purpose needs it."""

    treatment: Treatment = Field(description="keep, drop, year, birth-year, age, zip3 or pseudonymize.")
    output_name: Name | None = Field(
        default=None, alias="as", description="Name of the output column; the source name by default."
    )
    justification: Name = Field(
        description="Why the purpose needs this column, or why it is dropped (minimum necessary, 164.514(d))."
    )

    @model_validator(mode="after")
    def _no_rename_of_dropped(self) -> ColumnPolicy:
        if self.treatment is Treatment.DROP and self.output_name is not None:
            raise ValueError("a dropped column has no output, so it takes no 'as'")
        return self


class Policy(_Frozen):
    """A minimum-necessary policy for one purpose and model."""

    name: Name = Field(description="Policy id.")
    version: int = Field(ge=1, description="Policy version; raise it with every change.")
    purpose: Name = Field(description="The use, matched against the purposes of consent records.")
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
