"""recengine: personalized recommendations from raw behaviour logs."""

__version__ = "0.1.0"
