"""The model being served, health and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recengine.serving.api.deps import MetricsDep, ReadKey, ServiceDep
from recengine.serving.api.schemas import HealthOut, ModelOut

router = APIRouter(tags=["system"])


@router.get("/v1/model", response_model=ModelOut)
def model(service: ServiceDep, _: ReadKey) -> ModelOut:
    """The serving model: name, parameters, training data, where it was loaded from."""
    return ModelOut.model_validate(service.model_info())


@router.get("/health", response_model=HealthOut)
def health(service: ServiceDep) -> HealthOut:
    """Open to all: the service is up and serving a model."""
    return HealthOut(status="ok", model=service.model_info()["model"])


@router.get("/metrics", response_class=Response)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text: requests and latency per route, events ingested. Open, like /health: it holds counts
    per route template, no user data."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
