"""Builds the labelled evaluation set of the value-scan benchmark from the bundled Synthea data and notes.

The set is one JSON line per text value, with the spans that the construction put into it: every span
names its kind (``ssn``, ``loinc``...) and its Safe Harbor letter, or no letter for a planted hard
negative. Labels come from the construction, never from running a detector, so that the benchmark
measures both tools against the same truth.

Two parts make the set:

- values of the Synthea columns whose values say what they are (SSNs, dates, timestamps, street
  addresses, the UUID keys of patients and encounters) and of the columns that must stay silent
  (SNOMED codes, descriptions, amounts of money, demographic codes);
- generated clinical notes that mix Synthea facts (names, addresses, dates, conditions) with planted
  identifiers of every letter the product detects by value, in their common written forms, and with
  the hard negatives that trap pattern matchers (UUIDs, SNOMED and LOINC codes, NDC codes, money,
  ``A1c``, ``H1``, ``B43``, impossible dates, digit groups that no NANP number can have).

``python benchmarks/labelled_set.py`` rewrites ``benchmarks/data/labelled-values.jsonl``;
``--check`` only compares and fails when the committed file is not what the generator makes. The output
depends on nothing but this file and the Synthea CSVs: one seeded generator, sorted samples, fixed
key order, ``\\n`` line ends and UTF-8.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import string
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPOSITORY = BENCHMARKS.parent
SYNTHEA = REPOSITORY / "data" / "synthea-nebraska"
LABELLED_SET = BENCHMARKS / "data" / "labelled-values.jsonl"

SEED = 164514
NOTES = 3000
ENCOUNTER_ROWS = 500
CONDITION_ROWS = 400

#: The medical record number format of the fictional hospital behind the notes. MRNs have no national
#: format; a policy declares its own, and the benchmark declares this one to the product (as an RE2
#: pattern). Presidio gets no such declaration: the benchmark runs its predefined recognizers only.
MRN_PATTERN = r"NMC-[0-9]{7}"

NEWLINE = b"\n"


# The Synthea columns kept, with the kind and letter of a whole value (letter None: a hard negative).
# Left out on purpose: names, cities, counties, bare ZIPs, FIPS codes, geocodes, licence and passport
# columns, and the organisation, provider and payer UUIDs. A value there does not say what it is (68504
# could be an amount, Lincoln a surname); the by-name scan decides those columns, and its tests cover
# them. The provider UUIDs identify no person, and no value detector can tell them from a patient's.
_SYNTHEA_COLUMNS: dict[str, dict[str, tuple[str, str | None]]] = {
    "patients": {
        "Id": ("uuid", "R"),
        "BIRTHDATE": ("date", "C"),
        "DEATHDATE": ("date", "C"),
        "SSN": ("ssn-never-issued", "G"),
        "ADDRESS": ("street-address", "B"),
        "MARITAL": ("demographic-code", None),
        "RACE": ("demographic-code", None),
        "ETHNICITY": ("demographic-code", None),
        "GENDER": ("demographic-code", None),
        "HEALTHCARE_EXPENSES": ("money", None),
        "HEALTHCARE_COVERAGE": ("money", None),
        "INCOME": ("money", None),
    },
    "encounters": {
        "Id": ("uuid", "R"),
        "START": ("timestamp", "C"),
        "STOP": ("timestamp", "C"),
        "PATIENT": ("uuid", "R"),
        "ENCOUNTERCLASS": ("encounter-class", None),
        "CODE": ("snomed", None),
        "DESCRIPTION": ("description", None),
        "BASE_ENCOUNTER_COST": ("money", None),
        "TOTAL_CLAIM_COST": ("money", None),
        "PAYER_COVERAGE": ("money", None),
        "REASONCODE": ("snomed", None),
        "REASONDESCRIPTION": ("description", None),
    },
    "conditions": {
        "START": ("date", "C"),
        "STOP": ("date", "C"),
        "PATIENT": ("uuid", "R"),
        "ENCOUNTER": ("uuid", "R"),
        "CODE": ("snomed", None),
        "DESCRIPTION": ("description", None),
    },
}

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# Area codes in service (Nebraska and its neighbours first); exchanges are drawn from 200-999.
_AREA_CODES = ("402", "531", "308", "712", "605", "785", "816", "303", "212", "312", "415", "617")
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "clinic.example.org")
_URL_HOSTS = ("portal.example.org", "www.example.com", "records.example-health.org", "example.net")
# Real LOINC codes with their check digit, the usual lab panel of an EHR extract.
_LOINC = ("4548-4", "2345-7", "718-7", "8480-6", "8462-4", "39156-5", "2093-3", "2571-8", "29463-7", "8302-2")
_ICD10 = ("E11.9", "I10", "J45.909", "E78.5", "F32.9", "N18.3", "K21.9", "M54.5")
_CPT = ("99213", "99214", "93000", "80053", "85025", "71046")
_VIN_WMI = ("1HG", "1FT", "2T1", "3VW", "JHM", "5YJ", "1G1", "WBA", "4T1", "KMH")
_VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_VIN_VALUES = {
    **{str(digit): digit for digit in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_YEARS = "ABCDEFGHJKLMNPRSTVWXY123456789"
_MBI_LETTERS = "ACDEFGHJKMNPQRTUVWXY"
_FILLER = (
    "No acute distress.",
    "Patient reports improved sleep.",
    "Plan: continue current medication.",
    "Follow up in clinic as scheduled.",
    "Denies chest pain or shortness of breath.",
    "Tolerating diet well.",
    "Reviewed medication list with the patient.",
    "Vital signs stable.",
)


@dataclass
class _Note:
    """A text under construction that records the span and label of each planted part."""

    parts: list[str] = field(default_factory=list)
    spans: list[dict[str, object]] = field(default_factory=list)
    length: int = 0

    def text(self, words: str) -> None:
        self.parts.append(words)
        self.length += len(words)

    def planted(self, value: str, kind: str, letter: str | None) -> None:
        self.spans.append(
            {"start": self.length, "end": self.length + len(value), "letter": letter, "kind": kind}
        )
        self.text(value)

    def trap(self, value: str, kind: str) -> None:
        self.planted(value, kind, None)


@dataclass(frozen=True)
class _Patient:
    """The Synthea facts that a note about one patient can mention."""

    prefix: str
    first: str
    last: str
    birthdate: date
    ssn: str
    drivers: str
    passport: str
    address: str
    city: str
    zip_code: str
    encounter_dates: tuple[date, ...]
    encounter_ids: tuple[str, ...]


def build_rows(synthea: Path = SYNTHEA, seed: int = SEED) -> list[dict[str, object]]:
    """The labelled set, in its order: the Synthea values, then the notes.

    :param synthea: the folder of the Synthea CSVs (``patients.csv``, ``encounters.csv``,
        ``conditions.csv``).
    :param seed: the generator's seed; the committed set uses :data:`SEED`, another seed draws a fresh set
        of the same make, to check that detectors were not tuned to the committed one.
    :returns: one dict per value with ``id``, ``source``, ``column``, ``text`` and ``spans``.
    """
    tables = {name: _read_csv(synthea / f"{name}.csv") for name in _SYNTHEA_COLUMNS}
    sampling = random.Random(f"{seed}-sample")
    samples = {
        "patients": list(range(len(tables["patients"]))),
        "encounters": sorted(sampling.sample(range(len(tables["encounters"])), ENCOUNTER_ROWS)),
        "conditions": sorted(sampling.sample(range(len(tables["conditions"])), CONDITION_ROWS)),
    }

    rows = []
    for table, columns in _SYNTHEA_COLUMNS.items():
        for index in samples[table]:
            record = tables[table][index]
            for column, (kind, letter) in columns.items():
                value = record[column]
                if value:
                    spans = [{"start": 0, "end": len(value), "letter": letter, "kind": kind}]
                    rows.append(_row(f"{table}:{column}:{index}", f"synthea:{table}", column, value, spans))

    patients = _patients(tables)
    descriptions = sorted({record["DESCRIPTION"] for record in tables["conditions"]})
    snomed_codes = sorted({record["CODE"] for record in tables["conditions"]})
    writing = random.Random(f"{seed}-notes")
    for number in range(NOTES):
        note = _write_note(writing, writing.choice(patients), descriptions, snomed_codes)
        rows.append(_row(f"note:{number}", "generated:note", "NOTE", "".join(note.parts), note.spans))
    return rows


def render(rows: Sequence[dict[str, object]]) -> bytes:
    """The JSON lines of ``rows``, exactly as committed."""
    lines = (json.dumps(row, ensure_ascii=False, separators=(",", ":")) for row in rows)
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def read_rows(path: Path = LABELLED_SET) -> list[dict[str, object]]:
    """The rows of a labelled set file, in its order."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the labelled set, or with ``--check`` compare it with what the generator makes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=LABELLED_SET)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when they differ")
    parser.add_argument("--seed", type=int, default=SEED, help="another seed draws a held-out set")
    arguments = parser.parse_args(argv)

    content = render(build_rows(seed=arguments.seed))
    if arguments.check:
        current = arguments.output.is_file() and arguments.output.read_bytes() == content
        print(f"{arguments.output}: {'up to date' if current else 'differs from the generator'}")
        return 0 if current else 1
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_bytes(content)
    print(f"wrote {arguments.output}: {content.count(NEWLINE)} values, {len(content)} bytes")
    return 0


