"""The batch prediction job in-process: input listing (files, nested folders, list files), the output
writers (JSONL and CSV, torn lines, other columns), every bad-file kind getting exactly one error row,
resume, decoding workers, and sharding with an in-process merge. One tiny baseline run is trained once
per module."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from corpus_fixtures import train_tiny_baseline, write_odd_wav, write_wav
from helpers import assert_close, speech_like, write_container

from ser_fast.inference.inputs import list_inputs, readable_audio_extensions
from ser_fast.inference.predict_job import merge_shards, run_predict, shard_parts, shard_path
from ser_fast.inference.recognizer import EmotionRecognizer
from ser_fast.inference.writers import OutputFileError, RowWriter, output_columns, read_records, read_rows

CLASSES = ("neutral", "happy", "sad", "angry")
FORMATS = [pytest.param(".jsonl", id="jsonl"), pytest.param(".csv", id="csv")]


def sources(items) -> list[str]:
    return [item.source for item in items]


def write_audio(path: Path, *, seconds: float = 0.1, sample_rate: int = 16000, channels: int = 1,
                seed: int = 0) -> Path:
    """Quiet noise in the format the suffix names (wav for an unknown suffix), never silent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = 0.1 * np.random.default_rng(seed).standard_normal((round(seconds * sample_rate), channels))
    extension = path.suffix.lower().lstrip(".")
    audio_format = {"flac": "FLAC", "ogg": "OGG"}.get(extension, "WAV")
    subtype = {"FLAC": "PCM_16", "OGG": "VORBIS", "WAV": "PCM_16"}[audio_format]
    sf.write(str(path), np.clip(noise, -1, 1), sample_rate, format=audio_format, subtype=subtype)
    return path


def test_list_inputs_expands_files_nested_folders_and_list_files_in_order(tmp_path):
    folder = tmp_path / "calls"
    for name in ("b.wav", "a.flac", "deep/er/c.ogg", "deep/d.WAV"):
        write_audio(folder / name)
    for name in ("notes.json", "cover.png"):
        (folder / name).write_text("not audio")
    lone = write_audio(tmp_path / "lone.wav")
    odd_name = write_audio(tmp_path / "recording.data")
    write_audio(tmp_path / "lists" / "rel.wav")
    listed = tmp_path / "lists" / "batch.txt"
    listed.write_text(f"# batch of the week\n\n  rel.wav  \n{lone}\n../calls/deep\n# {tmp_path}/skipped.wav\n")

    items = list_inputs([lone, folder, listed, odd_name])

    expected = [lone, folder / "a.flac", folder / "b.wav", folder / "deep/d.WAV", folder / "deep/er/c.ogg",
                tmp_path / "lists/rel.wav", odd_name]
    assert sources(items) == [str(p) for p in expected]
    assert all(item.error is None for item in items)


def test_list_inputs_turns_missing_specs_into_error_items_and_keeps_every_recording(tmp_path):
    folder = tmp_path / "mixed"
    write_wav(folder / "ok.wav")
    (folder / "voice.m4a").write_bytes(b"\x00" * 64)
    listed = tmp_path / "batch.lst"
    listed.write_text("gone.wav\n")
    items = list_inputs([tmp_path / "missing.wav", tmp_path / "no-dir/", folder, listed, tmp_path / "absent.txt"])
    by_source = {item.source: item.error for item in items}
    assert list(by_source) == [str(tmp_path / "missing.wav"), str(tmp_path / "no-dir"), str(folder / "ok.wav"),
                               str(folder / "voice.m4a"), str(tmp_path / "gone.wav"), str(tmp_path / "absent.txt")]
    assert by_source[str(folder / "ok.wav")] is None
    assert "no such file" in by_source[str(tmp_path / "missing.wav")]
    assert by_source[str(folder / "voice.m4a")] is None  # a recording: decoding it says what is wrong with it
    assert "no such list file" in by_source[str(tmp_path / "absent.txt")]


def test_list_inputs_keeps_each_input_once_at_its_first_place(tmp_path, monkeypatch):
    a, b = write_wav(tmp_path / "a.wav"), write_wav(tmp_path / "b.wav")
    monkeypatch.chdir(tmp_path)
    listed = tmp_path / "l.txt"
    listed.write_text("b.wav\na.wav\n")
    assert sources(list_inputs(["b.wav", listed, tmp_path, str(a)])) == [str(b), str(a)]


