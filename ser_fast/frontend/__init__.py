"""Kaldi-exact log-Mel front-end: the compiled filterbank, deltas and DSNet's input module."""

from ser_fast.frontend.constants import IN_CHANNELS, INT16_SCALE, MIN_SAMPLES, N_MELS, SAMPLE_RATE
from ser_fast.frontend.deltas import deltas
from ser_fast.frontend.fbank import fbank, fbank_with_options
from ser_fast.frontend.module import LogMelFrontend, fit_frames, resample
from ser_fast.frontend.options import FbankOptions
from ser_fast.frontend.recipe import model_features, model_frontend

__all__ = ["IN_CHANNELS", "INT16_SCALE", "MIN_SAMPLES", "N_MELS", "SAMPLE_RATE", "FbankOptions", "LogMelFrontend", "deltas",
           "fbank", "fbank_with_options", "fit_frames", "model_features", "model_frontend", "resample"]
