"""The one mapping from recengine errors to HTTP statuses, and the handlers that answer with {"detail": ...}."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from recengine.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    NotFittedError,
    NotSupportedError,
    RecengineError,
    UnknownIdError,
)
from recengine.serving.errors import AuthenticationError, PermissionDeniedError, RequestTooLargeError

logger = logging.getLogger(__name__)

#: First match wins: UnknownIdError is a DataError, and a more precise one.
STATUS = (
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (RequestTooLargeError, 413),
    (UnknownIdError, 404),
    (DataError, 422),
    (ConfigError, 422),
    (NotSupportedError, 501),
    (ArtifactError, 503),
    (NotFittedError, 503),
)


def error_response(error: RecengineError) -> JSONResponse:
    status = next((code for kind, code in STATUS if isinstance(error, kind)), 500)
    headers = {"WWW-Authenticate": "X-API-Key"} if status == 401 else None
    return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)


async def recengine_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RecengineError)
    return error_response(error)


async def validation_error(request: Request, error: Exception) -> JSONResponse:
    """Pydantic's errors as one sentence, each naming where: events[3].timestamp: ..."""
    assert isinstance(error, RequestValidationError)
    problems = []
    for problem in error.errors():
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"][1:])
        problems.append(f"{where.lstrip('.') or problem['loc'][0]}: {problem['msg']}")
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


async def internal_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse({"detail": "internal server error; the server log has the details"}, status_code=500)
