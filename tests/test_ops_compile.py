"""The fused ops as torch.library custom ops: opcheck of every op on odd shapes (schema, autograd
registration, fake tensors, AOT dispatch with dynamic shapes), torch.compile(fullgraph=True) of
modules calling the public ops (no graph break, eager results and gradients), DSNet compiled with
no graph break from the ops, and ONNX export through ser_fast.ops.export run in onnxruntime."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from helpers import assert_close

from ser_fast.ops import attention_pool, moe, orthogonality_loss
from ser_fast.ops.attention_pool import attention_pool_backward_op, attention_pool_op
from ser_fast.ops.moe import moe_experts_backward_op, moe_experts_op, moe_routing_backward_op, moe_routing_op
from ser_fast.ops.orthogonality_loss import orthogonality_loss_backward_op, orthogonality_loss_op

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
BACKENDS = [pytest.param("torch", id="torch"), pytest.param("triton", id="triton", marks=needs_triton)]
LAYOUTS = [pytest.param(False, id="scores-BT"), pytest.param(True, id="scores-BTD")]
STDS = [pytest.param(False, id="mean"), pytest.param(True, id="mean-std")]
LENGTHS = [pytest.param(False, id="no-lengths"), pytest.param(True, id="lengths")]
OPCHECK_TESTS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each test compiles its own functions; dynamo's caches and recompile counts start empty."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pool_inputs(B=3, T=7, D=5, *, per_channel=False, with_lengths=True, seed=0):
    g = _generator(seed)
    x = torch.randn(B, T, D, generator=g)
    scores = torch.randn(*((B, T, D) if per_channel else (B, T)), generator=g)
    lengths = torch.tensor([T, 1, (T + 1) // 2][:B]) if with_lengths else None
    return x, scores, lengths


def orthogonality_inputs(G=2, N=7, D1=5, D2=3, seed=0):
    g = _generator(seed)
    shared = torch.randn(G, N, 1, generator=g)
    return torch.randn(G, N, D1, generator=g) + shared, torch.randn(G, N, D2, generator=g) - shared


def moe_inputs(N=7, D=5, H=6, D_out=3, E=3, R=2, seed=0):
    g = _generator(seed)
    return (
        torch.randn(N, D, generator=g),
        torch.randn(R, N, E, generator=g),
        torch.randn(E, D, H, generator=g) / D**0.5,
        torch.randn(E, H, generator=g) * 0.1,
        torch.randn(E, H, D_out, generator=g) / H**0.5,
        torch.randn(E, D_out, generator=g) * 0.1,
    )


def routed(N=7, E=3, R=2, k=2, seed=0):
    """experts [R, N, k] (distinct per frame), float32 gates and the valid frames (the last padded)."""
    g = _generator(seed)
    experts = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(R * N)]).view(R, N, k)
    gates = torch.rand(R, N, k, generator=g)
    valid = torch.ones(N, dtype=torch.bool)
    valid[-1] = False
    return experts, gates, valid


def assert_opcheck(op, args):
    results = torch.library.opcheck(op, args, test_utils=OPCHECK_TESTS)
    assert all(result == "SUCCESS" for result in results.values()), results


def leaves(*tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


@pytest.mark.parametrize("with_lengths", LENGTHS)
@pytest.mark.parametrize("return_std", STDS)
@pytest.mark.parametrize("per_channel", LAYOUTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_attention_pool(backend, per_channel, return_std, with_lengths):
    x, scores, lengths = pool_inputs(per_channel=per_channel, with_lengths=with_lengths)
    x, scores = leaves(x, scores)
    assert_opcheck(attention_pool_op, (x, scores, lengths, return_std, 1e-5, backend))
    _, _, softmax_state, moments = attention_pool_op(x.detach(), scores.detach(), lengths, return_std, 1e-5, backend)
    g = _generator(1)
    g_mu = torch.randn(3, 5, generator=g)
    g_sigma = torch.randn(3, 5, generator=g) if return_std else torch.zeros(0)
    assert_opcheck(attention_pool_backward_op, (g_mu, g_sigma, x.detach(), scores.detach(), lengths, softmax_state,
                                                moments, return_std, 1e-5, backend, True, True))


@pytest.mark.parametrize("reduction", [pytest.param("sum", id="sum"), pytest.param("mean", id="mean")])
@pytest.mark.parametrize("shape", [pytest.param((2, 7, 5, 3), id="G2-N7-D5x3-correlation"),
                                   pytest.param((2, 3, 6, 7), id="G2-N3-D6x7-gram")])
@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_orthogonality_loss(backend, shape, reduction):
    z1, z2 = leaves(*orthogonality_inputs(*shape))
    assert_opcheck(orthogonality_loss_op, (z1, z2, reduction, 1e-5, backend))
    _, *state = orthogonality_loss_op(z1.detach(), z2.detach(), reduction, 1e-5, backend)
    grad = torch.randn(shape[0], generator=_generator(1))
    assert_opcheck(orthogonality_loss_backward_op, (grad, z1.detach(), z2.detach(), state, reduction, backend,
                                                    True, True))


@pytest.mark.parametrize("activation", [pytest.param("relu", id="relu"), pytest.param("gelu", id="gelu")])
@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_moe_experts(backend, activation):
    x, _, w1, b1, w2, b2 = leaves(*moe_inputs())
    experts, gates, valid = routed()
    gates = gates.requires_grad_()
    assert_opcheck(moe_experts_op, (x, experts, gates, valid, w1, b1, w2, b2, activation, backend))
    plain = [t.detach() for t in (x, gates, w1, b1, w2, b2)]
    x, gates, w1, b1, w2, b2 = plain
    y, *state = moe_experts_op(x, experts, gates, valid, w1, b1, w2, b2, activation, backend)
    grad_y = torch.randn(y.shape, generator=_generator(1))
    assert_opcheck(moe_experts_backward_op, (grad_y, x, gates, w1, w2, state, activation, backend))


@needs_triton
@pytest.mark.parametrize("normalize_gates", [pytest.param(False, id="softmax-gates"),
                                             pytest.param(True, id="normalized-gates")])
def test_opcheck_moe_routing(normalize_gates):
    logits = torch.randn(7, 5, generator=_generator(0)).requires_grad_()
    assert_opcheck(moe_routing_op, (logits, 2, normalize_gates))
    probs, experts, gates = moe_routing_op(logits.detach(), 2, normalize_gates)
    g = _generator(1)
    grad_gates, grad_probs = torch.randn(gates.shape, generator=g), torch.randn(probs.shape, generator=g)
    assert_opcheck(moe_routing_backward_op, (probs, experts, gates, grad_gates, grad_probs, normalize_gates))


def eager_and_compiled(fn, inputs, *, backend="aot_eager"):
    """fn's outputs and the gradients of their sum with fixed weights, eagerly and compiled with
    fullgraph=True (a graph break raises)."""
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    results = []
    for run in (fn, compiled):
        tensors = [t.detach().clone().requires_grad_() if t.is_floating_point() else t for t in inputs]
        outputs = run(*tensors)
        g = _generator(5)
        loss = sum((o.float() * torch.randn(o.shape, generator=g)).sum() for o in outputs)
        differentiable = [t for t in tensors if t.requires_grad]
        grads = torch.autograd.grad(loss, differentiable)
        results.append([o.detach() for o in outputs] + list(grads))
    return results


def assert_same(results, atol, what):
    eager, compiled = results
    assert len(eager) == len(compiled)
    for i, (e, c) in enumerate(zip(eager, compiled)):
        assert_close(c, e, atol=atol, msg=f"{what}: output/gradient {i}")


@pytest.mark.parametrize("with_lengths", LENGTHS)
@pytest.mark.parametrize("return_std", STDS)
@pytest.mark.parametrize("per_channel", LAYOUTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_pool_compiles_to_one_graph(backend, per_channel, return_std, with_lengths):
    x, scores, lengths = pool_inputs(B=3, T=9, D=6, per_channel=per_channel, with_lengths=with_lengths, seed=2)
    inputs = [x, scores] + ([lengths] if with_lengths else [])

    def pooled(x, scores, lengths=None):
        out = attention_pool(torch.tanh(x), scores * 2, lengths, return_std=return_std, backend=backend)
        return out if return_std else (out,)

    assert_same(eager_and_compiled(pooled, inputs), 1e-6, "attention_pool")


@pytest.mark.parametrize("backend", BACKENDS)
def test_orthogonality_loss_compiles_to_one_graph(backend):
    z1, z2 = orthogonality_inputs(G=1, N=8, D1=6, D2=5, seed=3)

    def loss(z1, z2):
        return (orthogonality_loss(z1[0] * 2, z2[0], reduction="mean", backend=backend),
                orthogonality_loss(z1, z2.sin(), backend=backend))

    assert_same(eager_and_compiled(loss, [z1, z2]), 1e-5, "orthogonality_loss")


@pytest.mark.parametrize("backend", BACKENDS)
def test_moe_compiles_to_one_graph(backend):
    x, logits, w1, b1, w2, b2 = moe_inputs(N=9, D=5, H=6, D_out=4, E=4, R=2, seed=4)
    mask = torch.zeros(9, dtype=torch.bool)
    mask[-2:] = True

    def mixture(x, logits, w1, b1, w2, b2, mask):
        y, aux = moe(x, logits, w1, b1, w2, b2, k=2, activation="gelu", mask=mask, backend=backend)
        return y, aux.load_balancing_loss, aux.router_z_loss

    assert_same(eager_and_compiled(mixture, [x, logits, w1, b1, w2, b2, mask]), 1e-5, "moe")


def test_inductor_runs_the_ops():
    """Inductor compiles the torch ops around the custom ops; the ops run as themselves."""
    x, scores, lengths = pool_inputs(B=3, T=9, D=6, seed=6)
    z1, z2 = orthogonality_inputs(G=1, N=8, D1=6, D2=5, seed=7)

    def both(x, scores, lengths, z1, z2):
        mu, sigma = attention_pool(x, scores, lengths, return_std=True)
        return mu, sigma, orthogonality_loss(z1, z2 * mu[:1, :5].sum())

    assert_same(eager_and_compiled(both, [x, scores, lengths, z1, z2], backend="inductor"), 1e-5, "inductor")


def test_value_checks_run_eagerly_and_are_skipped_in_graphs():
    x, scores, _ = pool_inputs(B=2, T=4, D=3, with_lengths=False)
    bad = torch.tensor([4, 5])
    with pytest.raises(ValueError, match=r"lengths\[1\] is 5, more than the T = 4"):
        attention_pool(x, scores, bad)
    attention_pool(x, scores, bad, check_values=False)
    compiled = torch.compile(lambda x, s, n: attention_pool(x, s, n), fullgraph=True, backend="eager")
    compiled(x, scores, bad)
    with pytest.raises(TypeError, match="check_values must be a bool"):
        attention_pool(x, scores, check_values=1)


@pytest.mark.parametrize("per_channel", LAYOUTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_unchecked_lengths_above_t_act_as_t(backend, per_channel):
    """Lengths the caller chose not to check never move a read past x: above T they act as T."""
    x, scores, _ = pool_inputs(B=3, T=7, D=5, per_channel=per_channel, with_lengths=False, seed=8)
    results = []
    for lengths, check_values in ((torch.tensor([7, 50, 3]), False), (torch.tensor([7, 7, 3]), True)):
        xs, ss = leaves(x, scores)
        mu, sigma = attention_pool(xs, ss, lengths, return_std=True, backend=backend, check_values=check_values)
        results.append([mu, sigma, *torch.autograd.grad((mu.sum() + sigma.sum()), (xs, ss))])
    for got, want in zip(*results):
        assert_close(got, want, atol=0.0, msg=f"{backend} lengths above T")


def test_moe_logit_check_runs_eagerly_and_can_be_skipped():
    x, logits, w1, b1, w2, b2 = moe_inputs(R=1)
    logits = logits[0].clone()
    logits[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity"):
        moe(x, logits, w1, b1, w2, b2, k=2)
    y, _ = moe(x, logits, w1, b1, w2, b2, k=2, check_values=False)
    assert y.shape == (7, 3)


def _breaks_in(explanation, paths):
    reasons = []
    for reason in explanation.break_reasons:
        frames = [frame.filename.replace("\\", "/") for frame in reason.user_stack]
        if any(path in filename for filename in frames for path in paths):
            reasons.append(reason)
    return reasons


def test_dsnet_compiles_with_no_graph_break_from_the_ops():
    """torch.compile of DSNet's inference graph on features [B, 3, T, 80] with lengths: no graph
    break comes from ser_fast.ops or the kernels (the models' own input checks may read values)."""
    from ser_fast.models import DSNet

    torch.manual_seed(0)
    model = DSNet(num_classes=4).eval()
    features = torch.randn(3, 3, 64, 80)
    lengths = torch.tensor([64, 40, 17])
    explanation = torch._dynamo.explain(model)(features, lengths)
    assert not _breaks_in(explanation, ("ser_fast/ops/", "/kernels/", "ser_fast/kernels/")), explanation
    with torch.no_grad():
        expected = model(features, lengths)
        compiled = torch.compile(model, backend="aot_eager")(features, lengths)
    assert_close(compiled, expected, atol=1e-5, msg="DSNet logits compiled")


class _PoolingHead(torch.nn.Module):
    """A scorer, attention pooling with lengths (mean and std) and a linear readout."""

    def __init__(self, dim: int = 6, classes: int = 3):
        super().__init__()
        self.scorer = torch.nn.Linear(dim, 1)
        self.readout = torch.nn.Linear(2 * dim, classes)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        scores = self.scorer(frames).squeeze(-1)
        mu, sigma = attention_pool(frames, scores, lengths, return_std=True)
        return torch.softmax(self.readout(torch.cat([mu, sigma], dim=1)), dim=1)


def test_onnx_export_goes_through_the_reference():
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    from ser_fast.ops.export import onnx_program

    torch.manual_seed(0)
    module = _PoolingHead().eval()
    example = (torch.randn(2, 8, 6), torch.tensor([8, 5]))
    batch, frames = torch.export.Dim("batch", min=2), torch.export.Dim("frames", min=2)
    program = onnx_program(module, example, dynamic_shapes={"frames": {0: batch, 1: frames}, "lengths": {0: batch}},
                           input_names=["frames", "lengths"], output_names=["probabilities"], verbose=False)
    ops = {node.domain or "ai.onnx" for node in program.model_proto.graph.node}
    assert ops == {"ai.onnx"}, f"the graph holds ops outside ONNX: {ops}"
    session = onnxruntime.InferenceSession(program.model_proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    frames_in, lengths_in = torch.randn(3, 11, 6, generator=_generator(9)), torch.tensor([11, 1, 6])
    (got,) = session.run(None, {"frames": frames_in.numpy(), "lengths": lengths_in.numpy()})
    with torch.no_grad():
        expected = module(frames_in, lengths_in)
    assert_close(torch.from_numpy(got), expected, atol=1e-5, msg="onnxruntime vs eager")
