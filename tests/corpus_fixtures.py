"""Tiny corpora in each release's exact layout, with real wav files written by soundfile.

Each ``make_*`` builds a tree under the folder it is given and returns the root to pass to
``load_corpus`` (for manifests, the manifest file). ``write_odd_wav`` overwrites a file with one
of the awkward kinds found in real releases. ``speech_with_gaps`` is a long recording of the
synthesizer's speech whose speech positions are known.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from ser_fast.data.synthetic.prosody import EMOTIONS, draw_speaker
from ser_fast.data.synthetic.utterance import synthesize_utterance
from ser_fast.frontend.constants import SAMPLE_RATE

ODD_KINDS = ("empty", "truncated", "stereo", "pcm_u8", "48khz")


def write_wav(path: Path, *, seconds: float = 0.1, sample_rate: int = 16000, channels: int = 1,
              subtype: str = "PCM_16", seed: int = 0) -> Path:
    """``seconds`` of quiet noise (never silent, so no reader mistakes it for padding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = round(seconds * sample_rate)
    noise = 0.1 * np.random.default_rng(seed).standard_normal((frames, channels))
    sf.write(str(path), np.clip(noise, -1, 1), sample_rate, subtype=subtype)
    return path


def write_odd_wav(path: Path, kind: str, *, seconds: float = 0.1) -> Path:
    """Replace ``path`` with a zero-length file, a wav truncated to 20 bytes (inside its header), or a
    valid stereo / unsigned 8-bit / 48 kHz wav of ``seconds``."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        write_wav(path, seconds=seconds)
        path.write_bytes(path.read_bytes()[:20])
    elif kind == "stereo":
        write_wav(path, seconds=seconds, channels=2)
    elif kind == "pcm_u8":
        write_wav(path, seconds=seconds, subtype="PCM_U8")
    elif kind == "48khz":
        write_wav(path, seconds=seconds, sample_rate=48000)
    else:
        raise ValueError(f"unknown odd wav kind {kind!r}; expected one of {ODD_KINDS}")
    return path


IEMOCAP_LABELS = ("neu", "hap", "exc", "sad", "ang", "fru", "xxx")


def make_iemocap_tree(base: Path, *, sessions: Sequence[int] = (1, 2), labels: Sequence[str] = IEMOCAP_LABELS,
                      seconds: float = 0.1) -> Path:
    """Per session, both speakers say one turn per label, split over an improvised dialog
    (``Ses0kF_impro01``) and a scripted one (``Ses0kM_script01_1``); the annotation files carry the
    header, evaluator lines and blank lines of the release. Default: 2 sessions, 4 speakers, 20 kept
    in 4-class (happy 8 with exc), fru and xxx 4 each skipped."""
    root = base / "IEMOCAP_full_release"
    for k in sessions:
        dialogs = {f"Ses{k:02d}F_impro01": [], f"Ses{k:02d}M_script01_1": []}
        names = list(dialogs)
        for i, code in enumerate(labels):
            dialog = names[i % 2]
            for j, gender in enumerate("FM"):
                turn = f"{dialog}_{gender}{i:03d}"
                start = 2.0 * i + j
                dialogs[dialog].append(f"[{start:.4f} - {start + seconds:.4f}]\t{turn}\t{code}\t"
                                       f"[{1 + i % 5:.4f}, {2 + j:.4f}, {3.5:.4f}]")
                write_wav(root / f"Session{k}" / "sentences" / "wav" / dialog / f"{turn}.wav", seconds=seconds,
                          seed=100 * k + 10 * i + j)
        folder = root / f"Session{k}" / "dialog" / "EmoEvaluation"
        folder.mkdir(parents=True, exist_ok=True)
        for dialog, turns in dialogs.items():
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for turn in turns:
                lines += [turn, "C-E1:\tNeutral state;\t()", "C-E2:\tNeutral state;\t()",
                          "A-E1:\tval 3; act 2; dom  2;\t()", ""]
            (folder / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    return root


MSP_IMPROV_LABELS = ("N", "H", "S", "A", "O", "X")


def make_msp_improv_tree(base: Path, *, sessions: Sequence[int] = (1, 2), labels: Sequence[str] = MSP_IMPROV_LABELS,
                         seconds: float = 0.1) -> Path:
    """Per session k, speakers F0k and M0k say one sentence per label; ``Evaluation.txt`` has the
    consensus line then evaluator lines per utterance; audio nested as
    ``Audio/session<k>/<S0kX>/R/MSP-IMPROV-<id>.wav``. Default: 2 sessions, 4 speakers, 16 kept
    in 4-class, O and X 4 each skipped."""
    root = base / "MSP-IMPROV"
    lines = []
    for k in sessions:
        for i, code in enumerate(labels):
            sentence = f"S{k:02d}{chr(ord('A') + i)}"
            for j, gender in enumerate("FM"):
                utterance_id = f"{sentence}-{gender}{k:02d}-R-{gender}S{k:02d}"
                lines.append(f"UTD-IMPROV-{utterance_id}.avi; {code}; A:{2 + j:.6f}; V:{1 + i % 5:.6f}; "
                             f"D:3.000000; N:4.500000;")
                lines += ["mspworker_1; Other; Other; A:3.000000; V:3.000000; D:3.000000; N:4.000000;",
                          "mspworker_2; Neutral; Neutral; A:2.000000; V:3.000000; D:3.000000; N:5.000000;", ""]
                write_wav(root / "Audio" / f"session{k}" / sentence / "R" / f"MSP-IMPROV-{utterance_id}.wav",
                          seconds=seconds, seed=100 * k + 10 * i + j)
    root.mkdir(parents=True, exist_ok=True)
    (root / "Evaluation.txt").write_text("\n".join(lines) + "\n")
    return root


MSP_PODCAST_COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
# (EmoClass, SpkrID, Gender, Split_Set): 6 kept in 4-class, C and X skipped.
MSP_PODCAST_ROWS = (
    ("N", "127", "Female", "Train"), ("H", "127", "Female", "Train"), ("A", "452", "Male", "Train"),
    ("S", "452", "Male", "Development"), ("N", "Unknown", "Unknown", "Test1"), ("A", "981", "Female", "Test2"),
    ("C", "981", "Female", "Test1"), ("X", "127", "Female", "Train"),
)


def make_msp_podcast_tree(base: Path, *, rows: Sequence[tuple[str, str, str, str]] = MSP_PODCAST_ROWS,
                          columns: Sequence[str] = MSP_PODCAST_COLUMNS, seconds: float = 0.1) -> Path:
    """``Labels/labels_consensus.csv`` with ``columns`` (drop one to test a missing column) and one wav
    per row in ``Audios/``."""
    root = base / "MSP-Podcast"
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    with (root / "Labels" / "labels_consensus.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for i, (code, speaker, gender, split) in enumerate(rows):
            name = f"MSP-PODCAST_{i + 1:04d}_{i % 3 + 1:04d}.wav"
            writer.writerow({"FileName": name, "EmoClass": code, "EmoAct": 2.0 + i / 10, "EmoVal": 4.0,
                             "EmoDom": 3.5, "SpkrID": speaker, "Gender": gender, "Split_Set": split})
            write_wav(root / "Audios" / name, seconds=seconds, seed=i)
    return root


def make_ravdess_tree(base: Path, *, actors: Sequence[int] = (1, 2), seconds: float = 0.1) -> Path:
    """Per actor, one 48 kHz speech file per emotion 01..08 (alternating intensity) and one song file.
    Default: 2 actors, 8 kept in 4-class; calm, fearful, disgusted, surprised and song 2 each skipped."""
    root = base / "RAVDESS"
    for actor in actors:
        for emotion in range(1, 9):
            intensity = 1 if emotion == 1 else 1 + emotion % 2
            name = f"03-01-{emotion:02d}-{intensity:02d}-01-01-{actor:02d}.wav"
            write_wav(root / f"Actor_{actor:02d}" / name, seconds=seconds, sample_rate=48000, seed=10 * actor + emotion)
        write_wav(root / f"Actor_{actor:02d}" / f"03-02-03-01-01-01-{actor:02d}.wav", seconds=seconds,
                  sample_rate=48000, seed=actor)
    return root


CREMA_D_CODES = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
CREMA_D_ACTORS = {"1001": "Male", "1002": "Female"}


def make_crema_d_tree(base: Path, *, actors: dict[str, str] = CREMA_D_ACTORS, demographics: bool = True,
                      seconds: float = 0.1) -> Path:
    """Per actor, ``DFA`` in each emotion at level ``XX`` plus ``IEO`` angry at ``HI``; with
    ``demographics``, ``VideoDemographics.csv`` gives their sex. Default: 2 actors, 10 kept in
    4-class, DIS and FEA 2 each skipped."""
    root = base / "CREMA-D"
    for actor in actors:
        for i, code in enumerate(CREMA_D_CODES):
            write_wav(root / "AudioWAV" / f"{actor}_DFA_{code}_XX.wav", seconds=seconds, seed=int(actor) + i)
        write_wav(root / "AudioWAV" / f"{actor}_IEO_ANG_HI.wav", seconds=seconds, seed=int(actor))
    if demographics:
        with (root / "VideoDemographics.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
            for actor, sex in actors.items():
                writer.writerow([actor, 30, sex, "Caucasian", "Not Hispanic"])
    return root


EMODB_CODES = ("W", "L", "E", "A", "F", "T", "N")


def make_emodb_tree(base: Path, *, speakers: Sequence[str] = ("03", "08"), seconds: float = 0.1) -> Path:
    """Per speaker, text a01 in each emotion (version a) plus text b02 neutral (version b). Default:
    2 speakers (03 male, 08 female), 10 kept in 4-class; L, E and A 2 each skipped."""
    root = base / "emodb"
    for s, speaker in enumerate(speakers):
        for i, code in enumerate(EMODB_CODES):
            write_wav(root / "wav" / f"{speaker}a01{code}a.wav", seconds=seconds, seed=10 * s + i)
        write_wav(root / "wav" / f"{speaker}b02Nb.wav", seconds=seconds, seed=s)
    return root


# (file, label, speaker, session, gender, split, snr_db): 6 kept in 4-class, "surprised" skipped.
MANIFEST_ROWS = (
    ("audio/a.wav", "neutral", "spk1", "s1", "F", "train", "10"),
    ("audio/b.wav", "happy", "spk1", "s1", "F", "train", "5"),
    ("audio/c.wav", "sad", "spk2", "s1", "M", "dev", "0"),
    ("audio/d.wav", "angry", "spk2", "s1", "M", "test", "-5"),
    ("audio/sub/e.wav", "angry", "spk3", "s2", "", "test", "20"),
    ("audio/f.wav", "surprised", "spk3", "s2", "", "test", "15"),
    ("audio/g.wav", "neutral", "spk3", "s2", "female", "train", "10"),
)
MANIFEST_COLUMNS = ("path", "label", "speaker", "session", "gender", "split", "snr_db")


def make_manifest(base: Path, *, fmt: str = "csv", rows: Sequence[tuple] = MANIFEST_ROWS,
                  columns: Sequence[str] = MANIFEST_COLUMNS, name: str = "manifest", seconds: float = 0.1) -> Path:
    """``<base>/corpus/<name>.csv`` or ``.jsonl`` with relative paths and one wav per row; returns the file."""
    folder = base / "corpus"
    folder.mkdir(parents=True, exist_ok=True)
    records = [dict(zip(MANIFEST_COLUMNS, row)) for row in rows]
    for i, record in enumerate(records):
        write_wav(folder / record["path"], seconds=seconds, seed=i)
    records = [{key: value for key, value in record.items() if key in columns} for record in records]
    if fmt == "csv":
        manifest = folder / f"{name}.csv"
        with manifest.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(records)
    elif fmt == "jsonl":
        manifest = folder / f"{name}.jsonl"
        manifest.write_text("".join(json.dumps(record) + "\n" for record in records))
    else:
        raise ValueError(f"fmt must be 'csv' or 'jsonl', got {fmt!r}")
    return manifest


# EmoBox's IEMOCAP label map (fru is in no fold file of EmoBox's; here it tests an unmapped code), plus a mapped code
# outside 4-class.
EMOBOX_LABEL_MAP = {"neu": "Neutral", "hap": "Happy", "exc": "Happy", "ang": "Angry", "sad": "Sad", "sur": "Surprise"}
EMOBOX_LABELS = ("neu", "hap", "exc", "ang", "sad", "sur", "fru")


def emobox_line(key: str, wav: str, emo: str, **more) -> str:
    return json.dumps({"key": key, "dataset": key.split("-")[0], "wav": wav, "type": "raw", "sample_rate": 16000,
                       "num_frame": 1600.0, "task": "category", "length": 0.1, "emo": emo, "channel": 1, **more})


def make_emobox_tree(base: Path, *, sessions: Sequence[int] = (1, 2), labels: Sequence[str] = EMOBOX_LABELS,
                     seconds: float = 0.1, valid: bool = False) -> Path:
    """EmoBox's layout for IEMOCAP: ``EmoBox/data/iemocap/`` with ``label_map.json`` and ``fold_K/`` (one fold per
    session: it tests, the others train; ``valid``: a ``..._valid_fold_K.jsonl`` of the first training session's
    female speaker), audio under ``EmoBox/downloads/iemocap/Session<k>/sentences/wav/``. Returns the dataset folder
    (``audio_root`` defaults to ``EmoBox/``). Default: 2 sessions, 4 speakers, per speaker one turn per label: 20 kept
    in 4-class (happy 8 with exc), sur 4 not in the classes, fru 4 unknown."""
    emobox = base / "EmoBox"
    dataset = emobox / "data" / "iemocap"
    lines: dict[int, list[tuple[str, str]]] = {}
    for k in sessions:
        for i, code in enumerate(labels):
            for j, gender in enumerate("FM"):
                turn = f"Ses{k:02d}F_impro01_{gender}{i:03d}"
                wav = f"downloads/iemocap/Session{k}/sentences/wav/Ses{k:02d}F_impro01/{turn}.wav"
                write_wav(emobox / wav, seconds=seconds, seed=100 * k + 10 * i + j)
                lines.setdefault(k, []).append((gender, emobox_line(f"iemocap-{turn}", wav, code)))
    for fold, test in enumerate(sessions, 1):
        folder = dataset / f"fold_{fold}"
        folder.mkdir(parents=True, exist_ok=True)
        train = [line for k in sessions if k != test for _, line in lines[k]]
        if valid:
            first = next(k for k in sessions if k != test)
            held = [line for gender, line in lines[first] if gender == "F"]
            train = [line for line in train if line not in held]
            (folder / f"iemocap_valid_fold_{fold}.jsonl").write_text("\n".join(held) + "\n")
        (folder / f"iemocap_train_fold_{fold}.jsonl").write_text("\n".join(train) + "\n")
        (folder / f"iemocap_test_fold_{fold}.jsonl").write_text("\n".join(line for _, line in lines[test]) + "\n")
    (dataset / "label_map.json").write_text(json.dumps(EMOBOX_LABEL_MAP, indent=4))
    return dataset


TREE_MAKERS = {
    "iemocap": make_iemocap_tree,
    "msp-improv": make_msp_improv_tree,
    "msp-podcast": make_msp_podcast_tree,
    "ravdess": make_ravdess_tree,
    "crema-d": make_crema_d_tree,
    "emodb": make_emodb_tree,
    "manifest": make_manifest,
    "emobox": make_emobox_tree,
}


def train_tiny_baseline(workspace: Path, seed: int) -> Path:
    """A Baseline run of one epoch at 32 frames on one fold of a synthetic corpus of 4 speakers: the
    smallest real model that the inference tests load (seconds to train). Returns the run folder."""
    from ser_fast.data.loaders import load_corpus
    from ser_fast.data.synthetic import synthesize_corpus
    from ser_fast.runs.config import TrainConfig
    from ser_fast.training.run import train_run

    corpus = load_corpus("iemocap", synthesize_corpus(workspace / "corpus", speakers=4, per_class=2, seed=seed))
    train_run(corpus, workspace / "run", TrainConfig(model="baseline", epochs=1, max_frames=32, precision="fp32"),
              folds=[0])
    return workspace / "run"


GAP_S = 0.75
GAP_SNR_DB = 20.0  # the noise gaps: white noise 20 dB below the speech


def speech_with_gaps(seed: int, count: int = 8) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Synthesizer utterances (dry) separated by gaps of digital silence and of white noise, alternately; and where
    each utterance's speech lies (its first syllable's onset to its last vowel's end, from the synthesizer's plan)."""
    rng = np.random.default_rng(seed)
    utterances = [synthesize_utterance(draw_speaker(i, "F" if i % 2 else "M", rng), EMOTIONS[i % 4], rng, SAMPLE_RATE)
                  for i in range(count)]
    speech_rms = np.sqrt(np.mean(np.concatenate([u.waveform for u in utterances]) ** 2))
    parts, truth, at = [], [], 0
    for i, u in enumerate(utterances):
        gap = np.zeros(round(GAP_S * SAMPLE_RATE)) if i % 2 == 0 else rng.normal(
            0.0, speech_rms * 10 ** (-GAP_SNR_DB / 20), round(GAP_S * SAMPLE_RATE))
        parts += [gap, u.waveform]
        at += len(gap)
        truth.append((at / SAMPLE_RATE + u.plan.onset[0], at / SAMPLE_RATE + u.plan.vowel_end[-1]))
        at += len(u.waveform)
    return np.concatenate([*parts, np.zeros(SAMPLE_RATE // 2)]).astype(np.float32), truth
