"""Sparse MERIT (paper 002): SSL features → a shared pool of experts with a router per task → an emotion head (SER) and
a spectral-mask enhancement head (SE), trained jointly with ``L = CE_w + λ · L1 + μ · L_balance``; and the paper's SE
pre-processing baseline. A model's ``target`` (a build argument, ``ser_fast.models.targets``) makes the emotion head
classify (the paper's), regress arousal, valence and dominance (CCC loss L_d in CE_w's place) or both (CE_w + L_d)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ser_fast.models.checks import check_positive_ints
from ser_fast.models.losses import LossTerms, concordance_loss
from ser_fast.models.merit.experts import DESIGNS, ExpertPool
from ser_fast.models.merit.se_head import SEHead, Spectrogram, enhance, se_loss, stft_lengths
from ser_fast.models.merit.ser_head import SERHead
from ser_fast.models.merit.ssl import SSLFeatures
from ser_fast.models.targets import (
    NUM_DIMENSIONS,
    Targets,
    check_target,
    has_classes,
    has_dimensions,
    joint_loss,
    split_scores,
)
from ser_fast.ops.moe.routing import MoEAux

ALL_DESIGNS = (*DESIGNS, "se-preprocess")
# MeritConfig.backbone names of the built-in from-scratch backbones → SSLFeatures.default's front-end.
BUILT_IN_BACKBONES = {"default": "log-mel", "default-waveform": "waveform"}


@dataclass(frozen=True)
class MeritConfig:
    """Everything that defines a MERIT network (JSON-able; saved beside the weights).

    design: one of :class:`ExpertPool`'s designs (``"sparse"``, ``"released"``, ``"dense"``, ``"mtl"``) or
        ``"se-preprocess"`` (an SE model, then an SER model on its enhanced output).
    num_classes: C, the classifier's outputs (ignored by a model built with ``target="dimensional"``, which has none).
    backbone: ``"default"`` / ``"default-waveform"`` (:meth:`SSLFeatures.default` on log-Mel / WavLM's waveform CNN,
        trained from scratch: runs anywhere, but real use needs pretrained weights) or a local folder holding a Hugging
        Face WavLM / wav2vec 2.0 / HuBERT checkpoint (e.g. WavLM-Large, as the paper).
    combine: the SSL layers ``"concat"``-enated (as released) or as a learned ``"weighted"`` sum.
    num_experts, top_k, expert_hidden, expert_dim: the pool (paper: 3, 1, 4096, 1024; scaled down here for the default
        backbone).
    se_weight: λ, the weight of the SE L1 loss (1.0 in the paper).
    balance_weight: μ, the weight of the load-balancing loss (ours; the release has none).
    """

    design: str = "sparse"
    num_classes: int = 4
    backbone: str = "default"
    combine: str = "concat"
    freeze_feature_encoder: bool | None = None
    num_experts: int = 3
    top_k: int = 1
    expert_hidden: int = 512
    expert_dim: int = 256
    ser_hidden: int = 256
    dropout: float = 0.5
    se_hidden: int = 256
    se_weight: float = 1.0
    balance_weight: float = 0.01

    def __post_init__(self) -> None:
        if self.design not in ALL_DESIGNS:
            raise ValueError(f"MeritConfig: design {self.design!r}: expected one of {ALL_DESIGNS}")
        if self.combine not in ("concat", "weighted"):
            raise ValueError(f"MeritConfig: combine {self.combine!r}: expected 'concat' or 'weighted'")
        names = ("num_classes", "num_experts", "top_k", "expert_hidden", "expert_dim", "ser_hidden", "se_hidden")
        check_positive_ints("MeritConfig", **{name: getattr(self, name) for name in names})
        if self.num_classes < 2:
            raise ValueError(f"MeritConfig: num_classes must be at least 2, got {self.num_classes}")
        if self.top_k > self.num_experts:
            raise ValueError(f"MeritConfig: top_k={self.top_k} exceeds num_experts={self.num_experts}")
        if not (0.0 <= self.dropout < 1.0 and self.se_weight >= 0.0 and self.balance_weight >= 0.0):
            raise ValueError("MeritConfig: dropout must be in [0, 1) and se_weight, balance_weight >= 0, got "
                             f"{self.dropout}, {self.se_weight}, {self.balance_weight}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> MeritConfig:
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"MeritConfig: unknown settings {unknown}")
        return cls(**values)


@dataclass(frozen=True)
class MeritOutput:
    """logits ``[B, C]`` (None for a dimensional model); the SE mask, noisy and enhanced log1p magnitudes
    ``[B, F, T_stft]`` and ``stft_padding [B, T_stft]`` (True = padding); the routers' aux (None without routing), the
    SSL frames' padding mask ``[B, T]`` and the regressor's arousal, valence and dominance ``dimensions [B, 3]`` on
    [0, 1] (None for a categorical model)."""

    logits: torch.Tensor | None
    se_mask: torch.Tensor
    noisy_log_mag: torch.Tensor
    enhanced_log_mag: torch.Tensor
    stft_padding: torch.Tensor
    aux: MoEAux | None
    ssl_padding: torch.Tensor
    dimensions: torch.Tensor | None = None


@dataclass(frozen=True)
class MeritLosses(LossTerms):
    """``total = ce + l_d + λ · se_l1 + μ · balance``, each term kept for logging; ``ce`` (the class-weighted
    cross-entropy) is None for a dimensional model, ``l_d`` (the CCC loss of the dimensions) for a categorical one."""

    total: torch.Tensor
    ce: torch.Tensor | None
    se_l1: torch.Tensor
    balance: torch.Tensor
    l_d: torch.Tensor | None = None


def build_backbone(config: MeritConfig) -> SSLFeatures:
    options = {} if config.freeze_feature_encoder is None else {"freeze_feature_encoder": config.freeze_feature_encoder}
    if config.backbone in BUILT_IN_BACKBONES:
        return SSLFeatures.default(combine=config.combine, frontend=BUILT_IN_BACKBONES[config.backbone], **options)
    return SSLFeatures.from_pretrained(config.backbone, combine=config.combine, **options)


class _MeritBase(nn.Module):
    """The input checks, the loss and the inference helpers the two MERIT networks share. ``target`` and
    ``num_classes`` (C, 0 for a dimensional model) say which heads the SER head has."""

    config: MeritConfig
    spectrogram: Spectrogram
    target: str
    num_classes: int

    def _check(self, wave: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if not isinstance(wave, torch.Tensor) or wave.dim() != 2 or not wave.is_floating_point():
            got = f"{tuple(wave.shape)} {wave.dtype}" if isinstance(wave, torch.Tensor) else type(wave).__name__
            raise ValueError(f"{type(self).__name__}: wave must be a float tensor [B, samples] at 16 kHz, got {got}")
        if lengths is None:
            return torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
        if not isinstance(lengths, torch.Tensor) or tuple(lengths.shape) != (wave.shape[0],):
            raise ValueError(f"{type(self).__name__}: lengths must be a tensor [B={wave.shape[0]}] of sample counts")
        if torch.compiler.is_compiling():  # traced: a range check would read the values
            return lengths.long()
        if bool((lengths < 1).any()) or bool((lengths > wave.shape[1]).any()):
            raise ValueError(f"{type(self).__name__}: lengths must be in 1..{wave.shape[1]}, got {lengths.tolist()}")
        return lengths.long()

    def _spectra(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        spec = self.spectrogram(wave)
        frames = stft_lengths(lengths).clamp(max=spec.shape[-1])
        padding = torch.arange(spec.shape[-1], device=wave.device).view(1, -1) >= frames.view(-1, 1)
        return spec, self.spectrogram.log1p_magnitude(spec), padding

    def losses(self, noisy: torch.Tensor, clean: torch.Tensor, labels: torch.Tensor | Targets,
               lengths: torch.Tensor | None = None, class_weight: torch.Tensor | None = None) -> MeritLosses:
        """The joint objective on a batch of noisy inputs, their clean references and labels: the class indices
        ``[B]`` of a categorical model, :class:`~ser_fast.models.targets.Targets` (labels or None, dimensions
        ``[B, 3]`` on [0, 1]) of one with a dimensional head (B >= 2: the CCC is a statistic of the batch)."""
        if not isinstance(clean, torch.Tensor) or clean.shape != noisy.shape:
            raise ValueError(f"{type(self).__name__}.losses: clean must match noisy's shape {tuple(noisy.shape)}")
        labels, dimensions = self._check_targets(labels, noisy.shape[0])
        out = self(noisy, lengths)
        _, clean_log_mag, _ = self._spectra(clean, self._check(noisy, lengths))
        ce = None
        if out.logits is not None:
            weight = None if class_weight is None else class_weight.to(out.logits.device, torch.float32)
            ce = F.cross_entropy(out.logits.float(), labels, weight=weight)
        l_d = None if out.dimensions is None else concordance_loss(out.dimensions.float(),
                                                                   dimensions.to(out.dimensions.device))
        l1 = se_loss(out.enhanced_log_mag, clean_log_mag, out.stft_padding)
        # Only SparseMERIT routes (aux is None for SEThenSER), and only a router that learns is balanced.
        balanced = out.aux is not None and self.heads.experts.uses_balancing_loss
        balance = out.aux.load_balancing_loss.mean() if balanced else l1.new_zeros(())
        total = joint_loss(ce, l_d) + self.config.se_weight * l1 + self.config.balance_weight * balance
        return MeritLosses(total, ce, l1, balance, l_d)

    def _check_targets(self, labels: torch.Tensor | Targets,
                       batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(labels [B] or None, dimensions [B, 3] or None)`` of a batch's targets, each checked where the model
        has the head that reads it."""
        name = f"{type(self).__name__}.losses"
        dimensions = None
        if has_dimensions(self.target):
            if not isinstance(labels, Targets):
                raise TypeError(f"{name}: a model with a dimensional head (target {self.target!r}) trains on "
                                f"Targets(labels, dimensions), got {type(labels).__name__}")
            labels, dimensions = labels
            if not isinstance(dimensions, torch.Tensor) or not dimensions.is_floating_point() \
                    or tuple(dimensions.shape) != (batch, NUM_DIMENSIONS):
                raise ValueError(f"{name}: dimensions must be a float tensor [B={batch}, {NUM_DIMENSIONS}] on [0, 1]")
            if batch < 2:
                raise ValueError(f"{name}: the CCC loss needs a batch of at least 2 utterances, got {batch}")
        elif isinstance(labels, Targets):
            labels = labels.labels
        if not self.num_classes:
            return None, dimensions
        if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (batch,):
            raise ValueError(f"{name}: labels must be a tensor [B={batch}]")
        if bool((labels < 0).any()) or bool((labels >= self.num_classes).any()):
            raise ValueError(f"{name}: labels must be in 0..{self.num_classes - 1}")
        return labels, dimensions

    def head(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores [B, C + D], embedding h)`` from :meth:`encode`'s pooled statistics ``h [B, 2D]``: the SER head's
        classifier (the released MLP; its logits alone for a categorical model), then its regressor
        (``ser_fast.models.targets``)."""
        return self._ser_head.scores(h), h

    def _output(self, scores: torch.Tensor, mask: torch.Tensor, noisy_log_mag: torch.Tensor,
                stft_padding: torch.Tensor, aux: MoEAux | None, ssl_padding: torch.Tensor) -> MeritOutput:
        logits, dimensions = split_scores(scores, self.num_classes)
        return MeritOutput(logits, mask, noisy_log_mag, mask * noisy_log_mag, stft_padding, aux, ssl_padding,
                           dimensions)

    def _set_target(self, target: str) -> str:
        self.target = check_target(target)
        self.num_classes = self.config.num_classes if has_classes(self.target) else 0
        return self.target

    @torch.no_grad()
    def enhance(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Enhanced waveforms ``[B, samples]`` (the noisy phase, the input's length; eval mode)."""
        return enhance(wave, self(wave, lengths).se_mask, self.spectrogram)


