"""Training Sparse MERIT (and its baselines) on noisy pairs made on the fly: AdamW with one learning
rate for the heads and one for the SSL backbone, an optional first stage with the backbone frozen
(the paper's two-step recipe), gradient accumulation to the paper's effective batch, a resumable
checkpoint per epoch and the best epoch on validation macro-F1 at the training SNR."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ser_fast.data.corpus import Corpus, Utterance
from ser_fast.data.noise import NoiseBank
from ser_fast.evaluation.metrics import ClassificationScores
from ser_fast.inference.model_files import (
    ModelFileError,
    SavedModel,
    load_weights,
    read_model_files,
    settings_error,
    write_model_files,
)
from ser_fast.models.merit.model import BUILT_IN_BACKBONES, MeritConfig, build_merit
from ser_fast.models.merit.ser_head import class_weights
from ser_fast.training.checkpoint import resume_checkpoint, save_checkpoint
from ser_fast.training.config import MAX_FRAMES
from ser_fast.training.finite import check_losses, check_weights
from ser_fast.training.noisy_pairs import SAMPLE_RATE, WaveBatch, make_batch, readable

logger = logging.getLogger(__name__)

EVAL_BATCH = 8
PRETRAINED_LR, PRETRAINED_SSL_LR = 5e-5, 2.5e-5
SCRATCH_LR = 1e-3
MAX_SECONDS = MAX_FRAMES / 100  # TrainConfig's bound on a training crop (10-ms frames), in seconds


@dataclass(frozen=True)
class MeritTrainConfig:
    """The paper's recipe where it applies: AdamW, effective batch 32 (``batch_size`` ×
    ``accumulate``), 20 epochs, training pairs at 5 dB, heads at 5e-5 and the SSL model at 2.5e-5
    for a pretrained backbone. The built-in backbone is trained from scratch, so its default
    learning rates are 1e-3 for both. ``frozen_ssl_epochs`` > 0 gives the paper's two steps (heads
    first with the SSL model frozen, then everything)."""

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

    def __post_init__(self) -> None:
        if isinstance(self.network, dict):
            object.__setattr__(self, "network", MeritConfig.from_dict(self.network))
        object.__setattr__(self, "seen_noise", tuple(self.seen_noise))
        for name in ("epochs", "batch_size", "accumulate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MeritTrainConfig: {name} must be a positive int, got {value!r}")
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
        if self.model != "merit":
            raise ValueError(f"MeritTrainConfig: model must be 'merit', got {self.model!r}")

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
        return values

    @classmethod
    def from_dict(cls, values: dict) -> MeritTrainConfig:
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"MeritTrainConfig: unknown settings {unknown}")
        return cls(**values)


def backbone_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The pretrained-model parameters of every SSL front-end in ``model`` (not their per-layer
    LayerNorms or layer weights, which are heads)."""
    from ser_fast.models.merit.ssl import SSLFeatures

    return [p for m in model.modules() if isinstance(m, SSLFeatures) for p in m.backbone.parameters()]


def _set_backbone_trainable(model: torch.nn.Module, trainable: bool, keep_frozen: set[int]) -> None:
    for p in backbone_parameters(model):
        if id(p) not in keep_frozen:
            p.requires_grad_(trainable)


@dataclass
class SERPredictions:
    """What a pass over a set gives: labels, predictions and the routers' frame counts per task."""

    labels: np.ndarray
    predictions: np.ndarray
    expert_counts: np.ndarray | None
    batches: list[tuple[WaveBatch, torch.Tensor]] = field(default_factory=list)


