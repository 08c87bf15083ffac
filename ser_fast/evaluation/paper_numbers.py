"""The three papers' published numbers, as data: one home for what ``ser-fast reproduce`` prints beside our own.

These numbers were measured on real corpora (IEMOCAP, MSP-IMPROV, MSP-Podcast; the EDRL-MEA summary names none) with
the papers' own front ends, folds and noise recordings. They are context for our numbers, not targets for the
synthetic corpus: a synthetic UAR above or below a paper's says nothing by itself about the implementation.
Only numbers printed in the papers' text (``../shared/papers/``) are here; none is derived, rounded or recomputed.

Settings (our names, and which of each paper's conditions they stand for):

- ``"within"``: within-corpus, trained and tested on the first corpus. DSNet: IEMOCAP ("IEM", 10-fold LOSO).
- ``"within-2"``: within-corpus on the second corpus. DSNet: MSP-IMPROV ("MSP", 12-fold LOSO).
- ``"cross"``: models trained on the ``"within"`` corpus, tested on the other. DSNet: "IEM2MSP" (IEMOCAP fold models
  on all of MSP-IMPROV, averaged). EDRL-MEA: its summary's "cross-corpus testing" (corpora and direction unnamed).
- ``"cross-2"``: the other direction. DSNet: "MSP2IEM".
- ``"<noise>@<snr>"``: test speech mixed with noise at that SNR in dB. Sparse MERIT's abstract gives only
  ``"all@-5"``: its noise conditions at -5 dB taken together (its F1-macro gains are "an average" over them; it does
  not say how its SSNR gains are pooled).
- ``"clean"``: clean test speech in a noise experiment (no paper prints such a number at present).

Metrics: ``"uar"``, ``"wa"``, ``"macro_f1"`` in percent as printed; ``"ssnr"`` in dB, ``"pesq"`` and ``"stoi"`` on
their own scales. Where a paper prints only a gain, the number is a gain of ``system`` over ``versus``:
``"macro_f1_gain"`` in percent as printed (EDRL-MEA's summary calls its gain "absolute", i.e. F1 points; Sparse
MERIT's abstract does not say whether its "12.0%" and "3.4%" are points or relative, so compare both ways), and
``"ssnr_gain_pct"``, a relative SSNR gain in percent. ``versus`` is None for every absolute number.

Systems (our fixed names; a system of ours with no paper row has no entry):

- DSNet: ``baseline`` and ``dsnet`` are Table 2's "Baseline*" (encoder + classifier) and "DSNet" rows;
  ``dsnet-no-lc`` / ``-no-lo`` / ``-no-lr`` are Table 4's "DSNet w/o L_c / L_o / L_r". Table 4's own "DSNet" row
  repeats Table 2's numbers, so it is recorded once. Left out: Table 2's comparative methods (MEnAN, DSC, ISNet, DIFL;
  no system of ours), Table 3's parameter and MAC counts (not scores), Section 5.1's cross-corpus margins over the
  baseline (differences of Table 2's numbers) and Section 5.3's per-class recall gains.
- EDRL-MEA: only the public summary's "up to 8.5% absolute F1 score improvement in cross-corpus testing", a gain of
  ``edrl-mea`` over ``baseline`` (the summary's unnamed "baseline methods"). It prints no absolute number, no noise
  number ("consistent gains across five noise types") and no ``edrl`` / ``mea`` ablation.
- Sparse MERIT: the abstract's proposed "Sparse MERIT" is our ``released`` design (the authors' release: top-1
  routing, every expert run on every frame); its gains are over the "baseline relying on a SE pre-processing
  strategy" (our ``se-preprocess``) and the "naive MTL baseline" (our ``mtl``). ``sparse`` (ser_fast's true top-k
  dispatch) and ``dense`` have no row in the abstract.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EXPERIMENTS", "PAPER_NUMBERS", "PaperNumber", "paper_numbers", "paper_value"]


@dataclass(frozen=True)
class PaperNumber:
    """One published number. ``experiment``: "dsnet", "edrl-mea" or "merit"; ``system`` and ``setting``: our names
    (module docstring); ``metric``: as in the module docstring; ``value``: as printed; ``source``: where it is printed,
    in the paper's own names; ``versus``: for a gain, the system it is measured against (None otherwise)."""

    experiment: str
    system: str
    setting: str
    metric: str
    value: float
    source: str
    versus: str | None = None


