"""The torch path of attention pooling: torch ops (any device), with an analytic backward.

Scores shared by all channels ([B, T]) make the weights small, so they are kept for the backward and every sum over time
or over channels is a batched matrix-vector product. On the CPU, DSNet's float32 forward (no standard deviation) runs in
``ser_fast._C`` (``csrc/attention_pool``) where it is built: one pass per sequence instead of a product per sequence.

Per-channel scores ([B, T, D]) would make the weights as large as x: the forward keeps only the softmax's max and
normaliser ([B, 1, D]) and the backward recomputes exp(s - max), folding the normaliser into the [B, D] coefficients. On
the CPU that layout is walked in chunks of the batch of about ``CHUNK_ELEMENTS`` elements, so each temporary stays in
cache and is reused by the allocator rather than page-faulted in afresh for every op, which is what dominates the
reference's time.

``forward``, ``backward`` and ``fake_state`` are the "torch" backend of the custom op ``ser_fast::attention_pool``
(``op.py``); :func:`attention_pool_torch` calls that op.
"""

from __future__ import annotations

import functools

import torch

from ser_fast._extension import extension, extension_available
from ser_fast.ops.attention_pool.op import fused_attention_pool

CHUNK_ELEMENTS = 1 << 18
# exp() of arguments below about -87.3 gives subnormals (and of -inf takes a special path), which
# x86 CPUs compute 10 to 40 times slower; weights that small (< 2e-38 of the largest) are rounded
# up to exp(-87) here, and padded frames are set to exactly 0 after the exp.
EXP_FLOOR = -87.0


