"""The models: DSNet and its Baseline (paper 001), EDRL-MEA with :class:`MBPLS` (paper 000), Sparse MERIT with
:class:`SSLFeatures` (paper 002), and ``count_complexity`` for Table 3's numbers."""

from ser_fast.models.complexity import count_complexity
from ser_fast.models.dsnet import Baseline, DSNet, DSNetEmbeddings, DSNetOutputs
from ser_fast.models.edrl_mea import EDRLMEA, EDRLMEALosses
from ser_fast.models.losses import DSNetLosses
from ser_fast.models.mbpls import MBPLS
from ser_fast.models.merit import MeritConfig, SEThenSER, SparseMERIT, SSLFeatures

__all__ = ["EDRLMEA", "MBPLS", "Baseline", "DSNet", "DSNetEmbeddings", "DSNetLosses", "DSNetOutputs", "EDRLMEALosses",
           "MeritConfig", "SEThenSER", "SSLFeatures", "SparseMERIT", "count_complexity"]
