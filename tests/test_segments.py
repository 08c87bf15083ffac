"""Speech segments: silero-vad finds the synthesizer's speech between gaps of silence and of noise within 0.1 s, given
segments (CSV or RTTM) are read and checked, each segment gets its own prediction and the file its aggregate and speech
shares, and the batch job writes a row per segment that a killed run neither loses nor repeats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from corpus_fixtures import speech_with_gaps, train_tiny_baseline
from helpers import assert_close

from ser_fast.cli import main
from ser_fast.inference.inputs import list_inputs
from ser_fast.inference.predict_job import merge_shards, run_predict
from ser_fast.inference.recognizer import EmotionRecognizer
from ser_fast.inference.segments import Segment, SegmentFileError, read_segments, segment_problems, speech_segments
from ser_fast.inference.writers import read_rows

RATE = 16000
TOLERANCE_S = 0.1


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_the_vad_finds_the_speech_within_a_tenth_of_a_second(seed):
    wave, truth = speech_with_gaps(seed)
    found = speech_segments(wave)
    for start, end in truth:
        inside = [s for s in found if s.end_s > start and s.start_s < end]
        assert inside, f"no segment in the speech at {start:.2f}-{end:.2f} s"
        assert abs(inside[0].start_s - start) <= TOLERANCE_S, (inside[0], start)
        assert abs(inside[-1].end_s - end) <= TOLERANCE_S, (inside[-1], end)
    outside = [s for s in found if not any(s.end_s > a and s.start_s < b for a, b in truth)]
    assert not outside, f"segments in the gaps: {outside}"
    assert all(a.end_s <= b.start_s for a, b in zip(found, found[1:]))


def test_the_vad_leaves_torchs_threads_as_they_were():
    """silero_vad sets torch to one thread when first imported; in a fresh process the setting is put back."""
    code = ("import numpy, torch; torch.set_num_threads(2); from ser_fast.inference.segments import speech_segments; "
            "speech_segments(numpy.zeros(16000, numpy.float32)); print(torch.get_num_threads())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.split()[-1] == "2", result.stderr


def test_noise_alone_has_no_speech():
    noise = np.random.default_rng(3).normal(0.0, 0.003, 3 * RATE).astype(np.float32)
    assert speech_segments(noise) == []


PROBLEMS = {
    "negative": (Segment(-0.5, 1.0), "starts before the recording"),
    "backwards": (Segment(2.0, 1.0), "ends where or before it starts"),
    "empty": (Segment(1.0, 1.0), "ends where or before it starts"),
    "past-the-end": (Segment(10.5, 11.0), "starts after the recording's end at 10.000 s"),
    "runs-past-the-end": (Segment(9.0, 10.5), "runs past the recording's end"),
    "too-short": (Segment(3.0, 3.01), "shorter than one 25 ms frame"),
    "overlap-same-speaker": (Segment(0.5, 1.5, "A"), "overlaps segment 0 (0-1 s) of the same speaker (A)"),
}


@pytest.mark.parametrize("case", list(PROBLEMS), ids=str)
def test_each_bad_segment_is_named(case):
    segment, message = PROBLEMS[case]
    problems = segment_problems([Segment(0.0, 1.0, "A"), segment], 10.0, 0.025)
    assert problems[0] is None and message in problems[1]


def test_two_speakers_may_overlap_and_a_frame_past_the_end_is_allowed():
    segments = [Segment(0.0, 1.0, "A"), Segment(0.5, 1.5, "B"), Segment(9.0, 10.005)]
    assert segment_problems(segments, 10.0, 0.025) == [None, None, None]


def test_segments_files_csv_and_rttm(tmp_path):
    audio = tmp_path / "calls" / "a.wav"
    csv_file = tmp_path / "segments.csv"
    csv_file.write_text("path,start,end,speaker\ncalls/a.wav,2.5,3.0,B\ncalls/a.wav,0.0,1.5,A\n\n"
                        f"{tmp_path / 'b.wav'},1,2,\n")
    table = read_segments(csv_file)
    assert table[str(audio)] == [Segment(0.0, 1.5, "A"), Segment(2.5, 3.0, "B")]
    assert table[str(tmp_path / "b.wav")] == [Segment(1.0, 2.0, None)]
    rttm = tmp_path / "diarized.rttm"
    rttm.write_text(";; a comment\nSPEAKER a 1 0.50 1.25 <NA> <NA> spk1 <NA> <NA>\n"
                    "SPEAKER a 1 2.00 0.50 <NA> <NA> <NA> <NA> <NA>\n")
    assert read_segments(rttm)["a"] == [Segment(0.5, 1.75, "spk1"), Segment(2.0, 2.5, None)]


@pytest.mark.parametrize("name, text, message", [
    ("empty.csv", "", "holds no segments"),
    ("header-only.csv", "path,start,end\n", "holds no segments"),
    ("no-end.csv", "path,start\na.wav,1\n", r"lacks \['end'\]"),
    ("word.csv", "path,start,end\na.wav,one,2\n", "row 2: start 'one' is not a number"),
    ("ragged.csv", "path,start,end\na.wav,1\n", "row 2: 2 fields, expected 3"),
    ("short.rttm", "SPEAKER a 1 0.5\n", "line 1: 4 fields"),
    ("infinite.rttm", "SPEAKER a 1 inf 1 <NA> <NA> x <NA> <NA>\n", "is not finite"),
], ids=["empty", "header-only", "no-end-column", "word", "ragged", "short-rttm", "infinite"])
def test_a_bad_segments_file_is_named_with_its_row(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(SegmentFileError, match=message):
        read_segments(tmp_path / name)
    with pytest.raises(SegmentFileError, match="no such file"):
        read_segments(tmp_path / "missing.csv")


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory) -> EmotionRecognizer:
    return EmotionRecognizer.from_pretrained(train_tiny_baseline(tmp_path_factory.mktemp("segments-run"), seed=2),
                                             precision="fp32")


def test_each_segment_gets_its_prediction_and_the_file_their_mean(recognizer):
    wave, truth = speech_with_gaps(4, count=4)
    given = [Segment(a, b, f"spk{i % 2}") for i, (a, b) in enumerate(truth)]
    (prediction,) = recognizer.predict([wave], sample_rate=RATE, segments=[given])
    assert [(s.start_s, s.end_s, s.speaker) for s in prediction.segments] == [
        (g.start_s, g.end_s, g.speaker) for g in given]
    alone = recognizer.predict([wave[round(a * RATE):round(b * RATE)] for a, b in truth], sample_rate=RATE)
    for segment, reference in zip(prediction.segments, alone):
        assert segment.label == reference.label and segment.error is None
        assert_close(np.array(list(segment.probabilities.values())), np.array(list(reference.probabilities.values())),
                     atol=1e-5, msg="a segment as its own input")
    durations = np.array([b - a for a, b in truth])
    mean = (np.array([list(s.probabilities.values()) for s in prediction.segments]) * durations[:, None]).sum(0)
    assert_close(np.array(list(prediction.probabilities.values())), mean / durations.sum(), atol=1e-6, msg="mean")
    assert_close(sum(prediction.speech_shares.values()), 1.0, atol=1e-9, msg="shares")
    assert not prediction.timeline and prediction.as_row()["segments"][0]["speaker"] == "spk0"


def test_bad_segments_get_errors_and_the_rest_a_label(recognizer):
    wave, _ = speech_with_gaps(5, count=2)
    segments = [Segment(1.0, 2.0), Segment(-1.0, 0.5), Segment(100.0, 101.0)]
    (prediction,) = recognizer.predict([wave], sample_rate=RATE, segments=[segments])
    assert prediction.label is not None and [s.error is None for s in prediction.segments] == [True, False, False]
    (none,) = recognizer.predict([wave], sample_rate=RATE, segments=[segments[1:]])
    assert none.label is None and "none of its 2 segments can be classified" in none.error
    noise = np.random.default_rng(0).normal(0.0, 0.003, 2 * RATE).astype(np.float32)
    (silent,) = recognizer.predict([noise], sample_rate=RATE, segments="vad")
    assert silent.label is None and "the VAD found no speech" in silent.error


def test_an_empty_segment_list_is_an_error_for_that_input_only(recognizer):
    wave, truth = speech_with_gaps(6, count=2)
    empty, given = recognizer.predict([wave, wave], sample_rate=RATE, segments=[[], [Segment(*truth[0])]])
    assert empty.label is None and "no segments were given" in empty.error
    assert given.label is not None


def test_a_bad_table_entry_is_refused_before_the_job_starts(recognizer, recordings, tmp_path):
    out = tmp_path / "refused.jsonl"
    with pytest.raises(TypeError, match=r"segments\[0\] must be a list of"):
        run_predict(recognizer, list_inputs([recordings]), out, segments={"a.wav": [(0.0, 1.0)]}, progress=False)
    assert not out.exists()


@pytest.mark.parametrize("segments, error, message", [
    ([[], []], ValueError, "one entry per input"),
    ([[(0, 1)]], TypeError, r"segments\[0\] must be a list of"),
    ("all", ValueError, "segments must be None, 'vad'"),
], ids=["two-for-one-input", "tuples", "word"])
def test_bad_segment_arguments_are_explained(recognizer, segments, error, message):
    with pytest.raises(error, match=message):
        recognizer.predict([np.zeros(RATE, np.float32)], sample_rate=RATE, segments=segments)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("recordings")
    for seed in range(3):
        wave, _ = speech_with_gaps(10 + seed, count=3)
        sf.write(folder / f"call{seed}.wav", wave, RATE, subtype="FLOAT")
    return folder


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_the_job_writes_a_row_per_segment_and_resumes_without_repeats(recognizer, recordings, tmp_path, suffix):
    out = tmp_path / f"segments{suffix}"
    summary = run_predict(recognizer, list_inputs([recordings]), out, segments="vad", progress=False)
    rows = read_rows(out)
    assert summary.done == 3 and summary.errors == 0
    rows = [_typed(row) for row in rows]
    files = [row for row in rows if row["segment"] is None]
    assert [Path(row["source"]).name for row in files] == ["call0.wav", "call1.wav", "call2.wav"]
    for row in files:
        parts = [r for r in rows if r["source"] == row["source"] and r["segment"] is not None]
        assert len(parts) >= 3 and [r["segment"] for r in parts] == list(range(len(parts)))
        assert all(r["start_s"] < r["end_s"] and r["label"] in recognizer.classes for r in parts)
        assert row["windows"] == sum(r["windows"] for r in parts)
        assert_close(sum(row["speech_shares"].values()), 1.0, atol=1e-9, msg="shares")
    # A run killed inside the second file's rows: the rerun writes the rest once.
    lines = out.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if "call1.wav" in line) + 2
    resumed = tmp_path / f"resumed{suffix}"
    resumed.write_text("".join(lines[:cut]) + lines[cut][:17])
    run_predict(recognizer, list_inputs([recordings]), resumed, segments="vad", progress=False)
    assert_same_rows([_typed(row) for row in read_rows(resumed)], rows, recognizer.classes)


def _typed(row: dict) -> dict:
    """A CSV row's fields as JSONL holds them (numbers, None for empty, JSON for speech_shares)."""
    if not isinstance(row.get("segment"), str):
        return row
    typed = {key: (None if value == "" else value) for key, value in row.items()}
    for key in ("segment", "windows"):
        typed[key] = None if typed[key] is None else int(typed[key])
    for key in ("start_s", "end_s", "duration_s", *(k for k in row if k.startswith("prob_"))):
        typed[key] = None if typed[key] is None else float(typed[key])
    typed["speech_shares"] = None if typed["speech_shares"] is None else json.loads(typed["speech_shares"])
    return typed


