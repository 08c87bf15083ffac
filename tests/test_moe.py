"""moe: the Triton kernels (interpreted on CPU) and the torch path against the reference, forward,
aux and every gradient; the routing rules; the sparsity of the work; the input checks."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close
from torch.utils.flop_counter import FlopCounterMode

from ser_fast.ops import _backend
from ser_fast.ops.moe import moe
from ser_fast.ops.moe.naive import moe_dense, moe_ref
from ser_fast.ops.moe.routing import build_dispatch, top_k_experts

GRAD_NAMES = ("x", "router_logits", "w1", "b1", "w2", "b2")


def make_inputs(frames, dim, hidden, dim_out, experts, routers=0, *, dtype=torch.float32, seed=0, ties=False):
    g = torch.Generator().manual_seed(seed)
    logits_shape = (routers, frames, experts) if routers else (frames, experts)
    logits = torch.randn(logits_shape, generator=g)
    if ties:
        logits = torch.round(logits)  # many exact ties, and whole rows of equal logits below
        logits[..., 0, :] = 0.5
    tensors = (
        torch.randn(frames, dim, generator=g),
        logits,
        torch.randn(experts, dim, hidden, generator=g) / dim**0.5,
        torch.randn(experts, hidden, generator=g) * 0.1,
        torch.randn(experts, hidden, dim_out, generator=g) / hidden**0.5,
        torch.randn(experts, dim_out, generator=g) * 0.1,
    )
    return [t.to(dtype) if i != 1 else t for i, t in enumerate(tensors)]


def run(fn, inputs, grad_y_seed=1, **options):
    leaves = [t.clone().requires_grad_() for t in inputs]
    y, aux = fn(*leaves, **options)
    grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_y_seed)).to(y.dtype)
    loss = (y.float() * grad_y.float()).sum() + aux.load_balancing_loss.sum() + 0.1 * aux.router_z_loss.sum()
    loss.backward()
    return y.detach(), aux, [t.grad for t in leaves]


def padding_mask(frames, padded):
    mask = torch.zeros(frames, dtype=torch.bool)
    if padded:
        mask[frames - padded:] = True
    return mask


CASES = [
    pytest.param(dict(frames=1, dim=5, hidden=7, dim_out=3, experts=1, k=1), id="T1-E1-k1"),
    pytest.param(dict(frames=63, dim=37, hidden=70, dim_out=45, experts=3, k=2, padded=5), id="T63-E3-k2-relu-padded"),
    pytest.param(dict(frames=151, dim=20, hidden=33, dim_out=17, experts=8, k=2, routers=2, activation="gelu",
                      normalize_gates=True), id="T151-E8-k2-R2-gelu-normalized"),
    pytest.param(dict(frames=40, dim=16, hidden=24, dim_out=9, experts=3, k=3, activation="silu"), id="T40-E3-kE-silu"),
    pytest.param(dict(frames=33, dim=11, hidden=19, dim_out=13, experts=8, k=1, routers=2, padded=32),
                 id="E8-k1-R2-all-padded-but-one"),
    pytest.param(dict(frames=29, dim=9, hidden=17, dim_out=5, experts=3, k=2, routers=2, ties=True), id="router-ties"),
]


def _split(case):
    case = dict(case)
    make = {key: case.pop(key) for key in ("frames", "dim", "hidden", "dim_out", "experts")}
    make["routers"] = case.pop("routers", 0)
    make["ties"] = case.pop("ties", False)
    mask = padding_mask(make["frames"], case.pop("padded", 0))
    return make, dict(mask=mask, **case)


def assert_aux_equal(aux, expected):
    assert torch.equal(aux.expert_counts, expected.expert_counts)
    assert_close(aux.load_balancing_loss, expected.load_balancing_loss, atol=1e-6, msg="load-balancing loss")
    assert_close(aux.router_z_loss, expected.router_z_loss, atol=1e-5, rtol=1e-6, msg="router z-loss")


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("case", CASES)
def test_matches_reference_fp32(case, backend):
    make, options = _split(case)
    inputs = make_inputs(**make)
    y, aux, grads = run(lambda *t, **o: moe(*t, backend=backend, **o), inputs, **options)
    y_ref, aux_ref, grads_ref = run(moe_ref, inputs, **options)
    assert_close(y, y_ref, atol=2e-5, rtol=1e-5, msg="y")
    assert_aux_equal(aux, aux_ref)
    for name, grad, grad_ref in zip(GRAD_NAMES, grads, grads_ref):
        assert_close(grad, grad_ref, atol=5e-5, rtol=1e-4, msg=f"grad {name}")


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("case", [CASES[1], CASES[2]])
def test_bf16_within_pytorch_error(case, backend):
    make, options = _split(case)
    inputs = make_inputs(**make, dtype=torch.bfloat16)
    wide = [t.double() for t in inputs]
    y, _, grads = run(lambda *t, **o: moe(*t, backend=backend, **o), inputs, **options)
    y_pt, _, grads_pt = run(moe_ref, inputs, **options)
    y_ref, _, grads_ref = run(moe_ref, wide, **options)
    assert y.dtype == torch.bfloat16
    # Elementwise, the bound is twice PyTorch's own bf16 error there; rounding in other places (one
    # rounding of a float32 sum instead of bf16 partial sums) moves the errors around, so the floor
    # is PyTorch's worst bf16 error on that tensor.
    for name, out, out_pt, out_ref in zip(("y", *GRAD_NAMES), (y, *grads), (y_pt, *grads_pt), (y_ref, *grads_ref)):
        floor = float((out_pt.double() - out_ref).abs().max())
        assert_close(out, out_ref, baseline=out_pt, atol=floor + 1e-3, msg=f"{name} bf16")


@pytest.mark.parametrize("fn", [moe_ref, lambda *t, **o: moe(*t, backend="torch", **o)], ids=["reference", "torch"])
def test_gradcheck_float64(fn):
    x, logits, w1, b1, w2, b2 = (t.double() for t in make_inputs(7, 3, 4, 2, 3, routers=2, seed=3))
    mask = padding_mask(7, 1)

    def f(*tensors):
        y, aux = fn(*tensors, k=2, activation="gelu", mask=mask, normalize_gates=True)
        return y, aux.load_balancing_loss, aux.router_z_loss

    inputs = [t.requires_grad_() for t in (x, logits, w1, b1, w2, b2)]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


def test_dense_design_matches_reference():
    inputs = make_inputs(50, 12, 20, 7, 5, routers=2)
    options = dict(k=2, activation="relu", mask=padding_mask(50, 4))
    y, aux, grads = run(moe_dense, inputs, **options)
    y_ref, aux_ref, grads_ref = run(moe_ref, inputs, **options)
    assert_close(y, y_ref, atol=1e-5, msg="y")
    assert_aux_equal(aux, aux_ref)
    for name, grad, grad_ref in zip(GRAD_NAMES, grads, grads_ref):
        assert_close(grad, grad_ref, atol=2e-5, rtol=1e-5, msg=f"grad {name}")


def test_ties_go_to_the_lower_expert_index():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 2.0, 1.0], [3.0, 1.0, 3.0, 3.0]])
    assert top_k_experts(logits, 2).tolist() == [[0, 1], [1, 2], [0, 2]]
    from ser_fast.kernels.moe_routing import moe_routing_fwd

    _, experts, gates = moe_routing_fwd(logits, 2, normalize=False)
    assert experts.tolist() == [[0, 1], [1, 2], [0, 2]]
    assert_close(gates, torch.softmax(logits, -1).gather(1, experts), atol=1e-7, msg="gates")


@pytest.mark.parametrize("backend", ["reference", "torch", "triton"])
def test_padding_frames_output_zero_and_count_nowhere(backend):
    inputs = make_inputs(20, 6, 8, 5, 4)
    mask = padding_mask(20, 7)
    y, aux, grads = run(lambda *t, **o: moe(*t, backend=backend, **o), inputs, k=2, mask=mask)
    assert torch.all(y[mask] == 0)
    assert torch.all(grads[0][mask] == 0) and torch.all(grads[1][mask] == 0)
    assert int(aux.expert_counts.sum()) == 13 * 2


def test_uniform_routing_has_unit_load_balancing_loss():
    frames, experts = 12, 4
    logits = torch.full((frames, experts), -5.0)
    logits[torch.arange(frames), torch.arange(frames) % experts] = 5.0  # each expert gets 3 frames
    x, _, w1, b1, w2, b2 = make_inputs(frames, 3, 4, 2, experts)
    _, aux = moe(x, logits, w1, b1, w2, b2, k=1)
    assert aux.expert_counts.tolist() == [3, 3, 3, 3]
    assert_close(aux.load_balancing_loss, torch.tensor(1.0), atol=1e-6, msg="uniform load")
    assert_close(aux.router_z_loss, torch.logsumexp(logits, -1).pow(2).mean(), atol=1e-5, msg="z-loss")


def test_pairs_chosen_by_several_routers_are_computed_once():
    experts = torch.tensor([[[0, 1], [2, 0]], [[1, 0], [2, 1]]])  # 2 routers, 2 frames, k=2
    dispatch = build_dispatch(experts, torch.ones(2, dtype=torch.bool), 3)
    assert dispatch.pair_expert.tolist() == [0, 0, 1, 1, 2]
    assert dispatch.pair_frame.tolist() == [0, 1, 0, 1, 1]
    assert dispatch.expert_offsets.tolist() == [0, 2, 4, 5]
    pairs = torch.stack([dispatch.pair_frame, dispatch.pair_expert], 1)
    for r in range(2):
        for n in range(2):
            for j in range(2):
                assert pairs[dispatch.slot_pair[r, n, j]].tolist() == [n, int(experts[r, n, j])]


def _matmul_flops(fn, inputs, **options):
    with FlopCounterMode(display=False) as counter:
        run(fn, inputs, **options)
    return counter.get_total_flops()


def test_torch_path_runs_only_the_chosen_experts():
    frames, dim, hidden, experts, k = 64, 32, 64, 8, 2
    inputs = make_inputs(frames, dim, hidden, dim, experts, routers=2)
    inputs[1][1] = inputs[1][0]  # the second router agrees with the first: each pair is computed once
    sparse = _matmul_flops(lambda *t, **o: moe(*t, backend="torch", **o), inputs, k=k)
    dense = _matmul_flops(moe_dense, inputs, k=k)
    per_pair = 2 * (dim * hidden + hidden * dim) * 3  # forward + two backward matmuls per layer
    assert sparse == pytest.approx(frames * k * per_pair, rel=0.02)
    assert dense >= frames * experts * per_pair


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        moe(*make_inputs(4, 3, 4, 2, 2), backend="cuda")


def test_triton_by_name_refuses_float64():
    with pytest.raises(TypeError, match="backend='triton' supports float32"):
        moe(*[t.double() for t in make_inputs(4, 3, 4, 2, 2)], backend="triton")


def test_triton_by_name_never_falls_back(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        moe(*make_inputs(4, 3, 4, 2, 2), backend="triton")


@pytest.mark.parametrize("backend, target", [("auto", "cpu.moe_torch"), ("torch", "cpu.moe_torch"),
                                             ("reference", "naive.moe_ref")])
def test_backend_runs_the_named_path(monkeypatch, backend, target):
    module_name, function = target.split(".")
    module = __import__(f"ser_fast.ops.moe.{module_name}", fromlist=[function])
    calls = []
    original = getattr(module, function)
    monkeypatch.setattr(module, function, lambda *a, **kw: calls.append(1) or original(*a, **kw))
    moe(*make_inputs(4, 3, 4, 2, 2), backend=backend)
    assert calls == [1]
    assert _backend.resolve_backend(backend, torch.zeros(1), op="moe") == ("torch" if backend == "auto" else backend)


BAD_INPUTS = [
    pytest.param(dict(x=torch.zeros(4, 3, 1)), "x must be \\[N, D\\]", id="x-3d"),
    pytest.param(dict(x=torch.zeros(4, 3, dtype=torch.int64)), "floating-point", id="x-int"),
    pytest.param(dict(w1=torch.zeros(2, 5, 4)), "w1 must be \\[E, D=3, H\\]", id="w1-wrong-D"),
    pytest.param(dict(w2=torch.zeros(2, 5, 2)), "w2 must be \\[E=2, H=4, D_out\\]", id="w2-wrong-H"),
    pytest.param(dict(b1=torch.zeros(2, 5)), "b1 must be \\[E=2, H=4\\]", id="b1-shape"),
    pytest.param(dict(b2=torch.zeros(3, 2)), "b2 must be \\[E=2, D_out=2\\]", id="b2-shape"),
    pytest.param(dict(router_logits=torch.zeros(4, 3)), "router_logits must be \\[N=4, E=2\\]", id="logits-E"),
    pytest.param(dict(router_logits=torch.full((4, 2), float("nan"))), "NaN or infinity", id="logits-nan"),
    pytest.param(dict(w1=torch.zeros(2, 3, 4, dtype=torch.float64)), "w1 has dtype torch.float64", id="dtype-mix"),
    pytest.param(dict(k=3), "k must be an int in 1..E=2", id="k-too-large"),
    pytest.param(dict(k=0), "k must be an int in 1..E=2", id="k-zero"),
    pytest.param(dict(activation="tanh"), "unknown activation 'tanh'", id="activation"),
    pytest.param(dict(mask=torch.zeros(4)), "mask must be a bool tensor \\[N=4\\]", id="mask-float"),
    pytest.param(dict(mask=torch.zeros(5, dtype=torch.bool)), "mask must be a bool tensor \\[N=4\\]", id="mask-len"),
    pytest.param(dict(x=[[0.0] * 3] * 4), "x must be a torch.Tensor", id="x-list"),
]


@pytest.mark.parametrize("override, message", BAD_INPUTS)
def test_bad_inputs_are_explained(override, message):
    x, logits, w1, b1, w2, b2 = make_inputs(4, 3, 4, 2, 2)
    args = dict(x=x, router_logits=logits, w1=w1, b1=b1, w2=w2, b2=b2)
    options = {key: override.pop(key) for key in ("k", "activation", "mask") if key in override}
    args.update(override)
    with pytest.raises((ValueError, TypeError), match=message):
        moe(**args, **options)


def test_runs_under_bf16_autocast_at_its_inputs_dtype():
    inputs = make_inputs(30, 8, 12, 5, 3)
    expected, _, expected_grads = run(lambda *t, **o: moe(*t, backend="torch", **o), inputs, k=2)
    def forward_under_autocast(*tensors, **options):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return moe(*tensors, backend="torch", **options)

    # The backward runs outside autocast, as PyTorch recommends: the combine is plain torch ops,
    # whose backward would follow an autocast around loss.backward().
    y, _, grads = run(forward_under_autocast, inputs, k=2)
    assert y.dtype == torch.float32
    assert_close(y, expected, atol=1e-6, msg="y under autocast")
    for name, grad, grad_ref in zip(GRAD_NAMES, grads, expected_grads):
        assert_close(grad, grad_ref, atol=1e-6, msg=f"grad {name} under autocast")
