"""The models: DSNet and its Baseline (paper 001), and ``count_complexity`` for Table 3's numbers.

- :class:`Baseline`: acoustic encoder E + classifier C.
- :class:`DSNet`: E, projectors P_er / P_ei, restorer R, classifier C; ``forward`` is inference,
  ``training_losses`` the objective ``L_t + α L_o + β L_r + γ L_c`` as a :class:`DSNetLosses`.
- :func:`count_complexity`: parameters and MACs of a model or of one of its paths.
- :class:`EDRLMEA` (paper 000): emotion-disentangled blocks aligned by :class:`MBPLS`, multiblock
  partial least squares (NIPALS); its parts in :mod:`ser_fast.models.edrl_mea`.
- :class:`SparseMERIT` (paper 002) and its parts in :mod:`ser_fast.models.merit`, with
  :class:`SSLFeatures`, the self-supervised front-end.
"""

from ser_fast.models.complexity import count_complexity
from ser_fast.models.dsnet import Baseline, DSNet, DSNetEmbeddings, DSNetOutputs
from ser_fast.models.edrl_mea import EDRLMEA, EDRLMEALosses
from ser_fast.models.losses import DSNetLosses
from ser_fast.models.mbpls import MBPLS
from ser_fast.models.merit import MeritConfig, SEThenSER, SparseMERIT, SSLFeatures

__all__ = ["EDRLMEA", "MBPLS", "Baseline", "DSNet", "DSNetEmbeddings", "DSNetLosses", "DSNetOutputs", "EDRLMEALosses",
           "MeritConfig", "SEThenSER", "SSLFeatures", "SparseMERIT", "count_complexity"]
