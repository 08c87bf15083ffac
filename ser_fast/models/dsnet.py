"""DSNet (Disentangled Siamese Network with neutral calibration) and its Baseline, Section 3.

    h = E(X)                     acoustic encoder (encoder.py)
    z_er = P_er(h), z_ei = P_ei(h)   projectors, one attention block each (eqs. 1–3)
    ĥ = R([z_er; z_ei])          restorer (eq. 5)
    ŷ = C(z_er)                  classifier (softmax inside the loss)
    ŝ = R_d(z_er)                regressor of arousal, valence, dominance (``target`` "dimensional" or "both")
    h_n = E(X^n)                 the same encoder on a neutral utterance of the same speaker
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ser_fast.models.checks import Lengths, check_bools, check_dropout, check_num_classes
from ser_fast.models.encoder import EMBED_DIM, AcousticEncoder, EncoderModel, check_features, check_lengths
from ser_fast.models.losses import (
    BaselineLosses,
    DSNetLosses,
    calibration_loss,
    check_calibration,
    check_loss_weight,
    orthogonality_penalty,
    reconstruction_loss,
    weighted_total,
)
from ser_fast.models.targets import (
    DimensionalHead,
    Targets,
    has_classes,
    has_dimensions,
    joint_loss,
    split_scores,
    target_losses,
    target_scores,
)

GATE_DIM = 64
CLASSIFIER_DIM = 64
# The paper's classifier has a Dropout of unstated rate. Its hidden layer has only 64 units, so
# 0.5 would silence half of a narrow bottleneck; 0.3 regularises without starving it.
DEFAULT_DROPOUT = 0.3


class AttentionBlock(nn.Module):
    """A projector P(·) (Table 1: one block each for P_er and P_ei)::

        a = σ(FC(δ(FC(h; θ1)); θ2))      eq. 1, 256 → 64 → 256
        z = FC(a ∘ h + h; θ3)            eq. 2 without its outer δ (ReLU), 256 → 256

    The paper's eq. 2 ends in a ReLU (``output_relu=True``). h is non-negative (it pools ReLU maps) and at
    initialisation varies little across utterances (spread over a batch 0.003 against 0.17 across features), so each
    output unit has one sign for every utterance and half of them are 0 for all (48 % of z_er's and 50 % of z_ei's
    features at initialisation). A unit dead on every input gets no gradient again, and the z-scored L_o counts it as
    uncorrelated with everything: L_o drives the rest to die too (issue 17: 100 % of z_ei and 55 % of z_er dead after
    12 epochs). Without the outer ReLU no feature was dead at any epoch (README, "DSNet's subspaces").
    """

    def __init__(self, dim: int = EMBED_DIM, gate_dim: int = GATE_DIM, *, output_relu: bool = False) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, gate_dim), nn.ReLU(), nn.Linear(gate_dim, dim), nn.Sigmoid())
        # A Sequential either way: the weights keep the names "project.0.*" in every model file.
        self.project = nn.Sequential(nn.Linear(dim, dim), *([nn.ReLU()] if output_relu else []))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.gate(h)
        return self.project(a * h + h)


class Restorer(nn.Module):
    """R(·), eq. 5: ĥ = R(Concat[z_er; z_ei]) with Linear(512,256)+ReLU+Linear(256,256). The paper prints Concat[z_er;
    z_er]; concatenating one vector with itself would leave z_ei out of the reconstruction it exists to constrain, so
    that is read as a typo."""

    def __init__(self, dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, z_er: torch.Tensor, z_ei: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z_er, z_ei], dim=1))


class EmotionClassifier(nn.Module):
    """C(·): Linear(256,64)+BN+ReLU+Dropout, Linear(64,K) → logits (Table 1's softmax is in L_t)."""

    def __init__(self, num_classes: int, dim: int = EMBED_DIM, dropout: float = DEFAULT_DROPOUT) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, CLASSIFIER_DIM),
            nn.BatchNorm1d(CLASSIFIER_DIM),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(CLASSIFIER_DIM, num_classes),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class TargetHeads:
    """The output heads of an encoder model, by its ``target`` (``ser_fast.models.targets``): the classifier C
    (``self.classifier``, None for a dimensional model) and the regressor R_d (``self.regressor``, None for a
    categorical one), both on the same utterance vector."""

    def _build_heads(self, target: str, num_classes: int, dropout: float) -> None:
        self.target = target
        self.num_classes = check_num_classes(num_classes) if has_classes(target) else 0
        self.classifier = EmotionClassifier(self.num_classes, dropout=check_dropout(dropout)) \
            if has_classes(target) else None
        self.regressor = DimensionalHead(EMBED_DIM) if has_dimensions(target) else None

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, C + D]``: the logits of C(z), then R_d(z) (``ser_fast.models.targets``)."""
        return target_scores(z, self.classifier, self.regressor)

    def logits_of(self, scores: torch.Tensor) -> torch.Tensor | None:
        """The class logits of :meth:`scores`' output (None for a dimensional model)."""
        return split_scores(scores, self.num_classes)[0]


