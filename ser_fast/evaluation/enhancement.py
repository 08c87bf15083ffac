"""Speech-enhancement metrics, the three Sparse MERIT reports: segmental SNR (numpy here), wideband PESQ and STOI
(from the optional ``pesq`` and ``pystoi`` packages, ``pip install pesq pystoi``; None without them)."""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import numbers
import threading
import warnings
from collections import OrderedDict

import numpy as np

logger = logging.getLogger(__name__)

SSNR_MIN_DB = -10.0
SSNR_MAX_DB = 35.0

_reported_missing: set[str] = set()


def segmental_snr(clean, enhanced, sample_rate: int = 16000, *, frame_ms: float = 30.0, overlap: float = 0.75,
                  min_db: float = SSNR_MIN_DB, max_db: float = SSNR_MAX_DB) -> float:
    """Segmental SNR in dB of ``enhanced`` against ``clean`` (1-D float, same length), as defined by
    Hu & Loizou's composite measures (``comp_snr.m`` / ``snr.m`` in P. C. Loizou, *Speech
    Enhancement: Theory and Practice*, 2007; Y. Hu and P. C. Loizou, "Evaluation of objective
    quality measures for speech enhancement", IEEE TASLP 16(1), 2008) and ``pysepm.SNRseg``:

    - frames of ``W = round(frame_ms · fs / 1000)`` samples (30 ms), hop ``H = floor(W · (1 − overlap))``
      (75 % overlap: W/4), each multiplied by the Hann window ``w[n] = ½(1 − cos(2πn / (W+1)))``, n = 1..W;
    - ``floor((N − W) / H)`` frames starting at 0, H, 2H, ...: every whole frame but the last, as
      both references count them;
    - per frame, ``SNR = 10 log10(Σ(w·s)² / (Σ(w·(s − ŝ))² + ε) + ε)`` with ε the float64 machine
      epsilon, clipped to ``[min_db, max_db]`` = [−10, 35] dB;
    - the mean over frames. No DC removal and no level alignment (both are commented out in the
      MATLAB original), so the scale of the arguments matters."""
    clean, enhanced = _check_pair(clean, enhanced)
    sample_rate = _check_sample_rate(sample_rate, "segmental_snr")
    if not (isinstance(frame_ms, numbers.Real) and math.isfinite(frame_ms) and frame_ms > 0):
        raise ValueError(f"segmental_snr: frame_ms must be a positive number, got {frame_ms!r}")
    if not (isinstance(overlap, numbers.Real) and 0.0 <= overlap < 1.0):
        raise ValueError(f"segmental_snr: overlap must be in [0, 1), got {overlap!r}")
    if not (isinstance(min_db, numbers.Real) and isinstance(max_db, numbers.Real) and min_db < max_db):
        raise ValueError(f"segmental_snr: need min_db < max_db, got {min_db!r}, {max_db!r}")
    window_length = round(frame_ms * sample_rate / 1000)
    # The small epsilon keeps W · (1 − overlap) from flooring below an exact integer (e.g. 0.7 overlap).
    hop = math.floor(window_length * (1.0 - overlap) + 1e-9)
    if window_length < 1 or hop < 1:
        raise ValueError(f"segmental_snr: {frame_ms} ms at {sample_rate} Hz with overlap {overlap} gives a "
                         f"window of {window_length} and a hop of {hop} samples; both must be at least 1")
    num_frames = (clean.size - window_length) // hop
    if num_frames < 1:
        raise ValueError(f"segmental_snr: {clean.size} samples are too few; at least {window_length + hop} "
                         f"are needed for one {frame_ms} ms frame")
    n = np.arange(1, window_length + 1)
    window = 0.5 * (1.0 - np.cos(2 * np.pi * n / (window_length + 1)))
    starts = np.arange(num_frames)[:, None] * hop + np.arange(window_length)[None, :]
    clean_frames = clean[starts] * window
    error_frames = (clean - enhanced)[starts] * window
    eps = np.finfo(np.float64).eps
    signal_energy = np.square(clean_frames).sum(axis=1)
    noise_energy = np.square(error_frames).sum(axis=1)
    per_frame = 10.0 * np.log10(signal_energy / (noise_energy + eps) + eps)
    return float(np.clip(per_frame, min_db, max_db).mean())


