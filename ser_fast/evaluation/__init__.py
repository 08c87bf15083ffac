"""Scoring models: metrics, evaluation of training runs (within-corpus, cross-corpus, noise grid),
and reports with tables and plots."""

from ser_fast.evaluation.evaluate import ConditionResult, RunResults, evaluate_run
from ser_fast.evaluation.metrics import ClassificationScores

__all__ = ["ClassificationScores", "ConditionResult", "RunResults", "evaluate_run"]
