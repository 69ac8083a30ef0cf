"""Experiments: define (admin), list, reshare and stop them; their analysis (read)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from recengine.serving.api.deps import AdminKey, ReadKey, ServiceDep
from recengine.serving.experiments import DEFAULT_SURFACE, OUTCOME_EVENTS, Experiment, analyze_experiment
from recengine.store.store import ATTRIBUTION_WINDOW

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])
Name = Annotated[str, Path(min_length=1, max_length=200)]


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    share: float = Field(description="share of the traffic outside the holdout; the shares sum to 1")
    model_version: int | None = Field(None, description="a ready or active model version to serve (GET "
                                                        "/v1/models); default: the serving model")
    diversity: float | None = Field(None, description="a serving configuration: the diversity knob in [0, 1]")


class ExperimentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    surface: str = Field(DEFAULT_SURFACE, description="where the slates are shown; recommendation requests "
                                                      "name it with ?surface=")
    variants: list[VariantIn] = Field(min_length=2)
    holdout: float = Field(0.0, description="share of users kept on the default serving, outside the variants")
    allocation: str = Field("fixed", description="fixed: hashed sticky shares; bandit: Thompson sampling over "
                                                 "the variants on the primary metric")
    primary_metric: str = Field("click", description=f"an outcome event type: {', '.join(OUTCOME_EVENTS)}")
    guardrail_metrics: list[str] = Field(default_factory=list)
    attribution_window: int = Field(ATTRIBUTION_WINDOW, description="seconds after an impression within which "
                                                                   "an outcome without a request_id counts")
    starts_at: datetime | None = Field(None, description="default: now")
    stops_at: datetime | None = Field(None, description="default: runs until stopped")


class SharesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shares: dict[str, float] = Field(description="every variant's new share")
    holdout: float | None = None


class VariantOut(BaseModel):
    name: str
    share: float
    model_version: int | None
    diversity: float | None


class ExperimentOut(BaseModel):
    name: str
    surface: str
    variants: list[VariantOut]
    holdout: float
    allocation: str
    primary_metric: str
    guardrail_metrics: list[str]
    attribution_window: int
    starts_at: datetime
    stops_at: datetime | None
    running: bool
    posterior: dict[str, dict[str, float]] | None = Field(
        description="a bandit's Beta posterior per variant (successes, failures, mean); null for fixed shares")


def _out(service: ServiceDep, experiment: Experiment) -> ExperimentOut:
    return ExperimentOut(**experiment.to_dict(), running=experiment.running(datetime.now(experiment.starts_at.tzinfo)),
                         posterior=service.experiments.posterior(experiment.name))


@router.post("", response_model=ExperimentOut, status_code=201)
def create(body: ExperimentIn, service: ServiceDep, _: AdminKey) -> ExperimentOut:
    """Define an experiment. 422 saying why when the shares do not sum to 1, a model version is unknown (or
    not servable), or another experiment runs on the surface at the same time."""
    spec = body.model_dump()
    experiment = service.experiments.create(spec.pop("name"), spec.pop("variants"), **spec)
    service.load_variant_models()
    return _out(service, experiment)


@router.get("", response_model=list[ExperimentOut])
def list_experiments(service: ServiceDep, _: ReadKey) -> list[ExperimentOut]:
    """Every experiment, oldest first."""
    return [_out(service, e) for e in service.experiments.all()]


@router.get("/{name}", response_model=ExperimentOut)
def get(name: Name, service: ServiceDep, _: ReadKey) -> ExperimentOut:
    return _out(service, service.experiments.get(name))


@router.put("/{name}/shares", response_model=ExperimentOut)
def reshare(name: Name, body: SharesIn, service: ServiceDep, _: AdminKey) -> ExperimentOut:
    """New traffic shares: users move only from variants that shrink to variants that grow."""
    return _out(service, service.experiments.reshare(name, body.shares, body.holdout))


@router.post("/{name}/stop", response_model=ExperimentOut)
def stop(name: Name, service: ServiceDep, _: AdminKey) -> ExperimentOut:
    """Stop now: from the next request its surface is served as without it."""
    experiment = service.experiments.stop(name)
    service.load_variant_models()
    return _out(service, experiment)


@router.get("/{name}/analysis")
def analysis(name: Name, service: ServiceDep, _: ReadKey) -> dict[str, Any]:
    """Per metric and variant: exposures, rate with its 95% interval, relative lift with its delta-method
    interval, fixed-horizon and always-valid p-values (recengine.online.experiments.analyze); the sample-ratio
    check; the primary metric's lift over time; and a ship / keep running / stop line."""
    service.impressions.flush()
    return analyze_experiment(service.store, service.experiments.get(name))