def _row(
    row_id: str, source: str, column: str, text: str, spans: list[dict[str, object]]
) -> dict[str, object]:
    return {"id": row_id, "source": source, "column": column, "text": text, "spans": spans}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as lines:
        return list(csv.DictReader(lines))


def _patients(tables: dict[str, list[dict[str, str]]]) -> list[_Patient]:
    """The patients with the dates and ids of their encounters, in file order."""
    encounters: dict[str, list[dict[str, str]]] = {}
    for record in tables["encounters"]:
        encounters.setdefault(record["PATIENT"], []).append(record)

    patients = []
    for record in tables["patients"]:
        own = encounters.get(record["Id"], [])
        patients.append(
            _Patient(
                prefix=record["PREFIX"],
                first=record["FIRST"],
                last=record["LAST"],
                birthdate=date.fromisoformat(record["BIRTHDATE"]),
                ssn=record["SSN"],
                drivers=record["DRIVERS"],
                passport=record["PASSPORT"],
                address=record["ADDRESS"],
                city=record["CITY"],
                # Synthea's placeholder 00000 is no ZIP code; such a patient's address goes without one.
                zip_code="" if record["ZIP"] == "00000" else record["ZIP"],
                encounter_dates=tuple(date.fromisoformat(e["START"][:10]) for e in own),
                encounter_ids=tuple(e["Id"] for e in own),
            )
        )
    return patients