class MeritHeads(nn.Module):
    """Everything of Sparse MERIT after the SSL model: the expert pool with its two routers, the SER head (of
    ``target``'s heads) and the SE head, on SSL features ``[B, T, input_dim]``. Separate so that features computed once
    (a frozen backbone) can be trained on directly, and benchmarked without the backbone."""

    def __init__(self, input_dim: int, config: MeritConfig, target: str = "categorical"):
        super().__init__()
        self.experts = ExpertPool(input_dim, num_experts=config.num_experts, hidden_dim=config.expert_hidden,
                                  output_dim=config.expert_dim, top_k=config.top_k, design=config.design)
        self.ser_head = SERHead(config.expert_dim, config.num_classes, hidden=config.ser_hidden, dropout=config.dropout,
                                target=check_target(target))
        self.se_head = SEHead(config.expert_dim, hidden=config.se_hidden)

    def forward(self, features: torch.Tensor, ssl_padding: torch.Tensor, noisy_log_mag: torch.Tensor,
                stft_padding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MoEAux]:
        """SSL features and their padding ``[B, T]``, the noisy log1p magnitude ``[B, F, T_stft]`` and its padding →
        the SER head's scores ``[B, C + D]`` (class logits of a categorical model), the SE mask and the routers'
        aux."""
        batch, frames, dim = features.shape
        routed = self.experts(features.reshape(batch * frames, dim), ssl_padding.reshape(-1))
        ser_features, se_features = (y.view(batch, frames, -1) for y in routed.features)
        scores = self.ser_head(ser_features, (~ssl_padding).sum(1))
        mask = self.se_head(se_features, noisy_log_mag, (~stft_padding).sum(1))
        return scores, mask, routed.aux


