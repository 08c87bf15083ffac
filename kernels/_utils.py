"""What every ser_fast Triton launcher shares."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# Triton decides at import time whether @triton.jit compiles or interprets (TRITON_INTERPRET=1).
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"

TORCH_TO_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def upcast_dot_operands(dtype: torch.dtype) -> bool:
    """Whether kernels must cast 16-bit tiles to float32 before ``tl.dot``.

    Triton's interpreter multiplies bfloat16 tiles as their uint16 bit patterns (its create_dot
    takes the raw storage), so under the interpreter 16-bit operands are widened first. The result
    is the same as on a GPU, where bf16 x bf16 products are exact in the float32 accumulator.
    """
    return INTERPRETED and dtype in (torch.float16, torch.bfloat16)


def dot_precision(dtype: torch.dtype) -> str | None:
    """float32 tiles multiply in full IEEE precision, like torch's default (TF32 off); 16-bit tiles
    take Triton's default (the setting only concerns float32 operands)."""
    return "ieee" if dtype == torch.float32 else None


def check_triton_device(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t is not None and not t.is_cuda and not INTERPRETED:
            raise RuntimeError(
                f"Triton kernels need CUDA tensors (got {t.device}); set TRITON_INTERPRET=1 before "
                "importing ser_fast to run them on CPU through Triton's interpreter"
            )


_EMULATE_BF16_ROUNDING = tl.constexpr(INTERPRETED)


@triton.jit
def rounded_to(b_x, DTYPE: tl.constexpr):
    """A float32 tile converted to DTYPE with round-to-nearest-even, as GPUs convert.

    Triton's interpreter truncates float32 → bfloat16 (its _convert_float takes no rounding mode
    for a plain cast), which would bias every bf16 output by up to one ulp toward zero; there the
    rounding is done on the bits first, so the conversion that follows is exact.
    """
    if DTYPE == tl.bfloat16 and _EMULATE_BF16_ROUNDING:
        b_bits = b_x.to(tl.uint32, bitcast=True)
        b_bits = (b_bits + 0x7FFF + ((b_bits >> 16) & 1)) & 0xFFFF0000
        b_x = b_bits.to(tl.float32, bitcast=True)
    return b_x.to(DTYPE)
