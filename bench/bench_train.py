"""Training throughput of DSNet and Baseline at the paper's shapes (batch 32, 3 × 600 × 80):
plain float32 eager (contiguous tensors) against ser_fast's default CPU settings (channels_last,
and bf16 autocast where the CPU has AMX or AVX512-BF16), forward + backward + Adam step, in one run;
then a short training run under each, to show the settings do not change what is learned.

The report also states the ceiling: the floating-point work of one step (counted with
``torch.utils.flop_counter``) against the best float32 GEMM rate this machine reaches, so a speed-up
that no float32 setting can give is shown as such rather than chased.

Usage: python bench/bench_train.py [--rounds 5] [--markdown BENCHMARKS.md] [--skip-run]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from _report import interleaved_median, machine, replace_section
from torch.utils.flop_counter import FlopCounterMode

from ser_fast.data import load_corpus, synthesize_corpus
from ser_fast.models import Baseline, DSNet
from ser_fast.runs.precision import cpu_has_fast_bf16
from ser_fast.training import TrainConfig, extract_features, train_run

BATCH, FRAMES, MELS = 32, 600, 80


def training_step(model_name: str, channels_last: bool, bf16: bool):
    torch.manual_seed(0)
    model = DSNet() if model_name == "dsnet" else Baseline()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(BATCH, 3, FRAMES, MELS).contiguous(memory_format=layout)
    x_neutral = torch.randn(BATCH, 3, FRAMES, MELS).contiguous(memory_format=layout)
    labels = torch.randint(0, 4, (BATCH,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if model_name == "dsnet":
                loss = model.training_losses(x, labels, x_neutral).total
            else:
                loss = torch.nn.functional.cross_entropy(model(x).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def step_flops(step) -> int:
    """Floating-point operations of one training step (forward, backward and optimizer)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def gemm_peak(rounds: int, size: int = 2048) -> float:
    """The best float32 matrix-multiply rate (FLOP/s) this machine reaches: the ceiling of any
    float32 training setting, since convolutions are computed as GEMMs."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    seconds = interleaved_median({"gemm": lambda: a @ b}, rounds)["gemm"]
    return 2 * size**3 / seconds


def throughput(rounds: int) -> list[tuple[str, float, float, int]]:
    bf16 = cpu_has_fast_bf16()
    rows = []
    for model_name in ("baseline", "dsnet"):
        providers = {"fp32 eager": training_step(model_name, False, False),
                     "ser_fast default": training_step(model_name, True, bf16)}
        flops = step_flops(providers["fp32 eager"])
        seconds = interleaved_median(providers, rounds)
        rows.append((model_name, BATCH / seconds["fp32 eager"], BATCH / seconds["ser_fast default"], flops))
    return rows


SHORT_RUN_FOLDS = (0, 3, 6)


def short_runs(work: Path) -> dict[str, float]:
    """Mean best validation UAR over three leave-one-speaker-out folds (96 validation utterances
    each), 6 epochs at 150 frames, under each setting."""
    corpus = load_corpus("iemocap", synthesize_corpus(work / "corpus", speakers=10, per_class=24, seed=0))
    table = extract_features(corpus.utterances, corpus.classes)
    scores = {}
    for label, settings in (("fp32 eager", {"precision": "fp32", "channels_last": False}),
                            ("ser_fast default", {"precision": "auto", "channels_last": True})):
        config = TrainConfig(model="dsnet", epochs=6, max_frames=150, **settings)
        result = train_run(corpus, work / label.replace(" ", "-"), config, folds=list(SHORT_RUN_FOLDS), table=table)
        scores[label] = sum(state["best_uar"] for state in result.values()) / len(result)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--skip-run", action="store_true", help="only the throughput")
    args = parser.parse_args()
    bf16 = cpu_has_fast_bf16()
    rows = throughput(args.rounds)
    peak = gemm_peak(args.rounds)
    lines = [("| model | GFLOP / utterance | fp32 eager utt/s | ser_fast default utt/s | speed-up "
             "| fp32 ceiling utt/s (ceiling / eager) |"), "|---|---:|---:|---:|---:|---:|"]
    for m, a, b, flops in rows:
        per_utt = flops / BATCH
        ceiling = peak / per_utt
        lines.append(f"| {m} (training) | {per_utt / 1e9:.1f} | {a:.2f} | {b:.2f} | **{b / a:.2f}×** "
                     f"| {ceiling:.1f} ({ceiling / a:.2f}×) |")
    body = (f"Machine: {machine()}. Command: `python bench/bench_train.py`, {time.strftime('%Y-%m-%d')}. "
            f"Batch {BATCH} × 3 × {FRAMES} × {MELS}, forward + backward + Adam step, median of {args.rounds} "
            f"rounds taken in turns. ser_fast default here: channels_last"
            f"{' + bf16 autocast' if bf16 else ' (no AMX / AVX512-BF16 on this CPU, so no bf16)'}.\n\n"
            + "\n".join(lines) + "\n"
            + f"\nfp32 ceiling: the step's FLOPs (counted with torch.utils.flop_counter) at this machine's best "
            f"float32 GEMM rate, {peak / 1e9:.0f} GFLOP/s (2048² matmul, same run); no float32 setting can pass it.\n")
    if not args.skip_run:
        work = Path(tempfile.mkdtemp(prefix="bench_train_"))
        try:
            scores = short_runs(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        body += ("\nShort run (DSNet, synthetic corpus of 10 speakers × 96 utterances, folds "
                 f"{', '.join(map(str, SHORT_RUN_FOLDS))}, 6 epochs at 150 frames), mean best validation UAR: "
                 + ", ".join(f"{k} {100 * v:.1f} %" for k, v in scores.items()) + ".\n")
        print(json.dumps(scores))
    print(body)
    if args.markdown:
        replace_section(args.markdown, "train", body)


if __name__ == "__main__":
    main()
