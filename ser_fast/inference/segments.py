"""Speech segments of a long recording: found by silero-vad (the optional extra ``ser_fast[vad]``; its wheel ships the
model, so nothing is downloaded) or read from a file (a CSV of ``path,start,end[,speaker]`` or a diarizer's RTTM), and
checked against the recording.

silero-vad's starts are close (within 0.08 s on the built-in synthesizer's speech), but its recurrent state keeps a
segment open after the speech stops: 0.1 s into silence, up to 0.7 s into quiet noise. Each end is therefore moved back
to the last 10 ms frame loud enough to be speech: within ``END_DROP_DB`` of the segment's speech level, and
``END_ABOVE_FLOOR_DB`` above the level around that end (the gap silero ran into). Measured on the synthesizer's speech
with gaps of silence and of white noise 20 dB below the speech: every boundary within 0.1 s
(``tests/test_segments.py``); at 10 dB the ends of quiet final syllables can be cut short by up to 0.35 s."""

from __future__ import annotations

import csv
import functools
import importlib.util
import logging
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_fast.frontend.constants import SAMPLE_RATE
from ser_fast.inference.vad_network import SileroNetwork, UnknownSileroGraph

logger = logging.getLogger(__name__)

VAD_MISSING = ("segments='vad' needs the silero-vad and onnx packages; install them with "
               "`pip install 'ser_fast[vad]'` (silero-vad, onnx and onnxruntime)")
FRAME_S = 0.010  # the end refinement's energy frames
LEVEL_PERCENTILE = 95  # a segment's speech level: the 95th percentile of its frames' energy
END_DROP_DB = 25.0
END_ABOVE_FLOOR_DB = 6.0
FLOOR_AROUND_S = 0.3  # the floor beside an end: the median energy from this much before it to this much after
SILENCE_DB = -120.0  # the energy of digital silence
CSV_COLUMNS = ("path", "start", "end")
PROBE_TOLERANCE = 1e-3  # SileroNetwork against silero's own model on a probe: measured 4e-6


class SegmentFileError(ValueError):
    """A segments file that cannot be read (not CSV or RTTM, a bad row, no segments), naming the file and row."""


@dataclass(frozen=True)
class Segment:
    """A stretch of a recording, in seconds from its start, and the speaker a diarizer gave it (None: not given)."""

    start_s: float
    end_s: float
    speaker: str | None = None

    def __post_init__(self) -> None:
        for name in ("start_s", "end_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"a segment's {name} must be a finite number of seconds, got {value!r}")
        if self.speaker is not None and not isinstance(self.speaker, str):
            raise TypeError(f"a segment's speaker must be a str or None, got {type(self.speaker).__name__}")

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def segment_problems(segments: Sequence[Segment], duration_s: float, min_s: float) -> list[str | None]:
    """Why each segment cannot be classified (None where it can): it starts before 0, ends where or before it starts,
    is shorter than ``min_s``, starts past the recording's end or runs past it by more than a frame, or overlaps an
    earlier segment of the same speaker (two speakers may overlap: a diarizer marks overlapped speech so)."""
    problems: list[str | None] = []
    kept: list[tuple[int, Segment]] = []
    for index, segment in enumerate(segments):
        where = f"segment {index} ({segment.start_s:g}-{segment.end_s:g} s)"
        overlapped = next(((i, other) for i, other in kept if other.speaker == segment.speaker
                           and other.start_s < segment.end_s and segment.start_s < other.end_s), None)
        if segment.start_s < 0:
            problems.append(f"{where} starts before the recording (a negative start)")
        elif segment.end_s <= segment.start_s:
            problems.append(f"{where} ends where or before it starts")
        elif segment.start_s >= duration_s:
            problems.append(f"{where} starts after the recording's end at {duration_s:.3f} s")
        elif segment.end_s > duration_s + FRAME_S:
            problems.append(f"{where} runs past the recording's end at {duration_s:.3f} s")
        elif segment.duration_s < min_s:
            problems.append(f"{where} is shorter than one {1000 * min_s:g} ms frame")
        elif overlapped is not None:
            who = "" if segment.speaker is None else f" of the same speaker ({segment.speaker})"
            problems.append(f"{where} overlaps segment {overlapped[0]} ({overlapped[1].start_s:g}-"
                            f"{overlapped[1].end_s:g} s){who}")
        else:
            problems.append(None)
            kept.append((index, segment))
    return problems


def vad_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("silero_vad", "onnx", "onnxruntime"))


