"""int8 ONNX: an exported waveform graph statically quantised with onnxruntime's tools, calibrated on a folder of audio.

Only the model's convolutions are quantised (int8 weights per output channel, uint8 activations, onnxruntime's
QLinearConv): they are nearly all of its arithmetic, and u8 × s8 is the product x86 CPUs run fastest. Where the CPU
that quantises has no VNNI or AMX (checked when quantising), the weights keep 7 bits (``reduce_range``), as onnxruntime
advises, so that its AVX2 kernels cannot saturate; a file quantised on a VNNI machine and run on one without can
saturate, so quantise on (or for) the kind of CPU that will run it: ``reduce_range=True`` forces 7 bits.
The front-end stays float32 on purpose: its DFT and Mel products span twelve orders of magnitude (a power spectrum of
int16-range samples), which no 8-bit scale holds, and the features would be noise.
Activation ranges come from running the float model over the calibration audio (min/max, onnxruntime's
``MinMaxCalibrater``); the calibration files should sound like what the model will label."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ser_fast.frontend.constants import MIN_SAMPLES, SAMPLE_RATE
from ser_fast.inference.decoding import AudioInputError, check_waveform, decode_audio
from ser_fast.inference.inputs import list_inputs
from ser_fast.inference.onnx_export import METADATA_PREFIX
from ser_fast.runs.precision import cpu_has_int8_dot

logger = logging.getLogger(__name__)

QUANTIZED_OPS = ("Conv",)
DEFAULT_CALIBRATION_FILES = 200
CALIBRATION_SECONDS = 6.0  # the longest stretch of a calibration file run through the model (its training window)


def calibration_waves(sources: Sequence[str | os.PathLike], max_files: int = DEFAULT_CALIBRATION_FILES,
                      seconds: float = CALIBRATION_SECONDS) -> list[np.ndarray]:
    """Up to ``max_files`` usable recordings from ``sources`` (files, folders, list files), decoded to 16 kHz mono and
    cut to their first ``seconds``; unusable ones are logged and left out. ValueError when none is usable."""
    waves, skipped = [], []
    for item in list_inputs(sources):
        if len(waves) == max_files:
            break
        try:
            if item.error is not None:
                raise AudioInputError(item.error)
            wave, _, _ = decode_audio(item.source)
        except AudioInputError as error:
            skipped.append(str(error))
            continue
        problem = check_waveform(wave, item.source)
        if problem is not None:
            skipped.append(problem)
            continue
        waves.append(wave[:round(seconds * SAMPLE_RATE)])
    for reason in skipped:
        logger.warning("calibration: left out %s", reason)
    if not waves:
        raise ValueError(f"no usable calibration audio in {[os.fspath(s) for s in sources]} ({len(skipped)} files "
                         "left out); give a folder of recordings like those the model will label")
    return waves


def quantize_waveform_model(float_path: str | os.PathLike, out_path: str | os.PathLike,
                            calibration: Sequence[np.ndarray], *, reduce_range: bool | None = None) -> Path:
    """Write the int8 version of the waveform graph at ``float_path`` to ``out_path``, calibrated on the 16 kHz mono
    ``calibration`` waves (one at a time, whole); the float file's ``ser_fast.*`` metadata is kept, with
    ``ser_fast.quantization`` added. ``reduce_range``: 7-bit weights; None decides by this CPU (see the module)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds: Iterator[dict[str, np.ndarray]] = iter(
                {"waveform": wave[None, :].astype(np.float32), "lengths": np.array([wave.size], np.int64)}
                for wave in calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    if isinstance(calibration, np.ndarray) or not isinstance(calibration, Sequence) or not calibration:
        raise ValueError("calibration must be a non-empty list of 16 kHz mono waves (calibration_waves gives one)")
    for i, wave in enumerate(calibration):
        if not isinstance(wave, np.ndarray) or wave.ndim != 1 or wave.dtype.kind != "f" or wave.size < MIN_SAMPLES:
            raise ValueError(f"calibration[{i}] must be a 1-D float array of at least {MIN_SAMPLES} samples at 16 kHz, "
                             f"got {getattr(wave, 'dtype', type(wave).__name__)} {getattr(wave, 'shape', '')}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    reduce_range = not cpu_has_int8_dot() if reduce_range is None else bool(reduce_range)
    float_model = onnx.load_model(str(float_path))
    kind = next((json.loads(p.value) for p in float_model.metadata_props if p.key == METADATA_PREFIX + "model"), None)
    if kind == "merit":
        raise ValueError(f"{float_path}: int8 quantisation is for the CNN models' convolutions; a Sparse MERIT graph "
                         "(transformer and LSTM) stays float32")
    if [i.name for i in float_model.graph.input] != ["waveform", "lengths"]:
        raise ValueError(f"{float_path}: int8 quantisation takes a waveform graph (inputs waveform, lengths), got "
                         f"{[i.name for i in float_model.graph.input]}; export with inputs='waveform'")
    with tempfile.TemporaryDirectory(dir=out_path.parent) as scratch:
        staged = Path(scratch) / out_path.name
        quantize_static(str(float_path), str(staged), Reader(), quant_format=QuantFormat.QOperator,
                        op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        quantized = onnx.load_model(str(staged))
    metadata = {p.key: p.value for p in float_model.metadata_props}
    metadata["ser_fast.quantization"] = json.dumps({
        "weights": "int7 (reduce_range)" if reduce_range else "int8", "per_channel": True, "activations": "uint8",
        "ops": list(QUANTIZED_OPS), "format": "QOperator", "calibration": "min/max",
        "calibration_files": len(calibration)})
    onnx.helper.set_model_props(quantized, metadata)
    tmp = out_path.with_name(out_path.name + ".tmp")
    onnx.save_model(quantized, str(tmp))
    os.replace(tmp, out_path)
    logger.info("quantised %s to int8 (%d calibration files) in %s", float_path, len(calibration), out_path)
    return out_path
