"""EDRL-MEA (paper 000): the backbone, EDRL's C + 1 encoders, MEA's multiblock PLS and the classifier on the aligned
embeddings, as one ``nn.Module``.

    h = E(X)                               DSNet's acoustic encoder (encoder.py)
    ŷ_head = C_head(h)                     cross-entropy head: trains E, and predicts until aligned
    z_1..z_C = E_c(h), z_inter = E_inter(h)    EDRL blocks (edrl.py), from h.detach()
    s = MBPLS([z_1..z_C, z_inter]; Y)      MEA super scores, Y = pooled input statistics (alignment.py)
    ŷ = W (s - μ) / σ + b                  softmax classifier on clean training scores
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ser_fast.models.checks import Lengths, check_dropout, check_num_classes, is_int
from ser_fast.models.dsnet import DEFAULT_DROPOUT, EmotionClassifier
from ser_fast.models.edrl_mea.alignment import fit_softmax_classifier, input_statistics, varying_columns
from ser_fast.models.edrl_mea.edrl import CODE_DIM, InterClassEncoder, IntraClassEncoders
from ser_fast.models.encoder import EMBED_DIM, AcousticEncoder, EncoderModel, check_features, check_lengths
from ser_fast.models.losses import LossTerms, classification_loss
from ser_fast.models.mbpls import MBPLS

logger = logging.getLogger(__name__)

VARIANTS = ("full", "edrl", "mea")
DEFAULT_COMPONENTS = 16
MBPLS_PREFIX = "mea.mbpls."
_SCALE_FLOOR = 1e-12


class EDRLMEAOutputs(NamedTuple):
    """What the training objective reads per utterance: ``h [B, 256]`` and the cross-entropy head's logits."""

    h: torch.Tensor
    logits: torch.Tensor


@dataclass
class EDRLMEALosses(LossTerms):
    """What :meth:`EDRLMEA.training_losses` returns; float32 scalars and the head's ``logits``.
    ``total = l_ce + l_inter_rec + l_inter_con + l_intra``; the EDRL terms are 0 for ``variant="mea"``. ``l_intra`` is
    the sum over classes of each intra-class autoencoder's MSE on its own class's rows."""

    total: torch.Tensor
    l_ce: torch.Tensor
    l_inter_rec: torch.Tensor
    l_inter_con: torch.Tensor
    l_intra: torch.Tensor
    logits: torch.Tensor


