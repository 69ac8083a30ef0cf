"""Terminal output shared by the CLI and the demo: tables from DataFrames, the leaderboard view."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pandas as pd
from rich.console import Console
from rich.table import Table

#: Wide enough for a leaderboard when the output is a file or a pipe rather than a terminal.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def print_frame(frame: pd.DataFrame, title: str | None = None, console: Console = out) -> None:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), justify="right" if frame[column].dtype.kind in "fiu" else "left")
    for _, row in frame.iterrows():
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


def leaderboard_view(board: pd.DataFrame, ks: Sequence[int]) -> pd.DataFrame:
    """The leaderboard columns a person reads first: NDCG and recall at each K (with the 95% interval's
    half-width where the board has intervals), MAP/HR/MRR at the first K, coverage, errors, timings."""
    view = pd.DataFrame({"model": board["label"], "users": board["users"]})
    wanted = [m for k in ks for m in (f"ndcg@{k}", f"recall@{k}")]
    wanted += [f"map@{ks[0]}", f"hr@{ks[0]}", f"mrr@{ks[0]}", f"coverage@{ks[-1]}", f"diversity@{ks[-1]}",
               f"novelty@{ks[-1]}", "rmse", "mae"]
    for metric in (m for m in wanted if m in board.columns):
        if f"{metric} high" in board.columns:
            half = (board[f"{metric} high"] - board[f"{metric} low"]) / 2
            view[metric] = [f"{v:.4f} ± {h:.4f}" for v, h in zip(board[metric], half, strict=True)]
        else:
            view[metric] = board[metric]
    for timing in ("fit_seconds", "predict_seconds"):
        if timing in board.columns:
            view[timing.replace("_seconds", " s")] = board[timing].round(2)
    return view
