"""attention_pool: the torch path and the Triton kernels (interpreted on CPU) against the reference,
forward and every gradient, on odd shapes, both score layouts and every dtype; then bad input and
backend dispatch."""

from __future__ import annotations

import importlib
import importlib.util

import pytest
import torch
from helpers import assert_close

from ser_fast.ops.attention_pool import (
    attention_pool,
    attention_pool_ref,
    attention_pool_torch,
)

# ser_fast.ops re-exports the function under the package's name, so modules are looked up by name.
attention_pool_module = importlib.import_module("ser_fast.ops.attention_pool")

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")

BACKENDS = [pytest.param("torch", id="torch"), pytest.param("triton", id="triton", marks=needs_triton)]
SHAPES = {"B1-T1-D1": (1, 1, 1), "B3-T63-D37": (3, 63, 37), "B3-T151-D70": (3, 151, 70)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# fp16 runs on one shape: bf16 covers the other 16-bit paths.
DTYPE_SHAPES = [
    pytest.param(DTYPES[dtype], SHAPES[shape], id=f"{dtype}-{shape}")
    for dtype in DTYPES for shape in SHAPES if dtype != "fp16" or shape == "B3-T63-D37"
]
LAYOUTS = [pytest.param(False, id="scores-BT"), pytest.param(True, id="scores-BTD")]
STDS = [pytest.param(False, id="mean"), pytest.param(True, id="mean-std")]
LENGTHS = [pytest.param("none", id="no-lengths"), pytest.param("ragged", id="ragged-with-length-1")]


def make_inputs(shape, per_channel, lengths_kind, dtype, *, seed=0, score_scale=1.0):
    B, T, D = shape
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(B, T, D, generator=gen) + 0.5).to(dtype)
    scores = (score_scale * torch.randn(*((B, T, D) if per_channel else (B, T)), generator=gen)).to(dtype)
    lengths = None
    if lengths_kind == "ragged":
        # Full length, a single frame (all frames but one masked), and a middle one.
        lengths = torch.tensor([T, 1, (T + 1) // 2][:B] if B > 1 else [1])
    return x, scores, lengths


def outputs_and_grads(fn, x, scores, lengths, return_std, *, seed=1):
    """(mu[, sigma], dx, dscores) of fn with fixed random upstream gradients, in fn's dtypes."""
    x = x.detach().clone().requires_grad_()
    scores = scores.detach().clone().requires_grad_()
    out = fn(x, scores, lengths, return_std=return_std)
    out = out if isinstance(out, tuple) else (out,)
    gen = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(o.shape, generator=gen).to(o.dtype) for o in out]
    grads = torch.autograd.grad(out, (x, scores), upstream)
    return [o.detach() for o in out] + list(grads)


def backend_fn(backend):
    return lambda x, s, lengths, return_std: attention_pool(x, s, lengths, return_std=return_std, backend=backend)


def expected_in_float64(x, scores, lengths, return_std):
    return outputs_and_grads(attention_pool_ref, x.double(), scores.double(), lengths, return_std)


NAMES_MEAN = ("mu", "dx", "dscores")
NAMES_STD = ("mu", "sigma", "dx", "dscores")


def check_against_reference(backend, x, scores, lengths, return_std, atol):
    actual = outputs_and_grads(backend_fn(backend), x, scores, lengths, return_std)
    expected = expected_in_float64(x, scores, lengths, return_std)
    baseline = None
    if x.dtype != torch.float32:
        baseline = outputs_and_grads(attention_pool_ref, x, scores, lengths, return_std)
    names = NAMES_STD if return_std else NAMES_MEAN
    for i, name in enumerate(names):
        assert actual[i].dtype == x.dtype, f"{name} dtype"
        assert torch.isfinite(actual[i]).all(), f"{name} is not finite"
        assert_close(actual[i], expected[i], atol=atol, baseline=None if baseline is None else baseline[i],
                     msg=f"{backend} {name}")


@pytest.mark.parametrize("lengths_kind", LENGTHS)
@pytest.mark.parametrize("return_std", STDS)
@pytest.mark.parametrize("per_channel", LAYOUTS)
@pytest.mark.parametrize("dtype, shape", DTYPE_SHAPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_and_gradients_match_reference(backend, dtype, shape, per_channel, return_std, lengths_kind):
    x, scores, lengths = make_inputs(shape, per_channel, lengths_kind, dtype)
    check_against_reference(backend, x, scores, lengths, return_std, atol=2e-5 if dtype == torch.float32 else 2e-3)


@pytest.mark.parametrize("per_channel", LAYOUTS)
@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, id="fp32"), pytest.param(torch.bfloat16, id="bf16")])
@pytest.mark.parametrize("backend", BACKENDS)
def test_large_scores_are_stable(backend, dtype, per_channel):
    """Scores ~ +-1e4 overflow a naive exp: the max-shifted softmax must give no NaN or Inf."""
    x, scores, lengths = make_inputs((3, 63, 37), per_channel, "ragged", dtype, seed=3, score_scale=1e4)
    actual = outputs_and_grads(backend_fn(backend), x, scores, lengths, True)
    for value in actual:
        assert torch.isfinite(value).all()
    if dtype == torch.float32:
        check_against_reference(backend, x, scores, lengths, True, atol=2e-5)


