"""orthogonality_loss: the Triton kernels (interpreted, on CPU) and the torch path against the reference,
forward and both gradients, on odd shapes and each dtype; gradcheck; input checks; backend dispatch."""

from __future__ import annotations

import importlib

import pytest
import torch
from helpers import assert_close

from ser_fast.ops.orthogonality_loss import (
    orthogonality_loss,
    orthogonality_loss_ref,
    orthogonality_loss_torch,
)

# ser_fast.ops re-exports the function under the package's name, so modules are looked up by name.
ortho = importlib.import_module("ser_fast.ops.orthogonality_loss")
torch_path = importlib.import_module("ser_fast.ops.orthogonality_loss.cpu")

# (G or None for one [N, D] pair, N, D1, D2, non-contiguous inputs)
SHAPES = [
    pytest.param(None, 2, 1, 3, False, id="N2-D1x3"),
    pytest.param(1, 63, 37, 70, False, id="G1-N63-D37x70"),
    pytest.param(3, 151, 3, 37, True, id="G3-N151-D3x37-strided"),
    pytest.param(3, 63, 70, 1, False, id="G3-N63-D70x1"),
    pytest.param(None, 151, 37, 3, True, id="N151-D37x3-strided"),
]
DTYPES = [pytest.param(torch.float32, id="fp32"), pytest.param(torch.bfloat16, id="bf16")]
BACKENDS = [pytest.param("triton", id="triton"), pytest.param("torch", id="torch")]
REDUCTIONS = [pytest.param("sum", id="sum"), pytest.param("mean", id="mean")]
# Relative to the data's scale (the loss, or the natural size of a gradient): what float32 arithmetic
# leaves, and what rounding the bfloat16 outputs adds beyond the reference's own bfloat16 run.
REL_ATOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-3}
# The torch path goes through the N×N Gram matrices or through C, whichever is cheaper; each is tested
# on every shape by forcing it.
BACKEND_FORMS = [
    pytest.param("triton", None, id="triton"),
    pytest.param("torch", True, id="torch-gram"),
    pytest.param("torch", False, id="torch-correlation"),
]


@pytest.fixture
def force_torch_form(monkeypatch):
    def force(through_gram):
        if through_gram is not None:
            monkeypatch.setattr(torch_path, "prefer_gram", lambda n, d1, d2: through_gram)

    return force


def make_pair(g, n, d1, d2, *, dtype, seed, strided=False, offset=0.0):
    """Two embeddings whose columns are partly correlated (so C is far from zero), optionally laid
    out feature-major (non-contiguous [.., N, D] views)."""
    gen = torch.Generator().manual_seed(seed)
    lead = () if g is None else (g,)
    shared = torch.randn(*lead, n, 1, generator=gen)
    z1 = torch.randn(*lead, n, d1, generator=gen) + shared + offset
    z2 = torch.randn(*lead, n, d2, generator=gen) - 0.5 * shared
    z1 = z1 * torch.rand(d1, generator=gen) * 3
    if strided:
        z1, z2 = z1.mT.contiguous().mT, z2.mT.contiguous().mT
        assert not z1.is_contiguous()
    return z1.to(dtype), z2.to(dtype)


def loss_and_grads(fn, z1, z2, weights):
    z1 = z1.detach().requires_grad_()
    z2 = z2.detach().requires_grad_()
    loss = fn(z1, z2)
    grad1, grad2 = torch.autograd.grad(loss, (z1, z2), grad_outputs=weights.to(loss.dtype))
    return loss.detach(), grad1, grad2


