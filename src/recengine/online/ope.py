"""Off-policy evaluation: what a new policy would have earned, estimated from another policy's logged feedback.

The logged-feedback format (one row per shown slot; CSV or Parquet, chosen by the file extension):

    round       integer: one request, i.e. one slate shown to one user
    position    integer: the slot of the slate (1, 2, 3 ...); at most one row per (round, position)
    item        the item shown there (read as a string id); no item twice in one round
    reward      number: what happened (a click is 1)
    propensity  the logging policy's probability of showing this item at this position, in (0, 1]
    x_*         optional numeric context columns (user features) of the row

A target policy (the one to evaluate) is given as ``round,position,item,prob`` rows: its probability of each
candidate item at each logged round and position; the probabilities of one (round, position) sum to 1.

All estimators estimate the value per impression (the expected reward of one shown slot: a CTR) under the
position-based assumption that a slot's reward depends on the context, the position and the item there, not on the
rest of the slate; that is what makes the target's per-position marginals enough, and what ``iips`` (the slate
value, the sum over positions) also rests on. Their intervals are normal approximations over rounds, the units
drawn independently, so rewards of one slate may correlate. The direct method's interval also counts the
estimation of its reward model (a sandwich, i.e. delta-method, variance: see `evaluate`); it cannot count the
model's misspecification bias.

The direct method's reward model is a ridge regression of the reward on (intercept, position one-hots, standardized
context) with a pooled part and a per-item part (the same features crossed with the item), so an item seen rarely
shrinks to the pooled model and an item never logged gets the pooled prediction. It is cross-fitted over rounds: each
round is predicted by the model fitted on the other folds, which keeps the doubly robust interval honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats
from threadpoolctl import threadpool_limits

from recengine.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recengine.data.histories import Histories
    from recengine.models.base import Recommender

__all__ = ["BanditLog", "Estimate", "RidgeRewardModel", "TargetPolicy", "ESTIMATORS", "evaluate", "read_log",
           "read_open_bandit", "read_target", "recommender_target", "softmax_target", "write_log", "write_target"]

LOG_COLUMNS = ("round", "position", "item", "reward", "propensity")
TARGET_COLUMNS = ("round", "position", "item", "prob")
CONTEXT_PREFIX = "x_"
#: How far the target probabilities of one (round, position) may sum from 1 (rounding in written CSVs).
PROB_TOLERANCE = 1e-6
ESTIMATORS = ("ips", "snips", "dm", "dr", "switch-dr", "iips")

@dataclass(frozen=True)
class RowNamer:
    """Names a row in error messages: its file line for CSV (the header is line 1), else its row number."""

    source: str
    csv: bool = False

    def __call__(self, i: int) -> str:
        return f"{self.source} line {i + 2}" if self.csv else f"{self.source} row {i}"

    @property
    def header(self) -> str:
        return f"{self.source} line 1 (header)" if self.csv else f"{self.source} (columns)"


# ----------------------------------------------------------------------------------------------- the data
@dataclass(frozen=True)
class BanditLog:
    """Validated logged bandit feedback (see the module docstring); build it with `from_frame` or `read_log`."""

    round: np.ndarray
    position: np.ndarray
    item: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray
    context: np.ndarray
    context_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.round)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, name_row: RowNamer | None = None) -> BanditLog:
        name_row = name_row or RowNamer("the log")
        _check_columns(frame, LOG_COLUMNS, name_row, allow_context=True)
        rounds = _integers(frame, "round", name_row)
        positions = _integers(frame, "position", name_row)
        items = _item_ids(frame, name_row)
        rewards = _numbers(frame, "reward", name_row)
        propensity = _numbers(frame, "propensity", name_row)
        bad = np.flatnonzero(~((propensity > 0) & (propensity <= 1)))
        if len(bad):
            raise DataError(f"{name_row(bad[0])}: propensity {propensity[bad[0]]:g} is outside (0, 1]; it is the "
                            f"logging policy's probability of the shown item, so it must be positive")
        names = tuple(c for c in frame.columns if c.startswith(CONTEXT_PREFIX))
        context = np.column_stack([_numbers(frame, c, name_row) for c in names]) if names else \
            np.zeros((len(frame), 0))
        keys = pd.DataFrame({"round": rounds, "position": positions})
        _no_duplicates(keys, name_row, "a second row for round {round} position {position}")
        _no_duplicates(pd.DataFrame({"round": rounds, "item": items}), name_row,
                       "item {item!r} shown twice in round {round}: a slate holds an item once")
        return cls(rounds, positions, items, rewards, propensity, context, names)

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({"round": self.round, "position": self.position, "item": self.item,
                              "reward": self.reward, "propensity": self.propensity})
        for j, name in enumerate(self.context_names):
            frame[name] = self.context[:, j]
        return frame


@dataclass(frozen=True)
class TargetPolicy:
    """The evaluated policy's probability of each candidate item at each (round, position)."""

    round: np.ndarray
    position: np.ndarray
    item: np.ndarray
    prob: np.ndarray

    def __len__(self) -> int:
        return len(self.round)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, name_row: RowNamer | None = None) -> TargetPolicy:
        name_row = name_row or RowNamer("the target")
        _check_columns(frame, TARGET_COLUMNS, name_row, allow_context=False)
        rounds = _integers(frame, "round", name_row)
        positions = _integers(frame, "position", name_row)
        items = _item_ids(frame, name_row)
        prob = _numbers(frame, "prob", name_row)
        bad = np.flatnonzero((prob < 0) | (prob > 1))
        if len(bad):
            raise DataError(f"{name_row(bad[0])}: prob {prob[bad[0]]:g} is not a probability in [0, 1]")
        _no_duplicates(pd.DataFrame({"round": rounds, "position": positions, "item": items}), name_row,
                       "a second probability for item {item!r} at round {round} position {position}")
        groups = pd.DataFrame({"round": rounds, "position": positions, "prob": prob,
                               "row": np.arange(len(prob))}).groupby(["round", "position"], sort=False)
        sums = groups["prob"].sum()
        off = np.flatnonzero(np.abs(sums.to_numpy() - 1) > PROB_TOLERANCE)
        if len(off):
            (r, p), total = sums.index[off[0]], sums.iloc[off[0]]
            first = int(groups["row"].min().iloc[off[0]])
            raise DataError(f"{name_row(first)}: the probabilities at round {r} position {p} sum to {total:.6g}, "
                            f"not 1")
        return cls(rounds, positions, items, prob)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"round": self.round, "position": self.position, "item": self.item, "prob": self.prob})


