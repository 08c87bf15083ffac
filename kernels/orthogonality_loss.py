"""Triton kernels of the batched orthogonality loss ``||Z1ᵀ Z2||_F²`` (DSNet eq. 4).

The forward makes one pass over the inputs: each program owns a ``[D1 block, D2 block]`` tile of the
correlation matrix C of one pair, accumulates its columns' sums, sums of squares and raw cross
products over N, then normalises the tile. The backward reads C and the column statistics and never
materialises the z-scored inputs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from ser_fast.kernels._utils import check_triton_device, rounded_to

from ser_fast.ops.orthogonality_loss.op import fused_orthogonality_loss


@triton.jit
def _orthogonality_loss_fwd_kernel(
    z1, z2, c, mu1, rstd1, mu2, rstd2, partial,
    N, D1, D2, eps,
    stride_z1g, stride_z1n, stride_z1d,
    stride_z2g, stride_z2n, stride_z2d,
    BN: tl.constexpr, BD1: tl.constexpr, BD2: tl.constexpr,
):
    i_g, i_d1, i_d2 = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)
    o_d1 = i_d1 * BD1 + tl.arange(0, BD1)
    o_d2 = i_d2 * BD2 + tl.arange(0, BD2)
    m_d1 = o_d1 < D1
    m_d2 = o_d2 < D2
    p_z1 = z1 + i_g * stride_z1g + o_d1 * stride_z1d
    p_z2 = z2 + i_g * stride_z2g + o_d2 * stride_z2d
    # Variance and covariance are shift-invariant: summing z − z[0] instead of z keeps Σz² − N·mean²
    # from cancelling catastrophically when a column's mean is large compared with its spread.
    b_shift1 = tl.load(p_z1, mask=m_d1, other=0.0).to(tl.float32)
    b_shift2 = tl.load(p_z2, mask=m_d2, other=0.0).to(tl.float32)

    b_sum1 = tl.zeros([BD1], dtype=tl.float32)
    b_sumsq1 = tl.zeros([BD1], dtype=tl.float32)
    b_sum2 = tl.zeros([BD2], dtype=tl.float32)
    b_sumsq2 = tl.zeros([BD2], dtype=tl.float32)
    b_cross = tl.zeros([BD1, BD2], dtype=tl.float32)
    for i_n in range(tl.cdiv(N, BN)):
        o_n = i_n * BN + tl.arange(0, BN)
        m_n = o_n < N
        m_x1 = m_n[:, None] & m_d1[None, :]
        m_x2 = m_n[:, None] & m_d2[None, :]
        b_x1 = tl.load(p_z1[None, :] + o_n[:, None] * stride_z1n, mask=m_x1, other=0.0).to(tl.float32)
        b_x2 = tl.load(p_z2[None, :] + o_n[:, None] * stride_z2n, mask=m_x2, other=0.0).to(tl.float32)
        b_x1 = tl.where(m_x1, b_x1 - b_shift1[None, :], 0.0)
        b_x2 = tl.where(m_x2, b_x2 - b_shift2[None, :], 0.0)
        b_sum1 += tl.sum(b_x1, axis=0)
        b_sumsq1 += tl.sum(b_x1 * b_x1, axis=0)
        b_sum2 += tl.sum(b_x2, axis=0)
        b_sumsq2 += tl.sum(b_x2 * b_x2, axis=0)
        # The shifted tiles are float32 whatever the input dtype, so the product is taken in full
        # float32 precision (16-bit inputs would lose the shift's benefit if rounded back).
        b_cross += tl.dot(tl.trans(b_x1), b_x2, input_precision="ieee")

    b_mean1 = b_sum1 / N
    b_mean2 = b_sum2 / N
    b_rstd1 = 1.0 / tl.sqrt_rn(tl.maximum(b_sumsq1 / N - b_mean1 * b_mean1, 0.0) + eps)
    b_rstd2 = 1.0 / tl.sqrt_rn(tl.maximum(b_sumsq2 / N - b_mean2 * b_mean2, 0.0) + eps)
    # C = Σ_n Z1 Z2 = (Σ x1 x2 − N·mean1·mean2) / (s1 s2), all in shifted coordinates.
    b_c = (b_cross - N * b_mean1[:, None] * b_mean2[None, :]) * b_rstd1[:, None] * b_rstd2[None, :]
    m_c = m_d1[:, None] & m_d2[None, :]
    b_c = tl.where(m_c, b_c, 0.0)
    tl.store(c + i_g * D1 * D2 + o_d1[:, None] * D2 + o_d2[None, :], b_c, mask=m_c)
    tl.store(partial + (i_g * tl.num_programs(1) + i_d1) * tl.num_programs(2) + i_d2, tl.sum(b_c * b_c))
    # Every program along D2 computes the same D1 statistics; one of them writes them.
    if i_d2 == 0:
        tl.store(mu1 + i_g * D1 + o_d1, b_shift1 + b_mean1, mask=m_d1)
        tl.store(rstd1 + i_g * D1 + o_d1, b_rstd1, mask=m_d1)
    if i_d1 == 0:
        tl.store(mu2 + i_g * D2 + o_d2, b_shift2 + b_mean2, mask=m_d2)
        tl.store(rstd2 + i_g * D2 + o_d2, b_rstd2, mask=m_d2)


@triton.jit
def _orthogonality_loss_bwd_kernel(
    za, zb, c, mu_a, rstd_a, mu_b, rstd_b, energy_a, coef, dza,
    N, DA, DB,
    stride_zag, stride_zan, stride_zad,
    stride_zbg, stride_zbn, stride_zbd,
    stride_cg, stride_ca, stride_cb,
    BN: tl.constexpr, BDA: tl.constexpr, BDB: tl.constexpr,
):
    # Written for dz1 (a = 1, b = 2, C read as [D1, D2]); the dz2 launch swaps the roles and reads C
    # transposed through its strides.
    i_g, i_n, i_da = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)
    o_n = i_n * BN + tl.arange(0, BN)
    o_da = i_da * BDA + tl.arange(0, BDA)
    m_n = o_n < N
    m_da = o_da < DA

    b_proj = tl.zeros([BN, BDA], dtype=tl.float32)
    for i_db in range(tl.cdiv(DB, BDB)):
        o_db = i_db * BDB + tl.arange(0, BDB)
        m_db = o_db < DB
        m_zb = m_n[:, None] & m_db[None, :]
        b_mu_b = tl.load(mu_b + i_g * DB + o_db, mask=m_db, other=0.0)
        b_rstd_b = tl.load(rstd_b + i_g * DB + o_db, mask=m_db, other=0.0)
        p_zb = zb + i_g * stride_zbg + o_n[:, None] * stride_zbn + o_db[None, :] * stride_zbd
        b_zb = tl.load(p_zb, mask=m_zb, other=0.0).to(tl.float32)
        b_zb = tl.where(m_zb, (b_zb - b_mu_b[None, :]) * b_rstd_b[None, :], 0.0)
        p_ct = c + i_g * stride_cg + o_db[:, None] * stride_cb + o_da[None, :] * stride_ca
        b_ct = tl.load(p_ct, mask=m_db[:, None] & m_da[None, :], other=0.0)
        b_proj += tl.dot(b_zb, b_ct, input_precision="ieee")

    m_za = m_n[:, None] & m_da[None, :]
    b_mu_a = tl.load(mu_a + i_g * DA + o_da, mask=m_da, other=0.0)
    b_rstd_a = tl.load(rstd_a + i_g * DA + o_da, mask=m_da, other=0.0)
    p_za = za + i_g * stride_zag + o_n[:, None] * stride_zan + o_da[None, :] * stride_zad
    b_za = (tl.load(p_za, mask=m_za, other=0.0).to(tl.float32) - b_mu_a[None, :]) * b_rstd_a[None, :]
    b_energy = tl.load(energy_a + i_g * DA + o_da, mask=m_da, other=0.0)
    b_coef = tl.load(coef + i_g)
    # dz = (2 gL / s) (Zb Cᵀ − Za · Σ_b C² / N); the centring term vanishes because Zb's columns
    # have zero mean.
    b_dz = b_coef * b_rstd_a[None, :] * (b_proj - b_za * b_energy[None, :])
    p_dz = dza + (i_g * N + o_n[:, None]) * DA + o_da[None, :]
    tl.store(p_dz, rounded_to(b_dz, dza.dtype.element_ty), mask=m_za)


def orthogonality_loss_fwd(z1: torch.Tensor, z2: torch.Tensor, eps: float):
    """``z1 [G, N, D1]``, ``z2 [G, N, D2]`` (any strides) -> ``loss [G]`` (Σ C², float32), and for the
    backward ``c [G, D1, D2]``, ``mu1, rstd1 [G, D1]``, ``mu2, rstd2 [G, D2]`` (float32)."""
    check_triton_device(z1, z2)
    g, n, d1 = z1.shape
    d2 = z2.shape[2]
    block_n, block_d1, block_d2 = _block(n), _block(d1), _block(d2)
    grid = (g, triton.cdiv(d1, block_d1), triton.cdiv(d2, block_d2))
    f32 = {"dtype": torch.float32, "device": z1.device}
    c = torch.empty(g, d1, d2, **f32)
    mu1, rstd1 = torch.empty(g, d1, **f32), torch.empty(g, d1, **f32)
    mu2, rstd2 = torch.empty(g, d2, **f32), torch.empty(g, d2, **f32)
    partial = torch.empty(grid, **f32)
    _orthogonality_loss_fwd_kernel[grid](
        z1, z2, c, mu1, rstd1, mu2, rstd2, partial,
        n, d1, d2, float(eps),
        *z1.stride(), *z2.stride(),
        BN=block_n, BD1=block_d1, BD2=block_d2,
    )
    # Per-tile partial sums added here, in a fixed order, keep the loss deterministic.
    return partial.sum(dim=(1, 2)), c, mu1, rstd1, mu2, rstd2


def orthogonality_loss_bwd(
    grad_loss: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, c: torch.Tensor,
    mu1: torch.Tensor, rstd1: torch.Tensor, mu2: torch.Tensor, rstd2: torch.Tensor,
    *, need_dz1: bool = True, need_dz2: bool = True,
):
    """``grad_loss [G]`` (d loss / d Σ C², float32) and the forward's saved tensors -> ``dz1 [G, N, D1]``,
    ``dz2 [G, N, D2]`` in the input dtype (``None`` where not needed)."""
    check_triton_device(z1, z2)
    g, n, d1 = z1.shape
    d2 = z2.shape[2]
    coef = (2.0 * grad_loss).contiguous()
    squared = c.square()
    dz1 = dz2 = None
    if need_dz1:
        dz1 = torch.empty(g, n, d1, dtype=z1.dtype, device=z1.device)
        energy1 = squared.sum(dim=2) / n
        _launch_bwd(z1, z2, c, mu1, rstd1, mu2, rstd2, energy1, coef, dz1, c.stride(0), c.stride(1), c.stride(2))
    if need_dz2:
        dz2 = torch.empty(g, n, d2, dtype=z2.dtype, device=z2.device)
        energy2 = squared.sum(dim=1) / n
        _launch_bwd(z2, z1, c, mu2, rstd2, mu1, rstd1, energy2, coef, dz2, c.stride(0), c.stride(2), c.stride(1))
    return dz1, dz2


def _launch_bwd(za, zb, c, mu_a, rstd_a, mu_b, rstd_b, energy_a, coef, dza, stride_cg, stride_ca, stride_cb):
    g, n, da = za.shape
    db = zb.shape[2]
    block_n, block_da, block_db = _block(n), _block(da), _block(db)
    grid = (g, triton.cdiv(n, block_n), triton.cdiv(da, block_da))
    _orthogonality_loss_bwd_kernel[grid](
        za, zb, c, mu_a, rstd_a, mu_b, rstd_b, energy_a, coef, dza,
        n, da, db,
        *za.stride(), *zb.stride(),
        stride_cg, stride_ca, stride_cb,
        BN=block_n, BDA=block_da, BDB=block_db,
    )


def _block(size: int) -> int:
    # tl.dot needs every tile dimension >= 16; 64 keeps a float32 [64, 64] accumulator in registers.
    return min(max(triton.next_power_of_2(size), 16), 64)


def _scale(reduction: str, z1: torch.Tensor, z2: torch.Tensor) -> float:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction={reduction!r}: expected 'sum' or 'mean'")
    n, d1, d2 = z1.shape[1], z1.shape[2], z2.shape[2]
    return 1.0 / (n * n * d1 * d2) if reduction == "mean" else 1.0


def forward(z1: torch.Tensor, z2: torch.Tensor, reduction: str, eps: float):
    """The "triton" backend of ``ser_fast::orthogonality_loss``: ``z1 [G, N, D1]``, ``z2 [G, N, D2]``
    -> ``[G]`` in the input dtype, and the state ``c [G, D1, D2]``, ``mu1, rstd1 [G, D1]``,
    ``mu2, rstd2 [G, D2]`` (float32), and None (the op's state has room for the torch path's)."""
    loss, c, mu1, rstd1, mu2, rstd2 = orthogonality_loss_fwd(z1, z2, eps)
    return (loss * _scale(reduction, z1, z2)).to(z1.dtype), c, mu1, rstd1, mu2, rstd2, None


def fake_state(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Empty tensors shaped like the state :func:`forward` returns."""
    g, _, d1 = z1.shape
    d2 = z2.shape[2]
    shapes = [(g, d1, d2), (g, d1), (g, d1), (g, d2), (g, d2)]
    return *[z1.new_empty(shape, dtype=torch.float32) for shape in shapes], z1.new_empty(0)


def backward(grad_loss, z1, z2, state, reduction: str, need_dz1: bool, need_dz2: bool):
    """``(dz1, dz2)`` in the input dtype, None where not needed."""
    return orthogonality_loss_bwd(grad_loss.float() * _scale(reduction, z1, z2), z1, z2, *state[:5],
                                  need_dz1=need_dz1, need_dz2=need_dz2)


def orthogonality_loss_triton(
    z1: torch.Tensor, z2: torch.Tensor, *, reduction: str = "sum", eps: float = 1e-5
) -> torch.Tensor:
    """The Triton path of :func:`ser_fast.ops.orthogonality_loss.orthogonality_loss` (inputs unchecked).

    ``z1 [(G,) N, D1]``, ``z2 [(G,) N, D2]`` (float32, float16 or bfloat16) -> scalar or ``[G]``.
    """
    batched = z1.dim() == 3
    if not batched:
        z1, z2 = z1.unsqueeze(0), z2.unsqueeze(0)
    loss = fused_orthogonality_loss(z1, z2, reduction, eps, "triton")[0]
    return loss if batched else loss.squeeze(0)
