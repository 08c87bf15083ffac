"""Sparse MERIT (paper 002): joint speech enhancement and emotion recognition with frame-wise
top-k experts over self-supervised speech features.

- :class:`SSLFeatures`: WavLM / wav2vec 2.0 / HuBERT hidden states from a local folder (or the
  built-in small WavLM), one LayerNorm per layer, concatenated or weighted.
- :class:`ExpertPool`: the shared experts and a router per task, in the paper's four designs.
- :class:`SERHead`, :class:`SEHead`: attentive statistics pooling + MLP; BLSTM spectral mask.
- :class:`SparseMERIT`, :class:`SEThenSER`: the joint model and the SE pre-processing baseline.
"""

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
           "MeritHeads",
           "MeritLosses", "MeritOutput", "SEHead", "SERHead", "SEThenSER", "SSLFeatures", "Spectrogram",
           "SparseMERIT", "build_merit", "class_weights"]
