"""Batch inference end to end (wav files → labels): the plain fp32 eager model against ser_fast's
inference graph, on the same weights and files, in one run.

Providers, each over the same pile of wav files (decode + features + model, labels out):

- plain: ``EmotionRecognizer.from_pretrained(run, mode="plain", precision="fp32")``, the model as
  trained and evaluated: fp32, contiguous, eager, every window cut or padded to the training length
  (``max_frames``; the padding is masked, so it changes no label, only the work).
- fast (the default): BatchNorm folded, channels_last, bf16 autocast only where the CPU has AMX or
  AVX512-BF16, batches of similar length padded only to their longest window.
- fast, fp32: on a machine where fast runs bf16, the same graph in float32, which is what fast runs on a machine
  without AMX or AVX512-BF16: the deployment table states int8 onnxruntime against both.

Every provider forms its batches by the same rule: at most 32 windows and at most
``--max-batch-frames`` computed frames (the recognizer's default cap; plain mode counts each window
at ``max_frames``, since it pads to it).
- fast + compile: the same with ``torch.compile`` (its compilation timed apart, then steady state).
- ``run_predict`` (what ``ser-fast predict`` runs): the fast recognizer behind the batch job, JSONL
  out, with 0 and 1 decoding workers.
- onnxruntime float32 and int8: the run exported as a waveform graph (``ser-fast export``, and ``--int8`` calibrated on
  100 files of the corpus), batched by length as the recognizer batches (``_deploy.py``).
- Beside the timed rounds: the pipeline users reach for today, Hugging Face ``pipeline("audio-classification")`` over a
  wav2vec 2.0 base network with SpeechBrain's IEMOCAP head (random weights), timed on a subset beside the fast path;
  VAD segmentation (``segments="vad"``) of a one-hour recording, and the VAD's share of its time; each path's rate
  as a share of the machine's GEMM peak in the precision it runs.

Reported: utterances/s, real-time factor (audio seconds per wall second) and its inverse RTF, speed-up
against plain, labels identical to plain's (held-out test speaker and the whole corpus) and each
provider's UAR on the test speaker; the padding each mode computes and a model-only table (frames per
second of each graph at three batch sizes), which separate what bucketing saves from what the graph
gains per frame; and the peak RSS of a 10,000-file ``run_predict`` job in a subprocess, read every
1,000 files.

The model: DSNet on the built-in synthetic corpus (10 speakers × 12 utterances per class, studio),
one leave-one-speaker-out fold, a short schedule at the paper's input length (600 frames), trained
once into ``--work`` and reused; or any CNN model's training run (or one of its folds) with ``--run``.
The whole run takes about 10 minutes on a quiet 2-core machine (5 more the first time, to train);
``--quick`` about 3.

Usage: python bench/bench_inference.py [--run RUN_DIR] [--work DIR] [--files 960] [--rounds 3]
           [--rss-files 10000] [--workers 0 1] [--max-batch-frames N] [--no-compile] [--quick]
           [--markdown BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
from _deploy import (
    HF_FILES,
    OnnxLabeler,
    export_models,
    hf_labels,
    hf_pipeline,
    long_recording,
    model_flops,
    peak_rates,
    vad_share,
)
from _report import cpu_flags, machine, replace_section
from torch.utils.flop_counter import FlopCounterMode

from ser_fast.data import load_corpus, synthesize_corpus
from ser_fast.inference.inputs import list_inputs
from ser_fast.inference.predict_job import run_predict
from ser_fast.inference.recognizer import MAX_BATCH_FRAMES, EmotionRecognizer
from ser_fast.runs.metrics import ClassificationScores
from ser_fast.training import TrainConfig, train_run

CORPUS = {"speakers": 10, "per_class": 12, "condition": "studio", "seed": 0}
# The paper's input length; a short schedule is enough for a model that predicts every class.
TRAINING = {"model": "dsnet", "epochs": 4, "max_frames": 600, "seed": 0}
FOLD = 0
BATCH = 32
RSS_STEP = 1000
DEFAULT_WORK = Path("build/bench_inference")


@dataclass
class Provider:
    """One way of turning the pile into labels: ``run()`` returns one label per pile entry."""

    name: str
    run: Callable[[], list[str | None]]
    labels: list[str | None] | None = None


FAST_FP32 = "fast, fp32"


def prepare_run(work: Path) -> Path:
    """The benchmark's own run (corpus and DSNet fold), trained unless ``work`` already holds it."""
    root = work / "corpus"
    if not (root / "README.txt").is_file():
        shutil.rmtree(root, ignore_errors=True)  # a synthesis cut short: README.txt is written last
        synthesize_corpus(root, **CORPUS)
    settings = "{model}-{max_frames}f-{epochs}e-seed{seed}".format(**TRAINING)
    run_dir = work / "runs" / settings
    if not list(run_dir.glob("folds/*/config.json")):
        started = time.perf_counter()
        corpus = load_corpus("iemocap", root)
        train_run(corpus, run_dir, TrainConfig(**TRAINING), folds=[FOLD], resume=True)
        print(f"trained {settings} in {time.perf_counter() - started:.0f} s", flush=True)
    return run_dir


