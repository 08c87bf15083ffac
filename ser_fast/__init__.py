"""ser_fast: noise-robust, cross-corpus speech emotion recognition with fast compiled parts."""

import logging

from ser_fast.frontend import FbankOptions, LogMelFrontend, deltas, fbank

__version__ = "0.1.0"
__all__ = ["FbankOptions", "LogMelFrontend", "__version__", "deltas", "fbank"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
