"""The draft policy of ``phi-guard policy init``: the issue's treatment per identifier, a method consistent
with the treatments, the subject column, a file that refuses to load until every justification (and the
expert determination it claims) is written, and, once written, a policy that loads and that the plan
accepts.

Expected treatments come from the issue ("direct identifiers dropped, birth dates to age or birth-year,
other dates to year, ZIP to zip3, keys pseudonymised, the rest kept") and REGULATORY.md (a keyed pseudonym
is no 164.514(c) code, so output that keeps one is not Safe Harbor; an expert determination,
164.514(b)(1), is recorded by the expert, the date, the report reference and its expiry).
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_phi_guard.engine.plan import make_plan
from airflow_phi_guard.engine.source import open_source
from airflow_phi_guard.exceptions import PolicyError
from airflow_phi_guard.phi.detectors import Confidence, DetectorHit
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.inventory import ScanReport, decide_column
from airflow_phi_guard.policy.draft import PolicyDraft, draft_policy, init_policy
from airflow_phi_guard.policy.loader import load_policy, parse_policy
from airflow_phi_guard.policy.models import DeidentificationMethod, Treatment
from tests.conftest import SYNTHEA

G = SafeHarborIdentifier.SOCIAL_SECURITY_NUMBER
T = Treatment
SAFE_HARBOR = DeidentificationMethod.SAFE_HARBOR
EXPERT_DETERMINATION = DeidentificationMethod.EXPERT_DETERMINATION


def _report(schema: pa.Schema, hits: dict[str, list[DetectorHit]] | None = None) -> ScanReport:
    """A scan of ``schema`` decided by the real rule, from names and the given value hits."""
    hits = hits or {}
    columns = [
        decide_column(field.name, rows_scanned=10, values_scanned=10, hits=hits.get(field.name, ()))
        for field in schema
    ]
    return ScanReport(input="/data/extract.parquet", rows_scanned=10, sample_rows=None, columns=columns)


def _draft(schema: pa.Schema, **hits: list[DetectorHit]) -> PolicyDraft:
    return draft_policy(_report(schema, hits), schema)


#: What a reviewer writes into the empty entries of a draft's expert determination, from the report.
DETERMINATION = {
    "expert": '"A. Expert, PhD (biostatistics)"',
    "determined": "2026-01-15",
    "report": "ED-2026-001",
    "expires": "2099-01-01",
}


def _filled(text: str) -> str:
    """The draft with every justification written, and the determination it claims recorded, as a person
    would."""
    return _recorded(text.replace('justification: ""', 'justification: "written by the reviewer"'))


def _recorded(text: str, *, leave_empty: str | None = None) -> str:
    """The draft with the entries of its expert determination written, but for ``leave_empty``."""
    for key, value in DETERMINATION.items():
        if key != leave_empty:
            text = text.replace(f'    {key}: ""\n', f"    {key}: {value}\n")
    return text


@pytest.mark.parametrize(
    ("column", "field_type", "treatment"),
    [
        # Direct identifiers (164.514(e)(2), which Safe Harbor removes too) are dropped.
        ("FIRST", pa.string(), T.DROP),
        ("Full Name", pa.string(), T.DROP),
        ("SSN", pa.string(), T.DROP),
        ("DRIVERS", pa.string(), T.DROP),
        ("email", pa.string(), T.DROP),
        ("mrn", pa.int64(), T.DROP),
        # Birth dates become ages (90 or older one category); other dates their year.
        ("BIRTHDATE", pa.date32(), T.AGE),
        ("date_of_birth", pa.string(), T.AGE),
        ("DEATHDATE", pa.date32(), T.YEAR),
        ("START", pa.string(), T.YEAR),  # Synthea's timestamps, read as recorded text
        ("admission_date", pa.timestamp("s"), T.YEAR),
        # A date stored as a number is no date a date treatment reads (an age over 89 would pass): drop.
        ("age", pa.int32(), T.DROP),
        ("year_of_birth", pa.int32(), T.DROP),
        # ZIP codes become ZIP3; every other subdivision smaller than a State is dropped.
        ("ZIP", pa.int64(), T.ZIP3),
        ("patient_zip_code", pa.string(), T.ZIP3),
        ("postal_code", pa.string(), T.ZIP3),
        ("ZIP3", pa.string(), T.DROP),  # already three digits: zip3 reads ZIP codes, not prefixes
        ("ZIP", pa.float64(), T.DROP),  # no ZIP treatment reads floats
        ("CITY", pa.string(), T.DROP),
        ("ADDRESS", pa.string(), T.DROP),
        ("LAT", pa.float64(), T.DROP),
        # Keys are pseudonymized.
        ("PATIENT", pa.string(), T.PSEUDONYMIZE),
        ("ENCOUNTER", pa.string(), T.PSEUDONYMIZE),
        # The rest is kept, if the engine can scan it for identifiers.
        ("GENDER", pa.string(), T.KEEP),
        ("STATE", pa.string(), T.KEEP),
        ("INCOME", pa.int64(), T.KEEP),
        ("TOTAL_CLAIM_COST", pa.float64(), T.KEEP),
        ("CODE", pa.int64(), T.KEEP),
        ("tags", pa.list_(pa.string()), T.DROP),
    ],
)
def test_each_identifier_gets_the_issues_treatment(column, field_type, treatment):
    schema = pa.schema([(column, field_type)])
    assert _draft(schema).treatments() == {column: treatment}


def test_a_column_whose_values_reveal_an_identifier_is_dropped():
    schema = pa.schema([("NOTE", pa.string())])
    draft = _draft(
        schema, NOTE=[DetectorHit(detector="ssn", identifier=G, confidence=Confidence.HIGH, matches=1)]
    )

    assert draft.treatments() == {"NOTE": T.DROP}
    assert draft.columns[0].identifier is G
    assert "by its values (ssn 10% high)" in draft.columns[0].reason


@pytest.mark.parametrize(
    ("columns", "method"),
    [
        # A keyed pseudonym is derived from the identifier, no 164.514(c) code: not Safe Harbor.
        ({"PATIENT": pa.string(), "GENDER": pa.string()}, EXPERT_DETERMINATION),
        # Without keys every treatment is one Safe Harbor permits.
        ({"BIRTHDATE": pa.date32(), "ZIP": pa.string(), "SSN": pa.string()}, SAFE_HARBOR),
    ],
)
def test_the_method_follows_from_the_treatments(columns, method):
    assert _draft(pa.schema(list(columns.items()))).method is method


@pytest.mark.parametrize(
    ("columns", "subject", "note"),
    [
        # The key whose name says patient, person or member, wherever it is.
        (["Id", "START", "PATIENT", "ENCOUNTER"], "PATIENT", False),
        (["encounter_id", "person_id"], "person_id", False),
        (["visit_id", "member_uuid"], "member_uuid", False),
        # Otherwise the first key, with a comment asking a person to check it (Synthea's patients).
        (["Id", "BIRTHDATE"], "Id", True),
        # No key at all: none is guessed.
        (["BIRTHDATE", "GENDER"], None, True),
    ],
)
def test_the_subject_column(columns, subject, note):
    schema = pa.schema([(name, pa.date32() if name == "BIRTHDATE" else pa.string()) for name in columns])
    draft = _draft(schema)
    assert (draft.subject, draft.subject_note is not None) == (subject, note)


def test_a_key_of_a_type_that_holds_no_ids_is_not_the_subject():
    schema = pa.schema([("PATIENT", pa.float64()), ("encounter", pa.string())])
    assert _draft(schema).subject == "encounter"


class TestTheFile:
    @pytest.fixture
    def draft(self) -> PolicyDraft:
        schema = pa.schema([("PATIENT", pa.string()), ("BIRTHDATE", pa.date32()), ("GENDER", pa.string())])
        return _draft(schema)

    def test_it_does_not_load_and_the_error_names_the_first_empty_justification(self, draft):
        text = _recorded(draft.to_yaml())

        with pytest.raises(PolicyError) as raised:
            parse_policy(text, "draft.yaml")

        assert raised.value.key == "columns.PATIENT.justification"
        patient_line = next(
            number for number, line in enumerate(text.splitlines(), 1) if "  PATIENT:" in line
        )
        assert raised.value.line == patient_line

    def test_it_does_not_load_while_one_justification_is_empty(self, draft):
        text = _filled(draft.to_yaml()).replace(
            'GENDER: {treatment: keep, justification: "written by the reviewer"}',
            'GENDER: {treatment: keep, justification: ""}',
        )
        with pytest.raises(PolicyError) as raised:
            parse_policy(text)
        assert raised.value.key == "columns.GENDER.justification"

    def test_filled_in_it_loads_with_the_drafts_choices(self, draft, tmp_path):
        path = tmp_path / "policy.yaml"
        path.write_text(_filled(draft.to_yaml()), encoding="utf-8")

        policy = load_policy(path)

        assert {name: column.treatment for name, column in policy.columns.items()} == draft.treatments()
        assert (policy.subject, policy.deidentification.method) == ("PATIENT", EXPERT_DETERMINATION)
        assert policy.purpose == "model-training"
        assert policy.name == policy.model.name == "extract"  # from the file name /data/extract.parquet
        assert policy.undeclared == "refuse"

    def test_the_header_says_it_is_a_draft_and_what_to_write(self, draft):
        header = draft.to_yaml().split("\nname:")[0]
        assert header.startswith("# DRAFT")
        assert "3 `justification`" in header
        assert "no legal advice" in header
        assert all(line.startswith("#") or not line for line in header.splitlines())

    def test_each_column_has_a_comment_with_its_letter(self, draft):
        lines = draft.to_yaml().splitlines()
        for name, letter in (("PATIENT", "R"), ("BIRTHDATE", "C")):
            index = next(number for number, line in enumerate(lines) if line.startswith(f"  {name}:"))
            assert re.match(rf"  # {letter} by name", lines[index - 1])

    def test_without_a_subject_the_filled_draft_still_refuses_to_load(self):
        draft = _draft(pa.schema([("GENDER", pa.string())]))
        with pytest.raises(PolicyError) as raised:
            parse_policy(_filled(draft.to_yaml()))
        assert raised.value.key == "subject"

    @pytest.mark.parametrize(
        "name",
        [
            "dose[/day]",
            "a: b",
            "# not a comment",
            "NO",
            "ünïcode",
            'say "hi"',
            "x\ty",
            "123",
            "- item",
            "null",
        ],
    )
    def test_awkward_column_names_read_back_as_written(self, name):
        schema = pa.schema([("PATIENT", pa.string()), (name, pa.string())])
        policy = parse_policy(_filled(_draft(schema).to_yaml()))
        assert list(policy.columns) == ["PATIENT", name]

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("name", "yes"),
            ("name", "2026 model"),
            # a PurposeOfUse code with its system URL holds colons, which the YAML must keep as text
            ("purpose", "http://terminology.hl7.org/CodeSystem/v3-ActReason|MLTRAINING"),
            ("recipient", "true"),
            ("recipient", "vendor: labelling"),
        ],
    )
    def test_awkward_names_purposes_and_recipients_read_back_as_written(self, option, value):
        schema = pa.schema([("PATIENT", pa.string())])
        policy = parse_policy(_filled(draft_policy(_report(schema), schema, **{option: value}).to_yaml()))
        assert getattr(policy, option) == value


class TestTheExpertDetermination:
    """A draft that claims expert determination (164.514(b)(1)) carries the record the method needs, empty,
    so that it cannot load before the covered entity writes its expert's determination into it."""

    @pytest.fixture
    def text(self) -> str:
        schema = pa.schema([("PATIENT", pa.string()), ("BIRTHDATE", pa.date32())])
        draft = _draft(schema)
        assert draft.method is EXPERT_DETERMINATION
        return draft.to_yaml().replace('justification: ""', 'justification: "written by the reviewer"')

    def test_the_block_holds_the_four_records_of_the_rule_empty(self, text):
        # REGULATORY.md: the policy records the expert, the date, the report reference and its expiry.
        lines = text.splitlines()
        start = lines.index("  expert_determination:")
        entries = [
            line for line in lines[start + 1 :] if line.startswith("    ") and not line.startswith("    #")
        ]
        assert entries == ['    expert: ""', '    determined: ""', '    report: ""', '    expires: ""']
        assert lines[start - 1].startswith("  #")  # explained where it is written
        assert lines.index("  method: expert-determination") < start

    @pytest.mark.parametrize(
        "empty",
        [
            # each record the rule asks for, left unwritten, keeps the draft from loading
            "expert",
            "determined",
            "report",
            "expires",
        ],
    )
    def test_it_does_not_load_while_one_entry_is_empty(self, text, empty):
        recorded = _recorded(text, leave_empty=empty)

        with pytest.raises(PolicyError) as raised:
            parse_policy(recorded, "draft.yaml")

        assert raised.value.key == f"deidentification.expert_determination.{empty}"
        line = next(number for number, line in enumerate(recorded.splitlines(), 1) if f"    {empty}:" in line)
        assert raised.value.line == line

    def test_written_it_loads_with_the_determination(self, text):
        determination = parse_policy(_recorded(text)).deidentification.expert_determination

        assert determination is not None
        assert determination.model_dump(mode="json") == {
            "expert": "A. Expert, PhD (biostatistics)",
            "determined": "2026-01-15",
            "report": "ED-2026-001",
            "expires": "2099-01-01",
        }

    @pytest.mark.parametrize(
        ("key", "needs"),
        [
            ("expert", "qualification"),
            ("determined", "YYYY-MM-DD"),
            ("report", "document id or location"),
            ("expires", "YYYY-MM-DD"),
        ],
    )
    def test_the_comment_above_each_entry_says_what_it_needs(self, text, key, needs):
        lines = text.splitlines()
        index = lines.index(f'    {key}: ""')
        comment = []
        while lines[index - 1].startswith("    # "):
            index -= 1
            comment.insert(0, lines[index].removeprefix("    # "))
        assert needs in " ".join(comment)

    def test_the_comment_on_expires_tells_the_truth_about_deleting_it(self, text):
        # The model takes a determination without an end; the comment allows deleting the line for that.
        without_expiry = "\n".join(line for line in _recorded(text).splitlines() if "expires:" not in line)
        assert "Delete the line only when the determination sets no end" in " ".join(
            line.removeprefix("    # ") for line in text.splitlines()
        )
        assert parse_policy(without_expiry).deidentification.expert_determination.expires is None

    def test_the_header_names_it(self, text):
        header = text.split("\nname:")[0]
        assert "`expert_determination`" in header
        assert "164.514(b)(1)" in header

    def test_a_safe_harbor_draft_has_none(self):
        # The model refuses an expert determination under another method, so none is written.
        draft = _draft(pa.schema([("BIRTHDATE", pa.date32()), ("mrn", pa.string())]))
        assert draft.method is SAFE_HARBOR
        assert "expert_determination" not in draft.to_yaml()
        assert "expert determination" not in draft.to_write()


