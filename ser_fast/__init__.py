"""ser_fast: noise-robust, cross-corpus speech emotion recognition with fast compiled parts."""

import logging
from typing import Any

from ser_fast._extension import cpu_isa, set_cpu_isa
from ser_fast.frontend import FbankOptions, LogMelFrontend, deltas, fbank

__version__ = "0.1.0"
__all__ = ["EmotionRecognizer", "FbankOptions", "LogMelFrontend", "__version__", "cpu_isa", "deltas", "fbank",
           "set_cpu_isa"]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    # The recognizer pulls in every model and the training code: imported on first use, so that
    # `import ser_fast` stays as cheap as the frontend.
    if name == "EmotionRecognizer":
        from ser_fast.inference.recognizer import EmotionRecognizer

        return EmotionRecognizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
