"""What every benchmark shares: timing with the providers taking turns, the machine's description,
and replacing one section of BENCHMARKS.md."""

from __future__ import annotations

import math
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def interleaved_median(providers: dict[str, Callable[[], object]], rounds: int,
                       min_turn_seconds: float = 0.02) -> dict[str, float]:
    """Median seconds per call of each provider on CPU. The providers take turns in every round, so
    a change of machine speed during the run (shared hosts, turbo) reaches all of them alike; each
    runs once untimed first (lazy initialisation, thread pools). A turn repeats a fast call until it
    lasts about ``min_turn_seconds``, so sub-millisecond ops are not timed at the timer's and the
    turn switch's resolution."""
    repeats = {}
    for name, fn in providers.items():
        fn()
        start = time.perf_counter()
        fn()
        repeats[name] = max(1, math.ceil(min_turn_seconds / max(time.perf_counter() - start, 1e-9)))
    times: dict[str, list[float]] = {name: [] for name in providers}
    for _ in range(rounds):
        for name, fn in providers.items():
            start = time.perf_counter()
            for _ in range(repeats[name]):
                fn()
            times[name].append((time.perf_counter() - start) / repeats[name])
    return {name: statistics.median(t) for name, t in times.items()}


def cuda_times(providers: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median seconds per call of each provider on CUDA, from triton.testing.do_bench."""
    import triton.testing

    return {name: triton.testing.do_bench(fn, return_mode="median") / 1e3 for name, fn in providers.items()}


def machine(extra: str = "") -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = ", ".join(f for f in ("avx512f", "avx2", "amx_bf16") if f in cpu_flags())
    text = f"{cpu} ({torch.get_num_threads()} threads available; {isa or 'no AVX2'}), torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text + (f", {extra}" if extra else "")


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def replace_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- bench:NAME:begin -->`` and its end marker (or append it)."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{body}{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += f"\n{block}\n"
    path.write_text(text)