@pytest.mark.parametrize("table", ["patients", "encounters", "conditions"])
def test_a_completed_draft_of_the_synthea_files_passes_the_plan(table):
    path = SYNTHEA / f"{table}.csv"
    draft = init_policy(path)

    policy = parse_policy(_filled(draft.to_yaml()))
    plan = make_plan(policy, open_source(path).schema)

    assert plan.refusals == ()
    assert policy.deidentification.method is EXPERT_DETERMINATION  # every file has a key


def test_a_completed_safe_harbor_draft_passes_the_plan(tmp_path):
    path = tmp_path / "extract.parquet"
    table = pa.table(
        {
            "BIRTHDATE": pa.array([None], pa.date32()),
            "admission_date": pa.array(["2024-01-02"]),
            "ZIP": pa.array(["68504"]),
            "mrn": pa.array(["M1"]),
            "GENDER": pa.array(["F"]),
        }
    )
    pq.write_table(table, path)
    draft = init_policy(path)
    text = _filled(draft.to_yaml()).replace('subject: ""', "subject: mrn")

    policy = parse_policy(text)

    assert policy.deidentification.method is SAFE_HARBOR
    assert make_plan(policy, open_source(path).schema).refusals == ()


def test_the_draft_holds_no_value(tmp_path: Path):
    canaries = ["Zyxwanda913", "Qorvath477", "999-61-4417", "CANARY-MRN-0042", "q.canary@example.org"]
    path = tmp_path / "extract.parquet"
    pq.write_table(
        pa.table(
            {
                "PATIENT": ["CANARY-SUBJ-0001"],
                "FIRST": [canaries[0]],
                "LAST": [canaries[1]],
                "SSN": [canaries[2]],
                "mrn": [canaries[3]],
                "NOTE": [f"{canaries[0]} {canaries[4]} ssn {canaries[2]}"],
            }
        ),
        path,
    )

    text = init_policy(path).to_yaml()

    for canary in [*canaries, "CANARY-SUBJ-0001"]:
        assert canary not in text
        assert canary.lower() not in text.lower()