def predict(model: torch.nn.Module, utterances: Sequence[Utterance], classes: Sequence[str], bank: NoiseBank | None,
            kinds: Sequence[str], snr_db: float | None, *, seed: Sequence[int], keep_enhanced: bool = False,
            batch_size: int = EVAL_BATCH) -> SERPredictions:
    """Classify (and optionally enhance) every utterance, whole, mixed as ``make_batch`` mixes."""
    model.eval()
    labels, predictions, counts, kept = [], [], None, []
    with torch.no_grad():
        for start in range(0, len(utterances), batch_size):
            batch = make_batch(utterances[start:start + batch_size], classes, bank, kinds, snr_db,
                               seed=[*seed, start])
            out = model(batch.noisy, batch.lengths)
            labels.append(batch.labels.numpy())
            predictions.append(out.logits.argmax(1).numpy())
            if out.aux is not None:
                batch_counts = out.aux.expert_counts.numpy()
                counts = batch_counts if counts is None else counts + batch_counts
            if keep_enhanced:
                spec = model.spectrogram(batch.noisy)
                enhanced = model.spectrogram.inverse(torch.expm1(out.enhanced_log_mag), spec, batch.noisy.shape[-1])
                kept.append((batch, enhanced))
    return SERPredictions(np.concatenate(labels), np.concatenate(predictions), counts, kept)


def train_merit_fold(train: Sequence[Utterance], validation: Sequence[Utterance], classes: Sequence[str],
                     config: MeritTrainConfig, run_dir: Path, *, bank: NoiseBank | None = None, resume: bool = False,
                     progress: bool = False, desc: str = "merit",
                     on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train one fold into ``run_dir`` (``metrics.jsonl``, checkpoints, ``model.safetensors``,
    ``config.json``); returns the best epoch's validation scores."""
    run_dir = Path(run_dir)
    bank = bank or NoiseBank()
    unknown = sorted(set(config.seen_noise) - set(bank.types))
    if unknown:
        raise ValueError(f"seen noise types {unknown} are not in the noise bank ({bank.types})")
    train, bad_train = readable(train)
    validation, bad_val = readable(validation)
    for path, reason in bad_train + bad_val:
        logger.warning("left out of training: %s (%s)", path, reason)
    if len(train) < 2 or not validation:
        raise ValueError(f"a fold needs at least 2 training and 1 validation utterance, got {len(train)} and "
                         f"{len(validation)}")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    network = MeritConfig.from_dict({**config.network.to_dict(), "num_classes": len(classes)})
    model = build_merit(network)
    frozen_by_design = {id(p) for p in backbone_parameters(model) if not p.requires_grad}
    backbone = {id(p) for p in backbone_parameters(model)}
    groups = [{"params": [p for p in model.parameters() if id(p) not in backbone], "lr": config.head_lr},
              {"params": [p for p in backbone_parameters(model) if id(p) not in frozen_by_design], "lr": config.ssl_lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=config.weight_decay, fused=True)
    label_of = {c: i for i, c in enumerate(classes)}
    weights = class_weights(torch.tensor([label_of[u.label] for u in train]), len(classes))
    state = {"best_f1": -1.0, "best_epoch": 0}
    start_epoch = 1
    saved = resume_checkpoint(run_dir, config.to_dict(), model=model, optimizer=optimizer,
                              scheduler=None) if resume else None
    if saved is not None:
        state, start_epoch = saved["trainer"], saved["epoch"] + 1
    if start_epoch == 1:
        (run_dir / "metrics.jsonl").write_text("")
    max_samples = int(config.max_seconds * SAMPLE_RATE)
    bar = tqdm(range(start_epoch, config.epochs + 1), desc=desc, disable=not progress, unit="epoch",
               initial=start_epoch - 1, total=config.epochs)
    for epoch in bar:
        _set_backbone_trainable(model, epoch > config.frozen_ssl_epochs, frozen_by_design)
        # Hugging Face draws SpecAugment's time masks from numpy's global generator; seeding it per
        # epoch makes a resumed run draw the same masks as an uninterrupted one.
        np.random.seed([config.seed, epoch])
        model.train()
        started = time.perf_counter()
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train))
        batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        batches = [b for b in batches if len(b) >= 2]
        sums: dict[str, float] = {}
        optimizer.zero_grad(set_to_none=True)
        for step, rows in enumerate(batches, start=1):
            batch = make_batch([train[i] for i in rows], classes, bank, config.seen_noise, config.train_snr_db,
                               seed=[config.seed, epoch, step], max_samples=max_samples, random_crop=True)
            losses = model.losses(batch.noisy, batch.clean, batch.labels, batch.lengths, class_weight=weights)
            check_losses(losses.scalars(), epoch, step)
            (losses.total / config.accumulate).backward()
            if step % config.accumulate == 0 or step == len(batches):
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for key, value in losses.scalars().items():
                sums[key] = sums.get(key, 0.0) + value
        check_weights(model, epoch)
        val = predict(model, validation, classes, bank, config.seen_noise, config.train_snr_db, seed=[config.seed, 0])
        scores = ClassificationScores.from_predictions(val.labels, val.predictions, tuple(classes))
        record = {"epoch": epoch, **{f"train_{k}": v / max(len(batches), 1) for k, v in sums.items()},
                  "val_macro_f1": scores.macro_f1, "val_uar": scores.uar, "seconds": time.perf_counter() - started}
        if scores.macro_f1 > state["best_f1"]:
            state = {"best_f1": scores.macro_f1, "best_uar": scores.uar, "best_epoch": epoch}
            save_merit_model(run_dir, model, config, classes)
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        save_checkpoint(run_dir, epoch, model=model, optimizer=optimizer, scheduler=None, config=config.to_dict(),
                        trainer_state=state)
        bar.set_postfix(loss=f"{record['train_total']:.3f}", val_f1=f"{100 * scores.macro_f1:.1f}")
        if on_epoch_end is not None:
            on_epoch_end(record)
    return state


