"""A cap on request bodies, enforced before a route reads them."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recengine.serving.api.errors import error_response
from recengine.serving.errors import RequestTooLargeError


class BodyLimitMiddleware:
    """413 for a body over max_bytes: at once when Content-Length says so; a body without one (chunked) is
    read up to the limit first, then handed on."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._refuse(scope, receive, send, length.decode(errors="replace") + " bytes")
                return
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size, more = 0, True
        while more:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            more = message.get("more_body", False) and message["type"] == "http.request"
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, f"over {self.max_bytes:,} bytes")
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        error = RequestTooLargeError(f"the request body is {size}; the limit is {self.max_bytes:,} bytes "
                                     f"(RECENGINE_MAX_BODY_BYTES): send smaller batches")
        await error_response(error)(scope, receive, send)
