"""What ``ser-fast predict`` reads: audio files, folders of them, and list files, expanded into one deterministic list
of inputs. Each command-line spec is

- a list file (``.txt`` or ``.lst``): one file or folder per line, relative to the list file's folder;
  blank lines and lines starting with ``#`` skipped;
- a folder: every audio file below it (recursive, symlinked folders not followed), sorted by path;
- anything else: one audio file, whatever its extension (soundfile reads by content).

In a folder, a file is audio when its extension is one libsndfile here reads or one of a container ffmpeg holds audio
in (``ser_fast.data.containers``: m4a, mp4, webm, wma, amr, ...); a corrupt one is still an input, and gets its error
row when decoded, so that every recording shows up in the output; other files are left out. A missing spec, or a
folder with no audio, becomes an input with an error. Sources are absolute paths (a resumed run started elsewhere still
knows them), each kept once, at its first place."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from ser_fast.data.containers import container_extensions

logger = logging.getLogger(__name__)

LIST_SUFFIXES = (".txt", ".lst")

# libsndfile major format -> the file extensions it is stored under. RAW (header-less) is left out: it
# cannot be read without being told the sample rate and encoding; MAT4/MAT5 and MPC2K are left out because
# ``.mat`` and ``.mpc`` files are nearly always MATLAB data and Musepack audio, which libsndfile cannot read.
FORMAT_EXTENSIONS = {
    "WAV": ("wav", "wave"), "WAVEX": ("wav",), "RF64": ("rf64",), "W64": ("w64",), "NIST": ("nist", "sph"),
    "AIFF": ("aiff", "aif", "aifc"), "AU": ("au", "snd"), "CAF": ("caf",), "FLAC": ("flac",),
    "OGG": ("ogg", "oga", "opus"), "MP3": ("mp3",), "IRCAM": ("sf",), "VOC": ("voc",), "HTK": ("htk",),
    "SVX": ("8svx", "iff", "svx"), "PAF": ("paf",), "PVF": ("pvf",), "SD2": ("sd2",), "SDS": ("sds",),
    "XI": ("xi",), "AVR": ("avr",), "WVE": ("wve",),
}

def readable_audio_extensions() -> frozenset[str]:
    """The lower-case extensions (no dot) of every format this machine's libsndfile reads, and of every container its
    ffmpeg (PyAV's) holds audio in."""
    formats = sf.available_formats()
    return container_extensions() | frozenset(
        ext for name, extensions in FORMAT_EXTENSIONS.items() if name in formats for ext in extensions)


@dataclass(frozen=True)
class InputItem:
    """One input of a prediction job: its source path, and why it cannot be read when that is known before decoding
    (missing, a folder that cannot be listed)."""

    source: str
    error: str | None = None


def list_inputs(specs: Iterable[str | os.PathLike]) -> list[InputItem]:
    """Expand command-line specs (files, folders, list files; see the module docstring) into inputs, in the order given,
    each folder's files sorted, each source once (first wins)."""
    if isinstance(specs, (str, os.PathLike)):
        raise TypeError(f"specs must be a sequence of paths, not one path ({specs!r}); wrap it in a list")
    readable = readable_audio_extensions()
    seen: set[str] = set()
    items: list[InputItem] = []
    for spec in specs:
        if not isinstance(spec, (str, os.PathLike)):
            raise TypeError(f"every spec must be a path (str or os.PathLike), got {type(spec).__name__}: {spec!r}")
        if str(spec) == "":
            raise ValueError("an input spec is empty; expected a file, a folder or a list file")
        for item in _expand_spec(Path(spec), readable):
            if item.source not in seen:
                seen.add(item.source)
                items.append(item)
    return items


def _expand_spec(path: Path, readable: frozenset[str], lists: bool = True) -> Iterator[InputItem]:
    if path.is_dir():
        yield from _folder_inputs(path, readable)
    elif lists and path.suffix.lower() in LIST_SUFFIXES:
        yield from _list_file_inputs(path, readable)
    else:
        yield _file_input(path)


def _file_input(path: Path) -> InputItem:
    source = os.path.abspath(path)
    if not os.path.lexists(source):
        return InputItem(source, f"{source}: no such file or folder")
    if not os.path.exists(source):
        return InputItem(source, f"{source}: a symbolic link that leads nowhere (its target is missing, or the links "
                                 "form a loop)")
    return InputItem(source)


def _folder_inputs(folder: Path, readable: frozenset[str]) -> Iterator[InputItem]:
    failures: list[OSError] = []
    found: list[str] = []
    for parent, subfolders, files in os.walk(os.path.abspath(folder), onerror=failures.append):
        subfolders.sort()
        found.extend(os.path.join(parent, name) for name in files)
    # Walk order differs between file systems; sorting the full paths makes the order the same everywhere.
    audio = 0
    for source in sorted(found):
        extension = os.path.splitext(source)[1].lower().lstrip(".")
        if extension in readable:
            audio += 1
            yield InputItem(source)
    if not audio and not failures:
        # The folder was named (on the command line or in a list): it gets a row saying why it gave no input.
        where = os.path.abspath(folder)
        logger.warning("%s: no audio files in this folder (%d other files)", where, len(found))
        yield InputItem(where, f"{where}: a folder with no audio file in it ({len(found)} other files)")
    for failure in failures:
        where = os.path.abspath(failure.filename) if failure.filename else os.path.abspath(folder)
        yield InputItem(where, f"{where}: could not list the folder ({failure.strerror or failure})")


def _list_file_inputs(list_file: Path, readable: frozenset[str]) -> Iterator[InputItem]:
    source = os.path.abspath(list_file)
    try:
        text = list_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        yield InputItem(source, f"{source}: no such list file")
        return
    except (OSError, UnicodeDecodeError) as error:
        yield InputItem(source, f"{source}: could not read the list file ({error})")
        return
    base = list_file.parent
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else base / path
        # List entries are files or folders; a list inside a list is read as an audio file (and fails as one),
        # which keeps lists from including each other in circles.
        yield from _expand_spec(path, readable, lists=False)