@pytest.mark.parametrize("per_channel", LAYOUTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_scores_near_ties_at_a_large_offset(backend, per_channel):
    """softmax(s + 1e4) = softmax(s): the backward must recompute the weights as exactly as the
    forward made them, which one float32 log-sum-exp near 1e4 (ulp 1e-3) would not."""
    x, scores, lengths = make_inputs((3, 63, 37), per_channel, "ragged", torch.float32, seed=4)
    check_against_reference(backend, x, scores + 1e4, lengths, True, atol=2e-5)


@pytest.mark.parametrize("per_channel", LAYOUTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend, per_channel):
    x_t = torch.randn(3, 37, 63).transpose(1, 2)
    scores = torch.randn(3, 63, 74)[..., ::2] if per_channel else torch.randn(63, 3).t()
    assert not x_t.is_contiguous() and not scores.is_contiguous()
    lengths = torch.tensor([63, 1, 30])
    actual = outputs_and_grads(backend_fn(backend), x_t, scores, lengths, True)
    expected = outputs_and_grads(attention_pool_ref, x_t.contiguous(), scores.contiguous(), lengths, True)
    for a, e, name in zip(actual, expected, NAMES_STD):
        assert_close(a, e, atol=2e-5, msg=name)


@pytest.mark.parametrize("per_channel", LAYOUTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_through_sigma_alone(backend, per_channel):
    """Only sigma feeds the loss: autograd hands the backward no gradient for mu."""
    x, scores, lengths = make_inputs((3, 63, 37), per_channel, "ragged", torch.float32, seed=5)
    grads = []
    for fn in (backend_fn(backend), attention_pool_ref):
        xg, sg = x.clone().requires_grad_(), scores.clone().requires_grad_()
        _, sigma = fn(xg, sg, lengths, return_std=True)
        grads.append(torch.autograd.grad(sigma.sum(), (xg, sg)))
    for a, e, name in zip(*grads, ("dx", "dscores")):
        assert_close(a, e, atol=2e-5, msg=name)


@pytest.mark.parametrize("lengths_kind", LENGTHS)
@pytest.mark.parametrize("return_std", STDS)
@pytest.mark.parametrize("per_channel", LAYOUTS)
@pytest.mark.parametrize("fn", [pytest.param(attention_pool_ref, id="reference"),
                                pytest.param(attention_pool_torch, id="torch")])
def test_gradcheck_float64(fn, per_channel, return_std, lengths_kind):
    x, scores, lengths = make_inputs((3, 7, 5), per_channel, lengths_kind, torch.float64, seed=7)
    x.requires_grad_()
    scores.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, lengths, return_std=return_std), (x, scores))