@functools.cache
def silero_vad():
    """(each 32 ms frame's speech probability of a wave, silero-vad's segmenter of those probabilities), loaded once
    per process. The probabilities come from ``SileroNetwork`` (silero's network in PyTorch, with the weights of the
    wheel's ONNX model) once it has matched silero's own ONNX model on a probe signal; from silero's own model (slower)
    where it does not or cannot be built (another silero version's network, a missing or corrupt file). Both from the
    wheel, never a file a user gave, nothing unpickled."""
    if not vad_available():
        raise ImportError(VAD_MISSING)
    import torch

    # silero_vad sets torch to one thread when imported; the process's own setting is put back.
    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    torch.set_num_threads(threads)
    silero = load_silero_vad(sequence=True)
    try:
        network = SileroNetwork.from_wheel()
        probe = _probe_signal()
        difference = float(np.abs(network.frame_probabilities(probe) - silero.audio_forward(probe)).max())
        if difference > PROBE_TOLERANCE:
            raise UnknownSileroGraph(f"its probabilities differ from silero's own by {difference:.2g} on a probe")
    except Exception as error:  # whatever stops the port, silero's own model still segments
        logger.warning("silero-vad's network in PyTorch is not used (%s); running silero-vad's own ONNX model, "
                       "several times slower", error)
        return silero.audio_forward, get_speech_timestamps_from_probs
    return network.frame_probabilities, get_speech_timestamps_from_probs


def _probe_signal() -> np.ndarray:
    """2 s of tone bursts with a falling pitch in faint noise: speech-like enough for the network's every layer."""
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    bursts = np.sin(2 * np.pi * (180 - 30 * t) * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    return (0.3 * bursts + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)


def speech_segments(wave: np.ndarray, *, threshold: float = 0.5, min_speech_s: float = 0.25,
                    min_silence_s: float = 0.1) -> list[Segment]:
    """The speech of a mono 16 kHz recording: silero-vad's segments (speech probability above ``threshold``, at least
    ``min_speech_s`` long, split at pauses of ``min_silence_s``), each end moved back as the module docstring says."""
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"wave must be mono [samples] at 16 kHz, got shape {wave.shape}")
    frame_probabilities, timestamps_from_probabilities = silero_vad()
    found = timestamps_from_probabilities(frame_probabilities(wave), sampling_rate=SAMPLE_RATE, threshold=threshold,
                                          min_speech_duration_ms=round(1000 * min_speech_s),
                                          min_silence_duration_ms=round(1000 * min_silence_s), speech_pad_ms=0,
                                          audio_length_samples=len(wave))
    energy = _frame_energy_db(wave)
    segments = []
    for item in found:
        start_s = item["start"] / SAMPLE_RATE
        end_s = _refined_end(energy, start_s, item["end"] / SAMPLE_RATE)
        if end_s is not None:
            segments.append(Segment(start_s, end_s))
    return segments


