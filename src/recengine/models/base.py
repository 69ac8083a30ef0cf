"""The Recommender interface every model implements, scikit-learn style.

* ``__init__`` stores hyper-parameters under their own names and does nothing else;
* ``fit(dataset)`` learns and returns self; learned state lives in attributes ending in ``_``;
* ``score(histories)`` gives a dense (n_histories, n_items) score matrix;
* ``recommend`` (shared here) batches ``score``, excludes seen items, restricts to candidates and takes top-K;
* ``save``/``load`` write the learned attributes as arrays (npz), named tensors (safetensors: a dict of arrays,
  such as a network's weights) and JSON: no pickles.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

import recengine
from recengine.artifacts import TENSORS_FILE, load_arrays, load_tensors, read_manifest
from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.errors import ArtifactError, ConfigError, DataError, NotFittedError, NotSupportedError
from recengine.models.topk import PAD_ITEM, keep_only, mask_entries, topk

_FORMAT = "recengine-model"
_FORMAT_VERSION = 1
#: Upper bound on the floats of one dense score block, so that scoring any number of users stays in memory.
_SCORE_BLOCK = 1 << 25
#: How many of a history's latest entries the ablation explanation removes one at a time.
EXPLAIN_ABLATION_ITEMS = 200


@dataclass(frozen=True)
class Interval:
    """A numeric hyper-parameter constraint: kind (int or float) within [low, high] (None = unbounded)."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def check(self, name: str, value: Any) -> None:
        ok_type = isinstance(value, int | np.integer) if self.kind is int else \
            isinstance(value, int | float | np.integer | np.floating)
        if isinstance(value, bool) or not ok_type:
            raise ConfigError(f"{name} must be {self.kind.__name__}, got {value!r}")
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise ConfigError(f"{name} must be {'>' if self.low_open else '>='} {self.low}, got {value!r}")
        if self.high is not None and value > self.high:
            raise ConfigError(f"{name} must be <= {self.high}, got {value!r}")


@dataclass(frozen=True)
class Options:
    """A hyper-parameter that takes one of a fixed set of values."""

    values: tuple

    def check(self, name: str, value: Any) -> None:
        if not any(value == v and type(value) is type(v) for v in self.values):
            raise ConfigError(f"{name} must be one of {list(self.values)}, got {value!r}")


#: Kinds of reason an Explanation gives; TrainedModel turns each into a sentence with titles and categories.
REASONS = ("liked", "similar-content", "popular", "new-item", "explore")


@dataclass(frozen=True)
class Explanation:
    """Why an item was scored as it was.

    contributions: the history items (internal indices) that drove the score and their shares of it, largest
    first. reason: the kind of reason, one of REASONS —
      "liked": collaborative, "because you liked X and Y" (neighbour, factor or attention contributions);
      "similar-content": "similar in genre/tags to Z" (details["shared"]: the shared genres/tags/terms);
      "popular": "popular in Comedy this week" (details: "category", "window_days"; contributions empty);
      "new-item": an item without interactions, reached through content ("new item matching your interest
      in ..."; details["interest"]: the user's categories it matches);
      "explore": shown to learn what the user thinks of it, not because of a score (random, bandits).
    details: JSON-able extras for the reason.
    Faithful by contract: removing the named history items from the history lowers the item's score.
    """

    item: int
    score: float
    contributions: list[tuple[int, float]]
    reason: str = "liked"
    details: dict[str, Any] = field(default_factory=dict)