def test_and_pile(recognizer: EmotionRecognizer, layout: str) -> tuple[dict[str, str], list[str]]:
    """The held-out utterances of the recognizer's fold (path → true label) and every audio file of
    the run's corpus, test files first."""
    fold_dir = recognizer.folder
    if not (fold_dir / "fold.json").is_file():
        raise ValueError(f"{fold_dir} has no fold.json: --run takes a training run folder or one of its folds")
    run = json.loads((fold_dir.parent.parent / "run.json").read_text())
    corpus = load_corpus(layout, Path(run["root"]))
    truth = {str(u.path.resolve()): u.label for u in corpus.utterances}
    test = [str(Path(p).resolve()) for p in json.loads((fold_dir / "fold.json").read_text())["test"]]
    everything = [item.source for item in list_inputs([run["root"]]) if item.error is None]
    held_out = set(test)
    rest = [p for p in everything if p not in held_out]
    return {p: truth[p] for p in test}, test + rest


def link_pile(corpus_files: list[str], count: int, folder: Path) -> list[str]:
    """``count`` distinct paths (symlinks in ``folder``) cycling over ``corpus_files``: the job skips an
    input named twice, so a pile larger than the corpus needs distinct names."""
    folder = folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        target = corpus_files[i % len(corpus_files)]
        link = folder / f"{i:05d}-{Path(target).name}"
        if not link.is_symlink():
            link.symlink_to(target)
        paths.append(str(link))
    return paths


def predict_labels(recognizer: EmotionRecognizer, files: list[str]) -> list[str | None]:
    return [p.label for p in recognizer.predict(files, batch_size=BATCH)]


def job_labels(recognizer: EmotionRecognizer, files: list[str], out: Path, workers: int) -> list[str | None]:
    out.unlink(missing_ok=True)
    run_predict(recognizer, files, out, workers=workers, batch_size=BATCH, progress=False)
    rows = {row["source"]: row["label"] for row in map(json.loads, out.read_text().splitlines())}
    out.unlink()
    return [rows[f] for f in files]


def timed_rounds(providers: list[Provider], rounds: int) -> dict[str, float]:
    """Median seconds per pass of each provider, the providers taking turns in every round (a change of
    machine speed reaches all alike). Not ``interleaved_median``: a pass takes seconds, and its two
    untimed calls per provider would double the benchmark."""
    times: dict[str, list[float]] = {p.name: [] for p in providers}
    for r in range(rounds):
        for p in providers:
            start = time.perf_counter()
            p.labels = p.run()
            times[p.name].append(time.perf_counter() - start)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.1f} s" for n, t in times.items()), flush=True)
    return {name: statistics.median(t) for name, t in times.items()}


