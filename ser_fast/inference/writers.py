"""Prediction rows on disk, ``.jsonl`` (one JSON object per line) or ``.csv``, appended so that a killed job loses at
most the batch it was writing and a re-run resumes where it stopped: opening an existing file reads the sources already
done, cuts off a row cut short by a kill (its input is done again) and refuses a file written for other columns.

Columns (:func:`output_columns`): ``source``, ``label``, ``error``, ``warning`` (a labelled but damaged input),
``duration_s``, ``prob_<class>`` per class, ``arousal``, ``valence``, ``dominance`` for a model with a dimensional
head (on its corpus' rating scale), ``windows`` (0 on error), ``timeline`` (empty when the audio fits one
window) and, when asked, ``embedding``. With segmentation each file has a row per segment (``segment``, ``start_s``,
``end_s``, ``speaker``) and then its own (``segment`` empty, ``speech_shares``); a resumed run skips each row written.
In CSV, ``timeline`` and ``embedding`` are JSON strings and a missing value is an empty field; in JSONL, lists and
``null``. Non-UTF-8 sources: :func:`row_text`."""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent writers are then the user's to avoid.
    fcntl = None

logger = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".csv")
SEGMENT_COLUMNS = ("segment", "start_s", "end_s", "speaker")
KEY_SEPARATOR = "\x00"  # a row key's source and segment; no path holds a NUL


class OutputFileError(ValueError):
    """An output file that cannot be used: unsupported suffix, other columns, corrupt, or in use."""