def test_padded_frames_get_no_weight_and_no_gradient():
    x, scores, _ = make_inputs((2, 9, 4), True, "none", torch.float32, seed=9)
    lengths = [9, 4]
    for backend in ("reference", "torch") + (("triton",) if HAS_TRITON else ()):
        garbage_x, garbage_s = x.clone(), scores.clone()
        garbage_x[1, 4:] = 1e3
        garbage_s[1, 4:] = 1e4
        actual = outputs_and_grads(backend_fn(backend), garbage_x, garbage_s, lengths, True)
        expected = outputs_and_grads(backend_fn(backend), x, scores, lengths, True)
        for a, e, name in zip(actual, expected, NAMES_STD):
            assert_close(a, e, atol=1e-6, msg=f"{backend} {name}")
        assert not actual[2][1, 4:].any() and not actual[3][1, 4:].any(), backend


def test_matches_the_plain_softmax_formula():
    x, scores, _ = make_inputs((2, 5, 3), False, "none", torch.float64, seed=11)
    w = torch.softmax(scores, dim=1)[:, :, None]
    mu, sigma = attention_pool(x, scores, return_std=True, backend="torch")
    assert_close(mu, (w * x).sum(1), atol=1e-12, msg="mu")
    assert_close(sigma, ((w * x * x).sum(1) - (w * x).sum(1) ** 2).sqrt(), atol=1e-12, msg="sigma")


@pytest.mark.parametrize("lengths", [
    pytest.param([5, 1, 3], id="list"),
    pytest.param((5, 1, 3), id="tuple"),
    pytest.param(torch.tensor([5, 1, 3], dtype=torch.int32), id="int32"),
    pytest.param(torch.tensor([5, 1, 3], dtype=torch.uint8), id="uint8"),
])
def test_lengths_forms_agree(lengths):
    x, scores, _ = make_inputs((3, 5, 4), True, "none", torch.float32, seed=13)
    expected = attention_pool(x, scores, torch.tensor([5, 1, 3]), backend="torch")
    assert torch.equal(attention_pool(x, scores, lengths, backend="torch"), expected)


B, T, D = 4, 8, 3
X = torch.randn(B, T, D)
S = torch.randn(B, T)

