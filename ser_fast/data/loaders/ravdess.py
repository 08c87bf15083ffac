"""RAVDESS: ``Actor_XX/MM-VV-EE-II-SS-RR-AA.wav`` (modality, vocal channel, emotion, intensity, statement, repetition,
actor). Speech only; the audio is 48 kHz and stays so here (``load_audio`` resamples)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from ser_fast.data.corpus import Corpus
from ser_fast.data.loaders._common import CorpusBuilder, check_root, visible_files

NAME = "ravdess"
SPEECH = "01"
# Emotion codes by their documented names: the names are what skip reasons show, e.g. "label 'calm'".
EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
            "07": "disgusted", "08": "surprised"}
FILE_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
ACTOR_FOLDER = re.compile(r"^Actor_(\d{2})$")


def load_ravdess(root: str | os.PathLike, *, classes: str | Sequence[str] = "4class", check_audio: bool = True) -> Corpus:
    """Every speech file of the ``Actor_XX`` folders; speaker ``Actor_XX``, gender from the actor number (odd male, even
    female), no sessions; intensity, statement and repetition in ``extra``. Song files and off-scheme names: skipped."""
    root = check_root(root, "RAVDESS")
    actors = sorted(p for p in root.glob("Actor_*") if p.is_dir() and ACTOR_FOLDER.match(p.name))
    if not actors:
        raise FileNotFoundError(f"no RAVDESS actor folders: expected {root}/Actor_01 .. {root}/Actor_24 "
                                f"holding MM-VV-EE-II-SS-RR-AA.wav files")
    builder = CorpusBuilder(NAME, root, classes, check_audio)
    for folder in actors:
        for path in visible_files(folder, "*.wav"):
            fields = FILE_NAME.match(path.stem)
            if not fields or fields[3] not in EMOTIONS:
                builder.skip(path, "malformed RAVDESS file name")
            elif fields[7] != ACTOR_FOLDER.match(folder.name)[1]:
                builder.skip(path, "RAVDESS actor field does not match its folder")
            elif fields[2] != SPEECH:
                builder.skip(path, "song, not speech")
            else:
                builder.add(path, EMOTIONS[fields[3]], None, speaker=f"Actor_{fields[7]}",
                            gender="M" if int(fields[7]) % 2 else "F",
                            extra={"intensity": "strong" if fields[4] == "02" else "normal",
                                   "statement": int(fields[5]), "repetition": int(fields[6])})
    return builder.build()
