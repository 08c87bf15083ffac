"""EmoBox (the 32-corpus SER benchmark): one dataset folder ``data/<dataset>/`` of its repository, with
``fold_K/<dataset>_{train,test}_fold_K.jsonl`` (some datasets add ``..._valid_fold_K.jsonl``; EmoDB also spells
``..._fold1.jsonl``) and ``label_map.json`` (EMOVO: ``label_dict.json``) from the corpus' codes to EmoBox's names.

Each line is ``{"key", "dataset", "wav", "type", "sample_rate", "num_frame", "task", "length", "emo", "channel"}``;
``wav`` is relative to the folder EmoBox's download script ran in, ``audio_root``. An utterance appears in several fold
files (it trains in some folds, tests in one); it is loaded once, with ``extra["emobox_folds"] = {K: "train" | "test" |
"validation"}``, which ``ser_fast.data.protocols.emobox_folds`` turns back into the benchmark's folds.

EmoBox's files name no speakers. Where a dataset's keys encode them (``SPEAKER_RULES``), the speaker is derived, e.g.
IEMOCAP ``iemocap-Ses01F_impro04_F000`` → ``Ses01F``, RAVDESS ``ravdess-03-01-07-02-02-02-11`` → ``Actor_11`` (as
ser_fast's own loaders name them). Elsewhere (MSP-Podcast, MELD, ...) every utterance gets speaker ``"unknown"`` and the
loader says so: EmoBox's folds need no speakers, but the speaker-based protocols cannot be used.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ser_fast.data.corpus import Corpus
from ser_fast.data.loaders._common import CorpusBuilder, check_root, read_text_lines

logger = logging.getLogger(__name__)

NAME = "emobox"
UNKNOWN_SPEAKER = "unknown"
REQUIRED = ("key", "wav", "emo")
PARTS = {"train": "train", "test": "test", "valid": "validation", "dev": "validation"}
FOLD_FOLDER = re.compile(r"^fold_(\d+)$")
LABEL_FILES = ("label_map.json", "label_dict.json")
# EmoBox's class names → ser_fast's (the names its own loaders use); others are lower-cased as written.
CLASS_NAMES = {"fear": "fearful", "disgust": "disgusted", "surprise": "surprised", "boredom": "bored",
               "contempt": "contemptuous"}
# classes="emobox": every class the dataset's label map names, as EmoBox's leaderboard scores them.
ALL_CLASSES = "emobox"
# How a dataset's keys (after "<dataset>-") name the speaker: a pattern and the speaker it makes of the match.
SPEAKER_RULES: dict[str, tuple[re.Pattern, str]] = {
    "iemocap": (re.compile(r"^(Ses\d{2})[FM]_.*_([FM])\d+$"), r"\1\2"),
    "ravdess": (re.compile(r"^\d{2}(?:-\d{2}){5}-(\d{2})$"), r"Actor_\1"),
    "cremad": (re.compile(r"^(\d{4})-"), r"\1"),
    "emodb": (re.compile(r"^(\d{2})[a-z]\d{2}"), r"\1"),
    "esd": (re.compile(r"^(\d{4})-"), r"\1"),
    "tess": (re.compile(r"^([A-Z]{3})-"), r"\1"),
    "savee": (re.compile(r"^([A-Z]{2})-"), r"\1"),
    "casia": (re.compile(r"^\d+-([a-z]+)-"), r"\1"),
    "emovo": (re.compile(r"^[a-z]+-([mf]\d)-"), r"\1"),
    "jlcorpus": (re.compile(r"^((?:male|female)\d)-"), r"\1"),
    "cafe": (re.compile(r"^(\d{2})-"), r"\1"),
    "subesco": (re.compile(r"^([MF]_\d{2}_[A-Z]+)_"), r"\1"),
    "shemo": (re.compile(r"^([MF]\d{2})"), r"\1"),
    "urdu": (re.compile(r"^(S[MF]\d+)_"), r"\1"),
    "polish": (re.compile(r"^([mf]\d)\."), r"\1"),
    "emovdb": (re.compile(r"^([a-z]+)-"), r"\1"),
    "mead": (re.compile(r"^([MW]\d{3})-"), r"\1"),
    "oreau": (re.compile(r"^(\d{2})"), r"\1"),
    "turevdb": (re.compile(r"^(\d{4})_"), r"\1"),
}


def load_emobox(root: str | os.PathLike, *, classes: str | Sequence[str] = "4class", check_audio: bool = True,
                audio_root: str | os.PathLike | None = None) -> Corpus:
    """The utterances of the EmoBox dataset folder ``root`` (``.../EmoBox/data/<dataset>``), audio under
    ``audio_root`` (default: the EmoBox folder two levels above ``root``, where its download script writes
    ``downloads/``). The corpus is named ``emobox-<dataset>``; labels are EmoBox's names mapped to ser_fast's
    (``CLASS_NAMES``: "Fear" → "fearful", ...). ``classes="emobox"`` keeps every class the label map names (what
    EmoBox's leaderboard scores); a smaller set skips the rest, and the log says how many. With ``check_audio``, fold
    files that name missing audio are refused (FileNotFoundError): a fold without its files is not EmoBox's fold
    (without it, nothing reads the audio here)."""
    root = check_root(root, "EmoBox dataset")
    audio_root = check_root(audio_root if audio_root is not None else root.parent.parent, "EmoBox audio")
    dataset = root.name
    labels = _label_map(root)
    if classes == ALL_CLASSES:
        classes = tuple(dict.fromkeys(name for name in labels.values() if name))
    records, folds_of, source_of, builder = {}, {}, {}, CorpusBuilder(f"{NAME}-{dataset}", root, classes, check_audio)
    clips: set[str] = set()
    for fold, part, path in _fold_files(root, dataset):
        for number, line in enumerate(read_text_lines(path), 1):
            if not line.strip():
                continue
            item, record = f"{path}:{number}", _record(path, number, line)
            key = record["key"]
            if key in records and (records[key]["wav"], records[key]["emo"]) != (record["wav"], record["emo"]):
                raise ValueError(f"{item}: key {key!r} names {record['wav']!r} ({record['emo']}) here but "
                                 f"{records[key]['wav']!r} ({records[key]['emo']}) in {source_of[key]}")
            if {"start_time", "end_time"} & set(record):
                if key not in clips:  # listed in several fold files, skipped once
                    clips.add(key)
                    builder.skip(item, "a clip of a longer recording (start_time/end_time), which is not supported")
                continue
            records.setdefault(key, record)
            source_of.setdefault(key, item)
            folds_of.setdefault(key, {})[fold] = part
    rule = SPEAKER_RULES.get(dataset)
    unmatched = 0
    for key, record in records.items():
        speaker, session = _speaker(dataset, key, rule)
        unmatched += rule is not None and speaker == UNKNOWN_SPEAKER
        builder.add(audio_root / record["wav"], record["emo"].lower(), labels, speaker=speaker, session=session,
                    extra={"emobox_key": key, "emobox_folds": dict(sorted(folds_of[key].items())),
                           **({"length_s": record["length"]} if "length" in record else {})})
    corpus = builder.build()
    outside = sum(s.reason.endswith("not in classes") for s in corpus.skipped)
    if outside:
        logger.warning("EmoBox %s: %d utterances have labels outside the classes %s and were skipped; EmoBox's "
                       "leaderboard scores every class of the label map (classes=%r)", dataset, outside,
                       list(corpus.classes), ALL_CLASSES)
    _refuse_missing_audio(corpus, {str(audio_root / r["wav"]): source_of[k] for k, r in records.items()}, audio_root)
    if rule is None:
        logger.warning("EmoBox %s: its keys do not encode speakers; every utterance has speaker %r (the emobox "
                       "protocol needs none; loso, session and halves cannot be used)", dataset, UNKNOWN_SPEAKER)
    elif unmatched:
        logger.warning("EmoBox %s: %d keys do not name a speaker as its keys do; they have speaker %r", dataset,
                       unmatched, UNKNOWN_SPEAKER)
    return corpus


def _label_map(root: Path) -> dict[str, str | None]:
    """The corpus' codes (lower-cased: EmoDB's map says "Neutral", its files "neutral") → ser_fast class names."""
    path = next((root / name for name in LABEL_FILES if (root / name).is_file()), None)
    if path is None:
        raise FileNotFoundError(f"no EmoBox label map: expected {root / LABEL_FILES[0]}")
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a JSON object of label codes ({error})") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ValueError(f"{path}: expected a JSON object mapping each label code to a class name")
    names = {code.lower(): name.strip().lower() for code, name in mapping.items()}
    return {code: CLASS_NAMES.get(name, name) for code, name in names.items()}


def _fold_files(root: Path, dataset: str) -> list[tuple[int, str, Path]]:
    """``(fold, part, file)`` for every fold file, folds in numeric order."""
    folds = sorted((int(m[1]), p) for p in root.iterdir() if p.is_dir() and (m := FOLD_FOLDER.match(p.name)))
    if not folds:
        raise FileNotFoundError(f"no EmoBox folds: expected {root}/fold_1/{dataset}_train_fold_1.jsonl and "
                                f"{dataset}_test_fold_1.jsonl")
    found = []
    for fold, folder in folds:
        parts = {}
        for split, part in PARTS.items():
            for name in (f"{dataset}_{split}_fold_{fold}.jsonl", f"{dataset}_{split}_fold{fold}.jsonl"):
                if (folder / name).is_file():
                    parts.setdefault(part, folder / name)
        missing = [part for part in ("train", "test") if part not in parts]
        if missing:
            raise FileNotFoundError(f"EmoBox fold {fold}: no {' or '.join(missing)} file, expected "
                                    f"{folder}/{dataset}_{missing[0]}_fold_{fold}.jsonl")
        found.extend((fold, part, path) for part, path in parts.items())
    return found


def _record(path: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path}:{number}: not a JSON object ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}:{number}: expected a JSON object with {', '.join(REQUIRED)}, "
                         f"got {type(record).__name__}")
    bad = [key for key in REQUIRED if not isinstance(record.get(key), str) or not record[key].strip()]
    if bad:
        raise ValueError(f"{path}:{number}: missing or empty {', '.join(bad)}; EmoBox lines have "
                         f"{', '.join(REQUIRED)} (and dataset, sample_rate, length, ...)")
    return record


def _speaker(dataset: str, key: str, rule: tuple[re.Pattern, str] | None) -> tuple[str, str]:
    """``(speaker, session)`` from an EmoBox key; IEMOCAP's session is ``Session<k>``, as its own loader names it."""
    if rule is None:
        return UNKNOWN_SPEAKER, ""
    match = rule[0].match(key.removeprefix(f"{dataset}-"))
    if match is None:
        return UNKNOWN_SPEAKER, ""
    speaker = match.expand(rule[1])
    return speaker, f"Session{int(speaker[3:5])}" if dataset == "iemocap" else ""


def _refuse_missing_audio(corpus: Corpus, line_of: dict[str, str], audio_root: Path) -> None:
    """A FileNotFoundError naming the first fold-file line whose audio is missing (``line_of``: audio path → line)."""
    missing = [s.item for s in corpus.skipped if s.reason == "missing audio"]
    if missing:
        raise FileNotFoundError(f"EmoBox {corpus.name}: the fold files name {len(missing)} audio files that are not "
                                f"under {audio_root}, e.g. {missing[0]} ({line_of.get(missing[0], 'a fold file')}); "
                                "EmoBox's folds need every file. Is audio_root the folder its download script ran "
                                "in, and is the download complete?")