BAD_INPUTS = [
    pytest.param({"x": X.numpy()}, TypeError, "x must be a torch.Tensor", id="x-numpy"),
    pytest.param({"scores": [0.0] * T}, TypeError, "scores must be a torch.Tensor", id="scores-list"),
    pytest.param({"x": X[0]}, ValueError, r"x must be \[B, T, D\]", id="x-2d"),
    pytest.param({"x": X.int(), "scores": S.int()}, TypeError, "x must be float32", id="x-int"),
    pytest.param({"x": X[:, :0], "scores": S[:, :0]}, ValueError, "x has an empty dimension", id="x-empty-T"),
    pytest.param({"x": X[:, :, :0]}, ValueError, "x has an empty dimension", id="x-empty-D"),
    pytest.param({"scores": S[:, :-1]}, ValueError, r"scores must be \[B, T\]", id="scores-short-T"),
    pytest.param({"scores": torch.randn(B, T, D + 1)}, ValueError, r"scores must be \[B, T\]", id="scores-wrong-D"),
    pytest.param({"scores": S[None]}, ValueError, r"scores must be \[B, T\]", id="scores-4d"),
    pytest.param({"scores": S.double()}, TypeError, "scores must have x's dtype", id="scores-dtype"),
    pytest.param({"scores": S.to("meta")}, ValueError, "scores must be on x's device", id="scores-device"),
    pytest.param({"lengths": torch.full((B,), 3.0)}, TypeError, "lengths must be an integer tensor", id="lengths-float"),
    pytest.param({"lengths": torch.ones(B, dtype=torch.bool)}, TypeError, "integer tensor", id="lengths-bool"),
    pytest.param({"lengths": torch.ones(B + 1, dtype=torch.long)}, ValueError, r"lengths must have shape \[B\] = \[4\]",
                 id="lengths-wrong-size"),
    pytest.param({"lengths": torch.ones(B, 1, dtype=torch.long)}, ValueError, "lengths must have shape", id="lengths-2d"),
    pytest.param({"lengths": [8, 8, 8, 0]}, ValueError,
                 r"lengths\[3\] is 0; every sequence needs at least one frame", id="lengths-zero"),
    pytest.param({"lengths": torch.tensor([8, -2, 8, 8])}, ValueError, r"lengths\[1\] is -2", id="lengths-negative"),
    pytest.param({"lengths": [8, 9, 8, 8]}, ValueError, r"lengths\[1\] is 9, more than the T = 8", id="lengths-too-long"),
    pytest.param({"lengths": [8, 8.0, 8, 8]}, TypeError, "lengths must be a sequence of ints", id="lengths-float-item"),
    pytest.param({"lengths": [8, True, 8, 8]}, TypeError, "lengths must be a sequence of ints", id="lengths-bool-item"),
    pytest.param({"lengths": "8888"}, TypeError, "lengths must be None", id="lengths-str"),
    pytest.param({"lengths": torch.ones(B, dtype=torch.long, device="meta")}, ValueError,
                 "lengths must be on x's device", id="lengths-device"),
    pytest.param({"return_std": 1}, TypeError, "return_std must be a bool", id="return-std-int"),
    pytest.param({"eps": 0.0}, ValueError, "eps must be a positive finite number", id="eps-zero"),
    pytest.param({"eps": -1e-5}, ValueError, "eps must be", id="eps-negative"),
    pytest.param({"eps": float("nan")}, ValueError, "eps must be", id="eps-nan"),
    pytest.param({"eps": True}, ValueError, "eps must be", id="eps-bool"),
    pytest.param({"backend": "cuda"}, ValueError, "unknown backend 'cuda'", id="unknown-backend"),
    pytest.param({"x": X.double(), "scores": S.double(), "backend": "triton"}, TypeError,
                 "backend='triton' supports float32, float16 and bfloat16", id="triton-float64",
                 marks=needs_triton),
]


@pytest.mark.parametrize("kwargs, error, pattern", BAD_INPUTS)
def test_bad_input_gets_a_clear_error(kwargs, error, pattern):
    kwargs = {"x": X, "scores": S, "backend": "torch", **kwargs}
    x, scores = kwargs.pop("x"), kwargs.pop("scores")
    with pytest.raises(error, match=pattern):
        attention_pool(x, scores, **kwargs)


def _spy(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize("backend, path", [
    pytest.param("reference", "attention_pool_ref", id="reference"),
    pytest.param("torch", "attention_pool_torch", id="torch"),
    pytest.param("auto", "attention_pool_torch", id="auto-on-cpu-is-torch"),
    pytest.param("triton", "attention_pool_triton", id="triton", marks=needs_triton),
])
def test_backend_runs_the_named_path(monkeypatch, backend, path):
    if path == "attention_pool_triton":
        import ser_fast.kernels.attention_pool as module
    else:
        module = attention_pool_module
    calls = _spy(monkeypatch, module, path)
    x, scores, lengths = make_inputs((2, 5, 3), True, "ragged", torch.float32)
    out = attention_pool(x, scores, lengths, return_std=True, backend=backend)
    assert calls == [path]
    assert torch.equal(out[0], getattr(module, path)(x, scores, lengths, return_std=True)[0])


def test_auto_picks_torch_for_float64():
    x, scores, _ = make_inputs((2, 5, 3), False, "none", torch.float64)
    assert torch.equal(attention_pool(x, scores, backend="auto"), attention_pool_torch(x, scores))


@needs_triton
def test_triton_refuses_cpu_tensors_without_the_interpreter(monkeypatch):
    import ser_fast.ops._backend as backend_module

    monkeypatch.setattr(backend_module, "triton_interpreted", lambda: False)
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        attention_pool(X, S, backend="triton")


@pytest.mark.parametrize("per_channel", [False, True], ids=["shared-scores", "per-channel"])
def test_runs_under_bf16_autocast_at_its_inputs_dtype(per_channel):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 17, 9, generator=g)
    scores = torch.randn((3, 17, 9) if per_channel else (3, 17), generator=g)
    results = []
    for autocast in (False, True):
        xs, ss = x.clone().requires_grad_(), scores.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            mu, sigma = attention_pool(xs, ss, return_std=True, backend="torch")
            (mu.sum() + sigma.square().sum()).backward()
        results.append((mu.detach(), sigma.detach(), xs.grad, ss.grad))
    assert results[1][0].dtype == torch.float32
    for got, want in zip(results[1], results[0]):
        assert_close(got, want, atol=1e-6, msg="under autocast")


