"""create_app(settings): the FastAPI application. Nothing is opened at import time; the lifespan opens the store
and loads the model (or takes a Service the caller opened)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

import recengine
from recengine.errors import RecengineError
from recengine.serving.api import errors
from recengine.serving.api.limits import BodyLimitMiddleware
from recengine.serving.api.metrics import Metrics, MetricsMiddleware
from recengine.serving.api.routes import dashboard, events, experiments, items, models, system, users
from recengine.serving.api.schemas import ErrorOut
from recengine.serving.service import Service
from recengine.serving.settings import Settings

_ERRORS = {status: {"model": ErrorOut} for status in (401, 403, 404, 413, 422, 500)}


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    """The API. settings: default Settings.from_env(). service: one already open (the CLI opens it first, so a
    bad store or model ends with a message before a port is bound); it stays the caller's to close. Without
    one, the lifespan opens Service.open(settings) and closes it at shutdown."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = service or Service.open(settings)
        try:
            yield
        finally:
            if service is None:
                app.state.service.close()

    app = FastAPI(title="recengine", version=recengine.__version__, lifespan=lifespan, responses=_ERRORS,
                  description="Recommendations, similar items and profiles from live user histories; events, "
                              "items and users in; API keys with read, write and admin scopes (X-API-Key).")
    app.state.settings = settings
    app.state.metrics = Metrics()
    # Each router carries its whole prefix, so a route's path is its full template (the metrics label).
    for module in (events, items, users, system, models, experiments):
        app.include_router(module.router)
    app.include_router(dashboard.router)
    app.mount("/dashboard", dashboard.assets, name="dashboard")
    app.add_exception_handler(RecengineError, errors.recengine_error)
    app.add_exception_handler(RequestValidationError, errors.validation_error)
    app.add_exception_handler(Exception, errors.internal_error)
    # The last added runs first: metrics see every request, 413s included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
