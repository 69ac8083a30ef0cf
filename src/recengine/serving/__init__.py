"""The online side: the Service (active model, live histories, atomic swap) and its HTTP API (serving.api)."""

from recengine.serving.service import IngestReport, Recommendation, Recommendations, Service
from recengine.serving.settings import Settings

__all__ = ["IngestReport", "Recommendation", "Recommendations", "Service", "Settings"]
