"""What a training run is, per model family, each in one JSON-able dataclass saved beside the weights:
:class:`TrainConfig` (the CNN models on log-Mel features, DSNet's recipe) and :class:`MeritTrainConfig` (Sparse MERIT on
waveforms, the MERIT paper's recipe). Which kind takes which: ``ser_fast.runs.registry``."""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field, fields

from ser_fast.data.augmentation import AugmentConfig
from ser_fast.data.dimensions import DimensionScale
from ser_fast.frontend.constants import FRAME_SHIFT_S
from ser_fast.models.edrl_mea.model import DEFAULT_COMPONENTS, VARIANTS
from ser_fast.models.losses import check_calibration
from ser_fast.models.merit.model import BUILT_IN_BACKBONES, MeritConfig
from ser_fast.models.targets import check_target, has_dimensions
from ser_fast.runs.precision import PRECISIONS
from ser_fast.runs.registry import model_kind

# A training crop of 10 minutes; far past any utterance-level crop, and a bound on what one window's
# features and activations may allocate when a config file asks for more.
MAX_FRAMES = 60_000


@dataclass(frozen=True)
class TrainConfig:
    """DSNet's recipe (Adam 1e-3, batch 32, 600 frames, LR halved after 20 epochs without validation-loss improvement,
    at most 100 epochs, best epoch on validation UAR).
    ``alpha`` .. ``use_calibration`` are DSNet's loss weights and ablation switches, ``projector_relu`` and
    ``calibration`` its forms of two of the paper's equations (:class:`~ser_fast.models.dsnet.DSNet`; saved settings
    without them, written before they existed, read as the forms their model was trained with, ``LEGACY_DSNET``);
    ``variant`` ("full", "edrl", "mea") and ``n_components`` (MB-PLS components) are EDRL-MEA's; each model ignores the
    other's. ``init`` names a trained model or run to start from (``ser_fast.runs.warm_start``); ``freeze_encoder``
    keeps the encoder as it starts (weights and BatchNorm statistics), ``encoder_lr_scale`` slows its learning rate
    relative to the rest. ``augment`` names the augmentations of the training utterances (none by default; not gain,
    which per-utterance normalisation cancels), whose features are then computed per batch
    (``ser_fast.data.augmentation``). ``target``: what the model outputs (``ser_fast.models.targets``: class labels,
    arousal/valence/dominance or both; EDRL-MEA is categorical), and ``dimension_scale`` the ``[low, high]`` its
    training corpus rates the dimensions on (set by the run from the corpus), to which predictions are restored."""

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
    projector_relu: bool = False
    calibration: str = "standardized"
    variant: str = "full"
    n_components: int = DEFAULT_COMPONENTS
    init: str = ""
    freeze_encoder: bool = False
    encoder_lr_scale: float = 1.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    target: str = "categorical"
    dimension_scale: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "augment", _augment_config(self.augment))
        _check_target(self)
        if "gain" in self.augment.kinds:
            raise ValueError("augment: gain is for Sparse MERIT; the CNN models' features are normalised per "
                             "utterance (mean and variance of each log-Mel band), so a level change cancels out")
        _check_kind(self)
        _check_init(self)
        if not isinstance(self.freeze_encoder, bool):
            raise ValueError(f"freeze_encoder must be a bool, got {self.freeze_encoder!r}")
        if self.freeze_encoder and not self.init:
            raise ValueError("freeze_encoder needs init (a trained model to start from): a freshly initialised "
                             "encoder would stay random")
        if isinstance(self.encoder_lr_scale, bool) or not isinstance(self.encoder_lr_scale, (int, float)) \
                or not 0 < self.encoder_lr_scale <= 1:
            raise ValueError(f"encoder_lr_scale must be in (0, 1] (the encoder's learning rate over the rest's), got "
                             f"{self.encoder_lr_scale!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {PRECISIONS}")
        check_calibration(self.calibration)
        if not isinstance(self.projector_relu, bool):
            raise ValueError(f"projector_relu must be a bool, got {self.projector_relu!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r}: expected one of {VARIANTS}")
        _check_positive_ints(self, ("epochs", "batch_size", "max_frames", "lr_patience", "n_components"))
        if self.max_frames > MAX_FRAMES:
            raise ValueError(f"max_frames must be at most {MAX_FRAMES} (10-ms frames: {MAX_FRAMES // 6000} minutes "
                             f"per training crop), got {self.max_frames}")
        if not (self.learning_rate > 0 and 0 < self.lr_factor < 1):
            raise ValueError(f"learning_rate must be > 0 and lr_factor in (0, 1), got {self.learning_rate}, "
                             f"{self.lr_factor}")

    def to_dict(self) -> dict:
        """The settings as JSON holds them (ranges as lists), so a saved config reads back equal."""
        return {**asdict(self), "augment": self.augment.to_dict(), "dimension_scale": _scale_list(self)}

    @property
    def scale(self) -> DimensionScale | None:
        """``dimension_scale`` as a :class:`DimensionScale` (None for a categorical model)."""
        return _scale(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Saved settings (a model folder's config.json) as a config."""
        legacy = LEGACY_DSNET if values.get("model", "dsnet") == "dsnet" else {}
        return _from_dict(cls, {**legacy, **values}, "unknown training settings {unknown}; known: {known}")


# The forms of DSNet's equations a config that does not name them was trained with (before issue 17).
LEGACY_DSNET = {"projector_relu": True, "calibration": "softmax"}

PRETRAINED_LR, PRETRAINED_SSL_LR = 5e-5, 2.5e-5
SCRATCH_LR = 1e-3
MAX_SECONDS = MAX_FRAMES * FRAME_SHIFT_S  # TrainConfig's bound on a training crop, in seconds


@dataclass(frozen=True)
class MeritTrainConfig:
    """The paper's recipe where it applies: AdamW, effective batch 32 (``batch_size`` × ``accumulate``), 20 epochs,
    training pairs at 5 dB, heads at 5e-5 and the SSL model at 2.5e-5 for a pretrained backbone. The built-in backbone
    is trained from scratch, so its default learning rates are 1e-3 for both. ``frozen_ssl_epochs`` > 0 gives the
    paper's two steps (heads first with the SSL model frozen, then everything). ``augment`` changes the training
    utterances' speech before the noise is added (reverb, gain, band, speed: the clean target is the augmented speech);
    the noise is the training mixtures' own (``train_snr_db``, ``seen_noise``). ``target`` and ``dimension_scale``:
    as :class:`TrainConfig`'s (the SER head's regressor reads the pooled SER vector)."""

    network: MeritConfig = field(default_factory=MeritConfig)
    epochs: int = 20
    batch_size: int = 8
    accumulate: int = 4
    learning_rate: float | None = None
    ssl_learning_rate: float | None = None
    weight_decay: float = 0.01
    frozen_ssl_epochs: int = 0
    max_seconds: float = 4.0
    train_snr_db: float = 5.0
    seen_noise: tuple[str, ...] = ("white", "pink", "babble")
    seed: int = 0
    model: str = "merit"
    init: str = ""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    target: str = "categorical"
    dimension_scale: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _check_target(self)
        if isinstance(self.network, dict):
            object.__setattr__(self, "network", MeritConfig.from_dict(self.network))
        object.__setattr__(self, "augment", _augment_config(self.augment))
        if "noise" in self.augment.kinds:
            raise ValueError("MeritTrainConfig: Sparse MERIT's training mixtures add the noise (train_snr_db, "
                             "seen_noise); its augment takes reverb, gain, band and speed")
        object.__setattr__(self, "seen_noise", tuple(self.seen_noise))
        _check_positive_ints(self, ("epochs", "batch_size", "accumulate"), "MeritTrainConfig: ")
        if self.batch_size < 2:
            raise ValueError("MeritTrainConfig: batch_size must be at least 2 (class weights, pooling statistics)")
        if not 0 <= self.frozen_ssl_epochs < self.epochs:
            raise ValueError(f"MeritTrainConfig: frozen_ssl_epochs must be in 0..epochs-1, got "
                             f"{self.frozen_ssl_epochs}")
        for name in ("learning_rate", "ssl_learning_rate"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"MeritTrainConfig: {name} must be > 0 (or None for the default), got {value!r}")
        if not 0.1 < self.max_seconds <= MAX_SECONDS:
            raise ValueError(f"MeritTrainConfig: max_seconds must be in (0.1, {MAX_SECONDS:g}], got "
                             f"{self.max_seconds!r}")
        if not self.seen_noise:
            raise ValueError("MeritTrainConfig: seen_noise needs at least one noise type")
        _check_kind(self)
        _check_init(self)

    @property
    def pretrained(self) -> bool:
        return self.network.backbone not in BUILT_IN_BACKBONES

    @property
    def head_lr(self) -> float:
        return self.learning_rate or (PRETRAINED_LR if self.pretrained else SCRATCH_LR)

    @property
    def ssl_lr(self) -> float:
        return self.ssl_learning_rate or (PRETRAINED_SSL_LR if self.pretrained else SCRATCH_LR)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["seen_noise"] = list(self.seen_noise)
        values["augment"] = self.augment.to_dict()
        values["dimension_scale"] = _scale_list(self)
        return values

    @property
    def scale(self) -> DimensionScale | None:
        """``dimension_scale`` as a :class:`DimensionScale` (None for a categorical model)."""
        return _scale(self)

    @classmethod
    def from_dict(cls, values: dict) -> MeritTrainConfig:
        return _from_dict(cls, values, "MeritTrainConfig: unknown settings {unknown}")


def _check_positive_ints(config: TrainConfig | MeritTrainConfig, names: tuple[str, ...], prefix: str = "") -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{prefix}{name} must be a positive int, got {value!r}")


def _from_dict(cls: type, values: dict, unknown_message: str):
    """``cls(**values)``; a ValueError (``unknown_message`` with ``{unknown}`` and ``{known}``) for unknown keys."""
    known = sorted(f.name for f in fields(cls))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(unknown_message.format(unknown=unknown, known=known))
    return cls(**values)


# Settings added after reproduction grids were run: at these values they leave a grid cell's name as it was.
LATER_DEFAULTS = {"init": "", "freeze_encoder": False, "encoder_lr_scale": 1.0, "augment": AugmentConfig().to_dict(),
                  "target": "categorical", "dimension_scale": None}


def _check_target(config: TrainConfig | MeritTrainConfig) -> None:
    """``target`` known and one the model takes (its class has a ``target`` argument: EDRL-MEA, whose MB-PLS
    alignment is fitted to class labels, is categorical), and ``dimension_scale`` a valid ``(low, high)`` (stored as
    a tuple), or None; a categorical model has none."""
    check_target(config.target)
    if config.target != "categorical" and "target" not in inspect.signature(
            model_kind(config.model).model_classes[0]).parameters:
        raise ValueError(f"target {config.target!r}: the {config.model} model is categorical only; baseline, dsnet "
                         "and merit predict arousal/valence/dominance")
    value = config.dimension_scale
    if value is None:
        return
    if not has_dimensions(config.target):
        raise ValueError(f"dimension_scale is for a model with a dimensional head; target is {config.target!r}")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"dimension_scale must be [low, high], got {value!r}")
    scale = DimensionScale(*value)
    object.__setattr__(config, "dimension_scale", (float(scale.low), float(scale.high)))


def _scale(config: TrainConfig | MeritTrainConfig) -> DimensionScale | None:
    return None if config.dimension_scale is None else DimensionScale(*config.dimension_scale)


def _scale_list(config: TrainConfig | MeritTrainConfig) -> list[float] | None:
    return None if config.dimension_scale is None else list(config.dimension_scale)


def _augment_config(value: AugmentConfig | dict) -> AugmentConfig:
    if isinstance(value, dict):
        return AugmentConfig.from_dict(value)
    if not isinstance(value, AugmentConfig):
        raise ValueError(f"augment must be an AugmentConfig or its dict, got {value!r}")
    return value


def _check_init(config: TrainConfig | MeritTrainConfig) -> None:
    if not isinstance(config.init, str):
        raise ValueError(f"init must be a path (str) to a trained model or run folder, or \"\", got {config.init!r}")


def _check_kind(config: TrainConfig | MeritTrainConfig) -> None:
    kind = model_kind(config.model)
    if not isinstance(config, kind.config_class):
        raise ValueError(f"model {config.model!r} is configured with a {kind.config_class.__name__}, not a "
                         f"{type(config).__name__}")