def pesq_wb(clean, enhanced, sample_rate: int = 16000) -> float | None:
    """Wideband PESQ (ITU-T P.862.2, MOS-LQO about 1.04..4.64; defined at 16 kHz only) from the ``pesq`` package, or
    None when it is not installed. Raises ValueError when PESQ cannot score the pair (e.g. no speech in ``clean``)."""
    clean, enhanced = _check_pair(clean, enhanced)
    sample_rate = _check_sample_rate(sample_rate, "pesq_wb")
    if sample_rate != 16000:
        raise ValueError(f"pesq_wb: wideband PESQ needs 16000 Hz audio, got {sample_rate} Hz; resample first")
    # PESQ aligns the levels of both signals, which a silent one breaks (NaN inside the package).
    if not clean.any():
        raise ValueError("pesq_wb: clean is all zeros; PESQ needs speech in the reference")
    if not enhanced.any():
        raise ValueError("pesq_wb: enhanced is all zeros; PESQ cannot level-align a silent signal")
    pesq = _optional("pesq")
    if pesq is None:
        return None
    try:
        return float(pesq.pesq(sample_rate, clean, enhanced, "wb"))
    except pesq.PesqError as error:
        # The package's messages are bytes from its C core.
        reason = error.args[0].decode(errors="replace") if error.args and isinstance(error.args[0], bytes) else error
        raise ValueError(f"pesq_wb: PESQ cannot score this pair: {type(error).__name__}: {reason}") from error


def stoi(clean, enhanced, sample_rate: int = 16000) -> float | None:
    """STOI (Taal et al., IEEE TASLP 2011; 0..1) from the ``pystoi`` package (which resamples to 10 kHz itself: any
    sample rate works), or None when it is not installed. Raises ValueError when too little speech is left after STOI
    drops the silent frames (under 30 frames of 12.8 ms; ``pystoi`` would warn and return 1e-5)."""
    clean, enhanced = _check_pair(clean, enhanced)
    sample_rate = _check_sample_rate(sample_rate, "stoi")
    pystoi = _optional("pystoi")
    if pystoi is None:
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Not enough STFT frames", category=RuntimeWarning)
        try:
            return float(pystoi.stoi(clean, enhanced, sample_rate, extended=False))
        except RuntimeWarning as warning:
            raise ValueError(f"stoi: too little speech to score: {warning}") from warning


def enhancement_scores(clean, noisy, enhanced, sample_rate: int = 16000) -> dict[str, float | None]:
    """SSNR, PESQ (wideband) and STOI of ``enhanced`` (keys ``ssnr``, ``pesq``, ``stoi``) and of the ``noisy`` input
    (``*_noisy``) against ``clean``, and the improvement of each (``*_improvement``: enhanced − noisy). A metric whose
    package is not installed is None, and so is its improvement.

    The noisy input's scores are remembered by the content of ``clean`` and ``noisy`` (a digest of their samples;
    at most ``NOISY_MEMO_SIZE`` pairs per process, and only when every metric's package is installed): systems tested
    on the same mixtures, as a reproduction grid's cells of one fold are, score them once. The metrics are
    deterministic, so a remembered score is the one computing it again would give."""
    clean, noisy = _check_pair(clean, noisy, names=("clean", "noisy"))
    clean, enhanced = _check_pair(clean, enhanced)
    sample_rate = _check_sample_rate(sample_rate, "enhancement_scores")
    of_noisy_input = _noisy_scores(clean, noisy, sample_rate)
    scores: dict[str, float | None] = {}
    for name, metric in METRICS:
        of_enhanced = metric(clean, enhanced, sample_rate)
        of_noisy = of_noisy_input[name]
        scores[name] = of_enhanced
        scores[f"{name}_noisy"] = of_noisy
        scores[f"{name}_improvement"] = None if of_enhanced is None or of_noisy is None else of_enhanced - of_noisy
    return scores


