"""The scores a model gave recently served users, kept so that the next request of a user whose history has not
changed copies a row instead of scoring again. Scoring is the request's largest cost for models whose cost
grows with the history (EASE sums a dense row per history item: 12 ms for the 2,698-item history of
ml-latest-small, where the copy takes microseconds), and those long histories are the latency tail.

An entry remembers the history it was computed from (the live history object, which the service replaces whole
on every change, or None for the training history) and answers only for that one, so a request that scored an
old history while an event arrived can never make the new history's answer stale. Filters, exclusions, new
items and deleted items are applied after the cache, to a copy."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

#: The default bound: about 6,900 users of a 9,742-item catalogue (float32 rows).
DEFAULT_MAX_BYTES = 256 * 2**20
_ANY = object()


class ScoreCache:
    """Least-recently-used model scores per user, at most max_bytes of them (0 keeps nothing). Thread-safe:
    requests read and write it from the server's worker threads."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._bytes = 0
        self._entries: OrderedDict[str, tuple[object, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def info(self) -> dict[str, int]:
        return {"users": len(self), "bytes": self._bytes, "max_bytes": self.max_bytes, "hits": self.hits,
                "misses": self.misses}

    def get(self, user: str, history: object) -> np.ndarray | None:
        """The scores stored for the user if they were computed from this very history object, else None.
        The row is shared: copy it before changing it."""
        with self._lock:
            entry = self._entries.get(user)
            if entry is None or entry[0] is not history:
                self.misses += 1
                return None
            self._entries.move_to_end(user)
            self.hits += 1
            return entry[1]

    def put(self, user: str, history: object, scores: np.ndarray) -> None:
        """Keep the user's scores (computed from `history`), evicting the least recently used beyond the bound."""
        if scores.nbytes > self.max_bytes:
            return
        scores.setflags(write=False)  # shared by later requests: a caller that forgets to copy fails loudly
        with self._lock:
            old = self._entries.pop(user, None)
            if old is not None:
                self._bytes -= old[1].nbytes
            self._entries[user] = (history, scores)
            self._bytes += scores.nbytes
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes

    def forget(self, user: str, history: object = _ANY) -> None:
        """Drop the user's entry (a deleted user: nothing derived from their data stays; a changed history: its
        old scores and history need no memory), or only the one computed from `history` when given."""
        with self._lock:
            entry = self._entries.get(user)
            if entry is not None and (history is _ANY or entry[0] is history):
                del self._entries[user]
                self._bytes -= entry[1].nbytes