def test_list_inputs_refuses_one_bare_path():
    with pytest.raises(TypeError, match="wrap it in a list"):
        list_inputs("one.wav")


def test_readable_extensions_follow_libsndfile_and_ffmpeg():
    extensions = readable_audio_extensions()
    assert {"wav", "flac", "ogg", "aiff", "aif", "au", "mp3"} <= extensions
    assert {"m4a", "mp4", "aac", "webm", "opus", "wma", "amr", "mkv", "3gp"} <= extensions
    assert not {"raw", "txt", "csv", "m3u8", "mpd", "srt", "avif", "png", "json"} & extensions


def make_row(source: str, label: str | None = "happy", *, error: str | None = None) -> dict:
    probabilities = {name: (0.7 if name == label else 0.1) for name in CLASSES} if label else {}
    return {"source": source, "label": label, "error": error, "warning": None, "duration_s": 1.25,
            **{f"prob_{name}": probabilities.get(name) for name in CLASSES}, "windows": 0 if error else 1,
            "timeline": [{"start_s": 0.0, "end_s": 1.0, "label": label, "probabilities": probabilities}]}


@pytest.mark.parametrize("suffix", FORMATS)
def test_writer_appends_and_a_reopened_file_knows_what_is_done(tmp_path, suffix):
    out = tmp_path / f"preds{suffix}"
    columns = output_columns(CLASSES)
    with RowWriter(out, columns) as writer:
        writer.write([make_row("/a.wav"), make_row("/b,\"odd\".wav", None, error='unreadable, "bad" header')])
    with RowWriter(out, columns) as writer:
        assert writer.done == {"/a.wav", "/b,\"odd\".wav"}
        writer.write([make_row("/c.wav", "sad")])
    rows = read_rows(out)
    assert [r["source"] for r in rows] == ["/a.wav", "/b,\"odd\".wav", "/c.wav"]
    assert [r["label"] for r in rows] == (["happy", None, "sad"] if suffix == ".jsonl" else ["happy", "", "sad"])
    assert rows[1]["error"] == 'unreadable, "bad" header'
    timeline = rows[2]["timeline"] if suffix == ".jsonl" else json.loads(rows[2]["timeline"])
    assert timeline[0]["label"] == "sad"
    assert out.read_text().count("\n") == 3 + (suffix == ".csv")


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("cut", [pytest.param(1, id="one-byte"), pytest.param(37, id="mid-row")])
def test_a_torn_last_line_is_cut_off_and_its_input_redone(tmp_path, suffix, cut):
    out = tmp_path / f"preds{suffix}"
    columns = output_columns(CLASSES)
    with RowWriter(out, columns) as writer:
        writer.write([make_row("/a.wav"), make_row("/b.wav")])
    intact = out.read_bytes()
    with RowWriter(tmp_path / f"scratch{suffix}", columns) as scratch:
        scratch.write([make_row("/c.wav")])
    torn_row = (tmp_path / f"scratch{suffix}").read_bytes().splitlines(keepends=True)[-1][:cut]
    out.write_bytes(intact + torn_row)

    assert [source for source, _ in read_records(out, columns)] == ["/a.wav", "/b.wav"]
    with RowWriter(out, columns) as writer:
        assert writer.done == {"/a.wav", "/b.wav"}
        assert out.read_bytes() == intact
        writer.write([make_row("/c.wav")])
    assert [r["source"] for r in read_rows(out)] == ["/a.wav", "/b.wav", "/c.wav"]


def test_a_csv_row_torn_inside_a_quoted_newline_is_cut_off(tmp_path):
    out = tmp_path / "preds.csv"
    columns = output_columns(CLASSES)
    with RowWriter(out, columns) as writer:
        writer.write([make_row("/a.wav")])
    intact = out.read_bytes()
    out.write_bytes(intact + b'"/weird\nname.wav",happy,')
    with RowWriter(out, columns) as writer:
        assert writer.done == {"/a.wav"}
    assert out.read_bytes() == intact


