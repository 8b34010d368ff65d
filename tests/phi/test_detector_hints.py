"""The detectors' hints only prune: every text a detector's pattern matches, its hint matches too.

A hint that missed a match would hide an identifier from the scan and let a run publish it, so this is a
fail-closed property, checked over every text the project holds: the detectors' own test tables, the
labelled benchmark set and the Synthea files.
"""

from __future__ import annotations

import csv
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from airflow_phi_guard.phi import detectors
from airflow_phi_guard.phi.detectors import _HINTS, DETECTORS
from tests.conftest import REPO, SYNTHEA
from tests.phi import test_detectors

LABELLED_SET = REPO / "benchmarks" / "data" / "labelled-values.jsonl"


def _texts() -> list[str]:
    texts = set()
    for name in dir(test_detectors):
        table = getattr(test_detectors, name)
        if name.isupper() and isinstance(table, list):
            texts.update(
                cell
                for row in table
                for cell in (row if isinstance(row, tuple) else (row,))
                if isinstance(cell, str)
            )
    with LABELLED_SET.open(encoding="utf-8") as stream:
        texts.update(json.loads(line)["text"] for line in stream if line.strip())
    for path in SYNTHEA.glob("*.csv"):
        with path.open(newline="", encoding="utf-8") as stream:
            texts.update(cell for row in csv.reader(stream) for cell in row if cell)
    return sorted(texts)


TEXTS = _texts()
HINTED = [detector for detector in DETECTORS if detector.pattern in _HINTS]


def test_the_corpus_is_large_and_most_detectors_have_a_hint():
    assert len(TEXTS) > 10_000
    assert len(HINTED) >= len(DETECTORS) - 2


@pytest.mark.parametrize("detector", HINTED, ids=lambda detector: detector.name)
def test_a_hint_matches_every_text_its_detector_matches(detector):
    pattern, hint = re.compile(detector.pattern), re.compile(_HINTS[detector.pattern])
    matched = [text for text in TEXTS if pattern.search(text)]

    assert matched, f"{detector.name}: the corpus holds no text the detector matches"
    missed = [text for text in matched if not hint.search(text)]
    assert not missed, f"{detector.name}: its hint misses {len(missed)} of {len(matched)} matched texts"


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda detector: detector.name)
def test_re2_and_python_find_the_same_texts(detector):
    # A few distinct values are decided in Python's re alone, more meet RE2 first: over every text the
    # project holds, both engines must match the same ones, or a value would be missed on one path.
    by_re2 = pc.match_substring_regex(pa.array(TEXTS, pa.string()), detector.pattern).to_pylist()
    by_python = [detector.compiled.search(text) is not None for text in TEXTS]
    differ = sum(re2 != python for re2, python in zip(by_re2, by_python, strict=True))
    assert not differ, f"{detector.name}: RE2 and Python's re differ on {differ} of {len(TEXTS)} texts"


def test_detecting_on_several_threads_finds_what_one_thread_finds(monkeypatch):
    # Over many distinct values the identifiers are detected on a thread pool; the hits must not depend on
    # it, nor on the order in which the threads finish.
    values = pa.array(TEXTS, pa.string())
    monkeypatch.setattr(detectors, "_PARALLEL_FROM", len(TEXTS) + 1)
    one_thread = detectors.detect_column(values)
    monkeypatch.setattr(detectors, "_PARALLEL_FROM", 0)

    with ThreadPoolExecutor(max_workers=4) as pool:
        monkeypatch.setattr(detectors, "_pool", lambda: pool)
        assert detectors.detect_column(values) == one_thread
    assert len(one_thread) > 20


def test_one_core_gets_no_thread_pool(monkeypatch):
    monkeypatch.setattr(detectors.os, "sched_getaffinity", lambda pid: {0})
    assert detectors._pool() is None