def natural_grad_scales(z1, z2, reduction, weights):
    """The size of the terms each gradient is made of, (2 gL / s) |Z_other C|: the gradients
    themselves can be nearly zero (N = 2 makes every z-scored column ±1 whatever the input)."""
    z1, z2 = z1.double(), z2.double()
    v1, m1 = torch.var_mean(z1, dim=-2, correction=0, keepdim=True)
    v2, m2 = torch.var_mean(z2, dim=-2, correction=0, keepdim=True)
    s1, s2 = torch.sqrt(v1 + 1e-5), torch.sqrt(v2 + 1e-5)
    scored1, scored2 = (z1 - m1) / s1, (z2 - m2) / s2
    c = scored1.mT @ scored2
    n, d1, d2 = z1.shape[-2], z1.shape[-1], z2.shape[-1]
    coef = 2 * weights.double().abs().max() * (1.0 / (n * n * d1 * d2) if reduction == "mean" else 1.0)
    return (float(coef * ((scored2 @ c.mT) / s1).abs().max()), float(coef * ((scored1 @ c) / s2).abs().max()))


def assert_matches_reference(backend, z1, z2, reduction, *, seed, msg):
    # Rounded to the dtype under test first: every path then sees the same upstream gradient.
    weights = (torch.rand(z1.shape[:-2], generator=torch.Generator().manual_seed(seed)) + 0.5).to(z1.dtype)
    actual = loss_and_grads(lambda a, b: orthogonality_loss(a, b, reduction=reduction, backend=backend),
                            z1, z2, weights)
    expected = loss_and_grads(lambda a, b: orthogonality_loss_ref(a, b, reduction=reduction),
                              z1.double(), z2.double(), weights)
    # The reference at the precision under test: its input rounding (large offsets) and output rounding.
    baseline = loss_and_grads(lambda a, b: orthogonality_loss_ref(a, b, reduction=reduction), z1, z2, weights)
    rel = REL_ATOL[z1.dtype]
    assert actual[0].dtype == z1.dtype and actual[0].shape == z1.shape[:-2]
    assert actual[1].dtype == z1.dtype and actual[2].dtype == z2.dtype
    scales = (float(expected[0].abs().max()),) + natural_grad_scales(z1, z2, reduction, weights)
    for name, a, e, b, scale in zip(("loss", "dz1", "dz2"), actual, expected, baseline, scales):
        assert_close(a, e, atol=rel * scale, baseline=b, msg=f"{msg} {name}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g, n, d1, d2, strided", SHAPES)
