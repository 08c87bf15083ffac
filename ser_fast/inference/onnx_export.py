"""ONNX export of the inference graph: ``waveform [B, S]`` (16 kHz mono float32 samples in [-1, 1]) and ``lengths [B]``
int64 samples in, or with ``inputs="features"`` ``features [B, 3, T, 80]`` and ``lengths [B]`` frames; ``probabilities
[B, C]`` (the calibrated softmax of the model's logits) out, with B and S (or T) dynamic. The waveform graph holds the
front-end (``ser_fast.frontend.graph.LogMelGraph``), so a user needs onnxruntime and numpy, not our recipe. Sparse MERIT
exports from samples only, as its SER graph (probabilities) or its SE graph (``task="se"``: ``enhanced [B, S]``, the
denoised waveform), each holding the whole network (``ser_fast.inference.onnx_merit``).

The graph is what the model computes in eval mode, without the input checks a traced graph cannot hold: BatchNorm
folded, the padding masks always on (the eager encoder skips them when nothing is padded: same result), the fused ops as
their references (``ser_fast.ops.export``), EDRL-MEA's MB-PLS projection in float64. The file's ``metadata_props`` hold
the class names, the features the graph expects and, from :func:`export_run`, the training settings, as JSON
(:func:`read_metadata`). Needs the ``ser_fast[export]`` extra (onnx, onnxscript)."""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ser_fast import __version__
from ser_fast.data.dimensions import DIMENSIONS, DimensionScale
from ser_fast.frontend.constants import DELTA_WINDOW, IN_CHANNELS, INT16_SCALE, MIN_SAMPLES, N_MELS
from ser_fast.frontend.graph import LogMelGraph
from ser_fast.frontend.recipe import model_frontend
from ser_fast.inference.graph import fold_batchnorm
from ser_fast.inference.onnx_merit import DIMENSIONS_OUTPUT, EXAMPLE_SAMPLES, OUTPUT_NAMES, TASKS, MeritGraph
from ser_fast.models.encoder import TIME_REDUCTION, AcousticEncoder
from ser_fast.models.targets import has_dimensions, split_scores
from ser_fast.ops.export import onnx_program
from ser_fast.runs.calibration import saved_calibration
from ser_fast.runs.layout import model_folder
from ser_fast.runs.model_files import read_model_files
from ser_fast.runs.registry import FEATURES, kind_of_model
from ser_fast.runs.saved import model_from_saved

__all__ = ["ProbabilityGraph", "WaveformGraph", "export_onnx", "export_run", "read_metadata"]

logger = logging.getLogger(__name__)

