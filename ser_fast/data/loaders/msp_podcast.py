"""MSP-Podcast: ``Labels/labels_consensus.csv`` and audio in ``Audios/<FileName>``; the corpus' own
split (Train, Development, Test1, ...) is kept on each utterance."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ser_fast.data.corpus import Corpus
from ser_fast.data.loaders._common import CorpusBuilder, check_audio_folder, check_root, normalise_gender, read_csv

NAME = "msp-podcast"
REQUIRED = ("FileName", "EmoClass", "SpkrID", "Gender", "Split_Set")
ATTRIBUTES = {"EmoAct": "arousal", "EmoVal": "valence", "EmoDom": "dominance"}
LABELS: dict[str, str | None] = {
    "A": "angry", "S": "sad", "H": "happy", "N": "neutral",
    "C": "contemptuous", "U": "surprised", "F": "fearful", "D": "disgusted", "O": "other", "X": "no-agreement",
}


def load_msp_podcast(root: str | os.PathLike, *, classes: str | Sequence[str] = "4class", check_audio: bool = True) -> Corpus:
    """Every row of the consensus labels. Speaker is SpkrID as written ("Unknown" speakers share that name, as do rows
    without one), no sessions, split from Split_Set; EmoAct/EmoVal/EmoDom as arousal/valence/dominance and any other
    column under its own name in ``extra``."""
    root = check_root(root, "MSP-Podcast")
    labels = root / "Labels" / "labels_consensus.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"no MSP-Podcast labels: expected {labels}")
    audio = root / "Audios"
    if check_audio:
        check_audio_folder(audio, "MSP-Podcast", "<FileName> of the labels")
    builder = CorpusBuilder(NAME, root, classes, check_audio)
    for number, row in enumerate(read_csv(labels, REQUIRED), 2):
        if not row["FileName"]:
            builder.skip(f"{labels}:{number}", "row without FileName")
            continue
        builder.add(audio / row["FileName"], row["EmoClass"], LABELS, speaker=row["SpkrID"] or "Unknown",
                    gender=normalise_gender(row["Gender"]), split=row["Split_Set"], extra=_extra(row))
    return builder.build()


def _extra(row: dict[str, str]) -> dict:
    extra: dict = {}
    for column, value in row.items():
        if column in REQUIRED:
            continue
        if column in ATTRIBUTES:
            try:
                extra[ATTRIBUTES[column]] = float(value)
            except ValueError:
                continue  # an empty or "NA" rating is no rating
        else:
            extra[column] = value
    return extra
