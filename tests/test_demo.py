"""`make demo` runs ser_fast.demo: keep it working (a short version, checking what it reports)."""

import logging

from ser_fast import demo


def test_demo_runs_and_reports_agreement_and_throughput(caplog):
    with caplog.at_level(logging.INFO, logger="ser_fast.demo"):
        demo.main(["--seconds", "0.5"])
    text = caplog.text
    assert "white noise" in text and "vowel" in text
    assert "LogMelFrontend: 4 waveforms" in text and "(4, 3, 600, 80)" in text
    assert "M frames/s" in text
