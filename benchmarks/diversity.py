"""The accuracy-diversity trade-off of the re-rankers (content issue) on MovieLens latest-small.

EASE (shipped defaults) gives each user its top-N candidates; every re-ranker in ``recengine.models.rerank``
turns them into top-20 lists over a sweep of its one knob. Each setting is measured on NDCG@20, Recall@20,
intra-list diversity@20, novelty@20 and catalog coverage@20, against the un-reranked top 20. One setting per
re-ranker is chosen on a validation split carved from the training part (largest diversity gain with at most 5%
relative NDCG@20 loss) and only then measured on the test split.

MMR, MaxSum and the DPP run with their default list order, the chosen set by relevance (ILD does not depend on the
order, NDCG does). All of this is done in three item spaces, each giving both the similarity that MMR, MaxSum and
the DPP re-ranker work with and the intra-list diversity metric:
``genre`` (the genre one-hots), ``embedding`` (MiniLM embeddings of each item's title, genres and tags; with
``--encoder tfidf``, a TF-IDF/LSA stand-in for machines without sentence-transformers) and ``collaborative``
(L2-normalized iALS item factors, fitted on each split's own training part, so that the validation choices see
nothing of the test period). The category cap and calibration work on genres and the novelty boost on popularity
in all three, so only their diversity is measured differently. In the collaborative space MMR, MaxSum and the DPP
are also swept over a wider EASE pool (``--wide-pool``, 200 by default), each as a line of its own, its setting
chosen on validation too.

    .venv/bin/pip install -e '.[bench,text]'
    .venv/bin/python benchmarks/diversity.py                     # bundled copy of ml-latest-small
    .venv/bin/python benchmarks/diversity.py --data ../shared/datasets/ml-latest-small
    .venv/bin/python benchmarks/diversity.py --encoder tfidf    # the embedding space without MiniLM

Writes benchmarks/results/diversity.json and docs/diversity_tradeoff.png; prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.embeddings import resolve_encoder, text_embeddings
from recengine.data.movielens import bundled_movielens, load_movielens
from recengine.data.split import Split
from recengine.data.splits import split, validation_split
from recengine.data.text import item_documents
from recengine.evaluation import metrics as M
from recengine.evaluation.stats import mean_ci, paired_test
from recengine.models import create_model, rerank

matplotlib.use("Agg")  # headless: the plot is only written to a file
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

ROOT = Path(__file__).resolve().parents[1]
K = 20
MAX_NDCG_LOSS = 0.05
TARGET_DIVERSITY_GAIN = 0.20
PER_USER = ("ndcg", "recall", "diversity", "novelty")
METRICS = (*PER_USER, "coverage")

#: name: (knob, values). Each sweep starts at the value that leaves the relevance order unchanged (for the cap:
#: 20 per genre cannot bind on a top-20 list), so every line in the plot starts at the baseline.
SWEEPS: dict[str, tuple[str, tuple[float, ...]]] = {
    "mmr": ("lambda", tuple(round(1.0 - 0.05 * i, 2) for i in range(21))),
    # On validation in the collaborative space MaxSum's NDCG turns near lambda 0.45 to 0.5 (found while
    # developing), so the grid is finer below 0.6.
    "max_sum": ("lambda", (*(round(0.025 * i, 3) for i in range(25)), 0.7, 0.8, 0.9, 1.0)),
    # theta's exponent a = theta / (2 (1 - theta)) is steep near 1, and on validation the DPP's lists turn within
    # 0.7 to 0.9 (found while developing), so the grid is finer there.
    "dpp": ("theta", (*(round(1.0 - 0.025 * i, 3) for i in range(17)), 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)),
    "category_cap": ("max per genre", (20, 15, 12, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)),
    "calibrate": ("lambda", tuple(round(0.1 * i, 1) for i in range(11))),
    "novelty_boost": ("weight", (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)),
}
#: The re-rankers that read a space's item vectors (the others' lists are the same in every space).
VECTOR_RERANKERS = ("mmr", "max_sum", "dpp")


@dataclass(frozen=True)
class Candidates:
    """One split's EASE candidates and what the re-rankers and metrics need about its users and items."""

    split: Split
    pool: int  # the candidates every re-ranker gets
    items: np.ndarray  # (n_users, N >= pool) ranked candidates, padded with -1; the first `pool` are the pool
    scores: np.ndarray
    genres: sp.csr_matrix  # (n_items, n_genres) one-hot
    history_genres: sp.csr_matrix  # (n_users, n_genres): each user's genre mass in their query history
    popularity: np.ndarray  # training users per item
    active_users: int