class SparseMERIT(_MeritBase):
    """Joint SER + SE over SSL features with a shared pool of experts and a router per task. ``forward(wave, lengths)``
    returns a :class:`MeritOutput`; ``losses`` the objective; in eval mode ``forward(...).logits`` is emotion
    recognition (``forward(...).dimensions`` its arousal, valence and dominance with ``target`` "dimensional" or
    "both") and ``enhance`` speech enhancement.

    Choices that are ours, not the paper's: true sparse top-k dispatch and gate-scaled outputs (``design="sparse"``),
    the load-balancing loss (μ = 0.01), per-channel attentive statistics pooling scores, and a small from-scratch WavLM
    as the default backbone.
    """

    def __init__(self, config: MeritConfig | None = None, target: str = "categorical", **overrides):
        super().__init__()
        config = MeritConfig.from_dict({**(config or MeritConfig()).to_dict(), **overrides})
        if config.design == "se-preprocess":
            raise ValueError("SparseMERIT: design 'se-preprocess' is the cascade; build it with SEThenSER")
        self.config = config
        self._set_target(target)
        self.ssl = build_backbone(config)
        self.heads = MeritHeads(self.ssl.output_dim, config, target)
        self.spectrogram = Spectrogram()

    @property
    def _ser_head(self) -> SERHead:
        return self.heads.ser_head

    def encode(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The emotion path alone: SSL features, the SER router's experts, attentive statistics pooling →
        ``h [B, 2 * expert_dim]``, what :meth:`head` reads (the SE head does not run)."""
        lengths = self._check(wave, lengths)
        features, ssl_padding = self.ssl(wave, lengths)
        batch, frames, dim = features.shape
        routed = self.heads.experts(features.reshape(batch * frames, dim), ssl_padding.reshape(-1))
        ser_features = routed.features[0].view(batch, frames, -1)
        return self._ser_head.pool(ser_features, (~ssl_padding).sum(1))

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> MeritOutput:
        """``wave [B, samples]`` at 16 kHz (zero-padded past ``lengths``)."""
        lengths = self._check(wave, lengths)
        features, ssl_padding = self.ssl(wave, lengths)
        _, noisy_log_mag, stft_padding = self._spectra(wave, lengths)
        scores, mask, aux = self.heads(features, ssl_padding, noisy_log_mag, stft_padding)
        return self._output(scores, mask, noisy_log_mag, stft_padding, aux, ssl_padding)


class SEThenSER(_MeritBase):
    """The paper's SE pre-processing baseline: an SE model (its own SSL backbone and the SE head) enhances the input,
    and an SER model (a second backbone and the SER head) classifies the enhanced waveform. Both train at once with the
    same objective, but no gradient flows from the SER loss into the SE model, as when the two are trained one after the
    other."""

    def __init__(self, config: MeritConfig | None = None, target: str = "categorical", **overrides):
        super().__init__()
        config = MeritConfig.from_dict({**(config or MeritConfig(design="se-preprocess")).to_dict(), **overrides})
        self.config = config
        self._set_target(target)
        self.se_ssl = build_backbone(config)
        self.ser_ssl = build_backbone(config)
        self.spectrogram = Spectrogram()
        self.se_head = SEHead(self.se_ssl.output_dim, hidden=config.se_hidden)
        self.ser_head = SERHead(self.ser_ssl.output_dim, config.num_classes, hidden=config.ser_hidden,
                                dropout=config.dropout, target=target)

    @property
    def _ser_head(self) -> SERHead:
        return self.ser_head

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> MeritOutput:
        mask, noisy_log_mag, stft_padding, ser_features, ser_padding = self._enhanced_features(wave, lengths)
        scores = self.ser_head(ser_features, (~ser_padding).sum(1))
        return self._output(scores, mask, noisy_log_mag, stft_padding, None, ser_padding)

    def encode(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Enhance, then the SER model's SSL features and attentive statistics pooling → ``h``."""
        *_, ser_features, ser_padding = self._enhanced_features(wave, lengths)
        return self.ser_head.pool(ser_features, (~ser_padding).sum(1))

    def _enhanced_features(self, wave: torch.Tensor, lengths: torch.Tensor | None):
        """The SE model's mask on the noisy log1p magnitude, then the SER model's SSL features of the enhanced waveform:
        ``(mask, noisy_log_mag, stft_padding, ser_features, ser_padding)``."""
        lengths = self._check(wave, lengths)
        se_features, _ = self.se_ssl(wave, lengths)
        spec, noisy_log_mag, stft_padding = self._spectra(wave, lengths)
        mask = self.se_head(se_features, noisy_log_mag, (~stft_padding).sum(1))
        enhanced = self.spectrogram.inverse(torch.expm1((mask * noisy_log_mag).detach()), spec, wave.shape[-1])
        valid = torch.arange(wave.shape[-1], device=wave.device).view(1, -1) < lengths.view(-1, 1)
        ser_features, ser_padding = self.ser_ssl(enhanced * valid, lengths)
        return mask, noisy_log_mag, stft_padding, ser_features, ser_padding


def build_merit(config: MeritConfig, target: str = "categorical") -> SparseMERIT | SEThenSER:
    """The network a config describes, with the SER head of ``target`` (``ser_fast.models.targets``)."""
    return SEThenSER(config, target) if config.design == "se-preprocess" else SparseMERIT(config, target)
