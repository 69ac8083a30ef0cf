"""Data layer: id vocabularies, the Dataset, histories, readers and splits."""

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.data.vocab import Vocabulary

__all__ = ["Dataset", "Histories", "Vocabulary"]
