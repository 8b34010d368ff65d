"""The hash chain of the audit trail: records that each carry the previous record's digest, and their check.

A record is canonical JSON (keys sorted, no blanks, UTF-8) of its fields; its ``digest`` is the SHA-256 of
that text without the ``digest`` key, and its ``previous`` is the digest of the record before it (a fixed
genesis value for the first one), so that changing, removing, adding or moving a record breaks the digest
of that record or the link of the one after it. :func:`verify_records` names the place of every break by
record number (its line in a JSONL file, its row in a table) and sequence.

What the chain alone cannot show: a cut tail. Removing the last records leaves a shorter chain that is
still whole. Only a head kept elsewhere (the ``phiGuard_trail`` facet of a run's lineage, which records
the sequence and digest of the run's own record) shows it: a recorded head whose sequence is past the end
of the chain, or whose digest is not the chain's at that sequence, is reported by :func:`check_heads`.
Records appended after the last anchored head and then removed stay undetectable until the next anchor.

Records hold names, counts, digests and ids only; :func:`make_record` refuses any detail that is not a
name-like scalar or list of them, and the callers pass column names and counts, never a value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: The ``previous`` of the first record.
GENESIS = "sha256:" + "0" * 64

#: HIPAA's documentation retention in years, 45 CFR 164.530(j)(2).
RETENTION_YEARS = 6

#: The rule the retention metadata cites.
RETENTION_RULE = "45 CFR 164.530(j)"

TRAIL_FORMAT_VERSION = 1

DetailValue = str | int | float | bool | None | list[str]


class RecordKind(StrEnum):
    """Which decision a record is about."""

    GOVERNANCE_RUN = "governance-run"
    GATE_DECISION = "gate-decision"
    INFERENCE = "inference"


class TrailEntry(BaseModel):
    """What a caller records: one decision, before the chain gives it a place.

    :param kind: which decision.
    :param verdict: its outcome: ``published`` or ``refused`` for a run, ``passed`` or ``refused`` for a
        gate, ``logged`` for an inference batch.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: RecordKind
    verdict: str
    policy_digest: str | None = Field(default=None, description="The digest of the policy that decided.")
    input_fingerprint: str | None = Field(default=None, description="SHA-256 of the input dataset.")
    output_fingerprint: str | None = Field(default=None, description="SHA-256 of the output dataset.")
    counts: dict[str, int] = Field(default_factory=dict, description="Row counts by name.")
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    details: dict[str, DetailValue] = Field(
        default_factory=dict,
        description="Names and ids that belong to the kind (policy name, model, recipient, agreement, rule, "
        "identifier columns); never a value.",
    )


class TrailRecord(TrailEntry):
    """A record as the trail keeps it: the entry, its place in the chain and its retention."""

    format_version: int = TRAIL_FORMAT_VERSION
    sequence: int = Field(description="1 for the first record, then one more for each.")
    previous: str = Field(description="The digest of the record before, or the genesis value.")
    recorded_at: datetime = Field(description="When the record was appended, UTC.")
    retain_until: date = Field(description="The date before which the record must not be purged.")
    retention_rule: str = RETENTION_RULE
    digest: str = Field(description="SHA-256 of the record's canonical JSON without this key.")

    def to_line(self) -> str:
        """The record's canonical JSON, one line, as a JSONL store writes it."""
        return canonical_json(self.model_dump(mode="json"))


class TrailHead(BaseModel):
    """The last record of a chain, or the record a run's lineage names: sequence and digest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sequence: int
    digest: str


class TrailProblem(BaseModel):
    """One break in a chain, by place: the record number in the store and the sequence it claims."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    record: int = Field(description="1-based position in the store (line of a JSONL file, row of a table).")
    sequence: int | None = Field(description="The sequence the record claims, None when unreadable.")
    kind: str = Field(
        description="unreadable, edited, missing (deleted before it), inserted, reordered, broken-link, "
        "or, for anchors, head-missing (tail cut) or head-mismatch."
    )
    message: str

    def describe(self) -> str:
        where = f"record {self.record}" + (
            f" (sequence {self.sequence})" if self.sequence is not None else ""
        )
        return f"{where}: {self.kind}: {self.message}"


