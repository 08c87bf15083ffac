"""The file names of a run folder (``ser_fast.runs.layout`` says where each one lives)."""

RUN_JSON = "run.json"
FOLD_JSON = "fold.json"
FOLDS = "folds"
METRICS = "metrics.jsonl"
ALIGNMENT_JSON = "alignment.json"  # EDRL-MEA's alignment of the best epoch, and its validation scores
LATEST = "latest.json"
