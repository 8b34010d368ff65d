"""Synthetic inputs of the ``phi-guard`` command tests: a policy, an EHR-like extract with a canary in every
identifier column, and a consent registry, written where the command reads them."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: The reference date of every run unless a test says otherwise.
AS_OF = "2026-12-01"
PSEUDONYM_KEY = "cli-test-key-not-a-secret-0123456789"

MODEL_NAME = "cli-readmission-model"
MODEL_VERSION = "3"

POLICY = f"""\
name: cli-readmission
version: 2
purpose: model-training
model: {{name: {MODEL_NAME}, version: "{MODEL_VERSION}"}}
recipient: internal-ml-platform
subject: PATIENT
undeclared: refuse
consent:
  bases: [research-authorization, irb-waiver]
deidentification:
  method: expert-determination
  expert_determination:
    expert: "A. Expert, PhD (biostatistics)"
    determined: 2000-01-01
    report: ED-TEST-1
    expires: 2099-01-01
  zip3_vintage: census-2020
columns:
  PATIENT:   {{treatment: pseudonymize, as: PATIENT_KEY, justification: "groups encounters per patient"}}
  BIRTHDATE: {{treatment: age, as: AGE, justification: "predictor"}}
  ZIP:       {{treatment: zip3, as: ZIP3, justification: "region"}}
  START:     {{treatment: year, as: START_YEAR, justification: "season of the encounter"}}
  GENDER:    {{treatment: keep, justification: "predictor"}}
  NOTE:      {{treatment: keep, justification: "free text, scanned for identifiers"}}
  SSN:       {{treatment: drop, justification: "not needed"}}
  FIRST:     {{treatment: drop, justification: "not needed"}}
  LAST:      {{treatment: drop, justification: "not needed"}}
  ADDRESS:   {{treatment: drop, justification: "not needed"}}
  CITY:      {{treatment: drop, justification: "not needed"}}
  DRIVERS:   {{treatment: drop, justification: "not needed"}}
  PASSPORT:  {{treatment: drop, justification: "not needed"}}
"""

#: What POLICY lets through, as the audit must report it: (source column, Safe Harbor letter from
#: REGULATORY.md's table, treatment, output column). PATIENT is a unique identifying code (R), BIRTHDATE
#: and START dates (C), ZIP a geographic subdivision (B); GENDER and NOTE are no identifier by name.
REACHED = {
    ("PATIENT", "R", "pseudonymize", "PATIENT_KEY"),
    ("BIRTHDATE", "C", "age", "AGE"),
    ("ZIP", "B", "zip3", "ZIP3"),
    ("START", "C", "year", "START_YEAR"),
    ("GENDER", None, "keep", "GENDER"),
    ("NOTE", None, "keep", "NOTE"),
}

#: What POLICY drops, with letters from REGULATORY.md: names A, street and city B, SSN G, driver's
#: licence and passport numbers K.
STOPPED = {
    ("SSN", "G"),
    ("FIRST", "A"),
    ("LAST", "A"),
    ("ADDRESS", "B"),
    ("CITY", "B"),
    ("DRIVERS", "K"),
    ("PASSPORT", "K"),
}

#: The columns of the governed set under POLICY.
OUTPUT_COLUMNS = {output for _source, _letter, _treatment, output in REACHED}

#: A phone number (identifier D) planted in the kept free text of an admitted subject.
PLANTED_PHONE = "402-555-0143"

#: Every column is text except BIRTHDATE, a date in Parquet (CSV infers it).
_SUBJECTS = [
    # (subject id, birth date, ZIP+4, encounter start, gender)
    ("CANARY-SUBJ-0001", "1961-07-23", "68731-4402", "2019-03-14T08:15:00-05:00", "F"),
    ("CANARY-SUBJ-0002", "1936-12-15", "68504-1207", "2020-12-31T22:30:00-05:00", "M"),
    ("CANARY-SUBJ-0003", "1990-02-28", "02139-4307", "2021-05-02T10:00:00-05:00", "F"),
    ("CANARY-SUBJ-0004", "1975-05-05", "68801-5521", "2022-08-19T16:45:00-05:00", "M"),
    ("CANARY-SUBJ-0005", "1948-09-30", "68847-3310", "2023-01-07T07:20:00-05:00", "F"),
]

#: One row per permission, read at AS_OF (2026-12-01) by the issue's admission rules: 0001 (research
#: authorization) and 0002 (IRB waiver) are admitted; 0003's grant starts after AS_OF (not-yet-valid);
#: 0004 has only consent to treatment (basis-not-accepted); 0005 has no record (no-record).
CONSENT = """\
subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference
CANARY-SUBJ-0001,research-authorization,model-training;research,2020-01-01,,,CANARY-REF-0001
CANARY-SUBJ-0002,irb-waiver,model-training,2021-06-01,,,CANARY-REF-0002
CANARY-SUBJ-0003,research-authorization,model-training,2026-12-10,,,CANARY-REF-0003
CANARY-SUBJ-0004,treatment-consent,model-training,2020-01-01,,,CANARY-REF-0004
"""

#: The row counts of a published run at AS_OF, from the table above.
ROWS_AT_AS_OF = {
    "read": 5,
    "admitted": 2,
    "excluded": {"basis-not-accepted": 1, "no-record": 1, "not-yet-valid": 1},
    "suppressed": 0,
}


def source_rows() -> list[dict[str, str]]:
    """The extract, one encounter per subject, with a unique canary in every identifier column."""
    rows = []
    for number, (subject, birthdate, zip_code, start, gender) in enumerate(_SUBJECTS, start=1):
        rows.append(
            {
                "PATIENT": subject,
                "FIRST": f"Firstcanary{number:04d}",
                "LAST": f"Lastcanary{number:04d}",
                "SSN": f"999-4{number}-73{number:02d}",
                "DRIVERS": f"CANARY-DRIVERS-{number:04d}",
                "PASSPORT": f"CANARY-PASSPORT-{number:04d}",
                "BIRTHDATE": birthdate,
                "ADDRESS": f"CANARY-ADDRESS-{number:04d} Elm Street",
                "CITY": f"CANARY-CITY-{number:04d}",
                "ZIP": zip_code,
                "START": start,
                "GENDER": gender,
                "NOTE": f"CANARY-NOTE-{number:04d} stable on review",
            }
        )
    return rows


def with_phone(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows with a phone number in the kept NOTE of subject 0002, who is admitted at AS_OF."""
    return with_note(rows, f"CANARY-NOTE-0002 call back on {PLANTED_PHONE}")