def attention_pool_torch(
    x: torch.Tensor,
    scores: torch.Tensor,
    lengths: torch.Tensor | None = None,
    *,
    return_std: bool = False,
    eps: float = 1e-5,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """:func:`ser_fast.ops.attention_pool` with torch ops (inputs checked, ``lengths`` an integer tensor or None)."""
    mu, sigma = fused_attention_pool(x, scores, lengths, return_std, eps, "torch")
    return (mu, sigma) if return_std else mu


def forward(x, scores, lengths, return_std: bool, eps: float):
    """``(mu, sigma, softmax_state, moments)``: mu and sigma in x.dtype (sigma None without ``return_std``; views of
    ``moments`` for float32 and float64 inputs), and for the backward, in the compute dtype (float32, float64 for
    float64 inputs), the weights ``[B, T]`` (shared scores) or the softmax's max and sum ``[2, B, 1, D]``
    (per-channel), and ``[mu]`` or ``[mu, m2, sigma]`` stacked ``[1 or 3, B, D]``."""
    B, _, D = x.shape
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    if compiled_pool_fits(x, scores, lengths, return_std):
        softmax_state, moments = extension().attention_pool_shared_forward(x, scores, lengths)
    elif scores.ndim == 2:
        if lengths is None:
            masked = as_dtype(scores, compute_dtype)
        else:
            masked = Padding(x, lengths).fill_(scores.to(compute_dtype, copy=True), float("-inf"))
        softmax_state = torch.softmax(masked, dim=1)
        moments = _shared_scores_moments(as_dtype(x, compute_dtype), softmax_state, return_std)
    else:
        moments = x.new_empty(3 if return_std else 1, B, D, dtype=compute_dtype)
        softmax_state = _per_channel_moments(x, scores, Padding(x, lengths), compute_dtype, moments)
    mu = as_dtype(moments[0], x.dtype)
    if not return_std:
        return mu, None, softmax_state, moments
    var = moments[1] - moments[0] * moments[0]
    torch.sqrt(torch.clamp(var, min=eps), out=moments[2])
    return mu, as_dtype(moments[2], x.dtype), softmax_state, moments


def compiled_pool_fits(x: torch.Tensor, scores: torch.Tensor, lengths: torch.Tensor | None, return_std: bool) -> bool:
    """Whether the forward runs in ``ser_fast._C`` (``csrc/attention_pool``): DSNet's pooling (scores shared by all
    channels, [B, T], and no standard deviation) of contiguous float32 CPU tensors, with the extension built. It makes
    the weights and mu in one pass per sequence, where torch launches a matrix-vector product per sequence. Other
    inputs take torch ops; so does sigma, a root of a cancelling difference, which torch's fused multiply-adds keep
    closer to float64 than the portable kernel would."""
    return (not return_std and scores.ndim == 2 and x.dtype == torch.float32 and scores.dtype == torch.float32
            and x.is_cpu and x.is_contiguous() and scores.is_contiguous()
            and (lengths is None or lengths.is_contiguous()) and compiled_pool_built())


@functools.cache
def compiled_pool_built() -> bool:
    """Whether ``ser_fast._C`` is built and has the pooling (an extension built before it lacks it)."""
    return extension_available() and hasattr(extension(), "attention_pool_shared_forward")


def as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` itself when it has ``dtype``: ``Tensor.to`` costs about a microsecond even when it has nothing to do, and
    DSNet's pooling makes a handful of such calls in a forward of 30."""
    return t if t.dtype == dtype else t.to(dtype)


def fake_state(x, scores, return_std: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty tensors shaped like the ``softmax_state`` and ``moments`` :func:`forward` returns."""
    B, T, D = x.shape
    dtype = torch.promote_types(x.dtype, torch.float32)
    softmax_state = x.new_empty((B, T) if scores.ndim == 2 else (2, B, 1, D), dtype=dtype)
    return softmax_state, x.new_empty(3 if return_std else 1, B, D, dtype=dtype)


def backward(g_mu, g_sigma, x, scores, lengths, softmax_state, moments, return_std: bool, eps: float,
             need_dx: bool, need_ds: bool):
    """``(dx, dscores)`` in x.dtype, None where not needed; the state as :func:`forward` made it."""
    mu = moments[0]
    a = as_dtype(g_mu, mu.dtype)
    c = a * mu
    g_var = None
    if return_std:
        m2, sigma = moments[1], moments[2]
        var = m2 - mu * mu
        # clamp passes the gradient where var >= eps, like torch.clamp in the reference.
        g_var = torch.where(var >= eps, as_dtype(g_sigma, mu.dtype) / (2 * sigma), 0.0)
        a = a - 2 * mu * g_var
        c = a * mu + g_var * m2
    if scores.ndim == 2:
        dx, ds = _shared_scores_backward(as_dtype(x, mu.dtype), softmax_state, a, g_var, c, need_dx, need_ds)
    else:
        row_max, row_sum = softmax_state
        padding = Padding(x, lengths)
        dx, ds = _per_channel_backward(x, scores, padding, row_max, row_sum, mu, a, g_var, c, need_dx, need_ds)
    dx = as_dtype(dx, x.dtype) if dx is not None else None
    ds = as_dtype(ds, scores.dtype) if ds is not None else None
    return dx, ds


class Padding:
    """Writes a value over the frames t >= lengths[b]. On the CPU it fills each sequence's tail through a slice (a
    broadcast masked_fill_ there is several times slower than a copy)."""

    def __init__(self, x: torch.Tensor, lengths: torch.Tensor | None):
        self.T = x.shape[1]
        self.host_lengths = self.mask = None
        if lengths is not None and x.device.type == "cpu":
            self.host_lengths = lengths.tolist()
        elif lengths is not None:
            self.mask = torch.arange(self.T, device=x.device)[None, :] >= lengths[:, None]

    def fill_(self, t: torch.Tensor, value: float, rows: slice = slice(None)) -> torch.Tensor:
        """Fills the padded frames of ``t``, the chunk ``rows`` of a [B, T] or [B, T, D] tensor."""
        if self.host_lengths is not None:
            for i, n in enumerate(self.host_lengths[rows]):
                if n < self.T:
                    t[i, n:] = value
        elif self.mask is not None:
            mask = self.mask[rows]
            t.masked_fill_(mask if t.ndim == 2 else mask[:, :, None], value)
        return t


def _chunks(x: torch.Tensor) -> list[slice]:
    B, T, D = x.shape
    step = B if x.device.type != "cpu" else max(1, CHUNK_ELEMENTS // (T * D))
    return [slice(start, min(start + step, B)) for start in range(0, B, step)]


def _exp_(shifted: torch.Tensor, padding: Padding, rows: slice) -> torch.Tensor:
    """exp of the max-shifted scores of ``rows`` in place, exactly 0 on padded frames."""
    return padding.fill_(shifted.clamp_(min=EXP_FLOOR).exp_(), 0.0, rows)


def _shared_scores_moments(xc, weights, return_std):
    """``moments [1 or 3, B, D]`` with mu (and m2) filled in. Without ``return_std`` it is a view of one fresh product:
    writing into a preallocated buffer (``out=``) costs a fifth of this whole forward at DSNet's shapes."""
    B, _, D = xc.shape
    w_row = weights[:, None, :]
    if not return_std:
        return torch.bmm(w_row, xc).view(1, B, D)
    moments = xc.new_empty(3, B, D)
    torch.bmm(w_row, xc, out=moments[0].unsqueeze(1))
    torch.bmm(w_row, xc * xc, out=moments[1].unsqueeze(1))
    return moments


def _per_channel_moments(x, scores, padding, dtype, moments):
    """mu (and m2) written into ``moments [k, B, D]`` and the softmax's max and sum over time returned stacked
    ``[2, B, 1, D]``, chunk by chunk."""
    B, _, D = x.shape
    return_std = len(moments) > 1
    softmax_state = torch.empty(2, B, 1, D, device=x.device, dtype=dtype)
    row_max, row_sum = softmax_state
    sum_x, sum_xx = moments[0], moments[1] if return_std else None
    for rows in _chunks(x):
        e = padding.fill_(scores[rows].to(dtype, copy=True), float("-inf"), rows)
        torch.amax(e, dim=1, keepdim=True, out=row_max[rows])
        _exp_(e.sub_(row_max[rows]), padding, rows)
        torch.sum(e, dim=1, keepdim=True, out=row_sum[rows])
        xc = x[rows].to(dtype)
        torch.sum(e.mul_(xc), dim=1, out=sum_x[rows])
        if return_std:
            torch.sum(e.mul_(xc), dim=1, out=sum_xx[rows])
    norm = row_sum[:, 0, :]
    sum_x.div_(norm)
    if return_std:
        sum_xx.div_(norm)
    return softmax_state


def _shared_scores_backward(xc, w, a, g_var, c, need_dx, need_ds):
    """w [B, T] shared by all channels: dx = w (a + 2 g_var x), ds_t = w_t sum_d (x (a + g_var x) - c)."""
    dx = ds = None
    if need_ds:
        f = torch.bmm(xc, a[:, :, None]).squeeze(-1)
        if g_var is not None:
            f.add_(torch.bmm(xc * xc, g_var[:, :, None]).squeeze(-1))
        ds = f.sub_(c.sum(dim=-1, keepdim=True)).mul_(w)
    if need_dx:
        if g_var is None:
            dx = torch.bmm(w[:, :, None], a[:, None, :])
        else:
            dx = torch.addcmul(a[:, None, :], xc, 2 * g_var[:, None, :]).mul_(w[:, :, None])
    return dx, ds


def _per_channel_backward(x, scores, padding, row_max, row_sum, mu, a, g_var, c, need_dx, need_ds):
    """w = e / sum with e = exp(s - max): dx = e (a + 2 g_var x) / sum, ds = e (x (a + g_var x) - c) / sum."""
    dtype = mu.dtype
    norm = row_sum[:, 0, :]
    # Dividing the [B, D] coefficients by the softmax's sum spares a pass over the weights.
    a, c = (a / norm)[:, None, :], (c / norm)[:, None, :]
    g_var = (g_var / norm)[:, None, :] if g_var is not None else None
    mu = mu[:, None, :]
    dx = torch.empty(x.shape, device=x.device, dtype=x.dtype) if need_dx else None
    ds = torch.empty(scores.shape, device=x.device, dtype=x.dtype) if need_ds else None
    for rows in _chunks(x):
        e = _exp_(torch.sub(scores[rows], row_max[rows]), padding, rows)
        xc = x[rows].to(dtype)
        if need_dx:
            target = dx[rows]
            out = _scratch(target, dtype)
            if g_var is None:
                torch.mul(e, a[rows], out=out)
            else:
                torch.addcmul(a[rows], xc, 2 * g_var[rows], out=out).mul_(e)
            _write(target, out)
        if need_ds:
            target = ds[rows]
            out = _scratch(target, dtype)
            if g_var is None:
                torch.sub(xc, mu[rows], out=out).mul_(a[rows]).mul_(e)
            else:
                torch.addcmul(a[rows], xc, g_var[rows], out=out).mul_(xc).sub_(c[rows]).mul_(e)
            _write(target, out)
    return dx, ds


def _scratch(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Where a chunk of a gradient is computed: in place when the output has the compute dtype."""
    return out if out.dtype == dtype else torch.empty(out.shape, device=out.device, dtype=dtype)


def _write(out: torch.Tensor, value: torch.Tensor) -> None:
    if value is not out:
        out.copy_(value)