@dataclass(frozen=True)
class Space:
    """Item vectors that the similarity of MMR, MaxSum and the DPP and intra-list diversity are computed over."""

    name: str  # the key in the report
    description: str
    title: str  # the plot panel's
    vectors: np.ndarray | sp.csr_matrix  # (n_items, d)
    wide_pool: int | None = None  # a larger candidate pool MMR, MaxSum and the DPP are also swept over in this space


def candidates(data_split: Split, genres: sp.csr_matrix, pool: int, widest: int) -> Candidates:
    """EASE's top `widest` per user. Its first `pool` columns equal EASE's top `pool` (checked on both splits of
    ml-latest-small), so one call serves both candidate pools and leaves the other spaces' numbers unchanged."""
    model = create_model("ease").fit(data_split.train)
    items, scores = model.recommend(data_split.query, k=widest, exclude_seen=True)
    # Steck's p(g|u): an item's genres share its unit mass, the same convention calibrate uses for the lists.
    per_item = np.asarray(genres.sum(axis=1)).ravel()
    shares = sp.diags(np.divide(1.0, per_item, out=np.zeros_like(per_item), where=per_item > 0)) @ genres
    history = sp.csr_matrix(data_split.query.matrix("binary") @ shares)
    train = data_split.train
    # As evaluate does: popularity shares are over the users who have training interactions.
    active = max(1, int((np.diff(train.indptr) > 0).sum()))
    return Candidates(data_split, pool, items, scores, genres, history, train.item_popularity(), active)


def rerank_top(c: Candidates, name: str, value: float, vectors: np.ndarray | sp.csr_matrix, pool: int,
               ) -> np.ndarray:
    """The top-K items of each user after re-ranker `name` at knob `value` over the best `pool` candidates
    (the similarity of MMR, MaxSum and the DPP over `vectors`)."""
    items, scores = c.items[:, :pool], c.scores[:, :pool]
    if name == "mmr":
        items, _ = rerank.mmr(items, scores, vectors, K, lambda_=value)
    elif name == "max_sum":
        items, _ = rerank.max_sum(items, scores, vectors, K, lambda_=value)
    elif name == "dpp":
        items, _ = rerank.dpp(items, scores, vectors, K, theta=value)
    elif name == "category_cap":
        items, _ = rerank.category_cap(items, scores, c.genres, K, max_per_category=int(value))
    elif name == "calibrate":
        items, _ = rerank.calibrate(items, scores, c.genres, c.history_genres, K, lambda_=value)
    elif name == "novelty_boost":
        items, _ = rerank.novelty_boost(items, scores, c.popularity, K, weight=value)
    else:
        raise ValueError(f"unknown re-ranker {name}")
    return items


def per_user_metrics(c: Candidates, top: np.ndarray, vectors: np.ndarray | sp.csr_matrix) -> dict[str, np.ndarray]:
    truth = c.split.truth
    return {
        "ndcg": M.ndcg_at_k(top, truth, K),
        "recall": M.recall_at_k(top, truth, K),
        "diversity": M.intra_list_diversity(top, vectors),
        "novelty": M.novelty(top, c.popularity, c.active_users),
    }


def summarize(c: Candidates, top: np.ndarray, values: dict[str, np.ndarray]) -> dict[str, Any]:
    """Means with 95% t-intervals of the per-user metrics, and coverage (one number over all lists)."""
    out: dict[str, Any] = {}
    for name in PER_USER:
        ci = mean_ci(values[name])
        out[name] = {"mean": ci.mean, "low": ci.low, "high": ci.high, "n": ci.n}
    out["coverage"] = {"mean": M.catalog_coverage(top, c.split.train.n_items)}
    return out


Sweep = tuple[dict[str, Any], list[dict[str, Any]], dict[tuple[str, float], dict]]


def wide_line(name: str, pool: int) -> str:
    """The name of the sweep line of re-ranker `name` over a wider candidate pool."""
    return f"{name} ({pool} candidates)"