# ---- notes ----------------------------------------------------------------------------------------------

_Sentence = Callable[[_Note, random.Random, _Patient], None]


def _write_note(rng: random.Random, patient: _Patient, descriptions: list[str], codes: list[str]) -> _Note:
    """One note of one to four sentences; a quarter of the notes hold hard negatives and filler only."""
    note = _Note()
    negatives_only = rng.random() < 0.25
    for position in range(rng.randint(1, 4)):
        if position:
            note.text(" ")
        roll = rng.random()
        if not negatives_only and roll < 0.55:
            sentence = rng.choices(_IDENTIFIER_SENTENCES, weights=[w for _, w in _IDENTIFIER_WEIGHTS])[0]
            sentence(note, rng, patient)
        elif roll < 0.8:
            rng.choice(_TRAP_SENTENCES)(note, rng, codes)
        else:
            _clinical_sentence(note, rng, descriptions)
    return note


def _clinical_sentence(note: _Note, rng: random.Random, descriptions: list[str]) -> None:
    if rng.random() < 0.5:
        note.text(rng.choice(_FILLER))
    else:
        note.text(f"{rng.choice(('Assessed for', 'History of', 'Seen for'))} {rng.choice(descriptions)}.")


def _name_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    # Names are labelled (letter A) but not scored: without a language model neither tool reads them.
    note.text(rng.choice(("Patient ", "Seen today: ", "Discussed with ")))
    name = f"{patient.first} {patient.last}"
    note.planted(f"{patient.prefix} {name}" if patient.prefix and rng.random() < 0.5 else name, "name", "A")
    note.text(".")


