"""attention_pool at the models' shapes: the reference against the torch path (CPU), plus
torch.compile(reference) and the Triton kernels (CUDA). Each path is called directly, after the
public function's input checks, so the table times the computation itself."""

from __future__ import annotations

from collections.abc import Callable

import torch
from _report import cuda_times, interleaved_median

from ser_fast.ops.attention_pool import attention_pool_ref, attention_pool_torch

# (label, B, T, D, per-channel scores, return_std, random lengths)
SHAPES = (
    ("DSNet B=32 T=37 D=256, [B,T] scores", 32, 37, 256, False, False, False),
    ("DSNet B=32 T=75 D=256, [B,T] scores", 32, 75, 256, False, False, False),
    ("MERIT B=32 T=300 D=1024, [B,T,D] scores, std, lengths", 32, 300, 1024, True, True, True),
)


def _inputs(B, T, D, per_channel, with_lengths, device, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, D, generator=gen).to(device=device, dtype=dtype).requires_grad_()
    scores = torch.randn(*((B, T, D) if per_channel else (B, T)), generator=gen)
    scores = scores.to(device=device, dtype=dtype).requires_grad_()
    lengths = torch.randint(T // 2, T + 1, (B,), generator=gen).to(device) if with_lengths else None
    return x, scores, lengths


def _passes(fn: Callable, x, scores, lengths, return_std: bool) -> tuple[Callable, Callable]:
    outputs = fn(x, scores, lengths, return_std=return_std)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    grads = [torch.randn_like(o) for o in outputs]

    def forward():
        return fn(x, scores, lengths, return_std=return_std)

    def forward_backward():
        out = forward()
        return torch.autograd.grad(out if isinstance(out, tuple) else (out,), (x, scores), grads)

    return forward, forward_backward


def _providers(device: torch.device) -> dict[str, Callable]:
    providers = {"reference": attention_pool_ref, "torch": attention_pool_torch}
    if device.type == "cuda":
        from ser_fast.kernels.attention_pool import attention_pool_triton

        providers = {"reference": attention_pool_ref, "compiled": torch.compile(attention_pool_ref, dynamic=False),
                     "torch": attention_pool_torch, "triton": attention_pool_triton}
    return providers


def run(device: torch.device, rounds: int) -> str:
    on_cuda = device.type == "cuda"
    dtypes = (torch.float32, torch.bfloat16) if on_cuda else (torch.float32,)
    providers = _providers(device)
    if on_cuda:
        header = ("| shape | dtype | pass | reference ms | compiled ms | torch-path ms | triton ms "
                  "| triton vs reference | triton vs compiled |")
        lines = [header, "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    else:
        lines = ["| shape | dtype | pass | reference ms | torch-path ms | speedup |", "|---|---|---|---:|---:|---:|"]
    for label, B, T, D, per_channel, return_std, with_lengths in SHAPES:
        for dtype in dtypes:
            x, scores, lengths = _inputs(B, T, D, per_channel, with_lengths, device, dtype)
            calls = {name: _passes(fn, x, scores, lengths, return_std) for name, fn in providers.items()}
            for index, pass_name in enumerate(("forward", "forward+backward")):
                timed = {name: pair[index] for name, pair in calls.items()}
                ms = {k: v * 1e3 for k, v in (cuda_times(timed) if on_cuda else interleaved_median(timed, rounds)).items()}
                dtype_name = str(dtype).removeprefix("torch.")
                if on_cuda:
                    lines.append(
                        f"| {label} | {dtype_name} | {pass_name} | {ms['reference']:.3f} | {ms['compiled']:.3f} "
                        f"| {ms['torch']:.3f} | {ms['triton']:.3f} | {ms['reference'] / ms['triton']:.2f}x "
                        f"| {ms['compiled'] / ms['triton']:.2f}x |"
                    )
                else:
                    lines.append(
                        f"| {label} | {dtype_name} | {pass_name} | {ms['reference']:.3f} | {ms['torch']:.3f} "
                        f"| {ms['reference'] / ms['torch']:.2f}x |"
                    )
    return "\n".join(lines) + "\n"
