"""Benchmarks the product's value scan against Presidio's analyzer: speed ratio, precision and recall.

Run from an environment that holds the project and ``presidio-analyzer`` (``make benchmark`` builds one,
``.venv-benchmark``)::

    python benchmarks/run.py

Both tools read the same text values. Presidio runs its predefined recognizers behind the no-op NLP
engine, its model-free mode: no spaCy model is loaded or downloaded, so it has no PERSON or LOCATION
recognizer and no context words from the text. Two Presidio configurations are measured: the default
registry (what ``AnalyzerEngine`` loads for English) and an extended one that adds every other
predefined generic and US recognizer (MBI, NPI, health insurance member ids, claim numbers...).

Accuracy is scored per value and identifier letter against the labelled set of
``benchmarks/labelled_set.py``: a tool reports a letter for a value when any of its findings in the value
maps to that letter. Speed is rows per second of each tool on the same values, measured in this one run;
the product over many rows and several repeats, Presidio over fewer rows, since it is about a thousand
times slower.

The results (JSON) and a text summary go to ``benchmarks/results/``. They hold counts, rates and row ids
of the labelled set, never a value.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import labelled_set
import pyarrow as pa

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"

#: The letters scored. A (names) is left out because neither tool reads names without a language model
#: (the product finds them through the dataset's own identifier values, which this benchmark does not
#: exercise); R because the product never lets a value decide R (a UUID says nothing of whose code it
#: is; the column's name or a known patient key does), so UUIDs serve as hard negatives for every
#: scored letter; P and Q are not text.
SCORED_LETTERS = tuple("BCDEFGHIJKLMNO")

#: Target of issue 3: the product at least this many times Presidio's speed, with recall and precision
#: at least Presidio's.
SPEED_RATIO_TARGET = 300.0

#: Presidio's entity types and the Safe Harbor letter each one reports. Every type a configuration can
#: return must be here: an unmapped type stops the benchmark rather than being silently dropped.
PRESIDIO_LETTERS: dict[str, str] = {
    # Default registry.
    "CREDIT_CARD": "J",  # a payment card number is an account number
    "CRYPTO": "J",  # a wallet address is an account
    "DATE_TIME": "C",
    "EMAIL_ADDRESS": "F",
    "IBAN_CODE": "J",
    "IP_ADDRESS": "O",
    "MAC_ADDRESS": "M",  # a network interface's hardware address identifies a device
    "MEDICAL_LICENSE": "K",  # DEA certificate numbers
    "PHONE_NUMBER": "D",  # one type for telephone and fax: see the telephone-or-fax rule in score()
    "UK_NHS": "I",  # a national health service number, the nearest letter to a beneficiary number
    "URL": "N",
    "US_BANK_NUMBER": "J",
    "US_DRIVER_LICENSE": "K",
    "US_ITIN": "G",  # a taxpayer number in the SSN's format; mapped to G, the reading a user would act on
    "US_PASSPORT": "K",
    "US_SSN": "G",
    "UUID": "R",
    # Extended registry: the other predefined US recognizers.
    "ABA_ROUTING_NUMBER": "J",
    "US_CLAIM_NUMBER": "J",
    "US_HEALTH_INSURANCE_MEMBER_ID": "I",
    "US_MBI": "I",
    "US_NPI": "R",  # a provider's number: unique, but no letter of the patient's that is scored here
    "US_PRESCRIPTION_NUMBER": "R",
    "US_PRIOR_AUTHORIZATION_NUMBER": "R",
    "US_PROVIDER_TAX_ID": "R",
    "US_REFERRAL_NUMBER": "R",
}

#: Score thresholds at which Presidio's findings are counted: 0 is its default (every finding is
#: returned); 0.5 drops its low-confidence pattern matches.
PRESIDIO_THRESHOLDS = (0.0, 0.5)

_CONFIDENCE_RANK = {"low": 0, "medium": 1, "high": 2}


# ---- the tools -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductScan:
    """The product's value scan: ``detect_column`` over its built-in detectors and one declared MRN pattern.

    Falls back to the older ``scan_values`` (no confidence) when ``phi/detectors.py`` is not there.
    """

    api: str
    detectors: tuple[object, ...]
    scan: Callable[[pa.Array], object]

    @classmethod
    def load(cls) -> ProductScan:
        try:
            from airflow_phi_guard.phi import detectors as module
        except ImportError:
            from airflow_phi_guard.phi import values as legacy
            from airflow_phi_guard.phi.identifiers import SafeHarborIdentifier

            mrn = legacy.ValueDetector(
                SafeHarborIdentifier.MEDICAL_RECORD_NUMBER, "mrn", labelled_set.MRN_PATTERN
            )
            chosen = (*legacy.DETECTORS, mrn)
            return cls("scan_values", chosen, lambda values: legacy.scan_values(values, chosen))
        chosen = (*module.DETECTORS, module.mrn_detector(labelled_set.MRN_PATTERN))
        return cls("detect_column", chosen, lambda values: module.detect_column(values, chosen))

    @staticmethod
    def letters(tallies: dict[tuple[str, str | None], int]) -> dict[str, str | None]:
        """The letters that ``tallies`` report, each with its best confidence (None: unrated)."""
        found: dict[str, str | None] = {}
        for (letter, confidence), count in tallies.items():
            if count and (letter not in found or _rank(confidence) > _rank(found[letter])):
                found[letter] = confidence
        return found

    def tallies(self, values: pa.Array) -> dict[tuple[str, str | None], int]:
        """Matching values per (letter, confidence), from the column scan's own counts."""
        result = self.scan(values)
        if self.api == "scan_values":
            return {(identifier.value, None): count for identifier, count in result.items()}
        tallies: dict[tuple[str, str | None], int] = {}
        for hit in result:
            key = (hit.identifier.value, str(hit.confidence.value))
            tallies[key] = tallies.get(key, 0) + hit.matches
        return tallies

    def detector_names(self) -> list[str]:
        return [detector.name for detector in self.detectors]

    def claimed_letters(self) -> set[str]:
        return {detector.identifier.value for detector in self.detectors}