METRICS = (("ssnr", segmental_snr), ("pesq", pesq_wb), ("stoi", stoi))
NOISY_MEMO_SIZE = 50_000  # pairs; each is a 20-byte key and three floats, about 15 MB in all when full

# The noisy inputs' scores (in METRICS' order) by a digest of (sample rate, clean, noisy), the oldest forgotten first.
_noisy_memo: OrderedDict[bytes, tuple[float, ...]] = OrderedDict()
_noisy_memo_lock = threading.Lock()


def forget_noisy_scores() -> None:
    """Empty the memory of noisy inputs' scores that :func:`enhancement_scores` keeps (e.g. to free it, or to time a
    first evaluation again)."""
    with _noisy_memo_lock:
        _noisy_memo.clear()


def _noisy_scores(clean: np.ndarray, noisy: np.ndarray, sample_rate: int) -> dict[str, float | None]:
    digest = hashlib.blake2b(digest_size=20)
    for part in (str(sample_rate).encode(), clean.tobytes(), noisy.tobytes()):
        digest.update(part)
    key = digest.digest()
    with _noisy_memo_lock:
        remembered = _noisy_memo.get(key)
        if remembered is not None:
            _noisy_memo.move_to_end(key)
            return dict(zip((name for name, _ in METRICS), remembered))
    scores = {name: metric(clean, noisy, sample_rate) for name, metric in METRICS}
    if all(value is not None for value in scores.values()):  # a package installed later is then used
        with _noisy_memo_lock:
            _noisy_memo[key] = tuple(scores.values())
            while len(_noisy_memo) > NOISY_MEMO_SIZE:
                _noisy_memo.popitem(last=False)
    return scores


def _optional(module_name: str):
    """The module, or None (logged once per process at INFO) when it is not installed."""
    try:
        return importlib.import_module(module_name)
    except ImportError:
        if module_name not in _reported_missing:
            _reported_missing.add(module_name)
            logger.info("%s is not installed; its metric is reported as None (pip install %s)",
                        module_name, module_name)
        return None


def _check_pair(reference, other, names: tuple[str, str] = ("clean", "enhanced")) -> tuple[np.ndarray, np.ndarray]:
    a = _as_signal(reference, names[0])
    b = _as_signal(other, names[1])
    if a.size != b.size:
        raise ValueError(f"{names[0]} ({a.size} samples) and {names[1]} ({b.size} samples) must have the same length")
    return a, b


def _as_signal(values, name: str) -> np.ndarray:
    """A 1-D finite float64 copy of a numpy array or torch tensor of floats."""
    if hasattr(values, "detach") and hasattr(values, "is_floating_point"):
        if not values.is_floating_point():
            raise TypeError(f"{name} must hold floats (e.g. int16 audio / 32768), got dtype {values.dtype}")
        # Through float64 in torch: numpy has no bfloat16.
        values = values.detach().cpu().double().numpy()
    if not isinstance(values, np.ndarray):
        raise TypeError(f"{name} must be a 1-D float numpy array or torch tensor, got {type(values).__name__}")
    if not np.issubdtype(values.dtype, np.floating):
        raise TypeError(f"{name} must hold floats (e.g. int16 audio / 32768), got dtype {values.dtype}")
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one mono signal), got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite samples")
    return values.astype(np.float64)


def _check_sample_rate(sample_rate, where: str) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate < 1:
        raise ValueError(f"{where}: sample_rate must be a positive int (Hz), got {sample_rate!r}")
    return int(sample_rate)
