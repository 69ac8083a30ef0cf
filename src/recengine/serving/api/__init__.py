"""The HTTP API over a Service: create_app(settings)."""

from recengine.serving.api.app import create_app

__all__ = ["create_app"]
