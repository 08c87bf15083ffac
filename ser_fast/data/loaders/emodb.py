"""EmoDB (Berlin Database of Emotional Speech): ``wav/<speaker:2><text:3><emotion><version>.wav``,
e.g. ``03a01Fa.wav``; the emotion letters are German initials (W: Wut, F: Freude, T: Trauer, ...)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from ser_fast.data.corpus import Corpus
from ser_fast.data.loaders._common import CorpusBuilder, audio_files_in, check_root

NAME = "emodb"
LABELS: dict[str, str | None] = {"N": "neutral", "F": "happy", "T": "sad", "W": "angry",
                                 "L": "bored", "E": "disgusted", "A": "fearful"}
# The ten speakers of the release, as its documentation lists them.
SPEAKER_GENDERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M", "13": "F", "14": "F",
                   "15": "M", "16": "F"}
FILE_NAME = re.compile(r"^(?P<speaker>\d{2})(?P<text>[a-z]\d{2})(?P<code>[A-Z])(?P<version>[a-z])$")
LAYOUT = "<speaker:2><text:3><emotion><version>.wav, e.g. 03a01Fa.wav"


def load_emodb(root: str | os.PathLike, *, classes: str | Sequence[str] = "4class", check_audio: bool = True) -> Corpus:
    """Every file of ``<root>/wav``. Speaker is the 2-digit code, gender from the release's speaker
    list ("" for a code not on it), no sessions; text and version in ``extra``."""
    root = check_root(root, "EmoDB")
    audio = root / "wav"
    files = audio_files_in(audio, "EmoDB", LAYOUT)
    builder = CorpusBuilder(NAME, root, classes, check_audio)
    for path in files:
        fields = FILE_NAME.match(path.stem)
        if not fields:
            builder.skip(path, "malformed EmoDB file name")
            continue
        builder.add(path, fields["code"], LABELS, speaker=fields["speaker"],
                    gender=SPEAKER_GENDERS.get(fields["speaker"], ""),
                    extra={"text": fields["text"], "version": fields["version"]})
    return builder.build()