def save_merit_model(fold_dir: Path, model: torch.nn.Module, config: MeritTrainConfig,
                     classes: Sequence[str]) -> None:
    """``model.safetensors`` + ``config.json`` through :func:`~ser_fast.inference.model_files.write_model_files`."""
    write_model_files(fold_dir, model.state_dict(), kind="merit", classes=classes, settings=config.to_dict())


def load_merit_model(fold_dir: Path) -> tuple[torch.nn.Module, MeritTrainConfig, tuple[str, ...]]:
    """A fold's best MERIT model (eval mode), its settings and class names: safetensors + JSON only,
    checked by :func:`~ser_fast.inference.model_files.read_model_files` (a wrong, tampered or pickled
    file is a ``ModelFileError``)."""
    fold_dir = Path(fold_dir)
    for name in ("config.json", "model.safetensors"):
        if not (fold_dir / name).is_file():
            raise FileNotFoundError(f"{fold_dir / name} not found: is {fold_dir} a trained MERIT fold?")
    return merit_model_from_saved(read_model_files(fold_dir))


def merit_model_from_saved(saved: SavedModel) -> tuple[torch.nn.Module, MeritTrainConfig, tuple[str, ...]]:
    """The MERIT model (eval mode), settings and class names that a checked saved folder describes."""
    if saved.kind != "merit":
        raise ModelFileError(f"{saved.config_path}: a {saved.kind} model, not Sparse MERIT; load it with "
                             "ser_fast.training.run.load_fold_model")
    try:
        config = MeritTrainConfig.from_dict(saved.settings)
        model = build_merit(MeritConfig.from_dict({**config.network.to_dict(), "num_classes": len(saved.classes)}))
    except (TypeError, ValueError) as error:
        raise settings_error(saved, error) from None
    load_weights(model, saved)
    return model.eval(), config, saved.classes


def train_merit_run(corpus: Corpus, run_dir: Path, config: MeritTrainConfig, *, protocol: str = "loso",
                    folds: str | int | Sequence[int] = "all", bank: NoiseBank | None = None, resume: bool = False,
                    progress: bool = False) -> dict:
    """Train one MERIT model per selected fold, in the same run layout as :func:`train_run`;
    returns ``{fold name: best validation state}``."""
    from ser_fast.training.run import make_folds, select_folds, write_fold_json, write_run_json

    run_dir = Path(run_dir)
    chosen = select_folds(make_folds(corpus, protocol), folds)
    write_run_json(run_dir, corpus, protocol, config.to_dict(), chosen)
    results = {}
    for fold in chosen:
        fold_dir = write_fold_json(run_dir, fold)
        results[fold.name] = train_merit_fold(fold.train, fold.validation, corpus.classes, config, fold_dir, bank=bank,
                                              resume=resume, progress=progress,
                                              desc=f"merit {config.network.design} {fold.name}")
    return results