class Baseline(TargetHeads, EncoderModel):
    """Table 2's baseline: the encoder and the classifier on h, no disentanglement.

    ``forward(x [B, 3, T, 80], lengths=None) -> logits [B, num_classes]``; lengths as in
    :class:`~ser_fast.models.encoder.AcousticEncoder`. 1.21 M parameters, 1.98 G MACs at 600×80 (Table 3: 1.23 M /
    1.98 G). With ``target`` "dimensional" or "both" the regressor R_d reads h too, and ``forward`` gives the scores
    ``[B, C + 3]`` of ``ser_fast.models.targets`` (C = 0 for "dimensional"; ``num_classes`` is then ignored).
    """

    every_parameter_trained = True  # each step's loss reaches every parameter (DDP needs no unused-parameter search)

    def __init__(self, num_classes: int = 4, *, dropout: float = DEFAULT_DROPOUT, target: str = "categorical") -> None:
        super().__init__()
        self.encoder = AcousticEncoder()
        self._build_heads(target, num_classes, dropout)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        return self.scores(self.encoder(x, lengths))

    def head(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores [B, C + D], embedding h)`` from ``h`` (the logits alone for a categorical model)."""
        return self.scores(h), h

    def training_forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        """What training runs per utterance: the scores."""
        return self(x, lengths)

    def objective(self, scores: torch.Tensor, labels: torch.Tensor | Targets) -> BaselineLosses:
        """L_t (+ L_d) on :meth:`training_forward`'s scores (of the whole batch, under data-parallel training);
        ``labels``: the class indices, or :class:`~ser_fast.models.targets.Targets` with a dimensional head."""
        l_t, l_d = target_losses(scores.float(), labels, self.num_classes)
        return BaselineLosses(joint_loss(l_t, l_d), l_t, self.logits_of(scores), l_d)


class DSNetEmbeddings(NamedTuple):
    """The three utterance vectors of the paper's Fig. 3, each ``[B, 256]``."""

    h: torch.Tensor
    z_er: torch.Tensor
    z_ei: torch.Tensor


class DSNetOutputs(NamedTuple):
    """Everything the training objective reads; a field a disabled loss does not need is None. ``scores``: the heads'
    outputs on z_er, the logits of a categorical DSNet (``ser_fast.models.targets``)."""

    h: torch.Tensor
    z_er: torch.Tensor
    z_ei: torch.Tensor | None
    h_hat: torch.Tensor | None
    h_neutral: torch.Tensor | None
    scores: torch.Tensor