def _rank(confidence: str | None) -> int:
    return _CONFIDENCE_RANK.get(confidence, 3) if confidence is not None else 3


@dataclass(frozen=True)
class PresidioConfiguration:
    """One Presidio analyzer behind the no-op NLP engine."""

    name: str
    engine: object

    def findings(self, text: str) -> list[tuple[str, float]]:
        """(letter, score) of every finding in ``text``."""
        return [
            (PRESIDIO_LETTERS[r.entity_type], r.score) for r in self.engine.analyze(text=text, language="en")
        ]

    def recognizer_names(self) -> list[str]:
        return sorted(recognizer.name for recognizer in self.engine.get_recognizers("en"))

    def entity_types(self) -> list[str]:
        return sorted(self.engine.get_supported_entities("en"))

    def claimed_letters(self) -> set[str]:
        return {PRESIDIO_LETTERS[entity] for entity in self.entity_types()}


def presidio_configurations() -> list[PresidioConfiguration]:
    """The default and the extended Presidio analyzers, model-free and offline."""
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import country_specific, generic

    # Presidio's email recognizer asks tldextract, which by default fetches the public suffix list from
    # the network on first use; the snapshot bundled with tldextract answers the same without a fetch.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    # Presidio logs candidate values at some levels; the benchmark's output carries no value.
    logging.getLogger("presidio-analyzer").setLevel(logging.CRITICAL)

    def model_free_analyzer() -> AnalyzerEngine:
        no_op = {"nlp_engine_name": "no_op", "models": [{"lang_code": "en", "model_name": "no_op"}]}
        return AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=no_op).create_engine())

    default = model_free_analyzer()
    extended = model_free_analyzer()
    loaded = {type(recognizer).__name__ for recognizer in extended.get_recognizers("en")}
    for package in (generic, country_specific.us):
        for class_name in package.__all__:
            if class_name not in loaded:
                extended.registry.add_recognizer(getattr(package, class_name)())

    configurations = [
        PresidioConfiguration("presidio default", default),
        PresidioConfiguration("presidio extended", extended),
    ]
    unmapped = {e for c in configurations for e in c.entity_types()} - PRESIDIO_LETTERS.keys()
    if unmapped:
        raise SystemExit(f"Presidio entity types without a Safe Harbor letter: {sorted(unmapped)}")
    return configurations


# ---- scoring ---------------------------------------------------------------------------------------------


def labelled_letters(row: dict[str, object]) -> set[str]:
    return {span["letter"] for span in row["spans"] if span["letter"]}


