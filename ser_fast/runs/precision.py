"""Which precision a model runs at: bf16 autocast where the hardware is fast at it, fp32 elsewhere. Training, evaluation
and inference all decide it here, at run time, never by assumption."""

from __future__ import annotations

import contextlib
import functools

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16, where oneDNN's bf16 kernels beat float32 (checked, never assumed)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


@functools.cache
def cpu_has_int8_dot() -> bool:
    """VNNI (AVX512-VNNI or AVX-VNNI) or AMX, whose int8 dot products do not saturate u8 × s8 sums; without them
    onnxruntime's int8 kernels need weights of 7 bits (``reduce_range``)."""
    cpu = getattr(torch, "cpu", None)
    return any(bool(getattr(cpu, name, lambda: False)()) for name in ("_is_vnni_supported", "_is_amx_tile_supported"))


def use_bf16(precision: str, device: torch.device | str | None = None) -> bool:
    """Whether ``precision`` ("auto", "fp32" or "bf16") means bf16 autocast. "auto" is bf16 where the CPU has AMX or
    AVX512-BF16; with an inference ``device``, on a CUDA device that supports bf16 instead. Training, validation and
    evaluation pass no device, so that a run resumed on other hardware keeps its precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    if precision != "auto":
        return precision == "bf16"
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def autocast_for(enabled: bool, device_type: str = "cpu"):
    return torch.autocast(device_type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()
