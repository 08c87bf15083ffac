"""The trainer task of Sparse MERIT (and its baselines): noisy pairs made on the fly, AdamW with separate learning rates
for the heads and the SSL backbone, an optional first stage with the backbone frozen (the paper's two-step recipe),
gradient accumulation to the paper's effective batch and the best epoch on validation macro-F1 at the training SNR (the
mean CCC over arousal, valence and dominance for a model without classes, ``target="dimensional"``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ser_fast.data.augmentation import Augmenter
from ser_fast.data.corpus import Corpus, Utterance
from ser_fast.data.noise import NoiseBank
from ser_fast.data.noisy_pairs import make_batch, readable
from ser_fast.data.protocols import Fold
from ser_fast.frontend.constants import SAMPLE_RATE
from ser_fast.models.merit.ser_head import class_weights
from ser_fast.models.merit.ssl import SSLFeatures
from ser_fast.models.targets import Targets, has_classes
from ser_fast.runs.config import MeritTrainConfig
from ser_fast.runs.metrics import ClassificationScores
from ser_fast.runs.predict import SERPredictions, predict_waveforms
from ser_fast.runs.registry import kind_of_config
from ser_fast.training.distributed import World
from ser_fast.training.loop import (
    TrainerTask,
    check_fold_size,
    dimension_record,
    epoch_batches,
    rated_targets,
    run_epochs,
    selection,
)

logger = logging.getLogger(__name__)


def backbone_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The pretrained parameters of ``model``'s SSL front-ends (not their per-layer LayerNorms or weights: heads)."""
    return [p for m in model.modules() if isinstance(m, SSLFeatures) for p in m.backbone.parameters()]


