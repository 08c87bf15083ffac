"""The trainer task of the CNN models on log-Mel features (Baseline, DSNet, EDRL-MEA), for
:func:`~ser_fast.training.loop.run_epochs`: seeded and deterministic, Adam with the learning rate halved on a
validation-loss plateau, the best epoch on validation UAR (on the mean CCC over arousal, valence and dominance for a
dimensional model), then EDRL-MEA's alignment (see :func:`train_fold`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from ser_fast.data.augmentation import Augmenter
from ser_fast.data.corpus import Corpus
from ser_fast.data.dimensions import DIMENSIONS
from ser_fast.data.features import FeatureTable, augmented_batch, extract_features
from ser_fast.data.noise import NoiseBank
from ser_fast.data.protocols import Fold, NeutralReferences, neutral_references
from ser_fast.frontend.recipe import model_frontend
from ser_fast.models.targets import Targets
from ser_fast.runs.atomic import atomic_write_text
from ser_fast.runs.config import TrainConfig
from ser_fast.runs.disentanglement import dead_fraction, warn_if_dead
from ser_fast.runs.metrics import ClassificationScores
from ser_fast.runs.model_files import read_model_files
from ser_fast.runs.names import ALIGNMENT_JSON
from ser_fast.runs.precision import autocast_for, use_bf16
from ser_fast.runs.predict import EVAL_BATCH, embed_rows, evaluate_rows, prepare_input, run_rows
from ser_fast.runs.registry import kind_of_config
from ser_fast.runs.warm_start import encoder_parameters
from ser_fast.training.distributed import World, broadcast_from_main, data_parallel, join_world, row_share
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

DSNET_BRANCHES = ("z_er", "z_ei")


@dataclass(frozen=True)
class FoldData:
    """A fold's features: train/validation rows of ``table`` and, for a model trained against a neutral reference of
    each speaker (DSNet), each training speaker's reference row (kept out of the training rows)."""

    table: FeatureTable
    train: list[int]
    validation: list[int]
    neutral_row: dict[str, int]

    @classmethod
    def build(cls, table: FeatureTable, train, validation, references: NeutralReferences | None) -> FoldData:
        row_of = {u.path: i for i, u in enumerate(table.utterances)}
        train_rows = [row_of[u.path] for u in train if u.path in row_of]
        neutral = {}
        if references is not None:
            excluded = {u.path for u in references.by_speaker.values()}
            train_rows = [i for i in train_rows if table.utterances[i].path not in excluded]
            neutral = {s: row_of[u.path] for s, u in references.by_speaker.items() if u.path in row_of}
        return cls(table, train_rows, [row_of[u.path] for u in validation if u.path in row_of], neutral)


def uses_neutral_reference(config: TrainConfig) -> bool:
    """Whether the configured model trains against a neutral utterance of each speaker (DSNet's L_c)."""
    return any(getattr(cls, "uses_neutral_reference", False) for cls in kind_of_config(config).model_classes)