INPUTS = ("waveform", "features")
INPUT_NAMES = {"waveform": ("waveform", "lengths"), "features": ("features", "lengths")}
OUTPUT_NAME = "probabilities"
METADATA_PREFIX = "ser_fast."
# The dynamo exporter's lowest opset: asked for less, it exports at 18 and tries a conversion that
# may leave the file at 18 anyway.
MIN_OPSET = 18
DEFAULT_FRAMES = 600
# Traced with two utterances: torch.export specialises a dimension of size 1 to the constant 1.
EXAMPLE_BATCH = 2
_EXTRA_HINT = "install it with `pip install 'ser_fast[export]'` (onnx, onnxscript; onnxruntime to run the file)"


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    opset: int | None = None,
    dynamic: bool = True,
    frames: int | None = None,
    settings: Mapping[str, Any] | None = None,
    temperature: float = 1.0,
    inputs: str | None = None,
    task: str = "ser",
) -> Path:
    """Write ``model``'s inference graph to the ONNX file ``path``; returns the path.

    Args:
        model: a :class:`~ser_fast.models.Baseline`, :class:`~ser_fast.models.DSNet`,
            :class:`~ser_fast.models.edrl_mea.EDRLMEA` (aligned or not) or a Sparse MERIT network (``SparseMERIT``,
            ``SEThenSER``); left unmodified.
        path: the ``.onnx`` file to write (its folder is created). Weights are stored inside it.
        classes: the class names in the order of the model's outputs, recorded as ``ser_fast.classes`` (default: none).
        opset: the ONNX opset, 18 up to what the installed onnx knows; default the exporter's.
        dynamic: B and T (>= 16; S for waveform graphs) are free in the graph. False fixes them to 1 and ``frames``.
        frames: T of the example input (the fixed T when ``dynamic=False``); default the ``max_frames`` of ``settings``,
            else 600 (DSNet's 6 s). Sparse MERIT: S is fixed to ``settings["max_seconds"]`` (else 2 s) instead.
        settings: the model's training settings (JSON-able), recorded as ``ser_fast.settings``.
        temperature: the calibration's T: the graph's probabilities are ``softmax(logits / T)``, as predict's
            (recorded as ``ser_fast.temperature``).
        inputs: ``"features"`` (the front-end's output in; the CNN models' default, as before) or ``"waveform"``
            (samples in; the front-end is in the graph: what ``ser-fast export`` writes, and Sparse MERIT's only form).
        task: ``"ser"`` (probabilities) or, for Sparse MERIT, ``"se"`` (the enhanced waveform ``enhanced [B, S]``).

    A features graph's ``features`` are log-Mel, Δ, ΔΔ as ``ser_fast.frontend.recipe.model_features`` computes them;
    ``lengths`` the valid frames of each utterance (values outside 1..T are clamped to it). A waveform graph's
    ``lengths`` are samples (clamped to 0..S; Sparse MERIT's network sees at least its ``min_samples``). Raises
    TypeError / ValueError for a wrong argument, ImportError when onnx or onnxscript is missing."""
    kind = _model_kind(model)
    merit = kind.input != FEATURES
    inputs = _check_inputs(inputs, merit)
    if task not in TASKS or (task != "ser" and not merit):
        raise ValueError(f"task must be one of {TASKS} ('se' for Sparse MERIT only), got {task!r}")
    kind = kind.name
    path = _check_path(path)
    classes = _check_classes(classes, model, kind)
    opset = _check_opset(opset)
    if not isinstance(dynamic, bool):
        raise TypeError(f"dynamic must be a bool, got {type(dynamic).__name__}")
    if settings is not None and not isinstance(settings, Mapping):
        raise TypeError(f"settings must be a mapping (the training settings) or None, got {type(settings).__name__}")
    frames = _check_frames(frames, settings)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    onnx = _require_onnx()

    batch = EXAMPLE_BATCH if dynamic else 1
    if merit:
        graph = MeritGraph(model, task, float(temperature)).eval()
        samples = int(round(float((settings or {}).get("max_seconds", 0)) * 16000)) or EXAMPLE_SAMPLES
        example = (torch.zeros(batch, samples), torch.full((batch,), samples, dtype=torch.int64))
    elif inputs == "waveform":
        graph = ProbabilityGraph(model, float(temperature)).eval()
        graph = WaveformGraph(graph).eval()
        samples = samples_of(frames)
        example = (torch.zeros(batch, samples), torch.full((batch,), samples, dtype=torch.int64))
    else:
        graph = ProbabilityGraph(model, float(temperature)).eval()
        example = (torch.zeros(batch, IN_CHANNELS, frames, N_MELS), torch.full((batch,), frames, dtype=torch.int64))
    outputs = graph.output_names
    min_samples = graph.min_samples if merit else model_frontend().options.window_size
    scale = _dimension_scale(outputs, settings)
    if scale is not None:
        graph = RestoredDimensions(graph, scale).eval()
    proto = _to_onnx_proto(graph, example, opset, dynamic, inputs, outputs, min_samples)
    described = (_merit_metadata(task, example[0].shape[1], dynamic, graph.num_classes, min_samples) if merit
                 else _metadata(frames, dynamic, graph.num_classes, inputs))
    if scale is not None:
        described = _with_dimensions(described, scale, "B" if dynamic else 1, outputs)
    metadata = {"model": kind, **described, "version": __version__, "temperature": float(temperature)}
    if classes is not None:
        metadata["classes"] = list(classes)
    if settings is not None:
        metadata["settings"] = dict(settings)
    onnx.helper.set_model_props(proto, {METADATA_PREFIX + k: json.dumps(v) for k, v in metadata.items()})
    onnx.checker.check_model(proto, full_check=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(proto, str(tmp), save_as_external_data=False)
    os.replace(tmp, path)
    logger.info("exported %s's %s graph (%d classes, opset %d) to %s", kind, task, graph.num_classes,
                proto.opset_import[0].version, path)
    return path


def export_run(run_dir: str | os.PathLike, path: str | os.PathLike, fold: str | None = None, *,
               opset: int | None = None, inputs: str | None = None, task: str = "ser") -> Path:
    """Export a trained fold's model (safetensors + JSON, nothing unpickled) with its class names and training settings
    in the ONNX metadata; returns the path written. ``run_dir`` is a run folder or one fold's folder; ``fold`` names a
    fold of a run folder, by default the one :meth:`~ser_fast.inference.EmotionRecognizer.from_pretrained` picks.
    ``inputs`` and ``task`` as :func:`export_onnx`'s (``task="se"``: a Sparse MERIT run's enhancement graph)."""
    saved = read_model_files(_fold_dir(run_dir, fold))
    model, config, classes = model_from_saved(saved)
    return export_onnx(model, path, classes=classes, opset=opset, settings=config.to_dict(),
                       frames=getattr(config, "max_frames", None), temperature=saved_calibration(saved).temperature,
                       inputs=inputs, task=task)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``ser_fast.*`` metadata of an exported file, decoded: ``classes``, ``model``, ``features``, ``inputs``,
    ``outputs`` and, from :func:`export_run`, ``settings``."""
    onnx = _require_onnx()
    path = Path(_check_path_type(path))
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected an ONNX file written by export_onnx")
    proto = onnx.load_model(str(path), load_external_data=False)
    return {p.key.removeprefix(METADATA_PREFIX): json.loads(p.value) for p in proto.metadata_props
            if p.key.startswith(METADATA_PREFIX)}


class ProbabilityGraph(nn.Module):
    """``forward(features, lengths) -> probabilities``, on a float32 eval-mode copy of ``model`` with BatchNorm folded:
    its encoder as :meth:`AcousticEncoder.trunk` with the masks always on, then the model's own ``head(h)``. A model
    with a dimensional head (``ser_fast.models.targets``) adds ``dimensions [B, 3]`` on [0, 1] (a dimensional model
    gives that output alone); ``output_names`` names the outputs in order, and with two ``forward`` returns a
    tuple."""

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        _model_kind(model)
        self.temperature = temperature
        self.model = fold_batchnorm(model).float().cpu()  # a deep copy, in eval mode
        self.num_classes = _num_classes(self.model)
        dimensional = has_dimensions(getattr(self.model, "target", "categorical"))
        self.output_names = ((OUTPUT_NAME,) if self.num_classes else ()) + ((DIMENSIONS_OUTPUT,) if dimensional
                                                                            else ())

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        encoder: AcousticEncoder = self.model.encoder
        valid = torch.clamp(lengths, min=1, max=features.shape[2])
        frames, valid = encoder.trunk(features, valid)
        # The attention pool is the op ser_fast::attention_pool; ser_fast.ops.export writes its reference.
        scores, _ = self.model.head(encoder.temporal_pool(frames, valid))
        logits, dimensions = split_scores(scores.float(), self.num_classes)
        outputs = [] if logits is None else [torch.softmax(logits / self.temperature, dim=1)]
        outputs += [] if dimensions is None else [dimensions]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


class RestoredDimensions(nn.Module):
    """``graph``'s outputs with its ``dimensions`` brought from [0, 1] back to ``scale`` (the training corpus'
    rating scale), as :class:`~ser_fast.inference.EmotionRecognizer` gives them: ``low + v * (high - low)``."""

    def __init__(self, graph: nn.Module, scale: DimensionScale) -> None:
        super().__init__()
        self.inner = graph
        self.low, self.span = float(scale.low), float(scale.high - scale.low)
        self.num_classes, self.output_names = graph.num_classes, graph.output_names

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.inner(inputs, lengths)
        outputs = list(outputs) if isinstance(outputs, tuple) else [outputs]
        index = self.output_names.index(DIMENSIONS_OUTPUT)
        outputs[index] = self.low + outputs[index] * self.span
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def samples_of(frames: int) -> int:
    """The samples that make ``frames`` 25 ms frames every 10 ms."""
    options = model_frontend().options
    return (frames - 1) * options.window_shift + options.window_size


class WaveformGraph(nn.Module):
    """``forward(waveform [B, S], lengths [B] samples) -> probabilities``: :class:`LogMelGraph`, then ``graph`` (a
    :class:`ProbabilityGraph`). The samples are padded with ``TIME_REDUCTION - 1`` frames of zeros first, so that even
    one 25 ms frame reaches the encoder's four 2x2 pools; the padding lies past every item's frames, which the graph
    masks (as the recognizer pads a batch to its longest window)."""

    def __init__(self, graph: ProbabilityGraph) -> None:
        super().__init__()
        self.frontend = LogMelGraph()
        self.probabilities = graph  # not "graph": that is an fx GraphModule's own attribute
        self.num_classes = graph.num_classes
        self.output_names = graph.output_names
        self.padding = (TIME_REDUCTION - 1) * self.frontend.options.window_shift

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        valid = torch.clamp(lengths, min=0, max=waveform.shape[1])
        features, num_frames = self.frontend(torch.nn.functional.pad(waveform, (0, self.padding)), valid)
        return self.probabilities(features, num_frames)


def _to_onnx_proto(graph: nn.Module, example: tuple[torch.Tensor, torch.Tensor], opset: int | None, dynamic: bool,
                   inputs: str, outputs: Sequence[str], min_samples: int):
    # By position, not by argument name: RestoredDimensions wraps the graphs under names of its own.
    dynamic_shapes = None
    if dynamic:
        batch = torch.export.Dim("batch", min=1)
        if inputs == "waveform":
            samples = torch.export.Dim("samples", min=min_samples)
            dynamic_shapes = ({0: batch, 1: samples}, {0: batch})
        else:
            frames = torch.export.Dim("frames", min=TIME_REDUCTION)
            dynamic_shapes = ({0: batch, 2: frames}, {0: batch})
    with torch.no_grad(), warnings.catch_warnings():
        # torch's own pytree deprecation notice, raised inside the exporter, not by this code.
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*LeafSpec.*")
        # features and lengths share the batch Dim on purpose; the exporter notes that it names it once.
        warnings.filterwarnings("ignore", category=UserWarning, message=r".*axis name.*will not be used.*")
        program = onnx_program(graph, example, dynamic_shapes=dynamic_shapes, input_names=list(INPUT_NAMES[inputs]),
                               output_names=list(outputs), opset_version=opset, external_data=False, verbose=False)
    return program.model_proto


def _metadata(frames: int, dynamic: bool, num_classes: int, inputs: str) -> dict[str, Any]:
    """The CNN models' graph: its inputs, output and the features the model reads."""
    fbank = model_frontend().options.to_dict()
    batch, time = ("B", "T") if dynamic else (1, frames)
    described = {
        "features": {"features": {"shape": [batch, IN_CHANNELS, time, N_MELS], "dtype": "float32"},
                     "lengths": {"shape": [batch], "dtype": "int64", "meaning": "valid frames per utterance, 1..T"}},
        "waveform": {"waveform": {"shape": [batch, "S" if dynamic else samples_of(frames)], "dtype": "float32",
                                  "meaning": "16 kHz mono samples in [-1, 1], zero-padded past each utterance; "
                                             f"S >= {MIN_SAMPLES} (one 25 ms frame)"},
                     "lengths": {"shape": [batch], "dtype": "int64",
                                 "meaning": f"valid samples per utterance, {MIN_SAMPLES}..S"}},
    }
    return {
        "task": "ser",
        "num_classes": num_classes,
        "input": inputs,
        "inputs": described[inputs],
        "outputs": {OUTPUT_NAME: {"shape": [batch, num_classes], "dtype": "float32",
                                  "meaning": "softmax(logits / temperature) over the classes, in the order of "
                                             "'classes'"}},
        "features": {
            "channels": ["log-Mel", "delta", "delta-delta"], "delta_window": DELTA_WINDOW, "fbank": fbank,
            "waveform_scale": INT16_SCALE, "normalize": "per utterance: mean 0, std 1 per channel and mel bin "
                                                        "over the valid frames, before any padding",
            "min_frames": TIME_REDUCTION, "max_frames": frames,
            "made_by": "ser_fast.frontend.recipe.model_features",
        },
    }


