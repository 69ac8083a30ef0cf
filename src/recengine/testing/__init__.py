"""Conformance checks that every model must pass (like scikit-learn's estimator checks).

Product code never imports this package; the test suite runs it on every registered model.
"""

from recengine.testing.checks import check_recommender, contract_dataset, planted_ratings

__all__ = ["check_recommender", "contract_dataset", "planted_ratings"]
