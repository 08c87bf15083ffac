"""Do the three systems do what their papers claim? ``ser-fast reproduce EXPERIMENT`` runs a paper's grid (systems ×
seeds × folds, each cell an ordinary resumable training run) and reports every system's scores and the paper's
comparisons with confidence intervals and paired tests (``ser_fast.evaluation.statistics``)."""

from ser_fast.reproduce.experiments import EXPERIMENTS, Comparison, Experiment, System, experiment
from ser_fast.reproduce.grid import GridSettings, parse_shard
from ser_fast.reproduce.runner import Reproduction, reproduce

__all__ = ["EXPERIMENTS", "Comparison", "Experiment", "GridSettings", "Reproduction", "System", "experiment",
           "parse_shard", "reproduce"]