def score(
    rows: Sequence[dict[str, object]], predictions: Sequence[set[str]], letters: Iterable[str]
) -> dict[str, object]:
    """Precision and recall per letter and over ``letters``, counting one (value, letter) pair once.

    Telephone-or-fax rule: a telephone and a fax number are the same digits, and only the words around
    them tell the use; a D finding on a value labelled E but not D counts as E, and the reverse, for
    both tools alike.

    :param rows: the labelled rows.
    :param predictions: per row, the letters the tool reports.
    :param letters: the letters to score.
    """
    letters = tuple(letters)
    counts = {letter: {"tp": 0, "fp": 0, "fn": 0} for letter in letters}
    misses: dict[str, dict[str, list[str]]] = {letter: {"fp": [], "fn": []} for letter in letters}
    for row, predicted in zip(rows, predictions, strict=True):
        truth = labelled_letters(row)
        predicted = _telephone_or_fax(predicted, truth)
        for letter in letters:
            if letter in truth and letter in predicted:
                counts[letter]["tp"] += 1
            elif letter in predicted:
                counts[letter]["fp"] += 1
                misses[letter]["fp"].append(row["id"])
            elif letter in truth:
                counts[letter]["fn"] += 1
                misses[letter]["fn"].append(row["id"])

    per_letter = {letter: _rates(**counts[letter]) for letter in letters}
    total = {key: sum(counts[letter][key] for letter in letters) for key in ("tp", "fp", "fn")}
    return {"overall": _rates(**total), "per_letter": per_letter, "misses": misses}


def _telephone_or_fax(predicted: set[str], truth: set[str]) -> set[str]:
    adjusted = set(predicted)
    for found, labelled in (("D", "E"), ("E", "D")):
        if found in predicted and found not in truth and labelled in truth:
            adjusted.discard(found)
            adjusted.add(labelled)
    return adjusted


def _rates(tp: int, fp: int, fn: int) -> dict[str, object]:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "support": tp + fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def by_kind(rows: Sequence[dict[str, object]], predictions: Sequence[set[str]]) -> dict[str, object]:
    """Per planted kind: the share of positives whose letter was reported, and false alarms on negatives.

    A negative kind is counted on the rows that hold no scored letter at all, as the share of them on
    which the tool reported some scored letter (a row with several negatives counts for each).
    """
    found: dict[str, list[int]] = {}
    alarms: dict[str, list[int]] = {}
    for row, predicted in zip(rows, predictions, strict=True):
        truth = labelled_letters(row)
        predicted = _telephone_or_fax(predicted, truth)
        scored_truth = truth & set(SCORED_LETTERS)
        for kind, letter in {(span["kind"], span["letter"]) for span in row["spans"]}:
            if letter in SCORED_LETTERS:
                tally = found.setdefault(f"{letter}:{kind}", [0, 0])
                tally[0] += letter in predicted
                tally[1] += 1
            elif not scored_truth:
                tally = alarms.setdefault(kind, [0, 0])
                tally[0] += bool(predicted & set(SCORED_LETTERS))
                tally[1] += 1
    return {
        "positives_found": {k: {"found": v[0], "rows": v[1]} for k, v in sorted(found.items())},
        "negatives_flagged": {k: {"flagged": v[0], "rows": v[1]} for k, v in sorted(alarms.items())},
    }


# ---- measurement -----------------------------------------------------------------------------------------


def product_predictions(product: ProductScan, values: pa.Array) -> tuple[list[dict[str, str | None]], bool]:
    """Per value, the letters the scan reports, and whether the per-value scans add up to the column scan.

    The product's scan reports counts per column, never which value matched (it keeps no value), so the
    letters of a value come from scanning that value alone. A block of values with no finding at all is
    cleared in one scan (nothing in it can have a finding), and a block with findings is split, so that
    single values are scanned only where findings are. The per-value counts must add up to the scan of the
    whole column: scanning one value is then the same decision as scanning the column.
    """
    per_value: list[dict[str, str | None]] = [{} for _ in range(len(values))]
    summed: dict[tuple[str, str | None], int] = {}
    # The scan's verdict on a value depends on its text alone (it counts distinct values once).
    by_text: dict[str, dict[tuple[str, str | None], int]] = {}

    def visit(offset: int, length: int) -> None:
        block = values.slice(offset, length)
        text = block[0].as_py() if length == 1 else None
        if text is not None and text in by_text:
            tallies = by_text[text]
        else:
            tallies = {key: count for key, count in product.tallies(block).items() if count}
            if text is not None:
                by_text[text] = tallies
        if not tallies:
            return
        if length == 1:
            per_value[offset] = product.letters(tallies)
            for key, count in tallies.items():
                summed[key] = summed.get(key, 0) + count
            return
        # Where most values have findings, splitting costs more scans than it saves.
        if length <= 8 or max(tallies.values()) * 4 >= length:
            for index in range(offset, offset + length):
                visit(index, 1)
            return
        half = length // 2
        visit(offset, half)
        visit(offset + half, length - half)

    for offset in range(0, len(values), 256):
        visit(offset, min(256, len(values) - offset))
    column = {key: count for key, count in product.tallies(values).items() if count}
    return per_value, column == summed


