"""What training augments and how: which augmentations, each one's probability and ranges. Checked when built, so a
value outside its range fails before any training starts, naming the field and the range allowed."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

AUGMENTATIONS = ("noise", "reverb", "gain", "band", "speed")
BANDS = ("telephone", "codec")

# What each range may span: beyond these an augmentation stops resembling a recording condition.
LIMITS = {
    "snr_db": (-10.0, 60.0),
    "rt60_s": (0.1, 1.5),  # simulating a room costs 1.3 s at 0.8 s and grows as RT60 cubed
    "gain_db": (-30.0, 30.0),
    "codec_cutoff_hz": (2000.0, 7900.0),  # below the 8 kHz Nyquist of 16 kHz audio
    "speed": (0.7, 1.3),
}


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations drawn independently per utterance and epoch, each with its probability ``<name>_p``:

    - ``noise``: a noise of the bank (the built-in ``NoiseBank``, or the recordings below ``noise_dir``) at an SNR
      uniform in ``snr_db``;
    - ``reverb``: a room impulse response, simulated (a shoebox room whose RT60 is uniform in ``rt60_s``) or one of
      the recorded ones below ``rir_dir``;
    - ``gain``: a level change uniform in ``gain_db``;
    - ``band``: ``telephone`` (300-3400 Hz band pass, 8 kHz, 8-bit mu-law, as G.711) or ``codec`` (a low pass with
      its cutoff uniform in ``codec_cutoff_hz``, as a wideband codec), one of ``bands`` at random;
    - ``speed``: speed perturbation (resampled: tempo and pitch together, as Kaldi's recipes) by a factor uniform in
      ``speed``.
    Only the names in ``kinds`` apply; an empty ``kinds`` leaves training clean."""

    kinds: tuple[str, ...] = ()
    noise_p: float = 0.5
    snr_db: tuple[float, float] = (0.0, 20.0)
    reverb_p: float = 0.5
    rt60_s: tuple[float, float] = (0.2, 0.8)
    gain_p: float = 0.5
    gain_db: tuple[float, float] = (-6.0, 6.0)
    band_p: float = 0.3
    bands: tuple[str, ...] = BANDS
    codec_cutoff_hz: tuple[float, float] = (3400.0, 7000.0)
    speed_p: float = 0.3
    speed: tuple[float, float] = (0.9, 1.1)
    noise_dir: str = ""
    rir_dir: str = ""

    def __post_init__(self) -> None:
        for name in ("noise_dir", "rir_dir"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a folder path (str) or \"\", got {getattr(self, name)!r}")
        object.__setattr__(self, "kinds", _names(self.kinds, "kinds", AUGMENTATIONS))
        object.__setattr__(self, "bands", _names(self.bands, "bands", BANDS))
        if not self.bands:
            raise ValueError(f"bands must name at least one of {BANDS}")
        for name in AUGMENTATIONS:
            _check_probability(getattr(self, f"{name}_p"), f"{name}_p")
        for name, (low_limit, high_limit) in LIMITS.items():
            object.__setattr__(self, name, _range(getattr(self, name), name, low_limit, high_limit))

    @classmethod
    def parse(cls, kinds: str, **settings) -> AugmentConfig:
        """From ``--augment noise,reverb`` (comma-separated names; "" or "none": no augmentation)."""
        names = () if kinds.strip().lower() in ("", "none") else tuple(k.strip() for k in kinds.split(","))
        return cls(kinds=names, **settings)

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown augmentation settings {unknown}; expected some of {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def __bool__(self) -> bool:
        return bool(self.kinds)


def _names(values, field: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{field} must be a sequence of names from {allowed}, got {values!r}")
    names = tuple(values)
    unknown = [v for v in names if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {field} {unknown}; expected some of {allowed}")
    if len(set(names)) != len(names):
        raise ValueError(f"{field} names an augmentation twice: {names}")
    return names


def _check_probability(value, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{field} must be a probability in [0, 1], got {value!r}")


def _range(value, field: str, low_limit: float, high_limit: float) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a (low, high) pair of numbers, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low_limit <= low <= high <= high_limit):
        raise ValueError(f"{field} must satisfy {low_limit:g} <= low <= high <= {high_limit:g}, got ({low:g}, "
                         f"{high:g})")
    return low, high
