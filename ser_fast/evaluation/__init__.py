"""Scoring models: metrics, evaluation of training runs (within-corpus, cross-corpus, noise grid),
and reports with tables and plots."""

from ser_fast.evaluation.metrics import ClassificationScores

__all__ = ["ClassificationScores", "ConditionResult", "RunResults", "evaluate_run"]


def __getattr__(name: str):
    # The evaluation of runs needs the training package, which itself scores with the metrics above:
    # imported on first use, so that either package can be imported first.
    if name in ("ConditionResult", "RunResults", "evaluate_run"):
        from ser_fast.evaluation import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
