"""What the corpus loaders share: checking the root, mapping labels, checking audio headers, reading
CSV files with required columns, and collecting kept and skipped items into a ``Corpus``."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import soundfile as sf

from ser_fast.data.audio import AudioError, audio_info, native_name
from ser_fast.data.corpus import Corpus, Skipped, Utterance, class_names

logger = logging.getLogger(__name__)

GENDERS = {"m": "M", "male": "M", "f": "F", "female": "F"}


def check_root(root: str | os.PathLike, title: str, *, folder: bool = True) -> Path:
    """``root`` as an absolute Path; FileNotFoundError naming it if it is not an existing folder (or file)."""
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike), got {type(root).__name__}")
    path = Path(root).expanduser().absolute()
    if folder and not path.is_dir():
        raise FileNotFoundError(f"{title} root {path} is not an existing folder")
    if not folder and not path.exists():
        raise FileNotFoundError(f"{title} root {path} does not exist")
    return path


def check_audio_folder(folder: Path, title: str, layout: str) -> None:
    """A corpus whose audio folder is absent would skip every utterance as missing: say so once."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no {title} audio folder: expected {folder} ({layout})")


def normalise_gender(value: str) -> str:
    """"M" or "F" from the spellings corpora use (M/F, Male/Female); "" when unknown."""
    return GENDERS.get(value.strip().lower(), "")


def visible_files(folder: Path, pattern: str) -> list[Path]:
    """Sorted files matching ``pattern``, without hidden ones: some releases ship macOS ``._*``
    resource forks next to each real file, with the same suffix."""
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))


def audio_files_in(folder: Path, corpus: str, layout: str) -> list[Path]:
    """The wav files of a corpus that keeps all its audio in one folder; FileNotFoundError naming the
    folder (and the layout expected in it) when it is missing or holds no wav file."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no {corpus} audio folder: expected {folder} holding {layout}")
    files = visible_files(folder, "*.wav")
    if not files:
        raise FileNotFoundError(f"no {corpus} audio files: expected {folder}/{layout}")
    return files


def read_csv(path: Path, required: Sequence[str]) -> Iterator[dict[str, str]]:
    """The rows of a CSV file with a header, streamed; ValueError naming the file for a missing column or non-UTF-8."""
    with _text_errors(path), path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing required column(s) {', '.join(missing)}; "
                             f"expected a header with {', '.join(required)}, found {columns or 'no header'}")
        for row in reader:
            yield {key.strip(): (value or "").strip() for key, value in row.items() if key is not None}


def read_text_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file (BOM dropped), streamed; ValueError naming the file for another encoding."""
    with _text_errors(path), path.open(encoding="utf-8-sig") as handle:
        yield from handle


@contextmanager
def _text_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8 (e.g. "
                         "iconv -f UTF-16 -t UTF-8, or from Latin-1)") from None


def audio_problem(path: Path) -> str | None:
    """None for a usable audio file, else a short category for ``Skipped.reason`` (the full message is logged)."""
    try:
        audio_info(path)
        return None
    except AudioError as error:
        logger.warning("skipping utterance: %s", error)
    if not path.is_file():
        return "missing audio"
    if path.stat().st_size == 0:
        return "empty audio"
    try:
        info = sf.info(native_name(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return "unreadable audio"
    return "empty audio" if info.frames <= 0 else "unreadable audio"


def _file_key(path: Path) -> Path:
    """One key per file however spelt: a path through ``..`` is resolved (a symlinked folder makes ``sub/..`` other
    than ``.``); others are only made absolute, without a system call per row (a million-row manifest would pay it)."""
    if ".." in path.parts:
        try:
            return Path(os.path.realpath(path))
        except (OSError, ValueError):
            pass
    return Path(os.path.abspath(path))


class CorpusBuilder:
    """Collects a loader's utterances: maps each corpus label code to a class name, records whatever is not kept as
    ``Skipped`` (one reason per distinct label, so summaries count per label), and checks audio headers when asked."""

    def __init__(self, name: str, root: Path, classes: str | Sequence[str], check_audio: bool) -> None:
        if not isinstance(check_audio, bool):
            raise TypeError(f"check_audio must be True or False, got {check_audio!r}")
        self.name = name
        self.root = root
        self.classes = class_names(classes)
        self.check_audio = check_audio
        self.utterances: list[Utterance] = []
        self.skipped: list[Skipped] = []
        self._paths: set[Path] = set()  # normalised: sub/../a.wav and a.wav are one file

    def skip(self, item: str | Path, reason: str) -> None:
        self.skipped.append(Skipped(str(item), reason))

    def add(self, path: Path, code: str, label_map: Mapping[str, str | None] | None, *, speaker: str,
            session: str = "", gender: str = "", split: str = "", extra: dict | None = None,
            corpus: str | None = None) -> None:
        """Keep the utterance if ``code`` maps (through ``label_map``; None: the code is the class name)
        to one of the classes and, with ``check_audio``, its file is usable; else record why not."""
        label = code if label_map is None else label_map.get(code)
        if label not in self.classes:
            unknown = label_map is not None and code not in label_map
            reason = f"unknown label {code!r}" if unknown else f"label {code!r} not in classes"
        else:
            reason = self._file_problem(path)
        if reason:
            self.skip(path, reason)
            return
        self.utterances.append(Utterance(path=path, label=label, speaker=speaker, corpus=corpus or self.name,
                                         session=session, gender=gender, split=split, extra=extra or {}))

    def _file_problem(self, path: Path) -> str | None:
        key = _file_key(path)
        if key in self._paths:
            return "duplicate entry"
        if self.check_audio:
            try:
                problem = audio_problem(path)
            except OSError as error:
                logger.warning("skipping utterance: %s: unusable path (%s)", path, error)
                return "unusable path"
            if problem:
                return problem
        self._paths.add(key)
        return None

    def build(self) -> Corpus:
        utterances = sorted(self.utterances, key=lambda u: str(u.path))
        skipped = sorted(self.skipped, key=lambda s: (s.item, s.reason))
        if skipped:
            logger.info("%s: kept %d utterances, skipped %d items", self.name, len(utterances), len(skipped))
        return Corpus(name=self.name, root=self.root, classes=self.classes, utterances=utterances, skipped=skipped)

