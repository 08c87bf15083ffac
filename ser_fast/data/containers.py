"""Audio in the containers libsndfile does not read (m4a/AAC, mp4, webm/Opus, wma, amr, ...), through PyAV, whose
wheels bundle ffmpeg: what phones, browsers and video calls write. ``ser_fast.data.audio`` asks soundfile first and
comes here only for a file soundfile recognises no format in, so WAV and FLAC never pay for ffmpeg's probing.

PyAV is a core dependency, not an extra: ``ser-fast predict`` on a folder of m4a recordings must work after a plain
``pip install ser_fast``, and an optional decoder would leave a table of formats that only sometimes fail."""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

# ffmpeg muxers whose extensions are not recordings: streaming playlists and manifests (text that names media files).
_PLAYLIST_FORMATS = frozenset(("hls", "dash", "hds", "smoothstreaming"))
# Extensions of an audio muxer that name something else far more often in a folder: TypeScript sources (.ts, MPEG-TS),
# raw PCM (.pcm, LEGO Racers ALP), bare codec bitstreams (.bit, .302). A file named on the command line is still
# decoded by its content whatever its extension.
_NOT_RECORDINGS = frozenset(("ts", "pcm", "bit", "302"))


class ContainerError(ValueError):
    """A file ffmpeg cannot open or decode as audio, with ffmpeg's reason."""


@dataclass(frozen=True)
class ContainerInfo:
    """What a container declares about its first audio stream: ``samplerate`` in Hz, ``channels``, and ``frames``
    (samples per channel) from its declared duration, or None where the container declares none (a raw AAC stream)."""

    samplerate: int
    channels: int
    frames: int | None
    codec: str


@functools.cache
def container_extensions() -> frozenset[str]:
    """The lower-case extensions (no dot) of every container this ffmpeg can hold audio in: each muxer with a default
    audio codec, less playlists, raw PCM streams (header-less samples cannot be decoded without being told their rate
    and encoding; libsndfile's RAW is left out for the same reason) and ``_NOT_RECORDINGS``."""
    extensions: set[str] = set()
    for name in av.formats_available:
        if name in _PLAYLIST_FORMATS:
            continue
        try:
            muxer = av.ContainerFormat(name, "w")
            with av.open(io.BytesIO(), "w", format=name) as container:
                codec = container.default_audio_codec
        except (av.error.FFmpegError, ValueError, OSError):
            continue
        if codec and codec != "none" and not (muxer.long_name or "").startswith("PCM "):
            extensions.update(ext.lower() for ext in muxer.extensions)
    return frozenset(extensions - _NOT_RECORDINGS)


def container_info(path: str | Path) -> ContainerInfo:
    """The first audio stream's rate, channels and declared length; ContainerError if ffmpeg cannot open the file or it
    holds no audio stream."""
    with _opened(path) as container:
        stream = _audio_stream(container, path)
        rate = stream.codec_context.sample_rate
        channels = stream.codec_context.channels
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        else:
            seconds = None
        frames = None if seconds is None or not rate else max(0, round(seconds * rate))
        return ContainerInfo(int(rate or 0), int(channels or 0), frames, stream.codec_context.name)


def container_blocks(path: str | Path, block_frames: int) -> Iterator[np.ndarray]:
    """The first audio stream as float32 ``[frames, channels]`` blocks of about ``block_frames`` frames at the stream's
    own rate, decoded one at a time; ContainerError naming what ffmpeg could not decode."""
    pending: list[np.ndarray] = []
    held = 0
    with _opened(path) as container:
        stream = _audio_stream(container, path)
        resampler = av.AudioResampler(format="fltp")  # float planes, the stream's own layout and rate
        try:
            for frame in _decoded(container, stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().T)
                    held += pending[-1].shape[0]
                    if held >= block_frames:
                        yield np.concatenate(pending)
                        pending, held = [], 0
        except av.error.FFmpegError as error:
            raise ContainerError(f"ffmpeg could not decode the audio ({_reason(error)})") from None
    if pending:
        yield np.concatenate(pending)


def _decoded(container, stream) -> Iterator[av.AudioFrame]:
    yield from container.decode(stream)
    yield None  # flush the resampler


class _opened:
    """``av.open`` of a file object (names that are not valid UTF-8 included), closed with the file."""

    def __init__(self, path: str | Path) -> None:
        self.file = open(os.fsencode(path) if os.name != "nt" else path, "rb")  # closed in __exit__
        try:
            self.container = av.open(self.file, "r")
        except (av.error.FFmpegError, ValueError, OSError) as error:
            self.file.close()
            raise ContainerError(f"ffmpeg recognises no audio container in it ({_reason(error)})") from None

    def __enter__(self):
        return self.container

    def __exit__(self, *exc) -> None:
        self.container.close()
        self.file.close()


def _audio_stream(container, path: str | Path):
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise ContainerError(f"the {container.format.name} container holds no audio stream ({', '.join(kinds)})")
    return container.streams.audio[0]


def _reason(error: Exception) -> str:
    """ffmpeg's message without PyAV's copy of the file name."""
    return getattr(error, "strerror", None) or str(error)
