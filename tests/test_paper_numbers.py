"""The papers' published numbers are well-formed data: known experiments, systems, settings and metrics, finite values
with a source, no number twice, each value printed in its paper's text, and lookup by name."""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from pathlib import Path

import pytest

from ser_fast.evaluation.paper_numbers import (
    EXPERIMENTS,
    OWN_EXPERIMENTS,
    PAPER_NUMBERS,
    PaperNumber,
    paper_numbers,
    paper_value,
)

SYSTEMS = {
    "dsnet": {"baseline", "dsnet", "dsnet-no-lc", "dsnet-no-lo", "dsnet-no-lr"},
    "edrl-mea": {"baseline", "edrl", "mea", "edrl-mea"},
    "merit": {"se-preprocess", "mtl", "dense", "released", "sparse"},
}
ABSOLUTE_METRICS = {"uar", "wa", "macro_f1", "ssnr", "pesq", "stoi"}
GAIN_METRICS = {"macro_f1_gain", "ssnr_gain_pct"}
PERCENT_METRICS = {"uar", "wa", "macro_f1"}
NAMED_SETTINGS = {"within", "within-2", "cross", "cross-2", "clean"}
NOISE_SETTING = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*@-?\d+(\.\d+)?")
PAPERS = Path(__file__).resolve().parents[2] / "shared" / "papers"
PAPER_FILE_PREFIX = {"edrl-mea": "000_", "dsnet": "001_", "merit": "002_"}


def _label(number: PaperNumber) -> str:
    return f"{number.experiment}/{number.system}/{number.setting}/{number.metric}/{number.versus}"


def test_the_experiments_are_the_three_papers_and_ser_fast_s_own():
    assert set(EXPERIMENTS) == set(SYSTEMS) | set(OWN_EXPERIMENTS) and not set(SYSTEMS) & set(OWN_EXPERIMENTS)
    assert {number.experiment for number in PAPER_NUMBERS} == set(SYSTEMS)
    assert all(paper_numbers(experiment) == () for experiment in OWN_EXPERIMENTS)


@pytest.mark.parametrize("number", PAPER_NUMBERS, ids=_label)
def test_every_entry_is_well_formed(number):
    assert number.system in SYSTEMS[number.experiment], f"unknown system {number.system!r}"
    assert number.metric in ABSOLUTE_METRICS | GAIN_METRICS, f"unknown metric {number.metric!r}"
    assert number.setting in NAMED_SETTINGS or NOISE_SETTING.fullmatch(number.setting), number.setting
    assert isinstance(number.value, float) and math.isfinite(number.value)
    if number.metric in PERCENT_METRICS:
        assert 0.0 <= number.value <= 100.0
    assert isinstance(number.source, str) and number.source.strip()
    if number.metric in GAIN_METRICS:
        assert number.versus in SYSTEMS[number.experiment] and number.versus != number.system
    else:
        assert number.versus is None, "only a gain is measured against another system"


def test_no_number_is_recorded_twice():
    keys = Counter((n.experiment, n.system, n.setting, n.metric, n.versus) for n in PAPER_NUMBERS)
    assert not [key for key, count in keys.items() if count > 1]
    absolute = Counter((n.experiment, n.system, n.setting, n.metric) for n in PAPER_NUMBERS if n.versus is None)
    assert not [key for key, count in absolute.items() if count > 1]


def test_dsnet_has_tables_2_and_4_complete():
    for system in SYSTEMS["dsnet"]:
        for setting in ("within", "within-2", "cross", "cross-2"):
            assert paper_value("dsnet", system, setting, "uar") is not None, (system, setting)


@pytest.mark.skipif(not PAPERS.is_dir(), reason="the papers' text (../shared/papers) is not here")
@pytest.mark.parametrize("number", PAPER_NUMBERS, ids=_label)
def test_every_value_is_printed_in_its_paper(number):
    (path,) = PAPERS.glob(f"{PAPER_FILE_PREFIX[number.experiment]}*.txt")
    text = path.read_text()
    printed = {f"{number.value:.2f}", f"{number.value:.1f}", f"{number.value:g}"}
    assert any(re.search(rf"(?<![\d.]){re.escape(p)}(?![\d])", text) for p in printed), (number.value, path.name)


def test_lookup():
    assert paper_value("dsnet", "dsnet", "cross-2", "uar").value == 41.78
    assert paper_value("dsnet", "baseline", "within", "uar").value == 56.13
    assert paper_value("dsnet", "dsnet-no-lc", "cross", "uar").value == 36.08
    assert paper_value("merit", "released", "all@-5", "macro_f1_gain", versus="mtl").value == 3.4
    assert paper_value("merit", "released", "all@-5", "ssnr_gain_pct", versus="se-preprocess").value == 28.2
    assert paper_value("edrl-mea", "edrl-mea", "cross", "macro_f1_gain", versus="baseline").value == 8.5
    assert paper_value("dsnet", "dsnet", "within", "macro_f1") is None
    assert paper_value("merit", "sparse", "all@-5", "macro_f1_gain", versus="mtl") is None
    assert paper_value("merit", "released", "all@-5", "macro_f1_gain") is None  # a gain needs its reference


def test_paper_numbers_partitions_the_table():
    papers = [experiment for experiment in EXPERIMENTS if experiment not in OWN_EXPERIMENTS]
    chosen = [paper_numbers(experiment) for experiment in papers]
    assert sum(len(numbers) for numbers in chosen) == len(PAPER_NUMBERS)
    for experiment, numbers in zip(papers, chosen):
        assert numbers and all(n.experiment == experiment for n in numbers)


@pytest.mark.parametrize("experiment", ["isnet", "DSNet", "", "baseline"])
def test_an_unknown_experiment_raises(experiment):
    with pytest.raises(ValueError, match="no paper numbers"):
        paper_numbers(experiment)
    with pytest.raises(ValueError, match="no paper numbers"):
        paper_value(experiment, "dsnet", "within", "uar")


def test_entries_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER_NUMBERS[0].value = 0.0
