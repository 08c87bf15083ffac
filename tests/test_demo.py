"""The main job behind ``make demo``, on a tiny schedule: two corpora, Baseline, DSNet, EDRL-MEA and
Sparse MERIT, the report."""

from __future__ import annotations

import json

from ser_fast.demo import DemoSettings, run_demo


def test_demo_writes_the_report_with_tables_and_plots(tmp_path):
    settings = DemoSettings(speakers=4, per_class=2, folds=(0,), epochs=1, max_frames=32, noise_kinds=("white",),
                            snrs_db=(0.0,), edrl_components=4, merit_epochs=1, merit_seconds=0.8)
    report = run_demo(tmp_path, settings, progress=False)
    text = report.read_text()
    assert report == tmp_path / "report.md"
    assert "UAR" in text and "How this report was made" in text
    side_by_side = text.split("## Side by side")[1].split("## Scores")[0]
    assert "| condition" in side_by_side and "| baseline" in side_by_side
    assert "dsnet" in side_by_side and "edrl-mea" in side_by_side
    assert "white (mean of 0 dB)" in side_by_side and "synth-far-field (cross-corpus), clean" in side_by_side
    for plot in ("uar_vs_snr.png", "confusion_baseline.png", "embeddings_dsnet.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert len(runs) == 6  # each model within the corpus (with noise) and across corpora
    assert sum(r["cross_corpus"] for r in runs) == 3
    assert {r["model"] for r in runs} == {"baseline", "dsnet", "edrl-mea"}
    assert "Sparse MERIT" in text and "Expert usage" in text
    merit = json.loads((tmp_path / "merit_results.json").read_text())
    assert [c["condition"] for c in merit["conditions"]][:2] == ["clean", "seen -5 dB"]
    assert (tmp_path / "merit_expert_usage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
