"""Models: the Recommender interface and one module per model."""

from recengine.models.base import Explanation, Recommender
from recengine.models.registry import available_models, create_model, get_model_class

__all__ = ["Explanation", "Recommender", "available_models", "create_model", "get_model_class"]
