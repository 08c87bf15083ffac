"""Kaldi-exact log-Mel front-end: the compiled filterbank, deltas and DSNet's input module."""

from ser_fast.frontend.deltas import deltas
from ser_fast.frontend.fbank import fbank, fbank_with_options
from ser_fast.frontend.module import LogMelFrontend, fit_frames, resample
from ser_fast.frontend.options import FbankOptions

__all__ = ["FbankOptions", "LogMelFrontend", "deltas", "fbank", "fbank_with_options", "fit_frames", "resample"]