@pytest.mark.parametrize("return_std", [False, True], ids=["mu", "mu-sigma"])
def test_outputs_are_views_of_the_saved_state_only_while_grad_is_recorded(return_std):
    """The eager torch path returns mu (and sigma) as views of the moments its backward reads: modifying them in place
    must fail loudly under grad (never corrupt the gradient), and work without grad."""
    x, scores, _ = make_inputs((3, 7, 5), False, "none", torch.float32)
    x.requires_grad_(True)
    outputs = attention_pool(x, scores, return_std=return_std, backend="torch")
    first = outputs[0] if return_std else outputs
    with pytest.raises(RuntimeError, match="view and is being modified inplace"):
        first.add_(1.0)
    with torch.no_grad():
        outputs = attention_pool(x, scores, return_std=return_std, backend="torch")
        expected = attention_pool_ref(x, scores, return_std=return_std)
        pairs = zip(outputs, expected) if return_std else [(outputs, expected)]
        for out, ref in pairs:
            out.add_(1.0)
            assert_close(out, ref + 1.0, atol=1e-6, msg="in-place on a no-grad output")


attention_pool_cpu = importlib.import_module("ser_fast.ops.attention_pool.cpu")
needs_compiled_pool = pytest.mark.skipif(not attention_pool_cpu.compiled_pool_built(),
                                         reason="ser_fast._C is not built")
COMPILED_SHAPES = {"B1-T1-D1": (1, 1, 1), "B2-T2-D3": (2, 2, 3), "B3-T75-D17": (3, 75, 17),
                   "B5-T37-D256": (5, 37, 256), "B33-T9-D130": (33, 9, 130)}


def forward_both_ways(monkeypatch, x, scores, lengths):
    """The torch path's forward state (mu, sigma, weights, moments) from ser_fast._C and from torch ops."""
    assert attention_pool_cpu.compiled_pool_fits(x, scores, lengths, False)
    compiled = attention_pool_cpu.forward(x, scores, lengths, False, 1e-5)
    with monkeypatch.context() as patch:
        patch.setattr(attention_pool_cpu, "compiled_pool_fits", lambda *args: False)
        ops = attention_pool_cpu.forward(x, scores, lengths, False, 1e-5)
    return compiled, ops


