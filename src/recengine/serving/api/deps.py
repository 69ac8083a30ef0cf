"""Dependencies as named Annotated aliases: routes declare what they need (the service, a key with a scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader

from recengine.errors import ConfigError
from recengine.serving.api.metrics import Metrics
from recengine.serving.errors import AuthenticationError, PermissionDeniedError
from recengine.serving.service import Service
from recengine.serving.settings import Settings

#: Each scope includes the ones below it: admin can write, write can read.
SCOPE_LEVELS = {"read": 1, "write": 2, "admin": 3}
_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (recengine keys create)")

# The dependencies are async: FastAPI runs a plain `def` dependency in its thread pool, and those hops (one per
# dependency per request) cost more than the lookups, about 0.5 ms of CPU a recommendation request on the
# 2-core machine (benchmarks/service.py). The key check's store query (one indexed row, a fraction of a
# millisecond) then runs on the event loop: cheaper than a hop, and the GIL serialises the work either way.


async def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def get_k(settings: SettingsDep, k: Annotated[int, Query(ge=1, description="how many items")] = 10) -> int:
    if k > settings.max_k:
        raise ConfigError(f"k={k} is over the limit of {settings.max_k} (RECENGINE_MAX_K)")
    return k


K = Annotated[int, Depends(get_k)]


def _scope(needed: str):
    async def check(service: ServiceDep, key: Annotated[str | None, Security(_key_header)]) -> list[str]:
        if not key:
            raise AuthenticationError(f"this needs an API key with the {needed} scope in the X-API-Key header "
                                      f"(an administrator creates one with `recengine keys create`)")
        scopes = service.store.verify_api_key(key)
        if scopes is None:
            raise AuthenticationError("the API key is unknown or revoked")
        if max((SCOPE_LEVELS.get(s, 0) for s in scopes), default=0) < SCOPE_LEVELS[needed]:
            raise PermissionDeniedError(f"this needs the {needed} scope; the key has {', '.join(scopes)}")
        return scopes

    return check


ReadKey = Annotated[list[str], Depends(_scope("read"))]
WriteKey = Annotated[list[str], Depends(_scope("write"))]
AdminKey = Annotated[list[str], Depends(_scope("admin"))]