PAPER_NUMBERS: tuple[PaperNumber, ...] = (
    # DSNet, Table 2: Baseline* and DSNet, UAR (%), mean over five seeds (± as printed in the source string).
    PaperNumber("dsnet", "baseline", "within", "uar", 56.13,
                "DSNet Table 2, 'Baseline*', within-corpus UAR, IEMOCAP (IEM, 10-fold LOSO); 56.13 ± 1.32 over 5 "
                "seeds"),
    PaperNumber("dsnet", "baseline", "within-2", "uar", 45.96,
                "DSNet Table 2, 'Baseline*', within-corpus UAR, MSP-IMPROV (MSP, 12-fold LOSO); 45.96 ± 2.38 over 5 "
                "seeds"),
    PaperNumber("dsnet", "baseline", "cross", "uar", 38.27,
                "DSNet Table 2, 'Baseline*', cross-corpus UAR, IEM2MSP (IEMOCAP models on MSP-IMPROV); 38.27 ± 0.88 "
                "over 5 seeds"),
    PaperNumber("dsnet", "baseline", "cross-2", "uar", 38.24,
                "DSNet Table 2, 'Baseline*', cross-corpus UAR, MSP2IEM (MSP-IMPROV models on IEMOCAP); 38.24 ± 0.97 "
                "over 5 seeds"),
    PaperNumber("dsnet", "dsnet", "within", "uar", 58.82,
                "DSNet Table 2 (and Table 4), 'DSNet', within-corpus UAR, IEMOCAP (IEM, 10-fold LOSO); 58.82 ± 0.70 "
                "over 5 seeds"),
    PaperNumber("dsnet", "dsnet", "within-2", "uar", 51.48,
                "DSNet Table 2 (and Table 4), 'DSNet', within-corpus UAR, MSP-IMPROV (MSP, 12-fold LOSO); 51.48 ± "
                "0.87 over 5 seeds"),
    PaperNumber("dsnet", "dsnet", "cross", "uar", 39.73,
                "DSNet Table 2 (and Table 4), 'DSNet', cross-corpus UAR, IEM2MSP (IEMOCAP models on MSP-IMPROV); "
                "39.73 ± 0.99 over 5 seeds"),
    PaperNumber("dsnet", "dsnet", "cross-2", "uar", 41.78,
                "DSNet Table 2 (and Table 4), 'DSNet', cross-corpus UAR, MSP2IEM (MSP-IMPROV models on IEMOCAP); "
                "41.78 ± 0.51 over 5 seeds"),
    # DSNet, Table 4: the ablations, UAR (%), no spread printed.
    PaperNumber("dsnet", "dsnet-no-lc", "within", "uar", 57.60,
                "DSNet Table 4, 'DSNet w/o L_c', within-corpus UAR, IEMOCAP (IEM)"),
    PaperNumber("dsnet", "dsnet-no-lc", "within-2", "uar", 49.73,
                "DSNet Table 4, 'DSNet w/o L_c', within-corpus UAR, MSP-IMPROV (MSP)"),
    PaperNumber("dsnet", "dsnet-no-lc", "cross", "uar", 36.08,
                "DSNet Table 4, 'DSNet w/o L_c', cross-corpus UAR, IEM2MSP"),
    PaperNumber("dsnet", "dsnet-no-lc", "cross-2", "uar", 40.53,
                "DSNet Table 4, 'DSNet w/o L_c', cross-corpus UAR, MSP2IEM"),
    PaperNumber("dsnet", "dsnet-no-lo", "within", "uar", 56.85,
                "DSNet Table 4, 'DSNet w/o L_o', within-corpus UAR, IEMOCAP (IEM)"),
    PaperNumber("dsnet", "dsnet-no-lo", "within-2", "uar", 47.98,
                "DSNet Table 4, 'DSNet w/o L_o', within-corpus UAR, MSP-IMPROV (MSP)"),
    PaperNumber("dsnet", "dsnet-no-lo", "cross", "uar", 38.92,
                "DSNet Table 4, 'DSNet w/o L_o', cross-corpus UAR, IEM2MSP"),
    PaperNumber("dsnet", "dsnet-no-lo", "cross-2", "uar", 41.19,
                "DSNet Table 4, 'DSNet w/o L_o', cross-corpus UAR, MSP2IEM"),
    PaperNumber("dsnet", "dsnet-no-lr", "within", "uar", 58.54,
                "DSNet Table 4, 'DSNet w/o L_r', within-corpus UAR, IEMOCAP (IEM)"),
    PaperNumber("dsnet", "dsnet-no-lr", "within-2", "uar", 50.17,
                "DSNet Table 4, 'DSNet w/o L_r', within-corpus UAR, MSP-IMPROV (MSP)"),
    PaperNumber("dsnet", "dsnet-no-lr", "cross", "uar", 38.87,
                "DSNet Table 4, 'DSNet w/o L_r', cross-corpus UAR, IEM2MSP"),
    PaperNumber("dsnet", "dsnet-no-lr", "cross-2", "uar", 41.51,
                "DSNet Table 4, 'DSNet w/o L_r', cross-corpus UAR, MSP2IEM"),
    # EDRL-MEA: the public summary's one number.
    PaperNumber("edrl-mea", "edrl-mea", "cross", "macro_f1_gain", 8.5,
                "EDRL-MEA summary (arXiv 2510.09072), Quick Facts / Key Results: 'up to 8.5% absolute F1 score "
                "improvement in cross-corpus testing' over 'baseline methods'; a maximum over unnamed corpus pairs, "
                "F1 averaging not stated", versus="baseline"),
    # Sparse MERIT: the abstract's four gains at -5 dB SNR (MSP-Podcast).
    PaperNumber("merit", "released", "all@-5", "macro_f1_gain", 12.0,
                "Sparse MERIT abstract, MSP-Podcast at -5 dB SNR: 'Sparse MERIT' improves SER F1-macro 'by an average "
                "of 12.0%' over 'a baseline relying on a SE pre-processing strategy' (points or relative: not said)",
                versus="se-preprocess"),
    PaperNumber("merit", "released", "all@-5", "macro_f1_gain", 3.4,
                "Sparse MERIT abstract, MSP-Podcast at -5 dB SNR: 'Sparse MERIT' improves SER F1-macro 'by 3.4%' over "
                "'a naive MTL baseline' (average over noise conditions; points or relative: not said)",
                versus="mtl"),
    PaperNumber("merit", "released", "all@-5", "ssnr_gain_pct", 28.2,
                "Sparse MERIT abstract, MSP-Podcast, following its -5 dB sentence: 'Sparse MERIT' improves SSNR 'by "
                "28.2% over the SE pre-processing baseline'", versus="se-preprocess"),
    PaperNumber("merit", "released", "all@-5", "ssnr_gain_pct", 20.0,
                "Sparse MERIT abstract, MSP-Podcast, following its -5 dB sentence: 'Sparse MERIT' improves SSNR 'by "
                "20.0% over the naive MTL baseline'", versus="mtl"),
)

# ser_fast's own experiments, which no paper reports: training with augmentation against without (issue 20).
OWN_EXPERIMENTS = ("augmentation",)
EXPERIMENTS: tuple[str, ...] = (*dict.fromkeys(number.experiment for number in PAPER_NUMBERS), *OWN_EXPERIMENTS)


def paper_numbers(experiment: str) -> tuple[PaperNumber, ...]:
    """Every published number of ``experiment``, in the order above; ValueError for an unknown experiment."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"no paper numbers for experiment {experiment!r}; known: {', '.join(EXPERIMENTS)}")
    return tuple(number for number in PAPER_NUMBERS if number.experiment == experiment)


def paper_value(experiment: str, system: str, setting: str, metric: str,
                versus: str | None = None) -> PaperNumber | None:
    """The published number for that system, setting and metric (a gain: over ``versus``), or None if the paper
    prints none; ValueError for an unknown experiment."""
    for number in paper_numbers(experiment):
        if (number.system, number.setting, number.metric, number.versus) == (system, setting, metric, versus):
            return number
    return None
