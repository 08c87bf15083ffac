"""The deployment rows of ``bench_inference.py``: the exported waveform graph in onnxruntime (float32 and int8), the
pipeline users reach for today (Hugging Face ``pipeline("audio-classification")``), VAD segmentation of a long
recording, and each path's share of the machine's measured GEMM peak in the precision it runs."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime
import soundfile as sf
import torch
from torch.utils.flop_counter import FlopCounterMode

from ser_fast.data.audio import load_audio
from ser_fast.inference.batching import length_buckets
from ser_fast.inference.onnx_export import export_run
from ser_fast.inference.onnx_quantize import calibration_waves, quantize_waveform_model
from ser_fast.inference.recognizer import EmotionRecognizer
from ser_fast.inference.segments import silero_vad, speech_segments
from ser_fast.inference.vad_network import sequence_model_path

BATCH = 32
MAX_BATCH_SAMPLES = 2400 * 160  # the recognizer's frame cap, in samples
CALIBRATION_FILES = 100
HF_FILES = 96  # the Hugging Face pipeline runs a 95M-parameter network: a subset, timed beside the fast path on it


def peak_rates(size: int = 2048, rounds: int = 3) -> dict[str, float]:
    """This machine's GEMM rate in G(FL)OP/s per precision: float32 and bfloat16 matmul, int8 ``torch._int_mm``
    (int32 accumulation) where torch has it on the CPU."""
    def rate(call) -> float:
        call()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return 2 * size**3 / statistics.median(times) / 1e9

    a = torch.randn(size, size)
    rates = {"fp32": rate(lambda: a @ a), "bf16": rate(lambda: a.bfloat16() @ a.bfloat16())}
    q = torch.randint(-128, 127, (size, size), dtype=torch.int8)
    try:
        rates["int8"] = rate(lambda: torch._int_mm(q, q))
    except (RuntimeError, AttributeError):
        pass
    return rates


def export_models(run_dir: Path, work: Path, files: list[str]) -> tuple[Path, Path]:
    """The run's waveform graph in float32 and int8 (calibrated on the first ``CALIBRATION_FILES`` of ``files``: pass
    files the scores are not taken on), in ``work``; reused when there."""
    float_path, int8_path = work / "model-float32.onnx", work / "model-int8-calibrated-on-training.onnx"
    if not float_path.is_file():
        export_run(run_dir, float_path, inputs="waveform")
    if not int8_path.is_file():
        quantize_waveform_model(float_path, int8_path, calibration_waves(files, max_files=CALIBRATION_FILES))
    return float_path, int8_path


class OnnxLabeler:
    """Files → labels with an exported waveform graph: decoded, grouped by length (at most ``BATCH`` and
    ``MAX_BATCH_SAMPLES`` per run, as the recognizer groups windows), zero-padded, one session run per group."""

    def __init__(self, path: Path, classes: tuple[str, ...], threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.classes = classes

    def __call__(self, files: list[str]) -> list[str]:
        waves = [load_audio(f) for f in files]
        labels: list[str] = [""] * len(files)
        for group in length_buckets([w.size for w in waves], BATCH, max_batch_frames=MAX_BATCH_SAMPLES):
            batch = np.zeros((len(group), max(waves[i].size for i in group)), np.float32)
            for row, i in enumerate(group):
                batch[row, :waves[i].size] = waves[i]
            lengths = np.array([waves[i].size for i in group], np.int64)
            probabilities = self.session.run(None, {"waveform": batch, "lengths": lengths})[0]
            for row, i in enumerate(group):
                labels[i] = self.classes[int(probabilities[row].argmax())]
        return labels


def hf_pipeline(work: Path, classes: tuple[str, ...]):
    """``pipeline("audio-classification")`` over a wav2vec 2.0 base network with a mean-pooled linear head of
    ``classes``, as SpeechBrain's IEMOCAP emotion model is built; random weights (speed does not depend on them),
    saved to and loaded from ``work`` (nothing downloaded)."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification, pipeline

    folder = work / "hf-wav2vec2-base-emotion"
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        config = Wav2Vec2Config(num_labels=len(classes), id2label=dict(enumerate(classes)),
                                label2id={c: i for i, c in enumerate(classes)}, use_weighted_layer_sum=False)
        Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(folder)
    return pipeline("audio-classification", model=str(folder), device=-1)


def hf_labels(classifier, files: list[str]) -> list[str]:
    return [classifier(load_audio(f), top_k=1)[0]["label"] for f in files]


def long_recording(files: list[str], path: Path, minutes: float = 60.0) -> Path:
    """A recording of ``minutes``: the files one after another (cycled), each followed by 0.5 s of silence."""
    if path.is_file() and sf.info(path).duration >= 60 * minutes:
        return path
    gap = np.zeros(8000, np.float32)
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="FLOAT") as out:
        written, k = 0, 0
        while written < 60 * minutes * 16000:
            wave = load_audio(files[k % len(files)])
            out.write(np.concatenate([wave, gap]))
            written, k = written + wave.size + gap.size, k + 1
    return path


def vad_share(recognizer: EmotionRecognizer, path: Path) -> dict[str, float]:
    """Seconds of the whole segmented prediction of ``path`` (decode, VAD, windows, model), of its VAD alone, and of
    silero-vad's own sequence ONNX model (as its wheel sets it up: one onnxruntime thread) finding the segments of the
    same recording, with the largest difference between the two's frame probabilities."""
    start = time.perf_counter()
    prediction = recognizer.predict([str(path)], segments="vad")[0]
    total = time.perf_counter() - start
    wave = load_audio(path)
    start = time.perf_counter()
    speech_segments(wave)
    vad = time.perf_counter() - start
    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad
    from silero_vad.sequence_vad import get_speech_timestamps_sequence

    torch.set_num_threads(threads)  # silero_vad sets one thread when imported
    silero = load_silero_vad(sequence=True)
    start = time.perf_counter()
    get_speech_timestamps_sequence(wave, silero, min_silence_duration_ms=100, speech_pad_ms=0)
    silero_s = time.perf_counter() - start
    difference = np.abs(silero_vad()[0](wave) - silero.audio_forward(wave)).max()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # the same threads as torch's, for a like-for-like figure
    silero.session = onnxruntime.InferenceSession(str(sequence_model_path()), options,
                                                  providers=["CPUExecutionProvider"])
    start = time.perf_counter()
    get_speech_timestamps_sequence(wave, silero, min_silence_duration_ms=100, speech_pad_ms=0)
    silero_threads_s = time.perf_counter() - start
    return {"total_s": total, "vad_s": vad, "silero_s": silero_s, "silero_threads_s": silero_threads_s,
            "threads": threads, "max_difference": float(difference),
            "audio_s": wave.size / 16000, "segments": len(prediction.segments)}


def model_flops(recognizer: EmotionRecognizer, files: list[str]) -> float:
    """The model FLOPs of one pass of the fast path over ``files`` (its batches, padding included), counted on the
    eager graph in float32; the other paths compute the same network on the same windows."""
    counting = EmotionRecognizer(recognizer.model, recognizer.config, recognizer.classes, precision="fp32")
    with FlopCounterMode(display=False) as counter:
        counting.predict(files, batch_size=BATCH)
    return float(counter.get_total_flops())