def _merit_metadata(task: str, samples: int, dynamic: bool, num_classes: int, min_samples: int) -> dict[str, Any]:
    """Sparse MERIT's graphs: samples in, probabilities or the enhanced samples out; the front-end is the model's."""
    batch, time = ("B", "S") if dynamic else (1, samples)
    outputs = {
        "ser": {"shape": [batch, num_classes], "dtype": "float32",
                "meaning": "softmax(logits / temperature) over the classes, in the order of 'classes'"},
        "se": {"shape": [batch, time], "dtype": "float32",
               "meaning": "the enhanced 16 kHz samples (the noisy phase), zero past each utterance's length"},
    }
    return {
        "task": task,
        "num_classes": num_classes,
        "input": "waveform",
        "inputs": {"waveform": {"shape": [batch, time], "dtype": "float32",
                                "meaning": "16 kHz mono samples, zero-padded past each utterance; "
                                           f"S >= {min_samples} (the SSL model's and the STFT's least)"},
                   "lengths": {"shape": [batch], "dtype": "int64",
                               "meaning": f"valid samples per utterance, {min_samples}..S"}},
        "outputs": {OUTPUT_NAMES[task]: outputs[task]},
        "features": {"made_by": "the model's own front-end, inside the graph (Sparse MERIT)"},
    }


