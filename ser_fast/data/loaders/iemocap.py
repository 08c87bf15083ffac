"""IEMOCAP: ``Session{1..5}/dialog/EmoEvaluation/*.txt`` turn lines, audio in
``Session{k}/sentences/wav/<dialog>/<turn>.wav``. 4-class merges excited into happy (the usual 5531-utterance set)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from ser_fast.data.corpus import Corpus
from ser_fast.data.loaders._common import CorpusBuilder, check_audio_folder, check_root, visible_files

NAME = "iemocap"
SESSION_FOLDER = re.compile(r"^Session(?P<k>\d+)$")  # Session1..Session5 in the release

# "xxx" is the annotators' "no agreement": never a class. Other codes get a name so that explicit
# class tuples can ask for them (e.g. ("neutral", "frustrated")).
LABELS: dict[str, str | None] = {
    "neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry",
    "fru": "frustrated", "sur": "surprised", "fea": "fearful", "dis": "disgusted", "oth": "other", "xxx": None,
}

# [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]
NUMBER = r"\d+(?:\.\d*)?"
TURN_LINE = re.compile(
    rf"^\[\s*(?P<start>{NUMBER})\s*-\s*(?P<end>{NUMBER})\s*\]\s+(?P<turn>\S+)\s+(?P<code>\S+)\s+"
    rf"\[\s*(?P<v>{NUMBER})\s*,\s*(?P<a>{NUMBER})\s*,\s*(?P<d>{NUMBER})\s*\]\s*$"
)
TURN_NAME = re.compile(r"^Ses\d{2}[FM]_.+_(?P<gender>[FM])\d+$")


def load_iemocap(root: str | os.PathLike, *, classes: str | Sequence[str] = "4class", check_audio: bool = True) -> Corpus:
    """Every annotated turn of the ``Session<k>`` folders under ``root`` (Session1..5 in the release).
    Speaker ``Ses{k:02d}{F|M}`` (gender from the turn name's last field, not the dialog's), session
    ``Session{k}``; valence, arousal, dominance, start and end (s) and the original code in ``extra``."""
    root = check_root(root, "IEMOCAP")
    builder = CorpusBuilder(NAME, root, classes, check_audio)
    numbers = sorted(int(m["k"]) for p in root.iterdir() if p.is_dir() and (m := SESSION_FOLDER.match(p.name)))
    sessions = {k: visible_files(_annotation_folder(root, k), "*.txt") for k in numbers}
    sessions = {k: files for k, files in sessions.items() if files}
    if not sessions:
        raise FileNotFoundError(f"no IEMOCAP annotation files: expected {_annotation_folder(root, 1)}/*.txt "
                                f"(Session1..Session5)")
    for k, files in sessions.items():
        if check_audio:
            check_audio_folder(_wav_folder(root, k), "IEMOCAP", "<dialog>/<turn>.wav")
        for annotation in files:
            _read_annotation(builder, annotation, k)
    return builder.build()


def _annotation_folder(root: Path, session: int) -> Path:
    return root / f"Session{session}" / "dialog" / "EmoEvaluation"


def _wav_folder(root: Path, session: int) -> Path:
    return root / f"Session{session}" / "sentences" / "wav"


def _read_annotation(builder: CorpusBuilder, annotation: Path, session: int) -> None:
    """Turn lines start with "["; evaluator lines (C-, A-), blank lines and the "%" header do not."""
    for number, line in enumerate(annotation.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.startswith("["):
            continue
        match = TURN_LINE.match(line)
        name = TURN_NAME.match(match["turn"]) if match else None
        if not match or not name:
            builder.skip(f"{annotation}:{number}", "unparsable annotation line")
            continue
        turn, gender = match["turn"], name["gender"]
        dialog = turn.rsplit("_", 1)[0]
        builder.add(_wav_folder(builder.root, session) / dialog / f"{turn}.wav", match["code"], LABELS,
                    speaker=f"Ses{session:02d}{gender}", session=f"Session{session}", gender=gender,
                    extra={"valence": float(match["v"]), "arousal": float(match["a"]), "dominance": float(match["d"]),
                           "start": float(match["start"]), "end": float(match["end"]), "code": match["code"]})