def _check_columns(frame: pd.DataFrame, required: tuple[str, ...], name_row: RowNamer, allow_context: bool) -> None:
    header = name_row.header
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{header}: missing column(s) {', '.join(missing)}; expected "
                        f"{','.join(required)}" + (" and optional context columns x_*" if allow_context else ""))
    unknown = [c for c in frame.columns if c not in required and not (allow_context and str(c).startswith(
        CONTEXT_PREFIX))]
    if unknown:
        raise DataError(f"{header}: unknown column {unknown[0]!r}; the columns are {','.join(required)}"
                        + (" and context columns named x_*" if allow_context else ""))


def _numbers(frame: pd.DataFrame, column: str, name_row: RowNamer) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise DataError(f"{name_row(bad[0])}: {column} {frame[column].iloc[bad[0]]!r} is not a finite number")
    return values


def _integers(frame: pd.DataFrame, column: str, name_row: RowNamer) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
    if len(bad):
        raise DataError(f"{name_row(bad[0])}: {column} {frame[column].iloc[bad[0]]!r} is not an integer")
    return values.astype(np.int64)


def _item_ids(frame: pd.DataFrame, name_row: RowNamer) -> np.ndarray:
    column = frame["item"]
    ids = column.astype(str).str.strip().to_numpy(dtype=object)
    bad = np.flatnonzero(column.isna().to_numpy() | (ids == ""))
    if len(bad):
        raise DataError(f"{name_row(bad[0])}: item is empty")
    # Integral floats (a Parquet column of ints with gaps becomes float) name the same item as the integer.
    if pd.api.types.is_float_dtype(column):
        ids = np.array([s.removesuffix(".0") for s in ids], dtype=object)
    return ids


def _no_duplicates(keys: pd.DataFrame, name_row: RowNamer, what: str) -> None:
    repeated = np.flatnonzero(keys.duplicated().to_numpy())
    if len(repeated):
        row = keys.iloc[repeated[0]]
        raise DataError(f"{name_row(repeated[0])}: " + what.format(**row.to_dict()))