def _dimension_scale(outputs: Sequence[str], settings: Mapping[str, Any] | None) -> DimensionScale | None:
    """The rating scale a graph with a ``dimensions`` output restores them to: the training settings'."""
    if DIMENSIONS_OUTPUT not in outputs:
        return None
    scale = (settings or {}).get("dimension_scale")
    if scale is None:
        raise ValueError("the model predicts arousal, valence and dominance: pass its training settings (settings="
                         "config.to_dict(), with their dimension_scale) so the graph gives them on the corpus' scale; "
                         "export_run does")
    return DimensionScale(*scale)


def _with_dimensions(described: dict[str, Any], scale: DimensionScale, batch: int | str,
                     names: Sequence[str]) -> dict[str, Any]:
    """The metadata of a graph with a ``dimensions`` output (``names``: the graph's outputs): it, the dimensions'
    names and their scale."""
    meaning = (f"{', '.join(DIMENSIONS)} (in this order) on the training corpus' rating scale {scale} (a regression "
               "head trained with the CCC loss)")
    outputs = {**{name: value for name, value in described["outputs"].items() if name in names},
               DIMENSIONS_OUTPUT: {"shape": [batch, len(DIMENSIONS)], "dtype": "float32", "meaning": meaning}}
    return {**described, "outputs": outputs, "dimensions": list(DIMENSIONS), "dimension_scale": scale.as_dict()}


