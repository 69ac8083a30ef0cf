"""Evaluation: metrics from top-K lists, statistics over users, and the evaluator that produces Reports."""

from recengine.evaluation.evaluate import Report, compare, evaluate, fit_and_evaluate, leaderboard
from recengine.evaluation.stats import MeanCI, PairedTest, mean_ci, paired_test

__all__ = ["MeanCI", "PairedTest", "Report", "compare", "evaluate", "fit_and_evaluate", "leaderboard",
           "mean_ci", "paired_test"]
