"""``EmotionRecognizer``: a trained model (Baseline, DSNet, EDRL-MEA or Sparse MERIT) that takes audio (paths, arrays,
tensors; any rate and channel count) and returns one :class:`Prediction` per input, never stopping at a bad one.

    recognizer = EmotionRecognizer.from_pretrained("runs/dsnet")
    for p in recognizer.predict(["a.wav", "b.flac", waveform], sample_rate=44100):
        print(p.source, p.label or p.error, p.probabilities)

Inputs are decoded to mono 16 kHz (``decoding``, ``streaming``), windowed and classified in length-bucketed batches."""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from ser_fast.data.audio import AudioError
from ser_fast.data.dimensions import DIMENSIONS
from ser_fast.frontend.constants import FRAME_SHIFT_S, MIN_SAMPLES, SAMPLE_RATE
from ser_fast.frontend.module import fit_frames
from ser_fast.frontend.recipe import model_features, model_frontend
from ser_fast.inference.batching import check_batch_size, check_max_batch_frames, length_buckets
from ser_fast.inference.decision import Decision, make_decision
from ser_fast.inference.decoding import (
    AudioInput,
    AudioInputError,
    DecodedInput,
    as_input_list,
    check_length_and_level,
    check_waveform,
    decode_audio,
    decode_input,
    decode_whole,
    window_ranges,
)
from ser_fast.inference.graph import MODES, InferenceGraph
from ser_fast.inference.predictions import Prediction, WindowPrediction, as_dict, weighted_mean
from ser_fast.inference.segmented import VAD, SegmentPlan, plan_segments, segment_specs, segmented_prediction
from ser_fast.inference.streaming import WindowStream
from ser_fast.models.encoder import TIME_REDUCTION
from ser_fast.models.targets import has_dimensions, split_scores
from ser_fast.runs.calibration import UNCALIBRATED, Calibration, saved_calibration, write_calibration
from ser_fast.runs.config import MeritTrainConfig, TrainConfig
from ser_fast.runs.layout import model_folder
from ser_fast.runs.model_files import read_model_files
from ser_fast.runs.precision import PRECISIONS
from ser_fast.runs.registry import FEATURES, kind_of_config
from ser_fast.runs.saved import model_from_saved, save_model

__all__ = ["AudioInputError", "EmotionRecognizer", "Prediction", "WindowPrediction", "check_waveform", "decode_audio",
           "window_ranges"]

logger = logging.getLogger(__name__)

CHUNK_BATCHES = 8  # predict() decodes this many batches' worth of inputs at a time: memory stays flat
# Frames one forward pass of a CNN model computes at most. Small batches keep the conv activations in cache: on
# a 2-core Xeon, batches of about 2,400 frames gave the fast graph 8-18 % and the plain graph 40-50 % more frames
# per second than 32 windows of 250 and 600 frames, and no better with fewer. It also bounds a batch's memory.
MAX_BATCH_FRAMES = 2400


