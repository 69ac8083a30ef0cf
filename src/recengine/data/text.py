"""Item text as documents and TF-IDF vectors (NumPy/SciPy only, no scikit-learn).

* ``item_documents``: one string per item from its text-like feature columns (list values joined by spaces);
* ``tfidf_matrix``: a documents x terms TF-IDF matrix with L2-normalized rows, and its vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.errors import ConfigError

#: Item feature columns read as text, in this order.
TEXT_FIELDS = ("title", "genres", "categories", "tags", "text", "description")
#: Tokens: runs of two or more letters or digits (single characters carry little meaning; "_" and "-" split).
_TOKEN = re.compile(r"[^\W_]{2,}")


def _as_text(value: object) -> str:
    """A feature value as text: list-likes joined by spaces, missing values as ""."""
    if isinstance(value, list | tuple | np.ndarray):
        return " ".join(str(v) for v in value if not _is_missing(v))
    if _is_missing(value):
        return ""
    return str(value)


def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # pd.isna of an unusual object: treat it as present
        return False


def item_documents(item_features: pd.DataFrame, fields: Sequence[str] = TEXT_FIELDS) -> list[str]:
    """One document per row of item_features: the present `fields` joined by spaces (missing values give "")."""
    columns = [item_features[f].map(_as_text).tolist() for f in fields if f in item_features.columns]
    if not columns:
        return [""] * len(item_features)
    return [" ".join(part for part in parts if part) for parts in zip(*columns, strict=True)]


def tokenize(document: str) -> list[str]:
    """Lowercase word tokens of a document (runs of >= 2 letters or digits)."""
    return _TOKEN.findall(document.lower())


def tfidf_matrix(
    documents: Sequence[str], *, min_df: int = 1, max_features: int | None = None, sublinear_tf: bool = True,
) -> tuple[sp.csr_matrix, list[str]]:
    """(n_documents, n_terms) float64 TF-IDF matrix with L2-normalized rows (empty documents stay empty), and
    the vocabulary (term of every column, sorted).

    tf is the term count, or 1 + ln(count) with sublinear_tf; idf = ln((1 + N) / (1 + df)) + 1 (smoothed, as
    scikit-learn). Terms in fewer than min_df documents are dropped; max_features keeps the most frequent
    terms over the corpus (ties by term).
    """
    if isinstance(min_df, bool) or not isinstance(min_df, int | np.integer) or min_df < 1:
        raise ConfigError(f"min_df must be an int >= 1, got {min_df!r}")
    if max_features is not None and (isinstance(max_features, bool) or not isinstance(max_features, int | np.integer)
                                     or max_features < 1):
        raise ConfigError(f"max_features must be None or an int >= 1, got {max_features!r}")
    tokens = [tokenize(d) for d in documents]
    n_docs = len(tokens)
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=n_docs)
    flat = [t for doc in tokens for t in doc]
    codes, uniques = pd.factorize(pd.Series(flat, dtype=object), sort=True)
    rows = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    counts = sp.csr_matrix((np.ones(len(codes)), (rows, codes)), shape=(n_docs, len(uniques)))
    counts.sum_duplicates()
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    keep = df >= min_df
    if max_features is not None and keep.sum() > max_features:
        total = np.asarray(counts.sum(axis=0)).ravel()
        candidates = np.flatnonzero(keep)
        # Stable sort on -frequency over sorted terms: ties keep alphabetical order.
        best = candidates[np.argsort(-total[candidates], kind="stable")[:max_features]]
        keep = np.zeros_like(keep)
        keep[best] = True
    columns = np.flatnonzero(keep)
    counts = counts[:, columns].tocsr()
    vocabulary = [str(t) for t in np.asarray(uniques)[columns]]
    tf = counts.copy()
    if sublinear_tf:
        tf.data = 1.0 + np.log(tf.data)
    idf = np.log((1.0 + n_docs) / (1.0 + df[columns])) + 1.0
    tf.data *= idf[tf.indices]
    return l2_normalize_rows(tf), vocabulary


def l2_normalize_rows(m: sp.spmatrix) -> sp.csr_matrix:
    """A float64 CSR copy of m with every non-zero row scaled to unit Euclidean length."""
    m = sp.csr_matrix(m, dtype=np.float64, copy=True)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    m.data *= np.repeat(scale, np.diff(m.indptr))
    return m
