"""EmoBox interop: its dataset folders load (fold files, label maps, speakers from keys), its folds become ser_fast's
(``--protocol emobox``), bad fold files are refused with the line named, and evaluation reports EmoBox's metric set
(scikit-learn, per fold and averaged over folds) for a run trained on its folds."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
from corpus_fixtures import emobox_line, make_emobox_tree, write_wav
from helpers import assert_close

from ser_fast.cli import main
from ser_fast.data.corpus import Corpus
from ser_fast.data.loaders import load_corpus
from ser_fast.data.protocols import emobox_folds
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.evaluation.emobox import emobox_scores, fold_metrics
from ser_fast.evaluation.evaluate import ScoredItems
from ser_fast.training.run import make_folds


def one_fold_dataset(base: Path, dataset: str, keys: list[str], *, label_file: str = "label_map.json",
                     label_map: dict | None = None, emo: str = "neu") -> Path:
    """``base/EmoBox/data/<dataset>`` with fold 1: the first key tests, the others train; 0.1 s of audio each."""
    root = base / "EmoBox"
    lines = []
    for i, key in enumerate(keys):
        wav = f"downloads/{dataset}/{i}.wav"
        write_wav(root / wav, seed=i)
        lines.append(emobox_line(key, wav, emo))
    folder = root / "data" / dataset / "fold_1"
    folder.mkdir(parents=True)
    (folder / f"{dataset}_test_fold_1.jsonl").write_text(lines[0] + "\n")
    (folder / f"{dataset}_train_fold_1.jsonl").write_text("\n".join(lines[1:]) + "\n")
    (folder.parent / label_file).write_text(json.dumps(label_map or {"neu": "Neutral"}))
    return folder.parent


def test_each_utterance_is_loaded_once_with_the_folds_it_belongs_to(tmp_path):
    corpus = load_corpus("emobox", make_emobox_tree(tmp_path))
    assert corpus.name == "emobox-iemocap" and len(corpus) == 20
    by_key = {u.extra["emobox_key"]: u for u in corpus}
    turn = by_key["iemocap-Ses01F_impro01_M002"]
    assert turn.label == "happy" and (turn.speaker, turn.session) == ("Ses01M", "Session1")
    assert turn.extra["emobox_folds"] == {1: "test", 2: "train"}
    assert turn.path == tmp_path / "EmoBox/downloads/iemocap/Session1/sentences/wav/Ses01F_impro01/" \
                                   "Ses01F_impro01_M002.wav"


def test_the_folds_are_emoboxs_with_a_fixed_validation_share(tmp_path):
    corpus = load_corpus("emobox", make_emobox_tree(tmp_path))
    folds = make_folds(corpus, "emobox")
    assert [f.name for f in folds] == ["fold-1", "fold-2"]
    for fold, (test_session, train_session) in zip(folds, [("Session1", "Session2"), ("Session2", "Session1")]):
        assert {u.session for u in fold.test} == {test_session} and len(fold.test) == 10
        assert {u.session for u in fold.train + fold.validation} == {train_session}
        assert not {u.path for u in fold.train} & {u.path for u in fold.validation}
        # Every 10th per class by key hash, at least one: one of each of the 4 classes here.
        assert sorted(u.label for u in fold.validation) == ["angry", "happy", "neutral", "sad"]
    shuffled = list(corpus.utterances)
    random.Random(3).shuffle(shuffled)
    again = emobox_folds(Corpus(corpus.name, corpus.root, corpus.classes, shuffled, corpus.skipped))
    assert [{u.path for u in f.validation} for f in again] == [{u.path for u in f.validation} for f in folds]


def test_a_validation_file_validates(tmp_path):
    folds = emobox_folds(load_corpus("emobox", make_emobox_tree(tmp_path, valid=True)))
    assert {u.speaker for u in folds[0].validation} == {"Ses02F"} and len(folds[0].validation) == 5
    assert {u.speaker for u in folds[0].train} == {"Ses02M"}


def test_other_corpora_have_no_emobox_folds(tmp_path):
    synthetic = load_corpus("iemocap", synthesize_corpus(tmp_path / "c", speakers=2, per_class=1, seed=0))
    with pytest.raises(ValueError, match="load_corpus\\('emobox'"):
        make_folds(synthetic, "emobox")


@pytest.mark.parametrize("dataset, key, speaker", [
    ("ravdess", "ravdess-03-01-07-02-02-02-11", "Actor_11"),
    ("cremad", "cremad-1052-WSI-ANG-XX", "1052"),
    ("emodb", "emodb-03a02Wb", "03"),
    ("esd", "esd-0005-000001", "0005"),
    ("savee", "savee-JE-n23", "JE"),
    ("casia", "casia-239-wangzhe-neutral", "wangzhe"),
    ("emovo", "emovo-gio-f2-b2", "f2"),
    ("jlcorpus", "jlcorpus-male2-concerned-6b-1", "male2"),
    ("subesco", "subesco-M_09_SHUMANTA_S_2_FEAR_2", "M_09_SHUMANTA"),
], ids=lambda value: value if "-" not in str(value) else None)
def test_speakers_come_from_keys_that_encode_them(tmp_path, dataset, key, speaker):
    root = one_fold_dataset(tmp_path, dataset, [key, f"{key}x"] if dataset != "ravdess" else [key, key[:-2] + "12"])
    corpus = load_corpus("emobox", root, classes=["neutral"])
    assert {u.extra["emobox_key"]: u.speaker for u in corpus}[key] == speaker


def test_keys_without_speakers_are_said_to_be_so(tmp_path, caplog):
    root = one_fold_dataset(tmp_path, "msppodcast", ["msppodcast-MSP-PODCAST_0001_0008", "msppodcast-MSP-PODCAST_0002"])
    with caplog.at_level(logging.WARNING, logger="ser_fast"):
        corpus = load_corpus("emobox", root, classes=["neutral"])
    assert corpus.speakers == ["unknown"] and "do not encode speakers" in caplog.text


def test_label_codes_match_without_case_and_emovos_label_dict_is_read(tmp_path):
    root = one_fold_dataset(tmp_path, "emovo", ["emovo-neu-f1-b1", "emovo-neu-m1-b1"], label_file="label_dict.json",
                            label_map={"Neutral": "Neutral", "pau": "Fear"}, emo="neutral")
    assert len(load_corpus("emobox", root, classes=["neutral"])) == 2


def test_emoboxs_names_become_ser_fasts(tmp_path):
    root = one_fold_dataset(tmp_path, "cremad", ["cremad-1001-DFA-FEA-XX", "cremad-1002-DFA-FEA-XX"],
                            label_map={"FEA": "Fear"}, emo="FEA")
    assert {u.label for u in load_corpus("emobox", root, classes=["fearful"])} == {"fearful"}


def test_msp_podcasts_no_agreement_is_a_class_of_every_class(tmp_path, caplog):
    label_map = {"N": "Neutral", "A": "Angry", "X": "No-agreement", "C": "Contempt"}
    root = one_fold_dataset(tmp_path, "msppodcast", ["msppodcast-MSP-PODCAST_0001_0008",
                                                      "msppodcast-MSP-PODCAST_0002_0001"], label_map=label_map, emo="X")
    every = load_corpus("emobox", root, classes="emobox")
    assert every.classes == ("neutral", "angry", "no-agreement", "contemptuous") and len(every) == 2
    with caplog.at_level(logging.WARNING, logger="ser_fast"):
        four = load_corpus("emobox", root)
    assert len(four) == 0 and "2 utterances have labels outside the classes" in caplog.text


def test_a_class_with_one_training_utterance_keeps_it_for_training(tmp_path):
    root = one_fold_dataset(tmp_path, "cremad", ["cremad-1001-DFA-NEU-XX", "cremad-1002-DFA-NEU-XX",
                                                 "cremad-1003-DFA-NEU-XX"])
    train = root / "fold_1" / "cremad_train_fold_1.jsonl"
    lines = train.read_text().splitlines()
    train.write_text("\n".join([lines[0], lines[1].replace('"emo": "neu"', '"emo": "ang"')]) + "\n")
    (root / "label_map.json").write_text(json.dumps({"neu": "Neutral", "ang": "Angry"}))
    fold = emobox_folds(load_corpus("emobox", root))[0]
    assert sorted(u.label for u in fold.train) == ["angry", "neutral"] and fold.validation == []


def test_clips_of_longer_recordings_are_skipped_with_the_reason(tmp_path):
    root = one_fold_dataset(tmp_path, "pavoque", ["pavoque-m1-poker", "pavoque-m2-poker"])
    train = root / "fold_1" / "pavoque_train_fold_1.jsonl"
    record = json.loads(train.read_text())
    train.write_text(json.dumps({**record, "start_time": 1.0, "end_time": 2.0}) + "\n")
    with pytest.raises(ValueError, match="fold 1 .* has 0 training"):
        emobox_folds(corpus := load_corpus("emobox", root, classes=["neutral"]))
    assert [s.reason for s in corpus.skipped] == ["a clip of a longer recording (start_time/end_time), which is not "
                                                  "supported"]


@pytest.mark.parametrize("damage, error, match", [
    (lambda d: (d / "fold_1/iemocap_train_fold_1.jsonl").write_text("{not json\n"), ValueError,
     r"iemocap_train_fold_1.jsonl:1: not a JSON object"),
    (lambda d: (d / "fold_1/iemocap_train_fold_1.jsonl").write_text(json.dumps({"key": "k", "wav": "w"}) + "\n"),
     ValueError, r"fold_1.jsonl:1: missing or empty emo"),
    (lambda d: (d / "fold_1/iemocap_train_fold_1.jsonl").write_text("[1, 2]\n"), ValueError, "got list"),
    (lambda d: (d / "fold_2/iemocap_test_fold_2.jsonl").unlink(), FileNotFoundError,
     r"EmoBox fold 2: no test file, expected .*iemocap_test_fold_2.jsonl"),
    (lambda d: (d / "label_map.json").write_text("[]"), ValueError, "mapping each label code"),
    (lambda d: (d / "fold_1/iemocap_test_fold_1.jsonl").write_text(
        (d / "fold_1/iemocap_test_fold_1.jsonl").read_text().replace('"emo": "neu"', '"emo": "sad"', 1)),
     ValueError, r"fold_2.jsonl:1: key 'iemocap-Ses01F_impro01_F000' names .* \(neu\) here but .* \(sad\) in "
                 r".*iemocap_test_fold_1.jsonl:1"),
], ids=["bad-json", "missing-emo", "not-an-object", "missing-fold-file", "label-map-not-object", "conflicting-key"])
def test_bad_fold_files_are_refused_with_the_line_named(tmp_path, damage, error, match):
    root = make_emobox_tree(tmp_path)
    damage(root)
    with pytest.raises(error, match=match):
        load_corpus("emobox", root)


def test_audio_root_is_for_emobox_only(tmp_path):
    with pytest.raises(ValueError, match="audio_root is for EmoBox"):
        load_corpus("iemocap", tmp_path, audio_root=tmp_path)


def test_emoboxs_metrics_equal_a_hand_computation():
    labels, predictions = np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 1, 2, 2])
    got = fold_metrics(labels, predictions)
    # Recalls 1/2, 2/3, 1; precisions 1, 2/3, 1/2; F1s 2/3, 2/3, 2/3.
    assert_close(np.array([got[m] for m in ("wa", "ua", "micro_f1", "macro_f1")]),
                 np.array([4 / 6, (1 / 2 + 2 / 3 + 1) / 3, 4 / 6, 2 / 3]), atol=1e-12)
    items = ScoredItems(("a",) * 6 + ("b",) * 2, ("s",) * 8, ("fold-1",) * 6 + ("fold-2",) * 2,
                        np.concatenate([labels, [0, 1]]), np.concatenate([predictions, [0, 0]]))
    scores = emobox_scores(items)
    assert list(scores["folds"]) == ["fold-1", "fold-2"] and scores["folds"]["fold-2"]["wa"] == 0.5
    assert scores["mean"]["wa"] == pytest.approx((4 / 6 + 0.5) / 2)


def synthetic_emobox(base: Path) -> Path:
    """A synthetic corpus (iemocap layout, 2 sessions) described by EmoBox fold files, one fold per session."""
    audio = synthesize_corpus(base / "audio", speakers=4, per_class=2, seed=11)
    corpus = load_corpus("iemocap", audio)
    codes = {"neutral": "neu", "happy": "hap", "sad": "sad", "angry": "ang"}
    dataset = base / "EmoBox" / "data" / "iemocap"
    for fold, test in enumerate(corpus.sessions, 1):
        folder = dataset / f"fold_{fold}"
        folder.mkdir(parents=True)
        for part, keep in (("test", True), ("train", False)):
            lines = [emobox_line(f"iemocap-{u.path.stem}", str(u.path.relative_to(audio)), codes[u.label])
                     for u in corpus if (u.session == test) == keep]
            (folder / f"iemocap_{part}_fold_{fold}.jsonl").write_text("\n".join(lines) + "\n")
    (dataset / "label_map.json").write_text(json.dumps({"neu": "Neutral", "hap": "Happy", "sad": "Sad",
                                                        "ang": "Angry"}))
    return dataset


def test_a_run_on_emobox_folds_reports_emoboxs_metrics(tmp_path, capsys):
    dataset, audio = synthetic_emobox(tmp_path), tmp_path / "audio"
    assert main(["corpus-info", "emobox", str(dataset), "--audio-root", str(audio), "--protocol", "emobox"]) == 0
    assert "fold-1" in capsys.readouterr().out
    assert main(["train", "--model", "baseline", "--corpus", "emobox", "--root", str(dataset), "--audio-root",
                 str(audio), "--protocol", "emobox", "--epochs", "1", "--max-frames", "48", "--precision", "fp32",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["evaluate", str(tmp_path / "run"), "--corpus", "emobox", "--root", str(dataset),
                 "--audio-root", str(audio), "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## EmoBox metrics" in report and "mean of 2" in report
    run = json.loads((tmp_path / "eval" / "results.json").read_text())["runs"][0]
    numbers, clean = run["emobox"], run["conditions"][0]
    assert list(numbers["folds"]) == ["fold-1", "fold-2"]
    for fold, metrics in numbers["folds"].items():
        # scikit-learn's accuracy and macro recall against ser_fast's own confusion-matrix scores of the fold (every
        # class is in every fold's test set here, so macro recall is UAR).
        assert metrics["wa"] == pytest.approx(clean["folds"][fold]["wa"])
        assert metrics["ua"] == pytest.approx(clean["folds"][fold]["uar"])
    assert numbers["mean"]["wa"] == pytest.approx(np.mean([f["wa"] for f in numbers["folds"].values()]))
    with pytest.raises(SystemExit):
        main(["corpus-info", "emobox", str(dataset), "--protocol", "emobx"])
    assert "invalid choice: 'emobx'" in capsys.readouterr().err
