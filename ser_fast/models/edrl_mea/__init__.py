"""EDRL-MEA (paper 000): emotion-disentangled representation learning (edrl.py) and multiblock embedding alignment
(alignment.py, ``MBPLS``), for noise-robust and cross-corpus speech emotion recognition; the model in model.py."""

from ser_fast.models.edrl_mea.alignment import fit_softmax_classifier, input_statistics
from ser_fast.models.edrl_mea.edrl import InterClassEncoder, IntraClassEncoders, supervised_contrastive_loss
from ser_fast.models.edrl_mea.model import EDRLMEA, VARIANTS, EDRLMEALosses

__all__ = ["EDRLMEA", "VARIANTS", "EDRLMEALosses", "InterClassEncoder", "IntraClassEncoders",
           "fit_softmax_classifier", "input_statistics", "supervised_contrastive_loss"]