@needs_compiled_pool
@pytest.mark.parametrize("lengths_kind", LENGTHS)
@pytest.mark.parametrize("shape", [pytest.param(v, id=k) for k, v in COMPILED_SHAPES.items()])
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_compiled_forward_of_shared_scores_matches_torch_ops(monkeypatch, isa, shape, lengths_kind):
    """csrc/attention_pool, each instruction-set copy this CPU runs, on two threads (B=33 is split between them):
    the same weights and mu as the torch ops it replaces, hence the same gradients."""
    import ser_fast

    try:
        ser_fast.set_cpu_isa(isa)
    except ValueError:
        pytest.skip(f"this CPU cannot run the {isa} kernels")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x, scores, _ = make_inputs(shape, False, "none", torch.float32, score_scale=4.0)
        B, T, _ = shape
        # Full length, a single frame and a middle one, in turn.
        lengths = torch.tensor([(T, 1, (T + 1) // 2)[b % 3] for b in range(B)]) if lengths_kind == "ragged" else None
        (mu, sigma, weights, moments), (mu_ops, _, weights_ops, moments_ops) = forward_both_ways(
            monkeypatch, x, scores, lengths)
    finally:
        torch.set_num_threads(threads)
        ser_fast.set_cpu_isa(None)
    assert sigma is None
    assert_close(weights, weights_ops, atol=2e-6, rtol=2e-5, msg=f"{isa} weights")
    assert_close(mu, mu_ops, atol=2e-6, rtol=2e-5, msg=f"{isa} mu")
    assert moments.shape == moments_ops.shape and mu.data_ptr() == moments.data_ptr(), "mu is the moments' view"
    if lengths is not None:
        for b, n in enumerate(lengths.tolist()):
            assert bool((weights[b, n:] == 0).all()), "padded frames must get exactly zero weight"


@needs_compiled_pool
def test_compiled_forward_follows_torch_at_the_edges(monkeypatch):
    """A NaN score makes its sequence NaN, as torch.softmax does; a length above T counts as T (no read outside x);
    a length below 1 gives NaN."""
    x, scores, _ = make_inputs((4, 6, 5), False, "none", torch.float32)
    scores[1, 2] = float("nan")
    compiled, ops = forward_both_ways(monkeypatch, x, scores, None)
    assert bool(compiled[0][1].isnan().all()) and bool(ops[0][1].isnan().all())
    assert_close(compiled[0][[0, 2, 3]], ops[0][[0, 2, 3]], atol=2e-6, rtol=2e-5, msg="the other sequences")
    scores[1, 2] = 0.0
    long, _ = forward_both_ways(monkeypatch, x, scores, torch.tensor([6, 9, 6, 6]))
    full, _ = forward_both_ways(monkeypatch, x, scores, None)
    assert_close(long[0], full[0], atol=0, msg="a length above T counts as T")
    empty, _ = forward_both_ways(monkeypatch, x, scores, torch.tensor([6, 0, 6, 6]))
    assert bool(empty[0][1].isnan().all()) and not bool(empty[0][[0, 2, 3]].isnan().any())


@needs_compiled_pool
@pytest.mark.parametrize("case", ["float64", "bfloat16", "non-contiguous-x", "non-contiguous-scores",
                                  "per-channel-scores", "with-std"])
def test_other_inputs_take_torch_ops(case):
    x, scores, _ = make_inputs((3, 7, 5), case == "per-channel-scores", "none", torch.float32)
    if case in ("float64", "bfloat16"):
        dtype = getattr(torch, case)
        x, scores = x.to(dtype), scores.to(dtype)
    if case == "non-contiguous-x":
        x = x.transpose(0, 1).contiguous().transpose(0, 1)
    if case == "non-contiguous-scores":
        scores = scores.t().contiguous().t()
    assert not attention_pool_cpu.compiled_pool_fits(x, scores, None, case == "with-std")


@needs_compiled_pool
@pytest.mark.parametrize("kwargs, pattern", [
    pytest.param(dict(x=torch.zeros(2, 3, 4, dtype=torch.float64)), "x must be a contiguous float32", id="x-float64"),
    pytest.param(dict(scores=torch.zeros(3, 2).t()), "scores must be a contiguous float32", id="scores-strided"),
    pytest.param(dict(scores=torch.zeros(2, 4)), r"scores has shape \[2, 4\]; expected \[2, 3\]", id="scores-shape"),
    pytest.param(dict(x=torch.zeros(2, 0, 4), scores=torch.zeros(2, 0)), "every size >= 1", id="empty-T"),
    pytest.param(dict(lengths=torch.ones(2, dtype=torch.int32)), "lengths must be a contiguous int64",
                 id="lengths-int32"),
    pytest.param(dict(lengths=torch.ones(3, dtype=torch.int64)), r"of shape \[2\]", id="lengths-shape"),
])
def test_compiled_pool_refuses_what_it_cannot_run(kwargs, pattern):
    from ser_fast._extension import extension

    args = dict(x=torch.zeros(2, 3, 4), scores=torch.zeros(2, 3), lengths=None) | kwargs
    with pytest.raises(ValueError, match=pattern):
        extension().attention_pool_shared_forward(**args)
