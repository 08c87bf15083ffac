"""Fused ops (attention_pool, orthogonality_loss, moe) and the export-only lstm_by_lengths: every path against the
reference, in one run.

On CUDA each op's module times reference, torch.compile(reference), the torch path and the Triton
kernels with triton.testing.do_bench; on CPU it times the torch path against the reference (and, for
moe, against the dense design that runs every expert on every frame). Each op's benchmark lives in
bench/ops_<op>.py; this script runs them and writes the "ops" section of BENCHMARKS.md.

Usage: python bench/bench_ops.py [--ops attention_pool,orthogonality_loss,moe] [--rounds 15]
                                 [--device cpu|cuda] [--markdown BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

import torch
from _report import machine, replace_section

OPS = ("attention_pool", "orthogonality_loss", "moe", "lstm_by_lengths")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated subset of " + ", ".join(OPS))
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per provider (CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--markdown", type=Path, help="replace the ops section (per device) of this file")
    args = parser.parse_args()
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    unknown = sorted(set(ops) - set(OPS))
    if unknown:
        parser.error(f"unknown ops {unknown}; expected a subset of {list(OPS)}")
    device = torch.device(args.device)
    sections = []
    for op in ops:
        module = importlib.import_module(f"ops_{op}")
        sections.append(f"\n### {op}\n\n{module.run(device, args.rounds)}")
    body = (f"Machine: {machine()}. Command: `python bench/bench_ops.py --device {device.type}`, "
            f"{time.strftime('%Y-%m-%d')}.\n" + "\n".join(sections) + "\n")
    print(body)
    if args.markdown:
        replace_section(args.markdown, f"ops-{device.type}", body)


if __name__ == "__main__":
    main()
