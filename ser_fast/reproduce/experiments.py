"""The papers' experiment grids: which systems each trains, how each is configured, where each is tested, and which
pairs the paper compares. System names are fixed so that scripts can read ``results.json``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WITHIN, CROSS_PREFIX = "within", "cross:"
SETTING_NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # a cross corpus' name: part of a setting and of a file name
# What a grid is tested in beside clean speech: nothing; every noise type of the bank at DEFAULT_SNRS_DB (EDRL-MEA);
# the MERIT run's seen and its unseen noise types at the MERIT paper's SNRs (ser_fast.evaluation.merit_eval).
NO_NOISE, NOISE_GRID, SEEN_UNSEEN = "none", "grid", "seen-unseen"
ALL_NOISE = "all"  # the noise kind of a setting that pools every noise type tested at one SNR


@dataclass(frozen=True)
class System:
    """One row of a paper's table: a name and the training settings that make it (``TrainConfig`` fields)."""

    name: str
    settings: tuple[tuple[str, Any], ...]
    description: str

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.settings)


@dataclass(frozen=True)
class Comparison:
    """A pair the paper compares, reported as ``a`` − ``b`` on the same test utterances and seeds."""

    a: str
    b: str


@dataclass(frozen=True)
class Experiment:
    """A paper's grid. ``metrics``: the classification metrics, the headline first. ``noise``: ``NO_NOISE``,
    ``NOISE_GRID`` (every noise type of the bank, the five built-in ones by default, at each of
    ``ser_fast.data.noise.DEFAULT_SNRS_DB``: −5, 0, 5, 10, 20 dB) or ``SEEN_UNSEEN``. ``enhancement``: the speech
    enhancement metrics, scored in noise. ``comparisons``: the pairs the paper compares."""

    name: str
    paper: str
    systems: tuple[System, ...]
    metrics: tuple[str, ...]
    noise: str
    comparisons: tuple[Comparison, ...]
    enhancement: tuple[str, ...] = ()
    in_builtin: bool = True  # run by `make reproduce` (ser_fast.reproduce.builtin says why Sparse MERIT's is not)

    @property
    def system_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.systems)

    def system(self, name: str) -> System:
        for system in self.systems:
            if system.name == name:
                return system
        raise ValueError(f"experiment {self.name!r} has no system {name!r}; it has {', '.join(self.system_names)}")

    def select(self, names: list[str] | None) -> tuple[System, ...]:
        """The systems named (all when ``names`` is None or empty), in the grid's order."""
        if not names:
            return self.systems
        chosen = {self.system(name).name for name in names}
        return tuple(s for s in self.systems if s.name in chosen)


BASELINE = System("baseline", (("model", "baseline"),), "the CNN + attention pooling without DSNet's subspaces")

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment(
        "dsnet", "DSNet, Tables 2 and 4",
        (BASELINE,
         System("dsnet", (("model", "dsnet"),), "DSNet with L_c, L_o and L_r"),
         System("dsnet-no-lc", (("model", "dsnet"), ("use_calibration", False)), "DSNet without L_c"),
         System("dsnet-no-lo", (("model", "dsnet"), ("use_orthogonality", False)), "DSNet without L_o"),
         System("dsnet-no-lr", (("model", "dsnet"), ("use_reconstruction", False)), "DSNet without L_r")),
        ("uar", "wa", "macro_f1"), NO_NOISE,
        (Comparison("dsnet", "baseline"), Comparison("dsnet", "dsnet-no-lc"), Comparison("dsnet", "dsnet-no-lo"),
         Comparison("dsnet", "dsnet-no-lr")),
    ),
    Experiment(
        "edrl-mea", "EDRL-MEA (summary: macro-F1 across corpora and under five noise types)",
        (BASELINE,
         System("edrl", (("model", "edrl-mea"), ("variant", "edrl")), "the intra- and inter-class encoders alone"),
         System("mea", (("model", "edrl-mea"), ("variant", "mea")), "MB-PLS alignment without the EDRL encoders"),
         System("edrl-mea", (("model", "edrl-mea"), ("variant", "full")), "both")),
        ("macro_f1", "uar"), NOISE_GRID,
        (Comparison("edrl-mea", "baseline"), Comparison("edrl-mea", "edrl"), Comparison("edrl-mea", "mea")),
    ),
    Experiment(
        "merit", "Sparse MERIT (abstract: macro-F1 and SSNR at -5 dB)",
        tuple(System(name, (("model", "merit"), ("network", {"design": name})), description) for name, description in (
            ("se-preprocess", "an SE model, then an SER model on its enhanced output"),
            ("mtl", "naive multi-task learning: one shared feed-forward block, no routing"),
            ("dense", "every expert on every frame, softmax-weighted"),
            ("released", "the authors' release: top-1 routing, every expert run on every frame"),
            ("sparse", "ser_fast's design: true top-k dispatch, gate-scaled outputs"))),
        ("macro_f1", "uar"), SEEN_UNSEEN,
        (Comparison("released", "se-preprocess"), Comparison("released", "mtl"), Comparison("sparse", "se-preprocess"),
         Comparison("sparse", "mtl"), Comparison("sparse", "released"), Comparison("sparse", "dense")),
        ("ssnr", "pesq", "stoi"), in_builtin=False,
    ),
    Experiment(
        "augmentation", "ser_fast's own (issue 20): DSNet trained with noise and reverberation against clean speech. "
        "The noise grid's five built-in types are the ones augmented training drew (other realisations of them): "
        "seen types; the other corpus, recorded in a room, is the unseen condition",
        (System("dsnet", (("model", "dsnet"),), "DSNet trained on clean speech"),
         System("dsnet-augmented", (("model", "dsnet"), ("augment", {"kinds": ["noise", "reverb"]})),
                "DSNet trained with the built-in noises at 0-20 dB and simulated rooms of RT60 0.2-0.8 s, each with "
                "probability 0.5 per utterance and epoch")),
        ("uar", "wa", "macro_f1"), NOISE_GRID, (Comparison("dsnet-augmented", "dsnet"),), in_builtin=False,
    ),
)}


def experiment(name: object) -> Experiment:
    if not isinstance(name, str) or name not in EXPERIMENTS:
        raise ValueError(f"experiment {name!r}: expected one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def noise_setting(kind: str, snr_db: float) -> str:
    """``"<noise>@<snr>"``, e.g. ``"babble@-5"``."""
    return f"{kind}@{snr_db:g}"


def pooled_noise_settings(tested: Sequence[str]) -> dict[str, list[str]]:
    """``{"all@<snr>": [every noisy setting of tested at that SNR]}``, for each SNR tested under two or more noise
    types: the noise conditions at one SNR taken together, as Sparse MERIT's abstract reports its gains at -5 dB."""
    by_snr: dict[str, list[str]] = {}
    for setting in tested:
        if is_noisy(setting):
            by_snr.setdefault(setting.split("@")[1], []).append(setting)
    return {f"{ALL_NOISE}@{snr}": members for snr, members in by_snr.items() if len(members) > 1}


def is_noisy(setting: str) -> bool:
    return not setting.startswith(CROSS_PREFIX) and "@" in setting


def paper_setting(setting: str) -> str:
    """Our setting as the papers' numbers name it (``ser_fast.evaluation.paper_numbers``): every cross-corpus test is
    the paper's "cross"."""
    return "cross" if setting.startswith(CROSS_PREFIX) else setting


def setting_file_name(setting: str) -> str:
    """A setting as a file name: ``cross:synth-room`` → ``cross_synth-room``."""
    return setting.replace(":", "_")
