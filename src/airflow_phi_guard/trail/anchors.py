"""The trail heads that runs' lineage recorded, read back from event logs to anchor the chain."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from airflow_phi_guard.lineage.audit import iterate_events
from airflow_phi_guard.lineage.facets import TRAIL_FACET
from airflow_phi_guard.trail.chain import TrailHead, TrailVerification, check_heads
from airflow_phi_guard.trail.store import AuditTrail


def recorded_heads(event_logs: Iterable[str | os.PathLike[str]]) -> list[TrailHead]:
    """Every ``phiGuard_trail`` head the events of the logs carry, in log order.

    A log that anchors several trails gives the heads of all of them; each must then be checked against
    its own trail (a known shortcoming: heads are not yet told apart by the facet's ``trail`` name, whose
    spelling of a path can differ from the one given to ``verify``).

    :param event_logs: OpenLineage event logs (JSON lines).
    :raises EventLogError: a log is unreadable or a line is not a JSON object.
    """
    heads = []
    for path in event_logs:
        for _, event in iterate_events(path):
            facet = ((event.get("run") or {}).get("facets") or {}).get(TRAIL_FACET)
            if isinstance(facet, dict) and isinstance(facet.get("sequence"), int):
                heads.append(TrailHead(sequence=facet["sequence"], digest=str(facet.get("digest"))))
    return heads


def verify_trail(trail: AuditTrail, event_logs: Sequence[str | os.PathLike[str]] = ()) -> TrailVerification:
    """Check the chain, then that every head the event logs recorded is in it.

    :param trail: the trail to check.
    :param event_logs: event logs whose ``phiGuard_trail`` facets anchor the chain; none checks the chain
        alone, which cannot show a cut tail.
    """
    verification = trail.verify()
    if not event_logs:
        return verification
    return check_heads(verification, recorded_heads(event_logs), trail.stored())
