"""The impression log's writer: requests hand it their impressions, a thread writes them to the store in batches.

A request only appends to a list under a lock (microseconds), so logging keeps off the latency of the request
path; the thread commits what has gathered every FLUSH_SECONDS, or at once when BATCH impressions wait, and
everything left at close. One commit per batch instead of per request: on SQLite every commit fsyncs.
"""

from __future__ import annotations

import logging
import threading

from recengine.store import Store
from recengine.store.store import Impression

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1
BATCH = 500


class ImpressionWriter:
    def __init__(self, store: Store):
        self._store = store
        self._waiting: list[Impression] = []
        self._wake = threading.Condition()
        # Held from taking a batch until its commit: flush() returning means all logged before it is stored.
        self._writing = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="impression-writer", daemon=True)
        self._thread.start()

    def log(self, impression: Impression) -> None:
        with self._wake:
            self._waiting.append(impression)
            if len(self._waiting) >= BATCH:
                self._wake.notify()

    def flush(self) -> None:
        """Write every impression logged so far before returning."""
        with self._writing:
            with self._wake:
                batch, self._waiting = self._waiting, []
            if not batch:
                return
            try:
                self._store.add_impressions(batch)
            except Exception:
                # The thread must live on: one failed batch (the database away for longer than its busy timeout)
                # costs those impressions, not the log; the requests they belong to were answered all the same.
                logger.exception("could not write %d impressions to %s; they are lost", len(batch), self._store)

    def close(self) -> None:
        """Write what is waiting and stop the thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._closed or len(self._waiting) >= BATCH, timeout=FLUSH_SECONDS)
                closed = self._closed
            self.flush()
            if closed:
                return
