"""Users: upsert and delete, recommendations, profile."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Path, Query, Response

from recengine.serving.api.deps import K, ReadKey, ServiceDep, WriteKey
from recengine.serving.api.schemas import ProfileOut, RecommendationsOut, UserIn, UserOut
from recengine.serving.experiments import DEFAULT_SURFACE

router = APIRouter(prefix="/v1/users", tags=["users"])
UserId = Annotated[str, Path(min_length=1, max_length=512)]


@router.put("/{user_id}", response_model=UserOut)
def put_user(user_id: UserId, user: UserIn, service: ServiceDep, _: WriteKey) -> UserOut:
    """Insert or update a user's attributes (they replace the stored ones)."""
    service.upsert_users(pd.DataFrame([user.attributes], index=pd.Index([user_id], name="user")))
    return UserOut(user=user_id)


@router.delete("/{user_id}", status_code=204, response_class=Response)
def delete_user(user_id: UserId, service: ServiceDep, _: WriteKey) -> Response:
    """Delete a user: their events leave the store and their state leaves the live model before this answers;
    from then on they are an unknown user."""
    service.delete_user(user_id)
    return Response(status_code=204)


@router.get("/{user_id}/recommendations", response_model=RecommendationsOut)
async def recommendations(
    user_id: UserId, service: ServiceDep, k: K, _: ReadKey,
    exclude: Annotated[list[str], Query(description="item ids never to return (repeat the parameter)")] = [],  # noqa: B006
    candidates: Annotated[list[str] | None, Query(description="rank only these item ids (repeat)")] = None,
    category: Annotated[list[str], Query(description="only items in any of these categories (repeat)")] = [],  # noqa: B006
    exclude_seen: Annotated[bool, Query(description="leave out items in the user's history")] = True,
    diversity: Annotated[float, Query(ge=0, le=1, description="0: by relevance; up to 1: more varied")] = 0.0,
    explain: Annotated[bool, Query(description="add a reason and a sentence to each item")] = False,
    surface: Annotated[str, Query(min_length=1, max_length=200,
                                  description="where the slate is shown; an experiment there picks the variant")
                       ] = DEFAULT_SURFACE,
) -> Response:
    """Top-k for a user from their live history (events posted since training included). A user without
    history gets what is popular among users with the same attributes, else what is popular. The X-Request-Id
    header names the response in the impression log: post it as request_id with the outcomes it led to. Under
    an experiment, X-Experiment and X-Variant say which variant served it."""
    # On the event loop, not the thread pool: about a millisecond of CPU-bound work, for which a thread hop
    # costs more than it frees (the GIL holds the loop's other work back either way).
    result = service.recommend(user_id, k, exclude=exclude, candidates=candidates, categories=category,
                               exclude_seen=exclude_seen, diversity=diversity, explain=explain, surface=surface)
    # A header, not a body field: the body stays a pure function of the user's state (equal requests, equal
    # bodies), which callers and caches compare.
    headers = {"X-Request-Id": result.request_id}
    if result.experiment is not None:
        headers["X-Experiment"], headers["X-Variant"] = result.experiment, result.variant
    # Serialized here, once: returned as a model, FastAPI would validate it against response_model a second
    # time on the hottest path; response_model still documents the body.
    return Response(RecommendationsOut.model_validate(result).model_dump_json(), media_type="application/json",
                    headers=headers)


@router.get("/{user_id}/profile", response_model=ProfileOut)
def profile(user_id: UserId, service: ServiceDep, _: ReadKey) -> ProfileOut:
    """Who a training user is: categories, tags, activity, taste (of the data the model was trained on)."""
    return ProfileOut.model_validate(service.profile(user_id))
