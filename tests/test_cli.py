"""The ser-fast command line: corpus-info prints the summary tables; synth writes a corpus that
loads; errors are one line on stderr with exit status 2."""

from __future__ import annotations

import subprocess
import sys

from corpus_fixtures import make_iemocap_tree

from ser_fast.cli import main


def test_corpus_info_prints_tables(tmp_path, capsys):
    root = make_iemocap_tree(tmp_path)
    assert main(["corpus-info", "iemocap", str(root)]) == 0
    out = capsys.readouterr().out
    assert "class" in out and "neutral" in out and "speaker" in out and "skipped because" in out


def test_corpus_info_explains_a_wrong_root(tmp_path, capsys):
    assert main(["corpus-info", "iemocap", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ser-fast corpus-info: error:") and "nowhere" in err


def test_synth_then_corpus_info(tmp_path, capsys):
    out_dir = tmp_path / "synth"
    assert main(["synth", str(out_dir), "--speakers", "2", "--per-class", "1", "--quiet"]) == 0
    assert main(["corpus-info", "iemocap", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "8 utterances, 2 speakers" in out


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "ser_fast", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "corpus-info" in result.stdout and "synth" in result.stdout


def test_train_through_the_cli(tmp_path, capsys):
    corpus = tmp_path / "synth"
    assert main(["synth", str(corpus), "--speakers", "4", "--per-class", "2", "--quiet"]) == 0
    run = tmp_path / "run"
    args = ["train", "--model", "dsnet", "--corpus", "iemocap", "--root", str(corpus), "--fold", "0",
            "--epochs", "1", "--batch-size", "4", "--max-frames", "32", "--out", str(run), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "best validation UAR" in out and (run / "run.json").is_file()
    assert main(["evaluate", str(run), "--corpus", "iemocap", "--root", str(corpus), "--noise", "white",
                 "--snr", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "UAR" in out and (run / "eval-iemocap" / "report.md").is_file()
    assert (run / "eval-iemocap" / "uar_vs_snr.png").is_file()
    wrong_fold = ["train", "--corpus", "iemocap", "--root", str(corpus), "--fold", "9", "--out", str(run), "--quiet"]
    assert main(wrong_fold) == 2
    assert "out of range" in capsys.readouterr().err


def test_train_that_diverges_exits_2_naming_the_epoch_and_saves_no_model(tmp_path, capsys):
    corpus = tmp_path / "synth"
    assert main(["synth", str(corpus), "--speakers", "4", "--per-class", "2", "--quiet"]) == 0
    run = tmp_path / "run"
    args = ["train", "--model", "dsnet", "--corpus", "iemocap", "--root", str(corpus), "--fold", "0",
            "--epochs", "2", "--batch-size", "4", "--max-frames", "32", "--learning-rate", "1e30", "--out", str(run),
            "--quiet"]
    assert main(args) == 2
    assert "training diverged" in capsys.readouterr().err
    assert not list(run.glob("folds/*/model.safetensors"))
