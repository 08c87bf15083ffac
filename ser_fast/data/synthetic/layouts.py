"""Where the files go: the IEMOCAP release layout (so the IEMOCAP loader reads the corpus as it reads
the real one) or a flat manifest with one row per file."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LAYOUTS = ("iemocap", "manifest")
EMOTION_CODES = {"neutral": "neu", "happy": "hap", "sad": "sad", "angry": "ang"}
EVALUATOR_LABELS = {"neutral": "Neutral", "happy": "Happiness", "sad": "Sadness", "angry": "Anger"}
DIALOG = "impro01"
TURN_GAP_S = (0.3, 1.5)  # silence between consecutive turns of a dialog
ANNOTATION_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"


@dataclass(frozen=True)
class Turn:
    """One synthesised utterance as the corpus records it."""

    session: int  # 1-based; two speakers (F and M) per session
    gender: str
    index: int  # position among this speaker's turns
    emotion: str
    vad: tuple[float, float, float]  # valence, arousal, dominance on 1-5 (synthetic.ratings)
    duration_s: float

    @property
    def speaker(self) -> str:
        return f"Ses{self.session:02d}{self.gender}"

    @property
    def session_name(self) -> str:
        return f"Session{self.session}"

    @property
    def dialog(self) -> str:
        # IEMOCAP names a dialog after the session and the speaker who started it (here always F).
        return f"Ses{self.session:02d}F_{DIALOG}"

    @property
    def name(self) -> str:
        return f"{self.dialog}_{self.gender}{self.index:03d}"


def wav_path(layout: str, turn: Turn) -> Path:
    """The turn's audio file, relative to the corpus root."""
    if layout == "iemocap":
        return Path(turn.session_name, "sentences", "wav", turn.dialog, f"{turn.name}.wav")
    return Path("wav", turn.speaker, f"{turn.name}.wav")


def write_annotations(root: Path, layout: str, turns: Sequence[Turn], rng: np.random.Generator) -> None:
    """The layout's label files for ``turns`` (whose audio is already at ``wav_path``)."""
    if layout == "iemocap":
        for session in sorted({t.session for t in turns}):
            _write_emo_evaluation(root, [t for t in turns if t.session == session], rng)
    else:
        _write_manifest(root, turns)


def _write_emo_evaluation(root: Path, turns: Sequence[Turn], rng: np.random.Generator) -> None:
    """One dialog file per session: the speakers take turns (F, M, F, M, ...) along one timeline,
    each turn with IEMOCAP's summary line, two categorical and one dimensional evaluator line."""
    ordered = sorted(turns, key=lambda t: (t.index, t.gender))
    gaps = rng.uniform(*TURN_GAP_S, len(ordered))
    lines = [ANNOTATION_HEADER, ""]
    clock = 0.0
    for turn, gap in zip(ordered, gaps):
        start = clock + gap
        clock = start + turn.duration_s
        v, a, d = turn.vad
        word = EVALUATOR_LABELS[turn.emotion]
        lines += [
            f"[{start:.4f} - {clock:.4f}]\t{turn.name}\t{EMOTION_CODES[turn.emotion]}\t[{v:.4f}, {a:.4f}, {d:.4f}]",
            f"C-E1:\t{word};\t()",
            f"C-E2:\t{word};\t()",
            f"A-E1:\tval {round(v)}; act {round(a)}; dom  {round(d)};\t()",
            "",
        ]
    folder = root / ordered[0].session_name / "dialog" / "EmoEvaluation"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{ordered[0].dialog}.txt").write_text("\n".join(lines), encoding="utf-8")


def _write_manifest(root: Path, turns: Sequence[Turn]) -> None:
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "speaker", "session", "gender"])
        for turn in sorted(turns, key=lambda t: (t.session, t.gender, t.index)):
            writer.writerow([wav_path("manifest", turn).as_posix(), turn.emotion, turn.speaker, turn.session_name,
                             turn.gender])
