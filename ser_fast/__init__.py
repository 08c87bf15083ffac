"""ser_fast: noise-robust, cross-corpus speech emotion recognition with fast compiled parts."""

import logging

from ser_fast._extension import cpu_isa, set_cpu_isa
from ser_fast.frontend import FbankOptions, LogMelFrontend, deltas, fbank

__version__ = "0.1.0"
__all__ = ["FbankOptions", "LogMelFrontend", "__version__", "cpu_isa", "deltas", "fbank", "set_cpu_isa"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
