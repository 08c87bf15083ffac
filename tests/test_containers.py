"""Audio in the containers phones and browsers write (m4a/AAC, mp4, webm/Opus, mp3, raw AAC), written by PyAV itself:
their duration and sample rate are what the container says, the decoded samples stay close to the source, long or
length-less files stream, and a corrupt container or one without audio is named with ffmpeg's reason."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, speech_like, write_container
from scipy import signal

from ser_fast.data.audio import AudioError, audio_blocks, audio_info, read_audio
from ser_fast.data.containers import container_extensions
from ser_fast.inference.streaming import WindowStream, needs_streaming

SOURCE_RATE = 16000
SECONDS = 1.37  # not a whole number of codec frames
# AAC adds up to two 1024-sample frames (the encoder's priming and the last frame's padding); Opus and MP3 less.
LENGTH_SLACK_S = 2048 / SOURCE_RATE
MIN_SNR_DB = 10.0  # lossy codecs at their default bitrates keep a speech-like signal well above this

# (file name, muxer, encoder, the encoder's rate, channels, who decodes it)
FORMATS = {
    "m4a-aac": ("voice.m4a", "ipod", "aac", SOURCE_RATE, 1, "ffmpeg"),
    "m4a-aac-stereo-44k": ("stereo.m4a", "ipod", "aac", 44100, 2, "ffmpeg"),
    "mp4-aac": ("clip.mp4", "mp4", "aac", SOURCE_RATE, 1, "ffmpeg"),
    "webm-opus": ("browser.webm", "webm", "libopus", 48000, 1, "ffmpeg"),
    "mp3": ("podcast.mp3", "mp3", "libmp3lame", SOURCE_RATE, 1, "soundfile"),
    "aac-adts": ("stream.aac", "adts", "aac", SOURCE_RATE, 1, "ffmpeg"),
}


def _source(channels: int) -> np.ndarray:
    mono = speech_like(round(SECONDS * SOURCE_RATE), SOURCE_RATE, seed=3) / 32768.0
    return mono if channels == 1 else np.stack([mono, 0.5 * mono], axis=1)


@pytest.fixture(params=list(FORMATS), ids=str)
def encoded(request, tmp_path):
    name, muxer, codec, rate, channels, decoder = FORMATS[request.param]
    source = _source(channels)
    path = write_container(tmp_path / name, source, SOURCE_RATE, muxer, codec, codec_rate=rate)
    return path, source if channels == 1 else source.mean(axis=1), rate, decoder


def _aligned_snr_db(decoded: np.ndarray, source: np.ndarray) -> float:
    """The SNR of ``decoded`` against ``source`` after shifting it by the codec's delay (found by cross-correlation)."""
    correlation = signal.correlate(decoded, source, mode="full", method="fft")
    lag = int(np.argmax(correlation)) - (source.size - 1)
    assert abs(lag) <= 2048, f"the codec delayed the signal by {lag} samples"
    start = max(lag, 0)
    part = decoded[start:start + source.size - max(-lag, 0)]
    reference = source[max(-lag, 0):max(-lag, 0) + part.size]
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((part - reference) ** 2)))


def test_a_container_declares_its_rate_and_duration(encoded):
    path, _, rate, decoder = encoded
    info = audio_info(path)
    assert (info.samplerate, info.decoder) == (rate, decoder)
    assert info.frames is None or abs(info.frames / rate - SECONDS) <= LENGTH_SLACK_S


def test_the_decoded_samples_stay_close_to_the_source(encoded):
    path, source, _, _ = encoded
    wave, warning = read_audio(path, SOURCE_RATE)
    assert warning is None and wave.dtype == np.float32
    assert abs(wave.size / SOURCE_RATE - SECONDS) <= LENGTH_SLACK_S
    assert _aligned_snr_db(wave, source.astype(np.float32)) >= MIN_SNR_DB


def test_blocks_add_up_to_the_whole_file(encoded):
    path, _, rate, _ = encoded
    whole, _ = read_audio(path, rate)
    blocks = list(audio_blocks(path, 4000))
    assert len(blocks) > 1 and all(block.ndim == 1 for block in blocks)
    # libsndfile's mpg123 rounds a block's last samples differently from a whole read (by up to 3e-8)
    assert_close(np.concatenate(blocks), whole, atol=1e-6, msg="blocks against the whole file")


def test_a_container_without_a_declared_length_is_streamed_window_by_window(tmp_path):
    path = write_container(tmp_path / "stream.aac", _source(1), SOURCE_RATE, "adts", "aac")
    whole, _ = read_audio(path, SOURCE_RATE)
    if audio_info(path).frames is None:
        assert needs_streaming(path)
    windows = list(WindowStream(path, window=4000, hop=4000, sample_rate=SOURCE_RATE))
    assert [start for start, _ in windows][:3] == [0, 4000, 8000]
    for start, samples in windows:
        assert_close(samples, whole[start:start + 4000], atol=1e-6, msg=f"window at {start}")


@pytest.mark.parametrize("damage", ["first-half", "random-bytes", "empty-header"], ids=str)
def test_a_corrupt_container_is_named_with_ffmpegs_reason(tmp_path, damage):
    good = write_container(tmp_path / "good.m4a", _source(1), SOURCE_RATE, "ipod", "aac")
    data = good.read_bytes()
    bad = tmp_path / "bad.m4a"
    bad.write_bytes({"first-half": data[len(data) // 2:], "random-bytes": np.random.default_rng(0).bytes(4096),
                     "empty-header": data[:64]}[damage])
    with pytest.raises(AudioError, match=r"bad\.m4a: not a readable audio file \(libsndfile: .*; ffmpeg "):
        read_audio(bad)


def test_a_container_without_audio_says_what_it_holds(tmp_path):
    import av

    path = tmp_path / "silent-film.mp4"
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for frame in [av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")] * 3 + [None]:
            for packet in stream.encode(frame):
                output.mux(packet)
    with pytest.raises(AudioError, match=r"silent-film\.mp4: .*holds no audio stream \(video\)"):
        audio_info(path)


def test_container_extensions_are_audio_containers_only():
    extensions = container_extensions()
    assert {"m4a", "mp4", "webm", "aac", "wma", "amr", "opus", "mkv", "3gp", "ogg"} <= extensions
    assert not {"txt", "srt", "m3u8", "mpd", "png", "avif", "raw", "csv", "json", "ts", "pcm"} & extensions