def train_merit_fold(train: Sequence[Utterance], validation: Sequence[Utterance], classes: Sequence[str],
                     config: MeritTrainConfig, run_dir: Path, *, bank: NoiseBank | None = None, resume: bool = False,
                     progress: bool = False, desc: str = "merit",
                     on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train one fold into ``run_dir`` (``metrics.jsonl``, checkpoints, ``model.safetensors``, ``config.json``); returns
    the best epoch's validation scores. One process (torchrun is for the CNN models)."""
    run_dir = Path(run_dir)
    bank = bank or NoiseBank()
    unknown = sorted(set(config.seen_noise) - set(bank.types))
    if unknown:
        raise ValueError(f"seen noise types {unknown} are not in the noise bank ({bank.types})")
    train, bad_train = readable(train)
    validation, bad_val = readable(validation)
    for path, reason in bad_train + bad_val:
        logger.warning("left out of training: %s (%s)", path, reason)
    check_fold_size(len(train), len(validation))
    run_dir.mkdir(parents=True, exist_ok=True)
    task = MeritTask(train, validation, tuple(classes), config, run_dir, bank)
    return run_epochs(task, run_dir, World(), resume=resume, progress=progress, desc=desc, on_epoch_end=on_epoch_end)


class MeritTask(TrainerTask):
    """One fold of Sparse MERIT for :func:`~ser_fast.training.loop.run_epochs`. With a dimensional head
    (``config.target``) each batch's targets are :class:`~ser_fast.models.targets.Targets`: the labels (None without
    classes) and the utterances' ratings normalised by ``config.scale``."""

    one_process = True  # torchrun is for the CNN task

    @staticmethod
    def prepare(corpus: Corpus, config: MeritTrainConfig, world: World, *, progress: bool, table: object,
                bank: NoiseBank | None) -> NoiseBank:
        """What every fold of a run shares: the noise bank of the training pairs."""
        return bank or NoiseBank()

    @staticmethod
    def train(fold: Fold, bank: NoiseBank, config: MeritTrainConfig, fold_dir: Path, classes: tuple[str, ...], *,
              resume: bool, progress: bool, device: str | torch.device) -> dict:
        return train_merit_fold(fold.train, fold.validation, classes, config, fold_dir, bank=bank, resume=resume,
                                progress=progress, desc=f"{config.model} {config.network.design} {fold.name}")

    def __init__(self, train: list[Utterance], validation: list[Utterance], classes: tuple[str, ...],
                 config: MeritTrainConfig, fold_dir: Path, bank: NoiseBank) -> None:
        self.train, self.validation = train, validation
        self.config, self.fold_dir, self.bank = config, fold_dir, bank
        self.settings, self.epochs = config.to_dict(), config.epochs
        self.classes = tuple(classes) if has_classes(config.target) else ()
        self.best = selection(config.target, {"best_f1": "val_macro_f1", "best_uar": "val_uar"})
        # Read once: an utterance without a rating within the scale fails here, not mid-epoch.
        self.dimensions = rated_targets(train, config, validation=len(validation))
        self.validation_dimensions = rated_targets(validation, config, validation=len(validation))
        torch.manual_seed(config.seed)
        self.model = kind_of_config(config).build(config, len(self.classes))
        backbone = backbone_parameters(self.model)
        self.frozen_by_design = {id(p) for p in backbone if not p.requires_grad}
        in_backbone = {id(p) for p in backbone}
        groups = [{"params": [p for p in self.model.parameters() if id(p) not in in_backbone], "lr": config.head_lr},
                  {"params": [p for p in backbone if id(p) not in self.frozen_by_design], "lr": config.ssl_lr}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=config.weight_decay,
                                           fused=True)
        self.augmenter = Augmenter.from_config(config.augment, config.seed) if config.augment else None
        self.class_weight = None
        if self.classes:
            label_of = {c: i for i, c in enumerate(self.classes)}
            self.class_weight = class_weights(torch.tensor([label_of[u.label] for u in train]), len(self.classes))

    def _targets(self, labels: torch.Tensor, table: np.ndarray | None,
                 rows: Sequence[int]) -> torch.Tensor | Targets:
        """What ``model.losses`` trains on for the batch of ``rows`` (of the utterances ``table`` rates)."""
        if table is None:
            return labels
        return Targets(labels if self.classes else None, torch.from_numpy(table[np.asarray(rows)]))

    def train_epoch(self, epoch: int) -> Iterator[dict[str, float]]:
        config, model = self.config, self.model
        for p in backbone_parameters(model):
            if id(p) not in self.frozen_by_design:
                p.requires_grad_(epoch > config.frozen_ssl_epochs)
        # Hugging Face draws SpecAugment's time masks from numpy's global generator; seeding it per
        # epoch makes a resumed run draw the same masks as an uninterrupted one.
        np.random.seed([config.seed, epoch])
        model.train()
        batches = epoch_batches(len(self.train), config.batch_size, [config.seed, epoch])
        max_samples = int(config.max_seconds * SAMPLE_RATE)
        self.optimizer.zero_grad(set_to_none=True)
        for step, rows in enumerate(batches, start=1):
            augment = None if self.augmenter is None else (
                lambda speech, i, rows=rows: self.augmenter(speech, epoch, rows[i]))
            batch = make_batch([self.train[i] for i in rows], self.classes, self.bank, config.seen_noise,
                               config.train_snr_db, seed=[config.seed, epoch, step], max_samples=max_samples,
                               random_crop=True, augment=augment)
            targets = self._targets(batch.labels, self.dimensions, rows)
            losses = model.losses(batch.noisy, batch.clean, targets, batch.lengths, class_weight=self.class_weight)
            yield losses.scalars()  # checked before the backward pass
            (losses.total / config.accumulate).backward()
            if step % config.accumulate == 0 or step == len(batches):
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)

    def validate(self, epoch: int) -> dict[str, float]:
        """``val_macro_f1`` and ``val_uar`` of a model with classes, ``val_ccc`` and ``val_ccc_<dimension>`` of one
        with a dimensional head, and the objective's terms."""
        val = self._predict(self.model)
        record = {}
        if self.classes:
            scores = ClassificationScores.from_predictions(val.labels, val.predictions, self.classes)
            record.update(val_macro_f1=scores.macro_f1, val_uar=scores.uar)
        if val.dimensions is not None:
            record.update(dimension_record(self.validation_dimensions, val.dimensions))
        return {**record, **self._validation_terms()}

    def validation_logits(self, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """The class logits alone (a model with a dimensional head scores its dimensions apart)."""
        val = self._predict(model)
        if val.logits is None:
            raise ValueError("a model without classes (target 'dimensional') has no logits to calibrate")
        return torch.from_numpy(val.logits), torch.from_numpy(val.labels)

    def _predict(self, model: torch.nn.Module) -> SERPredictions:
        config = self.config
        return predict_waveforms(model, self.validation, self.classes, self.bank, config.seen_noise,
                                 config.train_snr_db, seed=[config.seed, 0])

    def _validation_terms(self) -> dict[str, float]:
        """Each term of the objective on the validation utterances (``val_loss_<term>``, beside the logged
        ``train_<term>``), as the CNN task logs them: eval mode, no gradients, the training crop (its first
        ``max_seconds``) and batch size, the noisy pairs of the same seed every epoch. With a dimensional head a last
        batch of one utterance joins the one before (the CCC loss needs two)."""
        config, model = self.config, self.model
        max_samples = int(config.max_seconds * SAMPLE_RATE)
        model.eval()
        sums: dict[str, float] = {}
        with torch.no_grad():
            for step, (start, stop) in enumerate(self._validation_batches()):
                chunk = self.validation[start:stop]
                batch = make_batch(chunk, self.classes, self.bank, config.seen_noise, config.train_snr_db,
                                   seed=[config.seed, 0, step], max_samples=max_samples)
                targets = self._targets(batch.labels, self.validation_dimensions, range(start, stop))
                terms = model.losses(batch.noisy, batch.clean, targets, batch.lengths,
                                     class_weight=self.class_weight).scalars()
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value * len(chunk)
        return {f"val_loss_{name}": value / len(self.validation) for name, value in sums.items()}

    def _validation_batches(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of each validation batch of :meth:`_validation_terms`."""
        size, step = len(self.validation), self.config.batch_size
        bounds = [(start, min(start + step, size)) for start in range(0, size, step)]
        if self.dimensions is not None and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
            bounds[-2:] = [(bounds[-2][0], size)]
        return bounds
