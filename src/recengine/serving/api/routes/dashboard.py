"""What the dashboard at / reads besides the rest of the API: store totals with events per day, model versions,
the newest events (its live view) and a user's stored history. Aggregates and pages are computed in SQL, so a
call costs the same however many events the store holds (the per-day series scans the events once)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from recengine.errors import UnknownIdError
from recengine.serving.api.deps import ReadKey, ServiceDep
from recengine.store import Store, schema

router = APIRouter(tags=["dashboard"])
#: The page's files (index.html, app.js, app.css), shipped as package data; app.py mounts
#: `assets` at /dashboard.
STATIC = FilePath(__file__).resolve().parents[2] / "dashboard"
assets = StaticFiles(directory=STATIC)
_DAY = 86_400


class DayCount(BaseModel):
    day: str = Field(description="a UTC date, YYYY-MM-DD")
    events: int


class VersionOut(BaseModel):
    id: int
    name: str
    status: str = Field(description="training, ready, failed or active (the one `recengine serve` loads)")
    metrics: dict[str, Any] | None
    created_at: datetime


class StatsOut(BaseModel):
    users: int
    items: int
    events: int
    events_per_day: list[DayCount] = Field(description="days with events only, oldest first")
    versions: list[VersionOut] = Field(description="every model version in the store, oldest first")


class EventOut(BaseModel):
    id: int = Field(description="the store's sequence number: ask for after_id=the largest seen")
    user: str
    item: str
    title: str | None
    event: str | None
    timestamp: int
    rating: float | None


class EventsOut(BaseModel):
    events: list[EventOut] = Field(description="newest first")


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The dashboard page; it holds no data (every figure comes from the API, with the reader's key)."""
    return FileResponse(STATIC / "index.html")


@router.get("/v1/stats", response_model=StatsOut)
def stats(service: ServiceDep, _: ReadKey) -> StatsOut:
    """Totals of the store, its events per UTC day, and its model versions."""
    store, e = service.store, schema.events
    day = e.c.timestamp // _DAY
    with store.engine.connect() as conn:
        days = conn.execute(sa.select(day, sa.func.count()).group_by(day).order_by(day)).all()
    counts = store.counts()
    return StatsOut(
        users=counts["users"], items=counts["items"], events=counts["events"],
        events_per_day=[DayCount(day=datetime.fromtimestamp(d * _DAY, UTC).date().isoformat(), events=n)
                        for d, n in days],
        versions=[VersionOut(id=v.id, name=v.name, status=v.status, metrics=v.metrics, created_at=v.created_at)
                  for v in store.versions()])


@router.get("/v1/events/recent", response_model=EventsOut)
def recent_events(
    service: ServiceDep, _: ReadKey,
    after_id: Annotated[int, Query(ge=0, description="only events stored after this one")] = 0,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 50,
) -> EventsOut:
    """The newest stored events (at most limit, newest first). Polled with after_id, it returns what arrived
    since; a burst of more than limit between two polls shows its newest limit (a live view, not a log)."""
    return EventsOut(events=_events(service.store, schema.events.c.id > after_id, limit))


@router.get("/v1/users/{user_id}/history", response_model=EventsOut)
def history(user_id: Annotated[str, Path(min_length=1, max_length=512)], service: ServiceDep, _: ReadKey,
            limit: Annotated[int, Query(ge=1, le=1_000)] = 100) -> EventsOut:
    """A user's stored events with item titles, newest first (by event time)."""
    u = schema.users
    with service.store.engine.connect() as conn:
        internal = conn.execute(sa.select(u.c.id).where(u.c.external_id == user_id)).scalar_one_or_none()
    if internal is None:
        raise UnknownIdError(f"unknown user {user_id!r}: the store has no events or attributes for them")
    return EventsOut(events=_events(service.store, schema.events.c.user_id == internal, limit, by_time=True))


def _events(store: Store, where: sa.ColumnElement[bool], limit: int, by_time: bool = False) -> list[EventOut]:
    e, u, i = schema.events, schema.users, schema.items
    order = (e.c.timestamp.desc(), e.c.id.desc()) if by_time else (e.c.id.desc(),)
    query = (sa.select(e.c.id, u.c.external_id.label("user"), i.c.external_id.label("item"), i.c.title, e.c.event,
                       e.c.timestamp, e.c.rating)
             .join(u, u.c.id == e.c.user_id).join(i, i.c.id == e.c.item_id).where(where).order_by(*order)
             .limit(limit))
    with store.engine.connect() as conn:
        return [EventOut(**row._asdict()) for row in conn.execute(query)]
