"""Self-supervised speech front-end of Sparse MERIT: every hidden state of a WavLM / wav2vec 2.0 / HuBERT model, each
through its own LayerNorm, concatenated (or softmax-weighted) per 20 ms frame. ``transformers`` is an optional
dependency (``pip install "ser_fast[ssl]"``); it is imported only when a backbone is loaded or built.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ser_fast.frontend.module import normalize_valid
from ser_fast.models.checks import Lengths, as_lengths, check_bools, is_int
from ser_fast.models.merit.log_mel_wavlm import FRONTEND_KEY, FRONTEND_NAME, LOG_MEL_CONV, log_mel_wavlm_class

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = frozenset({"wavlm", "wav2vec2", "hubert"})
COMBINE_MODES = ("concat", "weighted")
# The constructor's settings, as config_dict() saves them beside the backbone's description.
SETTINGS = ("combine", "freeze_feature_encoder", "freeze", "normalize_waveform")
# Wav2Vec2FeatureExtractor's zero-mean unit-variance normalisation adds this to the variance.
NORMALIZE_EPS = 1e-7

# The small waveform WavLM (``SSLFeatures.default(frontend="waveform")``): WavLM-Large's layout (layer-norm CNN,
# pre-LN transformer) shrunk to run on a CPU. The CNN keeps WavLM's kernels and strides (20 ms frames, 400-sample
# receptive field) but widens 32 → 64 → 128 instead of a flat 512: the early layers run at 3.2 and 1.6 kHz, where
# every channel is expensive (a flat 7 × 128 CNN costs about 3× as much CPU time).
WAVEFORM_BACKBONE_CONFIG: dict[str, Any] = {
    "hidden_size": 192,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 768,
    "conv_dim": (32, 64, 128, 128, 128, 128, 128),
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "conv_bias": True,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    # SpecAugment's time masks (at least 2 × 10 frames) would hide most of a short training crop, and a
    # network learning from scratch needs every frame; pretrained backbones keep their own setting.
    "apply_spec_augment": False,
}
# The built-in default (``frontend="log-mel"``): the same transformer on log-Mel + Δ + ΔΔ (log_mel_wavlm.py).
# conv_dim[-1] is the width of the strided log-Mel convolution; "layer" makes SSLFeatures pass the sample mask.
LOG_MEL_BACKBONE_CONFIG: dict[str, Any] = {
    **WAVEFORM_BACKBONE_CONFIG, "conv_dim": (192,), **LOG_MEL_CONV, FRONTEND_KEY: FRONTEND_NAME,
}
FRONTENDS = {"log-mel": LOG_MEL_BACKBONE_CONFIG, "waveform": WAVEFORM_BACKBONE_CONFIG}


def _import_transformers():
    try:
        import transformers
    except ImportError as error:
        raise ImportError('SSLFeatures needs Hugging Face transformers: pip install "ser_fast[ssl]" '
                          "(or pip install transformers)") from error
    return transformers


def _download_hint(path: object) -> str:
    return ("pretrained SSL weights must be downloaded beforehand (nothing is fetched at run time), e.g. "
            f"`huggingface-cli download microsoft/wavlm-large --local-dir {path}`")


class SSLFeatures(nn.Module):
    """Frame features from a self-supervised speech model: ``waveform [B, S]`` (16 kHz) → ``features [B, T, D_out]``,
    ``frame_mask [B, T]`` (True = padding), T = 50 frames per second.

    The ``L + 1`` hidden states (the transformer's input, i.e. the CNN features projected to H with the convolutional
    position embedding added, then the output of each of the L layers) each pass through their own ``nn.LayerNorm(H)``;
    ``combine="concat"`` concatenates them per frame (``D_out = (L+1)·H``, 25 × 1024 = 25,600 for WavLM-Large, the
    released Sparse MERIT system), ``combine="weighted"`` takes a learned softmax-weighted sum (``D_out = H``). The last
    state is the model's ``last_hidden_state``: for pre-LN ("stable layer norm") models it has the encoder's final
    LayerNorm applied, as in transformers 4.x's ``hidden_states`` (5.x records the last layer's raw output instead).

    Real use needs pretrained weights, never downloaded here: fetch e.g. WavLM-Large once
    (``huggingface-cli download microsoft/wavlm-large --local-dir DIR``), then ``SSLFeatures.from_pretrained(DIR)``;
    wav2vec 2.0 and HuBERT directories load the same way. ``SSLFeatures.default()`` builds, without any weights, a small
    randomly initialised WavLM transformer (H = 192, 4 layers, 4 heads, FFN 768; 2.3 M parameters, ``D_out`` = 960 with
    concat) to be trained from scratch with the task, on log-Mel + Δ + ΔΔ (``frontend="log-mel"``, the default:
    log_mel_wavlm.py says why) or on WavLM's waveform CNN (``frontend="waveform"``). Either is a stand-in so that the
    pipeline trains and tests end to end without downloads, not WavLM-Large's accuracy. ``SSLFeatures(model)`` wraps an
    in-memory base model (``AutoModel``, not a task head such as ``ForCTC``).

    Training behaviour:
    * ``freeze_feature_encoder=True`` freezes the CNN feature encoder (the paper's setting for WavLM-Large).
    * ``freeze=True`` freezes the whole SSL model: its parameters get no gradient, it runs under ``torch.no_grad`` and
      it stays in eval mode (no dropout or SpecAugment on fixed features). The LayerNorms and the weighting logits
      remain trainable.
    * Otherwise, in training mode, the model's own config decides dropout and SpecAugment (``mask_time_prob``).
      LayerDrop is switched off (``config.layerdrop = 0``) because a dropped layer would remove a hidden state and
      change ``D_out``.

    Padding: with ``lengths``, models whose ``config.feat_extract_norm == "layer"`` get an attention mask, so each
    utterance's features equal those of the utterance alone. Group-norm models (wav2vec2-base style) were trained
    without one; as Hugging Face advises, they get no attention mask and the padding samples are zeroed instead.
    Features at padded frames are set to 0.

    ``normalize_waveform=True`` standardises each utterance over its valid samples (zero mean, unit variance) as
    ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does.
    """

    sample_rate = 16000

    def __init__(self, model: nn.Module, *, combine: str = "concat", freeze_feature_encoder: bool = True,
                 freeze: bool = False, normalize_waveform: bool = False) -> None:
        super().__init__()
        _check_backbone(model)
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
        check_bools(freeze_feature_encoder=freeze_feature_encoder, freeze=freeze, normalize_waveform=normalize_waveform)
        config = model.config
        if getattr(config, "layerdrop", 0.0):
            logger.info("SSLFeatures: setting layerdrop %s -> 0 so every hidden state is always present",
                        config.layerdrop)
            config.layerdrop = 0.0

        self.backbone = model
        self.combine = combine
        self.freeze_feature_encoder = freeze_feature_encoder
        self.freeze = freeze
        self.normalize_waveform = normalize_waveform
        self.state_norms = nn.ModuleList(nn.LayerNorm(self.hidden_size) for _ in range(self.num_states))
        # Zero logits: the weighted sum starts as the plain mean of the normalised states.
        self.state_logits = nn.Parameter(torch.zeros(self.num_states)) if combine == "weighted" else None

        if freeze_feature_encoder or freeze:
            # _freeze_parameters also stops the encoder forcing requires_grad on its output in training mode.
            model.feature_extractor._freeze_parameters()
        if freeze:
            model.requires_grad_(False)
            model.eval()
        # How config_dict() describes the backbone; _described() overwrites it.
        self._source: dict[str, Any] = {"source": "config", "seed": 0}

    @classmethod
    def _described(cls, model: nn.Module, source: dict[str, Any], **settings: Any) -> SSLFeatures:
        """``cls(model, **settings)``, which config_dict() describes by ``source``."""
        features = cls(model, **settings)
        features._source = source
        return features

    @classmethod
    def from_pretrained(cls, path: str | Path, *, combine: str = "concat", freeze_feature_encoder: bool = True,
                        freeze: bool = False, normalize_waveform: bool | None = None) -> SSLFeatures:
        """Loads a WavLM, wav2vec 2.0 or HuBERT model from a local Hugging Face directory (never the network), as
        float32. ``normalize_waveform=None`` reads ``do_normalize`` from the directory's ``preprocessor_config.json``
        (False when the file is absent)."""
        if not isinstance(path, (str, Path)):
            raise TypeError(f"path must be a str or Path to a local model directory, got {type(path).__name__}")
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"SSL model directory {str(path)!r} does not exist; {_download_hint(path)}")
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"SSL model directory {str(path)!r} has no config.json, so it is not a "
                                    f"Hugging Face model directory; {_download_hint(path)}")
        if normalize_waveform is None:
            extractor = directory / "preprocessor_config.json"
            normalize_waveform = extractor.is_file() and bool(json.loads(extractor.read_text()).get("do_normalize"))
        transformers = _import_transformers()
        config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
        _check_model_type(config.model_type, where=str(path))
        model = transformers.AutoModel.from_pretrained(directory, config=config, local_files_only=True)
        # Checkpoints may be stored in half precision; the LayerNorms and the task train in float32.
        return cls._described(model.float(), {"source": "pretrained", "path": str(path)}, combine=combine,
                              freeze_feature_encoder=freeze_feature_encoder, freeze=freeze,
                              normalize_waveform=normalize_waveform)

    @classmethod
    def default(cls, *, combine: str = "concat", freeze_feature_encoder: bool = False, freeze: bool = False,
                normalize_waveform: bool = True, seed: int = 0, frontend: str = "log-mel",
                **config_overrides: Any) -> SSLFeatures:
        """The built-in backbone (see the class docstring), seeded random initialisation, to be trained from scratch;
        any WavLMConfig key can be overridden. ``freeze_feature_encoder`` defaults to False here: a randomly initialised
        front-end that is never trained is a fixed random projection, so it must learn with the task.
        ``normalize_waveform`` defaults to True so that training does not depend on the input's scale (int16-range or
        [-1, 1] floats).
        """
        if frontend not in FRONTENDS:
            raise ValueError(f"frontend {frontend!r}: expected one of {sorted(FRONTENDS)}")
        transformers = _import_transformers()
        defaults = transformers.WavLMConfig()
        unknown = sorted(key for key in config_overrides if not hasattr(defaults, key))
        if unknown:
            raise ValueError(f"unknown WavLMConfig field(s) {unknown}; see transformers.WavLMConfig")
        config = transformers.WavLMConfig(**{**FRONTENDS[frontend], **config_overrides})
        return cls._described(_build_seeded(transformers, config, seed), {"source": "config", "seed": seed},
                              combine=combine, freeze_feature_encoder=freeze_feature_encoder, freeze=freeze,
                              normalize_waveform=normalize_waveform)

    def config_dict(self) -> dict[str, Any]:
        """A JSON-able description that ``from_config_dict`` turns back into the same architecture: a pretrained
        backbone by its directory path (which must still exist when rebuilt), any other by its full config (random init;
        load the saved ``state_dict`` afterwards)."""
        settings = {key: getattr(self, key) for key in SETTINGS}
        if self._source["source"] == "pretrained":
            return {**self._source, **settings}
        return {**self._source, "model_config": self.backbone.config.to_dict(), **settings}

    @classmethod
    def from_config_dict(cls, description: dict[str, Any]) -> SSLFeatures:
        """Rebuilds from ``config_dict()``'s output; for a config-described backbone the weights are random (seeded)
        until a ``state_dict`` is loaded."""
        if not isinstance(description, dict):
            raise TypeError("description must be a dict from SSLFeatures.config_dict(), "
                            f"got {type(description).__name__}")
        missing = [key for key in ("source", *SETTINGS) if key not in description]
        if missing:
            raise ValueError(f"description is missing {missing}; expected the output of SSLFeatures.config_dict()")
        settings = {key: description[key] for key in SETTINGS}
        source = description["source"]
        if source == "pretrained":
            return cls.from_pretrained(description["path"], **settings)
        if source != "config":
            raise ValueError(f"description['source'] must be 'pretrained' or 'config', got {source!r}")
        transformers = _import_transformers()
        model_config = dict(description["model_config"])
        model_type = model_config.pop("model_type", None)
        _check_model_type(model_type, where="description['model_config']")
        config = transformers.AutoConfig.for_model(model_type, **model_config)
        seed = int(description.get("seed", 0))
        return cls._described(_build_seeded(transformers, config, seed), {"source": "config", "seed": seed}, **settings)

    @property
    def num_states(self) -> int:
        """Hidden states combined: the transformer's input plus one per layer (25 for WavLM-Large)."""
        return int(self.backbone.config.num_hidden_layers) + 1

    @property
    def hidden_size(self) -> int:
        """H, the width of each hidden state (1024 for WavLM-Large)."""
        return int(self.backbone.config.hidden_size)

    @property
    def output_dim(self) -> int:
        """``D_out``: ``num_states · hidden_size`` for concat, ``hidden_size`` for weighted."""
        return self.num_states * self.hidden_size if self.combine == "concat" else self.hidden_size

    @property
    def frame_rate(self) -> float:
        """Frames per second (50 for the usual 320-sample total CNN stride at 16 kHz)."""
        return self.sample_rate / math.prod(self.backbone.config.conv_stride)

    @property
    def min_samples(self) -> int:
        """The fewest samples that give one frame (400, the CNN's receptive field, for the usual CNN)."""
        needed = 1
        for kernel, stride in zip(
            reversed(self.backbone.config.conv_kernel), reversed(self.backbone.config.conv_stride)
        ):
            needed = (needed - 1) * stride + kernel
        return needed

    def state_weights(self) -> torch.Tensor | None:
        """The softmax weights over the states for ``combine="weighted"``, else None."""
        return None if self.state_logits is None else torch.softmax(self.state_logits, dim=0)

    def train(self, mode: bool = True) -> SSLFeatures:
        super().train(mode)
        if self.freeze:
            self.backbone.eval()
        return self

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames for utterances of ``sample_lengths`` samples (the model's own CNN length formula)."""
        return self.backbone._get_feat_extract_output_lengths(sample_lengths).to(torch.int64)

    def forward(self, waveform: torch.Tensor, lengths: Lengths = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``waveform [B, S]`` float, 16 kHz; ``lengths [B]`` valid samples per utterance (None: all S) →
        ``(features [B, T, output_dim], frame_mask [B, T] bool, True = padding)``."""
        waveform = self._check_waveform(waveform)
        lengths = self._check_lengths(lengths, waveform)
        batch, samples = waveform.shape
        # A traced graph (torch.export, torch.compile) cannot branch on values: there the masks are always on (the
        # same features when nothing is padded).
        padded = lengths is not None and (torch.compiler.is_compiling() or bool((lengths < samples).any()))
        sample_mask = torch.arange(samples, device=waveform.device) < lengths[:, None] if padded else None
        if self.normalize_waveform:
            waveform = normalize_valid(waveform, lengths if padded else None, dim=1, eps=NORMALIZE_EPS)

        attention_mask = None
        if padded and self.backbone.config.feat_extract_norm == "layer":
            attention_mask = sample_mask.long()
        elif padded:
            waveform = waveform.masked_fill(~sample_mask, 0.0)

        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            output = self.backbone(waveform, attention_mask=attention_mask, output_hidden_states=True)
        states = (*output.hidden_states[:-1], output.last_hidden_state)
        if len(states) != self.num_states:
            raise RuntimeError(f"the SSL model returned {len(states)} hidden states, expected {self.num_states}")

        frames = states[0].shape[1]
        if lengths is None:
            frame_mask = torch.zeros(batch, frames, dtype=torch.bool, device=waveform.device)
        else:
            frame_mask = torch.arange(frames, device=waveform.device) >= self.frame_lengths(lengths)[:, None]

        normalized = [norm(state) for norm, state in zip(self.state_norms, states)]
        if self.state_logits is None:
            features = torch.cat(normalized, dim=-1)
        else:
            weights = self.state_weights().to(normalized[0].dtype)
            features = torch.einsum("s,sbtd->btd", weights, torch.stack(normalized))
        if padded:
            features = features.masked_fill(frame_mask[..., None], 0.0)
        return features, frame_mask

    def _check_waveform(self, waveform: object) -> torch.Tensor:
        if not isinstance(waveform, torch.Tensor):
            raise TypeError(f"waveform must be a torch.Tensor [B, S], got {type(waveform).__name__}")
        if waveform.dim() != 2:
            raise ValueError("waveform must be 2-D [B, S] (batch, samples at 16 kHz), "
                             f"got shape {tuple(waveform.shape)}")
        if not waveform.is_floating_point():
            raise TypeError(f"waveform must be a floating-point tensor (16 kHz samples), got dtype {waveform.dtype}")
        if waveform.shape[0] == 0:
            raise ValueError("waveform has an empty batch")
        if waveform.shape[1] < self.min_samples:
            raise ValueError(f"waveform has {waveform.shape[1]} samples; the SSL model needs at least "
                             f"{self.min_samples} ({self.min_samples / self.sample_rate * 1000:.0f} ms at 16 kHz) "
                             "for one frame")
        return waveform.to(next(self.backbone.parameters()).dtype)

    def _check_lengths(self, lengths: Lengths, waveform: torch.Tensor) -> torch.Tensor | None:
        lengths = as_lengths(lengths, *waveform.shape, "lengths", unit="samples", symbol="S", device=waveform.device)
        if lengths is None or torch.compiler.is_compiling():
            return lengths
        too_short = lengths < self.min_samples
        if bool(too_short.any()):
            i = int(too_short.nonzero()[0, 0])
            raise ValueError(f"lengths[{i}] is {int(lengths[i])} samples; the SSL model needs at least "
                             f"{self.min_samples} for one frame")
        return lengths


def _check_backbone(model: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a transformers WavLM / wav2vec 2.0 / HuBERT model, got {type(model).__name__}")
    config = getattr(model, "config", None)
    _check_model_type(getattr(config, "model_type", None), where=type(model).__name__)
    if not (hasattr(model, "feature_extractor") and hasattr(model, "_get_feat_extract_output_lengths")):
        raise TypeError("model must be the base model (transformers.AutoModel, e.g. WavLMModel), "
                        f"not {type(model).__name__}; for a task model pass its base, e.g. model.wavlm")
    if getattr(config, "add_adapter", False):
        raise ValueError("SSL models with an adapter (config.add_adapter=True) are not supported: it changes "
                         "the frame rate")


def _check_model_type(model_type: object, *, where: str) -> None:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{where}: model_type {model_type!r} is not supported; "
                         f"expected one of {sorted(SUPPORTED_MODEL_TYPES)}")


def _build_seeded(transformers, config, seed: int) -> nn.Module:
    if not is_int(seed):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    # A private RNG stream: building the backbone must not move the caller's global seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if getattr(config, FRONTEND_KEY, None) == FRONTEND_NAME:
            return log_mel_wavlm_class(transformers)(config)
        return transformers.AutoModel.from_config(config)

