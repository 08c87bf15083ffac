"""EDRL-MEA (paper 000): emotion-disentangled representation learning (EDRL) and multiblock
embedding alignment (MEA), for noise-robust and cross-corpus speech emotion recognition.

- :class:`EDRLMEA`: the model (backbone, EDRL encoders, MB-PLS alignment, softmax classifier);
  every choice that is ours, not the paper's, is listed in its docstring.
- :class:`EDRLMEALosses`: what ``EDRLMEA.training_losses`` returns.
- :class:`InterClassEncoder`, :class:`IntraClassEncoders`, :func:`supervised_contrastive_loss`: EDRL.
- :func:`input_statistics`, :func:`fit_softmax_classifier`: MEA's Y and the classifier.
"""

from ser_fast.models.edrl_mea.alignment import fit_softmax_classifier, input_statistics
from ser_fast.models.edrl_mea.edrl import InterClassEncoder, IntraClassEncoders, supervised_contrastive_loss
from ser_fast.models.edrl_mea.model import EDRLMEA, VARIANTS, EDRLMEALosses

__all__ = ["EDRLMEA", "VARIANTS", "EDRLMEALosses", "InterClassEncoder", "IntraClassEncoders",
           "fit_softmax_classifier", "input_statistics", "supervised_contrastive_loss"]
