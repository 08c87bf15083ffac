"""CREMA-D: ``AudioWAV/<actor>_<sentence>_<EMO>_<level>.wav``; sex from ``VideoDemographics.csv`` if present."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from ser_fast.data.corpus import Corpus
from ser_fast.data.loaders._common import CorpusBuilder, audio_files_in, check_root, normalise_gender, read_csv

NAME = "crema-d"
LABELS: dict[str, str | None] = {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry",
                                 "FEA": "fearful", "DIS": "disgusted"}
FILE_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<code>[A-Z]{3})_(?P<level>[A-Z]{1,2})$")
LAYOUT = "<actor>_<sentence>_<EMO>_<level>.wav"


def load_crema_d(root: str | os.PathLike, *, classes: str | Sequence[str] = "4class", check_audio: bool = True) -> Corpus:
    """Every file of ``<root>/AudioWAV``. Speaker is the actor id, no sessions; gender "M"/"F" from
    the demographics file's Sex column, "" without it; sentence and intensity level in ``extra``."""
    root = check_root(root, "CREMA-D")
    audio = root / "AudioWAV"
    files = audio_files_in(audio, "CREMA-D", LAYOUT)
    gender_of = _genders(root / "VideoDemographics.csv")
    builder = CorpusBuilder(NAME, root, classes, check_audio)
    for path in files:
        fields = FILE_NAME.match(path.stem)
        if not fields:
            builder.skip(path, "malformed CREMA-D file name")
            continue
        builder.add(path, fields["code"], LABELS, speaker=fields["actor"], gender=gender_of.get(fields["actor"], ""),
                    extra={"sentence": fields["sentence"], "level": fields["level"]})
    return builder.build()


def _genders(demographics: Path) -> dict[str, str]:
    if not demographics.is_file():
        return {}
    return {row["ActorID"]: normalise_gender(row["Sex"]) for row in read_csv(demographics, ("ActorID", "Sex"))}