def _ssn_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    note.text(rng.choice(("SSN ", "SSN: ", "Social security number ", "SS# ")))
    roll = rng.random()
    if roll < 0.2:
        note.planted(patient.ssn, "ssn-never-issued", "G")
    elif roll < 0.85:
        area, group, serial = _ssn_parts(rng)
        separator = rng.choice(("-", "-", "-", " "))
        note.planted(f"{area}{separator}{group}{separator}{serial}", "ssn", "G")
    else:
        area, group, serial = _ssn_parts(rng)
        note.planted(f"{area}{group}{serial}", "ssn-unseparated", "G")
    note.text(" on file.")


def _ssn_parts(rng: random.Random) -> tuple[str, str, str]:
    """An SSN of valid structure: area 001-899 without 666, group 01-99, serial 0001-9999."""
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


def _phone_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    note.text(rng.choice(("Call back at ", "Phone ", "Cell: ", "Daughter can be reached at ")))
    number, kind = _nanp_number(rng)
    note.planted(number, kind, "D")
    note.text(".")


def _fax_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    note.text(rng.choice(("Fax ", "Fax: ", "Records faxed to ", "Send referral by fax to ")))
    number, _ = _nanp_number(rng)
    note.planted(number, "fax", "E")
    note.text(".")


def _nanp_number(rng: random.Random) -> tuple[str, str]:
    """A NANP number in one of its written forms, and its kind (unseparated digits are their own kind)."""
    area = rng.choice(_AREA_CODES)
    exchange = rng.choice([e for e in range(200, 1000) if e % 100 != 11])
    line = f"{rng.randint(0, 9999):04d}"
    forms = (
        (f"({area}) {exchange}-{line}", "phone"),
        (f"{area}-{exchange}-{line}", "phone"),
        (f"{area}.{exchange}.{line}", "phone"),
        (f"+1 {area} {exchange} {line}", "phone"),
        (f"1-{area}-{exchange}-{line}", "phone"),
        (f"+1{area}{exchange}{line}", "phone-e164"),
        (f"{area}{exchange}{line}", "phone-unseparated"),
    )
    return rng.choices(forms, weights=(3, 3, 1, 1, 1, 1, 1))[0]


def _email_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    note.text(rng.choice(("Email ", "Contact: ", "Prefers email at ", "Portal login ")))
    local = f"{_letters(patient.first)}.{_letters(patient.last)}"
    if rng.random() < 0.4:
        local += str(rng.randint(1, 99))
    note.planted(f"{local.lower()}@{rng.choice(_EMAIL_DOMAINS)}", "email", "F")
    note.text(".")


def _letters(name: str) -> str:
    # Mailboxes are ASCII here (María becomes maria): internationalised addresses are rare in EHR data.
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return "".join(character for character in ascii_name if character.isalpha())


def _url_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    note.text(rng.choice(("See ", "Results posted at ", "Uploaded photo: ", "Link ")))
    host = rng.choice(_URL_HOSTS)
    path = rng.choice((f"/patient/{rng.randint(10000, 99999)}", "/chart/summary", f"/p/{_token(rng, 8)}", ""))
    scheme = rng.choice(("https://", "http://", "https://", ""))
    if not scheme and not host.startswith("www."):
        scheme = "https://"
    note.planted(f"{scheme}{host}{path}", "url", "N")
    note.text(" for details.")


def _token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(length))