@dataclass(frozen=True)
class ProductTiming:
    """One scan of the product to time: the text columns of one table, scanned one after the other."""

    name: str
    columns: Sequence[pa.Array]

    def seconds(self, product: ProductScan) -> float:
        start = time.perf_counter()
        for column in self.columns:
            product.scan(column)
        return time.perf_counter() - start


def run_presidio(
    configuration: PresidioConfiguration,
    texts: Sequence[str | None],
    product: ProductScan | None = None,
    timings: Sequence[ProductTiming] = (),
    slices: int = 10,
    warm_up: int = 50,
) -> tuple[list[list[tuple[str, float]]], float, dict[str, list[float]]]:
    """Presidio's findings for each text, the seconds its analysis took, and the product's timings.

    Presidio's pass is cut into ``slices``, and before each slice every product timing runs once: both
    tools are then measured under the same load of the machine, which a shared one varies. Each timed
    scan follows an untimed one of the same values, as Presidio's pass is timed after its warm-up: a
    slice of Presidio's pass leaves the processor's caches full of Presidio, and a pipeline scans batch
    after batch, never once after a pause. Nulls are skipped, as a scan skips them.
    """
    for text in texts[:warm_up]:
        if text:
            configuration.findings(text)

    findings: list[list[tuple[str, float]]] = []
    presidio_seconds = 0.0
    product_seconds: dict[str, list[float]] = {timing.name: [] for timing in timings}
    size = -(-len(texts) // slices)
    for offset in range(0, len(texts), size):
        for timing in timings:
            timing.seconds(product)
            product_seconds[timing.name].append(timing.seconds(product))
        start = time.perf_counter()
        findings.extend(
            configuration.findings(text) if text else [] for text in texts[offset : offset + size]
        )
        presidio_seconds += time.perf_counter() - start
    return findings, presidio_seconds, product_seconds


def rates(rows: int, presidio_seconds: float, product_seconds: Sequence[float]) -> dict[str, object]:
    """Rows per second of Presidio and of the product (median of its scans) and the product's ratio."""
    product = rows / statistics.median(product_seconds) if product_seconds else None
    presidio = rows / presidio_seconds
    return {
        "rows": rows,
        "presidio_seconds": presidio_seconds,
        "presidio_rows_per_second": presidio,
        "product_scans": len(product_seconds),
        "product_rows_per_second": product,
        "product_rows_per_second_range": (
            [rows / max(product_seconds), rows / min(product_seconds)] if product_seconds else None
        ),
        "product_speed_ratio": product / presidio if product else None,
    }


def read_encounters(path: Path) -> dict[str, list[str | None]]:
    """Every column of the Synthea encounters as text, empty cells as nulls, as an extract would arrive."""
    with path.open(encoding="utf-8", newline="") as lines:
        records = list(csv.DictReader(lines))
    return {column: [record[column] or None for record in records] for column in records[0]}


# ---- the run ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, score, write the results and print the summary."""
    arguments = _parser().parse_args(argv)
    started = datetime.now(UTC)
    phases: dict[str, float] = {}

    # Step 1: the labelled set, checked against its generator; Presidio may get an evenly spread sample.
    rows, content, current = _labelled_rows(arguments)
    stride = max(1, len(rows) // arguments.presidio_rows) if arguments.presidio_rows else 1
    scored_rows = rows[::stride]
    texts = [row["text"] for row in scored_rows]
    values = pa.array(texts, pa.string())

    # Step 2: the tools.
    product = ProductScan.load()
    configurations = presidio_configurations()

    # Step 3: every tool on the same values. Presidio's pass is also the speed measurement on the
    # labelled set, with the product's scans of the same values interleaved.
    with _phase(phases, "product, value by value"):
        product_found, consistent = product_predictions(product, values)
    timings = () if arguments.no_speed else (ProductTiming("labelled set", [values]),)
    presidio_runs = {}
    speed: dict[str, dict[str, object]] = {}
    for configuration in configurations:
        with _phase(phases, f"{configuration.name}, labelled set"):
            findings, seconds, product_seconds = run_presidio(configuration, texts, product, timings)
        presidio_runs[configuration.name] = findings
        if timings:
            speed.setdefault("labelled set", {})[configuration.name] = rates(
                len(texts), seconds, product_seconds["labelled set"]
            )
    accuracy = _accuracy(
        scored_rows, _predictions(product, product_found, presidio_runs), product, configurations
    )

    # Step 4: speed on the Synthea encounters.
    if not arguments.no_speed:
        with _phase(phases, "speed on the encounters"):
            speed.update(_encounter_speed(arguments.presidio_encounter_rows, product, configurations))

    # Step 5: the results, the targets, the summary.
    results = {
        "started": started.isoformat(timespec="seconds"),
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": _machine(),
        "phase_seconds": phases,
        "labelled_set": {
            "path": str(arguments.labelled.relative_to(labelled_set.REPOSITORY)),
            "seed": labelled_set.SEED if arguments.seed is None else arguments.seed,
            "sha256": hashlib.sha256(content).hexdigest(),
            "rows": len(rows),
            "rows_scored": len(scored_rows),
            "matches_generator": current,
            "scored_letters": "".join(SCORED_LETTERS),
        },
        "product": {
            "api": product.api,
            "detectors": product.detector_names(),
            "declared_mrn_pattern": labelled_set.MRN_PATTERN,
            "per_value_scans_match_column_scan": consistent,
            # The figures belong to this source, committed or not.
            "source_sha256": _source_digests(product.api),
        },
        "presidio": {
            "nlp_engine": "no_op",
            "entity_letters": PRESIDIO_LETTERS,
            "thresholds": list(PRESIDIO_THRESHOLDS),
            "configurations": {
                c.name: {"recognizers": c.recognizer_names(), "entity_types": c.entity_types()}
                for c in configurations
            },
        },
        "speed": speed,
        "accuracy": {name: {k: v for k, v in r.items() if k != "misses"} for name, r in accuracy.items()},
        "targets": _targets(speed, accuracy, configurations),
    }
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    summary = _summary(results)
    arguments.summary.write_text(summary, encoding="utf-8")
    if arguments.misses:
        misses = {name: r["misses"] for name, r in accuracy.items()}
        arguments.misses.write_text(json.dumps(misses, indent=1) + "\n", encoding="utf-8")
    print(summary, end="")
    return 0


def _labelled_rows(arguments: argparse.Namespace) -> tuple[list[dict[str, object]], bytes, bool]:
    """The rows to score, their bytes, and whether they are what the generator makes."""
    if arguments.seed is not None:
        rows = labelled_set.build_rows(seed=arguments.seed)
        return rows, labelled_set.render(rows), True
    content = arguments.labelled.read_bytes()
    return (
        labelled_set.read_rows(arguments.labelled),
        content,
        content == labelled_set.render(labelled_set.build_rows()),
    )


def _predictions(
    product: ProductScan,
    product_found: Sequence[dict[str, str | None]],
    presidio_runs: dict[str, list[list[tuple[str, float]]]],
) -> dict[str, list[set[str]]]:
    """Per tool setting, the letters reported for each value."""
    tools = {"product (any confidence)": [set(found) for found in product_found]}
    if product.api == "detect_column":
        tools["product (medium or high)"] = [
            {letter for letter, confidence in found.items() if _rank(confidence) >= 1}
            for found in product_found
        ]
    for name, findings in presidio_runs.items():
        for threshold in PRESIDIO_THRESHOLDS:
            tools[f"{name} (score >= {threshold})"] = [
                {letter for letter, value in finding if value >= threshold} for finding in findings
            ]
    return tools


def _accuracy(
    rows: Sequence[dict[str, object]],
    tools: dict[str, list[set[str]]],
    product: ProductScan,
    configurations: Sequence[PresidioConfiguration],
) -> dict[str, dict[str, object]]:
    accuracy = {}
    for name, predictions in tools.items():
        shared = _shared_letters(name, product, configurations)
        result = score(rows, predictions, SCORED_LETTERS)
        result["overall_shared_letters"] = score(rows, predictions, shared)["overall"]
        result["shared_letters"] = "".join(shared)
        result["by_kind"] = by_kind(rows, predictions)
        accuracy[name] = result
    return accuracy


def _encounter_speed(
    sample: int, product: ProductScan, configurations: Sequence[PresidioConfiguration]
) -> dict[str, dict[str, object]]:
    """Rows per second on the Synthea encounters, every column as text.

    Presidio analyzes the first ``sample`` rows. The product scans the same rows, and the whole file:
    Presidio's cost per row does not depend on the file's size, while the product's fixed cost per
    column is spread over more rows, and more values repeat (codes, descriptions), which its
    distinct-value scan counts once. The whole file is what a scan meets.
    """
    encounters = read_encounters(labelled_set.SYNTHEA / "encounters.csv")
    rows = len(next(iter(encounters.values())))
    cells = [value for column in encounters.values() for value in column[:sample]]
    same_rows = ProductTiming(
        "same rows", [pa.array(column[:sample], pa.string()) for column in encounters.values()]
    )
    whole_file = ProductTiming(
        "whole file", [pa.array(column, pa.string()) for column in encounters.values()]
    )

    speed: dict[str, dict[str, object]] = {
        "synthea encounters, same rows": {},
        "synthea encounters, whole file for the product": {},
    }
    for configuration in configurations:
        _, seconds, product_seconds = run_presidio(configuration, cells, product, (same_rows, whole_file))
        same = rates(sample, seconds, product_seconds["same rows"])
        whole = rates(rows, seconds * rows / sample, product_seconds["whole file"])
        whole["presidio_rows"] = sample  # Presidio's time for the whole file is extrapolated from its rate
        speed["synthea encounters, same rows"][configuration.name] = same
        speed["synthea encounters, whole file for the product"][configuration.name] = whole
    return speed


@contextmanager
def _phase(phases: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    phases[name] = round(time.perf_counter() - start, 3)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelled", type=Path, default=labelled_set.LABELLED_SET, help="the labelled set")
    parser.add_argument("--output", type=Path, default=RESULTS / "benchmark.json", help="results (JSON)")
    parser.add_argument("--summary", type=Path, default=RESULTS / "summary.txt", help="text summary")
    parser.add_argument("--misses", type=Path, help="also write the ids of missed and false rows (JSON)")
    parser.add_argument(
        "--seed", type=int, help="score a held-out set drawn with this seed instead of the committed one"
    )
    parser.add_argument("--no-speed", action="store_true", help="score only, measure no speed")
    parser.add_argument(
        "--presidio-rows", type=int, help="score an evenly spread sample of about this many labelled values"
    )
    parser.add_argument(
        "--presidio-encounter-rows", type=int, default=1000, help="encounter rows both tools scan for speed"
    )
    return parser


def _shared_letters(
    name: str, product: ProductScan, configurations: Sequence[PresidioConfiguration]
) -> tuple[str, ...]:
    """The scored letters that both the product and the Presidio configuration (default for the product)
    claim to detect: the fair ground of the comparison."""
    presidio = next((c for c in configurations if name.startswith(c.name)), configurations[0])
    claimed = product.claimed_letters() & presidio.claimed_letters()
    return tuple(letter for letter in SCORED_LETTERS if letter in claimed)


def _targets(
    speed: dict[str, dict[str, object]],
    accuracy: dict[str, dict[str, object]],
    configurations: Sequence[PresidioConfiguration],
) -> dict[str, object]:
    """Issue 3's target against each Presidio configuration at its default threshold."""
    product = accuracy["product (any confidence)"]["overall"]
    targets = {}
    for configuration in configurations:
        presidio = accuracy[f"{configuration.name} (score >= {PRESIDIO_THRESHOLDS[0]})"]["overall"]
        ratios = {
            dataset: measured[configuration.name]["product_speed_ratio"]
            for dataset, measured in speed.items()
            if configuration.name in measured
        }
        targets[configuration.name] = {
            "speed_ratio": ratios,
            # Per measurement: the labelled set, and the encounters on the same rows and on the whole file.
            "speed_met": {dataset: ratio >= SPEED_RATIO_TARGET for dataset, ratio in ratios.items()} or None,
            "recall_met": (product["recall"] or 0) >= (presidio["recall"] or 0),
            "precision_met": (product["precision"] or 0) >= (presidio["precision"] or 0),
        }
    return {"speed_ratio_target": SPEED_RATIO_TARGET, "against": targets}


def _machine() -> dict[str, object]:
    packages = {}
    for package in (
        "airflow-phi-guard",
        "pyarrow",
        "presidio-analyzer",
        "phonenumbers",
        "tldextract",
        "regex",
    ):
        try:
            packages[package] = version(package)
        except PackageNotFoundError:
            packages[package] = None
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "arrow_cpu_count": pa.cpu_count(),
        # Other work on the machine slows both tools, not always alike: the load says whether there was any.
        "load_average_1_5_15_min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": packages,
        "repository_commit": _git("rev-parse", "HEAD"),
        "repository_modified": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _source_digests(api: str) -> dict[str, str]:
    import airflow_phi_guard.phi as phi

    modules = ("detectors.py",) if api == "detect_column" else ("values.py",)
    folder = Path(phi.__file__).parent
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in modules}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*command: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(labelled_set.REPOSITORY), *command], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def _summary(results: dict[str, object]) -> str:
    machine = results["machine"]
    lines = [
        f"Value-scan benchmark, {results['started']}: {machine['cpu']}, {machine['usable_cores']} cores, "
        f"Python {machine['python'].split()[-1]}, pyarrow {machine['packages']['pyarrow']}, "
        f"presidio-analyzer {machine['packages']['presidio-analyzer']} (no-op NLP engine)",
        f"Labelled set: {results['labelled_set']['rows']} values "
        f"(matches its generator: {results['labelled_set']['matches_generator']}); "
        f"product API: {results['product']['api']}",
        "",
        "Speed (rows per second, this run)",
    ]
    for dataset, measured in results["speed"].items():
        lines.append(f"  {dataset}")
        for name, figures in measured.items():
            presidio_rows = figures.get("presidio_rows", figures["rows"])
            lines.append(
                f"    product {figures['product_rows_per_second']:,.0f} ({figures['rows']:,} rows, "
                f"median of {figures['product_scans']} scans) vs {name} "
                f"{figures['presidio_rows_per_second']:,.1f} ({presidio_rows:,} rows): "
                f"{figures['product_speed_ratio']:,.0f}x"
            )
    lines += ["", "Precision / recall per letter (values with the letter; '-' where undefined)"]
    names = list(results["accuracy"])
    lines.append("  letter  support  " + "  ".join(f"{_short(name):>17}" for name in names))
    any_result = results["accuracy"][names[0]]
    for letter in SCORED_LETTERS:
        cells = []
        for name in names:
            figures = results["accuracy"][name]["per_letter"][letter]
            cells.append(f"{_ratio(figures['precision'])} / {_ratio(figures['recall'])}".rjust(17))
        support = any_result["per_letter"][letter]["support"]
        lines.append(f"  {letter:<6}  {support:>7}  " + "  ".join(cells))
    for key, label in (("overall", "all"), ("overall_shared_letters", "shared")):
        cells = []
        for name in names:
            figures = results["accuracy"][name][key]
            cells.append(f"{_ratio(figures['precision'])} / {_ratio(figures['recall'])}".rjust(17))
        lines.append(f"  {label:<6}  {'':>7}  " + "  ".join(cells))
    lines.append(
        "  (shared: letters both tools claim: "
        + ", ".join(
            f"{_short(name)} {results['accuracy'][name]['shared_letters']}"
            for name in names
            if "presidio" in name
        )
        + ")"
    )
    lines += [
        "",
        f"Target: at least {results['targets']['speed_ratio_target']:.0f}x, recall and precision not lower",
    ]
    for name, target in results["targets"]["against"].items():
        lines.append(
            f"  vs {name} (score >= {PRESIDIO_THRESHOLDS[0]}): recall met: {_yes(target['recall_met'])}, "
            f"precision met: {_yes(target['precision_met'])}"
        )
        for dataset, ratio in target["speed_ratio"].items():
            lines.append(f"    {dataset}: {ratio:,.0f}x, met: {_yes(ratio >= SPEED_RATIO_TARGET)}")
    return "\n".join(lines) + "\n"


def _short(name: str) -> str:
    return (
        name.replace("product ", "")
        .replace("presidio default ", "P-default ")
        .replace("presidio extended ", "P-ext ")
        .replace("(any confidence)", "product any")
        .replace("(medium or high)", "product med+")
        .replace("(score >= ", ">=")
        .replace(")", "")
    )


def _yes(met: bool) -> str:
    return "yes" if met else "NO"


def _ratio(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
