"""The PHI inventory of a dataset: one verdict per column, from its name and its values, and the scan report.

Evidence comes from three sources: the column's name (:func:`~airflow_phi_guard.phi.names.identify_column`),
the value detectors (:func:`~airflow_phi_guard.phi.detectors.detect_column`, as match rates over the
non-empty values scanned) and the dataset's own identifier values found in its free text
(:class:`~airflow_phi_guard.phi.known.KnownValues`). :func:`decide_column` combines them by one rule:

1. **The name decides when it classifies.** ``SSN`` is G even though every Synthea SSN starts with 999, an
   area the SSA never issues; the name says what the column is meant to hold, and its values cannot
   overrule that (confidence high).
2. **Otherwise the values decide**, in two ways. A column *is* an identifier when the share of its
   non-empty values that match reaches :data:`DECIDING_RATE`; it *contains* one when any value holds a
   high-confidence match (a validated SSN in a note, a patient's name copied into it), since one such
   value is PHI that a kept column may not carry. Low- and medium-confidence matches below the rate are
   kept as evidence and runner-up but decide nothing.
3. **Among the candidates that decide**, a column-wide one comes before a partial one, then the higher
   confidence, then the higher rate; but a form that contains another wins over it whatever their rates
   (:data:`CONTAINS`): an email address contains a domain that reads as a URL, so an email column is F
   even though its values match the URL detector too, more often when some addresses are malformed.
   Counts of detectors that agree are never added up: five weak patterns do not outvote one validated
   match.
4. **Values never decide R.** A UUID or other code says nothing of whose code it is: Synthea's
   ``PROVIDER`` and ``PAYER`` hold UUIDs that identify clinicians and payers, not the patient. A code is
   R by its name (``PATIENT``, ``person_id``), or when a known patient key is found in another column.

The verdict keeps the runner-up (the best candidate of another identifier) and every piece of evidence:
detector names, identifier letters, match rates and counts, never a value.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from airflow_phi_guard.arrow_types import holds_text
from airflow_phi_guard.exceptions import DataProcessingError
from airflow_phi_guard.phi.detectors import DETECTORS, Confidence, DetectorHit, ValueDetector, detect_column
from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier
from airflow_phi_guard.phi.known import SEARCHED_IDENTIFIERS, KnownValues
from airflow_phi_guard.phi.names import identify_column

log = logging.getLogger(__name__)

_I = SafeHarborIdentifier

#: The share of a column's non-empty values that must match for the values alone to say what the column
#: is. Half: a phone column with some numbers in unusual forms is still a phone column, while a code
#: column in which a few codes happen to look like something else is not.
DECIDING_RATE = 0.5

#: Forms that contain another identifier's form: a value of the key usually matches the detectors of
#: the identifiers it maps to as well, so between two column-wide candidates of equal confidence the
#: containing one is the column's identifier, whichever matched more values.
CONTAINS: dict[SafeHarborIdentifier, frozenset[SafeHarborIdentifier]] = {
    _I.EMAIL_ADDRESS: frozenset({_I.WEB_URL}),  # alice@example.org holds the domain example.org
    _I.WEB_URL: frozenset({_I.IP_ADDRESS}),  # http://10.0.0.1/ holds an IP address as its host
    _I.VEHICLE_IDENTIFIER: frozenset({_I.DEVICE_IDENTIFIER}),  # a VIN has the form of a serial number
    _I.HEALTH_PLAN_BENEFICIARY_NUMBER: frozenset({_I.DEVICE_IDENTIFIER}),  # and so has a Medicare MBI
}

#: Known-value evidence is an exact copy of a value the dataset holds in an identifier column, not a
#: guess from a pattern, so it counts as a high-confidence match.
KNOWN_VALUE_CONFIDENCE = Confidence.HIGH

_RANK = {Confidence.LOW: 0, Confidence.MEDIUM: 1, Confidence.HIGH: 2}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Evidence(_Frozen):
    """One reason to think a column holds an identifier; names a detector and counts, never a value."""

    source: Literal["name", "value", "known-values"] = Field(
        description="name: the column's name; value: a value detector; known-values: the dataset's own "
        "identifier values found in the column."
    )
    detector: str | None = Field(description="The value detector's name; None for name and known values.")
    identifier: SafeHarborIdentifier = Field(description="The Safe Harbor letter the evidence points to.")
    confidence: Confidence | None = Field(
        default=None, description="How sure a match is; None for the name, which decides by itself."
    )
    rate: float | None = Field(
        description="Share of the non-empty values scanned that matched; None for the name."
    )
    matches: int | None = Field(description="Values (rows) that matched; None for the name.")

    def describe(self) -> str:
        """A short label for tables and comments: ``name``, ``ssn 100% high``, ``known A 2% high``."""
        if self.source == "name":
            return "name"
        label = self.detector if self.source == "value" else f"known {self.identifier.letter}"
        confidence = f" {self.confidence}" if self.confidence else ""
        return f"{label} {_percent(self.rate or 0.0)}{confidence}"


class ColumnVerdict(_Frozen):
    """What one column is, by the rule of this module, with the evidence and the runner-up."""

    column: str
    identifier: SafeHarborIdentifier | None = Field(description="The column's identifier, or None.")
    confidence: Confidence | None = Field(description="How sure the verdict is; None when no identifier.")
    evidence: list[Evidence]
    runner_up: SafeHarborIdentifier | None = Field(
        description="The best-supported other identifier, or None when no evidence points elsewhere."
    )
    rows_scanned: int = Field(description="Rows of the column scanned.")
    matches: int = Field(description="Values in which the verdict's identifier was found by value.")


class ScanReport(_Frozen):
    """The inventory of one dataset: a verdict per column, in the dataset's column order."""

    input: str = Field(description="The dataset scanned.")
    rows_scanned: int
    sample_rows: int | None = Field(description="The row limit asked for, or None for the whole dataset.")
    columns: list[ColumnVerdict]

    def to_json(self) -> str:
        """The report as indented JSON, identifiers as their letters."""
        return self.model_dump_json(indent=2) + "\n"

    def column(self, name: str) -> ColumnVerdict:
        """The verdict of one column.

        :param name: the column's name.
        :raises KeyError: no such column was scanned.
        """
        for verdict in self.columns:
            if verdict.column == name:
                return verdict
        raise KeyError(name)

    @property
    def identifiers(self) -> dict[str, SafeHarborIdentifier]:
        """The columns that hold an identifier, each with its letter."""
        return {verdict.column: verdict.identifier for verdict in self.columns if verdict.identifier}