def sweep(c: Candidates, spaces: list[Space]) -> dict[str, Sweep]:
    """Per space: the baseline, one row per (re-ranker, knob value), and the per-user metrics of each row."""
    base_top = c.items[:, :K]
    out: dict[str, Sweep] = {}
    for space in spaces:
        base_values = per_user_metrics(c, base_top, space.vectors)
        out[space.name] = (summarize(c, base_top, base_values), [], {("baseline", 0.0): base_values})

    def add(space: Space, line: str, knob: str, value: float, top: np.ndarray, seconds: float, pool: int) -> None:
        baseline, rows, per_user = out[space.name]
        user_values = per_user_metrics(c, top, space.vectors)
        summary = summarize(c, top, user_values)
        change = {m: summary[m]["mean"] / baseline[m]["mean"] - 1.0 for m in METRICS}
        rows.append({"reranker": line, "knob": knob, "value": value, "candidates": pool, "metrics": summary,
                     "change": change, "rerank_seconds": seconds})
        per_user[(line, value)] = user_values

    for name, (knob, values) in SWEEPS.items():
        for value in values:
            top: np.ndarray | None = None
            seconds = 0.0
            for space in spaces:
                # Only MMR, MaxSum and the DPP read the space's vectors: the other lists are computed once and
                # measured in each space.
                if top is None or name in VECTOR_RERANKERS:
                    start = time.perf_counter()
                    top = rerank_top(c, name, value, space.vectors, c.pool)
                    seconds = time.perf_counter() - start
                add(space, name, knob, value, top, seconds, c.pool)
    for name in VECTOR_RERANKERS:
        knob, values = SWEEPS[name]
        for space in spaces:
            if space.wide_pool is not None:
                for value in values:
                    start = time.perf_counter()
                    top = rerank_top(c, name, value, space.vectors, space.wide_pool)
                    add(space, wide_line(name, space.wide_pool), knob, value, top, time.perf_counter() - start,
                        space.wide_pool)
    return out


