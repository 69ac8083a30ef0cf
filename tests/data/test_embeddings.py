import sys

import numpy as np
import pytest

from recengine.data import embeddings
from recengine.data.embeddings import resolve_encoder, text_embeddings
from recengine.data.text import tfidf_matrix
from recengine.errors import ConfigError, NotSupportedError

DOCS = [
    "A spaceship crew explores a distant galaxy",
    "Astronauts travel through space to another star system",
    "A pastry chef opens a small bakery in Paris",
    "",
]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECENGINE_CACHE", str(tmp_path / "cache"))


def _unavailable(*args, **kwargs):
    raise AssertionError("the encoder ran, but the cache should have answered")


def test_minilm_gives_unit_384_rows_and_similar_texts_are_closer():
    vectors = text_embeddings(DOCS, "minilm")
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), [1, 1, 1, 0], atol=1e-5)
    sim = vectors @ vectors.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[1, 0] > sim[1, 2] + 0.2


def test_minilm_leaves_torch_threads_as_they_were():
    import torch

    before = torch.get_num_threads()
    text_embeddings(DOCS[:2], "minilm")
    assert torch.get_num_threads() == before


def test_second_call_reads_the_cache(tmp_path, monkeypatch):
    first = text_embeddings(DOCS, "minilm", cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"  # no temporary file left behind
    monkeypatch.setattr(embeddings, "_minilm_embeddings", _unavailable)
    np.testing.assert_array_equal(text_embeddings(DOCS, "minilm", cache_dir=tmp_path), first)
    # Other documents or another encoder are another key.
    with pytest.raises(AssertionError, match="cache should have answered"):
        text_embeddings(DOCS[:3], "minilm", cache_dir=tmp_path)
    text_embeddings(DOCS, "tfidf", cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def test_default_cache_lives_under_recengine_cache(tmp_path):
    text_embeddings(DOCS, "tfidf")
    assert len(list((tmp_path / "cache" / "embeddings").glob("*.npy"))) == 1


def test_a_corrupt_cache_file_is_recomputed(tmp_path):
    first = text_embeddings(DOCS, "tfidf", cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not an array")
    np.testing.assert_array_equal(text_embeddings(DOCS, "tfidf", cache_dir=tmp_path), first)


def test_tfidf_of_a_small_corpus_keeps_the_tfidf_cosines():
    vectors = text_embeddings(DOCS, "tfidf")
    tfidf, _ = tfidf_matrix(DOCS)
    np.testing.assert_allclose(vectors @ vectors.T, (tfidf @ tfidf.T).toarray(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), [1, 1, 1, 0], atol=1e-6)


def test_tfidf_of_a_large_corpus_is_reduced_and_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(400)]
    docs = [" ".join(rng.choice(words, 12)) for _ in range(300)]
    vectors = text_embeddings(docs, "tfidf", cache_dir=tmp_path / "a")
    assert vectors.shape == (300, embeddings.TFIDF_DIMENSIONS) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(text_embeddings(docs, "tfidf", cache_dir=tmp_path / "b"), vectors)


def test_auto_falls_back_to_tfidf_without_minilm(monkeypatch):
    assert resolve_encoder("auto") == "minilm"
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    assert resolve_encoder("auto") == "tfidf"
    np.testing.assert_array_equal(text_embeddings(DOCS, "auto"), text_embeddings(DOCS, "tfidf"))
    with pytest.raises(NotSupportedError, match=r"pip install 'recengine\[text\]'"):
        text_embeddings(DOCS, "minilm")


def test_empty_input_and_bad_arguments():
    assert text_embeddings([], "minilm").shape == (0, 384)
    with pytest.raises(ConfigError, match="text encoder"):
        text_embeddings(DOCS, "word2vec")
    with pytest.raises(ConfigError, match="batch_size"):
        text_embeddings(DOCS, "tfidf", batch_size=0)
