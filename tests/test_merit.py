"""Sparse MERIT's network: the four expert-pool designs do what they say, routers learn only where
they should, forcing every router onto one expert gives the single-expert (multi-task) model, the
enhanced waveform keeps the input's length, the objective's terms and the config checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close

from ser_fast.models.merit import (
    ExpertPool,
    MeritConfig,
    SEThenSER,
    SparseMERIT,
    class_weights,
)

SMALL = {"expert_hidden": 32, "expert_dim": 24, "ser_hidden": 16, "se_hidden": 16, "dropout": 0.0}


pytestmark = pytest.mark.usefixtures("one_thread", "quiet_hf_mask_warning")


def batch(lengths=(7919, 4001, 6400), seed=0):
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    wave = 0.1 * torch.randn(len(lengths), width, generator=generator)
    lengths = torch.tensor(lengths)
    wave = wave * (torch.arange(width) < lengths.view(-1, 1))
    return wave, lengths


def each_expert(pool: ExpertPool, x: torch.Tensor) -> torch.Tensor:
    """``[E, N, D_out]`` by plain per-expert layers, the definition the designs are checked against."""
    return torch.stack([F.relu(x @ pool.w1[e] + pool.b1[e]) @ pool.w2[e] + pool.b2[e] for e in range(pool.num_experts)])


@pytest.mark.parametrize("experts,k", [(3, 1), (4, 2), (5, 5)], ids=["E3-k1", "E4-k2", "E5-k5"])
@pytest.mark.parametrize("design", ["sparse", "released", "dense"])
def test_designs_combine_the_experts_as_documented(design, experts, k):
    torch.manual_seed(1)
    pool = ExpertPool(10, num_experts=experts, hidden_dim=12, output_dim=7, top_k=k, design=design).double()
    x = torch.randn(63, 10, dtype=torch.float64)
    padding = torch.zeros(63, dtype=torch.bool)
    padding[-5:] = True
    out = pool(x, padding)
    every = each_expert(pool, x)
    for r, task in enumerate(("ser", "se")):
        logits = pool.routers[task](x)
        probs = torch.softmax(logits, -1)
        chosen = torch.sort(logits, dim=-1, descending=True, stable=True).indices[:, :k]
        if design == "dense":
            weights = probs
        else:
            weights = torch.zeros_like(probs).scatter(-1, chosen, 1.0)
            if design == "sparse":
                weights = weights * probs
        expected = torch.einsum("ne,end->nd", weights, every) * (~padding).view(-1, 1)
        assert_close(out.features[r], expected, atol=1e-10, msg=f"{design} {task}")
    assert torch.equal(out.aux.expert_counts.sum(-1), torch.full((2,), 58 * k))


@pytest.mark.parametrize("design,router_learns", [("sparse", True), ("dense", True), ("released", False)])
def test_only_gate_scaled_designs_train_their_routers(design, router_learns):
    torch.manual_seed(0)
    model = SparseMERIT(MeritConfig(design=design, **SMALL))
    wave, lengths = batch()
    model.losses(wave, wave, torch.tensor([0, 1, 2]), lengths).total.backward()
    for task in ("ser", "se"):
        grad = model.heads.experts.routers[task].weight.grad
        learns = grad is not None and bool(grad.abs().sum() > 0)
        assert learns == router_learns, f"{design}: router {task} gradient {grad}"
    assert model.heads.experts.w1.grad is not None and bool(model.heads.experts.w1.grad.abs().sum() > 0)


def test_routers_forced_onto_one_expert_equal_the_single_expert_model():
    torch.manual_seed(0)
    sparse = SparseMERIT(MeritConfig(design="sparse", num_experts=3, **SMALL)).eval()
    single = SparseMERIT(MeritConfig(design="mtl", **SMALL)).eval()
    state = {k: v for k, v in sparse.state_dict().items() if not k.startswith("heads.experts.")}
    pool = sparse.heads.experts
    for name in ("w1", "b1", "w2", "b2"):
        state[f"heads.experts.{name}"] = getattr(pool, name)[:1].detach().clone()
    for task in ("ser", "se"):
        state[f"heads.experts.routers.{task}.weight"] = single.heads.experts.routers[task].weight.detach()
        state[f"heads.experts.routers.{task}.bias"] = single.heads.experts.routers[task].bias.detach()
    single.load_state_dict(state)
    with torch.no_grad():
        for task in ("ser", "se"):
            # softmax puts probability exp(-60) ≈ 1e-26 on the others: the gate of expert 0 is 1.0 in float32
            pool.routers[task].weight.zero_()
            pool.routers[task].bias.copy_(torch.tensor([60.0, 0.0, 0.0]))
        wave, lengths = batch()
        a, b = sparse(wave, lengths), single(wave, lengths)
    assert_close(a.logits, b.logits, atol=1e-5, msg="logits")
    assert_close(a.se_mask, b.se_mask, atol=1e-5, msg="SE mask")
    assert a.aux.expert_counts[:, 1:].sum() == 0


@pytest.mark.parametrize("model_class", [SparseMERIT, SEThenSER], ids=["sparse-merit", "se-then-ser"])
@pytest.mark.parametrize("length", [4001, 7919, 16000], ids=lambda n: f"{n}-samples")
def test_enhanced_waveform_keeps_the_input_length(model_class, length):
    torch.manual_seed(0)
    model = model_class(MeritConfig(design="se-preprocess" if model_class is SEThenSER else "sparse", **SMALL)).eval()
    wave, lengths = batch((length, max(length // 2, 801)))
    enhanced = model.enhance(wave, lengths)
    assert enhanced.shape == wave.shape
    assert torch.isfinite(enhanced).all()


def test_the_objective_adds_its_terms_with_their_weights():
    torch.manual_seed(0)
    model = SparseMERIT(MeritConfig(se_weight=0.5, balance_weight=0.25, **SMALL)).eval()
    wave, lengths = batch()
    clean = 0.5 * wave
    losses = model.losses(wave, clean, torch.tensor([0, 3, 1]), lengths, class_weight=torch.tensor([1., 2., 3., 4.]))
    assert_close(losses.total, losses.ce + 0.5 * losses.se_l1 + 0.25 * losses.balance, atol=1e-6)
    out = model(wave, lengths)
    expected_ce = F.cross_entropy(out.logits, torch.tensor([0, 3, 1]), weight=torch.tensor([1., 2., 3., 4.]))
    assert_close(losses.ce, expected_ce, atol=1e-6)
    assert_close(losses.balance, out.aux.load_balancing_loss.mean(), atol=1e-6)


def test_class_weights_are_n_over_c_times_n_c():
    weights = class_weights(torch.tensor([0, 0, 0, 1, 2, 2]), 4)
    assert_close(weights, torch.tensor([6 / (4 * 3), 6 / 4, 6 / (4 * 2), 0.0]), atol=1e-7)


@pytest.mark.parametrize("overrides,words", [
    pytest.param({"design": "moe"}, "design", id="unknown-design"),
    pytest.param({"top_k": 4, "num_experts": 3}, "top_k", id="k-above-E"),
    pytest.param({"num_experts": 0}, "num_experts", id="no-experts"),
    pytest.param({"combine": "sum"}, "combine", id="unknown-combine"),
    pytest.param({"dropout": 1.0}, "dropout", id="dropout-one"),
    pytest.param({"num_classes": 1}, "num_classes", id="one-class"),
])
def test_bad_settings_are_rejected_naming_them(overrides, words):
    with pytest.raises(ValueError, match=words):
        MeritConfig(**overrides)


@pytest.mark.parametrize("call,words", [
    pytest.param(lambda m, w, n: m(w[0], n), "wave must be a float tensor", id="1-d-wave"),
    pytest.param(lambda m, w, n: m(w.long(), n), "wave must be a float tensor", id="int-wave"),
    pytest.param(lambda m, w, n: m(w, torch.tensor([1, 2])), "lengths must be a tensor", id="lengths-shape"),
    pytest.param(lambda m, w, n: m(w, n * 4), "lengths must be in", id="lengths-too-long"),
    pytest.param(lambda m, w, n: m.losses(w, w[:, :100], torch.tensor([0, 1, 2]), n), "clean must match",
                 id="clean-shape"),
    pytest.param(lambda m, w, n: m.losses(w, w, torch.tensor([0, 1, 9]), n), "labels must be in", id="bad-label"),
])
def test_bad_inputs_are_rejected_with_what_was_expected(call, words):
    model = SparseMERIT(MeritConfig(**SMALL))
    wave, lengths = batch()
    with pytest.raises(ValueError, match=words):
        call(model, wave, lengths)


def test_the_cascade_baseline_keeps_the_ser_loss_out_of_the_se_model():
    torch.manual_seed(0)
    model = SEThenSER(MeritConfig(design="se-preprocess", **SMALL))
    wave, lengths = batch()
    out = model(wave, lengths)
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2])).backward()
    assert all(p.grad is None or not p.grad.any() for p in model.se_head.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.ser_head.parameters())
