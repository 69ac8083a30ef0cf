"""The score cache: a user's scores are reused only while their history is the one they came from, evicted
least-recently-used beyond the bound, gone with a deleted user, and never stale when an event lands mid-request."""

import numpy as np
import pandas as pd
import pytest

from recengine.serving import Service, Settings
from recengine.serving.score_cache import ScoreCache


def open_service(store_url, model_dir, **settings):
    return Service.open(Settings(store=store_url, model_dir=str(model_dir), **settings))


@pytest.fixture()
def service(store_url, model_dir):
    opened = open_service(store_url, model_dir)
    yield opened
    opened.close()


@pytest.fixture()
def uncached(tmp_path, model_dir):
    """The same model over a second store, scoring every request afresh: the reference."""
    opened = open_service(f"sqlite:///{tmp_path / 'reference.db'}", model_dir, score_cache_mb=0)
    yield opened
    opened.close()


def events(user, items):
    return pd.DataFrame({"user": user, "item": items, "timestamp": 1_700_000_000})


def slate(service, user):
    return [(r.item, r.score) for r in service.recommend(user, 8).items]


def test_entries_answer_only_for_their_history_and_the_least_recent_go_first():
    cache, history = ScoreCache(max_bytes=3 * 400), object()
    for user in ("a", "b", "c"):
        cache.put(user, history, np.full((1, 100), ord(user), dtype=np.float32))
    assert cache.get("a", history)[0, 0] == ord("a") and cache.get("a", object()) is None
    with pytest.raises(ValueError, match="read-only"):
        cache.get("a", history)[0, 0] = 0  # shared between requests
    cache.put("d", history, np.zeros((1, 100), dtype=np.float32))  # over the bound: "b", least recently used
    assert cache.get("b", history) is None and cache.get("c", history) is not None
    assert len(cache) == 3 and cache.nbytes == 1200 and (cache.hits, cache.misses) == (3, 2)
    cache.forget("c", object())  # only the entry of that history: a newer one stays
    assert cache.get("c", history) is not None
    cache.forget("c")
    assert cache.get("c", history) is None and cache.nbytes == 800
    nothing = ScoreCache(max_bytes=0)
    nothing.put("a", history, np.zeros((1, 100), dtype=np.float32))
    assert nothing.get("a", history) is None and len(nothing) == 0


def test_a_repeated_request_is_served_from_the_cache_and_changes_with_the_history(service, uncached):
    cache = service._state.scores
    first = slate(service, "afan0")
    assert slate(service, "afan0") == first == slate(uncached, "afan0") and cache.hits == 1
    for s in (service, uncached):
        s.add_events(events("afan0", ["c0", "c1", "c2", "c3"]))
    assert len(cache) == 0  # the old history's scores need no memory
    changed = slate(service, "afan0")
    assert changed != first and changed == slate(uncached, "afan0") and cache.hits == 1
    assert len(uncached._state.scores) == 0
    assert service.model_info()["score_cache"] == {"users": 1, "bytes": 20 * 4, "max_bytes": 256 * 2**20,
                                                   "hits": 1, "misses": 2}


def test_a_deleted_user_leaves_nothing_in_the_cache(service, uncached):
    slate(service, "x")
    assert len(service._state.scores) == 1
    service.delete_user("x")
    assert len(service._state.scores) == 0
    assert slate(service, "x") == slate(uncached, "stranger")  # an unknown user from now on


def test_an_event_that_lands_while_a_request_scores_is_seen_by_the_next_request(service, uncached):
    model = service._state.trained.model
    score = model.score

    def score_while_an_event_arrives(h):
        scores = score(h)
        service.add_events(events("x", ["c0", "c1", "c2"]))  # after the history was read, before the put
        return scores

    model.score = score_while_an_event_arrives
    try:
        before = slate(service, "x")
    finally:
        model.score = score
    assert before == slate(uncached, "x")  # the history the request read
    uncached.add_events(events("x", ["c0", "c1", "c2"]))
    assert slate(service, "x") == slate(uncached, "x") != before


def test_a_user_deleted_while_a_request_scores_leaves_nothing_in_the_cache(service):
    model = service._state.trained.model
    score = model.score

    def score_while_the_user_is_deleted(h):
        scores = score(h)
        service.delete_user("x")  # after the history was read, before the put
        return scores

    model.score = score_while_the_user_is_deleted
    try:
        slate(service, "x")
    finally:
        model.score = score
    assert len(service._state.scores) == 0
