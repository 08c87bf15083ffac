"""orthogonality_loss at the models' shapes: the reference against the torch path (CPU), and against
torch.compile(reference), the torch path and the Triton kernels (CUDA); forward and forward+backward.

The forward is timed as in training: on inputs that require grad, so each provider also records
what its backward needs."""

from __future__ import annotations

from collections.abc import Callable

import torch
from _report import cuda_times, interleaved_median

from ser_fast.ops.orthogonality_loss import orthogonality_loss, orthogonality_loss_ref

# (label, G or None for one [N, D] pair, N, D1, D2)
SHAPES = [
    ("DSNet: N=32, D1=D2=256", None, 32, 256, 256),
    ("10 folds: G=10, N=32, D=256", 10, 32, 256, 256),
    ("larger: G=4, N=256, D=256", 4, 256, 256, 256),
]


def run(device: torch.device, rounds: int) -> str:
    if device.type == "cuda":
        return _run_cuda(device)
    return _run_cpu(device, rounds)


def _inputs(g, n, d1, d2, device, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    lead = () if g is None else (g,)
    z1 = torch.randn(*lead, n, d1, generator=gen).to(device, dtype).requires_grad_()
    z2 = torch.randn(*lead, n, d2, generator=gen).to(device, dtype).requires_grad_()
    return z1, z2


def _passes(loss_fn: Callable, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, Callable[[], object]]:
    def forward():
        return loss_fn(z1, z2)

    def forward_backward():
        return torch.autograd.grad(loss_fn(z1, z2).sum(), (z1, z2))

    return {"forward": forward, "forward+backward": forward_backward}


def _run_cpu(device: torch.device, rounds: int) -> str:
    providers = {
        "reference": lambda a, b: orthogonality_loss_ref(a, b),
        "torch": lambda a, b: orthogonality_loss(a, b, backend="torch"),
    }
    rows = ["| shape | pass | reference ms | torch-path ms | speedup |", "|---|---|---:|---:|---:|"]
    for label, g, n, d1, d2 in SHAPES:
        z1, z2 = _inputs(g, n, d1, d2, device)
        for pass_name in ("forward", "forward+backward"):
            fns = {name: _passes(fn, z1, z2)[pass_name] for name, fn in providers.items()}
            times = interleaved_median(fns, rounds)
            ref, fast = times["reference"], times["torch"]
            rows.append(f"| {label} | {pass_name} | {ref * 1e3:.3f} | {fast * 1e3:.3f} | {ref / fast:.2f}x |")
    return "float32, one pair per row's G; speedup = reference / torch path.\n\n" + "\n".join(rows) + "\n"


def _run_cuda(device: torch.device) -> str:
    compiled_ref = torch.compile(orthogonality_loss_ref)
    providers = {
        "reference": lambda a, b: orthogonality_loss_ref(a, b),
        "compiled": lambda a, b: compiled_ref(a, b),
        "torch": lambda a, b: orthogonality_loss(a, b, backend="torch"),
        "triton": lambda a, b: orthogonality_loss(a, b, backend="triton"),
    }
    rows = [
        ("| shape | pass | reference ms | compiled ms | torch-path ms | triton ms | triton vs reference "
         "| triton vs compiled |"),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, g, n, d1, d2 in SHAPES:
        z1, z2 = _inputs(g, n, d1, d2, device)
        for pass_name in ("forward", "forward+backward"):
            fns = {name: _passes(fn, z1, z2)[pass_name] for name, fn in providers.items()}
            t = cuda_times(fns)
            rows.append(
                f"| {label} | {pass_name} | {t['reference'] * 1e3:.3f} | {t['compiled'] * 1e3:.3f} | "
                f"{t['torch'] * 1e3:.3f} | {t['triton'] * 1e3:.3f} | {t['reference'] / t['triton']:.2f}x | "
                f"{t['compiled'] / t['triton']:.2f}x |"
            )
    return "float32; speedups are of the Triton kernels.\n\n" + "\n".join(rows) + "\n"