def _ip_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    note.text(rng.choice(("Portal session from ", "Device reported from IP ", "Login from ")))
    if rng.random() < 0.75:
        first = rng.choice((10, 172, 192, 203, 198, 64))
        note.planted(
            f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "ipv4", "O"
        )
    else:
        groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
        text = (
            ":".join(["2001", "db8", *groups[2:]])
            if rng.random() < 0.5
            else f"2001:db8::{groups[6]}:{groups[7]}"
        )
        note.planted(text, "ipv6", "O")
    note.text(".")


def _date_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    if patient.encounter_dates and rng.random() < 0.6:
        note.text(rng.choice(("Seen on ", "Last visit ", "Admitted ", "Discharged ")))
        note.planted(_written_date(rng, rng.choice(patient.encounter_dates)), "date", "C")
    else:
        note.text(rng.choice(("DOB ", "Date of birth: ", "Born ")))
        note.planted(_written_date(rng, patient.birthdate), "date", "C")
    note.text(".")


def _written_date(rng: random.Random, day: date) -> str:
    month = _MONTHS[day.month - 1]
    forms = (
        f"{day.month:02d}/{day.day:02d}/{day.year}",
        f"{day.month}/{day.day}/{day.year}",
        f"{day.month}/{day.day}/{day.year % 100:02d}",
        day.isoformat(),
        f"{day.month:02d}-{day.day:02d}-{day.year}",
        f"{month} {day.day}, {day.year}",
        f"{month[:3]} {day.day}, {day.year}",
        f"{day.day} {month} {day.year}",
        f"{day.day} {month[:3]} {day.year}",
    )
    return rng.choice(forms)


def _address_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    note.text(rng.choice(("Lives at ", "Home address: ", "Mailing address ")))
    state = rng.choice(("NE", "Nebraska"))
    if patient.zip_code and rng.random() < 0.3:
        zip_code = f"{patient.zip_code}-{rng.randint(1, 9999):04d}"
    else:
        zip_code = patient.zip_code
    # The city is a subdivision smaller than a State (B); the State itself may stay.
    if rng.random() < 0.8:
        note.planted(patient.address, "street-address", "B")
        note.text(", ")
    note.planted(patient.city, "city", "B")
    note.text(f", {state}")
    if zip_code:
        note.text(" ")
        note.planted(zip_code, "zip-in-address", "B")
    note.text(".")


def _mrn_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    note.text(rng.choice(("MRN ", "MRN: ", "Chart ", "Record number ")))
    note.planted(f"NMC-{rng.randint(0, 9_999_999):07d}", "mrn", "H")
    note.text(".")


def _mbi_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    note.text(rng.choice(("Medicare ID ", "MBI ", "Medicare number: ")))
    mbi = _mbi(rng)
    note.planted(f"{mbi[:4]}-{mbi[4:7]}-{mbi[7:]}" if rng.random() < 0.5 else mbi, "mbi", "I")
    note.text(".")


def _mbi(rng: random.Random) -> str:
    """A Medicare Beneficiary Identifier of the CMS format: C A AN N A AN N A A N N."""
    digit, letter, either = "0123456789", _MBI_LETTERS, "0123456789" + _MBI_LETTERS
    positions = ("123456789", letter, either, digit, letter, either, digit, letter, letter, digit, digit)
    return "".join(rng.choice(characters) for characters in positions)


