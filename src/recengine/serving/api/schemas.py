"""The API's typed bodies: what each route takes and returns (FastAPI turns them into the OpenAPI document)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, FiniteFloat, StringConstraints, WithJsonSchema

#: Seconds beyond which a timestamp cannot be a date (about the year 2900), as the file readers judge it.
_MAX_SECONDS = 3 * 10**10


def _id(value: object) -> object:
    """Ids are strings; a JSON number is taken as its text, as the readers take an integer id column."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _seconds(value: object) -> object:
    """Integer seconds since the epoch, or an ISO 8601 time (UTC when it has no zone), as seconds."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is neither seconds since the epoch nor an ISO 8601 time") from None
        value = int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_SECONDS:
        raise ValueError(f"{value} seconds is not a date; give seconds since the epoch (not milliseconds)")
    return value


Id = Annotated[str, BeforeValidator(_id), StringConstraints(min_length=1, max_length=512)]
Timestamp = Annotated[int, BeforeValidator(_seconds),
                      WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}],
                                      "description": "seconds since the epoch, or an ISO 8601 time"})]
Scalar = str | int | float | bool


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventIn(Body):
    """One interaction. Within a batch, an optional field is given on every event or on none."""

    user: Id
    item: Id
    timestamp: Timestamp | None = Field(None, description="when it happened; default: when it is received")
    event: str | None = Field(None, description="event type, e.g. view, click, purchase")
    rating: FiniteFloat | None = None
    weight: FiniteFloat | None = Field(None, description="strength of the interaction; default 1")
    request_id: str | None = Field(None, description="the recommendation response this event answers (its "
                                                     "X-Request-Id); without one, the outcome is attributed to "
                                                     "the user's latest impression of the item within a window")


class EventBatch(Body):
    events: list[EventIn] = Field(min_length=1)


class IngestOut(BaseModel):
    accepted: int = Field(description="events committed to the store")
    unknown_items: int = Field(description="of them, events with items the model does not know yet: stored, "
                                           "used from the next retrain")


class ItemIn(Body):
    title: str | None = None
    text: str | None = None
    categories: list[str] | None = None
    price: FiniteFloat | None = None
    attributes: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)


class ItemOut(BaseModel):
    item: str
    in_model: bool = Field(description="whether the serving model can recommend it")
    note: str


class UserIn(Body):
    attributes: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="e.g. {\"gender\": \"F\"}: a user without history gets what is "
                                          "popular among training users with the same attributes")


class UserOut(BaseModel):
    user: str


class RecommendationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item: str
    rank: int
    score: float
    title: str
    reason: str | None = Field(None, description="with explain: liked, similar-content, popular, new-item, ...")
    text: str | None = Field(None, description="with explain: the reason as a sentence for people")


class RecommendationsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user: str
    source: str = Field(description="model, popular-in-group (cold start by attributes) or popular")
    items: list[RecommendationOut]
    unknown_candidates: list[str] = Field(description="candidates the model cannot rank (unknown to it)")


class SimilarOut(BaseModel):
    item: str
    items: list[RecommendationOut]


class NamedWeight(BaseModel):
    name: str
    weight: float


class ActivityOut(BaseModel):
    interactions: int
    distinct_items: int
    first_seen: str | None
    last_seen: str | None
    active_days: int
    per_active_day: float
    ratings: int
    mean_rating: float | None
    mainstreamness: float | None


class SegmentOut(BaseModel):
    id: int
    name: str | None


class ProfileOut(BaseModel):
    user: str
    activity: ActivityOut
    category_column: str | None
    categories: list[NamedWeight]
    tags: list[NamedWeight]
    taste: list[float]
    half_life_days: float | None
    segment: SegmentOut | None
    notes: list[str]
    events_since_training: int = Field(description="posted events the profile (of the training data) lacks")


class ModelOut(BaseModel):
    model: str
    params: dict[str, Any]
    trained_at: str | None = None
    fit_seconds: float | None = None
    dataset: dict[str, Any] = Field(default_factory=dict)
    source: dict[str, Any] = Field(description="where the serving model was loaded from")
    users: int
    items: int
    live_users: int = Field(description="users whose history changed since training")
    categories: list[str]
    retrieval: dict[str, Any] | None = Field(None, description="the item index a factor model over a large "
                                             "catalogue answers through (search, items, dim, ef_search, "
                                             "build_seconds); null: every item is scored")
    score_cache: dict[str, int] = Field(description="the serving model's cache of users' scores: users, bytes, "
                                        "max_bytes, and hits and misses since it was loaded")


class HealthOut(BaseModel):
    status: str
    model: str


class ErrorOut(BaseModel):
    detail: str
