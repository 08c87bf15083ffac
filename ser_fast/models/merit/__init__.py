"""Sparse MERIT (paper 002): joint speech enhancement and emotion recognition with frame-wise top-k experts over
self-supervised speech features (ssl.py, experts.py, ser_head.py, se_head.py, model.py)."""

from ser_fast.models.merit.experts import DESIGNS, ExpertOutput, ExpertPool
from ser_fast.models.merit.model import (
    ALL_DESIGNS,
    MeritConfig,
    MeritHeads,
    MeritLosses,
    MeritOutput,
    SEThenSER,
    SparseMERIT,
    build_merit,
)
from ser_fast.models.merit.se_head import SEHead, Spectrogram
from ser_fast.models.merit.ser_head import AttentiveStatisticsPooling, SERHead, class_weights
from ser_fast.models.merit.ssl import SSLFeatures

__all__ = ["ALL_DESIGNS", "DESIGNS", "AttentiveStatisticsPooling", "ExpertOutput", "ExpertPool", "MeritConfig",
           "MeritHeads", "MeritLosses", "MeritOutput", "SEHead", "SERHead", "SEThenSER", "SSLFeatures", "Spectrogram",
           "SparseMERIT", "build_merit", "class_weights"]
