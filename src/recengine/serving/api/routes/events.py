"""POST /v1/events: a batch of interactions, committed to the store before the answer."""

from __future__ import annotations

import time

import pandas as pd
from fastapi import APIRouter

from recengine.errors import DataError
from recengine.serving.api.deps import MetricsDep, ServiceDep, SettingsDep, WriteKey
from recengine.serving.api.schemas import EventBatch, EventIn, IngestOut
from recengine.serving.errors import RequestTooLargeError

router = APIRouter(prefix="/v1/events", tags=["events"])
_OPTIONAL = ("event", "rating", "weight")


@router.post("", response_model=IngestOut, status_code=201)
def post_events(batch: EventBatch, service: ServiceDep, settings: SettingsDep, metrics: MetricsDep,
                _: WriteKey) -> IngestOut:
    """Store a batch of events in one transaction (all or nothing) and extend the users' live histories: the
    next recommendation for each of these users sees them. A bad event (an unknown request_id too) fails the
    batch with 422 naming it."""
    if len(batch.events) > settings.max_events:
        raise RequestTooLargeError(f"{len(batch.events):,} events in one batch; the limit is "
                                   f"{settings.max_events:,} (RECENGINE_MAX_EVENTS): send smaller batches")
    report = service.add_events(events_frame(batch.events))
    metrics.events.inc(report.accepted)
    return IngestOut(accepted=report.accepted, unknown_items=report.unknown_items)


def events_frame(events: list[EventIn]) -> pd.DataFrame:
    """The readers' canonical event frame. Like a file's column, an optional field is on every row or none."""
    now = int(time.time())
    frame = pd.DataFrame({"user": [e.user for e in events], "item": [e.item for e in events],
                          "timestamp": [now if e.timestamp is None else e.timestamp for e in events]})
    for name in _OPTIONAL:
        values = [getattr(e, name) for e in events]
        given = [v is not None for v in values]
        if any(given) and not all(given):
            row = given.index(False)
            raise DataError(f"events[{row}]: no {name}, but events[{given.index(True)}] has one; give every "
                            f"event of a batch a {name}, or none")
        if all(given):
            frame[name] = values
    # Unlike the others, request_id may be on some events only: an event without one is attributed by window.
    requests = [e.request_id for e in events]
    if any(r is not None for r in requests):
        frame["request_id"] = requests
    return frame