@pytest.mark.parametrize("backend, through_gram", BACKEND_FORMS)
def test_loss_and_gradients_match_reference(force_torch_form, backend, through_gram, g, n, d1, d2, strided,
                                            dtype, reduction):
    force_torch_form(through_gram)
    z1, z2 = make_pair(g, n, d1, d2, dtype=dtype, seed=n * 7 + d1, strided=strided)
    assert_matches_reference(backend, z1, z2, reduction, seed=d2, msg=f"{backend} {dtype} {reduction}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_float16(backend):
    z1, z2 = make_pair(2, 63, 37, 3, dtype=torch.float16, seed=5)
    assert_matches_reference(backend, z1, z2, "mean", seed=5, msg=f"{backend} fp16")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("backend, through_gram", BACKEND_FORMS)
def test_large_offset_and_constant_columns(force_torch_form, backend, through_gram, reduction):
    """Columns far from zero (the Triton forward sums z − z[0]: Σz² − N·mean² at mean 1e3 in float32
    would lose the variance) and constant columns (variance 0: Z = 0 through eps, not NaN)."""
    force_torch_form(through_gram)
    z1, z2 = make_pair(3, 63, 37, 3, dtype=torch.float32, seed=11, offset=1e3)
    z1[..., 5] = 0.7
    z2[..., 0] = -1e3
    loss = orthogonality_loss(z1, z2, reduction=reduction, backend=backend)
    assert torch.isfinite(loss).all()
    assert_matches_reference(backend, z1, z2, reduction, seed=3, msg=f"{backend} offset {reduction}")


@pytest.mark.parametrize("eps", [1e-5, 0.5], ids=["eps1e-5", "eps0.5"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("fn, through_gram", [pytest.param(orthogonality_loss_ref, None, id="reference"),
                                              pytest.param(orthogonality_loss_torch, True, id="torch-gram"),
                                              pytest.param(orthogonality_loss_torch, False, id="torch-correlation")])
@pytest.mark.parametrize("batched", [False, True], ids=["pair", "G2"])
def test_gradcheck_float64(force_torch_form, fn, through_gram, batched, reduction, eps):
    force_torch_form(through_gram)
    gen = torch.Generator().manual_seed(0)
    lead = (2,) if batched else ()
    z1 = torch.randn(*lead, 5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    z2 = torch.randn(*lead, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, reduction=reduction, eps=eps), (z1, z2))


def test_closed_form_of_a_known_pair():
    """z2 = z1 up to scale and shift: every column pair correlates perfectly, so C = N (eps aside)."""
    z1 = torch.tensor([[1.0], [2.0], [4.0]], dtype=torch.float64)
    z2 = 3 * z1 + 7
    loss = orthogonality_loss(z1, z2, eps=0.0, backend="torch")
    assert_close(loss, torch.tensor(9.0, dtype=torch.float64), atol=1e-12, msg="perfect correlation")
    mean = orthogonality_loss(z1, z2, eps=0.0, reduction="mean", backend="torch")
    assert_close(mean, torch.tensor(1.0, dtype=torch.float64), atol=1e-12, msg="mean squared correlation")


@pytest.mark.parametrize("n", [8, 63], ids=["N8-gram", "N63-correlation"])
def test_torch_path_without_grad_gives_the_same_loss(n):
    z1, z2 = make_pair(3, n, 37, 70, dtype=torch.float32, seed=2)
    with torch.no_grad():
        plain = orthogonality_loss_torch(z1, z2)
    tracked = orthogonality_loss_torch(z1.requires_grad_(), z2)
    assert torch.equal(plain, tracked.detach())


def test_torch_path_picks_the_cheaper_form():
    assert torch_path.prefer_gram(32, 256, 256)
    assert not torch_path.prefer_gram(256, 256, 256)
    assert not torch_path.prefer_gram(2, 1, 3)


def test_only_needed_gradient_is_computed():
    z1, z2 = make_pair(2, 63, 37, 3, dtype=torch.float32, seed=4)
    z1.requires_grad_()
    for backend in ("triton", "torch"):
        (grad1,) = torch.autograd.grad(orthogonality_loss(z1, z2, backend=backend).sum(), (z1,))
        (expected,) = torch.autograd.grad(orthogonality_loss_ref(z1, z2).sum(), (z1,))
        assert_close(grad1, expected, atol=1e-5 * float(expected.abs().max()), msg=backend)


def _pair(*shape1, shape2=None, dtype=torch.float32):
    return torch.randn(*shape1, dtype=dtype), torch.randn(*(shape2 or shape1), dtype=dtype)


BAD_INPUTS = [
    pytest.param(lambda: ([[1.0, 2.0]], torch.randn(1, 2)), {}, TypeError, "z1 must be a torch.Tensor",
                 id="z1-not-tensor"),
    pytest.param(lambda: (torch.randn(4, 2), None), {}, TypeError, "z2 must be a torch.Tensor", id="z2-not-tensor"),
    pytest.param(lambda: (torch.ones(4, 2, dtype=torch.int64), torch.randn(4, 2)), {}, TypeError,
                 "z1 has dtype torch.int64", id="integer-dtype"),
    pytest.param(lambda: (torch.randn(4, 2), torch.randn(4, 2, dtype=torch.complex64)), {}, TypeError,
                 "z2 has dtype torch.complex64", id="complex-dtype"),
    pytest.param(lambda: (torch.randn(4), torch.randn(4, 2)), {}, ValueError, r"z1 must be \[N, D\]", id="z1-1d"),
    pytest.param(lambda: (torch.randn(4, 2), torch.randn(1, 1, 4, 2)), {}, ValueError, r"z2 must be \[N, D\]",
                 id="z2-4d"),
    pytest.param(lambda: (torch.randn(4, 2), torch.randn(1, 4, 2)), {}, ValueError, "both be", id="ndim-mismatch"),
    pytest.param(lambda: (torch.randn(4, 2), torch.randn(4, 2, dtype=torch.float64)), {}, ValueError,
                 "same dtype", id="dtype-mismatch"),
    pytest.param(lambda: (torch.randn(4, 2), torch.randn(5, 2)), {}, ValueError, "same rows N", id="N-mismatch"),
    pytest.param(lambda: (torch.randn(2, 4, 2), torch.randn(3, 4, 2)), {}, ValueError, "same pairs G",
                 id="G-mismatch"),
    pytest.param(lambda: (torch.randn(0, 4, 2), torch.randn(0, 4, 2)), {}, ValueError, "G = 0", id="G-empty"),
    pytest.param(lambda: (torch.randn(1, 2), torch.randn(1, 3)), {}, ValueError, "N = 1 rows", id="N1"),
    pytest.param(lambda: (torch.randn(0, 2), torch.randn(0, 3)), {}, ValueError, "N = 0 rows", id="N0"),
    pytest.param(lambda: (torch.randn(4, 0), torch.randn(4, 3)), {}, ValueError, "z1 has no features", id="D1-empty"),
    pytest.param(lambda: (torch.randn(4, 2), torch.randn(4, 0)), {}, ValueError, "z2 has no features", id="D2-empty"),
    pytest.param(lambda: _pair(4, 2), {"reduction": "none"}, ValueError, "reduction='none'", id="bad-reduction"),
    pytest.param(lambda: _pair(4, 2), {"eps": -1.0}, ValueError, "eps=-1.0", id="negative-eps"),
    pytest.param(lambda: _pair(4, 2), {"eps": float("nan")}, ValueError, "eps=nan", id="nan-eps"),
    pytest.param(lambda: _pair(4, 2), {"eps": "1e-5"}, ValueError, "eps='1e-5'", id="string-eps"),
    pytest.param(lambda: _pair(4, 2), {"backend": "cuda"}, ValueError, "unknown backend 'cuda'",
                 id="unknown-backend"),
    pytest.param(lambda: _pair(4, 2, dtype=torch.float64), {"backend": "triton"}, TypeError,
                 "float64", id="triton-float64"),
]


@pytest.mark.parametrize("make, kwargs, error, match", BAD_INPUTS)
def test_input_checks(make, kwargs, error, match):
    z1, z2 = make()
    with pytest.raises(error, match=match):
        orthogonality_loss(z1, z2, **kwargs)


def test_device_mismatch_is_reported():
    z1, z2 = _pair(4, 2)
    with pytest.raises(ValueError, match="same device"):
        orthogonality_loss(z1, z2.to("meta"))


@pytest.mark.parametrize("backend, chosen", [("reference", "ref"), ("torch", "torch"), ("auto", "torch"),
                                             ("triton", "triton")])
def test_backend_runs_the_named_path(monkeypatch, backend, chosen):
    import ser_fast.kernels.orthogonality_loss as kernels

    calls = []

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(ortho, "orthogonality_loss_ref", spy("ref", orthogonality_loss_ref))
    monkeypatch.setattr(ortho, "orthogonality_loss_torch", spy("torch", orthogonality_loss_torch))
    monkeypatch.setattr(kernels, "orthogonality_loss_triton", spy("triton", kernels.orthogonality_loss_triton))
    z1, z2 = make_pair(2, 5, 3, 4, dtype=torch.float32, seed=0)
    orthogonality_loss(z1, z2, backend=backend)
    assert calls == [chosen]


def test_triton_without_interpreter_on_cpu_raises(monkeypatch):
    import ser_fast.ops._backend as backend_module

    monkeypatch.setattr(backend_module, "triton_interpreted", lambda: False)
    z1, z2 = _pair(4, 2)
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        orthogonality_loss(z1, z2, backend="triton")


def test_runs_under_bf16_autocast_at_its_inputs_dtype():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(32, 20, generator=g), torch.randn(32, 12, generator=g)
    results = []
    for autocast in (False, True):
        a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = orthogonality_loss(a, b, reduction="mean", backend="torch")
            loss.backward()
        results.append((loss.detach(), a.grad, b.grad))
    assert results[1][0].dtype == torch.float32
    for got, want in zip(results[1], results[0]):
        assert_close(got, want, atol=1e-7, msg="under autocast")
