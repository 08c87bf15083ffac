"""What a training run is: the paper's recipe by default, everything in one JSON-able dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ser_fast.models.edrl_mea.model import DEFAULT_COMPONENTS, VARIANTS

MODELS = ("baseline", "dsnet", "edrl-mea")
PRECISIONS = ("auto", "fp32", "bf16")
# A training crop of 10 minutes; far past any utterance-level crop, and a bound on what one window's
# features and activations may allocate when a config file asks for more.
MAX_FRAMES = 60_000


@dataclass(frozen=True)
class TrainConfig:
    """DSNet's recipe (Adam 1e-3, batch 32, 600 frames, LR halved after 20 epochs without
    validation-loss improvement, at most 100 epochs, best epoch on validation UAR).

    ``alpha`` .. ``use_calibration`` are DSNet's loss weights and ablation switches; ``variant``
    ("full", "edrl", "mea") and ``n_components`` (MB-PLS components) are EDRL-MEA's; each model
    ignores the other's."""

    model: str = "dsnet"
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    max_frames: int = 600
    lr_patience: int = 20
    lr_factor: float = 0.5
    seed: int = 0
    precision: str = "auto"
    channels_last: bool = True
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    use_orthogonality: bool = True
    use_reconstruction: bool = True
    use_calibration: bool = True
    variant: str = "full"
    n_components: int = DEFAULT_COMPONENTS

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model {self.model!r}: expected one of {MODELS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {PRECISIONS}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r}: expected one of {VARIANTS}")
        for name in ("epochs", "batch_size", "max_frames", "lr_patience", "n_components"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_frames > MAX_FRAMES:
            raise ValueError(f"max_frames must be at most {MAX_FRAMES} (10-ms frames: {MAX_FRAMES // 6000} minutes "
                             f"per training crop), got {self.max_frames}")
        if not (self.learning_rate > 0 and 0 < self.lr_factor < 1):
            raise ValueError(f"learning_rate must be > 0 and lr_factor in (0, 1), got {self.learning_rate}, "
                             f"{self.lr_factor}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**values)
