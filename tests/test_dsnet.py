"""DSNet and Baseline: Table 3's complexity, the inference path, the losses by hand, the ablation
switches, padding, bf16/channels_last, a tiny overfit, and input checks."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close
from torch import nn

from ser_fast.models import Baseline, DSNet, DSNetLosses, count_complexity

NUM_CLASSES = 4
N_MELS = 80
PAPER_SHAPE = (1, 3, 600, 80)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convs on a shared 2-core machine run ~10× faster on one thread than on two fighting
    the other workers' threads; conftest restores the count after each test."""
    torch.set_num_threads(1)


def features(batch: int, frames: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, frames, N_MELS, generator=torch.Generator().manual_seed(seed))


def seeded(model_class, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return model_class(**kwargs)


def _dsnet_training_path(model: DSNet):
    model.eval()  # a batch of one: BatchNorm1d needs running statistics
    return lambda x: model.training_forward(x, x)


# Table 3 (params in M, MACs in G at 600×80). The training path runs the encoder on X and X^n.
@pytest.mark.parametrize(
    "path, params_m, macs_g",
    [
        pytest.param(lambda: Baseline(), 1.23, 1.98, id="baseline"),
        pytest.param(lambda: DSNet(), 1.33, 1.98, id="dsnet-inference"),
        pytest.param(lambda: _dsnet_training_path(DSNet()), 1.63, 3.95, id="dsnet-training"),
    ],
)
def test_complexity_matches_table3_within_3_percent(path, params_m, macs_g):
    with torch.device("meta"):
        model_or_callable = path()
    params, macs = count_complexity(model_or_callable, PAPER_SHAPE, device="meta")
    assert abs(params / 1e6 - params_m) <= 0.03 * params_m, f"params {params / 1e6:.3f} M vs Table 3's {params_m} M"
    assert abs(macs / 1e9 - macs_g) <= 0.03 * macs_g, f"MACs {macs / 1e9:.3f} G vs Table 3's {macs_g} G"


def test_count_complexity_counts_a_shared_module_once_and_an_unused_one_not_at_all():
    class Siamese(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = nn.Linear(8, 4)
            self.unused = nn.Linear(8, 100)

        def forward(self, x):
            return self.shared(x) + self.shared(2 * x)

    model = Siamese().train()
    params, macs = count_complexity(model, (3, 8))
    assert params == 8 * 4 + 4
    assert macs == 2 * 3 * 8 * 4
    assert model.training, "count_complexity must restore the module's mode"


def test_eval_forward_is_encoder_then_p_er_then_classifier():
    model = seeded(DSNet).eval()
    x = features(3, 64, seed=1)
    called = []
    hooks = [getattr(model, name).register_forward_hook(lambda *_, n=name: called.append(n))
             for name in ("p_ei", "restorer")]
    with torch.no_grad():
        logits = model(x)
        expected = model.classifier(model.p_er(model.encoder(x)))
    for hook in hooks:
        hook.remove()
    assert logits.shape == (3, NUM_CLASSES)
    assert_close(logits, expected, atol=0.0, msg="forward vs E → P_er → C")
    assert called == [], f"inference ran {called}, which only training needs"


def test_train_mode_forward_is_still_the_inference_path():
    model = seeded(DSNet).train()
    x = features(4, 48, seed=2)
    torch.manual_seed(7)
    logits = model(x)
    torch.manual_seed(7)
    expected = model.classifier(model.p_er(model.encoder(x)))
    assert_close(logits, expected, atol=0.0, msg="train-mode forward")


def test_embed_returns_h_and_both_projections():
    model = seeded(DSNet).eval()
    x = features(2, 32, seed=3)
    with torch.no_grad():
        h, z_er, z_ei = model.embed(x)
        assert_close(h, model.encoder(x), atol=0.0, msg="h")
        assert_close(z_er, model.p_er(h), atol=0.0, msg="z_er")
        assert_close(z_ei, model.p_ei(h), atol=0.0, msg="z_ei")
    assert h.shape == z_er.shape == z_ei.shape == (2, 256)


@pytest.mark.parametrize("model_class", [pytest.param(Baseline, id="baseline"), pytest.param(DSNet, id="dsnet")])
def test_tiny_batch_overfits_to_full_training_accuracy(model_class):
    """Adam at the paper's lr memorises 8 random utterances: every one right on 3 steps in a row
    (one lucky step is not enough), cross-entropy down by a quarter at least."""
    x, x_neutral = features(8, 48, seed=4), features(8, 48, seed=5)
    labels = torch.randperm(8, generator=torch.Generator().manual_seed(6)) % NUM_CLASSES
    model = seeded(model_class).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    cross_entropies, streak = [], 0
    for _ in range(30):
        if isinstance(model, DSNet):
            out = model.training_losses(x, labels, x_neutral)
            loss, cross_entropy, logits = out.total, out.l_t, out.logits
        else:
            logits = model(x)
            loss = cross_entropy = F.cross_entropy(logits, labels)
        cross_entropies.append(float(cross_entropy.detach()))
        streak = streak + 1 if bool((logits.argmax(dim=1) == labels).all()) else 0
        if streak == 3:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    else:
        pytest.fail(f"{model_class.__name__} did not hold 100% training accuracy for 3 steps within 30; "
                    f"cross-entropies {cross_entropies}")
    assert cross_entropies[-1] < 0.75 * cross_entropies[0], cross_entropies


def _zscored(z: torch.Tensor) -> torch.Tensor:
    centred = z - z.mean(dim=0)
    return centred / torch.sqrt(centred.square().mean(dim=0) + 1e-5)


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (p * torch.log(p / q)).sum(dim=1)


def _softmax_by_hand(v: torch.Tensor) -> torch.Tensor:
    e = torch.exp(v - v.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("calibration", ["standardized", "softmax"])
def test_each_loss_equals_its_hand_computed_value(calibration):
    alpha, beta, gamma = 0.5, 2.0, 3.0
    model = seeded(DSNet, alpha=alpha, beta=beta, gamma=gamma, calibration=calibration).eval()
    x, x_neutral = features(6, 32, seed=8), features(6, 40, seed=9)
    labels = torch.tensor([0, 1, 2, 3, 1, 2])
    losses = model.training_losses(x, labels, x_neutral)
    with torch.no_grad():
        out = model.training_forward(x, x_neutral)
    h, z_er, z_ei, h_hat, h_n, logits = (t.double() for t in out)
    n, d = z_er.shape
    first, _, second = model.restorer.net
    with torch.no_grad():
        restored = second(torch.relu(first(torch.cat([out.z_er, out.z_ei], dim=1))))
    assert_close(h_hat, restored, atol=1e-6, msg="ĥ = R([z_er; z_ei]) (eq. 5, typo fixed)")

    log_probs = logits - torch.log(torch.exp(logits).sum(dim=1, keepdim=True))
    l_t = -log_probs[torch.arange(n), labels].mean()
    correlation = _zscored(z_er).T @ _zscored(z_ei)
    l_o = correlation.square().sum() / (n * n * d * d)
    l_r = ((h - h_hat) ** 2).sum(dim=1).mean() / h.shape[1]  # eq. 6 per feature
    if calibration == "standardized":
        z_ei, h_n = _standardized(z_ei), _standardized(h_n)
    p, q = _softmax_by_hand(z_ei), _softmax_by_hand(h_n)
    l_c = 0.5 * (_kl(p, q) + _kl(q, p)).mean()

    assert isinstance(losses, DSNetLosses)
    assert_close(losses.logits, logits, atol=0.0, msg="logits")
    assert_close(losses.logits, model(x), atol=1e-6, msg="training logits vs eval forward")
    for name, expected in (("l_t", l_t), ("l_o", l_o), ("l_r", l_r), ("l_c", l_c)):
        assert getattr(losses, name).dtype == torch.float32
        assert_close(getattr(losses, name), expected, atol=1e-6, rtol=1e-5, msg=name)
    total = l_t + alpha * l_o + beta * l_r + gamma * l_c
    assert_close(losses.total, total, atol=1e-5, rtol=1e-5, msg="total")
    assert set(losses.scalars()) == {"total", "l_t", "l_o", "l_r", "l_c"}


def test_neutral_reference_goes_through_the_shared_encoder_with_gradients():
    model = seeded(DSNet, use_orthogonality=False, use_reconstruction=False).eval()
    x = features(3, 32, seed=21)
    x_neutral = features(3, 48, seed=22).requires_grad_(True)
    out = model.training_forward(x, x_neutral)
    with torch.no_grad():
        assert_close(out.h_neutral, model.encoder(x_neutral), atol=0.0, msg="h_n = E(X^n)")
    model.training_losses(x, torch.tensor([0, 1, 2]), x_neutral).l_c.backward()
    assert x_neutral.grad is not None and float(x_neutral.grad.abs().sum()) > 0, "L_c must reach X^n's pass"


def test_orthogonality_loss_is_the_mean_squared_correlation_not_the_sum():
    """The plain ||Z_erᵀ Z_ei||_F² of independent features is about N·D², the mean about 1/N."""
    model = seeded(DSNet).eval()
    losses = model.training_losses(features(8, 32, seed=10), torch.arange(8) % NUM_CLASSES, features(8, 32, seed=11))
    assert 0.0 < float(losses.l_o.detach()) <= 1.0


def _grads(loss: torch.Tensor, model: nn.Module, retain_graph: bool = False) -> list[torch.Tensor]:
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize(
    "switch, term, weight_name",
    [
        pytest.param("use_orthogonality", "l_o", "alpha", id="without-L_o"),
        pytest.param("use_reconstruction", "l_r", "beta", id="without-L_r"),
        pytest.param("use_calibration", "l_c", "gamma", id="without-L_c"),
    ],
)
def test_ablation_switch_zeroes_its_term_and_its_gradient(switch, term, weight_name):
    weights = {"alpha": 0.5, "beta": 2.0, "gamma": 3.0}
    full = seeded(DSNet, dropout=0.0, **weights).train()
    ablated = DSNet(dropout=0.0, **weights, **{switch: False}).train()
    ablated.load_state_dict(full.state_dict())
    x, x_neutral = features(4, 32, seed=12), features(4, 32, seed=13)
    labels = torch.tensor([3, 2, 1, 0])

    full_losses = full.training_losses(x, labels, x_neutral)
    # Without L_c the neutral reference is not needed at all.
    ablated_losses = ablated.training_losses(x, labels, None if switch == "use_calibration" else x_neutral)
    dropped = getattr(ablated_losses, term)
    assert float(dropped) == 0.0 and not dropped.requires_grad
    expected_total = full_losses.total - weights[weight_name] * getattr(full_losses, term)
    assert_close(ablated_losses.total, expected_total, atol=1e-4, rtol=1e-6, msg="total without the term")

    expected = _grads(expected_total, full, retain_graph=True)
    with_term = _grads(full_losses.total, full)
    got = _grads(ablated_losses.total, ablated)
    for name, g, e in zip(dict(full.named_parameters()), got, expected):
        assert_close(g, e, atol=1e-5, rtol=1e-4, msg=f"grad of {name}")
    assert max(float((w - e).abs().max()) for w, e in zip(with_term, expected)) > 1e-4, \
        f"{term} did not contribute to the full model's gradients"
    if switch == "use_reconstruction":
        assert all(g is None for g in torch.autograd.grad(
            ablated.training_losses(x, labels, x_neutral).total, list(ablated.restorer.parameters()), allow_unused=True))


def test_all_switches_off_leaves_cross_entropy_and_never_runs_p_ei():
    model = seeded(DSNet, use_orthogonality=False, use_reconstruction=False, use_calibration=False)
    x, labels = features(4, 32, seed=14), torch.tensor([0, 1, 2, 3])
    losses = model.training_losses(x, labels, None)
    assert_close(losses.total, losses.l_t, atol=0.0, msg="total")
    unused = list(model.p_ei.parameters()) + list(model.restorer.parameters())
    assert all(g is None for g in torch.autograd.grad(losses.total, unused, allow_unused=True))


def test_detached_reconstruction_target_keeps_l_r_out_of_the_encoder():
    x = features(4, 32, seed=15)
    encoder_grads = {}
    for detach in (False, True):
        model = seeded(DSNet, use_orthogonality=False, use_calibration=False, dropout=0.0,
                       detach_reconstruction_target=detach).train()
        l_r = model.training_losses(x, torch.tensor([0, 1, 2, 3]), None).l_r
        encoder_grads[detach] = _grads(l_r, model.encoder)
    detached_norm = sum(float(g.abs().sum()) for g in encoder_grads[True])
    attached_norm = sum(float(g.abs().sum()) for g in encoder_grads[False])
    assert attached_norm > 1.5 * detached_norm > 0, (attached_norm, detached_norm)


LENGTHS = [64, 41, 23, 16]


@pytest.mark.parametrize(
    "garbage",
    [pytest.param(1e4, id="huge"), pytest.param(float("nan"), id="nan"), pytest.param(float("inf"), id="inf")],
)
@pytest.mark.parametrize("model_class", [pytest.param(Baseline, id="baseline"), pytest.param(DSNet, id="dsnet")])
def test_padded_frames_change_nothing(model_class, garbage):
    model = seeded(model_class).eval()
    clean = features(len(LENGTHS), 64, seed=16)
    padded = clean.clone()
    for i, n in enumerate(LENGTHS):
        padded[i, :, n:] = garbage
    with torch.no_grad():
        batched = model(padded, torch.tensor(LENGTHS))
        for i, n in enumerate(LENGTHS):
            alone = model(clean[i:i + 1, :, :n])
            assert_close(batched[i], alone[0], atol=1e-5, msg=f"utterance {i} of {n} frames")


def test_padding_content_is_irrelevant_in_train_mode_and_for_the_neutral_pass():
    """Train mode (batch statistics) and lengths < 16 frames have no unpadded twin to compare with:
    two different paddings must still give the same losses."""
    lengths, neutral_lengths = [32, 20, 9, 32], [12, 32, 30, 1]
    x, x_neutral, labels = features(4, 32, seed=17), features(4, 32, seed=18), torch.tensor([0, 1, 2, 3])
    results = []
    for fill in (0.0, 1e3):
        model = seeded(DSNet, dropout=0.0).train()
        xs, ns = x.clone(), x_neutral.clone()
        for i, (n, m) in enumerate(zip(lengths, neutral_lengths)):
            xs[i, :, n:], ns[i, :, m:] = fill, -fill
        results.append(model.training_losses(xs, labels, ns, lengths, neutral_lengths).scalars())
    for name in results[0]:
        assert results[0][name] == pytest.approx(results[1][name], rel=1e-5, abs=1e-6), name


def test_bf16_autocast_and_channels_last_run_forward_backward_close_to_float32():
    reference = seeded(DSNet).eval()
    fast = copy.deepcopy(reference).to(memory_format=torch.channels_last)
    x, x_neutral = features(4, 64, seed=19), features(4, 48, seed=20)
    labels, lengths = torch.tensor([0, 1, 2, 3]), [64, 50, 33, 20]
    x_cl, neutral_cl = x.to(memory_format=torch.channels_last), x_neutral.to(memory_format=torch.channels_last)
    layouts = []
    hook = fast.encoder.blocks[1].main[0].register_forward_hook(
        lambda _m, _i, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        expected_logits, expected_h = reference(x, lengths), reference.embed(x, lengths).h
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, h = fast(x_cl, lengths), fast.embed(x_cl, lengths).h
    assert logits.dtype == torch.bfloat16 and layouts[0], "the convs should run in bf16 and channels_last"
    assert_close(logits, expected_logits, atol=2e-2, rtol=5e-2, msg="bf16 logits")
    assert_close(h, expected_h, atol=2e-2, rtol=5e-2, msg="bf16 h")

    reference.train()
    fast.train()
    expected_losses = reference.training_losses(x, labels, x_neutral, lengths).scalars()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = fast.training_losses(x_cl, labels, neutral_cl, lengths)
    hook.remove()
    assert losses.total.dtype == torch.float32
    losses.total.backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in fast.parameters())
    for name, value in losses.scalars().items():
        assert value == pytest.approx(expected_losses[name], rel=5e-2, abs=2e-2), name


@pytest.fixture(scope="module")
def small_dsnet():
    return seeded(DSNet).eval()


@pytest.mark.parametrize(
    "x, lengths, error, match",
    [
        pytest.param(torch.randn(2, 64, 80), None, ValueError, r"x must be 4-D \[B, 3, T, 80\]", id="3d-x"),
        pytest.param(torch.randn(2, 1, 64, 80), None, ValueError, r"x must have 3 channels \[B, 3, T, 80\]",
                     id="one-channel"),
        pytest.param(torch.randn(2, 3, 64, 40), None, ValueError, r"x must have 80 mel bins \[B, 3, T, 80\]",
                     id="40-mel-bins"),
        pytest.param(torch.randn(2, 3, 8, 80), None, ValueError, r"x has T = 8 frames; expected .*T >= 16",
                     id="too-few-frames"),
        pytest.param(torch.zeros(2, 3, 64, 80, dtype=torch.int64), None, TypeError, r"x must be a floating-point",
                     id="integer-x"),
        pytest.param([[0.0]], None, TypeError, r"x must be a torch.Tensor of shape \[B, 3, T, 80\]", id="list-x"),
        pytest.param(torch.randn(2, 3, 64, 80), [64, 0], ValueError, r"lengths\[1\] is 0; expected 1..T = 1..64",
                     id="zero-length"),
        pytest.param(torch.randn(2, 3, 64, 80), [65, 3], ValueError, r"lengths\[0\] is 65; expected 1..T = 1..64",
                     id="length-past-T"),
        pytest.param(torch.randn(2, 3, 64, 80), [64], ValueError, r"lengths must have shape \[B\] = \[2\]",
                     id="lengths-wrong-shape"),
        pytest.param(torch.randn(2, 3, 64, 80), torch.tensor([64.0, 3.0]), TypeError, r"lengths must hold integers",
                     id="float-lengths"),
    ],
)
def test_forward_rejects_bad_input_naming_the_argument(small_dsnet, x, lengths, error, match):
    with pytest.raises(error, match=match):
        small_dsnet(x, lengths)


GOOD_X = torch.randn(2, 3, 32, 80)
GOOD_LABELS = torch.tensor([0, 1])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        pytest.param({"x_neutral": None}, ValueError, r"x_neutral is None, but use_calibration is on", id="no-neutral"),
        pytest.param({"x_neutral": torch.randn(3, 3, 32, 80)}, ValueError,
                     r"x_neutral must have one neutral reference per utterance of x, i.e. B = 2", id="neutral-batch"),
        pytest.param({"x_neutral": torch.randn(2, 3, 32, 64)}, ValueError, r"x_neutral must have 80 mel bins",
                     id="neutral-mel-bins"),
        pytest.param({"neutral_lengths": [32, 99]}, ValueError, r"neutral_lengths\[1\] is 99", id="neutral-lengths"),
        pytest.param({"labels": torch.tensor([0, 4])}, ValueError, r"labels must be class indices in 0..3",
                     id="label-out-of-range"),
        pytest.param({"labels": torch.tensor([0.0, 1.0])}, TypeError, r"labels must be an integer tensor",
                     id="float-labels"),
        pytest.param({"labels": torch.tensor([0, 1, 2])}, ValueError, r"labels must have shape \[N\] = \[2\]",
                     id="labels-wrong-shape"),
        pytest.param({"x": torch.randn(1, 3, 32, 80), "labels": torch.tensor([0]), "x_neutral": torch.randn(1, 3, 32, 80)},
                     ValueError, r"N = 1 rows; .* needs N >= 2", id="batch-of-one"),
    ],
)
def test_training_losses_rejects_bad_input_naming_the_argument(small_dsnet, kwargs, error, match):
    args = {"x": GOOD_X, "labels": GOOD_LABELS, "x_neutral": torch.randn(2, 3, 32, 80)} | kwargs
    with pytest.raises(error, match=match):
        small_dsnet.training_losses(**args)


@pytest.mark.parametrize(
    "build, error, match",
    [
        pytest.param(lambda: DSNet(alpha=-1.0), ValueError, r"alpha must be a finite loss weight >= 0", id="alpha"),
        pytest.param(lambda: DSNet(gamma=float("nan")), ValueError, r"gamma must be a finite", id="gamma-nan"),
        pytest.param(lambda: DSNet(num_classes=1), ValueError, r"num_classes must be an integer >= 2", id="classes"),
        pytest.param(lambda: Baseline(dropout=1.0), ValueError, r"dropout must be a probability in \[0, 1\)",
                     id="dropout"),
        pytest.param(lambda: DSNet(use_calibration="yes"), TypeError, r"use_calibration must be a bool", id="switch"),
        pytest.param(lambda: count_complexity(Baseline(), (1, 0, 80)), ValueError,
                     r"input_shape must be a non-empty sequence of positive ints", id="complexity-shape"),
        pytest.param(lambda: count_complexity("model", (1, 3, 64, 80)), TypeError,
                     r"model_or_callable must be an nn.Module or a callable", id="complexity-model"),
    ],
)
def test_constructors_and_complexity_reject_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def _speaker_pattern_like_h(rows: int, seed: int) -> torch.Tensor:
    """Non-negative vectors with h's measured statistics at initialisation (mean 0.13, spread 0.17 across features)."""
    g = torch.Generator().manual_seed(seed)
    return (0.13 + 0.17 * torch.randn(rows, 256, generator=g)).relu()


@pytest.mark.parametrize(("calibration", "dead_is_cheaper"), [("standardized", False), ("softmax", True)],
                         ids=["standardized-dead-costs-more", "softmax-dead-is-free"])
def test_a_dead_z_ei_minimises_the_objective_only_with_the_raw_softmax_calibration(calibration, dead_is_cheaper):
    """Issue 17 at the loss level: against a live z_ei that follows the neutral reference (and is independent of z_er),
    an all-zero z_ei scores L_o = 0 and, with the raw-feature softmax, an L_c of ~0.01: the dead branch wins. With
    standardised vectors L_c charges it ~0.65 at any scale of h."""
    from ser_fast.models.losses import calibration_loss, orthogonality_penalty

    z_er, h_n = _speaker_pattern_like_h(32, seed=1), _speaker_pattern_like_h(32, seed=2)
    live = h_n + 0.01 * torch.randn(32, 256, generator=torch.Generator().manual_seed(3))
    standardize = calibration == "standardized"

    def objective(z_ei: torch.Tensor) -> float:
        return float(orthogonality_penalty(z_er, z_ei) + calibration_loss(z_ei, h_n, standardize=standardize))

    dead = objective(torch.zeros(32, 256))
    assert (dead < objective(live)) is dead_is_cheaper
    if standardize:
        shrunk = float(calibration_loss(torch.zeros(32, 256), 0.1 * h_n))
        assert shrunk == pytest.approx(float(calibration_loss(torch.zeros(32, 256), h_n)), rel=1e-2), \
            "a dead z_ei must not get cheaper as the encoder shrinks h"
        assert shrunk > 0.5


@pytest.mark.parametrize("projector_relu", [False, True], ids=["linear-output", "paper-relu-output"])
def test_projector_output_relu_is_what_kills_features_at_initialisation(projector_relu):
    """h is non-negative and nearly constant across utterances at initialisation, so a ReLU after the projection is 0
    for every utterance on about half the units."""
    from ser_fast.runs.disentanglement import dead_fraction

    model = seeded(DSNet, projector_relu=projector_relu).eval()
    with torch.no_grad():
        embedded = model.embed(features(24, 48, seed=4))
    for branch in (embedded.z_er, embedded.z_ei):
        fraction = dead_fraction(branch.numpy())
        assert (fraction > 0.3) if projector_relu else fraction == 0.0
    assert list(model.state_dict()) == list(seeded(DSNet, projector_relu=not projector_relu).state_dict()), \
        "both forms must keep one set of weight names, so that every model file loads"


def test_calibration_form_is_checked():
    with pytest.raises(ValueError, match="calibration 'kl'"):
        DSNet(calibration="kl")


def _standardized(v: torch.Tensor) -> torch.Tensor:
    centred = v - v.mean(dim=1, keepdim=True)
    return centred / torch.sqrt(centred.square().mean(dim=1, keepdim=True) + 1e-6)