def _frame_energy_db(wave: np.ndarray) -> np.ndarray:
    """The RMS level of each 10 ms frame in dBFS (digital silence at ``SILENCE_DB``)."""
    hop = round(FRAME_S * SAMPLE_RATE)
    frames = wave[:len(wave) // hop * hop].reshape(-1, hop)
    # Summed in float32 without a float64 copy of the recording (an hour: 460 MB, slower than the VAD's network);
    # 160 squares lose under 1e-5 dB so.
    power = np.einsum("ij,ij->i", frames, frames).astype(np.float64) / hop
    return np.maximum(10 * np.log10(np.maximum(power, 1e-30)), SILENCE_DB)


def _refined_end(energy: np.ndarray, start_s: float, end_s: float) -> float | None:
    first, last = int(start_s / FRAME_S), min(len(energy), int(math.ceil(end_s / FRAME_S)))
    if first >= last:
        return end_s
    level = float(np.percentile(energy[first:last], LEVEL_PERCENTILE))
    around = round(FLOOR_AROUND_S / FRAME_S)
    floor = float(np.median(energy[max(first, last - around):last + around]))
    loud = np.flatnonzero(energy[first:last] >= max(level - END_DROP_DB, floor + END_ABOVE_FLOOR_DB))
    if loud.size == 0:
        return None
    return min(end_s, (first + loud[-1] + 1) * FRAME_S)


def read_segments(path: str | os.PathLike) -> dict[str, list[Segment]]:
    """The segments of a file, by recording: a CSV with a header holding ``path,start,end`` (and optionally
    ``speaker``), keyed by each row's path (relative paths taken from the CSV's folder, made absolute); or an RTTM
    file (``SPEAKER <file-id> <channel> <onset> <duration> ...  <speaker> ...``, a ``.rttm`` suffix), keyed by file-id
    (a recording's file name without its extension). SegmentFileError naming the file and row for anything else."""
    path = Path(path)
    if not path.is_file():
        raise SegmentFileError(f"--segments {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SegmentFileError(f"--segments {path}: not a readable text file ({error})") from None
    segments = _read_rttm(path, text) if path.suffix.lower() == ".rttm" else _read_csv(path, text)
    if not any(segments.values()):
        raise SegmentFileError(f"--segments {path}: holds no segments")
    for found in segments.values():
        found.sort(key=lambda s: (s.start_s, s.end_s))
    return segments


def _read_csv(path: Path, text: str) -> dict[str, list[Segment]]:
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        return {}
    header = [name.strip().lower() for name in rows[0]]
    missing = [name for name in CSV_COLUMNS if name not in header]
    if missing:
        raise SegmentFileError(f"--segments {path}: the header {rows[0]} lacks {missing}; expected path,start,end"
                               "[,speaker] (or an .rttm file)")
    column = {name: header.index(name) for name in (*CSV_COLUMNS, "speaker") if name in header}
    segments: dict[str, list[Segment]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(field.strip() for field in row):
            continue
        if len(row) != len(header):
            raise SegmentFileError(f"--segments {path}, row {number}: {len(row)} fields, expected {len(header)}")
        source = row[column["path"]].strip()
        audio = Path(source) if os.path.isabs(source) else path.parent / source
        speaker = row[column["speaker"]].strip() or None if "speaker" in column else None
        segment = _segment(path, number, row[column["start"]], row[column["end"]], speaker)
        segments.setdefault(os.path.abspath(audio), []).append(segment)
    return segments


def _read_rttm(path: Path, text: str) -> dict[str, list[Segment]]:
    segments: dict[str, list[Segment]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";") or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise SegmentFileError(f"--segments {path}, line {number}: {len(fields)} fields; an RTTM SPEAKER line "
                                   "has at least 8 (type, file, channel, onset, duration, ortho, stype, name)")
        onset = _seconds(path, number, fields[3], "onset")
        segment = _segment(path, number, fields[3], str(onset + _seconds(path, number, fields[4], "duration")),
                           None if fields[7] == "<NA>" else fields[7])
        segments.setdefault(fields[1], []).append(segment)
    return segments


def _seconds(path: Path, number: int, text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SegmentFileError(f"--segments {path}, row {number}: {name} {text!r} is not a number of seconds") \
            from None
    if not math.isfinite(value):
        raise SegmentFileError(f"--segments {path}, row {number}: {name} {text!r} is not finite")
    return value


def _segment(path: Path, number: int, start: str, end: str, speaker: str | None) -> Segment:
    return Segment(_seconds(path, number, start, "start"), _seconds(path, number, end, "end"), speaker)


def segments_for(table: dict[str, list[Segment]], source: str) -> list[Segment] | None:
    """The segments a file's table gives ``source``: by its absolute path (CSV), else by its file name without the
    extension (RTTM's file-id); None when the table names it in neither way."""
    found = table.get(os.path.abspath(source))
    return found if found is not None else table.get(Path(source).stem)