def _card_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    note.text(rng.choice(("Paid with card ", "Card number ", "Billing card on file: ")))
    prefix, length = rng.choice((("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("6011", 16), ("37", 15)))
    number = _luhn_complete(
        prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    )
    separator = rng.choice((" ", "-", ""))
    if length == 16:
        text = separator.join(number[i : i + 4] for i in range(0, 16, 4))
    else:
        text = separator.join((number[:4], number[4:10], number[10:]))
    note.planted(text, "payment-card", "J")
    note.text(".")


def _luhn_complete(body: str) -> str:
    """``body`` with the Luhn check digit appended."""
    total = 0
    for position, character in enumerate(reversed(body)):
        value = int(character) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str((10 - total % 10) % 10)


def _vin_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    note.text(rng.choice(("Vehicle VIN ", "Injured in car, VIN: ", "VIN ")))
    note.planted(_vin(rng), "vin", "L")
    note.text(".")


def _vin(rng: random.Random) -> str:
    """A 17-character VIN whose ninth character is the ISO 3779 / 49 CFR 565 check digit."""
    characters = [
        *rng.choice(_VIN_WMI),
        *(rng.choice(_VIN_ALPHABET) for _ in range(5)),
        "0",
        rng.choice(_VIN_YEARS),
        rng.choice(_VIN_ALPHABET),
        *(rng.choice("0123456789") for _ in range(6)),
    ]
    remainder = sum(_VIN_VALUES[c] * w for c, w in zip(characters, _VIN_WEIGHTS, strict=True)) % 11
    characters[8] = "X" if remainder == 10 else str(remainder)
    return "".join(characters)


def _device_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    if rng.random() < 0.6:
        note.text(rng.choice(("Glucose monitor MAC ", "Pump paired, MAC address ", "Home hub MAC ")))
        octets = [f"{rng.randint(0, 255):02x}" for _ in range(6)]
        form = rng.choice((":", "-", "."))
        if form == ".":
            text = ".".join("".join(octets[i : i + 2]) for i in range(0, 6, 2))
        else:
            text = form.join(octets)
        note.planted(text.upper() if rng.random() < 0.5 else text, "mac-address", "M")
    else:
        note.text(rng.choice(("Pacemaker serial number ", "Insulin pump S/N ", "Device serial no. ")))
        serial = "".join(rng.choice(string.ascii_uppercase) for _ in range(3)) + str(
            rng.randint(100000, 999999)
        )
        note.planted(serial, "device-serial", "M")
    note.text(".")


def _licence_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    # Synthea's own licence and passport numbers, in a sentence that says what they are.
    if patient.drivers and (not patient.passport or rng.random() < 0.5):
        note.text(rng.choice(("Driver's license ", "Driver license number ")))
        note.planted(patient.drivers, "drivers-license", "K")
    elif patient.passport:
        note.text("Passport ")
        note.planted(patient.passport, "passport", "K")
    else:
        note.text("No driver's license")
    note.text(" verified at registration.")


def _key_sentence(note: _Note, rng: random.Random, patient: _Patient) -> None:
    # UUIDs are unique codes (R) and hard negatives for every other letter: their digit groups are no
    # phone or SSN.
    if patient.encounter_ids and rng.random() < 0.7:
        note.text("Encounter ")
        note.planted(rng.choice(patient.encounter_ids), "uuid", "R")
    else:
        note.text("Order ")
        note.planted(_uuid(rng), "uuid", "R")
    note.text(" closed.")


def _uuid(rng: random.Random) -> str:
    hexadecimal = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    return "-".join(
        (hexadecimal[:8], hexadecimal[8:12], hexadecimal[12:16], hexadecimal[16:20], hexadecimal[20:])
    )


_IDENTIFIER_WEIGHTS: tuple[tuple[_Sentence, int], ...] = (
    (_name_sentence, 2),
    (_ssn_sentence, 3),
    (_phone_sentence, 3),
    (_fax_sentence, 2),
    (_email_sentence, 2),
    (_url_sentence, 2),
    (_ip_sentence, 2),
    (_date_sentence, 4),
    (_address_sentence, 3),
    (_mrn_sentence, 2),
    (_mbi_sentence, 2),
    (_card_sentence, 2),
    (_vin_sentence, 2),
    (_device_sentence, 2),
    (_licence_sentence, 1),
    (_key_sentence, 2),
)
_IDENTIFIER_SENTENCES = [sentence for sentence, _ in _IDENTIFIER_WEIGHTS]


# ---- hard negatives ---------------------------------------------------------------------------------


def _loinc_trap(note: _Note, rng: random.Random, codes: list[str]) -> None:
    note.text(rng.choice(("Lab LOINC ", "Ordered LOINC ", "Result for ")))
    note.trap(rng.choice(_LOINC), "loinc")
    note.text(f" is {rng.randint(40, 160) / 10:.1f}.")


def _snomed_trap(note: _Note, rng: random.Random, codes: list[str]) -> None:
    note.text(rng.choice(("SNOMED ", "Problem code ", "Coded as ")))
    note.trap(rng.choice(codes), "snomed")
    note.text(".")


def _lab_name_trap(note: _Note, rng: random.Random, codes: list[str]) -> None:
    choice = rng.randrange(3)
    if choice == 0:
        note.trap("A1c", "a1c")
        note.text(f" {rng.randint(50, 120) / 10:.1f}% today.")
    elif choice == 1:
        note.text("Started ")
        note.trap("H1", "h1")
        note.text(" blocker for urticaria.")
    else:
        note.text("Transferred to bed ")
        note.trap("B43", "b43")
        note.text(".")


def _money_trap(note: _Note, rng: random.Random, codes: list[str]) -> None:
    amount = rng.randint(100, 2_500_000) / 100
    text = rng.choice((f"${amount:,.2f}", f"USD {amount:.2f}", f"{amount:.2f} dollars", f"${amount:.2f}"))
    note.text(rng.choice(("Charge ", "Copay ", "Claim total ")))
    note.trap(text, "money")
    note.text(".")


def _impossible_date_trap(note: _Note, rng: random.Random, codes: list[str]) -> None:
    year = rng.randint(2000, 2025)
    choice = rng.randrange(3)
    if choice == 0:
        text = f"{year}-{rng.randint(13, 19)}-{rng.randint(1, 28):02d}"
    elif choice == 1:
        text = f"{rng.randint(13, 19)}/{rng.randint(1, 28):02d}/{year}"
    else:
        text = f"{year}-{rng.choice(('02-30', '02-31', '04-31', '06-31', '09-31', '11-31'))}"
    note.text("Form field value ")
    note.trap(text, "impossible-date")
    note.text(" rejected.")


def _not_a_phone_trap(note: _Note, rng: random.Random, codes: list[str]) -> None:
    # Ten digits in phone groups whose first group starts with 0 or 1: no NANP area code does.
    first = f"{rng.choice('01')}{rng.randint(0, 99):02d}"
    note.text(rng.choice(("Lot ", "Kit lot number ", "Batch ")))
    note.trap(f"{first}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}", "not-a-nanp-number")
    note.text(".")


def _ndc_trap(note: _Note, rng: random.Random, codes: list[str]) -> None:
    # A national drug code in the 5-4-2 form, whose first nine digits look like a ZIP+4.
    note.text("Dispensed NDC ")
    note.trap(f"{rng.randint(0, 99999):05d}-{rng.randint(0, 9999):04d}-{rng.randint(0, 99):02d}", "ndc")
    note.text(".")


def _measurement_trap(note: _Note, rng: random.Random, codes: list[str]) -> None:
    choice = rng.randrange(5)
    if choice == 0:
        note.text("BP ")
        note.trap(f"{rng.randint(95, 180)}/{rng.randint(55, 110)}", "blood-pressure")
        note.text(" mmHg.")
    elif choice == 1:
        note.text(f"Metformin {rng.choice((500, 850, 1000))} mg twice daily, weight ")
        note.trap(f"{rng.randint(450, 1300) / 10:.1f}", "measurement")
        note.text(" kg.")
    elif choice == 2:
        note.text("ICD-10 ")
        note.trap(rng.choice(_ICD10), "icd10")
        note.text(".")
    elif choice == 3:
        note.text("Billed CPT ")
        note.trap(rng.choice(_CPT), "cpt")
        note.text(".")
    else:
        note.text("Pain ")
        note.trap(f"{rng.randint(0, 10)}/10", "pain-score")
        note.text(f", room {rng.randint(100, 499)}.")


_TRAP_SENTENCES: tuple[Callable[[_Note, random.Random, list[str]], None], ...] = (
    _loinc_trap,
    _snomed_trap,
    _lab_name_trap,
    _money_trap,
    _impossible_date_trap,
    _not_a_phone_trap,
    _ndc_trap,
    _measurement_trap,
)


if __name__ == "__main__":
    sys.exit(main())