def test_a_torn_csv_header_is_rewritten(tmp_path):
    out = tmp_path / "preds.csv"
    out.write_bytes(b"source,lab")
    with RowWriter(out, output_columns(CLASSES)) as writer:
        writer.write([make_row("/a.wav")])
    assert [r["source"] for r in read_rows(out)] == ["/a.wav"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_file_written_for_other_columns_is_refused(tmp_path, suffix):
    out = tmp_path / f"preds{suffix}"
    with RowWriter(out, output_columns(CLASSES)) as writer:
        writer.write([make_row("/a.wav")])
    before = out.read_bytes()
    for columns in (output_columns(("calm", "angry")), output_columns(CLASSES, embedding=True)):
        with pytest.raises(OutputFileError, match="pick another --out"):
            RowWriter(out, columns)
    assert out.read_bytes() == before


def test_a_csv_row_with_missing_fields_is_refused_not_cut(tmp_path):
    out = tmp_path / "preds.csv"
    with RowWriter(out, output_columns(CLASSES)) as writer:
        writer.write([make_row("/a.wav")])
    with out.open("a") as handle:
        handle.write("/b.wav,happy\n")
    with pytest.raises(OutputFileError, match="line 3: 2 fields"):
        RowWriter(out, output_columns(CLASSES))


def test_a_corrupt_middle_line_is_refused_not_cut(tmp_path):
    out = tmp_path / "preds.jsonl"
    out.write_text(json.dumps(make_row("/a.wav")) + "\n{oops\n" + json.dumps(make_row("/b.wav")) + "\n")
    with pytest.raises(OutputFileError, match="line 2"):
        RowWriter(out, output_columns(CLASSES))


@pytest.mark.parametrize("name", ["preds.txt", "preds", "preds.json"])
def test_unsupported_output_suffix_is_refused(tmp_path, name):
    with pytest.raises(OutputFileError, match="unsupported suffix"):
        RowWriter(tmp_path / name, output_columns(CLASSES))


@pytest.mark.skipif(os.name != "posix", reason="advisory locks are POSIX only")
def test_two_writers_cannot_share_a_file(tmp_path):
    out = tmp_path / "preds.jsonl"
    with RowWriter(out, output_columns(CLASSES)), pytest.raises(OutputFileError, match="another job"):
        RowWriter(out, output_columns(CLASSES))


def test_writer_refuses_rows_with_other_columns(tmp_path):
    with RowWriter(tmp_path / "p.jsonl", output_columns(CLASSES)) as writer, pytest.raises(ValueError, match="columns"):
        writer.write([{"source": "/a.wav", "label": "happy"}])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_tiny_baseline(tmp_path_factory.mktemp("predict-run"), seed=1)


@pytest.fixture(scope="module")
def recognizer(run_dir) -> EmotionRecognizer:
    return EmotionRecognizer.from_pretrained(run_dir, precision="fp32")


def write_speech(path: Path, *, seconds: float, sample_rate: int = 16000, channels: int = 1, seed: int = 0) -> Path:
    """Speech-like audio (a wandering-F0 harmonic series) in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mono = speech_like(round(seconds * sample_rate), sample_rate, seed) / 32768.0
    wave = np.stack([mono * (0.5 + 0.5 * c) for c in range(channels)], axis=1)
    sf.write(str(path), wave, sample_rate, format="FLAC" if path.suffix == ".flac" else "WAV", subtype="PCM_16")
    return path


# (name, seconds, sample rate, channels): odd lengths and rates, stereo, flac.
GOOD_FILES = (("a.wav", 0.61, 16000, 1), ("low/b.wav", 1.3, 8000, 1), ("c.flac", 0.9, 44100, 1),
              ("hi/d.wav", 0.47, 48000, 2), ("e.flac", 2.03, 22050, 2), ("f.wav", 0.33, 16000, 1))


# Every bad-file kind and what its error row must say.
BAD_KINDS = {"empty": "not a readable audio file", "truncated": "not a readable audio file",
             "garbage": "not a readable audio file", "no-frames": "no audio samples", "silent": "silent",
             "too-short": "too short", "nan": "NaN", "missing": "no such file"}


def write_bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    bad = {kind: write_odd_wav(write_speech(folder / f"{kind}.wav", seconds=0.2), kind)
           for kind in ("empty", "truncated")}
    bad["garbage"] = folder / "garbage.wav"
    bad["garbage"].write_bytes(bytes(range(256)) * 8)
    bad["no-frames"] = folder / "no-frames.wav"
    sf.write(str(bad["no-frames"]), np.zeros((0, 1)), 16000, subtype="PCM_16")
    bad["silent"] = folder / "silent.wav"
    sf.write(str(bad["silent"]), np.zeros(16000), 16000, subtype="PCM_16")
    bad["too-short"] = write_speech(folder / "too-short.wav", seconds=0.004)
    bad["nan"] = folder / "nan.wav"
    sf.write(str(bad["nan"]), np.full(8000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    bad["missing"] = folder / "missing.wav"
    return bad


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("predict-audio")
    good = [write_speech(folder / "good" / name, seconds=s, sample_rate=r, channels=c, seed=i)
            for i, (name, s, r, c) in enumerate(GOOD_FILES)]
    many = [write_speech(folder / "many" / f"u{i:02d}.wav", seconds=0.3 + 0.07 * (i % 9), seed=100 + i)
            for i in range(23)]
    return {"folder": folder, "good": good, "bad": write_bad_files(folder / "bad"), "many": many}


def rows_by_source(path: Path) -> dict[str, dict]:
    rows = read_rows(path)
    by_source = {row["source"]: row for row in rows}
    assert len(by_source) == len(rows), f"{path} has {len(rows) - len(by_source)} duplicated rows"
    return by_source


def probabilities_of(row: dict) -> np.ndarray:
    return np.array([float(row[f"prob_{name}"]) for name in CLASSES])


def assert_same_rows(actual: Path, expected: Path) -> None:
    """Same sources in the same order, same labels and errors, same probabilities (to float32 rounding:
    inputs batched with other inputs may differ in the last bit)."""
    got, want = read_rows(actual), read_rows(expected)
    assert [r["source"] for r in got] == [r["source"] for r in want]
    assert [(r["label"], r["error"]) for r in got] == [(r["label"], r["error"]) for r in want]
    labelled = [i for i, r in enumerate(want) if r["label"]]
    assert_close(np.array([probabilities_of(got[i]) for i in labelled]),
                 np.array([probabilities_of(want[i]) for i in labelled]), atol=1e-6, msg=f"{actual} vs {expected}")


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_bad_file_gets_one_error_row_and_every_good_file_a_label(recognizer, audio, tmp_path, suffix, one_thread):
    inputs = list_inputs([*audio["good"], audio["bad"]["missing"], audio["folder"] / "bad"])
    out = tmp_path / f"preds{suffix}"
    summary = run_predict(recognizer, inputs, out, batch_size=3, progress=False)

    rows = rows_by_source(out)
    assert list(rows) == sources(inputs)
    bad = {str(path): kind for kind, path in audio["bad"].items()}
    assert set(audio["bad"]) == set(BAD_KINDS) and set(bad) <= set(rows)
    for source, row in rows.items():
        if source in bad:
            assert BAD_KINDS[bad[source]] in row["error"] and source in row["error"], f"{bad[source]}: {row}"
            assert not row["label"] and int(row["windows"]) == 0, row
        else:
            assert not row["error"] and row["label"] in CLASSES, row
            assert_close(probabilities_of(row).sum(), 1.0, atol=1e-5, msg=source)
    assert (summary.done, summary.errors, summary.skipped) == (len(audio["good"]), len(bad), 0)


def test_the_job_gives_the_recognizers_own_predictions(recognizer, audio, tmp_path, one_thread):
    out = tmp_path / "preds.jsonl"
    run_predict(recognizer, audio["good"], out, batch_size=4, progress=False)
    expected = recognizer.predict([str(p) for p in audio["good"]], batch_size=4)
    rows = read_rows(out)
    assert [r["label"] for r in rows] == [p.label for p in expected]
    assert_close(np.array([probabilities_of(r) for r in rows]),
                 np.array([[p.probabilities[c] for c in CLASSES] for p in expected]), atol=1e-6, msg="probabilities")
    assert_close(np.array([r["duration_s"] for r in rows]), np.array([s for _, s, _, _ in GOOD_FILES]), atol=1e-3,
                 msg="durations")


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_rerun_skips_what_is_done_and_ends_with_the_uninterrupted_rows(recognizer, audio, tmp_path, suffix,
                                                                       one_thread):
    inputs = list_inputs([*audio["many"], audio["bad"]["garbage"]])
    whole = tmp_path / f"whole{suffix}"
    run_predict(recognizer, inputs, whole, batch_size=2, progress=False)
    resumed = tmp_path / f"resumed{suffix}"
    first = run_predict(recognizer, inputs[:9], resumed, batch_size=2, progress=False)
    second = run_predict(recognizer, inputs, resumed, batch_size=2, progress=False)
    assert (first.done, first.skipped) == (9, 0)
    assert (second.done, second.errors, second.skipped) == (len(inputs) - 10, 1, 9)
    assert_same_rows(resumed, whole)
    again = run_predict(recognizer, inputs, resumed, batch_size=2, progress=False)
    assert (again.done, again.errors, again.skipped) == (0, 0, len(inputs))
    assert_same_rows(resumed, whole)


def test_decoding_workers_give_the_same_rows(recognizer, audio, tmp_path, one_thread):
    inputs = list_inputs([audio["folder"] / "good", audio["bad"]["garbage"], *audio["many"][:7]])
    run_predict(recognizer, inputs, tmp_path / "serial.csv", batch_size=2, workers=0, progress=False)
    summary = run_predict(recognizer, inputs, tmp_path / "workers.csv", batch_size=2, workers=2, progress=False)
    assert (summary.done, summary.errors) == (len(inputs) - 1, 1)
    # The same chunks reach the model in the same order, so the rows are the same to the last bit.
    assert (tmp_path / "workers.csv").read_bytes() == (tmp_path / "serial.csv").read_bytes()


@pytest.mark.parametrize("suffix", FORMATS)
def test_shards_merged_equal_the_unsharded_rows(recognizer, audio, tmp_path, suffix, one_thread):
    inputs = list_inputs([audio["folder"] / "many", audio["bad"]["missing"], audio["folder"] / "good"])
    out = tmp_path / f"sharded{suffix}"
    run_predict(recognizer, inputs, tmp_path / f"single{suffix}", batch_size=3, progress=False)
    parts = [run_predict(recognizer, inputs, out, batch_size=3, progress=False, shard=(rank, 2)) for rank in (0, 1)]
    assert sum(p.done + p.errors for p in parts) == len(inputs)
    assert sorted(shard_parts(out)) == [shard_path(out, 0, 2), shard_path(out, 1, 2)] and not out.exists()
    rerun = run_predict(recognizer, inputs, out, batch_size=3, progress=False, shard=(1, 2))
    assert (rerun.done, rerun.errors, rerun.skipped) == (0, 0, len(inputs) // 2)

    assert merge_shards(out, inputs, recognizer.classes) == len(inputs)
    assert shard_parts(out) == []
    assert_same_rows(out, tmp_path / f"single{suffix}")
    assert merge_shards(out, inputs, recognizer.classes) == 0
    assert_same_rows(out, tmp_path / f"single{suffix}")


def test_embeddings_are_written_when_asked(recognizer, audio, tmp_path, one_thread):
    out = tmp_path / "emb.jsonl"
    run_predict(recognizer, [*audio["good"][:2], audio["bad"]["missing"]], out, return_embedding=True, progress=False)
    rows = read_rows(out)
    expected = recognizer.predict([str(p) for p in audio["good"][:2]], return_embedding=True)
    for row, prediction in zip(rows, expected):
        assert_close(np.array(row["embedding"]), prediction.embedding, atol=1e-6, msg=row["source"])
    assert rows[2]["embedding"] is None and rows[2]["error"]


def test_long_audio_gets_a_timeline(recognizer, audio, tmp_path, one_thread):
    long = write_speech(tmp_path / "long.wav", seconds=3.7, seed=7)
    out = tmp_path / "long.csv"
    run_predict(recognizer, [long], out, window_s=1.0, hop_s=0.5, progress=False)
    row = read_rows(out)[0]
    timeline = json.loads(row["timeline"])
    assert int(row["windows"]) == len(timeline) > 1
    assert timeline[0]["start_s"] == 0.0 and all(w["label"] in CLASSES for w in timeline)


@pytest.mark.parametrize("kwargs, error", [
    pytest.param({"workers": -1}, "workers", id="negative-workers"),
    pytest.param({"batch_size": 0}, "batch_size", id="zero-batch"),
    pytest.param({"shard": (2, 2)}, "rank", id="rank-out-of-range"),
    pytest.param({"shard": 1}, "shard", id="shard-not-a-pair"),
    pytest.param({"window_s": -1.0}, "window_s", id="negative-window"),
    pytest.param({"window_s": 1.0, "hop_s": 2.0}, "hop_s", id="hop-longer-than-window"),
])
def test_bad_job_arguments_are_refused(recognizer, tmp_path, kwargs, error):
    with pytest.raises(ValueError, match=error):
        run_predict(recognizer, ["/a.wav"], tmp_path / "p.jsonl", progress=False, **kwargs)
    assert not (tmp_path / "p.jsonl").exists()


def test_a_bad_output_suffix_is_refused_before_any_work(recognizer, tmp_path):
    with pytest.raises(OutputFileError, match="unsupported suffix"):
        run_predict(recognizer, ["/a.wav"], tmp_path / "p.parquet", progress=False)


def test_an_output_that_is_a_folder_is_refused(recognizer, tmp_path):
    (tmp_path / "preds.jsonl").mkdir()
    with pytest.raises(OutputFileError, match="is a folder"):
        run_predict(recognizer, ["/a.wav"], tmp_path / "preds.jsonl", progress=False)


def test_a_folder_without_audio_gets_an_error_row(recognizer, tmp_path, caplog, one_thread):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing to hear")
    items = list_inputs([tmp_path / "empty"])
    assert [(i.source, i.error) for i in items] == [
        (str(tmp_path / "empty"), f"{tmp_path / 'empty'}: a folder with no audio file in it (1 other files)")]
    assert "no audio files" in caplog.text
    summary = run_predict(recognizer, items, tmp_path / "preds.jsonl", progress=False)
    assert (summary.done, summary.errors) == (0, 1)


def special_file(tmp_path: Path, kind: str) -> Path:
    if kind == "fifo":
        os.mkfifo(tmp_path / "pipe.wav")
        return tmp_path / "pipe.wav"
    if kind == "symlink-loop":
        os.symlink(tmp_path / "b.wav", tmp_path / "a.wav")
        os.symlink(tmp_path / "a.wav", tmp_path / "b.wav")
        return tmp_path / "a.wav"
    if kind == "random-mp3":
        (tmp_path / "noise.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
        return tmp_path / "noise.mp3"
    return Path("/dev/zero")


SPECIAL_FILES = {"fifo": "not a regular file (a pipe, a device or a socket)",
                 "symlink-loop": "a symbolic link that leads nowhere",
                 "random-mp3": "libsndfile recognises no audio format in it",
                 "dev-zero": "not a regular file (a pipe, a device or a socket)"}


def test_a_folder_of_phone_and_browser_recordings_is_labelled_and_a_corrupt_one_reported(recognizer, tmp_path,
                                                                                           one_thread):
    folder = tmp_path / "calls"
    folder.mkdir()
    wave = speech_like(round(1.3 * 16000), 16000, 5) / 32768.0
    as_wav = write_speech(tmp_path / "reference.wav", seconds=1.3, seed=5)
    write_container(folder / "phone.m4a", wave, 16000, "ipod", "aac")
    write_container(folder / "browser.webm", wave, 16000, "webm", "libopus", codec_rate=48000)
    (folder / "broken.m4a").write_bytes((folder / "phone.m4a").read_bytes()[:300])
    (folder / "notes.txt").write_text("not audio")
    out = tmp_path / "preds.jsonl"
    summary = run_predict(recognizer, list_inputs([folder, as_wav]), out, progress=False, workers=0)
    rows = {Path(r["source"]).name: r for r in read_rows(out)}
    assert sorted(rows) == ["broken.m4a", "browser.webm", "phone.m4a", "reference.wav"]
    assert summary.errors == 1 and "broken.m4a: not a readable audio file" in rows["broken.m4a"]["error"]
    assert "ffmpeg" in rows["broken.m4a"]["error"]
    for name in ("phone.m4a", "browser.webm"):
        assert rows[name]["error"] is None and rows[name]["label"] in CLASSES
        assert abs(rows[name]["duration_s"] - 1.3) <= 2048 / 16000
    # A lossy copy of the same speech gets close to the same probabilities as the wav.
    for name in ("phone.m4a", "browser.webm"):
        assert_close(np.array([rows[name][f"prob_{c}"] for c in CLASSES]),
                     np.array([rows["reference.wav"][f"prob_{c}"] for c in CLASSES]), atol=0.15, msg=name)


@pytest.mark.parametrize("kind", list(SPECIAL_FILES))
def test_special_files_get_an_error_that_says_what_they_are(recognizer, tmp_path, kind, one_thread):
    path = special_file(tmp_path, kind)
    out = tmp_path / "preds.jsonl"
    summary = run_predict(recognizer, list_inputs([path]), out, progress=False, workers=0)
    (row,) = read_rows(out)
    assert summary.errors == 1 and SPECIAL_FILES[kind] in row["error"], row["error"]
    assert "does not exist" not in row["error"] and "no such" not in row["error"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_truncated_wav_is_labelled_with_a_warning(recognizer, tmp_path, suffix, one_thread):
    whole = write_speech(tmp_path / "whole.wav", seconds=1.0)
    half = tmp_path / "half.wav"
    data = whole.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    out = tmp_path / f"preds{suffix}"
    summary = run_predict(recognizer, [str(whole), str(half)], out, progress=False)
    rows = rows_by_source(out)
    assert (summary.done, summary.errors) == (2, 0)
    assert not rows[str(whole)]["warning"]
    assert rows[str(half)]["label"] in CLASSES
    assert "truncated: the header declares 32000 bytes of audio, the file holds 159" in rows[str(half)]["warning"]
    assert recognizer.predict([str(half)])[0].warning == rows[str(half)]["warning"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_file_name_that_is_not_utf8_gets_its_row_and_a_rerun_skips_it(recognizer, audio, tmp_path, suffix,
                                                                        one_thread):
    folder = tmp_path / "names"
    write_speech(folder / "a.wav", seconds=0.5)
    # soundfile cannot write to such a name (neither could we read from one before): write, then rename.
    os.rename(write_speech(folder / "b.wav", seconds=0.5, seed=1), os.fsencode(folder) + b"/b\xff.wav")
    missing = Path(os.fsdecode(bytes(folder) + b"/gone\xfe.wav"))
    out = tmp_path / f"preds{suffix}"
    first = run_predict(recognizer, list_inputs([folder, missing]), out, batch_size=2, progress=False)
    assert (first.done, first.errors) == (2, 1)
    rows = rows_by_source(out)
    assert list(rows) == [str(folder / "a.wav"), str(folder) + "/b\\xff.wav", str(folder) + "/gone\\xfe.wav"]
    assert rows[str(folder) + "/b\\xff.wav"]["label"] in CLASSES
    assert "gone\\xfe.wav" in rows[str(folder) + "/gone\\xfe.wav"]["error"]
    again = run_predict(recognizer, list_inputs([folder, missing]), out, batch_size=2, progress=False)
    assert (again.done, again.errors, again.skipped) == (0, 0, 3)
    assert len(read_rows(out)) == 3


def test_a_carriage_return_in_a_csv_field_is_quoted_and_the_file_resumes(tmp_path):
    out = tmp_path / "preds.csv"
    columns = output_columns(CLASSES)
    with RowWriter(out, columns) as writer:
        writer.write([make_row("/calls/a\rb.wav"), make_row("/calls/c\r\nd.wav", None, error="bad\rheader")])
    with RowWriter(out, columns) as writer:
        assert writer.done == {"/calls/a\rb.wav", "/calls/c\r\nd.wav"}
    assert [r["source"] for r in read_rows(out)] == ["/calls/a\rb.wav", "/calls/c\r\nd.wav"]


def test_a_csv_timeline_longer_than_the_csv_field_limit_resumes_and_reads_back(tmp_path):
    import csv

    out = tmp_path / "preds.csv"
    columns = output_columns(CLASSES)
    row = make_row("/long.wav")
    window = row["timeline"][0]
    row["timeline"] = [dict(window, start_s=3.0 * i, end_s=3.0 * i + 6.0) for i in range(1500)]
    row["windows"] = 1500
    limit = csv.field_size_limit()
    with RowWriter(out, columns) as writer:
        writer.write([row])
    assert len(json.dumps(row["timeline"])) > limit
    with RowWriter(out, columns) as writer:
        assert writer.done == {"/long.wav"}
        writer.write([make_row("/short.wav")])
    rows = read_rows(out)
    assert [r["source"] for r in rows] == ["/long.wav", "/short.wav"]
    assert len(json.loads(rows[0]["timeline"])) == 1500
    assert csv.field_size_limit() == limit, "the csv module's global limit must be restored"
