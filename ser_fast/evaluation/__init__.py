"""Scoring trained runs within-corpus, cross-corpus and on a noise grid (``evaluate`` for the models on log-Mel
features, ``merit_eval`` for Sparse MERIT's emotion and enhancement scores), and one report writer with tables and plots
for both (``report``). :func:`score_run` is the one entry point."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from ser_fast.data.corpus import Corpus
from ser_fast.data.dimensions import DimensionScale
from ser_fast.data.noise import DEFAULT_SNRS_DB, NoiseBank
from ser_fast.evaluation.evaluate import ConditionResult, RunResults, evaluate_run
from ser_fast.evaluation.merit_eval import TEST_SNRS_DB, MeritResults, evaluate_merit_run
from ser_fast.evaluation.report import write_report
from ser_fast.runs.layout import check_run_dir, read_run_json
from ser_fast.runs.metrics import ClassificationScores
from ser_fast.runs.registry import FEATURES, model_kind

__all__ = ["ClassificationScores", "ConditionResult", "MeritResults", "RunResults", "evaluate_merit_run",
           "evaluate_run", "score_run", "write_report"]


def score_run(run_dir: str | os.PathLike, corpus: Corpus, *, noise: Sequence[str] | str | None = None,
             snrs_db: Sequence[float] | None = None, noise_bank: NoiseBank | None = None, seed: int = 0,
             enhancement: bool = True, progress: bool = False, feature_cache: dict | None = None,
             dimension_scale: DimensionScale | None = None, embeddings: bool = True) -> RunResults | MeritResults:
    """Score every trained fold of the run in ``run_dir`` on ``corpus``, as its model kind is scored. Models on log-Mel
    features (:func:`evaluate_run`): clean speech, plus with ``noise`` ("all" or noise types) each type at each of
    ``snrs_db`` (default -5, 0, 5, 10, 20 dB). Sparse MERIT (:func:`evaluate_merit_run`): clean, the run's seen noise
    types and ``noise`` as the unseen ones (default: the bank's types the run never saw), at each of ``snrs_db``
    (default -5, 0, 5 dB), with SSNR / PESQ / STOI unless ``enhancement=False``. ``snrs_db=()``: clean speech only,
    for either kind, whatever ``noise`` says. ``dimension_scale``: for a run
    with a dimensional head, the scale ``corpus`` rates arousal, valence and dominance on (default: the run's within
    its corpus, the corpus' own across corpora). ``embeddings=False`` skips :func:`evaluate_run`'s embedding points and
    DSNet's subspace probes (Sparse MERIT has neither)."""
    if not isinstance(embeddings, bool):
        raise TypeError(f"embeddings must be True or False, got {embeddings!r}")
    if snrs_db is not None and (isinstance(snrs_db, (str, bytes)) or not isinstance(snrs_db, Iterable)):
        raise ValueError(f"snrs_db must be None or a sequence of SNRs in dB, got {snrs_db!r}")
    snrs = None if snrs_db is None else tuple(snrs_db)  # one pass over a generator, for either kind
    kind = model_kind(read_run_json(check_run_dir(run_dir))["config"].get("model"))
    if kind.input == FEATURES:
        return evaluate_run(run_dir, corpus, noise_kinds=noise, snrs_db=DEFAULT_SNRS_DB if snrs is None else snrs,
                            noise_bank=noise_bank, seed=seed, progress=progress, feature_cache=feature_cache,
                            dimension_scale=dimension_scale, embeddings=embeddings)
    unseen = None if noise in (None, "all") else noise
    return evaluate_merit_run(run_dir, corpus, bank=noise_bank, unseen_noise=unseen,
                              snrs_db=TEST_SNRS_DB if snrs is None else snrs, enhancement=enhancement,
                              seed=seed, progress=progress, dimension_scale=dimension_scale)