class DSNet(TargetHeads, EncoderModel):
    """DSNet: ``L = L_t + α L_o + β L_r + γ L_c`` (eq. 10), α = β = γ = 1 in the paper.

    Inference (``forward``) is encoder → P_er → classifier, in train and eval mode alike: 1.31 M parameters, 1.98 G MACs
    at 600×80 (Table 3: 1.33 M / 1.98 G). Training (``training_losses``) also runs P_ei, the restorer and the encoder
    again on the neutral reference, with shared weights and gradients through both passes: 1.60 M / 3.96 G (Table 3:
    1.63 M / 3.95 G).

    Args:
        num_classes: emotion classes (4: neutral, happy, sad, angry).
        alpha, beta, gamma: weights of L_o, L_r, L_c (finite, >= 0).
        use_orthogonality, use_reconstruction, use_calibration: Table 4's ablation switches; a disabled term is reported
            as 0 and the modules only it needs are not run (P_ei when no term uses z_ei, the restorer, the neutral
            pass). Every module is built regardless, so checkpoints of all variants have the same keys.
        dropout: the classifier's dropout rate (the paper does not give one).
        detach_reconstruction_target: stop L_r's gradient into h (see below); False, as in the paper.
        projector_relu: end each projector in eq. 2's ReLU, as the paper does. Off by default: with it both
            subspaces die (:class:`AttentionBlock`).
        calibration: how L_c turns z_ei and h_n into distributions, "standardized" (default) or "softmax" (the
            softmax of the raw features; :func:`~ser_fast.models.losses.calibration_loss`).
        target: "categorical" (the paper's), "dimensional" (the regressor R_d on z_er, trained with the CCC loss L_d
            in L_t's place; ``num_classes`` ignored) or "both" (L_t + L_d); ``ser_fast.models.targets``.

    Choices the paper leaves open (the reasons are in ``encoder.py`` and ``losses.py``):
        - Encoder residual connection and attention scorer: parameter and MAC counts within 2% of Table 3.
        - L_o is the mean squared correlation ``||Z_erᵀ Z_ei||_F² / (N² D²)`` (N >= 2), L_r the per-feature MSE, L_c the
          batch mean of ``½(KL(p‖q) + KL(q‖p))`` between the feature softmaxes of the standardised z_ei and h_n, L_t
          the batch-mean cross-entropy.
        - h is not detached from L_r by default, as the paper optimises all modules jointly; with
          ``detach_reconstruction_target=True`` only the projectors and restorer answer to L_r.
        - The projectors end without eq. 2's ReLU and L_c compares standardised vectors, so that neither subspace can
          satisfy the losses by going dead or constant (issue 17; the measurements are in the README). Model files
          written before this choice load as they were trained (``projector_relu=True``, ``calibration="softmax"``).
    """

    def __init__(self, num_classes: int = 4, alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0,
                 use_orthogonality: bool = True, use_reconstruction: bool = True, use_calibration: bool = True, *,
                 dropout: float = DEFAULT_DROPOUT, detach_reconstruction_target: bool = False,
                 projector_relu: bool = False, calibration: str = "standardized", target: str = "categorical") -> None:
        super().__init__()
        self.alpha = check_loss_weight(alpha, "alpha")
        self.beta = check_loss_weight(beta, "beta")
        self.gamma = check_loss_weight(gamma, "gamma")
        check_bools(use_orthogonality=use_orthogonality, use_reconstruction=use_reconstruction,
                    use_calibration=use_calibration, detach_reconstruction_target=detach_reconstruction_target,
                    projector_relu=projector_relu)
        self.calibration = check_calibration(calibration)
        self.use_orthogonality = use_orthogonality
        self.use_reconstruction = use_reconstruction
        self.use_calibration = use_calibration
        self.detach_reconstruction_target = detach_reconstruction_target
        self.encoder = AcousticEncoder()
        self.p_er = AttentionBlock(output_relu=projector_relu)
        self.p_ei = AttentionBlock(output_relu=projector_relu)
        self.restorer = Restorer()
        self._build_heads(target, num_classes, dropout)

    # L_c compares z_ei with the embedding of a neutral utterance of the same speaker.
    uses_neutral_reference = True

    @property
    def trains_z_ei(self) -> bool:
        """Whether any loss reads z_ei (an ablation with all three off never trains P_ei)."""
        return self.use_orthogonality or self.use_reconstruction or self.use_calibration

    @property
    def every_parameter_trained(self) -> bool:
        """Whether each step's loss reaches every parameter: not an ablated DSNet's."""
        return self.use_orthogonality and self.use_reconstruction and self.use_calibration

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        """Inference: ``ŷ = C(P_er(E(x)))``, logits ``[B, num_classes]`` (the scores of ``target``)."""
        return self.scores(self.p_er(self.encoder(x, lengths)))

    def head(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits = C(P_er(h)), embedding h)`` (the scores of ``target``)."""
        return self.scores(self.p_er(h)), h

    def embed(self, x: torch.Tensor, lengths: Lengths = None) -> DSNetEmbeddings:
        """``(h, z_er, z_ei)`` of each utterance, for plots of the subspaces (Fig. 3)."""
        h = self.encoder(x, lengths)
        return DSNetEmbeddings(h, self.p_er(h), self.p_ei(h))

    def training_forward(self, x: torch.Tensor, x_neutral: torch.Tensor | None = None, lengths: Lengths = None,
                         neutral_lengths: Lengths = None) -> DSNetOutputs:
        """Runs the modules the enabled losses need. ``x_neutral [B, 3, T_n, 80]`` holds, row for row, a neutral
        utterance of x's speaker (rows may repeat); it is needed only with ``use_calibration`` and ignored otherwise."""
        check_features(x, "x")
        if self.use_calibration:
            _check_neutral(x_neutral, neutral_lengths, x)
        h = self.encoder(x, lengths)
        z_er = self.p_er(h)
        z_ei = self.p_ei(h) if self.trains_z_ei else None
        h_hat = self.restorer(z_er, z_ei) if self.use_reconstruction else None
        h_neutral = self.encoder(x_neutral, neutral_lengths) if self.use_calibration else None
        return DSNetOutputs(h, z_er, z_ei, h_hat, h_neutral, self.scores(z_er))

    def training_losses(self, x: torch.Tensor, labels: torch.Tensor | Targets, x_neutral: torch.Tensor | None,
                        lengths: Lengths = None, neutral_lengths: Lengths = None) -> DSNetLosses:
        """Eq. 10 on a batch: ``x [B, 3, T, 80]``, integer ``labels [B]``, ``x_neutral`` as in :meth:`training_forward`
        (None allowed when ``use_calibration`` is off). B >= 2 when ``use_orthogonality`` is on."""
        return self.objective(self.training_forward(x, x_neutral, lengths, neutral_lengths), labels)

    def objective(self, out: DSNetOutputs, labels: torch.Tensor | Targets) -> DSNetLosses:
        """Eq. 10 from :meth:`training_forward`'s outputs and integer ``labels [B]`` (:class:`Targets` with a
        dimensional head, whose L_d joins L_t). Data-parallel training calls it with the outputs of the whole batch,
        gathered from every process, since L_o mixes the batch's rows."""
        if not isinstance(out, DSNetOutputs):
            raise TypeError(f"out must be the DSNetOutputs of training_forward, got {type(out).__name__}")
        l_t, l_d = target_losses(out.scores, labels, self.num_classes)
        l_o = orthogonality_penalty(out.z_er, out.z_ei) if self.use_orthogonality else None
        l_r = None
        if self.use_reconstruction:
            target = out.h.detach() if self.detach_reconstruction_target else out.h
            l_r = reconstruction_loss(target, out.h_hat)
        l_c = calibration_loss(out.z_ei, out.h_neutral, standardize=self.calibration == "standardized") \
            if self.use_calibration else None
        main = joint_loss(l_t, l_d)
        total = weighted_total(main, l_o, l_r, l_c, alpha=self.alpha, beta=self.beta, gamma=self.gamma)
        zero = torch.zeros((), dtype=main.dtype, device=main.device)
        l_o, l_r, l_c = (zero if term is None else term for term in (l_o, l_r, l_c))
        return DSNetLosses(total, l_t, l_o, l_r, l_c, self.logits_of(out.scores), l_d)


def _check_neutral(x_neutral: object, neutral_lengths: Lengths, x: torch.Tensor) -> None:
    if x_neutral is None:
        raise ValueError("x_neutral is None, but use_calibration is on: L_c needs a neutral utterance "
                         "[B, 3, T_n, 80] of each utterance's speaker")
    check_features(x_neutral, "x_neutral")
    if x_neutral.shape[0] != x.shape[0]:
        raise ValueError(f"x_neutral must have one neutral reference per utterance of x, i.e. B = {x.shape[0]} "
                         f"rows, got shape {tuple(x_neutral.shape)}")
    check_lengths(neutral_lengths, x_neutral, "neutral_lengths")