def decide_column(
    column: str,
    *,
    rows_scanned: int,
    values_scanned: int,
    hits: Iterable[DetectorHit] = (),
    known: Mapping[SafeHarborIdentifier, int] | None = None,
) -> ColumnVerdict:
    """One column's verdict from its name and the matches found in its values.

    :param column: the column's name.
    :param rows_scanned: the rows of the column that were scanned.
    :param values_scanned: the non-null, non-empty values among them, the base of every rate.
    :param hits: the value detectors' hits over those values, one per detector and confidence.
    :param known: values (rows) containing a known identifier value, per identifier of its source.
    """
    by_name = identify_column(column)
    evidence = _evidence(by_name, values_scanned, hits, known or {})
    candidates = sorted((item for item in evidence if item.source != "name"), key=_strength, reverse=True)

    if by_name is not None:
        identifier, confidence = by_name, Confidence.HIGH
    else:
        deciding = _containing(next((item for item in candidates if _decides(item)), None), candidates)
        identifier = deciding.identifier if deciding else None
        confidence = deciding.confidence if deciding else None

    runner_up = next((item.identifier for item in candidates if item.identifier is not identifier), None)
    matches = max(
        (item.matches or 0 for item in candidates if item.identifier is identifier and identifier), default=0
    )
    return ColumnVerdict(
        column=column,
        identifier=identifier,
        confidence=confidence,
        evidence=evidence,
        runner_up=runner_up,
        rows_scanned=rows_scanned,
        matches=matches,
    )