def with_note(rows: list[dict[str, str]], note: str) -> list[dict[str, str]]:
    """The rows with ``note`` as the NOTE of subject 0002, who is admitted at AS_OF."""
    return [{**row, "NOTE": note} if row["PATIENT"] == "CANARY-SUBJ-0002" else row for row in rows]


def canaries(rows: Iterable[Mapping[str, str]]) -> set[str]:
    """Every planted value that must never leave the data: all identifier cells, the free text, and the
    consent registry's subject ids and references. GENDER is the only column left out (F and M would
    match any text)."""
    values = {value for row in rows for column, value in row.items() if column != "GENDER"}
    # the date part of the encounter timestamps too, which a leak could print on its own
    values |= {row["START"][:10] for row in rows}
    values |= {line.split(",")[-1] for line in CONSENT.splitlines()[1:]}
    values.add(PLANTED_PHONE)
    return values


def write_source(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write the extract as CSV (``.csv``) or Parquet (anything else); returns ``path``.

    :param path: where to write it.
    :param rows: the rows, all with the same columns.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return path
    columns = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        if name == "BIRTHDATE":
            columns[name] = pa.array([date.fromisoformat(value) for value in values], pa.date32())
        else:
            columns[name] = pa.array(values, pa.string())
    pq.write_table(pa.table(columns), path)
    return path


@dataclass(frozen=True)
class Workspace:
    """The files of one command run: inputs written by the test, outputs the command may write.

    The governed set has a folder of its own, so that a test can show nothing else was left in it.
    """

    root: Path

    @property
    def policy(self) -> Path:
        return self.root / "policy.yaml"

    @property
    def consent(self) -> Path:
        return self.root / "consent.csv"

    @property
    def output(self) -> Path:
        return self.root / "governed" / "training.parquet"

    @property
    def report(self) -> Path:
        return self.root / "records" / "report.json"

    @property
    def events(self) -> Path:
        return self.root / "records" / "events.jsonl"

    def source(self, suffix: str = ".csv") -> Path:
        return self.root / "extract" / f"encounters{suffix}"

    def write(
        self,
        *,
        suffix: str = ".csv",
        rows: list[dict[str, str]] | None = None,
        policy: str = POLICY,
        consent: str | None = CONSENT,
    ) -> Path:
        """Write the policy, the extract and the consent registry (unless None); returns the extract.

        :param suffix: ``.csv`` or ``.parquet``.
        :param rows: the extract's rows; :func:`source_rows` by default.
        :param policy: the policy text.
        :param consent: the registry text, or None to write none.
        """
        self.policy.write_text(policy, encoding="utf-8")
        if consent is not None:
            self.consent.write_text(consent, encoding="utf-8")
        return write_source(self.source(suffix), rows if rows is not None else source_rows())

    def apply_arguments(self, source: Path, *, without: tuple[str, ...] = (), **options: str) -> list[str]:
        """The arguments of ``phi-guard apply`` on this workspace, with a report and an event log.

        :param source: the extract.
        :param without: options to leave out, e.g. ``("--consent",)``.
        :param options: options to set or add, e.g. ``as_of="2026-12-20"`` for ``--as-of``.
        """
        given = {
            "--policy": str(self.policy),
            "--input": str(source),
            "--output": str(self.output),
            "--consent": str(self.consent),
            "--report": str(self.report),
            "--events": str(self.events),
            "--as-of": AS_OF,
        }
        given.update({"--" + option.replace("_", "-"): value for option, value in options.items()})
        arguments = ["apply"]
        for flag, value in given.items():
            if flag not in without:
                arguments += [flag, value]
        return arguments


def edited(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` replaced by ``new``; fails if ``old`` is not there exactly once."""
    assert text.count(old) == 1, f"{old!r} is not in the text exactly once"
    return text.replace(old, new)
