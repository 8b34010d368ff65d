"""The value detectors under their first import path, kept for the engine and the expectation suite.

The detectors themselves live in :mod:`airflow_phi_guard.phi.detectors`; this module re-exports them so that
``from airflow_phi_guard.phi.values import DETECTORS, ValueDetector, scan_values`` keeps working.
"""

from __future__ import annotations

from airflow_phi_guard.phi.detectors import (
    DETECTORS,
    Confidence,
    DetectorHit,
    ValueDetector,
    detect_column,
    mrn_detector,
    scan_values,
)

__all__ = [
    "DETECTORS",
    "Confidence",
    "DetectorHit",
    "ValueDetector",
    "detect_column",
    "mrn_detector",
    "scan_values",
]