class EmotionRecognizer:
    """A trained model ready to classify audio: :meth:`from_pretrained`, or an in-memory model with its
    :class:`TrainConfig` or :class:`MeritTrainConfig`: ``EmotionRecognizer(model, config, classes)``.

    Args:
        precision, compile, mode: the CNN models' :class:`InferenceGraph`; ``mode="fast"`` pads each batch to its
            longest window, ``mode="plain"`` cuts or cyclically pads each window to ``max_frames`` as evaluation does.
            Sparse MERIT runs eager whatever the mode, in fp32 unless ``precision="bf16"``; no ``compile=True``.
        device: where the model runs (features are computed on the CPU).
        max_batch_frames: for the CNN models, the most frames one forward pass computes (windows × their padded length),
            besides ``batch_size`` windows; None: no cap.
        calibration: the temperature the probabilities are computed at (``softmax(logits / T)``); ``from_pretrained``
            reads the one fitted in training, and a model saved without one is uncalibrated (T = 1).

    A model trained with a dimensional head (``target`` "dimensional" or "both") also gives each prediction its
    arousal, valence and dominance (``Prediction.dimensions``) on the scale its corpus rated them on; a dimensional
    model has no classes (``classes=()``) and its predictions no label."""

    sample_rate = SAMPLE_RATE
    decode = staticmethod(decode_audio)

    def __init__(self, model: torch.nn.Module, config: TrainConfig | MeritTrainConfig, classes: Sequence[str], *,
                 precision: str = "auto", compile: bool = False, device: str | torch.device = "cpu",
                 mode: str = "fast", max_batch_frames: int | None = MAX_BATCH_FRAMES,
                 calibration: Calibration = UNCALIBRATED) -> None:
        if not isinstance(config, (TrainConfig, MeritTrainConfig)):
            raise TypeError(f"config must be a TrainConfig or MeritTrainConfig, got {type(config).__name__}")
        kind = kind_of_config(config)
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {MODES}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
        check_max_batch_frames(max_batch_frames)
        if not isinstance(calibration, Calibration):
            raise TypeError(f"calibration must be a ser_fast.runs.calibration.Calibration, got "
                            f"{type(calibration).__name__}")
        self.calibration = calibration
        self.classes = tuple(str(c) for c in classes)
        self.dimensions = DIMENSIONS if has_dimensions(config.target) else ()
        if self.dimensions and config.scale is None:
            raise ValueError(f"the config's target is {config.target!r} but it has no dimension_scale to restore the "
                             "predictions to")
        if getattr(model, "target", "categorical") != config.target:
            raise ValueError(f"the model's target is {getattr(model, 'target', 'categorical')!r} but its config says "
                             f"{config.target!r}: build the model from the config (ser_fast.runs.registry)")
        if config.target == "dimensional" and self.classes:
            raise ValueError(f"a dimensional model has no classes; got classes {self.classes}")
        if config.target != "dimensional" and len(self.classes) < 2:
            raise ValueError(f"classes must name at least two classes, got {self.classes}")
        self.max_batch_frames = max_batch_frames
        self.config = config
        self.kind = config.model
        self.mode = mode
        self.precision = precision
        self.device = torch.device(device)
        self.model = model.eval()
        self.folder: Path | None = None  # the model folder from_pretrained read, if any
        if kind.input != FEATURES:
            if compile:
                raise ValueError("compile=True is for the CNN models (Baseline, DSNet, EDRL-MEA); Sparse MERIT runs "
                                 "eager")
            self.model.to(self.device)
            self.default_window_s = config.max_seconds
            self._graph = None
            self._frontend = None
        else:
            self.default_window_s = config.max_frames * FRAME_SHIFT_S
            self._graph = InferenceGraph(model, mode=mode, precision=precision, compile=compile, device=self.device)
            self._frontend = model_frontend()

    @property
    def graph(self) -> InferenceGraph | None:
        """The CNN model's inference graph (features in, logits and embeddings out); None for Sparse MERIT."""
        return self._graph

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, fold: str | None = None, precision: str = "auto",
                        compile: bool = False, device: str | torch.device = "cpu", mode: str = "fast",
                        max_batch_frames: int | None = MAX_BATCH_FRAMES) -> EmotionRecognizer:
        """Load a trained model from ``path``: a training run folder (``run.json`` + ``folds/``), one fold's folder, or
        a folder written by :meth:`save`. Nothing is unpickled. In a run folder, ``fold`` picks a fold by name; by
        default the one that scored best on its own validation set (``aligned_val_uar`` for EDRL-MEA, ``val_uar`` for
        Baseline and DSNet, ``val_macro_f1`` for Sparse MERIT; ties: the first in run.json's order). Raises
        :class:`ModelFileError` naming the path for a folder that is neither, an unknown fold, or model files that are
        missing, corrupt, tampered with or pickled. Other arguments: as the constructor's."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a folder path (str or os.PathLike), got {type(path).__name__}")
        folder = model_folder(Path(path), fold)
        saved = read_model_files(folder)
        model, config, classes = model_from_saved(saved)
        calibration = saved_calibration(saved)
        logger.info("loaded %s model from %s (%d classes, temperature %.3g)", saved.kind, folder, len(classes),
                    calibration.temperature)
        recognizer = cls(model, config, classes, precision=precision, compile=compile, device=device, mode=mode,
                         max_batch_frames=max_batch_frames, calibration=calibration)
        recognizer.folder = folder
        return recognizer

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the model and its calibration as one folder (model.safetensors + config.json) for
        :meth:`from_pretrained`; returns it."""
        if not isinstance(folder, (str, os.PathLike)):
            raise TypeError(f"folder must be a path (str or os.PathLike), got {type(folder).__name__}")
        folder = save_model(folder, self.model, self.config, self.classes)
        write_calibration(folder, self.calibration)
        return folder

    def decision(self, classes: Sequence[str] | str | None = None,
                 min_confidence: float | None = None) -> Decision:
        """What :meth:`predict` decides among (``classes``: a subset of the model's, None for all) and how sure it must
        be (``min_confidence``), checked (``ser_fast.inference.decision``)."""
        return make_decision(self.classes, classes, min_confidence, dimensions=self.dimensions,
                             scale=self.config.scale)

    def predict(self, inputs: AudioInput | Sequence[AudioInput], sample_rate: float | None = None, *,
                batch_size: int = 32, window_s: float | None = None, hop_s: float | None = None,
                return_embedding: bool = False, progress: bool = False, classes: Sequence[str] | str | None = None,
                min_confidence: float | None = None, segments: object = None) -> list[Prediction]:
        """Classify every input; returns one :class:`Prediction` per input, in order.

        Args:
            inputs: one input or a list of them, mixed freely: a path (any format soundfile reads, any rate and channel
                count), a numpy array or a torch tensor. A 1-D array is mono. A 2-D array is ONE recording, averaged to
                mono: ``[channels, samples]`` when the first dimension is at most 8 and the second longer, else
                ``[samples, channels]``; several recordings are a list. Float arrays are samples in [-1, 1]; integer
                arrays are PCM, scaled by their type's range (int16 / 32768).
            sample_rate: the arrays' rate in Hz (resampled to 16 kHz); required with arrays.
            batch_size: the most windows per forward pass (and at most ``max_batch_frames`` frames).
            window_s, hop_s: a long input is classified in windows of ``window_s`` seconds every ``hop_s`` seconds, the
                last one ending at its end (default: the model's training length, 6 s for 600 frames, ``max_seconds``
                for Sparse MERIT; hop: half the window). An input no longer than one window is one window, whole.
            return_embedding: also return each input's utterance vector (mean over its windows): ``h``, the MB-PLS super
                scores for an aligned EDRL-MEA, the pooled SER vector for Sparse MERIT.
            progress: a tqdm bar over the inputs.
            classes: decide among these of the model's classes only (their calibrated probabilities renormalised to
                sum to one; ``probabilities`` then holds only them); None: all.
            min_confidence: label an input (and a timeline window) ``"uncertain"`` when its top probability is below
                this, keeping its probabilities; None: always the most probable class.
            segments: ``"vad"`` to classify each speech segment silero-vad finds (``ser_fast[vad]``), or one entry per
                input: its :class:`~ser_fast.inference.segments.Segment` list (None: not segmented). Each segment
                gets its own prediction (``Prediction.segments``, with start, end and speaker); the input's label is
                their duration-weighted mean, with each label's share of the speech time (``speech_shares``). A long
                file is then decoded whole (up to three hours). A bad segment (negative, past the end, overlapping a
                segment of the same speaker) gets an error of its own.

        A bad input (missing, unreadable, empty, silent, too short, NaN samples) gets a Prediction with ``error`` set
        and the rest go on. Bad arguments raise TypeError / ValueError."""
        items, names = as_input_list(inputs)
        window, hop = self._window_samples(window_s, hop_s, batch_size)
        decision = self.decision(classes, min_confidence)
        specs = segment_specs(segments, len(items))
        if any(not isinstance(item, (str, os.PathLike)) for item in items):
            if sample_rate is None:
                raise ValueError("sample_rate is required with array or tensor inputs: pass the rate they were "
                                 "recorded at, e.g. predict(x, sample_rate=44100)")
            if not _positive_number(sample_rate):
                raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
        predictions: list[Prediction] = []
        chunk = CHUNK_BATCHES * batch_size
        with tqdm(total=len(items), desc="predict", unit="input", disable=not progress) as bar:
            for start in range(0, len(items), chunk):
                decoded = [decode_input(item, name, sample_rate) for item, name in
                           zip(items[start:start + chunk], names[start:start + chunk])]
                part = specs[start:start + chunk]
                decoded = [decode_whole(d) if d.streamed and spec is not None else d for d, spec in zip(decoded, part)]
                predictions.extend(self._predict_items(decoded, batch_size, window, hop, return_embedding, decision,
                                                       part))
                bar.update(len(decoded))
        return predictions

    def predict_waveforms(self, waveforms: Sequence[np.ndarray], sources: Sequence[str], *, batch_size: int = 32,
                          window_s: float | None = None, hop_s: float | None = None, return_embedding: bool = False,
                          classes: Sequence[str] | str | None = None, min_confidence: float | None = None,
                          segments: object = None) -> list[Prediction]:
        """:meth:`predict` for already decoded inputs (what :func:`decode_audio` returns): mono float32 ``[samples]`` at
        16 kHz, named by ``sources``. Bad waveforms (empty, silent, too short, non-finite) get an error Prediction."""
        if isinstance(waveforms, (np.ndarray, torch.Tensor)) or not isinstance(waveforms, Sequence):
            raise TypeError("waveforms must be a list of 1-D arrays (one per input)")
        if isinstance(sources, str) or not isinstance(sources, Sequence) or len(sources) != len(waveforms):
            raise ValueError(f"sources must be a list of {len(waveforms)} names, one per waveform")
        window, hop = self._window_samples(window_s, hop_s, batch_size)
        decision = self.decision(classes, min_confidence)
        specs = segment_specs(segments, len(waveforms))
        items = []
        for i, (wave, source) in enumerate(zip(waveforms, sources)):
            if isinstance(wave, torch.Tensor):
                wave = wave.detach().cpu().float().numpy()
            if not isinstance(wave, np.ndarray) or wave.ndim != 1 or wave.dtype.kind != "f":
                got = f"{wave.dtype} {wave.shape}" if isinstance(wave, np.ndarray) else type(wave).__name__
                raise TypeError(f"waveforms[{i}] must be a 1-D float array at 16 kHz (decode_audio's output), got "
                                f"{got}")
            items.append(DecodedInput(str(source), wave.astype(np.float32, copy=False), len(wave) / SAMPLE_RATE))
        return self._predict_items(items, batch_size, window, hop, return_embedding, decision, specs)

    def _window_samples(self, window_s: float | None, hop_s: float | None, batch_size: int) -> tuple[int, int]:
        window_s = self.default_window_s if window_s is None else window_s
        for name, value in (("window_s", window_s), ("hop_s", hop_s)):
            if value is not None and not _positive_number(value):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        hop_s = window_s / 2 if hop_s is None else hop_s
        if hop_s > window_s:
            raise ValueError(f"hop_s ({hop_s:g} s) must not exceed window_s ({window_s:g} s): windows would skip audio")
        window = round(window_s * SAMPLE_RATE)
        if window < MIN_SAMPLES:
            raise ValueError(f"window_s must be at least {MIN_SAMPLES / SAMPLE_RATE:g} s (one 25 ms frame), "
                             f"got {window_s:g}")
        check_batch_size(batch_size)
        return window, max(1, round(hop_s * SAMPLE_RATE))

    def _predict_items(self, items: list[DecodedInput], batch_size: int, window: int, hop: int,
                       return_embedding: bool, decision: Decision, specs: list) -> list[Prediction]:
        plans: dict[int, list[SegmentPlan]] = {}
        for i, (item, spec) in enumerate(zip(items, specs)):
            if item.error is None and not item.streamed:
                item.error = check_waveform(item.wave, item.source)
                if item.error is None and spec is None:
                    item.windows = window_ranges(len(item.wave), window, hop)
                elif item.error is None:
                    plans[i] = plan_segments(item.wave, spec, window, hop)
                    item.windows = [w for plan in plans[i] for w in plan.windows]
        # Only the items checked above have windows yet (errors and streamed files have none).
        segments = [(i, start, end) for i, item in enumerate(items) for start, end in item.windows]
        probabilities = np.zeros((len(segments), len(self.classes) + len(self.dimensions)), np.float32)
        embeddings: list[np.ndarray | None] = [None] * len(segments)
        for batch in self._batches([end - start for _, start, end in segments], batch_size):
            waves = [items[segments[k][0]].wave[segments[k][1]:segments[k][2]] for k in batch]
            probabilities[batch], batch_embeddings = self._classify(waves)
            for row, k in enumerate(batch):
                embeddings[k] = batch_embeddings[row]
        predictions, k = [], 0
        for i, item in enumerate(items):
            if i in plans:
                count = len(item.windows)
                predictions.append(segmented_prediction(item, plans[i], probabilities[k:k + count],
                                                        embeddings[k:k + count] if return_embedding else None,
                                                        decision, vad=specs[i] == VAD))
                k += count
            elif item.error is not None:
                predictions.append(Prediction(item.source, None, {}, item.duration_s, error=item.error))
            elif item.streamed:
                predictions.append(self._predict_stream(item, batch_size, window, hop, return_embedding, decision))
            else:
                count = len(item.windows)
                predictions.append(self._aggregate(item, probabilities[k:k + count],
                                                   embeddings[k:k + count] if return_embedding else None, decision))
                k += count
        return predictions

    def _predict_stream(self, item: DecodedInput, batch_size: int, window: int, hop: int,
                        return_embedding: bool, decision: Decision) -> Prediction:
        """A long file, read and classified window by window (``streaming.WindowStream``): the same windows, timeline
        and label as decoding it whole, with one block and one batch of windows of audio in memory."""
        try:
            stream = WindowStream(item.source, window, hop, SAMPLE_RATE)
            group = len(self._batches([window] * batch_size, batch_size)[0])
            probabilities, embeddings, pending = [], [], []
            for start, samples in stream:
                pending.append((start, samples))
                if len(pending) == group:
                    self._classify_windows(pending, item, probabilities, embeddings)
            self._classify_windows(pending, item, probabilities, embeddings)
        except AudioError as error:
            return Prediction(item.source, None, {}, item.duration_s, error=str(error))
        item.duration_s, item.warning = stream.num_samples / SAMPLE_RATE, stream.warning
        error = check_length_and_level(stream.num_samples, stream.peak, item.source)
        if error is not None:
            return Prediction(item.source, None, {}, item.duration_s, error=error)
        return self._aggregate(item, np.stack(probabilities), embeddings if return_embedding else None, decision)

    def _classify_windows(self, pending: list[tuple[int, np.ndarray]], item: DecodedInput, probabilities: list,
                          embeddings: list) -> None:
        if not pending:
            return
        batch_probabilities, batch_embeddings = self._classify([samples for _, samples in pending])
        probabilities.extend(batch_probabilities)
        embeddings.extend(batch_embeddings)
        item.windows.extend((start, start + len(samples)) for start, samples in pending)
        pending.clear()

    def _batches(self, samples: list[int], batch_size: int) -> list[list[int]]:
        """Length buckets of windows of ``samples`` samples, costed as the graph computes them: CNN models by frames (at
        least 16; ``max_frames`` in plain mode), capped by ``max_batch_frames``; Sparse MERIT by samples, uncapped."""
        if self._graph is None:
            return length_buckets(samples, batch_size)
        if self.mode == "plain":
            sizes = [self.config.max_frames] * len(samples)
        else:
            frames = self._frontend.options.num_frames_of(torch.tensor(samples, dtype=torch.int64))
            sizes = frames.clamp(min=TIME_REDUCTION).tolist()
        return length_buckets(sizes, batch_size, max_batch_frames=self.max_batch_frames)

    def _aggregate(self, item: DecodedInput, probabilities: np.ndarray, embeddings: list[np.ndarray] | None,
                   decision: Decision) -> Prediction:
        """Duration-weighted mean of the windows' probabilities (over ``decision``'s classes) and dimension values.
        Every window lasts ``window_s`` (the last one is moved back to end at the input's end, not cut short), so the
        weights are equal unless the input is a single window."""
        probabilities = decision.probabilities(probabilities)
        mean = weighted_mean(probabilities, [end - start for start, end in item.windows])
        timeline: tuple[WindowPrediction, ...] = ()
        if len(item.windows) > 1:
            timeline = tuple(WindowPrediction(start / SAMPLE_RATE, end / SAMPLE_RATE, decision.label(p),
                                              as_dict(decision.classes, p), decision.dimension_values(p))
                             for (start, end), p in zip(item.windows, probabilities))
        embedding = None if embeddings is None else np.mean(np.stack(embeddings), axis=0).astype(np.float32)
        return Prediction(item.source, decision.label(mean), as_dict(decision.classes, mean), item.duration_s,
                          embedding=embedding, timeline=timeline, warning=item.warning,
                          dimensions=decision.dimension_values(mean))

    def _classify(self, waves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (then the dimension values on [0, 1], for a model with a dimensional head) and
        embeddings (float32) of one batch of mono 16 kHz windows."""
        if self._graph is None:
            logits, embedding = self._forward_merit(waves)
        else:
            stacked, num_frames = model_features(waves, self._frontend)
            if self.mode == "plain":
                # As evaluation: each item cut to its first max_frames frames or repeated cyclically to them.
                max_frames = self.config.max_frames
                x, lengths = fit_frames(stacked, num_frames, max_frames), num_frames.clamp(max=max_frames)
            else:
                # Padded only to the batch's longest window; the encoder masks past each item's lengths.
                x, lengths = F.pad(stacked, (0, 0, 0, max(0, TIME_REDUCTION - stacked.shape[2]))), num_frames
            logits, embedding = self._graph(x, lengths)
        logits, dimensions = split_scores(logits.float().cpu(), len(self.classes))
        parts = [] if logits is None else [torch.softmax(logits / self.calibration.temperature, dim=1)]
        parts += [] if dimensions is None else [dimensions]
        return torch.cat(parts, dim=1).numpy(), embedding.float().cpu().numpy()

    def _forward_merit(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(w) for w in waves], dtype=torch.int64)
        batch = pad_sequence([torch.from_numpy(w).float() for w in waves], batch_first=True)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            return self.model.head(self.model.encode(batch.to(self.device), lengths.to(self.device)))


def _positive_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value) and value > 0
