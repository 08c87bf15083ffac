"""moe: the sparse torch path and the Triton kernels against the reference and the dense design.

CPU: two utterances of 300 frames at Sparse MERIT's width (D=1024, H=4096, D_out=1024), several
expert/router settings; the dense design (the release's: every expert on every frame) is what the
sparse dispatch has to beat. CUDA: a batch of 32 × 300 frames at the same width.
"""

from __future__ import annotations

import torch
from _report import cuda_times, interleaved_median

from ser_fast.ops.moe import moe
from ser_fast.ops.moe.naive import moe_dense, moe_ref

DIM, HIDDEN = 1024, 4096
CPU_CASES = [  # (frames, experts, k, routers, dtype)
    (600, 8, 2, 1, torch.float32),
    (600, 8, 1, 1, torch.float32),
    (600, 3, 1, 2, torch.float32),
    (600, 8, 2, 2, torch.float32),
    (600, 8, 2, 1, torch.bfloat16),
]
CUDA_CASES = [(9600, e, k, r, torch.bfloat16) for e in (3, 8) for k in (1, 2) for r in (1, 2)]


def make_inputs(frames, experts, routers, dtype, device):
    g = torch.Generator().manual_seed(0)
    logits_shape = (routers, frames, experts) if routers > 1 else (frames, experts)
    tensors = [
        torch.randn(frames, DIM, generator=g),
        torch.randn(logits_shape, generator=g),
        torch.randn(experts, DIM, HIDDEN, generator=g) / DIM**0.5,
        torch.zeros(experts, HIDDEN),
        torch.randn(experts, HIDDEN, DIM, generator=g) / HIDDEN**0.5,
        torch.zeros(experts, DIM),
    ]
    return [t.to(device=device, dtype=torch.float32 if i == 1 else dtype).requires_grad_() for i, t in enumerate(tensors)]


def providers(inputs, k, compile_reference: bool, with_triton: bool):
    def forward(fn):
        return lambda: fn(*inputs, k=k)

    def forward_backward(fn):
        def step():
            y, aux = fn(*inputs, k=k)
            torch.autograd.grad((y.float().square().mean() + aux.load_balancing_loss.sum()), inputs)
        return step

    fns = {"reference": moe_ref, "dense": moe_dense, "torch": lambda *a, **o: moe(*a, backend="torch", **o)}
    if compile_reference:
        fns["compiled reference"] = torch.compile(moe_ref, dynamic=False)
    if with_triton:
        fns["triton"] = lambda *a, **o: moe(*a, backend="triton", **o)
    return ({name: forward(fn) for name, fn in fns.items()},
            {name: forward_backward(fn) for name, fn in fns.items()})


def run(device: torch.device, rounds: int) -> str:
    on_cuda = device.type == "cuda"
    cases = CUDA_CASES if on_cuda else CPU_CASES
    # A dense step at this width takes about a second on a 2-core CPU: a third of the rounds suffice.
    rounds = max(3, rounds // 3)
    lines = ["| frames | E | k | routers | dtype | pass | " + " | ".join(_columns(on_cuda)) + " |",
             "|---:|---:|---:|---:|---|---|" + "---:|" * len(_columns(on_cuda))]
    for frames, experts, k, routers, dtype in cases:
        inputs = make_inputs(frames, experts, routers, dtype, device)
        fwd, fwd_bwd = providers(inputs, k, compile_reference=on_cuda, with_triton=on_cuda)
        for name, provider_set in (("forward", fwd), ("forward+backward", fwd_bwd)):
            times = cuda_times(provider_set) if on_cuda else interleaved_median(provider_set, rounds)
            lines.append(f"| {frames} | {experts} | {k} | {routers} | {str(dtype).removeprefix('torch.')} | {name} | "
                         + " | ".join(_cells(times, on_cuda)) + " |")
    head = ("Median ms per call; D=1024, H=4096, D_out=1024; router logits float32; fast path = "
            + ("Triton" if on_cuda else "torch path (sorted dispatch, one matmul per expert)") + ".\n\n")
    return head + "\n".join(lines) + "\n"


def _columns(on_cuda):
    names = ["reference ms", "dense ms", "torch ms"]
    if on_cuda:
        names += ["compiled ms", "triton ms", "× compiled"]
    return [*names, "× dense", "× reference"]


def _cells(times, on_cuda):
    fast = times["triton" if on_cuda else "torch"]
    cells = [f"{times['reference'] * 1e3:.1f}", f"{times['dense'] * 1e3:.1f}", f"{times['torch'] * 1e3:.1f}"]
    if on_cuda:
        cells += [f"{times['compiled reference'] * 1e3:.1f}", f"{fast * 1e3:.1f}",
                  f"{times['compiled reference'] / fast:.2f}"]
    return [*cells, f"**{times['dense'] / fast:.2f}**", f"{times['reference'] / fast:.2f}"]