class TrailVerification(BaseModel):
    """The outcome of checking a chain: how many records, its head, and every problem found."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trail: str
    records: int
    head: TrailHead | None
    problems: list[TrailProblem] = Field(default_factory=list)
    anchors_checked: int = 0

    @property
    def intact(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """Lines for a terminal."""
        head = f"head sequence {self.head.sequence} {self.head.digest}" if self.head else "empty"
        lines = [
            f"audit trail {self.trail}: {self.records} record(s), {head}; "
            f"{self.anchors_checked} lineage head(s) checked; "
            + ("intact" if self.intact else f"{len(self.problems)} problem(s)")
        ]
        lines.extend(f"  {problem.describe()}" for problem in self.problems)
        return "\n".join(lines)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no blanks, the text every digest is taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_digest(fields: Mapping[str, Any]) -> str:
    """The digest of a record's JSON fields, without its ``digest`` key.

    :param fields: the record as JSON (``model_dump(mode="json")`` or a parsed line).
    """
    body = {key: value for key, value in fields.items() if key != "digest"}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def retain_until(recorded_at: datetime) -> date:
    """The day six years after ``recorded_at`` (28 February for a 29 February)."""
    day = recorded_at.date()
    try:
        return day.replace(year=day.year + RETENTION_YEARS)
    except ValueError:
        return day.replace(year=day.year + RETENTION_YEARS, day=28)


def make_record(entry: TrailEntry, head: TrailHead | None, *, at: datetime | None = None) -> TrailRecord:
    """The record that follows ``head`` in the chain.

    :param entry: what to record.
    :param head: the chain's last record, None for an empty chain.
    :param at: the time to record, UTC now by default.
    """
    recorded_at = (at or datetime.now(UTC)).astimezone(UTC)
    fields = entry.model_dump(mode="json") | {
        "format_version": TRAIL_FORMAT_VERSION,
        "sequence": head.sequence + 1 if head else 1,
        "previous": head.digest if head else GENESIS,
        "recorded_at": recorded_at.isoformat(),
        "retain_until": retain_until(recorded_at).isoformat(),
        "retention_rule": RETENTION_RULE,
    }
    # The digest is taken of the JSON the record will be written as, so a reader recomputes it exactly.
    fields = TrailRecord.model_validate(fields | {"digest": GENESIS}).model_dump(mode="json")
    return TrailRecord.model_validate(fields | {"digest": record_digest(fields)})


def parse_record(text: str) -> dict[str, Any] | None:
    """A stored record's fields, or None when the text is no record (never quoted in a message)."""
    try:
        fields = json.loads(text)
        if not isinstance(fields, dict):
            return None
        TrailRecord.model_validate(fields)
    except (ValueError, ValidationError):
        return None
    return fields


def verify_records(trail: str, stored: Iterable[str]) -> TrailVerification:
    """Check a chain in stored order and name every break.

    Each record's digest is recomputed (a mismatch means it was edited), and its ``sequence`` and
    ``previous`` are compared with the record stored before it. A sequence that repeats the one before
    means a record was inserted; a jump means records were deleted, unless the sequences skipped are stored
    further on, which means records were moved; a right sequence with the wrong link means the record
    before was replaced. After a break the check goes on from the record as found, so that later breaks
    are named too. Only sequence, digest and link of each record are held, not the records.

    :param trail: the trail's display name, for the result.
    :param stored: the records' texts in stored order.
    """
    problems: list[TrailProblem] = []
    links: list[tuple[int, int, str, str] | None] = []  # record number, sequence, digest, previous
    for number, text in enumerate(stored, start=1):
        fields = parse_record(text)
        if fields is None:
            problems.append(
                TrailProblem(record=number, sequence=None, kind="unreadable", message=_UNREADABLE)
            )
            links.append(None)
            continue
        sequence, claimed = int(fields["sequence"]), str(fields["digest"])
        if record_digest(fields) != claimed:
            problems.append(
                TrailProblem(
                    record=number,
                    sequence=sequence,
                    kind="edited",
                    message="its content does not match its digest: a field was changed after it was written",
                )
            )
        links.append((number, sequence, claimed, str(fields["previous"])))

    where: dict[int, int] = {}
    for link in links:
        if link is not None:
            where.setdefault(link[1], link[0])
    before: tuple[int, str] | None = None
    for link in links:
        if link is None:
            continue
        number, sequence, claimed, previous = link
        problem = _link_problem(number, sequence, previous, before, where)
        if problem is not None:
            problems.append(problem)
        before = (sequence, claimed)
    problems.sort(key=lambda item: item.record)
    head = TrailHead(sequence=before[0], digest=before[1]) if before else None
    return TrailVerification(trail=trail, records=len(links), head=head, problems=problems)


