"""Model versions (admin): list them with their metrics, retrain in the background, activate or roll back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from recengine.serving.api.deps import AdminKey, ServiceDep
from recengine.serving.lifecycle import Retrainer, default_models_root


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (the service is open). A caller that set app.state.retrainer (recengine
    serve --retrain-every) owns it; otherwise one that trains on request only is started here and stopped at
    shutdown."""
    own = getattr(app.state, "retrainer", None) is None
    if own:
        service = app.state.service
        app.state.retrainer = Retrainer(service, default_models_root(service.store.url)).start()
    try:
        yield
    finally:
        if own:
            app.state.retrainer.stop()
            del app.state.retrainer


router = APIRouter(prefix="/v1/models", tags=["models"], lifespan=lifespan)


def get_retrainer(request: Request) -> Retrainer:
    return request.app.state.retrainer


RetrainerDep = Annotated[Retrainer, Depends(get_retrainer)]


class VersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    params: dict[str, Any]
    status: str = Field(description="training, ready, failed or active (one at a time)")
    metrics: dict[str, Any] | None = Field(
        description="ndcg@20, recall@20, coverage@20 on a global-temporal split of the training snapshot, the "
                    "split and the data; for a failed version, the error")
    artifact_path: str | None
    created_at: datetime
    updated_at: datetime


class TrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="model name (default: the serving model's)")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="hyper-parameters (with no model: changes to the serving model's)")


class TrainOut(BaseModel):
    version: int
    status: str
    note: str


@router.get("", response_model=list[VersionOut])
def versions(service: ServiceDep, _: AdminKey) -> list[VersionOut]:
    """Every model version, oldest first, with its metrics and status."""
    return [VersionOut.model_validate(v) for v in service.store.versions()]


@router.post("/train", response_model=TrainOut, status_code=202)
def train(retrainer: RetrainerDep, _: AdminKey, body: TrainIn | None = None) -> TrainOut:
    """Retrain in the background: the version is registered now (status training); it is evaluated on a
    global-temporal split and served only if it is not worse than the active version (GET /v1/models)."""
    body = body or TrainIn()
    job = retrainer.trigger(body.model, body.params)
    return TrainOut(version=job.version.id, status=job.version.status,
                    note="training in the background; promoted and served if not worse than the active version")


@router.post("/{version_id}/activate", response_model=VersionOut)
def activate(version_id: int, retrainer: RetrainerDep, _: AdminKey) -> VersionOut:
    """Make a ready version active and serve it from now on (a rollback to an earlier one, or a version that was
    not promoted); the active version becomes ready."""
    return VersionOut.model_validate(retrainer.activate(version_id))