def agreement(labels: list, reference: list) -> float:
    return 100.0 * sum(a == b for a, b in zip(labels, reference)) / len(reference)


def uar(labels: list, truth: list[str], classes: tuple[str, ...]) -> float:
    index = {c: i for i, c in enumerate(classes)}
    return 100.0 * ClassificationScores.from_predictions([index[t] for t in truth], [index[x] for x in labels],
                                                         classes).uar


def model_only(recognizers: dict[str, EmotionRecognizer], frames: int, max_frames: int, cap: int | None,
               rounds: int) -> list[tuple[str, int, int, float, float]]:
    """The graphs alone (no decoding, no features) on random features, ``frames`` valid frames per
    item: the plain graph padded to ``max_frames`` (what plain mode feeds it), the fast graphs at
    ``frames``; each at the batch the recognizer forms under its frame cap, at half that, and at 32
    items, since the frames per batch change the rate per frame. Median of ``rounds`` taken in
    turns. Returns (name, B, T, seconds per batch, GFLOP/s)."""
    cases = []
    for name in recognizers:
        t = max_frames if name == "plain" else frames
        capped = min(BATCH, max(1, cap // t)) if cap else BATCH
        cases += [(name, b, t) for b in sorted({max(1, capped // 2), capped, BATCH})]
    generator = torch.Generator().manual_seed(0)
    inputs = {(b, t): (torch.randn(b, 3, t, 80, generator=generator), torch.full((b,), min(frames, t)))
              for _, b, t in cases}
    calls = {case: (lambda g=recognizers[case[0]].graph, x=inputs[case[1:]]: g(*x)) for case in cases}
    for call in calls.values():
        call()
    times: dict[tuple[str, int, int], list[float]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case, call in calls.items():
            start = time.perf_counter()
            call()
            times[case].append(time.perf_counter() - start)
    rows = []
    for name, b, t in cases:
        # Counted on the eager graphs: a compiled graph's kernels are out of the counter's sight.
        with FlopCounterMode(display=False) as counter:
            recognizers["plain" if name == "plain" else "fast"].graph(*inputs[(b, t)])
        seconds = statistics.median(times[(name, b, t)])
        rows.append((name, b, t, seconds, counter.get_total_flops() / seconds / 1e9))
    return rows


def gemm_rate(rounds: int, size: int = 2048) -> float:
    """This machine's float32 GEMM rate in GFLOP/s: what no float32 graph can pass."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


class FrameCounter:
    """Stands in for a recognizer's graph for one pass and counts what it is fed: windows, frames
    computed (batch × padded length) and frames of audio (the lengths)."""

    def __init__(self, graph) -> None:
        self.graph, self.windows, self.computed, self.audio = graph, 0, 0, 0

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor):
        self.windows += x.shape[0]
        self.computed += x.shape[0] * x.shape[2]
        self.audio += int(lengths.sum())
        return self.graph(x, lengths)


def padding(recognizer: EmotionRecognizer, files: list[str]) -> FrameCounter:
    """What one fast pass over ``files`` feeds the graph (the recognizer's private ``_graph`` swapped
    for a counter for that pass)."""
    counter = FrameCounter(recognizer.graph)
    recognizer._graph = counter
    try:
        predict_labels(recognizer, files)
    finally:
        recognizer._graph = counter.graph
    return counter


def rss_child(args: argparse.Namespace) -> None:
    """The memory run (a subprocess of the benchmark): run_predict over the first k files for k =
    1,000, 2,000, ..., each call resuming the last; one JSON line per step with the process' peak and
    current RSS."""
    files = args.rss_list.read_text().splitlines()
    recognizer = EmotionRecognizer.from_pretrained(args.run, max_batch_frames=args.max_batch_frames or None)
    started = time.perf_counter()
    errors = 0
    for end in range(min(RSS_STEP, len(files)), len(files) + 1, RSS_STEP):
        summary = run_predict(recognizer, files[:end], args.rss_out, workers=args.workers[0], batch_size=BATCH,
                              progress=False)
        errors += summary.errors
        peak, current = resident_mb()
        print(json.dumps({"files": end, "errors": errors, "peak_rss_mb": peak, "rss_mb": current,
                          "seconds": time.perf_counter() - started}), flush=True)


def resident_mb() -> tuple[float, float]:
    """This process' peak and current resident set size in MB: VmHWM and VmRSS of /proc/self/status
    where there is one. Not ``resource.getrusage``'s ``ru_maxrss`` first: Linux carries it across
    exec, so this subprocess would start at the size of the benchmark that forked it."""
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return int(status["VmHWM"].split()[0]) / 1024, int(status["VmRSS"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, float("nan")


def memory_run(run_dir: Path, files: list[str], work: Path, workers: int, max_batch_frames: int) -> list[dict]:
    listing, out = work / "rss-files.txt", work / "rss-preds.jsonl"
    listing.write_text("\n".join(files) + "\n")
    out.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--rss-child", "--run", str(run_dir), "--rss-list", str(listing),
               "--rss-out", str(out), "--workers", str(workers), "--max-batch-frames", str(max_batch_frames)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    out.unlink(missing_ok=True)
    if not rows or rows[-1]["errors"]:
        raise RuntimeError(f"the memory run failed or gave error rows: {rows[-1] if rows else result.stderr[-2000:]}")
    return rows


def isa_line() -> str:
    flags = cpu_flags()
    has = {"AMX": "amx_bf16" in flags, "AVX512-BF16": "avx512_bf16" in flags, "AVX512-VNNI": "avx512_vnni" in flags}
    return ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in has.items())


def end_to_end_table(providers: list[Provider], seconds: dict[str, float], files: list[str], test: dict[str, str],
                     audio_s: float, classes: tuple[str, ...]) -> str:
    reference = providers[0].labels
    test_rows = [i for i, f in enumerate(files) if str(Path(f).resolve()) in test][:len(test)]
    truth = [test[str(Path(files[i]).resolve())] for i in test_rows]
    lines = ["| path | utt/s | real-time factor (audio s / s) | RTF (s / audio s) | speed-up | labels = plain's, "
             f"test / all {len(files)} | test UAR |", "|---|---:|---:|---:|---:|---:|---:|"]
    for p in providers:
        s = seconds[p.name]
        test_labels = [p.labels[i] for i in test_rows]
        same_test = agreement(test_labels, [reference[i] for i in test_rows])
        lines.append(f"| {p.name} | {len(files) / s:.1f} | {audio_s / s:.0f} | {s / audio_s:.4f} | "
                     f"**{seconds['plain'] / s:.2f}×** | {same_test:.1f} % / {agreement(p.labels, reference):.1f} % | "
                     f"{uar(test_labels, truth, classes):.1f} % |")
    return "\n".join(lines)


def model_only_table(rows: list[tuple[str, int, int, float, float]], peak: float) -> str:
    lines = ["| graph | B × T (frames per batch) | ms / batch | frames computed / s | GFLOP/s | share of the fp32 "
             "GEMM rate |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {b} × {t} ({b * t:,}) | {1e3 * s:.0f} | {b * t / s:,.0f} | {rate:.0f} | "
              f"{100 * rate / peak:.0f} % |" for name, b, t, s, rate in rows]
    return "\n".join(lines)


def deploy_section(args: argparse.Namespace, providers: list[Provider], seconds: dict[str, float], files: list[str],
                   test: dict[str, str], fast: EmotionRecognizer) -> str:
    """The deployment table (the timed rounds' fast, onnxruntime float32 and int8 rows, with their agreement and
    their share of the GEMM peak), the Hugging Face pipeline on a subset and the VAD's share on a long recording."""
    by_name = {p.name: p for p in providers}
    peaks = peak_rates()
    flops = model_flops(fast, files)
    precision = {"fast": "bf16" if fast.graph.bf16 else "fp32",
                 **({FAST_FP32: "fp32"} if FAST_FP32 in by_name else {}),
                 "onnxruntime float32": "fp32", "onnxruntime int8": "int8" if "int8" in peaks else "fp32"}
    test_rows = [i for i, f in enumerate(files) if str(Path(f).resolve()) in test]
    truth = [test[str(Path(files[i]).resolve())] for i in test_rows]
    lines = ["| path | runs in | utt/s | × fast path | labels = fast's (all) | test UAR | model GOP/s | share of "
             "the GEMM peak in its precision |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in precision:
        rate = flops / seconds[name] / 1e9
        labels = by_name[name].labels
        same = agreement(labels, by_name["fast"].labels)
        lines.append(f"| {name} | {precision[name]} | {len(files) / seconds[name]:.1f} | "
                     f"**{seconds['fast'] / seconds[name]:.2f}×** | {same:.1f} % | "
                     f"{uar([labels[i] for i in test_rows], truth, fast.classes):.1f} % | {rate:.0f} | "
                     f"{100 * rate / peaks[precision[name]]:.0f} % |")
    int8, float32 = by_name["onnxruntime int8"].labels, by_name["onnxruntime float32"].labels
    int8_uar = uar([int8[i] for i in test_rows], truth, fast.classes)
    float_uar = uar([float32[i] for i in test_rows], truth, fast.classes)
    subset = files[:HF_FILES]
    classifier = hf_pipeline(args.work, fast.classes)
    hf_labels(classifier, subset[:2])
    start = time.perf_counter()
    hf_labels(classifier, subset)
    hf_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predict_labels(fast, subset)
    fast_seconds = time.perf_counter() - start
    long = long_recording(files, args.work / f"long-{args.long_minutes:g}min.wav", args.long_minutes)
    vad = vad_share(fast, long)
    peak_line = ", ".join(f"{name} {rate:.0f} G(FL)OP/s" for name, rate in peaks.items())
    fp32_note = ""
    if FAST_FP32 in by_name:
        int8_s = seconds["onnxruntime int8"]
        fp32_note = (f" int8 onnxruntime against the fast path in float32, what fast runs on a machine without AMX or "
                     f"AVX512-BF16 (timed here in the same rounds): **{seconds[FAST_FP32] / int8_s:.2f}×**; against "
                     f"this machine's bf16 fast path: **{seconds['fast'] / int8_s:.2f}×**.")
    return (f"\n### Deployment paths\n\nThe same {len(files)} files and rounds as above. int8 against float32 "
            f"(both onnxruntime): the same label on {agreement(int8, float32):.1f} % of the files, test UAR "
            f"{int8_uar:.1f} % against {float_uar:.1f} % ({int8_uar - float_uar:+.1f} points). Model work: "
            f"{flops / 1e9:.0f} GFLOP per pass (the fast path's batches, counted in float32), against this "
            f"machine's GEMM peaks ({peak_line}; int8: torch._int_mm).{fp32_note}\n\n" + "\n".join(lines) + "\n\n"
            f"Hugging Face `pipeline(\"audio-classification\")` over wav2vec 2.0 base (95 M parameters, random "
            f"weights: speed only), one file at a time as the pipeline takes them, on the first {len(subset)} files: "
            f"{len(subset) / hf_seconds:.1f} utt/s, against {len(subset) / fast_seconds:.1f} utt/s for the fast "
            f"path on the same files ({hf_seconds / fast_seconds:.0f}× slower).\n\n"
            f"VAD segmentation of a {vad['audio_s'] / 60:.0f}-minute recording (`segments=\"vad\"`, "
            f"{vad['segments']} segments): {vad['total_s']:.1f} s in all, of which the VAD "
            f"{vad['vad_s']:.1f} s ({100 * vad['vad_s'] / vad['total_s']:.0f} %): silero-vad's network in PyTorch "
            f"(`ser_fast.inference.vad_network`). silero-vad's own sequence ONNX model, as its wheel runs it (one "
            f"onnxruntime thread), takes {vad['silero_s']:.1f} s for the same segments "
            f"(**{vad['silero_s'] / vad['vad_s']:.2f}×** ser_fast's time), and {vad['silero_threads_s']:.1f} s with "
            f"{vad['threads']} onnxruntime threads (**{vad['silero_threads_s'] / vad['vad_s']:.2f}×**); their frame "
            f"probabilities differ by at "
            f"most {vad['max_difference']:.1e}.\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a trained run (or fold) to use instead of training one")
    parser.add_argument("--layout", default="iemocap", help="the layout of --run's corpus, for its labels")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="corpus, trained run and piles (reused)")
    parser.add_argument("--files", type=int, default=960, help="files per timed pass (the corpus, cycled)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss-files", type=int, default=10_000, help="files in the memory run")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="decoding workers of run_predict")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile provider")
    parser.add_argument("--no-deploy", action="store_true",
                        help="leave out onnxruntime, the Hugging Face pipeline and the VAD rows")
    parser.add_argument("--long-minutes", type=float, default=60.0, help="the VAD row's recording")
    parser.add_argument("--max-batch-frames", type=int, default=MAX_BATCH_FRAMES,
                        help="the recognizers' cap on frames per forward pass (0: none), for every provider")
    parser.add_argument("--quick", action="store_true", help="240 files, 2 rounds, 2,000 in the memory run")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-list", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rss-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.files, args.rounds, args.rss_files, args.long_minutes = 240, 2, 2000, 10.0
    return args


def main() -> None:
    args = parse_args()
    if args.rss_child:
        rss_child(args)
        return
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    run_dir = args.run or prepare_run(args.work)
    cap = args.max_batch_frames or None
    plain = EmotionRecognizer.from_pretrained(run_dir, mode="plain", precision="fp32", max_batch_frames=cap)
    fast = EmotionRecognizer.from_pretrained(run_dir, max_batch_frames=cap)
    test, corpus_files = test_and_pile(fast, args.layout)
    pile = link_pile(corpus_files, max(args.files, args.rss_files), args.work / "pile")
    files = pile[:args.files]
    durations = [sf.info(f).duration for f in files]
    providers = [Provider("plain", lambda: predict_labels(plain, files)),
                 Provider("fast", lambda: predict_labels(fast, files))]
    if fast.graph.bf16:
        fast_fp32 = EmotionRecognizer.from_pretrained(run_dir, precision="fp32", max_batch_frames=cap)
        providers.append(Provider(FAST_FP32, lambda: predict_labels(fast_fp32, files)))
    graphs = {"plain": plain, "fast": fast}
    if not args.no_compile:
        compile_start = time.perf_counter()
        graphs["fast + compile"] = compiled = EmotionRecognizer.from_pretrained(run_dir, compile=True,
                                                                                max_batch_frames=cap)
        predict_labels(compiled, files)
        compile_seconds = time.perf_counter() - compile_start
        providers.append(Provider("fast + compile", lambda: predict_labels(compiled, files)))
    for workers in args.workers:
        providers.append(Provider(f"run_predict, {workers} workers",
                                  lambda w=workers: job_labels(fast, files, args.work / "round-preds.jsonl", w)))
    if not args.no_deploy:
        # Calibrated on the training speakers' files only: the test UAR is then not measured on calibration audio.
        float_path, int8_path = export_models(run_dir, args.work,
                                              [f for f in corpus_files if str(Path(f).resolve()) not in test])
        for name, path in (("onnxruntime float32", float_path), ("onnxruntime int8", int8_path)):
            labeler = OnnxLabeler(path, fast.classes, torch.get_num_threads())
            labeler(files[:BATCH])
            providers.append(Provider(name, lambda labeler=labeler: labeler(files)))
    predict_labels(plain, files[:BATCH])  # warm: thread pools, oneDNN primitives
    predict_labels(fast, files[:BATCH])
    seconds = timed_rounds(providers, args.rounds)
    end_to_end = end_to_end_table(providers, seconds, files, test, sum(durations), fast.classes)
    print(end_to_end, flush=True)
    deploy = "" if args.no_deploy else deploy_section(args, providers, seconds, files, test, fast)
    print(deploy, flush=True)
    fed = padding(fast, files)
    window_frames = round(fed.audio / fed.windows)
    max_frames = fast.config.max_frames
    rows = model_only(graphs, window_frames, max_frames, cap, max(args.rounds, 3))
    peak = gemm_rate(3)
    print(model_only_table(rows, peak), flush=True)
    memory = memory_run(run_dir, pile[:args.rss_files], args.work, args.workers[0], args.max_batch_frames)
    memory_line = ", ".join(f"{m['files']:,}: {m['peak_rss_mb']:.0f} MB" for m in memory)
    memory_line += f" (current RSS at the end {memory[-1]['rss_mb']:.0f} MB, {memory[-1]['seconds']:.0f} s in all)"
    print(f"peak RSS by files done: {memory_line}", flush=True)

    config = fast.config
    plain_pad, fast_pad = fed.windows * max_frames / fed.audio, fed.computed / fed.audio
    plain_rates = {b: b * t / s for name, b, t, s, _ in rows if name == "plain"}
    plain_capped = plain_rates[min(BATCH, max(1, cap // max_frames)) if cap else BATCH]
    best = max(plain_rates, key=plain_rates.get)
    compile_note = ""
    if not args.no_compile:
        compile_note = (f" `compile=True`: {compile_seconds:.0f} s to load, compile and make a first pass over the "
                        f"{len(files)} files, against {seconds['fast + compile']:.1f} s for a steady pass.")
    body = (f"Machine: {machine()}; {isa_line()}. Command: `python bench/bench_inference.py"
            f"{' --quick' if args.quick else ''}`, {time.strftime('%Y-%m-%d')}, "
            f"{(time.perf_counter() - started) / 60:.1f} min. Model: {config.model} trained {config.epochs} epochs at "
            f"{max_frames} frames on one leave-one-speaker-out fold of the synthetic corpus ({fast.folder}); test "
            f"set: its held-out speaker, {len(test)} utterances. Pile: {len(files)} wav files "
            f"({sum(durations) / 60:.1f} min of audio, {min(durations):.1f}–{max(durations):.1f} s each, the corpus "
            f"cycled); batches of at most {BATCH} windows and {f'{cap:,}' if cap else 'any number of'} computed "
            f"frames; median of {args.rounds} passes taken in turns. fast: BatchNorm folded, channels_last, "
            f"{'bf16 autocast' if fast.graph.bf16 else 'fp32 (no AMX / AVX512-BF16 here, so no bf16)'}."
            f"{compile_note}\n\n{end_to_end}\n\n"
            f"Where the speed-up comes from. Padding: plain computes {plain_pad:.2f} frames per frame of audio (each "
            f"of the {fed.windows} windows padded to {max_frames}), fast {fast_pad:.2f} (length buckets), a factor "
            f"{plain_pad / fast_pad:.2f}. Per frame, the graphs alone on [B, 3, T, 80] (T = {window_frames}, the "
            f"mean window, for fast; {max_frames}, what it pads to, for plain), at the batch the frame cap gives, "
            f"half of it and {BATCH} windows; this machine's float32 GEMM rate is {peak:.0f} GFLOP/s:\n\n"
            f"{model_only_table(rows, peak)}\n\n"
            f"The plain graph's best batch here is {best} × {max_frames}: "
            f"{100 * (plain_rates[best] / plain_capped - 1):+.0f} % frames/s against the batches the cap gives it.\n\n"
            f"Memory: peak RSS of a {memory[-1]['files']:,}-file `run_predict` job (fast, {args.workers[0]} "
            f"decoding workers, JSONL out), read after every {RSS_STEP:,} files: {memory_line}.\n"
            f"{deploy}")
    print(body)
    if args.markdown:
        replace_section(args.markdown, "inference", body)


if __name__ == "__main__":
    main()
