"""MSP-IMPROV: ``Evaluation.txt`` consensus lines, audio ``MSP-IMPROV-<id>.wav`` anywhere under the root
(releases differ in how they nest it: found once with one recursive search)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ser_fast.data.corpus import Corpus
from ser_fast.data.loaders._common import CorpusBuilder, check_root

logger = logging.getLogger(__name__)

NAME = "msp-improv"
LABELS: dict[str, str | None] = {"A": "angry", "H": "happy", "S": "sad", "N": "neutral", "O": "other", "X": None}
ATTRIBUTES = {"A": "arousal", "V": "valence", "D": "dominance", "N": "naturalness"}

# UTD-IMPROV-S01A-F01-R-FS01.avi: session 1 (sentence A), speaker F01, scenario R.
UTTERANCE_ID = re.compile(r"^UTD-IMPROV-(?P<id>(?P<session>S\d{2})[A-Za-z]*-(?P<speaker>(?P<gender>[FM])\d{2})-\S+)\.avi$")
ATTRIBUTE = re.compile(r"^(?P<key>[AVDN])\s*:\s*(?P<value>-?\d+(?:\.\d*)?)$")


def load_msp_improv(root: str | os.PathLike, *, classes: str | Sequence[str] = "4class", check_audio: bool = True) -> Corpus:
    """Every consensus line of ``<root>/Evaluation.txt`` (evaluator lines are ignored). Speaker is the ``F01``/``M01``
    field of the id, session ``S01`` from its first field; arousal, valence, dominance and naturalness in ``extra``."""
    root = check_root(root, "MSP-IMPROV")
    evaluation = root / "Evaluation.txt"
    if not evaluation.is_file():
        raise FileNotFoundError(f"no MSP-IMPROV annotation file: expected {evaluation}")
    builder = CorpusBuilder(NAME, root, classes, check_audio)
    audio = _audio_by_name(root)
    for number, line in enumerate(evaluation.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        fields = [f.strip() for f in line.split(";") if f.strip()]
        if not fields or not fields[0].startswith("UTD-IMPROV-"):
            continue
        match = UTTERANCE_ID.match(fields[0])
        if not match or len(fields) < 2:
            builder.skip(f"{evaluation}:{number}", "unparsable annotation line")
            continue
        file_name = f"MSP-IMPROV-{match['id']}.wav"
        # An unlisted file gets its would-be path, so that check_audio reports it as missing audio.
        builder.add(audio.get(file_name, root / file_name), fields[1], LABELS, speaker=match["speaker"],
                    session=match["session"], gender=match["gender"], extra=_attributes(fields[2:]))
    return builder.build()


def _audio_by_name(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("MSP-IMPROV-*.wav")):
        if not path.is_file():
            continue
        if path.name in found:
            logger.warning("MSP-IMPROV: %s is also at %s; using the first", path.name, found[path.name])
            continue
        found[path.name] = path
    return found


def _attributes(fields: list[str]) -> dict[str, float]:
    extra = {}
    for field in fields:
        match = ATTRIBUTE.match(field)
        if match:
            extra[ATTRIBUTES[match["key"]]] = float(match["value"])
    return extra
