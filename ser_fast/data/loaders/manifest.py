"""Any corpus described by a manifest: CSV with a header or JSONL (one JSON object a line) with ``path``, ``label`` (a
class name, as written), ``speaker``, optionally ``session``, ``gender``, ``split``, ``corpus``; others in ``extra``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ser_fast.data.corpus import Corpus
from ser_fast.data.loaders._common import CorpusBuilder, check_root, normalise_gender, read_csv, read_text_lines

NAME = "manifest"
REQUIRED = ("path", "label", "speaker")
OPTIONAL = ("session", "gender", "split", "corpus")
FILE_NAMES = ("manifest.csv", "manifest.jsonl")


def load_manifest(root: str | os.PathLike, *, classes: str | Sequence[str] = "4class", check_audio: bool = True) -> Corpus:
    """The utterances of a ``.csv`` or ``.jsonl`` manifest, or of ``manifest.csv``/``manifest.jsonl``
    in the folder ``root``. Relative audio paths are taken from the manifest's folder. Gender
    spellings M/F/male/female become "M"/"F", others stay as written; ``corpus`` defaults to "manifest"."""
    manifest = _manifest_file(check_root(root, "manifest", folder=False))
    builder = CorpusBuilder(NAME, manifest, classes, check_audio)
    for item, record in _records(manifest):
        empty = [key for key in REQUIRED if not record[key]]
        if empty:
            builder.skip(item, f"row without {empty[0]}")
            continue
        path = Path(record["path"]).expanduser()
        builder.add(path if path.is_absolute() else manifest.parent / path, record["label"], None,
                    speaker=record["speaker"], session=record.get("session", ""),
                    gender=normalise_gender(record.get("gender", "")) or record.get("gender", ""),
                    split=record.get("split", ""), corpus=record.get("corpus") or NAME,
                    extra={key: value for key, value in record.items() if key not in REQUIRED + OPTIONAL})
    return builder.build()


def _manifest_file(root: Path) -> Path:
    if root.is_dir():
        present = [root / name for name in FILE_NAMES if (root / name).is_file()]
        if not present:
            raise FileNotFoundError(f"no manifest: expected {root / FILE_NAMES[0]} or {root / FILE_NAMES[1]}")
        if len(present) > 1:
            raise ValueError(f"{root} holds both {FILE_NAMES[0]} and {FILE_NAMES[1]}; pass the one to load")
        return present[0]
    if root.suffix.lower() not in (".csv", ".jsonl"):
        raise ValueError(f"manifest {root}: expected a .csv or .jsonl file, got {root.suffix or 'no suffix'!r}")
    return root


def _records(manifest: Path) -> Iterator[tuple[str, dict]]:
    """(item naming the row, record with the text fields as stripped strings)."""
    if manifest.suffix.lower() == ".csv":
        for number, row in enumerate(read_csv(manifest, REQUIRED), 2):
            yield f"{manifest}:{number}", row
        return
    for number, line in enumerate(read_text_lines(manifest), 1):
        if line.strip():
            yield f"{manifest}:{number}", _json_record(manifest, number, line)


def _json_record(manifest: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{manifest}:{number}: not valid JSON ({error})") from None
    except RecursionError:
        raise ValueError(f"{manifest}:{number}: JSON nested too deeply to be a manifest row") from None
    if not isinstance(record, dict):
        raise ValueError(f"{manifest}:{number}: expected a JSON object with {', '.join(REQUIRED)}, "
                         f"got {type(record).__name__}")
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise ValueError(f"{manifest}:{number}: missing required key(s) {', '.join(missing)}; "
                         f"expected {', '.join(REQUIRED)}")
    for key in REQUIRED + OPTIONAL:
        if key in record:
            record[key] = "" if record[key] is None else str(record[key]).strip()
    return record