def choose(validation_rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per re-ranker, the validation row with the largest diversity gain among those losing <= 5% NDCG@20.
    The no-op knob value always qualifies, so every re-ranker gets a choice (ties keep the milder value)."""
    chosen: dict[str, dict[str, Any]] = {}
    for row in validation_rows:
        if row["change"]["ndcg"] < -MAX_NDCG_LOSS:
            continue
        best = chosen.get(row["reranker"])
        if best is None or row["change"]["diversity"] > best["change"]["diversity"]:
            chosen[row["reranker"]] = row
    return chosen


def meets_target(row: dict[str, Any]) -> bool:
    return row["change"]["diversity"] >= TARGET_DIVERSITY_GAIN and row["change"]["ndcg"] >= -MAX_NDCG_LOSS


# ------------------------------------------------------------------------------------------------ output
def _cell(metric: dict[str, Any], digits: int = 4) -> str:
    if "low" in metric:
        return f"{metric['mean']:.{digits}f} ({metric['low']:.{digits}f}–{metric['high']:.{digits}f})"
    return f"{metric['mean']:.{digits}f}"


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def _value(row: dict[str, Any]) -> str:
    return f"{row['knob']} {row['value']:g}"


def sweep_table(baseline: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = ["| re-ranker | setting | NDCG@20 (95% CI) | Δ | Recall@20 | Δ | ILD@20 (95% CI) | Δ | novelty@20 | Δ "
             "| coverage@20 | Δ |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines.append(f"| none (EASE top 20) | — | {_cell(baseline['ndcg'])} | — | {baseline['recall']['mean']:.4f} | — "
                 f"| {_cell(baseline['diversity'])} | — | {baseline['novelty']['mean']:.3f} | — "
                 f"| {baseline['coverage']['mean']:.4f} | — |")
    for r in rows:
        m, d = r["metrics"], r["change"]
        lines.append(f"| {r['reranker']} | {_value(r)} | {_cell(m['ndcg'])} | {_pct(d['ndcg'])} "
                     f"| {m['recall']['mean']:.4f} | {_pct(d['recall'])} | {_cell(m['diversity'])} "
                     f"| {_pct(d['diversity'])} | {m['novelty']['mean']:.3f} | {_pct(d['novelty'])} "
                     f"| {m['coverage']['mean']:.4f} | {_pct(d['coverage'])} |")
    return "\n".join(lines)


def chosen_table(chosen: list[dict[str, Any]]) -> str:
    lines = ["| re-ranker | chosen on validation | validation NDCG Δ / ILD Δ | test NDCG@20 (95% CI) | NDCG Δ "
             "| paired NDCG difference (95% CI) | test ILD@20 (95% CI) | ILD Δ | Recall Δ | novelty Δ | coverage Δ "
             "| target met |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in chosen:
        v, t, p = c["validation"], c["test"], c["paired_ndcg"]
        lines.append(f"| {c['reranker']} | {c['knob']} {c['value']:g} | {_pct(v['change']['ndcg'])} / "
                     f"{_pct(v['change']['diversity'])} | {_cell(t['metrics']['ndcg'])} | {_pct(t['change']['ndcg'])} "
                     f"| {p['mean_difference']:+.4f} ({p['low']:+.4f} to {p['high']:+.4f}) "
                     f"| {_cell(t['metrics']['diversity'])} | {_pct(t['change']['diversity'])} "
                     f"| {_pct(t['change']['recall'])} | {_pct(t['change']['novelty'])} "
                     f"| {_pct(t['change']['coverage'])} | {'yes' if c['meets_target'] else 'no'} |")
    return "\n".join(lines)


def plot_space(ax: Any, baseline: dict[str, Any], rows: list[dict[str, Any]], chosen: list[dict[str, Any]],
               space: Space) -> None:
    """One panel: NDCG@20 against ILD@20 in `space`, a line per re-ranker through its knob values."""
    names = list(dict.fromkeys(r["reranker"] for r in rows))  # the sweep lines in run order: SWEEPS first
    for i, name in enumerate(names):
        line = [r for r in rows if r["reranker"] == name]
        xs = [r["metrics"]["diversity"]["mean"] for r in line]
        ys = [r["metrics"]["ndcg"]["mean"] for r in line]
        ax.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.4, color=f"C{i}",
                linestyle="-" if name in SWEEPS else "--", label=f"{name} ({line[0]['knob']})")
        # Label the strongest setting so the direction of each knob is readable.
        ax.annotate(f"{line[-1]['value']:g}", (xs[-1], ys[-1]), textcoords="offset points", xytext=(4, -10),
                    fontsize=8, color=f"C{i}")
    for c in chosen:
        t, color = c["test"]["metrics"], f"C{names.index(c['reranker'])}"
        ax.scatter(t["diversity"]["mean"], t["ndcg"]["mean"], s=110, facecolors="none", linewidths=1.6,
                   edgecolors=color, zorder=4)
        # Below the point for the wider pools' lines, whose chosen points can sit next to the plain lines' ones.
        ax.annotate(f"{c['value']:g}", (t["diversity"]["mean"], t["ndcg"]["mean"]), textcoords="offset points",
                    xytext=(6, 6) if c["reranker"] in SWEEPS else (6, -13), fontsize=8, color=color,
                    fontweight="bold")
    ax.scatter([baseline["diversity"]["mean"]], [baseline["ndcg"]["mean"]], marker="*", s=260, color="black",
               zorder=5, label="EASE top 20, no re-ranking")
    ax.scatter([], [], s=110, facecolors="none", edgecolors="0.3", label="setting chosen on validation")
    ax.set_xlabel(f"intra-list diversity@20 in the {space.name} space (mean pairwise cosine distance)")
    ax.set_title(space.title, fontsize=10)
    ax.grid(alpha=0.3)


def shade_target(ax: Any, baseline: dict[str, Any]) -> None:
    """Shade the target region of one panel. Called once every panel has its lines: the panels share the y axis,
    and fixing its top here freezes its range, which must by then cover every panel's lines."""
    base_x, base_y = baseline["diversity"]["mean"], baseline["ndcg"]["mean"]
    # The target region: at least +20% diversity while keeping 95% of the baseline NDCG.
    target_x, target_y = base_x * (1 + TARGET_DIVERSITY_GAIN), base_y * (1 - MAX_NDCG_LOSS)
    low_x, high_x = ax.get_xlim()
    high_x = max(high_x, target_x + 0.1 * (high_x - low_x))
    _, high_y = ax.get_ylim()
    ax.fill_between([target_x, high_x], target_y, high_y, color="C2", alpha=0.12, linewidth=0)
    ax.text((target_x + high_x) / 2, (target_y + high_y) / 2, "target:\nILD +20%,\nNDCG\n−5% at\nmost",
            fontsize=7, ha="center", va="center", color="0.3")
    ax.set_xlim(low_x, high_x)
    ax.set_ylim(top=high_y)


def plot(panels: list[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], Space]], path: Path,
         title: str) -> None:
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 6), dpi=130, sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        plot_space(ax, *panel)
    for ax, panel in zip(axes[0], panels, strict=True):
        shade_target(ax, panel[0])
    axes[0, 0].set_ylabel("NDCG@20")  # the panels share it
    axes[0, 0].legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.3, 0.01))
    shared = set(axes[0, 0].get_legend_handles_labels()[1])
    for ax in axes[0, 1:]:
        # A panel with lines of its own (MMR, MaxSum and the DPP over a wider pool) names just those.
        extra = [(h, label) for h, label in zip(*ax.get_legend_handles_labels(), strict=True) if label not in shared]
        if extra:
            ax.legend(*zip(*extra, strict=True), fontsize=8, loc="lower left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def jsonable(value: Any) -> Any:
    """value with NaN and infinities as None (strict JSON has no NaN; a zero-difference paired test has them)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def load(data: str | None) -> Dataset:
    return bundled_movielens() if data is None else load_movielens(data)


def content_spaces(train: Dataset, encoder: str) -> list[Space]:
    """The genre space, and the text-embedding space of each item's document (title, genres, tags): both depend
    on item content only, so one copy serves the validation and the test split."""
    genres = train.category_matrix()
    if genres is None or train.item_features is None:
        raise SystemExit("the dataset has no genres to measure diversity over")
    encoder = resolve_encoder(encoder)
    embeddings = text_embeddings(item_documents(train.item_features), encoder)
    encoded_by, short = (("MiniLM (all-MiniLM-L6-v2) sentence embeddings", "MiniLM") if encoder == "minilm"
                         else ("TF-IDF reduced by truncated SVD (LSA)", "TF-IDF/LSA"))
    return [
        Space("genre", "genre one-hot (Dataset.category_matrix)",
              "genre space: similarity and ILD over genre one-hots", genres),
        Space("embedding", f"{encoded_by}, {embeddings.shape[1]} dimensions, of each item's title, genres and tags",
              f"embedding space: similarity and ILD over {short} embeddings of title, genres and tags", embeddings),
    ]


def collaborative_space(train: Dataset, wide_pool: int) -> Space:
    """iALS (shipped defaults) item factors fitted on `train`, rows L2-normalized: two items are close when the
    same users interact with them, which is how EASE's top lists are alike and what genres and text barely see.
    Fitted per split so that validation choices use vectors that have not seen the test period."""
    factors = create_model("ials").fit(train).item_factors_.astype(np.float64)
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    # Items without training interactions carry only solver residue (norms ~1e-11) that normalizing would blow
    # up into arbitrary directions; a zero row makes them similar to nothing, in MMR, the DPP and ILD alike.
    trained = (train.item_popularity() > 0)[:, None]
    unit = np.divide(factors, norms, out=np.zeros_like(factors), where=trained & (norms > 0))
    return Space("collaborative", f"iALS item factors (shipped defaults, {factors.shape[1]} dimensions), rows "
                                  "L2-normalized, fitted on each split's training part",
                 f"collaborative space: similarity and ILD over iALS item factors (dashed: over the top {wide_pool})",
                 unit, wide_pool)


def space_report(space: Space, results: dict[str, Any], per_user: dict[str, dict[tuple[str, float], dict]],
                 ) -> dict[str, Any]:
    """One space's validated choices measured on test, whether they meet the target, and what the test sweep
    would have allowed (read off after the choice, for the record only: no choice depends on it)."""
    chosen = []
    test_rows = {(r["reranker"], r["value"]): r for r in results["test"]["sweep"]}
    base_ndcg = per_user["test"][("baseline", 0.0)]["ndcg"]
    for name, row in choose(results["validation"]["sweep"]).items():
        test_row = test_rows[(name, row["value"])]
        paired = paired_test(per_user["test"][(name, row["value"])]["ndcg"], base_ndcg)
        chosen.append({"reranker": name, "knob": row["knob"], "value": row["value"],
                       "validation": {"metrics": row["metrics"], "change": row["change"]},
                       "test": {"metrics": test_row["metrics"], "change": test_row["change"]},
                       "paired_ndcg": paired.to_dict(), "meets_target": meets_target(test_row)})
    met_post_hoc = [f"{r['reranker']} {_value(r)}" for r in results["test"]["sweep"] if meets_target(r)]
    best_within_loss = {name: max((r for r in results["test"]["sweep"]
                                   if r["reranker"] == name and r["change"]["ndcg"] >= -MAX_NDCG_LOSS),
                                  key=lambda r: r["change"]["diversity"])["change"]["diversity"]
                        for name in dict.fromkeys(r["reranker"] for r in results["test"]["sweep"])}
    return {
        "item_vectors": space.description,
        "target": {"diversity_gain": TARGET_DIVERSITY_GAIN, "max_ndcg_loss": MAX_NDCG_LOSS,
                   "met": any(c["meets_target"] for c in chosen), "met_on_test_sweep_post_hoc": met_post_hoc,
                   "best_test_diversity_gain_within_loss_post_hoc": best_within_loss},
        "chosen": chosen, **results,
    }


def print_space(space: Space, report: dict[str, Any]) -> None:
    test, target = report["test"], report["target"]
    print(f"# {space.name} space: MMR, MaxSum and DPP similarity and ILD over {space.description}\n")
    print(f"## Whole sweep on the test split ({test['users']} users; Δ = relative change vs. no re-ranking)\n")
    print(sweep_table(test["baseline"], test["sweep"]))
    print("\n## Settings chosen on validation (≤ 5% NDCG@20 loss there), measured on test\n")
    print(chosen_table(report["chosen"]))
    print(f"\ntarget (a chosen setting with ILD@20 ≥ +20% and NDCG@20 ≥ −5% on test): "
          f"{'met' if target['met'] else 'NOT met'}")
    print("settings meeting it on the test sweep, read off after the choice: "
          f"{', '.join(target['met_on_test_sweep_post_hoc']) or 'none'}")
    print("largest ILD gain within 5% NDCG loss on the test sweep (post hoc): "
          + ", ".join(f"{n} {_pct(g)}" for n, g in target["best_test_diversity_gain_within_loss_post_hoc"].items())
          + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a MovieLens latest-small directory (default: the bundled copy)")
    parser.add_argument("--candidates", type=int, default=100, help="EASE candidates per user to re-rank")
    parser.add_argument("--wide-pool", type=int, default=200,
                        help="a larger EASE pool that MMR, MaxSum and the DPP are also swept over in the "
                             "collaborative space")
    parser.add_argument("--encoder", default="minilm", choices=("minilm", "tfidf"),
                        help="text encoder of the embedding space (see recengine.data.embeddings)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "diversity.json"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "diversity_tradeoff.png"))
    args = parser.parse_args()
    if args.wide_pool <= args.candidates:
        parser.error("--wide-pool must be larger than --candidates")
    start = time.perf_counter()

    dataset = load(args.data)
    test_split = split(dataset, "temporal-user")
    validation = validation_split(test_split)
    content = content_spaces(test_split.train, args.encoder)
    genres = content[0].vectors

    results: dict[str, dict[str, Any]] = {}
    per_user: dict[str, dict[str, dict[tuple[str, float], dict]]] = {}
    spaces: list[Space] = []
    for role, data_split in (("validation", validation), ("test", test_split)):
        c = candidates(data_split, genres, args.candidates, args.wide_pool)
        # The loop ends on test, so `spaces` holds the test split's collaborative vectors for the report.
        spaces = [*content, collaborative_space(data_split.train, args.wide_pool)]
        for name, (baseline, rows, values) in sweep(c, spaces).items():
            results.setdefault(name, {})[role] = {"users": data_split.n_users, "baseline": baseline, "sweep": rows}
            per_user.setdefault(name, {})[role] = values
    reports = {space.name: space_report(space, results[space.name], per_user[space.name]) for space in spaces}
    seconds = time.perf_counter() - start

    title = (f"{dataset.name}, temporal-user test split: EASE top-{args.candidates} re-ranked to top {K} "
             f"({test_split.n_users} users)")
    plot([(reports[s.name]["test"]["baseline"], reports[s.name]["test"]["sweep"], reports[s.name]["chosen"], s)
          for s in spaces], Path(args.plot), title)
    for space in spaces:
        print_space(space, reports[space.name])
    print(f"{seconds:.0f} s on {os.cpu_count()} cores; wrote {args.out} and {args.plot}")

    report = {
        "dataset": dataset.name, "protocol": "temporal-user", "model": "ease (shipped defaults)",
        "candidates": args.candidates, "wide_pool": args.wide_pool, "k": K,
        "selection": f"per re-ranker (sweep line) and space, max ILD@{K} gain on validation with NDCG@{K} loss <= "
                     f"{MAX_NDCG_LOSS:.0%}",
        "spaces": reports,
        "environment": {"python": platform.python_version(), "numpy": np.__version__, "cores": os.cpu_count(),
                        "machine": platform.machine()},
        "seconds": seconds,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(jsonable(report), indent=2, allow_nan=False))


if __name__ == "__main__":
    main()