def output_format(path: str | os.PathLike) -> str:
    """``"jsonl"`` or ``"csv"``, from the suffix of ``path``; an OutputFileError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise OutputFileError(f"--out {path}: unsupported suffix {suffix or '(none)'!r}; "
                              f"expected one of {', '.join(SUFFIXES)}")
    return suffix[1:]


def row_text(source: str | os.PathLike) -> str:
    """The text a source (or a message naming one) takes in a row: itself, or for a file name that is not valid UTF-8,
    the name with each undecodable byte as ``\\xNN`` (``b\\xff.wav``)."""
    text = os.fspath(source)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def output_columns(classes: Sequence[str], *, embedding: bool = False, segments: bool = False,
                   dimensions: Sequence[str] = ()) -> tuple[str, ...]:
    """The columns of a prediction row for a model with ``classes`` (none for a dimensional model) and
    ``dimensions``; with ``segments``, also ``segment``, ``start_s``, ``end_s``, ``speaker`` (a segment's row) and
    ``speech_shares`` (the file's row)."""
    for name, values in (("classes", classes), ("dimensions", dimensions)):
        if isinstance(values, str) or not all(isinstance(c, str) and c for c in values):
            raise ValueError(f"{name} must be a sequence of non-empty names, got {values!r}")
    if not classes and not dimensions:
        raise ValueError("a prediction row needs classes or dimensions (a model predicts one or both)")
    where = SEGMENT_COLUMNS if segments else ()
    columns = ("source", *where, "label", "error", "warning", "duration_s", *(f"prob_{name}" for name in classes),
               *dimensions, "windows", "timeline", *(("speech_shares",) if segments else ()))
    return (*columns, "embedding") if embedding else columns


def row_key(source: str, segment: object = None) -> str:
    """What identifies a row for resuming: its source, and for a segment's row its index (a file's own row has none)."""
    return source if segment in (None, "") else f"{source}{KEY_SEPARATOR}{segment}"


def file_of(key: str) -> str:
    """The source a row key belongs to."""
    return key.split(KEY_SEPARATOR, 1)[0]


def prediction_rows(prediction, classes: Sequence[str], *, embedding: bool = False, segments: bool = False,
                    dimensions: Sequence[str] = ()) -> list[dict]:
    """The rows of a ``Prediction`` (keys = ``output_columns``): one, or with ``segments`` one per segment and then the
    file's own (``segment`` empty, ``speech_shares`` set)."""
    row = prediction_row(prediction, classes, embedding=embedding, dimensions=dimensions)
    if not segments:
        return [row]
    rows = []
    for segment in prediction.segments:
        failed = segment.error is not None
        rows.append({
            "source": row["source"], "segment": segment.index, "start_s": float(segment.start_s),
            "end_s": float(segment.end_s), "speaker": segment.speaker, "label": segment.label,
            "error": " ".join(row_text(segment.error).split()) if failed else None, "warning": None,
            "duration_s": float(segment.end_s - segment.start_s),
            **{f"prob_{name}": segment.probabilities.get(name) for name in classes},
            **{name: segment.dimensions.get(name) for name in dimensions},
            "windows": 0 if failed else max(1, len(segment.timeline)),
            "timeline": [w.as_dict() for w in segment.timeline], "speech_shares": None,
            **({"embedding": None} if embedding else {}),
        })
    classified = [s for s in prediction.segments if s.error is None]
    rows.append({**row, "segment": None, "start_s": None, "end_s": None, "speaker": None,
                 "windows": sum(max(1, len(s.timeline)) for s in classified) if classified else 0,
                 "speech_shares": dict(prediction.speech_shares) or None})
    return rows


def prediction_row(prediction, classes: Sequence[str], *, embedding: bool = False,
                   dimensions: Sequence[str] = ()) -> dict:
    """One JSON-able row (keys = ``output_columns``) from a ``Prediction``."""
    probabilities = prediction.probabilities or {}
    timeline = [w.as_dict() for w in prediction.timeline]
    failed = prediction.error is not None
    row = {
        "source": row_text(prediction.source),
        "label": prediction.label,
        # Newlines in a decoder's message would make a CSV row span lines for no benefit.
        "error": " ".join(row_text(str(prediction.error)).split()) if failed else None,
        "warning": None if prediction.warning is None else " ".join(row_text(prediction.warning).split()),
        "duration_s": None if prediction.duration_s is None else float(prediction.duration_s),
        **{f"prob_{name}": (None if name not in probabilities else float(probabilities[name])) for name in classes},
        **{name: prediction.dimensions.get(name) for name in dimensions},
        "windows": 0 if failed else max(1, len(timeline)),
        "timeline": timeline,
    }
    if embedding:
        vector = prediction.embedding
        row["embedding"] = None if vector is None else [float(v) for v in vector.reshape(-1)]
    return row


class RowWriter:
    """Appends rows to ``path`` (created if missing), each batch flushed and fsync'd. ``done``: the keys of the rows
    already in the file when opened, plus those written since (:func:`row_key`: a source, or a source and segment).
    Locked while open (POSIX): two jobs cannot write it at once."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str]):
        self.path = Path(path)
        self.format = output_format(self.path)
        self.columns = tuple(columns)
        if not self.columns or self.columns[0] != "source":
            raise ValueError(f"columns must start with 'source', got {self.columns!r}")
        if self.path.is_dir():
            raise OutputFileError(f"{self.path} is a folder; --out names the file to write, e.g. preds.jsonl")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+b")
        try:
            _lock(self._file, self.path)
            self._file.seek(0)
            records, good_end = _scan(self._file.read(), self.format, self.columns, self.path)
            size = self._file.tell()
            if good_end < size:
                logger.warning("%s: cut off %d bytes of a row left unfinished by an earlier run (killed?); its input "
                               "is done again", self.path, size - good_end)
                self._file.truncate(good_end)
            if good_end == 0 and self.format == "csv":  # empty, or only a header cut short
                self._append([_encode_csv(self.columns)])
            self._sync()
        except BaseException:
            self._file.close()
            raise
        self.done: set[str] = {key for key, _ in records}

    def write(self, rows: Sequence[dict]) -> None:
        """Append ``rows`` (dicts with exactly this writer's columns), then flush and fsync."""
        for row in rows:
            if not isinstance(row, dict) or set(row) != set(self.columns):
                raise ValueError(f"a row must be a dict with the columns {self.columns}, got "
                                 f"{sorted(row) if isinstance(row, dict) else type(row).__name__}")
        self.write_records([(row_key(row_text(row["source"]), row.get("segment")),
                             _encode_row(row, self.columns, self.format)) for row in rows])

    def write_records(self, records: Sequence[tuple[str, str]]) -> None:
        """Append already-encoded rows (as read from another file with the same columns), fsync'd."""
        self._append([text for _, text in records])
        self._sync()
        self.done.update(key for key, _ in records)

    def fileno(self) -> int:
        """The descriptor that holds the lock (a forked process that inherits it must close it)."""
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _append(self, texts: Sequence[str]) -> None:
        self._file.write("".join(texts).encode("utf-8"))

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())


def read_records(path: str | os.PathLike, columns: Sequence[str]) -> list[tuple[str, str]]:
    """The complete rows of an existing file as (row key, encoded text), without changing the file; a line cut short at
    the end is ignored. An OutputFileError if the file holds other columns."""
    path = Path(path)
    return _scan(path.read_bytes(), output_format(path), tuple(columns), path)[0]


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Every complete row of a prediction file as a dict (CSV values as strings, empty for missing)."""
    path = Path(path)
    fmt = output_format(path)
    text = path.read_bytes().decode("utf-8")
    complete = text[:text.rfind("\n") + 1]
    if fmt == "jsonl":
        return [json.loads(line) for line in complete.splitlines() if line]
    with _any_field_size():
        return list(csv.DictReader(io.StringIO(complete, newline="")))


@contextmanager
def _any_field_size():
    """csv refuses fields over 128 KiB by default, shorter than a long recording's timeline; the limit is the csv
    module's global, so it is restored afterwards."""
    previous = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _lock(handle, path: Path) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputFileError(f"{path} is being written by another job; wait for it or pick another --out") from None


def _encode_row(row: dict, columns: tuple[str, ...], fmt: str) -> str:
    if fmt == "jsonl":
        return json.dumps({name: row[name] for name in columns}, ensure_ascii=False) + "\n"
    return _encode_csv([_csv_field(row[name]) for name in columns])


def _csv_field(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return repr(value) if isinstance(value, float) else str(value)


def _encode_csv(fields: Sequence[str]) -> str:
    buffer = io.StringIO()
    # csv quotes a field that holds a character of the line terminator, so "\r\n" gets a lone "\r" (in a
    # file name, say) quoted as well as "\n"; the row itself then ends in "\n" like every other.
    csv.writer(buffer, lineterminator="\r\n").writerow(fields)
    return buffer.getvalue()[:-2] + "\n"


def _scan(data: bytes, fmt: str, columns: tuple[str, ...], path: Path) -> tuple[list[tuple[str, str]], int]:
    """The complete rows of a file's bytes as (source, encoded text), and where the last one ends."""
    lines = data.split(b"\n")
    # The piece after the last newline is a row cut short by a kill (or nothing): it is never kept.
    complete = [line + b"\n" for line in lines[:-1]]
    try:
        texts = [line.decode("utf-8") for line in complete]
    except UnicodeDecodeError as error:
        raise OutputFileError(f"{path} is not UTF-8 text ({error}); pick another --out") from None
    if fmt == "jsonl":
        return _scan_jsonl(texts, columns, path)
    return _scan_csv(texts, columns, path)


def _scan_jsonl(lines: list[str], columns: tuple[str, ...], path: Path) -> tuple[list[tuple[str, str]], int]:
    records, end = [], 0
    for number, line in enumerate(lines, 1):
        end += len(line.encode("utf-8"))
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise OutputFileError(f"{path}, line {number}: not a JSON object; the file is not a prediction file "
                                  "written by ser-fast (or was edited); pick another --out") from None
        if not isinstance(row, dict) or set(row) != set(columns):
            raise OutputFileError(_columns_message(path, sorted(row) if isinstance(row, dict) else [], columns))
        records.append((row_key(str(row["source"]), row.get("segment")), line))
    return records, end


def _scan_csv(lines: list[str], columns: tuple[str, ...], path: Path) -> tuple[list[tuple[str, str]], int]:
    if not lines:
        return [], 0
    # A quoted field may hold a newline, so one row may span several lines: the reader's line_num says how
    # many lines it has taken, and so where each row's text starts and ends.
    ends = list(itertools.accumulate(len(line.encode("utf-8")) for line in lines))
    records: list[tuple[str, str]] = []
    with _any_field_size():
        reader = csv.reader(lines)
        header = next(reader)
        if tuple(header) != columns:
            raise OutputFileError(_columns_message(path, header, columns))
        taken = reader.line_num
        for fields in reader:
            text = "".join(lines[taken:reader.line_num])
            if fields and len(fields) != len(columns):
                # An odd number of quotes at the very end: the data stops inside a quoted field that held a
                # newline, so this row was cut short by a kill, and is cut off with the tail.
                if reader.line_num == len(lines) and text.count('"') % 2:
                    break
                raise OutputFileError(f"{path}, line {reader.line_num}: {len(fields)} fields, expected "
                                      f"{len(columns)}; the file was edited or is corrupt; pick another --out")
            if fields:
                records.append((row_key(fields[0], fields[1] if columns[1] == "segment" else None), text))
            taken = reader.line_num
    return records, ends[taken - 1]


def _columns_message(path: Path, found: Sequence[str], expected: Sequence[str]) -> str:
    return (f"{path} holds rows with columns {list(found)}, but this run writes {list(expected)} (another model's "
            "classes, or --embeddings differs); pick another --out, or remove the file to start over")
