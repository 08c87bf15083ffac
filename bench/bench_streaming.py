"""Long recordings: decoding a file whole (``read_audio``, our reference) against reading it window by
window (``WindowStream``, what predict does past 10 minutes), in one run: peak memory and time, each in
a fresh process so that one's peak does not hide the other's.

    python bench/bench_streaming.py [--minutes 30] [--markdown BENCHMARKS.md]

The file is written once into a temporary folder: 44.1 kHz stereo 16-bit noise, the shape of a
podcast or meeting recording, windowed as DSNet's 6 s windows with a 3 s hop.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from _report import machine, replace_section

RATE, CHANNELS = 44100, 2
WINDOW, HOP = 96000, 48000


def write_file(path: Path, minutes: float) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", RATE, CHANNELS, subtype="PCM_16") as handle:
        for _ in range(round(minutes * 2)):
            handle.write((0.1 * rng.standard_normal((RATE * 30, CHANNELS))).astype(np.float32))


def child(way: str, path: Path) -> None:
    """One way of reading the file, in this process; prints windows, seconds and peak RSS as JSON."""
    started = time.perf_counter()
    if way == "whole":
        from ser_fast.data.audio import read_audio

        wave, _ = read_audio(path, 16000)
        windows = len(range(0, len(wave) - WINDOW, HOP)) + 1
    else:
        from ser_fast.inference.streaming import WindowStream

        windows = sum(1 for _ in WindowStream(path, WINDOW, HOP, 16000))
    print(json.dumps({"windows": windows, "seconds": time.perf_counter() - started,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(way: str, path: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", way, "--file", str(path)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--child", choices=("whole", "stream"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "long.wav"
        write_file(path, args.minutes)
        size_mb = path.stat().st_size / 2**20
        results = {way: measure(way, path) for way in ("whole", "stream")}
    assert results["whole"]["windows"] == results["stream"]["windows"]
    whole, stream = results["whole"], results["stream"]
    body = (f"Machine: {machine()}.\n\n"
            f"A {args.minutes:g}-minute {RATE / 1000:g} kHz {CHANNELS}-channel 16-bit wav ({size_mb:.0f} MB) to "
            f"{whole['windows']} windows of 6 s at 16 kHz, each way in a fresh process (which alone, with torch "
            "imported, is about 300 MB):\n\n"
            "| way | peak RSS | time |\n|---|---|---|\n"
            f"| decoded whole (`read_audio`, reference) | {whole['peak_mb']:.0f} MB | {whole['seconds']:.1f} s |\n"
            f"| streamed (`WindowStream`) | {stream['peak_mb']:.0f} MB | {stream['seconds']:.1f} s |\n\n"
            f"Streaming takes {whole['peak_mb'] / stream['peak_mb']:.1f}x less peak memory and "
            f"{whole['seconds'] / stream['seconds']:.2f}x the speed of decoding whole.\n")
    print(body)
    if args.markdown:
        replace_section(args.markdown, "streaming", "## Long recordings: streamed against decoded whole "
                        "(bench/bench_streaming.py)\n\n" + body)


if __name__ == "__main__":
    main()