def scan_dataset(
    path: str | os.PathLike[str],
    *,
    sample_rows: int | None = None,
    detectors: Sequence[ValueDetector] = DETECTORS,
    progress: Callable[[int], None] | None = None,
) -> ScanReport:
    """Scan a dataset in one streaming pass and decide what every column holds.

    Each record batch is scanned as it is read, so memory is bounded by the batch. Known values are
    collected per batch from the columns whose name makes them an identifier, and searched for in the
    same batch's text columns whose name does not: a value quoted in another batch's rows is not found
    (keeping every batch's values would bound memory by the dataset instead).

    :param path: a Parquet file or folder, or a CSV file.
    :param sample_rows: scan only the first this many rows; the whole dataset when None.
    :param detectors: the value detectors to run; every built-in one by default.
    :param progress: called after each batch with the number of rows scanned so far.
    :raises ValueError: ``sample_rows`` is not positive.
    :raises DataProcessingError: the data could not be read; Arrow's message is withheld.
    """
    if sample_rows is not None and sample_rows < 1:
        raise ValueError("sample_rows must be at least 1")
    source = Path(path).resolve()

    try:
        tally = _scan(source, sample_rows, detectors, progress)
    except FileNotFoundError:
        raise
    except pa.ArrowException as error:
        # Arrow's conversion errors quote the cell they could not read
        retryable = isinstance(error, pa.ArrowIOError)
        raise DataProcessingError(str(source), type(error).__name__, retryable=retryable) from None

    report = ScanReport(
        input=str(source), rows_scanned=tally.rows, sample_rows=sample_rows, columns=tally.verdicts()
    )
    log.info(
        "scanned %s: %d row(s), %d of %d column(s) hold an identifier",
        source,
        report.rows_scanned,
        len(report.identifiers),
        len(report.columns),
    )
    return report


def _scan(
    source: Path,
    sample_rows: int | None,
    detectors: Sequence[ValueDetector],
    progress: Callable[[int], None] | None,
) -> _Tally:
    from airflow_phi_guard.engine.source import open_source

    dataset = open_source(source)
    tally = _Tally(dataset.schema, detectors)
    for batch in dataset.to_batches():
        if sample_rows is not None:
            batch = batch.slice(0, sample_rows - tally.rows)
        tally.add(batch)
        if progress is not None:
            progress(tally.rows)
        if sample_rows is not None and tally.rows >= sample_rows:
            break
    return tally


class _Tally:
    """Counts gathered batch by batch: values scanned, detector hits and known-value hits per column."""

    def __init__(self, schema: pa.Schema, detectors: Sequence[ValueDetector]) -> None:
        self.names = list(schema.names)
        self.detectors = detectors
        self.rows = 0
        self.values = dict.fromkeys(self.names, 0)
        self.hits: dict[str, dict[tuple[str, SafeHarborIdentifier, Confidence], int]] = {
            name: {} for name in self.names
        }
        self.known: dict[str, dict[SafeHarborIdentifier, int]] = {name: {} for name in self.names}
        by_name = {name: identify_column(name) for name in self.names}
        self.sources = {
            name: identifier for name, identifier in by_name.items() if identifier in SEARCHED_IDENTIFIERS
        }
        self.free_text = [
            field.name for field in schema if by_name[field.name] is None and holds_text(field.type)
        ]

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for name in self.names:
            values = batch.column(name)
            self.values[name] += _non_empty(values)
            for hit in detect_column(values, self.detectors):
                key = (hit.detector, hit.identifier, hit.confidence)
                self.hits[name][key] = self.hits[name].get(key, 0) + hit.matches

        known = KnownValues.from_batch(batch, self.sources) if self.free_text and self.sources else None
        for name in self.free_text if known else ():
            for identifier, found in known.search(batch.column(name)).items():
                self.known[name][identifier] = self.known[name].get(identifier, 0) + found

    def verdicts(self) -> list[ColumnVerdict]:
        return [
            decide_column(
                name,
                rows_scanned=self.rows,
                values_scanned=self.values[name],
                hits=[
                    DetectorHit(
                        detector=detector, identifier=identifier, confidence=confidence, matches=count
                    )
                    for (detector, identifier, confidence), count in self.hits[name].items()
                ],
                known=self.known[name],
            )
            for name in self.names
        ]


