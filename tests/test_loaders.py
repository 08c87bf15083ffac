"""Corpus loaders on tiny trees in each release's layout: labels, speakers, sessions, genders and
splits; what is skipped and why; odd audio files; and errors that name what was expected."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from corpus_fixtures import (
    MANIFEST_COLUMNS,
    MSP_PODCAST_COLUMNS,
    ODD_KINDS,
    TREE_MAKERS,
    make_crema_d_tree,
    make_iemocap_tree,
    make_manifest,
    make_msp_improv_tree,
    make_msp_podcast_tree,
    make_ravdess_tree,
    write_odd_wav,
    write_wav,
)

from ser_fast.data.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, SAMPLE_RATE, AudioError, load_audio
from ser_fast.data.loaders import CORPUS_NAMES, load_corpus

# What each default fixture tree holds in 4-class: kept per class, speakers, sessions, skipped per reason.
EXPECTED = {
    "iemocap": dict(
        per_class={"neutral": 4, "happy": 8, "sad": 4, "angry": 4},
        speakers=["Ses01F", "Ses01M", "Ses02F", "Ses02M"], sessions=["Session1", "Session2"],
        skipped={"label 'fru' not in classes": 4, "label 'xxx' not in classes": 4}),
    "msp-improv": dict(
        per_class={"neutral": 4, "happy": 4, "sad": 4, "angry": 4},
        speakers=["F01", "F02", "M01", "M02"], sessions=["S01", "S02"],
        skipped={"label 'O' not in classes": 4, "label 'X' not in classes": 4}),
    "msp-podcast": dict(
        per_class={"neutral": 2, "happy": 1, "sad": 1, "angry": 2},
        speakers=["127", "452", "981", "Unknown"], sessions=[""],
        skipped={"label 'C' not in classes": 1, "label 'X' not in classes": 1}),
    "ravdess": dict(
        per_class={"neutral": 2, "happy": 2, "sad": 2, "angry": 2},
        speakers=["Actor_01", "Actor_02"], sessions=[""],
        skipped={"label 'calm' not in classes": 2, "label 'fearful' not in classes": 2,
                 "label 'disgusted' not in classes": 2, "label 'surprised' not in classes": 2,
                 "song, not speech": 2}),
    "crema-d": dict(
        per_class={"neutral": 2, "happy": 2, "sad": 2, "angry": 4},
        speakers=["1001", "1002"], sessions=[""],
        skipped={"label 'DIS' not in classes": 2, "label 'FEA' not in classes": 2}),
    "emodb": dict(
        per_class={"neutral": 4, "happy": 2, "sad": 2, "angry": 2},
        speakers=["03", "08"], sessions=[""],
        skipped={"label 'L' not in classes": 2, "label 'E' not in classes": 2, "label 'A' not in classes": 2}),
    "manifest": dict(
        per_class={"neutral": 2, "happy": 1, "sad": 1, "angry": 2},
        speakers=["spk1", "spk2", "spk3"], sessions=["s1", "s2"],
        skipped={"label 'surprised' not in classes": 1}),
    "emobox": dict(
        per_class={"neutral": 4, "happy": 8, "sad": 4, "angry": 4},
        speakers=["Ses01F", "Ses01M", "Ses02F", "Ses02M"], sessions=["Session1", "Session2"],
        skipped={"label 'sur' not in classes": 4, "unknown label 'fru'": 4}),
}
# The corpus names that differ from the loader's: an EmoBox corpus is named for its dataset.
CORPUS_TITLES = {"emobox": "emobox-iemocap"}
# Items per default tree in classes ("neutral", "angry"): kept per class.
NEUTRAL_ANGRY = {"iemocap": {"neutral": 4, "angry": 4}, "msp-improv": {"neutral": 4, "angry": 4},
                 "msp-podcast": {"neutral": 2, "angry": 2}, "ravdess": {"neutral": 2, "angry": 2},
                 "crema-d": {"neutral": 2, "angry": 4}, "emodb": {"neutral": 4, "angry": 2},
                 "manifest": {"neutral": 2, "angry": 2}, "emobox": {"neutral": 4, "angry": 4}}
CORPORA = [pytest.param(name, id=name) for name in CORPUS_NAMES]
# Corpora listed by an annotation file, where a listed file can be missing (the others list their files).
ANNOTATED = ("iemocap", "msp-improv", "msp-podcast", "manifest")
# Corpora whose listed files must all be there: EmoBox's folds (a fold without its files is not EmoBox's fold).
REFUSING = ("emobox",)


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    """One default tree per corpus, shared by the tests that only read them."""
    return {name: make(tmp_path_factory.mktemp(name.replace("-", "_"))) for name, make in TREE_MAKERS.items()}


def test_registry_names_every_format():
    assert set(CORPUS_NAMES) == {"iemocap", "msp-improv", "msp-podcast", "ravdess", "crema-d", "emodb", "manifest",
                                 "emobox"}
    assert set(TREE_MAKERS) == set(CORPUS_NAMES)


@pytest.mark.parametrize("name", CORPORA)
def test_default_tree_counts(trees, name):
    corpus = load_corpus(name, trees[name])
    summary = corpus.summary()
    expected = EXPECTED[name]
    title = CORPUS_TITLES.get(name, name)
    assert corpus.name == title and corpus.classes == ("neutral", "happy", "sad", "angry")
    assert dict(summary.per_class) == expected["per_class"]
    assert corpus.speakers == expected["speakers"]
    assert corpus.sessions == expected["sessions"]
    assert dict(summary.skipped) == expected["skipped"]
    assert all(u.corpus == title for u in corpus)


@pytest.mark.parametrize("name", CORPORA)
def test_utterances_sorted_by_path_and_files_exist(trees, name):
    corpus = load_corpus(name, trees[name])
    paths = [str(u.path) for u in corpus]
    assert paths == sorted(paths)
    assert len(set(paths)) == len(paths)
    assert all(u.path.is_absolute() and u.path.is_file() for u in corpus)


@pytest.mark.parametrize("name", CORPORA)
def test_every_annotation_is_kept_or_skipped(trees, name):
    """A label outside the classes is counted, never silently lost: kept + skipped covers every item,
    also with a class set that excludes most labels."""
    full = load_corpus(name, trees[name])
    narrow = load_corpus(name, trees[name], classes=("neutral", "angry"))
    assert len(full) + len(full.skipped) == len(narrow) + len(narrow.skipped)
    assert {u.path for u in narrow} <= {u.path for u in full}
    assert dict(narrow.summary().per_class) == NEUTRAL_ANGRY[name]
    assert narrow.classes == ("neutral", "angry")
    dropped = {s.item for s in narrow.skipped} - {s.item for s in full.skipped}
    assert dropped == {str(u.path) for u in full if u.label not in ("neutral", "angry")}


@pytest.mark.parametrize("name", CORPORA)
def test_summary_table_shows_class_counts(trees, name):
    table = load_corpus(name, trees[name]).summary().to_table()
    for label, count in EXPECTED[name]["per_class"].items():
        assert any(line.split() == [label, str(count)] for line in table.splitlines()), (label, count, table)
    for reason in EXPECTED[name]["skipped"]:
        assert reason in table


def test_iemocap_turns(trees):
    corpus = load_corpus("iemocap", trees["iemocap"])
    by_turn = {u.path.stem: u for u in corpus}
    excited = by_turn["Ses01F_impro01_M002"]
    assert excited.label == "happy" and excited.extra["code"] == "exc"
    # The speaker comes from the turn's last field, not from the dialog name.
    assert (excited.speaker, excited.gender, excited.session) == ("Ses01M", "M", "Session1")
    assert excited.path == trees["iemocap"] / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M002.wav"
    scripted = by_turn["Ses02M_script01_1_F003"]
    assert (scripted.label, scripted.speaker, scripted.gender) == ("sad", "Ses02F", "F")
    assert scripted.path.parent.name == "Ses02M_script01_1"
    assert scripted.extra["valence"] == 4.0 and scripted.extra["arousal"] == 2.0 and scripted.extra["dominance"] == 3.5
    assert scripted.extra["start"] == 6.0 and scripted.extra["end"] == pytest.approx(6.1)


def test_iemocap_subset_of_sessions_and_odd_lines(tmp_path):
    root = make_iemocap_tree(tmp_path, sessions=(3,), labels=("neu", "ang"))
    annotation = root / "Session3/dialog/EmoEvaluation/Ses03F_impro01.txt"
    broken_line = len(annotation.read_text().splitlines()) + 1
    annotation.write_text(annotation.read_text() + "[1.0 - broken]\tSes03F_impro01_F009\tneu\n"
                          "[1.0 - 2.0]\tSes03F_impro01_F010\tzzz\t[1.0, 2.0, 3.0]\n")
    (annotation.parent / "._Ses03F_impro01.txt").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    corpus = load_corpus("iemocap", root)
    assert corpus.sessions == ["Session3"] and corpus.speakers == ["Ses03F", "Ses03M"]
    assert [u.label for u in corpus] == ["neutral", "neutral", "angry", "angry"]
    unknown = root / "Session3/sentences/wav/Ses03F_impro01/Ses03F_impro01_F010.wav"
    assert [(s.item, s.reason) for s in corpus.skipped] == [(f"{annotation}:{broken_line}", "unparsable annotation line"),
                                                           (str(unknown), "unknown label 'zzz'")]


def test_msp_improv_ids(trees):
    corpus = load_corpus("msp-improv", trees["msp-improv"])
    by_name = {u.path.name: u for u in corpus}
    utterance = by_name["MSP-IMPROV-S02D-M02-R-MS02.wav"]
    assert (utterance.label, utterance.speaker, utterance.gender, utterance.session) == ("angry", "M02", "M", "S02")
    assert utterance.extra == {"arousal": 3.0, "valence": 4.0, "dominance": 3.0, "naturalness": 4.5}
    assert utterance.path.parent == trees["msp-improv"] / "Audio/session2/S02D/R"


def test_msp_improv_unlisted_audio_is_missing(tmp_path, caplog):
    root = make_msp_improv_tree(tmp_path, sessions=(1,))
    gone = next(root.rglob("MSP-IMPROV-S01A-F01-R-FS01.wav"))
    gone.unlink()
    with caplog.at_level(logging.WARNING):
        corpus = load_corpus("msp-improv", root)
    assert [s for s in corpus.skipped if s.reason == "missing audio"][0].item == str(root / gone.name)
    assert "MSP-IMPROV-S01A-F01-R-FS01.wav: no such audio file" in caplog.text
    assert len(corpus) == 7


def test_msp_podcast_rows(trees):
    corpus = load_corpus("msp-podcast", trees["msp-podcast"])
    assert dict(corpus.summary().per_split) == {"Train": 3, "Development": 1, "Test1": 1, "Test2": 1}
    by_name = {u.path.name: u for u in corpus}
    first = by_name["MSP-PODCAST_0001_0001.wav"]
    assert (first.label, first.speaker, first.gender, first.split, first.session) == ("neutral", "127", "F", "Train", "")
    assert first.extra == {"arousal": 2.0, "valence": 4.0, "dominance": 3.5}
    assert first.path == trees["msp-podcast"] / "Audios" / "MSP-PODCAST_0001_0001.wav"
    unknown = by_name["MSP-PODCAST_0005_0002.wav"]
    assert (unknown.speaker, unknown.gender, unknown.split) == ("Unknown", "", "Test1")
    assert by_name["MSP-PODCAST_0003_0003.wav"].gender == "M"


def test_ravdess_files(tmp_path):
    root = make_ravdess_tree(tmp_path, actors=(1, 2))
    write_wav(root / "Actor_01" / "03-01-05-01-01-01.wav", sample_rate=48000)
    write_wav(root / "Actor_01" / "03-01-09-01-01-01-01.wav", sample_rate=48000)
    write_wav(root / "Actor_01" / "03-01-05-01-01-01-02.wav", sample_rate=48000)
    (root / "Actor_01" / "README.txt").write_text("not audio")
    corpus = load_corpus("ravdess", root)
    by_name = {u.path.name: u for u in corpus}
    assert by_name["03-01-05-02-01-01-01.wav"].label == "angry"
    assert {(u.speaker, u.gender) for u in corpus} == {("Actor_01", "M"), ("Actor_02", "F")}
    assert by_name["03-01-05-02-01-01-01.wav"].extra == {"intensity": "strong", "statement": 1, "repetition": 1}
    reasons = {Path(s.item).name: s.reason for s in corpus.skipped}
    assert reasons["03-01-05-01-01-01.wav"] == "malformed RAVDESS file name"
    assert reasons["03-01-09-01-01-01-01.wav"] == "malformed RAVDESS file name"
    assert reasons["03-01-05-01-01-01-02.wav"] == "RAVDESS actor field does not match its folder"
    assert reasons["03-02-03-01-01-01-01.wav"] == "song, not speech"
    assert len(corpus) == 8


@pytest.mark.parametrize("demographics, genders", [
    pytest.param(True, {"1001": "M", "1002": "F"}, id="with-demographics"),
    pytest.param(False, {"1001": "", "1002": ""}, id="without-demographics"),
])
def test_crema_d_genders(tmp_path, demographics, genders):
    root = make_crema_d_tree(tmp_path, demographics=demographics)
    (root / "AudioWAV" / "1001_DFA.wav").write_bytes(b"")
    corpus = load_corpus("crema-d", root)
    assert {u.speaker: u.gender for u in corpus} == genders
    high = [u for u in corpus if u.path.name == "1002_IEO_ANG_HI.wav"][0]
    assert high.label == "angry" and high.extra == {"sentence": "IEO", "level": "HI"}
    assert ("malformed CREMA-D file name" in {s.reason for s in corpus.skipped})


def test_emodb_speakers(trees):
    corpus = load_corpus("emodb", trees["emodb"])
    assert {(u.speaker, u.gender) for u in corpus} == {("03", "M"), ("08", "F")}
    by_name = {u.path.name: u for u in corpus}
    assert [by_name[f"03a01{c}a.wav"].label for c in "NFTW"] == ["neutral", "happy", "sad", "angry"]
    assert by_name["08b02Nb.wav"].extra == {"text": "b02", "version": "b"}


@pytest.mark.parametrize("fmt", [pytest.param("csv", id="csv"), pytest.param("jsonl", id="jsonl")])
def test_manifest_formats(tmp_path, fmt):
    manifest = make_manifest(tmp_path, fmt=fmt)
    from_file = load_corpus("manifest", manifest)
    from_folder = load_corpus("manifest", manifest.parent)
    assert [u.path for u in from_file] == [u.path for u in from_folder]
    by_name = {u.path.name: u for u in from_file}
    e = by_name["e.wav"]
    assert e.path == manifest.parent / "audio" / "sub" / "e.wav"
    assert (e.label, e.speaker, e.session, e.gender, e.split, e.corpus) == ("angry", "spk3", "s2", "", "test", "manifest")
    assert e.extra == {"snr_db": "20"}
    assert by_name["c.wav"].gender == "M" and by_name["c.wav"].split == "dev"
    assert from_file.root == manifest


def test_manifest_absolute_paths_and_empty_fields(tmp_path):
    audio = write_wav(tmp_path / "elsewhere" / "x.wav")
    manifest = tmp_path / "m.jsonl"
    records = [{"path": str(audio), "label": "sad", "speaker": 7, "gender": "female", "corpus": "mine", "snr": 5},
               {"path": "", "label": "sad", "speaker": "a"},
               {"path": "y.wav", "label": "happy", "speaker": None}]
    manifest.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    corpus = load_corpus("manifest", manifest)
    assert [(u.path, u.speaker, u.gender, u.corpus, u.extra) for u in corpus] == [(audio, "7", "F", "mine", {"snr": 5})]
    assert [(s.item, s.reason) for s in corpus.skipped] == [(f"{manifest}:2", "row without path"),
                                                           (f"{manifest}:3", "row without speaker")]


def test_manifest_labels_taken_as_given(tmp_path):
    rows = [("audio/a.wav", "Neutral", "s", "", "", "", ""), ("audio/b.wav", "calm", "s", "", "", "", "")]
    corpus = load_corpus("manifest", make_manifest(tmp_path, rows=rows), classes=("calm", "neutral"))
    assert [u.label for u in corpus] == ["calm"]
    assert [s.reason for s in corpus.skipped] == ["label 'Neutral' not in classes"]


def test_header_without_samples_is_empty_audio(tmp_path):
    manifest = make_manifest(tmp_path)
    write_wav(manifest.parent / "audio" / "a.wav", seconds=0.0)
    corpus = load_corpus("manifest", manifest)
    assert [(Path(s.item).name, s.reason) for s in corpus.skipped if s.reason.endswith("audio")] == [("a.wav", "empty audio")]


def test_duplicate_manifest_rows_are_skipped(tmp_path):
    rows = [("audio/a.wav", "sad", "s", "", "", "", ""), ("audio/a.wav", "sad", "s", "", "", "", "")]
    corpus = load_corpus("manifest", make_manifest(tmp_path, rows=rows))
    assert len(corpus) == 1 and [s.reason for s in corpus.skipped] == ["duplicate entry"]


@pytest.mark.parametrize("name", CORPORA)
def test_odd_audio_files(tmp_path, name, caplog):
    """Zero-length and truncated files are skipped with a reason naming each file; stereo, 8-bit and
    48 kHz files load, and load_audio gives mono float32 at 16 kHz of the right length."""
    root = TREE_MAKERS[name](tmp_path)
    victims = dict(zip(ODD_KINDS, load_corpus(name, root).utterances))
    for kind, utterance in victims.items():
        write_odd_wav(utterance.path, kind, seconds=0.25)
    missing = load_corpus(name, root).utterances[-1].path
    missing.unlink()
    if name in REFUSING:
        with pytest.raises(FileNotFoundError, match=rf"name 1 audio files .*{re.escape(missing.name)}"):
            load_corpus(name, root)
        write_wav(missing, seconds=0.25)
    with caplog.at_level(logging.WARNING, logger="ser_fast"):
        corpus = load_corpus(name, root)
    reasons = {s.item: s.reason for s in corpus.skipped}
    assert reasons[str(victims["empty"].path)] == "empty audio"
    assert reasons[str(victims["truncated"].path)] == "unreadable audio"
    if name in ANNOTATED:
        # MSP-IMPROV finds audio by name, so a missing file is reported at the root, where it was sought.
        assert {Path(s.item).name: s.reason for s in corpus.skipped}[missing.name] == "missing audio"
        assert f"{missing.name}: no such audio file" in caplog.text
    assert len(corpus) == sum(EXPECTED[name]["per_class"].values()) - (2 if name in REFUSING else 3)
    for kind in ("empty", "truncated"):
        assert str(victims[kind].path) in caplog.text
    kept = {u.path for u in corpus}
    for kind in ("stereo", "pcm_u8", "48khz"):
        utterance = victims[kind]
        assert utterance.path in kept
        samples = load_audio(utterance.path)
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert abs(len(samples) - 0.25 * SAMPLE_RATE) <= 1


@pytest.mark.parametrize("name", CORPORA)
def test_without_audio_check_broken_files_are_kept(tmp_path, name):
    root = TREE_MAKERS[name](tmp_path)
    first = load_corpus(name, root).utterances[0]
    write_odd_wav(first.path, "truncated")
    assert first.path in {u.path for u in load_corpus(name, root, check_audio=False)}


@pytest.mark.parametrize("name", CORPORA)
def test_missing_root(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_corpus(name, tmp_path / "does-not-exist")


EMPTY_FOLDER_MESSAGES = {
    "iemocap": "expected .*Session1/dialog/EmoEvaluation/\\*.txt \\(Session1..Session5\\)",
    "msp-improv": "expected .*Evaluation.txt",
    "msp-podcast": "expected .*Labels/labels_consensus.csv",
    "ravdess": "expected .*Actor_01 .. .*Actor_24",
    "crema-d": "expected .*AudioWAV",
    "emodb": "expected .*/wav holding",
    "manifest": "expected .*manifest.csv or .*manifest.jsonl",
    "emobox": "no EmoBox label map: expected .*label_map.json",
}


@pytest.mark.parametrize("name", CORPORA)
def test_empty_folder_names_what_was_expected(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=EMPTY_FOLDER_MESSAGES[name]):
        load_corpus(name, tmp_path)


@pytest.mark.parametrize("name, remove, message", [
    pytest.param("iemocap", "Session1/sentences/wav", "no IEMOCAP audio folder: expected .*Session1/sentences/wav",
                 id="iemocap-audio-folder"),
    pytest.param("msp-improv", "Evaluation.txt", "no MSP-IMPROV annotation file: expected .*Evaluation.txt",
                 id="msp-improv-evaluation"),
    pytest.param("msp-podcast", "Labels/labels_consensus.csv", "expected .*Labels/labels_consensus.csv",
                 id="msp-podcast-labels"),
    pytest.param("msp-podcast", "Audios", "no MSP-Podcast audio folder: expected .*Audios", id="msp-podcast-audios"),
    pytest.param("crema-d", "AudioWAV/*", "no CREMA-D audio files: expected .*AudioWAV", id="crema-d-no-files"),
    pytest.param("emodb", "wav/*", "no EmoDB audio files: expected .*wav", id="emodb-no-files"),
])
def test_missing_part_of_tree(tmp_path, name, remove, message):
    root = TREE_MAKERS[name](tmp_path)
    for path in root.glob(remove):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    with pytest.raises(FileNotFoundError, match=message):
        load_corpus(name, root)


def test_iemocap_without_annotations_names_the_annotation_folder(tmp_path):
    root = make_iemocap_tree(tmp_path, sessions=(1,))
    for path in (root / "Session1/dialog/EmoEvaluation").glob("*.txt"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="no IEMOCAP annotation files"):
        load_corpus("iemocap", root)


@pytest.mark.parametrize("name, fmt, drop, message", [
    pytest.param("msp-podcast", "csv", "EmoClass", "labels_consensus.csv: missing required column.* EmoClass",
                 id="msp-podcast-EmoClass"),
    pytest.param("msp-podcast", "csv", "Split_Set", "missing required column.* Split_Set", id="msp-podcast-Split_Set"),
    pytest.param("manifest", "csv", "speaker", "manifest.csv: missing required column.* speaker",
                 id="manifest-csv-speaker"),
    pytest.param("manifest", "jsonl", "label", "manifest.jsonl:1: missing required key.* label",
                 id="manifest-jsonl-label"),
])
def test_missing_column(tmp_path, name, fmt, drop, message):
    if name == "msp-podcast":
        root = make_msp_podcast_tree(tmp_path, columns=[c for c in MSP_PODCAST_COLUMNS if c != drop])
    else:
        root = make_manifest(tmp_path, fmt=fmt, columns=[c for c in MANIFEST_COLUMNS if c != drop])
    with pytest.raises(ValueError, match=message):
        load_corpus(name, root)


def test_crema_d_demographics_without_sex_column(tmp_path):
    root = make_crema_d_tree(tmp_path)
    (root / "VideoDemographics.csv").write_text("ActorID,Age\n1001,30\n")
    with pytest.raises(ValueError, match="VideoDemographics.csv: missing required column.* Sex"):
        load_corpus("crema-d", root)


@pytest.mark.parametrize("content, message", [
    pytest.param('{"path": "a.wav", "label": "sad", "speaker": "s"}\nnot json\n', "m.jsonl:2: not valid JSON",
                 id="invalid-json"),
    pytest.param('["a.wav", "sad", "s"]\n', "m.jsonl:1: expected a JSON object", id="not-an-object"),
])
def test_manifest_malformed_jsonl(tmp_path, content, message):
    (tmp_path / "m.jsonl").write_text(content)
    with pytest.raises(ValueError, match=message):
        load_corpus("manifest", tmp_path / "m.jsonl")


def test_manifest_bad_file_kinds(tmp_path):
    (tmp_path / "m.txt").write_text("path,label,speaker\n")
    with pytest.raises(ValueError, match="expected a .csv or .jsonl file"):
        load_corpus("manifest", tmp_path / "m.txt")
    (tmp_path / "manifest.csv").write_text("path,label,speaker\n")
    (tmp_path / "manifest.jsonl").write_text("")
    with pytest.raises(ValueError, match="holds both manifest.csv and manifest.jsonl"):
        load_corpus("manifest", tmp_path)


@pytest.mark.parametrize("kwargs, error, message", [
    pytest.param(dict(name="timit"), ValueError, "unknown corpus 'timit'; expected one of iemocap, msp-improv",
                 id="unknown-name"),
    pytest.param(dict(classes="7class"), ValueError, "unknown class set '7class'", id="unknown-class-set"),
    pytest.param(dict(classes=("sad", "sad")), ValueError, "distinct non-empty label names", id="repeated-class"),
    pytest.param(dict(check_audio="yes"), TypeError, "check_audio must be True or False", id="check-audio-not-bool"),
    pytest.param(dict(root=3), TypeError, "root must be a path", id="root-not-a-path"),
])
def test_bad_arguments(trees, kwargs, error, message):
    arguments = dict(name="emodb", root=trees["emodb"]) | kwargs
    with pytest.raises(error, match=message):
        load_corpus(arguments.pop("name"), arguments.pop("root"), **arguments)


def test_skipped_counts_per_label_in_summary(trees):
    corpus = load_corpus("iemocap", trees["iemocap"], classes=("neutral", "sad"))
    assert corpus.summary().skipped == Counter({
        "label 'hap' not in classes": 4, "label 'exc' not in classes": 4, "label 'ang' not in classes": 4,
        "label 'fru' not in classes": 4, "label 'xxx' not in classes": 4})


def test_iemocap_reads_every_session_folder(tmp_path):
    root = make_iemocap_tree(tmp_path, sessions=(1, 6, 12))
    corpus = load_corpus("iemocap", root)
    assert corpus.sessions == ["Session1", "Session12", "Session6"]
    assert {"Ses06F", "Ses12M"} <= set(corpus.speakers)


@pytest.mark.parametrize("rate", [1, 3999, 768001], ids=lambda r: f"{r}Hz")
def test_a_sample_rate_outside_the_limits_is_refused_before_decoding(tmp_path, rate):
    """A 40 KB file declaring 1 Hz would resample to 320 M samples (1.7 GB) at 16 kHz."""
    path = tmp_path / "odd-rate.wav"
    sf.write(str(path), np.full(20000, 0.1), rate, subtype="PCM_16")
    with pytest.raises(AudioError, match=rf"odd-rate.wav: the header declares a sample rate of {rate} Hz; expected "
                                         rf"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz"):
        load_audio(path)


def test_a_file_name_that_is_not_utf8_loads(tmp_path):
    path = os.fsencode(tmp_path) + b"/b\xff.wav"
    sf.write(str(tmp_path / "b.wav"), np.full(8000, 0.1), 8000, subtype="PCM_16")
    os.rename(tmp_path / "b.wav", path)
    assert load_audio(os.fsdecode(path)).shape == (16000,)


def jsonl_manifest(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_manifest_naming_one_file_two_ways_keeps_it_once(tmp_path):
    write_wav(tmp_path / "w.wav")
    (tmp_path / "sub").mkdir()
    rows = [{"path": "sub/../w.wav", "label": "angry", "speaker": "a"},
            {"path": "w.wav", "label": "angry", "speaker": "a"},
            {"path": str(tmp_path / "sub" / ".." / "w.wav"), "label": "angry", "speaker": "a"}]
    corpus = load_corpus("manifest", jsonl_manifest(tmp_path / "m.jsonl", rows))
    assert len(corpus.utterances) == 1
    assert [s.reason for s in corpus.skipped] == ["duplicate entry", "duplicate entry"]


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_manifest_not_in_utf8_names_the_file(tmp_path, encoding, suffix):
    manifest = tmp_path / f"m{suffix}"
    text = ("path,label,speaker\nsé.wav,angry,a\n" if suffix == ".csv"
            else json.dumps({"path": "sé.wav", "label": "angry", "speaker": "a"}, ensure_ascii=False) + "\n")
    manifest.write_bytes(text.encode(encoding))
    with pytest.raises(ValueError, match=rf"{manifest}: not UTF-8 text .* save it as UTF-8"):
        load_corpus("manifest", manifest)


def test_a_path_over_the_os_limit_is_skipped_not_fatal(tmp_path):
    write_wav(tmp_path / "ok.wav")
    rows = [{"path": "x" * 5000 + ".wav", "label": "angry", "speaker": "a"},
            {"path": "ok.wav", "label": "angry", "speaker": "a"}]
    corpus = load_corpus("manifest", jsonl_manifest(tmp_path / "m.jsonl", rows))
    assert [u.path.name for u in corpus.utterances] == ["ok.wav"]
    assert [s.reason for s in corpus.skipped] == ["unusable path"]


def test_a_deeply_nested_jsonl_line_names_the_line(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.wav", "label": "angry", "speaker": "a"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match=rf"{manifest}:2: JSON nested too deeply"):
        load_corpus("manifest", manifest)
