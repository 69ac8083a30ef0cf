"""TrainedModel: a fitted model bundled with what it needs to answer by external id.

The bundle holds the model, the training Dataset (id vocabularies, every user's history, item metadata) and a
popularity fallback for users with no history. It is what `recengine fit` writes and `recommend`, `score` and
the service load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

import recengine
from recengine.artifacts import read_manifest
from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.errors import ArtifactError, DataError
from recengine.models.base import Recommender
from recengine.models.popular import MostPopular
from recengine.models.topk import PAD_ITEM

_FORMAT = "recengine-bundle"
_FORMAT_VERSION = 1


class TrainedModel:
    """A fitted Recommender plus its training data, addressed by external user and item ids."""

    def __init__(self, model: Recommender, dataset: Dataset, fallback: Recommender, info: dict | None = None):
        self.model = model
        self.dataset = dataset
        self.fallback = fallback
        self.info = dict(info or {})

    @classmethod
    def fit(cls, model: Recommender, dataset: Dataset) -> TrainedModel:
        start = time.perf_counter()
        model.fit(dataset)
        seconds = time.perf_counter() - start
        info = {"model": model.name, "params": model.get_params(), "fit_seconds": round(seconds, 3),
                "dataset": dataset.stats(), "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "recengine_version": recengine.__version__}
        return cls(model, dataset, MostPopular().fit(dataset), info)

    # ------------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the bundle; the directory appears complete or not at all (written aside, then renamed).

        An existing bundle at `path` is replaced; anything else there (a file, a directory with other
        content) is an error, never deleted.
        """
        path = Path(path)
        if path.exists() and not (path.is_dir() and ((path / "bundle.json").is_file() or not any(path.iterdir()))):
            raise ArtifactError(f"{path} exists and is not a model directory; choose another output path")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ArtifactError(f"cannot create {path.parent}: {error.strerror}") from error
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            self.model.save(staging / "model")
            self.fallback.save(staging / "fallback")
            self.dataset.save(staging / "data")
            manifest = {"format": _FORMAT, "format_version": _FORMAT_VERSION, **self.info}
            (staging / "bundle.json").write_text(json.dumps(manifest, indent=2, default=str))
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                path.rename(old)
                staging.rename(path)
                shutil.rmtree(old)
            else:
                staging.rename(path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> TrainedModel:
        path = Path(path)
        info = read_manifest(path, "bundle.json", _FORMAT, _FORMAT_VERSION,
                             "a model directory written by `recengine fit`")
        return cls(Recommender.load(path / "model"), Dataset.load(path / "data"),
                   Recommender.load(path / "fallback"), info)

    # ------------------------------------------------------------------------------------------- answering
    def histories_for(self, user_ids: Sequence[object]) -> Histories:
        """Training histories of the given users; unknown users get an empty history (user index -1)."""
        users = self.dataset.users.index(list(user_ids), missing="negative")
        known = users >= 0
        full = self.dataset.histories()
        h = full[np.where(known, users, 0)]
        if known.all():
            return h
        # Unknown users: an empty row each.
        lengths = np.where(known, h.lengths, 0)
        keep = np.repeat(known, h.lengths)
        return Histories(np.concatenate([[0], np.cumsum(lengths)]), h.items[keep], h.n_items,
                         *(None if a is None else a[keep] for a in (h.weights, h.timestamps, h.ratings)),
                         users=np.where(known, users, -1))

    def recommend(self, user_ids: Sequence[object], k: int = 10, *, exclude_seen: bool = True,
                  exclude: sp.csr_matrix | None = None, candidates: sp.csr_matrix | None = None) -> pd.DataFrame:
        """Top-k per user as a frame: user, item, rank (1 = best), score, source (model or fallback).

        Users without any history are answered by the popularity fallback.
        """
        user_ids = [str(u) for u in user_ids]
        h = self.histories_for(user_ids)
        items, scores = self.model.recommend(h, k, exclude_seen=exclude_seen, exclude=exclude,
                                             candidates=candidates)
        source = np.full(len(h), self.model.name, dtype=object)
        empty = h.lengths == 0
        if empty.any() and self.model.name != self.fallback.name:
            rows = np.flatnonzero(empty)
            sub = lambda m: None if m is None else m[rows]  # noqa: E731
            items[rows], scores[rows] = self.fallback.recommend(h[rows], k, exclude=sub(exclude),
                                                                candidates=sub(candidates))
            source[rows] = "popular-fallback"
        return self._frame(np.asarray(user_ids, dtype=object), items, scores, source)

    def _frame(self, keys: np.ndarray, items: np.ndarray, scores: np.ndarray,
               source: np.ndarray | None = None) -> pd.DataFrame:
        valid = items != PAD_ITEM
        rows, ranks = np.nonzero(valid)
        frame = pd.DataFrame({
            "user": keys[rows], "item": self.dataset.items.lookup(items[valid]),
            "rank": ranks + 1, "score": scores[valid].astype(np.float64),
        })
        if source is not None:
            frame["source"] = source[rows]
        return frame

    def score_pairs(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """Scores of (user, item) pairs: for rating models, the predicted rating.

        Unknown users are scored from an empty history; unknown items get NaN (the model cannot score them).
        """
        for column in ("user", "item"):
            if column not in pairs.columns:
                raise DataError(f"pairs need columns user and item; got {list(pairs.columns)}")
        users = pairs["user"].astype(str).to_numpy()
        items = self.dataset.items.index(pairs["item"].astype(str).to_numpy(), missing="negative")
        distinct, row = np.unique(users, return_inverse=True)
        h = self.histories_for(distinct)
        known = items >= 0
        entries = sp.csr_matrix((np.ones(known.sum(), np.float32), (row[known], items[known])),
                                shape=(len(distinct), self.dataset.n_items))
        entries.sum_duplicates()
        predicted = self.model.predict(h, entries)
        out = np.full(len(pairs), np.nan)
        out[known] = np.asarray(predicted[row[known], items[known]]).ravel()
        return pd.DataFrame({"user": users, "item": pairs["item"].astype(str).to_numpy(), "score": out})

    def similar_items(self, item_ids: Sequence[object], k: int = 10) -> pd.DataFrame:
        """The k most similar items per item: item, similar, rank, score."""
        items = self.dataset.items.index(list(item_ids))
        similar, scores = self.model.similar_items(np.asarray(items), k)
        frame = self._frame(np.asarray([str(i) for i in item_ids], dtype=object), similar, scores)
        return frame.rename(columns={"user": "item", "item": "similar"})

    def explain(self, user_id: object, item_id: object, top: int = 5) -> dict:
        """Why `item_id` scores as it does for `user_id`: the history items that drove it, with weights."""
        h = self.histories_for([user_id])
        explanation = self.model.explain(h, int(self.dataset.items.index(item_id)), top=top)
        return {"user": str(user_id), "item": str(item_id), "score": explanation.score,
                "because": [{"item": str(self.dataset.items.ids[j]), "contribution": float(w)}
                            for j, w in explanation.contributions]}

    def titles(self, item_ids: Sequence[object]) -> list[str]:
        """Display titles of items (the id where the data has no title)."""
        features = self.dataset.item_features
        if features is None or "title" not in features.columns:
            return [str(i) for i in item_ids]
        titles = features["title"].reindex([str(i) for i in item_ids])
        return [str(t) if isinstance(t, str) else str(i) for i, t in zip(item_ids, titles, strict=True)]
