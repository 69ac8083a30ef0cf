"""Prometheus metrics of one app: requests and latency per route, events ingested."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Latency buckets around the targets (p50 5 ms, p99 20 ms).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    """A registry per app (not the process-wide default), so several apps in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("recengine_http_requests", "HTTP requests by route template, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("recengine_http_request_duration_seconds", "HTTP request latency by route",
                                 ["route", "method"], buckets=_BUCKETS, registry=self.registry)
        self.events = Counter("recengine_events_ingested", "Events committed to the store through the API",
                              registry=self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (/v1/users/{user_id}/...), never the raw
    path: user ids stay out of the metrics and the label set stays small."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(route, scope["method"]).observe(time.perf_counter() - start)