def test_given_segments_through_the_cli_and_a_file_they_do_not_name(recognizer, recordings, tmp_path, capsys):
    table = tmp_path / "given.csv"
    table.write_text("path,start,end,speaker\n" + "".join(
        f"{recordings / name},{a},{b},{who}\n" for name, a, b, who in (
            ("call0.wav", 0.8, 2.0, "agent"), ("call0.wav", 1.5, 2.5, "caller"), ("call2.wav", 0.5, 1.0, "agent"))))
    out = tmp_path / "given.csv.out.csv"
    assert main(["predict", str(recordings), "--run", str(recognizer.folder.parents[1]), "--out", str(out),
                 "--segments", str(table), "--quiet"]) == 0
    rows = read_rows(out)
    by = {(Path(r["source"]).name, r["segment"]): r for r in rows}
    assert by[("call0.wav", "1")]["speaker"] == "caller" and by[("call0.wav", "")]["speech_shares"]
    assert "names no segments for this recording" in by[("call1.wav", "")]["error"]
    assert json.loads(by[("call0.wav", "")]["speech_shares"]) and by[("call2.wav", "0")]["label"]
    assert main(["predict", str(recordings), "--run", str(recognizer.folder.parents[1]), "--out",
                 str(tmp_path / "x.jsonl"), "--segments", str(tmp_path / "none.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_shards_merge_to_the_rows_of_one_run(recognizer, recordings, tmp_path):
    whole = tmp_path / "whole.jsonl"
    run_predict(recognizer, list_inputs([recordings]), whole, segments="vad", progress=False)
    out = tmp_path / "sharded.jsonl"
    for rank in range(2):
        run_predict(recognizer, list_inputs([recordings]), out, segments="vad", progress=False, shard=(rank, 2))
    merge_shards(out, list_inputs([recordings]), recognizer.classes, segments=True)
    assert_same_rows(read_rows(out), read_rows(whole), recognizer.classes)
    assert not list(tmp_path.glob("sharded.rank*"))


def assert_same_rows(actual: list[dict], expected: list[dict], classes) -> None:
    """The same rows in the same order; probabilities up to float rounding (another run batches other windows)."""
    assert [(r["source"], r["segment"], r["start_s"], r["end_s"], r["speaker"]) for r in actual] == [
        (r["source"], r["segment"], r["start_s"], r["end_s"], r["speaker"]) for r in expected]
    columns = [f"prob_{c}" for c in classes]
    assert_close(np.array([[r[c] for c in columns] for r in actual], dtype=float),
                 np.array([[r[c] for c in columns] for r in expected], dtype=float), atol=1e-5, msg="probabilities")
