import math

import numpy as np
import pandas as pd
import pytest

from recengine.data.text import item_documents, tfidf_matrix, tokenize
from recengine.errors import ConfigError

DOCS = ["apple banana", "Apple apple, cherry", "banana"]
A = math.log(4 / 3) + 1  # idf of apple and banana: N = 3, df = 2
C = math.log(2) + 1  # idf of cherry: df = 1


def unit(v: list[float]) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def test_tfidf_matches_hand_values_sublinear():
    m, vocab = tfidf_matrix(DOCS)
    assert vocab == ["apple", "banana", "cherry"]
    expected = np.vstack([unit([A, A, 0]), unit([(1 + math.log(2)) * A, 0, C]), unit([0, 1, 0])])
    np.testing.assert_allclose(m.toarray(), expected, rtol=1e-12)


def test_tfidf_raw_counts_min_df_and_max_features():
    m, _ = tfidf_matrix(DOCS, sublinear_tf=False)
    np.testing.assert_allclose(m.toarray()[1], unit([2 * A, 0, C]), rtol=1e-12)
    m, vocab = tfidf_matrix(DOCS, min_df=2)
    assert vocab == ["apple", "banana"]
    np.testing.assert_allclose(m.toarray(), [[2 ** -0.5, 2 ** -0.5], [1, 0], [0, 1]], rtol=1e-12)
    # Corpus counts: apple 3, banana 2, cherry 1.
    m, vocab = tfidf_matrix(DOCS, max_features=2)
    assert vocab == ["apple", "banana"] and m.shape == (3, 2)


def test_empty_documents_stay_empty_rows():
    m, vocab = tfidf_matrix(["", "x", "word"])
    assert vocab == ["word"]
    np.testing.assert_allclose(m.toarray(), [[0], [0], [1]])
    m, vocab = tfidf_matrix([])
    assert m.shape == (0, 0) and vocab == []


@pytest.mark.parametrize("bad", [{"min_df": 0}, {"max_features": 0}, {"min_df": 1.5}])
def test_bad_options_raise_config_error(bad):
    with pytest.raises(ConfigError):
        tfidf_matrix(DOCS, **bad)


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize("Star Wars: Episode IV (1977) Sci-Fi|a_b") == ["star", "wars", "episode", "iv", "1977", "sci",
                                                                   "fi"]


def test_item_documents_joins_present_fields_and_skips_missing():
    frame = pd.DataFrame({
        "title": ["Alien (1979)", None, "Heat"],
        "genres": [["Horror", "Sci-Fi"], [], np.nan],
        "tags": [np.array(["space"]), ["cozy", None], ["heist"]],
        "year": [1979, 1990, 1995],  # not a text field
    })
    assert item_documents(frame) == ["Alien (1979) Horror Sci-Fi space", "cozy", "Heat heist"]
    assert item_documents(frame, fields=("tags",)) == ["space", "cozy", "heist"]
