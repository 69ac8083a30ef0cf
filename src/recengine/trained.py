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
from recengine.models.topk import PAD_ITEM, keep_only, topk

#: How many of the latest history items say what a user is interested in, for "new item matching ...".
_INTEREST_ITEMS = 50
#: Timestamps below this are sequence numbers, not seconds since the epoch (2001-09-09): no "this week".
_EPOCH_SECONDS = 10**9
_FORMAT = "recengine-bundle"
_FORMAT_VERSION = 1


class TrainedModel:
    """A fitted Recommender plus its training data, addressed by external user and item ids."""

    def __init__(self, model: Recommender, dataset: Dataset, fallback: Recommender, info: dict | None = None):
        self.model = model
        self.dataset = dataset
        self.fallback = fallback
        self.info = dict(info or {})
        self._cache: dict = {}

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
                  exclude: sp.csr_matrix | None = None, candidates: sp.csr_matrix | None = None,
                  explain: bool = False) -> pd.DataFrame:
        """Top-k per user as a frame: user, item, rank (1 = best), score, source (model or fallback), and with
        explain, the reason kind and a sentence for people (one explanation per row: for small batches).

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
        frame = self._frame(np.asarray(user_ids, dtype=object), items, scores, source)
        if explain:
            rows, _ = np.nonzero(items != PAD_ITEM)
            reasons = [self.explain_history(user_ids[r], h[[r]], int(i), 3)
                       for r, i in zip(rows, items[items != PAD_ITEM], strict=True)]
            frame["reason"] = [e["reason"] for e in reasons]
            frame["text"] = [e["text"] for e in reasons]
        return frame

    def recommend_new_user(self, k: int = 10, *, liked: Sequence[object] = (), categories: Sequence[str] = (),
                           attributes: dict[str, object] | None = None, explain: bool = False) -> pd.DataFrame:
        """Top-k for someone the model has never seen, through the cold-start chain.

        liked (onboarding: a few item ids the person picked) becomes a history the model folds in, as later
        events will; without it, items are ranked by popularity — among the training users whose user
        attributes match all of `attributes` (a demographic group, e.g. {"gender": "F"}) when given.
        categories restricts the items to those in any of the chosen categories (genres). Columns: item, rank,
        score, source ("model", "popular-in-group" or "popular"), and with explain, reason and text.
        """
        n_items = self.dataset.n_items
        allowed = None
        if categories:
            if self._category_column() is None:
                raise DataError("this model's data has no item categories (genres); onboard with liked items")
            unknown = [c for c in categories if not len(self._category_members(str(c)))]
            if unknown:
                raise DataError(f"unknown categories {unknown}; known: {', '.join(sorted(self.category_members()))}")
            members = np.unique(np.concatenate([self._category_members(str(c)) for c in categories]))
            allowed = sp.csr_matrix((np.ones(len(members), np.float32), members, [0, len(members)]),
                                    shape=(1, n_items))
        liked_items = np.asarray(self.dataset.items.index([str(i) for i in liked]), dtype=np.int32) \
            if len(liked) else np.zeros(0, dtype=np.int32)
        history = Histories(np.array([0, len(liked_items)]), liked_items, n_items,
                            np.ones(len(liked_items), np.float32), np.arange(len(liked_items), dtype=np.int64))
        if len(liked_items):
            items, scores = self.model.recommend(history, k, candidates=allowed)
            source = "model"
        else:
            popularity, source = self.group_popularity(attributes)
            scores_all = np.asarray(popularity, dtype=np.float32)[None, :].copy()
            if allowed is not None:
                keep_only(scores_all, allowed)
            items, scores = topk(scores_all, k)
        frame = self._frame(np.array(["new"], dtype=object), items, scores,
                            np.array([source], dtype=object)).drop(columns="user")
        if explain:
            reasons = [self.explain_history("new", history, int(i), 3) for i in items[0][items[0] != PAD_ITEM]]
            if source != "model":  # the group's popularity, not the global one, ranked these
                for reason in reasons:
                    reason.update(reason="popular", text=self._sentence("popular", reason["details"], []))
            frame["reason"] = [r["reason"] for r in reasons]
            frame["text"] = [r["text"] for r in reasons]
        return frame

    def group_popularity(self, attributes: dict[str, object] | None) -> tuple[np.ndarray, str]:
        """Distinct users per item, over everyone or over the users whose attributes all match."""
        if not attributes:
            return self._popularity(), "popular"
        features = self.dataset.user_features
        if features is None:
            raise DataError("this model's data has no user attributes; recommend without attributes")
        missing = [a for a in attributes if a not in features.columns]
        if missing:
            raise DataError(f"unknown user attribute(s) {missing}; known: {', '.join(map(str, features.columns))}")
        match = np.ones(self.dataset.n_users, dtype=bool)
        for name, value in attributes.items():
            match &= features[name].astype(str).to_numpy() == str(value)
        if not match.any():
            raise DataError(f"no training user has attributes {attributes}; widen the group")
        binary = self.dataset.matrix("binary")[np.flatnonzero(match)]
        return np.asarray(binary.sum(axis=0)).ravel(), "popular-in-group"

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
        """Why `item_id` scores as it does for `user_id`: the reason kind, a sentence for people, and the
        history items that drove the score with their contributions."""
        h = self.histories_for([user_id])
        return self.explain_history(str(user_id), h, int(self.dataset.items.index(item_id)), top)

    def explain_history(self, user: str, history: Histories, item: int, top: int) -> dict:
        """explain for any history (a live one, with events after training): `item` is an internal index."""
        if history.lengths[0] == 0:
            explanation = self.fallback.explain(history, item, top=top)
        else:
            explanation = self.model.explain(history, item, top=top)
        reason, details = explanation.reason, dict(explanation.details)
        named = [j for j, weight in explanation.contributions if weight > 0]
        if reason in ("liked", "similar-content") and self._popularity()[item] == 0:
            reason = "new-item"
            details["interest"] = self._shared_categories(item, history.items)
        elif reason in ("liked", "similar-content") and not named:
            # Nothing in the history raises this item's score (it fills a short list): say what it is instead.
            reason = "popular"
        if reason == "popular":
            details.update(self._popular_details(item))
        ids = self.dataset.items.ids
        return {"user": user, "item": str(ids[item]), "score": explanation.score,
                "reason": reason, "text": self._sentence(reason, details, named), "details": details,
                "because": [{"item": str(ids[j]), "title": self.titles([ids[j]])[0], "contribution": float(w)}
                            for j, w in explanation.contributions]}

    def _sentence(self, reason: str, details: dict, named: list[int]) -> str:
        titles = self.titles(list(self.dataset.items.ids[named[:2]]))
        liked = " and ".join(titles)
        if reason == "liked":
            return f"Because you liked {liked}"
        if reason == "similar-content":
            shared = details.get("shared") or []
            return f"Similar in {', '.join(map(str, shared[:3]))} to {titles[0]}" if shared else \
                f"Similar to {liked}"
        if reason == "new-item":
            interest = details.get("interest") or []
            return f"New item matching your interest in {', '.join(interest[:3])}" if interest else \
                (f"New item similar to {liked}" if titles else "New item")
        if reason == "explore":
            return "Something different, to learn your taste"
        category, window = details.get("category"), details.get("window_days")
        where = f" in {category}" if category else ""
        return f"Popular{where} this week" if window == 7 else f"Popular{where}"

    def _popularity(self) -> np.ndarray:
        if "popularity" not in self._cache:
            self._cache["popularity"] = self.dataset.item_popularity()
        return self._cache["popularity"]

    def _category_column(self) -> str | None:
        features = self.dataset.item_features
        return next((c for c in ("genres", "categories") if features is not None and c in features.columns), None)

    def _item_categories(self, item: int) -> list[str]:
        column = self._category_column()
        value = None if column is None else self.dataset.item_features[column].iloc[item]
        return [str(v) for v in value] if isinstance(value, list | tuple | np.ndarray) else []

    def category_members(self) -> dict[str, np.ndarray]:
        """Internal indices of the items in each category (genre), computed once; empty without categories."""
        if "members" not in self._cache:
            column = self._category_column()
            if column is None:
                self._cache["members"] = {}
                return self._cache["members"]
            lists = self.dataset.item_features[column].map(
                lambda v: [str(x) for x in v] if isinstance(v, list | tuple | np.ndarray) else [])
            exploded = pd.Series(np.repeat(np.arange(len(lists)), lists.map(len).to_numpy()),
                                 index=[c for cs in lists for c in cs])
            self._cache["members"] = {c: group.to_numpy() for c, group in exploded.groupby(level=0)}
        return self._cache["members"]

    def _category_members(self, category: str) -> np.ndarray:
        return self.category_members().get(category, np.zeros(0, dtype=np.int64))

    def _shared_categories(self, item: int, history_items: np.ndarray) -> list[str]:
        """The item's categories, most frequent in the history first, that the history has at all."""
        counts: dict[str, int] = {}
        for j in history_items[-_INTEREST_ITEMS:]:
            for category in self._item_categories(int(j)):
                counts[category] = counts.get(category, 0) + 1
        return sorted((c for c in self._item_categories(item) if c in counts), key=lambda c: -counts[c])

    def _popular_details(self, item: int) -> dict:
        """The item's first category, and whether it is among that category's 10 most popular of the week
        before the newest event (window_days 7; only when timestamps are seconds)."""
        categories = self._item_categories(item)
        category = categories[0] if categories else None
        members = self._category_members(category) if category else np.arange(self.dataset.n_items)
        ts = self.dataset.timestamp
        in_week = False
        if ts.max() >= _EPOCH_SECONDS:
            recent = ts >= ts.max() - 7 * 86400
            week = np.bincount(self.dataset.item_index[recent], minlength=self.dataset.n_items)
            in_week = bool(week[item] > 0 and (week[members] > week[item]).sum() < 10)
        return {"category": category, "window_days": 7 if in_week else None}

    def titles(self, item_ids: Sequence[object]) -> list[str]:
        """Display titles of items (the id where the data has no title)."""
        features = self.dataset.item_features
        if features is None or "title" not in features.columns:
            return [str(i) for i in item_ids]
        titles = features["title"].reindex([str(i) for i in item_ids])
        return [str(t) if isinstance(t, str) else str(i) for i, t in zip(item_ids, titles, strict=True)]

    def profile(self, user_id: object, *, top: int = 10,
                segments: recengine.profiles.Segments | None = None) -> recengine.profiles.UserProfile:
        """Who a training user is: categories, tags, taste, activity (see recengine.profiles.user_profile)."""
        from recengine.profiles import user_profile

        return user_profile(self.dataset, user_id, top=top, segments=segments)
