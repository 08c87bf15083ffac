"""Corpus loaders by name: ``load_corpus("iemocap", root)`` reads a corpus in its released layout into a ``Corpus`` of
utterances with class labels, speakers and sessions, recording whatever it does not keep in ``Corpus.skipped``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ser_fast.data.corpus import Corpus
from ser_fast.data.loaders.crema_d import load_crema_d
from ser_fast.data.loaders.emobox import load_emobox
from ser_fast.data.loaders.emodb import load_emodb
from ser_fast.data.loaders.iemocap import load_iemocap
from ser_fast.data.loaders.manifest import load_manifest
from ser_fast.data.loaders.msp_improv import load_msp_improv
from ser_fast.data.loaders.msp_podcast import load_msp_podcast
from ser_fast.data.loaders.ravdess import load_ravdess

LOADERS: dict[str, Callable[..., Corpus]] = {
    "iemocap": load_iemocap, "msp-improv": load_msp_improv, "msp-podcast": load_msp_podcast, "ravdess": load_ravdess,
    "crema-d": load_crema_d, "emodb": load_emodb, "manifest": load_manifest, "emobox": load_emobox,
}
CORPUS_NAMES = tuple(LOADERS)


def load_corpus(name: str, root: str | os.PathLike, *, classes: str | Sequence[str] = "4class",
                check_audio: bool = True, audio_root: str | os.PathLike | None = None) -> Corpus:
    """The corpus ``name`` (one of ``CORPUS_NAMES``) from ``root``: its folder, or for "manifest" the
    CSV/JSONL file (or a folder holding manifest.csv or manifest.jsonl), or for "emobox" an EmoBox dataset folder
    (``EmoBox/data/<dataset>``) whose ``wav`` paths are relative to ``audio_root``.

    Args:
        classes: a named set ("4class": neutral, happy, sad, angry; a corpus' own labels: "ravdess8", "crema-d6",
            "emodb7", "msp-podcast8", "msp-podcast10"; for "emobox", "emobox": every class of the dataset's label
            map) or a sequence of label names; utterances with other labels are skipped and counted per label.
        check_audio: read each kept file's header (cheap) and skip missing, unreadable or empty ones
            (reason "missing audio", "unreadable audio" or "empty audio"; the details are logged).
    Raises:
        ValueError for an unknown name or class set, or a malformed annotation file (e.g. a missing
        column); FileNotFoundError naming the folder or file the layout needs and that is absent (for "emobox",
        also audio that a fold file names and that is missing).
    """
    if not isinstance(name, str) or name not in LOADERS:
        raise ValueError(f"unknown corpus {name!r}; expected one of {', '.join(CORPUS_NAMES)}")
    if name == "emobox":
        return load_emobox(root, classes=classes, check_audio=check_audio, audio_root=audio_root)
    if audio_root is not None:
        raise ValueError(f"audio_root is for EmoBox's fold files (corpus 'emobox'); {name!r} finds its audio "
                         "under root")
    return LOADERS[name](root, classes=classes, check_audio=check_audio)


__all__ = ["CORPUS_NAMES", "LOADERS", "load_corpus", "load_crema_d", "load_emobox", "load_emodb", "load_iemocap",
           "load_manifest", "load_msp_improv", "load_msp_podcast", "load_ravdess"]