def _non_empty(values: pa.Array) -> int:
    """Values that could hold an identifier: not null and, for text, not empty."""
    present = len(values) - values.null_count
    if not holds_text(values.type) or not present:
        return present
    text, indices = (
        (values.dictionary, values.indices) if pa.types.is_dictionary(values.type) else (values, None)
    )
    if pa.types.is_string_view(text.type):
        text = text.cast(pa.string())
    empty = pc.equal(pc.utf8_length(text), 0)
    if indices is not None:
        empty = empty.take(indices)
    return present - int(pc.sum(empty).as_py() or 0)


def _evidence(
    by_name: SafeHarborIdentifier | None,
    values_scanned: int,
    hits: Iterable[DetectorHit],
    known: Mapping[SafeHarborIdentifier, int],
) -> list[Evidence]:
    found = (
        []
        if by_name is None
        else [Evidence(source="name", detector=None, identifier=by_name, rate=None, matches=None)]
    )
    for hit in hits:
        if hit.matches:
            found.append(
                Evidence(
                    source="value",
                    detector=hit.detector,
                    identifier=hit.identifier,
                    confidence=hit.confidence,
                    rate=_rate(hit.matches, values_scanned),
                    matches=hit.matches,
                )
            )
    for identifier, matches in sorted(known.items()):
        if matches:
            found.append(
                Evidence(
                    source="known-values",
                    detector=None,
                    identifier=identifier,
                    confidence=KNOWN_VALUE_CONFIDENCE,
                    rate=_rate(matches, values_scanned),
                    matches=matches,
                )
            )
    return found


def _rate(matches: int, values_scanned: int) -> float:
    # a detector cannot match more values than were scanned; the cap keeps a miscount from reading as >100%
    return min(1.0, matches / values_scanned) if values_scanned else 0.0


def _percent(rate: float) -> str:
    # one match in a large column is still a finding, and one miss still a miss: neither is rounded away
    if 0.0 < rate < 0.01:
        return "<1%"
    if 0.99 < rate < 1.0:
        return ">99%"
    return f"{rate:.0%}"


def _column_wide(item: Evidence) -> bool:
    return (item.rate or 0.0) >= DECIDING_RATE


def _decides(item: Evidence) -> bool:
    """Rules 2 and 4: column-wide, or any high-confidence match; never R from a pattern alone."""
    if item.source == "value" and item.identifier is _I.OTHER_UNIQUE_IDENTIFIER:
        return False
    return _column_wide(item) or item.confidence is Confidence.HIGH


def _strength(item: Evidence) -> tuple[bool, bool, int, float]:
    """Rule 3 as a sort key, strongest last: deciding, column-wide, confidence, rate."""
    confidence = _RANK[item.confidence] if item.confidence else -1
    return (_decides(item), _column_wide(item), confidence, item.rate or 0.0)


def _containing(best: Evidence | None, candidates: Sequence[Evidence]) -> Evidence | None:
    """Rule 3's exception: a column-wide candidate as strong as ``best`` but for its rate, whose form
    contains best's form, takes its place (repeatedly: an email holds a URL's domain, a URL an IP)."""
    if best is None or not _column_wide(best):
        return best
    tier = _strength(best)[:3]
    for item in candidates:
        if _strength(item)[:3] == tier and best.identifier in CONTAINS.get(item.identifier, frozenset()):
            return _containing(item, candidates)
    return best
