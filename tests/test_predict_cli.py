"""``ser-fast predict`` as users run it: a killed run resumed to the rows of an uninterrupted one,
``torchrun`` with two ranks giving the rows of one process, and bad arguments answered with exit
status 2. One tiny baseline run is trained once per module."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from corpus_fixtures import train_tiny_baseline
from helpers import assert_close, speech_like

from ser_fast.cli import main
from ser_fast.inference.inputs import list_inputs
from ser_fast.inference.predict_job import DELAY_ENV, run_predict, shard_parts
from ser_fast.inference.recognizer import EmotionRecognizer
from ser_fast.inference.writers import read_rows

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_tiny_baseline(tmp_path_factory.mktemp("predict-cli-run"), seed=2)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """40 speech-like files of odd lengths and rates in two subfolders, one of them unreadable."""
    folder = tmp_path_factory.mktemp("predict-cli-audio")
    for i in range(40):
        rate = (16000, 8000, 44100)[i % 3]
        path = folder / f"part{i % 2}" / f"utt{i:02d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(str(path), speech_like(round((0.3 + 0.05 * (i % 7)) * rate), rate, seed=i) / 32768.0, rate)
    (folder / "part1" / "utt13.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return folder


@pytest.fixture(scope="module")
def reference(run_dir, audio_dir, tmp_path_factory) -> Path:
    """The rows of one uninterrupted, unsharded run in this process."""
    out = tmp_path_factory.mktemp("predict-cli-reference") / "reference.jsonl"
    recognizer = EmotionRecognizer.from_pretrained(run_dir, precision="fp32")
    run_predict(recognizer, list_inputs([audio_dir]), out, batch_size=2, progress=False)
    return out


def predict_command(run_dir: Path, audio_dir: Path, out: Path) -> list[str]:
    return ["predict", str(audio_dir), "--run", str(run_dir), "--out", str(out), "--batch-size", "2",
            "--precision", "fp32", "--quiet"]


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def complete_rows(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def assert_same_rows(actual: Path, expected: Path) -> None:
    got, want = read_rows(actual), read_rows(expected)
    assert [r["source"] for r in got] == [r["source"] for r in want]
    assert len({r["source"] for r in got}) == len(got), "a source has two rows"
    assert [(r["label"], r["error"]) for r in got] == [(r["label"], r["error"]) for r in want]
    labelled = [i for i, r in enumerate(want) if r["label"]]
    classes = [k for k in want[0] if k.startswith("prob_")]
    assert_close(np.array([[got[i][k] for k in classes] for i in labelled]),
                 np.array([[want[i][k] for k in classes] for i in labelled]), atol=1e-6, msg=str(actual))


@pytest.mark.parametrize("workers", [0, 2], ids=lambda w: f"workers{w}")
def test_a_killed_run_resumes_without_losing_or_repeating_an_input(run_dir, audio_dir, reference, tmp_path, capsys,
                                                                    workers):
    """With decoding workers the kill orphans them mid-prefetch; they must neither outlive the job nor
    keep the output locked, so the rerun straight after the kill proceeds."""
    out = tmp_path / "preds.jsonl"
    command = [sys.executable, "-m", "ser_fast", *predict_command(run_dir, audio_dir, out), "--workers", str(workers)]
    # The delay (the job's test hook) holds the run between chunks so that the kill lands mid-run.
    child = subprocess.Popen(command, env=child_env(**{DELAY_ENV: "0.4"}), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while complete_rows(out) == 0 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    # Workers that outlived the job would hold its stderr pipe open, and this would wait for them.
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    killed_at = complete_rows(out)
    assert 0 < killed_at < 40, f"the kill should land mid-run, found {killed_at} rows"

    # The same command again, in this process (a second interpreter start would double the test's time).
    assert main([*predict_command(run_dir, audio_dir, out), "--workers", str(workers)]) == 0
    assert f"{40 - killed_at - 1} done, 1 errors, {killed_at} skipped" in capsys.readouterr().out
    assert_same_rows(out, reference)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_torchrun_with_two_ranks_gives_the_rows_of_one_process(run_dir, audio_dir, reference, tmp_path):
    out = tmp_path / "sharded.jsonl"
    args = predict_command(run_dir, audio_dir, out)
    # torchrun's own parser reads a bare --run as an abbreviation of its --run-path.
    args[args.index("--run")] = "--run-dir"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "ser_fast", *args]
    result = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("40 inputs: 39 done, 1 errors, 0 skipped") == 1, result.stdout
    assert shard_parts(out) == []
    assert_same_rows(out, reference)


def test_bad_files_are_rows_and_the_command_still_succeeds(run_dir, audio_dir, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    missing = tmp_path / "missing.wav"
    args = predict_command(run_dir, audio_dir / "part1", out)
    code = main([*args[:2], str(missing), *args[2:]])
    assert code == 0
    assert "21 inputs: 19 done, 2 errors, 0 skipped" in capsys.readouterr().out
    errors = {row["source"]: row["error"] for row in read_rows(out) if row["error"]}
    assert set(errors) == {str(audio_dir / "part1" / "utt13.wav"), str(missing)}


def test_a_subset_of_classes_and_a_minimum_confidence_shape_the_rows(run_dir, audio_dir, reference, tmp_path, capsys):
    out = tmp_path / "decided.jsonl"
    assert main([*predict_command(run_dir, audio_dir / "part1", out), "--classes", "sad,angry",
                 "--min-confidence", "0.9"]) == 0
    full = {row["source"]: row for row in read_rows(reference)}
    rows = [row for row in read_rows(out) if not row["error"]]
    assert rows and all("prob_happy" not in row for row in rows)
    for row in rows:
        kept = np.array([full[row["source"]]["prob_sad"], full[row["source"]]["prob_angry"]])
        if row["windows"] == 1:
            assert_close(np.array([row["prob_sad"], row["prob_angry"]]), kept / kept.sum(), atol=1e-5, msg="renorm")
        top = max(row["prob_sad"], row["prob_angry"])
        assert row["label"] == ("uncertain" if top < 0.9 else max(("sad", "angry"), key=lambda c: row[f"prob_{c}"]))


@pytest.mark.parametrize("flag, value, message", [
    pytest.param("--min-confidence", "0", "expected a probability in (0, 1]", id="zero-confidence"),
    pytest.param("--min-confidence", "high", "expected a probability in (0, 1]", id="word-confidence"),
])
def test_bad_decision_flags_are_refused_by_the_parser(run_dir, audio_dir, tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*predict_command(run_dir, audio_dir, tmp_path / "p.jsonl"), flag, value])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_an_unknown_class_exits_with_status_2_before_any_row(run_dir, audio_dir, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    assert main([*predict_command(run_dir, audio_dir, out), "--classes", "sad,bored"]) == 2
    assert "classes ['bored'] are not the model's" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("change, message", [
    pytest.param({"--out": "preds.parquet"}, "unsupported suffix '.parquet'", id="unsupported-out-suffix"),
    pytest.param({"--out": "preds"}, "unsupported suffix '(none)'", id="out-without-suffix"),
    pytest.param({"--run": "no-such-run"}, "no such folder", id="missing-run-folder"),
])
def test_bad_arguments_exit_with_status_2_and_say_why(run_dir, audio_dir, tmp_path, capsys, change, message):
    args = predict_command(run_dir, audio_dir, tmp_path / "preds.jsonl")
    for flag, value in change.items():
        args[args.index(flag) + 1] = str(tmp_path / value)
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "preds.jsonl").exists()


@pytest.mark.parametrize("flag, value", [pytest.param("--workers", "-1", id="negative-workers"),
                                         pytest.param("--batch-size", "0", id="zero-batch-size")])
def test_bad_counts_are_refused_by_the_parser(run_dir, audio_dir, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        main([*predict_command(run_dir, audio_dir, tmp_path / "p.jsonl"), flag, value])
    assert exit_info.value.code == 2
    assert "expected an integer >=" in capsys.readouterr().err
