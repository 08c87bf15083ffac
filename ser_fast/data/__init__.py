"""Data for ser_fast: corpus loaders, the synthetic corpus, noise at exact SNRs, protocols."""

from ser_fast.data.audio import SAMPLE_RATE, AudioError, load_audio
from ser_fast.data.corpus import CLASS_SETS, Corpus, CorpusSummary, Skipped, Utterance
from ser_fast.data.loaders import CORPUS_NAMES, load_corpus
from ser_fast.data.noise import NoiseBank, NoiseCondition, measured_snr_db, mix_at_snr, noise_grid
from ser_fast.data.protocols import (
    CrossCorpusPair,
    Fold,
    NeutralReferences,
    corpus_split,
    cross_corpus_pairs,
    emobox_folds,
    halves_folds,
    loso_folds,
    neutral_references,
    session_folds,
)
from ser_fast.data.synthetic import synthesize_corpus

__all__ = ["CLASS_SETS", "CORPUS_NAMES", "SAMPLE_RATE", "AudioError", "Corpus", "CorpusSummary", "CrossCorpusPair",
           "Fold", "NeutralReferences", "NoiseBank", "NoiseCondition", "Skipped", "Utterance", "corpus_split",
           "cross_corpus_pairs", "emobox_folds", "halves_folds", "load_audio", "load_corpus", "loso_folds",
           "measured_snr_db", "mix_at_snr", "neutral_references", "noise_grid", "session_folds", "synthesize_corpus"]