class EDRLMEA(EncoderModel):
    """EDRL-MEA: emotion-disentangled blocks, aligned by multiblock PLS, classified by a linear softmax.

    Two stages. (1) Training, by :meth:`training_losses`: the backbone and a cross-entropy head on ``h``, with EDRL's
    encoders beside them. (2) :meth:`fit_alignment`, once, on CLEAN training data after the best epoch is chosen: MB-PLS
    on the blocks, then the softmax classifier on its super scores. ``forward(x, lengths)`` returns logits
    ``[B, num_classes]``: the aligned classifier's once :meth:`fit_alignment` has run (``is_aligned``), the
    cross-entropy head's before (so validation during training works), in train and eval mode alike.

    Args:
        num_classes: emotion classes C.
        variant: the ablations. ``"full"``: EDRL + MEA. ``"edrl"``: no MEA, the classifier reads the C + 1 codes
            concatenated. ``"mea"``: no EDRL (its encoders are not built), one X block, ``h`` of a backbone trained by
            cross-entropy only, i.e. the Baseline's encoder.
        n_components: MB-PLS components K, at most the total block width ((C + 1)·64, or 256 for ``"mea"``) and below
            the number of training utterances at fit; unused by ``"edrl"``.
        dropout: the cross-entropy head's dropout rate.

    Known from the paper's summary: an inter-class encoder shared by all classes and intra-class encoders per class; the
    embedding is the set of C + 1 block embeddings; MB-PLS aligns them with the original input, maximising covariance
    with it; the classifier is trained on embeddings of clean training samples only. Our choices (the paper's summary
    does not give them):

    - Backbone: DSNet's ``AcousticEncoder`` on log-Mel + Δ + ΔΔ ``[B, 3, T, 80]`` → ``h [B, 256]``, trained by a
      cross-entropy head (DSNet's ``EmotionClassifier``: 256 → 64 → C).
    - EDRL reads ``h.detach()``: the backbone answers to cross-entropy only. Autoencoders whose target is a trainable
      ``h`` are rewarded for shrinking it (see DSNet's note on L_r), and a detached ``h`` makes "autoencoder c sees only
      class c" exact: its rows are chosen before it runs.
    - EDRL (edrl.py): the inter-class loss is the MSE reconstruction of ``h`` (what all classes share) plus SupCon
      (τ = 0.1) on its code (discriminative); intra-class MSEs are summed over classes, so no autoencoder's gradient
      depends on the batch's other classes. All weights are 1 (``h`` detached: they compete only with each other).
    - Embedding: the C intra codes then the inter code, C + 1 blocks of 64, each scaled to unit norm per utterance
      (cosine geometry, as SupCon's). On the synthetic corpus (6 seeds) this raised far-field cross-corpus UAR from
      0.335 to 0.358 on average and test UAR from 0.458 to 0.505 over raw codes: a recording channel that scales a
      block's activation as a whole no longer moves the utterance in MB-PLS's space.
    - Ablations share the backbone: EDRL and the readout are initialised from a forked RNG and EDRL does not train the
      backbone, so with one seed the three variants train the same ``h`` and differ only in what is fitted on it.
    - MEA's Y: the paper's "original speech input" as utterance-level statistics of the static log-Mel over the valid
      frames, per mel bin: mean, standard deviation, skewness and lag-1 autocorrelation (320 columns). Mean and standard
      deviation alone would do for raw log-Mel, but ``extract_features`` normalises each utterance (mean 0, std 1 per
      bin), which leaves them constant up to round-off (except where an utterance is cut to ``max_frames``); shape and
      temporal correlation survive that normalisation. Y columns that do not vary over the training set (spread < 1e-4
      of their magnitude) are left out of the fit.
    - MB-PLS: ``method="svd"`` (exact and fast), float64, standardised columns, no block weighting (all blocks are 64
      wide); K = 16. Classifier: :func:`fit_softmax_classifier` (deterministic L-BFGS, L2 1e-2) on the super scores
      standardised by their training mean and std (``"edrl"``: on the concatenated codes). Saved as safetensors + JSON
      only (:meth:`to_saved`, :meth:`load_saved`).
    """

    def __init__(self, num_classes: int = 4, *, variant: str = "full", n_components: int = DEFAULT_COMPONENTS,
                 dropout: float = DEFAULT_DROPOUT) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        block_width = EMBED_DIM if variant == "mea" else (num_classes + 1) * CODE_DIM
        if not is_int(n_components) or not 1 <= n_components <= block_width:
            raise ValueError(f"n_components must be an int in 1..{block_width} (the total block width of variant "
                             f"{variant!r}), got {n_components!r}")
        self.num_classes = num_classes
        self.variant = variant
        self.n_components = int(n_components)
        self.encoder = AcousticEncoder()
        self.classifier = EmotionClassifier(num_classes, dropout=check_dropout(dropout))
        readout_dim = block_width if variant == "edrl" else self.n_components
        # A forked RNG: the head's dropout draws the same numbers in every variant, which train the same backbone.
        with torch.random.fork_rng(devices=[]):
            if variant != "mea":
                self.inter = InterClassEncoder()
                self.intra = IntraClassEncoders(num_classes)
            self.readout = nn.Linear(readout_dim, num_classes)
        self.register_buffer("readout_mean", torch.zeros(readout_dim))
        self.register_buffer("readout_scale", torch.ones(readout_dim))
        self.register_buffer("aligned", torch.tensor(False))
        # The buffer saves the flag; this Python bool mirrors it, so that the head's branch is no
        # data-dependent one for torch.compile and the ONNX exporter (and reading it costs no device sync).
        self._is_aligned = False
        self.register_load_state_dict_post_hook(_sync_aligned_after_load)
        self.mbpls: MBPLS | None = None

    # The encoders' losses and the readout (fitted after training) do not reach every parameter each step.
    every_parameter_trained = False
    # Saved tensors under this prefix are MB-PLS's, not the state dict's.
    extra_state_prefix = MBPLS_PREFIX

    @property
    def is_aligned(self) -> bool:
        """Whether :meth:`fit_alignment` (or :meth:`load_saved` of an aligned model) has run."""
        return self._is_aligned

    def _sync_aligned(self) -> None:
        self._is_aligned = bool(self.aligned)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        """Logits ``[B, num_classes]``: the aligned classifier once aligned, the cross-entropy head before."""
        return self.head(self.encoder(x, lengths))[0]

    def head(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, embedding)`` from ``h``: before alignment the cross-entropy head's logits and ``h``; once aligned,
        the aligned classifier's logits and what it reads, the MB-PLS super scores ``[B, K]`` (the concatenated codes
        for ``variant="edrl"``). No value-reading checks: this is what ``torch.compile`` and the ONNX exporter trace."""
        if not self.is_aligned:
            return self.classifier(h), h
        blocks = self._blocks(h)
        # MB-PLS and the classifier were fitted in float64 / float32: bf16 would undo their precision.
        with torch.autocast(h.device.type, enabled=False):
            stacked = torch.cat([b.float() for b in blocks], dim=1)
            features = stacked if self.mbpls is None else self._mbpls_on(h.device).project(stacked).float()
            return self.readout((features - self.readout_mean) / self.readout_scale), features

    def block_embeddings(self, x: torch.Tensor, lengths: Lengths = None) -> list[torch.Tensor]:
        """The X blocks of MB-PLS, each row of unit norm: C intra-class codes then the inter-class code, each
        ``[B, 64]``; for ``variant="mea"`` the one block ``h [B, 256]``."""
        return self._blocks(self.encoder(x, lengths))

    def aligned_embedding(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        """What the aligned classifier reads, before standardisation (see :meth:`head`). Needs :meth:`fit_alignment`."""
        if not self.is_aligned:
            raise RuntimeError("aligned_embedding needs a fitted alignment: call fit_alignment() first")
        blocks = self.block_embeddings(x, lengths)
        return self._project(blocks, None if self.mbpls is None else self._mbpls_on(blocks[0].device))

    def training_losses(self, x: torch.Tensor, labels: torch.Tensor, lengths: Lengths = None) -> EDRLMEALosses:
        """The training objective on a batch: ``x [B, 3, T, 80]``, integer ``labels [B]`` (B >= 2 for BatchNorm in train
        mode); see :class:`EDRLMEALosses`."""
        return self.objective(self.training_forward(x, lengths), labels)

    def training_forward(self, x: torch.Tensor, lengths: Lengths = None) -> EDRLMEAOutputs:
        """What training runs per utterance: ``h [B, 256]`` and the cross-entropy head's logits."""
        check_features(x, "x")
        h = self.encoder(x, lengths)
        return EDRLMEAOutputs(h, self.classifier(h))

    def objective(self, out: EDRLMEAOutputs, labels: torch.Tensor) -> EDRLMEALosses:
        """The training objective from :meth:`training_forward`'s ``(h, logits)`` and integer ``labels [B]``.
        Data-parallel training calls it with the whole batch's, gathered from every process, since the contrastive and
        per-class losses mix the batch's rows."""
        h, logits = out
        if not isinstance(h, torch.Tensor) or h.ndim != 2 or not isinstance(logits, torch.Tensor) \
                or h.shape[0] != logits.shape[0]:
            raise ValueError(f"h [B, {EMBED_DIM}] and logits [B, num_classes] must be tensors with the same rows, got "
                             f"{getattr(h, 'shape', h)!r:.60} and {getattr(logits, 'shape', logits)!r:.60}")
        l_ce = classification_loss(logits, labels)
        zero = torch.zeros((), dtype=torch.float32, device=l_ce.device)
        if self.variant == "mea":
            return EDRLMEALosses(l_ce, l_ce, zero, zero, zero, logits)
        target = h.detach()
        l_inter_rec, l_inter_con = self.inter.losses(target, labels)
        l_intra = self.intra.losses(target, labels).sum()
        total = l_ce + l_inter_rec + l_inter_con + l_intra
        return EDRLMEALosses(total, l_ce, l_inter_rec, l_inter_con, l_intra, logits)

    @torch.no_grad()
    def fit_alignment(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor, Lengths]]) -> EDRLMEA:
        """Fit MEA and the classifier on clean training data, replacing any previous alignment; returns self.

        ``batches`` yields ``(x [B, 3, T, 80], labels [B], lengths)`` (lengths may be None). The backbone and EDRL run
        in eval mode (restored afterwards) under the caller's autocast; MB-PLS and the classifier are fitted in float64
        with autocast off.
        """
        was_training = self.training
        self.eval()
        blocks, targets, all_labels = [], [], []
        try:
            for i, batch in enumerate(batches):
                if not isinstance(batch, (tuple, list)) or len(batch) != 3:
                    raise TypeError(f"batches[{i}] must be a tuple (x, labels, lengths), got {type(batch).__name__}")
                x, labels, lengths = batch
                check_features(x, f"batches[{i}] x")
                valid = check_lengths(lengths, x, f"batches[{i}] lengths")
                _check_labels(labels, x.shape[0], self.num_classes, f"batches[{i}] labels")
                blocks.append([b.float() for b in self.block_embeddings(x, valid)])
                if self.variant != "edrl":
                    targets.append(input_statistics(x, valid))
                all_labels.append(labels.to(x.device))
        finally:
            self.train(was_training)
        if not blocks:
            raise ValueError("batches is empty: fit_alignment needs the clean training utterances")
        stacked = [torch.cat(parts) for parts in zip(*blocks)]
        labels = torch.cat(all_labels)
        with torch.autocast(stacked[0].device.type, enabled=False):
            mbpls = None if self.variant == "edrl" else self._fit_mbpls(stacked, torch.cat(targets))
            features = self._project(stacked, mbpls)
            mean, scale = features.mean(dim=0), features.std(dim=0, correction=0).clamp_min(_SCALE_FLOOR)
            weight, bias = fit_softmax_classifier((features - mean) / scale, labels, self.num_classes)
        # Set only now, so that a fit that raises leaves the previous state (aligned or not) whole.
        self.mbpls = mbpls
        self.readout_mean.copy_(mean)
        self.readout_scale.copy_(scale)
        self.readout.weight.copy_(weight)
        self.readout.bias.copy_(bias)
        self.aligned.fill_(True)
        self._sync_aligned()
        logger.info("EDRL-MEA (%s) aligned on %d clean training utterances", self.variant, labels.shape[0])
        return self

    def clear_alignment(self) -> None:
        """Back to the cross-entropy head (e.g. before training further)."""
        self.mbpls = None
        self.aligned.fill_(False)
        self._sync_aligned()

    def to_saved(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(tensors, config)``: the state dict plus the MB-PLS tensors under ``mea.mbpls.``, ready for safetensors,
        and the JSON-ready ``{"mbpls": MBPLS.config() or None}``."""
        tensors = dict(self.state_dict())
        if self.mbpls is None:
            return tensors, {"mbpls": None}
        tensors.update({MBPLS_PREFIX + name: t for name, t in self.mbpls.to_tensors().items()})
        return tensors, {"mbpls": self.mbpls.config()}

    def load_saved(self, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None) -> EDRLMEA:
        """Load what :meth:`to_saved` gave (after a safetensors + JSON round trip); returns self."""
        if not isinstance(tensors, Mapping):
            raise TypeError(f"tensors must be a mapping of names to tensors, got {type(tensors).__name__}")
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(f"config must be the mapping to_saved() gave, or None; got {type(config).__name__}")
        mbpls_config = None if config is None else config.get("mbpls")
        state = {k: v for k, v in tensors.items() if not k.startswith(MBPLS_PREFIX)}
        mbpls_tensors = {k.removeprefix(MBPLS_PREFIX): v for k, v in tensors.items() if k.startswith(MBPLS_PREFIX)}
        self.load_state_dict(state)
        self.mbpls = None
        if mbpls_config is not None:
            self.mbpls = MBPLS.from_tensors(mbpls_tensors, mbpls_config).to(self.readout.weight.device)
        elif mbpls_tensors:
            raise ValueError(f"tensors hold MB-PLS tensors ({MBPLS_PREFIX}*) but config has no MB-PLS config")
        needs_mbpls = self.is_aligned and self.variant != "edrl"
        if needs_mbpls and self.mbpls is None:
            raise ValueError(f"the saved EDRL-MEA ({self.variant}) is aligned but its MB-PLS is missing: expected "
                             f"{MBPLS_PREFIX}* tensors and config['mbpls']")
        if self.mbpls is not None and self.mbpls.n_components != self.n_components:
            raise ValueError(f"the saved MB-PLS has {self.mbpls.n_components} components, this model "
                             f"{self.n_components}: build it with the saved n_components")
        return self

    def _blocks(self, h: torch.Tensor) -> list[torch.Tensor]:
        blocks = [h] if self.variant == "mea" else [*self.intra(h), self.inter(h)]
        # Unit-norm rows: a channel that scales a block's activation as a whole does not move its direction.
        return [F.normalize(block, dim=1) for block in blocks]

    def _fit_mbpls(self, blocks: list[torch.Tensor], targets: torch.Tensor) -> MBPLS:
        keep = varying_columns(targets)
        if not bool(keep.any()):
            raise ValueError("the input statistics Y do not vary over the training utterances: MEA has nothing "
                             "to align with")
        logger.info("MEA: Y keeps %d of %d input statistics (the rest are constant)", int(keep.sum()), keep.numel())
        model = MBPLS(self.n_components, method="svd", dtype=torch.float64)
        return model.fit(blocks, targets[:, keep])

    def _mbpls_on(self, device: torch.device) -> MBPLS:
        """MB-PLS is no module (its tensors are float64, fitted after training): it follows the input's device."""
        if self.mbpls.device != device:
            self.mbpls.to(device)
        return self.mbpls

    @staticmethod
    def _project(blocks: list[torch.Tensor], mbpls: MBPLS | None) -> torch.Tensor:
        """The classifier's input: MB-PLS super scores, or the concatenated blocks (``"edrl"`` has no MB-PLS)."""
        floats = [b.float() for b in blocks]
        return torch.cat(floats, dim=1) if mbpls is None else mbpls.transform(floats).float()


def _check_labels(labels: object, batch: int, num_classes: int, name: str) -> None:
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor [B] of class indices")
    if tuple(labels.shape) != (batch,):
        raise ValueError(f"{name} must have shape [B] = [{batch}], got {tuple(labels.shape)}")
    if bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(f"{name} must be class indices in 0..{num_classes - 1}, got {labels.unique().tolist()}")


def _sync_aligned_after_load(module: EDRLMEA, incompatible_keys) -> None:
    """load_state_dict's post hook: a module-level function, so that the model still pickles."""
    module._sync_aligned()