# ------------------------------------------------------------------------------------------------ files
def _read_frame(path: str | Path, what: str) -> tuple[pd.DataFrame, RowNamer]:
    path = Path(path)
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path, dtype={"item": str},
                                                                  keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataError(f"cannot read {what} {path}: {error}") from error
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, RowNamer(str(path), csv=not parquet)


def _write_frame(frame: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def read_log(path: str | Path) -> BanditLog:
    """Logged feedback from a CSV or Parquet file; a bad row raises DataError naming its line."""
    frame, name_row = _read_frame(path, "logged feedback")
    return BanditLog.from_frame(frame, name_row)


def write_log(log: BanditLog, path: str | Path) -> None:
    _write_frame(log.to_frame(), path)


def read_target(path: str | Path) -> TargetPolicy:
    """Target probabilities from a CSV or Parquet file; a bad row raises DataError naming its line."""
    frame, name_row = _read_frame(path, "target probabilities")
    return TargetPolicy.from_frame(frame, name_row)


def write_target(target: TargetPolicy, path: str | Path) -> None:
    _write_frame(target.to_frame(), path)


def read_open_bandit(directory: str | Path) -> BanditLog:
    """One behaviour policy's log of the Open Bandit Dataset (``all.csv`` of e.g. open-bandit/random).

    Every row is its own round (the sample has no impression id), so round is the row index. The hashed user
    features become one-hot context columns ``x_user_feature_<j>_<first 8 characters of the hash>`` and the
    user-item affinities ``x_affinity_<item>``; click is the reward and propensity_score the propensity.
    """
    path = Path(directory) / "all.csv"
    try:
        raw = pd.read_csv(path, index_col=0)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataError(f"cannot read the Open Bandit log {path}: {error}") from error
    needed = ["item_id", "position", "click", "propensity_score"]
    if missing := [c for c in needed if c not in raw.columns]:
        raise DataError(f"{path}: not an Open Bandit log, missing {', '.join(missing)}")
    frame = pd.DataFrame({"round": np.arange(len(raw)), "position": raw["position"].to_numpy(),
                          "item": raw["item_id"].astype(str).to_numpy(), "reward": raw["click"].to_numpy(),
                          "propensity": raw["propensity_score"].to_numpy()})
    features = sorted(c for c in raw.columns if c.startswith("user_feature_"))
    onehots = pd.get_dummies(raw[features].astype(str).apply(lambda col: col.str[:8]), prefix_sep="_",
                             dtype=np.float64)
    onehots.columns = [CONTEXT_PREFIX + c for c in onehots.columns]
    affinity = raw[[c for c in raw.columns if c.startswith("user-item_affinity_")]].astype(np.float64)
    affinity.columns = [CONTEXT_PREFIX + "affinity_" + c.rsplit("_", 1)[1] for c in affinity.columns]
    frame = pd.concat([frame, onehots.reset_index(drop=True), affinity.reset_index(drop=True)], axis=1)
    return BanditLog.from_frame(frame, RowNamer(str(path), csv=True))


# --------------------------------------------------------------------------------------- target policies
def softmax_target(scores: np.ndarray, rounds: np.ndarray, positions: Sequence[int], items: Sequence[str], *,
                   temperature: float = 1.0, n_samples: int = 64, seed: int = 0) -> TargetPolicy:
    """The per-position probabilities of the ranking policy that fills the slate by a softmax over scores.

    scores: (n_rounds, n_items), the policy's score of every item (column j is ``items[j]``) in each round of
    ``rounds``; the policy samples the item at ``positions[0]`` from softmax(scores / temperature), the next
    position from the same softmax over the items not yet placed, and so on (a Plackett-Luce ranking). The first
    position's probabilities are exact; a later position's are the average, over ``n_samples`` sampled prefixes,
    of its conditional softmax (unbiased, and positive for every item with a finite score).
    """
    scores = np.asarray(scores, dtype=np.float64)
    rounds = np.asarray(rounds, dtype=np.int64)
    positions = list(positions)
    if scores.ndim != 2 or scores.shape != (len(rounds), len(items)):
        raise DataError(f"scores must be (len(rounds), len(items)) = ({len(rounds)}, {len(items)}), "
                        f"got {scores.shape}")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature!r}")
    if not 1 <= len(positions) <= len(items) or len(set(positions)) != len(positions):
        raise ConfigError(f"positions must be distinct and at most the {len(items)} items, got {positions}")
    if n_samples < 1:
        raise ConfigError(f"n_samples must be >= 1, got {n_samples!r}")
    rng = np.random.default_rng(seed)
    n, k = scores.shape
    logits = scores / temperature
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    marginals = np.empty((len(positions), n, k))
    marginals[0] = weights / weights.sum(axis=1, keepdims=True)
    # Rows per block so that one (rows, samples, items) array stays near 4M floats.
    step = max(1, (1 << 22) // (n_samples * k))
    for start in range(0, n, step):
        block = logits[start:start + step, None, :]
        gumbel = block - np.log(-np.log(rng.random((len(block), n_samples, k))))
        # A Plackett-Luce prefix is the top of the Gumbel-perturbed logits (the Gumbel-top-k trick).
        prefix = np.argsort(-gumbel, axis=2)[:, :, :len(positions) - 1]
        for depth in range(1, len(positions)):
            # The softmax over the items left, taken in logit space so a low temperature cannot underflow to 0/0.
            left = np.broadcast_to(block, gumbel.shape).copy()
            np.put_along_axis(left, prefix[:, :, :depth], -np.inf, axis=2)
            left = np.exp(left - left.max(axis=2, keepdims=True))
            marginals[depth, start:start + step] = (left / left.sum(axis=2, keepdims=True)).mean(axis=1)
    return TargetPolicy(np.repeat(np.tile(rounds, len(positions)), k),
                        np.repeat(np.repeat(np.asarray(positions, dtype=np.int64), n), k),
                        np.tile(np.asarray(items, dtype=str).astype(object), n * len(positions)),
                        marginals.reshape(-1))


def recommender_target(model: Recommender, histories: Histories, rounds: np.ndarray, positions: Sequence[int],
                       items: Sequence[str], *, temperature: float = 1.0, n_samples: int = 64,
                       seed: int = 0) -> TargetPolicy:
    """A fitted Recommender made stochastic by a softmax over its scores (see `softmax_target`).

    histories: one history per round (row r is the user of ``rounds[r]``); items: the external id of each of the
    model's item indices, as the log names them.
    """
    return softmax_target(model.score(histories), rounds, positions, items, temperature=temperature,
                          n_samples=n_samples, seed=seed)


# ------------------------------------------------------------------------------------------ reward model
class RidgeRewardModel:
    """Ridge regression of reward on (intercept, position one-hots, standardized context), pooled over items plus a
    per-item deviation: q(x, position, item) = z·beta + z·gamma_item, with penalties l2 and l2_item.

    Fitted in closed form without a loop over items: the per-item blocks are solved together (batched d x d
    solves) and eliminated, leaving one d x d system for the pooled part; `solve` reuses that elimination for any
    right-hand side (the direct method's variance needs one). Predictions are not clipped to the
    reward range: the least-squares fit is centred on the mean reward, and clipping the negative predictions a
    linear model makes for rare clicks would bias the direct method upward.
    """

    def __init__(self, l2: float = 1.0, l2_item: float = 10.0) -> None:
        if not l2 >= 0 or not l2_item > 0:
            raise ConfigError(f"l2 must be >= 0 and l2_item > 0, got {l2!r}, {l2_item!r}")
        self.l2 = l2
        self.l2_item = l2_item

    def design(self, context: np.ndarray, position: np.ndarray) -> np.ndarray:
        """The fitted features z (intercept, position one-hots, standardized context) of each row."""
        onehot = (position[:, None] == self.positions_[None, :]).astype(np.float64)
        return np.hstack([np.ones((len(position), 1)), onehot, (context - self.mean_) / self.scale_])

    def fit(self, context: np.ndarray, position: np.ndarray, item: np.ndarray, reward: np.ndarray,
            n_items: int) -> RidgeRewardModel:
        """item: integer codes in [0, n_items)."""
        self.positions_ = np.unique(position)
        self.mean_ = context.mean(axis=0)
        spread = context.std(axis=0)
        self.scale_ = np.where(spread > 0, spread, 1.0)
        z = self.design(context, position)
        n, d = z.shape
        crossed = sp.csr_matrix((z.ravel(), (np.repeat(np.arange(n), d), (item[:, None] * d + np.arange(d)).ravel())),
                                shape=(n, n_items * d))
        # Per item a: G_a = Z_a^T Z_a (the diagonal blocks of crossed^T crossed) and h_a = Z_a^T r.
        blocks = (crossed.T @ crossed).tocoo()
        gram = np.zeros((n_items, d, d))
        gram[blocks.row // d, blocks.row % d, blocks.col % d] = blocks.data
        moment = (crossed.T @ reward).reshape(n_items, d)
        # The normal equations are [[sum G_a + L, G_1..G_K], [G_a, G_a + l2_item I]] [beta; gamma] = [Z^T r; h];
        # eliminating each gamma_a = (G_a + l2_item I)^-1 (h_a - G_a beta) leaves a d x d system for beta.
        # The pooled intercept is left unpenalized (a tiny ridge keeps the system definite) so the model is centred.
        # Many small solves: BLAS threads only contend for the cores (tens of times slower on a busy machine).
        with threadpool_limits(1, user_api="blas"):
            solved = np.linalg.solve(gram + self.l2_item * np.eye(d),
                                     np.concatenate([gram, moment[:, :, None]], axis=2))
        self.item_gram_ = gram
        self.item_shrink_ = solved[:, :, :d]  # (G_a + l2_item I)^-1 G_a
        self.schur_ = z.T @ z + np.diag(np.concatenate([[1e-9], np.full(d - 1, self.l2)])) - np.tensordot(
            gram, self.item_shrink_, axes=([0, 2], [0, 1]))
        self.pooled_, self.per_item_ = self._eliminate(z.T @ reward, solved[:, :, d])
        return self

    def _eliminate(self, pooled_rhs: np.ndarray, item_part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pooled and per-item solution, given item_part[a] = (G_a + l2_item I)^-1 (item right-hand side a)."""
        pooled = np.linalg.solve(self.schur_, pooled_rhs - np.einsum("aij,aj->i", self.item_gram_, item_part))
        return pooled, item_part - self.item_shrink_ @ pooled

    def solve(self, pooled_rhs: np.ndarray, item_rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A^-1 b for the fit's penalized normal matrix A, b and the answer laid out as (pooled_, per_item_):
        pooled_rhs (d,), item_rhs (n_items, d)."""
        d = len(pooled_rhs)
        with threadpool_limits(1, user_api="blas"):
            item_part = np.linalg.solve(self.item_gram_ + self.l2_item * np.eye(d), item_rhs[:, :, None])[:, :, 0]
        return self._eliminate(pooled_rhs, item_part)

    def leverage(self, context: np.ndarray, position: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The hat-matrix diagonal x^T A^-1 x of the pairs (rows[j], items[j]), x the pair's pooled and per-item
        features. By the block inverse of A, x^T A^-1 x = y^T S^-1 y + z^T F_a^-1 z with F_a = G_a + l2_item I,
        y = (I - F_a^-1 G_a)^T z and S the pooled Schur complement."""
        z = self.design(context[rows], position[rows])
        d = z.shape[1]
        shrink = self.item_shrink_[items]  # (n, d, d): F_a^-1 G_a per pair
        y = z - np.einsum("nji,nj->ni", shrink, z)
        with threadpool_limits(1, user_api="blas"):
            item_inverse = np.linalg.inv(self.item_gram_ + self.l2_item * np.eye(d))
        return np.einsum("ni,ni->n", y, np.linalg.solve(self.schur_, y.T).T) + np.einsum(
            "ni,nij,nj->n", z, item_inverse[items], z)

    def predict(self, context: np.ndarray, position: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """q for the pairs (rows[j], items[j]): row indices into context/position, item codes."""
        return self.linear(self.pooled_, self.per_item_, context, position, rows, items)

    def linear(self, pooled: np.ndarray, per_item: np.ndarray, context: np.ndarray, position: np.ndarray,
               rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """z(rows[j]) . (pooled + per_item[items[j]]): any coefficients in the model's layout, on its features."""
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        out = np.empty(len(rows))
        coef = pooled[None, :] + per_item  # (n_items, d)
        # Blocks of rows scored against every item at once, each block's (rows, items) array near 4M floats.
        step = max(1, (1 << 22) // len(coef))
        for start in range(0, len(context), step):
            lo, hi = np.searchsorted(sorted_rows, [start, start + step])
            if lo == hi:
                continue
            block = self.design(context[start:start + step], position[start:start + step]) @ coef.T
            picked = order[lo:hi]
            out[picked] = block[rows[picked] - start, items[picked]]
        return out


# ------------------------------------------------------------------------------------------- estimation
@dataclass(frozen=True)
class Estimate:
    """A policy value with its normal-approximation interval, standard error and effective sample size (the
    (sum w)^2 / sum w^2 of the importance weights it uses; the number of logged rows for dm)."""

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    ess: float
    n_rounds: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _ratio(numer: np.ndarray, denom: np.ndarray, z: float, ess: float, extra: np.ndarray | None = None) -> Estimate:
    """sum(numer) / sum(denom) over rounds, with the delta-method (linearized) normal interval; extra: more
    per-round terms of the linearization (dm's reward-model estimation), which move the spread, not the value."""
    value = float(numer.sum() / denom.sum())
    terms = (numer - value * denom + (0.0 if extra is None else extra)) / denom.mean()
    se = float(terms.std(ddof=1) / np.sqrt(len(terms))) if len(terms) > 1 else float("nan")
    return Estimate(value, value - z * se, value + z * se, se, float(ess), len(numer))


def _ess(w: np.ndarray) -> float:
    total = float((w ** 2).sum())
    return float(w.sum() ** 2 / total) if total > 0 else 0.0


def evaluate(log: BanditLog, target: TargetPolicy, *, estimators: Sequence[str] = ESTIMATORS,
             reward_model: RidgeRewardModel | None = None, folds: int = 2, switch_tau: float = 100.0,
             confidence: float = 0.95, seed: int = 0) -> dict[str, Estimate]:
    """Estimates of the target policy's value per impression (``iips``: per round, the slate's total) from the log.

    ips: mean of w*r with w = target prob / propensity of the logged item. snips: sum(w*r) / sum(w). dm: the reward
    model's expectation under the target. dr: dm plus w times the reward model's error on the logged item.
    switch-dr: dr whose correction is dropped where w > switch_tau (the model alone answers there). iips: the
    position-based slate estimator, the sum over a round's positions of w*r. The reward model (default
    RidgeRewardModel()) is cross-fitted over ``folds`` folds of rounds (1: fitted on everything).

    dm's interval adds to the sampling of the evaluated rounds the estimation of the reward model, linearized: the
    ridge coefficients move by A^-1 sum_i x_i e_i (A the penalized normal matrix, x_i a training row's features,
    e_i its residual), so dm moves by sum_i v.x_i e_i with v = A^-1 u, u the target-weighted features of the rows
    the model predicts. Each training round adds its v.x_i e_i to its round's term (a sandwich variance,
    clustered by round like the others), e_i scaled by 1/(1 - h_i), h_i the row's leverage (HC3); the
    misspecification bias of the model is not in it.
    """
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ConfigError(f"unknown estimator {unknown[0]!r}; choose from {', '.join(ESTIMATORS)}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    if not switch_tau > 0:
        raise ConfigError(f"switch_tau must be > 0, got {switch_tau!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise ConfigError(f"folds must be a positive integer, got {folds!r}")
    if len(log) < 2:
        raise DataError(f"the log has {len(log)} row(s); off-policy estimates need at least two")
    z = float(stats.norm.ppf((1 + confidence) / 2))

    # Join every target entry to its logged slot; both sides must describe the same (round, position) slots.
    slot = pd.MultiIndex.from_arrays([log.round, log.position])
    target_slot = pd.MultiIndex.from_arrays([target.round, target.position])
    rows = slot.get_indexer(target_slot)
    if (rows < 0).any():
        j = int(np.flatnonzero(rows < 0)[0])
        raise DataError(f"target row {j}: round {target.round[j]} position {target.position[j]} is not in the log")
    covered = np.zeros(len(log), dtype=bool)
    covered[rows] = True
    if not covered.all():
        i = int(np.flatnonzero(~covered)[0])
        raise DataError(f"log row {i}: round {log.round[i]} position {log.position[i]} has no target "
                        f"probabilities")
    codes, vocabulary = pd.factorize(np.concatenate([log.item, target.item]))
    logged_code, target_code = codes[:len(log)], codes[len(log):]

    # The target's probability of the logged item (0 where it is not among the target's candidates).
    pair = pd.MultiIndex.from_arrays([rows, target_code])
    at = pair.get_indexer(pd.MultiIndex.from_arrays([np.arange(len(log)), logged_code]))
    pi_logged = np.where(at >= 0, target.prob[np.maximum(at, 0)], 0.0)
    w = pi_logged / log.propensity
    r = log.reward
    round_code, _ = pd.factorize(log.round)
    n_rounds = int(round_code.max()) + 1

    def per_round(values: np.ndarray) -> np.ndarray:
        return np.bincount(round_code, weights=values, minlength=n_rounds)

    slots = per_round(np.ones(len(log)))
    results: dict[str, Estimate] = {}
    if "ips" in estimators:
        results["ips"] = _ratio(per_round(w * r), slots, z, _ess(w))
    if "snips" in estimators:
        if w.sum() == 0:
            raise DataError("the target gives probability 0 to every logged item: snips is undefined")
        results["snips"] = _ratio(per_round(w * r), per_round(w), z, _ess(w))
    if {"dm", "dr", "switch-dr"} & set(estimators):
        q_logged, q_target, model_terms = _cross_fit(log, rows, logged_code, target_code, target.prob,
                                                     len(vocabulary), round_code, reward_model or RidgeRewardModel(),
                                                     folds, seed)
        dm = np.bincount(rows, weights=target.prob * q_target, minlength=len(log))
        correction = w * (r - q_logged)
        if "dm" in estimators:
            results["dm"] = _ratio(per_round(dm), slots, z, float(len(log)), extra=per_round(model_terms))
        if "dr" in estimators:
            results["dr"] = _ratio(per_round(dm + correction), slots, z, _ess(w))
        if "switch-dr" in estimators:
            kept = w <= switch_tau
            results["switch-dr"] = _ratio(per_round(dm + np.where(kept, correction, 0.0)), slots, z,
                                          _ess(np.where(kept, w, 0.0)))
    if "iips" in estimators:
        results["iips"] = _ratio(per_round(w * r), np.ones(n_rounds), z, _ess(w))
    return {name: results[name] for name in estimators}


def _cross_fit(log: BanditLog, rows: np.ndarray, logged_code: np.ndarray, target_code: np.ndarray,
               target_prob: np.ndarray, n_items: int, round_code: np.ndarray, model: RidgeRewardModel, folds: int,
               seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reward-model predictions for the logged items and the target entries, each row predicted by the model
    fitted on the other folds of rounds; and each logged row's term in dm's linearization as a training row (the
    sum over the models it trained of v.x e, see `evaluate`)."""
    n_rounds = int(round_code.max()) + 1
    if folds > n_rounds:
        raise ConfigError(f"folds ({folds}) is more than the log's {n_rounds} rounds")
    fold_of_round = np.random.default_rng(seed).permutation(n_rounds) % folds
    fold = fold_of_round[round_code]
    q_logged = np.empty(len(log))
    q_target = np.empty(len(rows))
    model_terms = np.zeros(len(log))
    for f in range(folds):  # a handful of folds, each one vectorized fit
        held = fold == f
        train = ~held if folds > 1 else held
        fitted = type(model)(model.l2, model.l2_item).fit(log.context[train], log.position[train],
                                                          logged_code[train], log.reward[train], n_items)
        held_rows = np.flatnonzero(held)
        q_logged[held_rows] = fitted.predict(log.context, log.position, held_rows, logged_code[held_rows])
        entries = np.flatnonzero(held[rows])
        q_target[entries] = fitted.predict(log.context, log.position, rows[entries], target_code[entries])
        # u: the target-weighted features of the predicted entries, pooled and per item; v = A^-1 u.
        weights = sp.csr_matrix((target_prob[entries], (target_code[entries], rows[entries])),
                                shape=(n_items, len(log)))
        item_rhs = weights @ fitted.design(log.context, log.position)
        pooled_v, item_v = fitted.solve(item_rhs.sum(axis=0), item_rhs)
        train_rows = np.flatnonzero(train)
        residual = log.reward[train_rows] - fitted.predict(log.context, log.position, train_rows,
                                                            logged_code[train_rows])
        # HC3 (MacKinnon & White 1985): a training row's residual understates its error by its leverage h; the
        # plain sandwich (HC0) runs narrow in logs with many sparsely seen items, each adding d parameters.
        residual /= 1 - fitted.leverage(log.context, log.position, train_rows, logged_code[train_rows])
        model_terms[train_rows] += residual * fitted.linear(pooled_v, item_v, log.context, log.position,
                                                            train_rows, logged_code[train_rows])
    return q_logged, q_target, model_terms