def _model_kind(model: object):
    try:
        return kind_of_model(model)
    except TypeError:
        raise TypeError(f"model must be a Baseline, DSNet, EDRLMEA or a Sparse MERIT network (ser_fast.models), got "
                        f"{type(model).__name__}") from None


def _check_inputs(inputs: object, merit: bool) -> str:
    if inputs is None:
        return "waveform" if merit else "features"
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
    if merit and inputs != "waveform":
        raise ValueError("Sparse MERIT exports from samples only (inputs='waveform'): its front-end is part of the "
                         "network")
    return inputs


def _fold_dir(run_dir: str | os.PathLike, fold: str | None) -> Path:
    return model_folder(Path(_check_path_type(run_dir, "run_dir")), fold)


def _check_path_type(path: object, argument: str = "path") -> str | os.PathLike:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a str or os.PathLike, got {type(path).__name__}")
    return path


def _check_path(path: object) -> Path:
    path = Path(_check_path_type(path))
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"path must name an .onnx file, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder; expected the .onnx file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _check_classes(classes: object, model: nn.Module, kind: str) -> tuple[str, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise TypeError(f"classes must be a sequence of class names, got {type(classes).__name__}")
    if not all(isinstance(name, str) for name in classes):
        raise TypeError(f"classes must all be str, got {list(classes)!r}")
    num_classes = _num_classes(model)
    if len(classes) != num_classes:
        raise ValueError(f"classes has {len(classes)} names but the {kind} model has {num_classes} outputs")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct, got {list(classes)!r}")
    return tuple(classes)


def _num_classes(model: nn.Module) -> int:
    """The model's class outputs (every model kind keeps ``num_classes``): 0 for a dimensional model."""
    return int(model.num_classes)


def _check_opset(opset: object) -> int | None:
    if opset is None:
        return None
    onnx = _require_onnx()
    highest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, numbers.Integral):
        raise TypeError(f"opset must be an int or None, got {type(opset).__name__}")
    if not MIN_OPSET <= opset <= highest:
        raise ValueError(f"opset must be in {MIN_OPSET}..{highest} (the exporter's lowest .. the installed "
                         f"onnx's highest), got {opset}")
    return int(opset)


def _check_frames(frames: object, settings: Mapping[str, Any] | None) -> int:
    if frames is None:
        frames = (settings or {}).get("max_frames", DEFAULT_FRAMES)
    if isinstance(frames, bool) or not isinstance(frames, numbers.Integral) or frames < TIME_REDUCTION:
        raise ValueError(f"frames must be an int >= {TIME_REDUCTION} (the encoder's four 2x2 pools), got {frames!r}")
    return int(frames)


def _require_onnx():
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's dynamo exporter builds the graph with it)
    except ImportError as error:
        raise ImportError(f"ONNX export needs the {error.name!r} package: {_EXTRA_HINT}") from error
    return onnx