def train_fold(data: FoldData, config: TrainConfig, run_dir: Path, *, classes: tuple[str, ...], resume: bool = False,
               progress: bool = False, desc: str = "train", on_epoch_end: Callable[[dict], None] | None = None,
               device: str | torch.device = "cpu") -> dict:
    """Train, writing ``run_dir/{metrics.jsonl, checkpoint-*, latest.json, model.safetensors, config.json}``; returns
    the best epoch's validation scores. ``on_epoch_end`` gets each epoch's metrics once its checkpoint is on disk (an
    exception there stops the run, resumable). EDRL-MEA: after the last epoch, the best epoch's weights are aligned on
    the clean training rows (:meth:`EDRLMEA.fit_alignment`), saved over ``model.safetensors``, and ``alignment.json``
    records the validation UAR before and after; the result gains ``aligned_uar``. A run killed during the alignment
    redoes it on resume (it is deterministic).

    ``device``: "cpu" or "cuda". Under ``torchrun`` with several processes (each on ``cuda:LOCAL_RANK`` for "cuda")
    they train together to the one-process weights up to float rounding (:mod:`ser_fast.training.distributed`); rank 0
    alone validates (broadcasting the scores), writes files, shows progress and fits EDRL-MEA's alignment;
    ``on_epoch_end`` runs in every process. Every process reads the checkpoint to resume: all need the run folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if uses_neutral_reference(config):
        missing = sorted({data.table.utterances[i].speaker for i in data.train} - set(data.neutral_row))
        if missing:
            raise ValueError(f"DSNet needs a neutral reference for every training speaker; none for {missing}")
    check_fold_size(len(data.train), len(data.validation))
    world = join_world(device)
    check_batches_split(len(data.train), config.batch_size, world)
    task = CNNTask(data, config, run_dir, classes, world)
    return run_epochs(task, run_dir, world, resume=resume, progress=progress, desc=desc, on_epoch_end=on_epoch_end)


class CNNTask(TrainerTask):
    """One fold of a CNN model for :func:`~ser_fast.training.loop.run_epochs`."""

    @staticmethod
    def prepare(corpus: Corpus, config: TrainConfig, world: World, *, progress: bool, table: FeatureTable | None,
                bank: NoiseBank | None) -> tuple[FeatureTable, NeutralReferences | None]:
        """What every fold of a run shares: the corpus' features (extracted here unless given) and,
        for DSNet, each speaker's neutral reference."""
        if table is None:
            table = extract_features(corpus.utterances, corpus.classes, progress=progress and world.is_main,
                                     desc=f"{corpus.name} features")
        if world.is_main:
            for path, reason in table.failed:
                logger.warning("left out of training: %s (%s)", path, reason)
        references = neutral_references(corpus, seed=config.seed) if uses_neutral_reference(config) else None
        return table, references

    @staticmethod
    def train(fold: Fold, shared: tuple[FeatureTable, NeutralReferences | None], config: TrainConfig,
              fold_dir: Path, classes: tuple[str, ...], *, resume: bool, progress: bool,
              device: str | torch.device) -> dict:
        table, references = shared
        return train_fold(FoldData.build(table, fold.train, fold.validation, references), config, fold_dir,
                          classes=classes, resume=resume, progress=progress, desc=f"{config.model} {fold.name}",
                          device=device)

    def __init__(self, data: FoldData, config: TrainConfig, fold_dir: Path | None, classes: tuple[str, ...],
                 world: World, *, model: torch.nn.Module | None = None) -> None:
        """``model``: the network to train; by default the config's, built from ``config.seed``."""
        self.data, self.config, self.fold_dir, self.classes, self.world = data, config, fold_dir, classes, world
        self.settings, self.epochs = config.to_dict(), config.epochs
        self.best = selection(config.target, {"best_uar": "val_uar"})
        rated = rated_targets(data.table.utterances, config, validation=len(data.validation))
        self.dimensions = None if rated is None else torch.from_numpy(rated)
        self.neutral = uses_neutral_reference(config)
        self.bf16 = use_bf16(config.precision)
        if model is None:
            torch.manual_seed(config.seed)
            model = kind_of_config(config).build(config, len(classes))
        model = model.to(world.device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = torch.optim.Adam(self._parameter_groups(), lr=config.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=config.lr_factor,
                                                                    patience=config.lr_patience)
        self.objective: DistributedDataParallel | None = None
        # Augmented training computes each batch's features from its audio (validation stays on the clean table).
        self.augmenter = Augmenter.from_config(config.augment, config.seed) if config.augment else None
        self.frontend = model_frontend() if self.augmenter is not None else None

    def _parameter_groups(self) -> list[dict]:
        """One group, as every run before warm starts had (so their checkpoints resume); with ``freeze_encoder`` or
        ``encoder_lr_scale`` the encoder's parameters go frozen or into a slower second group."""
        config, model = self.config, self.model
        if not config.freeze_encoder and config.encoder_lr_scale == 1:
            return [{"params": list(model.parameters())}]
        encoder = encoder_parameters(model)
        if config.freeze_encoder:
            for p in encoder:
                p.requires_grad_(False)
        in_encoder = {id(p) for p in encoder}
        groups = [{"params": [p for p in model.parameters() if id(p) not in in_encoder]},
                  {"params": [p for p in encoder if p.requires_grad],
                   "lr": config.learning_rate * config.encoder_lr_scale}]
        return [g for g in groups if g["params"]]

    def after_resume(self) -> None:
        # Building DDP is collective: no process goes on (rank 0 writes nothing) before all have read the checkpoint.
        if self.world.enabled:
            self.objective = data_parallel(self.model, self.world)

    def train_epoch(self, epoch: int) -> Iterator[dict[str, float]]:
        (self.model if self.objective is None else self.objective).train()
        if self.config.freeze_encoder:
            self.model.encoder.eval()  # its BatchNorm statistics stay the trained model's too
        for rows in epoch_batches(len(self.data.train), self.config.batch_size, [self.config.seed, epoch]):
            yield self.step([self.data.train[i] for i in rows], epoch)

    def step(self, batch: list[int], epoch: int | None = None) -> dict[str, float]:
        """One optimizer step on ``batch`` (of ``epoch``: what seeds its augmentation); under DDP this process runs
        its share of the rows, and the losses logged are the whole batch's."""
        share = row_share(len(batch), self.world)
        inputs = self._inputs(batch[share.start:share.stop], epoch)
        labels = self._targets(batch)
        with autocast_for(self.bf16, self.world.device.type):
            if self.objective is None:
                losses = self.model.objective(self.model.training_forward(*inputs), labels)
            else:
                losses = self.objective(share, labels, *inputs)
        self.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        self.optimizer.step()
        return losses.scalars()

    def _targets(self, rows: list[int]) -> torch.Tensor | Targets:
        """What the model's objective scores ``rows`` against: their class indices, or :class:`Targets` for a model
        with a dimensional head."""
        device = self.world.device
        labels = self.data.table.labels[rows].to(device)
        if self.dimensions is None:
            return labels
        return Targets(labels if self.classes else None, self.dimensions[rows].to(device))

    def _inputs(self, rows: list[int], epoch: int | None = None) -> tuple:
        """``training_forward``'s arguments for ``rows``: ``(x, frames)``, and for a model trained
        against neutral references ``(x, x_neutral, frames, neutral_frames)`` (the rows' speakers'). With an
        ``epoch`` and augmentation, both come from augmented audio, each neutral reference with its row's draw: the
        same room, noise and band, so that L_c compares z_ei under one channel and does not push the channel out of
        z_ei, the subspace meant to hold it."""
        device, table, config = self.world.device, self.data.table, self.config
        augmenting = self.augmenter is not None and epoch is not None
        if augmenting:
            x, frames = augmented_batch(table.utterances, rows, self.augmenter, epoch, config.max_frames,
                                        self.frontend)
        else:
            x, frames = table.batch(rows, config.max_frames)
        x, frames = prepare_input(x.to(device), config), frames.to(device)
        if not self.neutral:
            return x, frames
        neutral_rows = [self.data.neutral_row[table.utterances[i].speaker] for i in rows]
        if augmenting:
            x_n, frames_n = augmented_batch(table.utterances, neutral_rows, self.augmenter, epoch,
                                            config.max_frames, self.frontend, draws=rows)
        else:
            x_n, frames_n = table.batch(neutral_rows, config.max_frames)
        return x, prepare_input(x_n.to(device), config), frames, frames_n.to(device)

    def validate(self, epoch: int) -> dict[str, float]:
        """Validation loss, UAR and WA (with classes), ``val_ccc`` and each dimension's (with a dimensional head),
        computed by rank 0 and broadcast so that every process steps the learning-rate schedule and picks the best
        epoch alike; then the schedule's step. For DSNet also the share of dead features of z_er and z_ei on the
        validation utterances (``val_dead_z_er``, ``val_dead_z_ei``), with a warning when a branch passes half dead
        (measured from 2 validation utterances on)."""
        measurable = hasattr(self.model, "embed") and len(self.data.validation) >= 2
        branches = tuple(name for name in DSNET_BRANCHES if name != "z_ei" or self.model.trains_z_ei) \
            if measurable else ()
        names = ["val_loss", *(("val_uar", "val_wa") if self.classes else ())]
        if self.dimensions is not None:
            names += ["val_ccc", *(f"val_ccc_{name}" for name in DIMENSIONS)]
        values, terms = [0.0] * (len(names) + len(branches)), {}
        if self.world.is_main:
            scores = self._validation_scores()
            values = [scores[name] for name in names] + self._dead_fractions(branches, epoch)
            terms = self._validation_terms()
        values = broadcast_from_main(values, self.world)
        record = dict(zip(names, values))
        self.scheduler.step(record["val_loss"])
        return {**record, **{f"val_dead_{name}": fraction for name, fraction in zip(branches, values[len(names):])},
                **terms, "lr": self.optimizer.param_groups[0]["lr"]}

    def validation_logits(self, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.data.validation
        scores = run_rows(model, self.data.table, rows, self.config, lambda m, x, n: m(x, n))
        return torch.cat(scores)[:, :len(self.classes)], self.data.table.labels[rows]  # the logits lead the scores

    def _validation_terms(self) -> dict[str, float]:
        """Each term of the training objective on the validation rows (``val_loss_<term>``, beside the logged
        ``train_<term>``): the curves of the DSNet paper's Fig. 2. Eval mode, no gradients, the training crop, in
        batches of the training batch size (L_o and the contrastive terms depend on it), a last batch of one row joined
        to the one before (they need two); for a model trained against neutral references, the rows of validation
        speakers that have one. Only rank 0 logs."""
        rows = [i for i in self.data.validation
                if not self.neutral or self.data.table.utterances[i].speaker in self.data.neutral_row]
        if len(rows) < 2:
            return {}
        size = self.config.batch_size
        starts = [start for start in range(0, len(rows), size) if len(rows) - start >= 2]
        self.model.eval()
        sums: dict[str, float] = {}
        with torch.no_grad(), autocast_for(self.bf16, self.world.device.type):
            for start, end in zip(starts, [*starts[1:], len(rows)]):
                chunk = rows[start:end]
                terms = self.model.objective(self.model.training_forward(*self._inputs(chunk)),
                                             self._targets(chunk)).scalars()
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value * len(chunk)
        return {f"val_loss_{name}": value / len(rows) for name, value in sums.items()}

    def _dead_fractions(self, branches: tuple[str, ...], epoch: int) -> list[float]:
        if not branches:
            return []
        spaces = embed_rows(self.model, self.data.table, self.data.validation, self.config)
        fractions = {name: dead_fraction(spaces[name]) for name in branches}
        warn_if_dead(fractions, f"{self.config.model} epoch {epoch}")
        return list(fractions.values())

    def _validation_scores(self) -> dict[str, float]:
        """The validation rows' loss (``val_loss``) and scores (``val_uar``, ``val_wa``; ``val_ccc``...)."""
        data, rows = self.data, self.data.validation
        targets = None if self.dimensions is None else self.dimensions[rows]
        scored = evaluate_rows(self.model, data.table, rows, self.config,
                               None if targets is None else targets.numpy())
        record = {"val_loss": scored.loss}
        if self.classes:
            val = ClassificationScores.from_predictions(data.table.labels[rows].numpy(), scored.predictions,
                                                        self.classes)
            record.update(val_uar=val.uar, val_wa=val.wa)
        if targets is not None:
            record.update(dimension_record(targets.numpy(), scored.dimensions))
        return record

    def finish(self, state: dict) -> dict:
        if not hasattr(self.model, "fit_alignment"):
            return state
        aligned = self._align(state) if self.world.is_main else 0.0
        return {**state, "aligned_uar": broadcast_from_main([aligned], self.world)[0]}

    def _align(self, state: dict) -> float:
        """Fit the best epoch's alignment on the clean training rows, save it, return its validation UAR."""
        model, data, config = self.model, self.data, self.config
        # The best epoch's weights only, read back without the checksum: a kill between writing
        # model.safetensors and config.json leaves them mismatched, and whatever alignment was saved
        # with them is fitted again anyway.
        saved = read_model_files(self.fold_dir, verify_checksum=False)
        model.load_state_dict({k: v for k, v in saved.tensors.items() if not k.startswith(model.extra_state_prefix)})
        model.clear_alignment()
        started = time.perf_counter()
        device = next(model.parameters()).device

        def batches():
            for start in range(0, len(data.train), EVAL_BATCH):
                chunk = data.train[start:start + EVAL_BATCH]
                x, frames = data.table.batch(chunk, config.max_frames)
                yield prepare_input(x.to(device), config), data.table.labels[chunk].to(device), frames.to(device)

        with autocast_for(self.bf16, device.type):
            model.fit_alignment(batches())
        aligned = self._validation_scores()
        self.save_model()
        atomic_write_text(self.fold_dir / ALIGNMENT_JSON, json.dumps({
            "variant": config.variant, "best_epoch": state["best_epoch"], "head_val_uar": state["best_uar"],
            "aligned_val_uar": aligned["val_uar"], "aligned_val_wa": aligned["val_wa"],
            "train_utterances": len(data.train), "seconds": time.perf_counter() - started}, indent=1))
        return aligned["val_uar"]


def check_batches_split(rows: int, batch_size: int, world: World) -> None:
    """Every batch must give each process a row."""
    smallest = min((len(b) for b in epoch_batches(rows, batch_size, [0])), default=world.size)
    if smallest < world.size:
        raise ValueError(f"{rows} training utterances in batches of {batch_size} leave a batch of {smallest}, too few "
                         f"for {world.size} processes (each needs a row): choose another batch size or fewer processes")