class Recommender:
    """Base class of every model. Subclasses set ``name`` and implement ``fit`` and ``score``."""

    #: Registry name, as used by the CLI (``--model NAME``).
    name: ClassVar[str] = ""
    #: "implicit" models read interaction weights; "ratings" models need explicit ratings.
    feedback: ClassVar[str] = "implicit"
    #: False for models that rank the same way whatever the history (popularity, random).
    personalized: ClassVar[bool] = True
    #: Per hyper-parameter constraint, checked at fit time.
    parameter_constraints: ClassVar[dict[str, Interval | Options]] = {}
    #: Search space for tuning: {param: ("int"|"float"|"log"|"cat", low, high) or ("cat", [choices])}.
    search_space: ClassVar[dict[str, tuple]] = {}

    # --------------------------------------------------------------------------------- hyper-parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.KEYWORD_ONLY
                or (p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ConfigError(f"{type(self).__name__} has no parameter {key!r}; valid: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def clone(self) -> Self:
        """An unfitted copy with the same hyper-parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k) != v]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _validate_params(self) -> None:
        for key, constraint in self.parameter_constraints.items():
            constraint.check(key, getattr(self, key))

    def _check_dataset(self, dataset: Dataset) -> None:
        if dataset.n_interactions == 0:
            raise DataError(f"{self.name}: cannot fit on a dataset without interactions")
        if self.feedback == "ratings" and not dataset.has_ratings:
            raise DataError(f"{self.name} learns from explicit ratings, but {dataset.name!r} has none")

    # --------------------------------------------------------------------------------------- learning
    def fit(self, dataset: Dataset) -> Self:
        raise NotImplementedError

    def score(self, histories: Histories) -> np.ndarray:
        """Scores of every item for every history: float32 array (len(histories), n_items)."""
        raise NotImplementedError

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "n_items_")

    def _check_fitted(self, histories: Histories | None = None) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(dataset) or load(path) first")
        if histories is not None and histories.n_items != self.n_items_:
            raise DataError(f"histories are over {histories.n_items} items but the model knows {self.n_items_}")

    def _check_items(self, items: np.ndarray) -> np.ndarray:
        items = np.atleast_1d(np.asarray(items))
        if not np.issubdtype(items.dtype, np.integer) or (len(items) and (
                items.min() < 0 or items.max() >= self.n_items_)):
            raise DataError(f"items must be internal item indices in [0, {self.n_items_})")
        return items.astype(np.int64)

    def _check_item(self, item: int) -> int:
        if isinstance(item, bool) or not isinstance(item, int | np.integer) or not 0 <= item < self.n_items_:
            raise DataError(f"item {item!r} is not an internal item index in [0, {self.n_items_})")
        return int(item)

    # ------------------------------------------------------------------------------------ recommending
    def recommend(
        self,
        histories: Histories,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        exclude: sp.csr_matrix | None = None,
        candidates: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items per history: (items int32, scores float32), each (len(histories), k), best first.

        exclude_seen drops the items in each history; exclude (a CSR matrix, one row per history) drops more;
        candidates (same shape) restricts each row to its stored entries. Short rows are padded with -1.
        """
        self._check_fitted(histories)
        Interval(int, 1).check("k", k)
        for extra, label in ((exclude, "exclude"), (candidates, "candidates")):
            if extra is not None and extra.shape != (len(histories), self.n_items_):
                raise DataError(f"{label} must be a ({len(histories)}, {self.n_items_}) sparse matrix")
        ranked = self._recommend_on_device(histories, k, exclude_seen, exclude, candidates)
        if ranked is not None:
            return ranked
        items = np.full((len(histories), k), PAD_ITEM, dtype=np.int32)
        scores = np.full((len(histories), k), -np.inf, dtype=np.float32)
        step = max(1, _SCORE_BLOCK // max(1, self.n_items_))
        for start in range(0, len(histories), step):
            block = slice(start, min(start + step, len(histories)))
            batch = histories[block]
            s = np.array(self.score(batch), dtype=np.float32, copy=True, order="C")
            if exclude_seen:
                mask_entries(s, batch.matrix("binary"))
            if exclude is not None:
                mask_entries(s, exclude[block])
            if candidates is not None:
                keep_only(s, candidates[block])
            items[block], scores[block] = topk(s, k)
        return items, scores

    def _recommend_on_device(
        self, histories: Histories, k: int, exclude_seen: bool, exclude: sp.csr_matrix | None,
        candidates: sp.csr_matrix | None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The recommend result computed on an accelerator (models with a GPU path), or None to rank here."""
        return None

    def predict(self, histories: Histories, items: sp.csr_matrix) -> sp.csr_matrix:
        """Scores (predicted ratings, for rating models) of the stored entries of `items`, one row per history."""
        self._check_fitted(histories)
        items = sp.csr_matrix(items)
        if items.shape != (len(histories), self.n_items_):
            raise DataError(f"predict: items must be a ({len(histories)}, {self.n_items_}) sparse matrix, "
                            f"got {items.shape}")
        out = items.astype(np.float32, copy=True)
        step = max(1, _SCORE_BLOCK // max(1, self.n_items_))
        for start in range(0, len(histories), step):
            stop = min(start + step, len(histories))
            s = np.asarray(self.score(histories[start:stop]), dtype=np.float32)
            lo, hi = items.indptr[start], items.indptr[stop]
            rows = np.repeat(np.arange(stop - start), np.diff(items.indptr[start:stop + 1]))
            out.data[lo:hi] = s[rows, items.indices[lo:hi]]
        return out

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items most similar to each given item (itself excluded)."""
        raise NotSupportedError(f"{self.name} does not define item similarity; use itemknn, rp3beta, ease or a "
                                f"factor model")

    def explain(self, history: Histories, item: int, top: int = 5) -> Explanation:
        """Which items of a single history drove the score of `item`, by ablation (any model).

        A history item's contribution is how much the item's score drops when that one history entry is
        removed: faithful by construction, whatever the model. Unlike the exact decompositions of linear models
        (which override this), these contributions need not sum to the score. Only the latest
        EXPLAIN_ABLATION_ITEMS entries are tried, which bounds the cost on very long histories; the history is
        scored as a fresh one (folded in), so that the full and the ablated histories are scored alike.
        """
        self._check_fitted(history)
        if len(history) != 1:
            raise DataError(f"explain takes one history, got {len(history)}")
        item = self._check_item(item)
        history = history.with_users(None)
        n = int(history.lengths[0])
        tried = np.arange(max(0, n - EXPLAIN_ABLATION_ITEMS), n)
        full = float(np.asarray(self.score(history))[0, item])
        if len(tried) == 0:
            return Explanation(item, full, [], reason="popular")
        # Row r of the batch is the history without entry tried[r].
        keep = np.ones((len(tried), n), dtype=bool)
        keep[np.arange(len(tried)), tried] = False
        entries = np.tile(np.arange(n), len(tried))[keep.ravel()]
        ablated = Histories(
            np.arange(len(tried) + 1, dtype=np.int64) * (n - 1), history.items[entries], history.n_items,
            *(None if a is None else a[entries] for a in (history.weights, history.timestamps, history.ratings)))
        drops = full - np.asarray(self.score(ablated), dtype=np.float64)[:, item]
        # A repeated item is one reason: keep its largest effect.
        items = history.items[tried]
        order = np.argsort(-drops, kind="stable")
        _, first = np.unique(items[order], return_index=True)
        best = order[np.sort(first)]
        best = best[np.argsort(-drops[best], kind="stable")]
        best = best[drops[best] > 0][:top]
        if len(best) == 0:  # no history item raises the score: the item is recommended on its general appeal
            return Explanation(item, full, [], reason="popular")
        return Explanation(item, full, [(int(items[b]), float(drops[b])) for b in best])

    # ------------------------------------------------------------------------------------- persistence
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        for key, value in vars(self).items():
            if not key.endswith("_") or key.startswith("_"):
                continue
            if isinstance(value, np.ndarray):
                arrays[key] = value
            elif sp.issparse(value):
                m = sp.csr_matrix(value)
                arrays.update({f"{key}.data": m.data, f"{key}.indices": m.indices, f"{key}.indptr": m.indptr,
                               f"{key}.shape": np.asarray(m.shape)})
            elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
                arrays.update({f"{key}/{name}": v for name, v in value.items()})  # named tensors
            elif isinstance(value, int | float | str | bool | list | dict | type(None) | np.integer | np.floating):
                meta[key] = value.item() if isinstance(value, np.generic) else value
            else:
                raise ArtifactError(f"cannot save attribute {key} of type {type(value).__name__}")
        return arrays, meta

    def save(self, path: str | Path) -> None:
        """Write the model to a directory: manifest.json (name, params, scalars) + arrays.npz, and the named
        tensors (keys ATTRIBUTE/NAME) in tensors.safetensors."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays, meta = self._state()
        tensors = {key: np.ascontiguousarray(value) for key, value in arrays.items() if "/" in key}
        np.savez(path / "arrays.npz", **{key: value for key, value in arrays.items() if "/" not in key})
        (path / TENSORS_FILE).unlink(missing_ok=True)
        if tensors:
            from safetensors.numpy import save_file

            save_file(tensors, path / TENSORS_FILE)
        manifest = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "model": self.name,
                    "recengine_version": recengine.__version__, "params": self.get_params(), "state": meta}
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load any saved model; called on a subclass, the saved model must be of that class."""
        from recengine.models.registry import get_model_class

        path = Path(path)
        manifest = read_manifest(path, "manifest.json", _FORMAT, _FORMAT_VERSION, "a saved model")
        model_cls = get_model_class(manifest["model"])
        if cls is not Recommender and not issubclass(model_cls, cls):
            raise ArtifactError(f"{path} holds a {model_cls.__name__}, not a {cls.__name__}")
        model = model_cls(**manifest["params"])
        arrays = load_arrays(path)
        for key in {k.split(".")[0] for k in arrays if k.endswith(".shape")}:
            shape = tuple(int(x) for x in arrays.pop(f"{key}.shape"))
            model.__dict__[key] = sp.csr_matrix(
                (arrays.pop(f"{key}.data"), arrays.pop(f"{key}.indices"), arrays.pop(f"{key}.indptr")), shape=shape)
        model.__dict__.update(arrays)
        for key, value in load_tensors(path).items():
            attribute, _, name = key.partition("/")
            model.__dict__.setdefault(attribute, {})[name] = value
        model.__dict__.update(manifest["state"])
        return model