_UNREADABLE = "not a trail record (malformed JSON or fields); a torn write or an edit"


def _link_problem(
    record: int, sequence: int, link: str, before: tuple[int, str] | None, where: Mapping[int, int]
) -> TrailProblem | None:
    expected_sequence, expected_link = (before[0] + 1, before[1]) if before else (1, GENESIS)
    if sequence == expected_sequence and link == expected_link:
        return None

    def problem(kind: str, message: str) -> TrailProblem:
        return TrailProblem(record=record, sequence=sequence, kind=kind, message=message)

    if before is not None and sequence == before[0]:
        return problem("inserted", f"sequence {sequence} a second time: a record was inserted here or before")
    if sequence > expected_sequence:
        skipped = range(expected_sequence, sequence)
        later = [where[item] for item in skipped if where.get(item, 0) > record]
        if not later and all(item in where for item in skipped):
            # the skipped records are stored earlier: they were moved, and named where they stand
            return None
        if later:
            return problem(
                "reordered",
                f"it comes before sequence {expected_sequence}, which is stored later (record {min(later)}): "
                "records were moved",
            )
        return problem(
            "missing",
            f"{len(skipped)} record(s) missing before it (sequence {expected_sequence} to {sequence - 1}): "
            "deleted",
        )
    if sequence < expected_sequence:
        return problem("reordered", f"it comes after sequence {expected_sequence - 1}: records were moved")
    return problem(
        "broken-link",
        "its previous digest is not the digest of the record stored before it: that record was replaced, "
        "or one was inserted and the numbers rewritten",
    )


def check_heads(
    verification: TrailVerification, heads: Sequence[TrailHead], stored: Iterable[str]
) -> TrailVerification:
    """Check that every head a run's lineage recorded is in the chain, which shows a cut tail.

    :param verification: the chain's own check, from :func:`verify_records`.
    :param heads: the heads the lineage recorded.
    :param stored: the records' texts in stored order, again.
    """
    by_sequence: dict[int, tuple[int, str]] = {}
    for number, text in enumerate(stored, start=1):
        fields = parse_record(text)
        if fields is not None:
            by_sequence.setdefault(int(fields["sequence"]), (number, str(fields["digest"])))
    problems = list(verification.problems)
    last = verification.head.sequence if verification.head else 0
    for head in sorted(set(heads), key=lambda item: item.sequence):
        found = by_sequence.get(head.sequence)
        if found is None:
            problems.append(
                TrailProblem(
                    record=verification.records + 1 if head.sequence > last else 0,
                    sequence=head.sequence,
                    kind="head-missing",
                    message=(
                        f"a run's lineage recorded head sequence {head.sequence}, past the chain's last "
                        f"sequence {last}: the tail was cut"
                        if head.sequence > last
                        else f"a run's lineage recorded head sequence {head.sequence}, which the chain lacks"
                    ),
                )
            )
        elif found[1] != head.digest:
            problems.append(
                TrailProblem(
                    record=found[0],
                    sequence=head.sequence,
                    kind="head-mismatch",
                    message="a run's lineage recorded another digest for this sequence: the chain was "
                    "rewritten from here or before",
                )
            )
    return verification.model_copy(update={"problems": problems, "anchors_checked": len(set(heads))})
