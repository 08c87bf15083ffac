"""MBPLS against the ``mbpls`` package (every fitted quantity, transform and predict of new data),
against PLS2 on the concatenated blocks (sklearn's PLSRegression, Westerhuis et al. 1998's
equivalence), NIPALS against its SVD fixed point, float32 against float64, determinism, input checks
and the safetensors + JSON round trip."""

from __future__ import annotations

import inspect
import json
import logging
import math

import numpy as np
import pytest
import torch
from helpers import assert_close
from safetensors.torch import load_file, save_file
from sklearn.cross_decomposition import PLSRegression

from ser_fast.models.mbpls import MBPLS

# (N, block widths, Y columns, components)
DATA = [
    pytest.param(63, (7, 13, 1, 30), 1, 4, id="N63-4blocks-q1-K4"),
    pytest.param(63, (7, 13, 1, 30), 5, 6, id="N63-4blocks-q5-K6"),
    pytest.param(151, (7, 13, 1, 30), 5, 6, id="N151-4blocks-q5-K6"),
    pytest.param(151, (11, 1, 5), 1, 3, id="N151-3blocks-q1-K3"),
]
METHODS = [pytest.param("nipals", id="nipals"), pytest.param("svd", id="svd")]
# The model's tol is 1e-10 on the unit super score and mbpls's 1e-14; what that leaves in the other
# quantities is ~1e-9 (measured), far inside the 1e-4 asked for.
ATOL = 1e-4


def make_data(n: int, widths: tuple[int, ...], q: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Blocks and Y sharing three latent factors (plus noise and unequal column scales and offsets), so
    that components are well separated and both NIPALS implementations converge to the same vectors."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 3))
    blocks = [
        (latent @ rng.standard_normal((3, w)) + 0.7 * rng.standard_normal((n, w))) * rng.uniform(0.5, 3.0, w)
        + rng.uniform(-2.0, 2.0, w)
        for w in widths
    ]
    y = latent @ rng.standard_normal((3, q)) + 0.5 * rng.standard_normal((n, q)) + 1.5
    return blocks, y


def tensors(arrays: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(a) for a in arrays]


def reference_mbpls(monkeypatch: pytest.MonkeyPatch, n_components: int):
    """``mbpls.mbpls.MBPLS`` with NIPALS and standardisation. Version 1.0.4 passes ``force_all_finite`` to
    sklearn's check_array, which sklearn 1.8 renamed ``ensure_all_finite``; the call is forwarded."""
    module = pytest.importorskip("mbpls.mbpls")
    from sklearn.utils.validation import check_array

    if "force_all_finite" not in inspect.signature(check_array).parameters:
        def forwarding_check_array(*args, force_all_finite=True, **kwargs):
            return check_array(*args, ensure_all_finite=force_all_finite, **kwargs)

        monkeypatch.setattr(module, "check_array", forwarding_check_array)
    return module.MBPLS(n_components=n_components, method="NIPALS", standardize=True)


def copies(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """mbpls replaces the list's items with their standardised copies, so it gets a fresh list each call."""
    return [a.copy() for a in arrays]


def component_signs(ours: torch.Tensor, theirs: np.ndarray) -> torch.Tensor:
    return torch.sign((ours * torch.from_numpy(theirs)).sum(dim=0))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("n", "widths", "q", "k"), DATA)
def test_matches_mbpls_package(monkeypatch, n, widths, q, k, method):
    blocks, y = make_data(n, widths, q, seed=n + q)
    reference = reference_mbpls(monkeypatch, k).fit(copies(blocks), y.copy())
    model = MBPLS(k, method=method).fit(tensors(blocks), torch.from_numpy(y))

    signs = component_signs(model.super_scores, reference.Ts_)
    # Both start NIPALS from Y's first column, so the signs agree too (compared up to sign below).
    assert torch.equal(signs, torch.ones(k, dtype=signs.dtype)), f"component signs differ from mbpls: {signs}"
    assert_close(model.super_scores * signs, reference.Ts_, atol=ATOL, msg="super scores (Ts_)")
    assert_close(model.y_loadings * signs, reference.V_, atol=ATOL, msg="Y loadings (V_)")
    for b in range(len(widths)):
        assert_close(model.block_scores[b] * signs, reference.T_[b], atol=ATOL, msg=f"block {b} scores (T_)")
        assert_close(model.block_weights[b] * signs, reference.W_[b], atol=ATOL, msg=f"block {b} weights (W_)")
        assert_close(model.block_loadings[b] * signs, reference.P_[b], atol=ATOL, msg=f"block {b} loadings (P_)")
    assert_close(model.block_importances, reference.A_, atol=ATOL, msg="block importances (A_)")
    assert_close(model.block_importances_corrected, reference.A_corrected_, atol=ATOL, msg="A_corrected_")
    assert_close(model.x_rotations * signs, reference.R_, atol=ATOL, msg="x rotations (R_)")
    assert_close(model.coefficients, reference.beta_, atol=ATOL, msg="coefficients (beta_)")
    assert_close(model.explained_variance_x, np.asarray(reference.explained_var_x_), atol=ATOL, msg="explained X")
    assert_close(model.explained_variance_blocks, reference.explained_var_xblocks_, atol=ATOL, msg="explained blocks")
    assert_close(model.explained_variance_y, np.asarray(reference.explained_var_y_), atol=ATOL, msg="explained Y")

    new_blocks, _ = make_data(37, widths, q, seed=1000 + n)
    reference_scores, reference_block_scores = reference.transform(copies(new_blocks), return_block_scores=True)
    scores, block_scores = model.transform(tensors(new_blocks), return_block_scores=True)
    assert_close(scores * signs, reference_scores, atol=ATOL, msg="transform: super scores")
    for b in range(len(widths)):
        assert_close(block_scores[b] * signs, reference_block_scores[b], atol=ATOL, msg=f"transform: block {b} scores")
    assert_close(model.predict(tensors(new_blocks)), reference.predict(copies(new_blocks)), atol=ATOL, msg="predict")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("block_weighting", [pytest.param(False, id="unweighted"), pytest.param(True, id="weighted")])
@pytest.mark.parametrize(("n", "widths", "q", "k"), DATA)
def test_super_scores_are_pls2_on_concatenated_blocks(n, widths, q, k, block_weighting, method):
    """Westerhuis et al. (1998): MB-PLS with super-score deflation is PLS2 on [X_1 .. X_B]; its
    concatenated weight splits into super weight x block weight, so the blocks' shares of sklearn's
    weight give the block importances."""
    blocks, y = make_data(n, widths, q, seed=7 * n + q)
    # Standardised (ddof=0) and, when block-weighted, each block divided by sqrt(its width), by hand.
    standardized = [(b - b.mean(0)) / b.std(0) / (math.sqrt(b.shape[1]) if block_weighting else 1.0) for b in blocks]
    y_standardized = (y - y.mean(0)) / y.std(0)
    pls = PLSRegression(n_components=k, scale=False, max_iter=5000, tol=1e-20).fit(
        np.hstack(standardized), y_standardized
    )
    model = MBPLS(k, block_weighting=block_weighting, method=method).fit(tensors(blocks), torch.from_numpy(y))

    unit_scores = pls.x_scores_ / np.linalg.norm(pls.x_scores_, axis=0)
    signs = component_signs(model.super_scores, unit_scores)
    assert_close(model.super_scores * signs, unit_scores, atol=1e-6, msg="super scores vs PLS2 scores")
    pls_weight_blocks = np.split(pls.x_weights_, np.cumsum(widths)[:-1])
    importances = np.stack([(piece**2).sum(0) for piece in pls_weight_blocks])
    assert_close(model.block_importances, importances, atol=1e-6, msg="block importances vs PLS2 weight shares")
    for b, piece in enumerate(pls_weight_blocks):
        unit_piece = piece / np.linalg.norm(piece, axis=0)
        assert_close(model.block_weights[b] * signs, unit_piece, atol=1e-6, msg=f"block {b} weights vs PLS2")
    assert_close(model.coefficients, pls.coef_.T, atol=1e-6, msg="coefficients vs PLS2")


@pytest.mark.parametrize(("n", "widths", "q", "k"), DATA)
def test_float32_close_to_float64(n, widths, q, k):
    blocks, y = make_data(n, widths, q, seed=3 * n + q)
    exact = MBPLS(k).fit(tensors(blocks), torch.from_numpy(y))
    single = MBPLS(k, dtype=torch.float32).fit([b.float() for b in tensors(blocks)], torch.from_numpy(y).float())
    assert single.super_scores.dtype == torch.float32
    # Unit-norm scores with entries ~1/sqrt(N): float32's round-off through K deflations and the
    # NIPALS convergence floor (16 eps sqrt(N)) leave ~1e-5 (measured up to 5e-5 on noisier data).
    assert_close(single.super_scores, exact.super_scores, atol=2e-4, msg="float32 super scores")
    scale = float(np.abs(y).max())
    assert_close(single.predict(tensors(blocks)), exact.predict(tensors(blocks)), atol=1e-4 * scale, msg="predict")


@pytest.mark.parametrize("method", METHODS)
def test_cpu_fit_is_deterministic(method):
    blocks, y = make_data(151, (7, 13, 1, 30), 5, seed=5)
    first = MBPLS(5, method=method).fit(tensors(blocks), torch.from_numpy(y))
    second = MBPLS(5, method=method).fit(tensors(blocks), torch.from_numpy(y))
    for name, value in first.to_tensors().items():
        assert torch.equal(value, second.to_tensors()[name]), f"{name} differs between identical fits"
    assert torch.equal(first.super_scores, second.super_scores)


def test_training_scores_equal_transform_of_training_data():
    blocks, y = make_data(63, (7, 13, 1, 30), 5, seed=11)
    model = MBPLS(6)
    train_scores = model.fit_transform(tensors(blocks), torch.from_numpy(y))
    scores, block_scores = model.transform(tensors(blocks), return_block_scores=True)
    assert_close(scores, train_scores, atol=1e-10, msg="X R vs NIPALS super scores")
    for b in range(4):
        assert_close(block_scores[b], model.block_scores[b], atol=1e-9, msg=f"block {b} scores")
    assert_close(scores.T @ scores, torch.eye(6, dtype=torch.float64), atol=1e-10, msg="super scores orthonormal")


def test_one_dimensional_y_is_one_column():
    blocks, y = make_data(63, (7, 13), 1, seed=2)
    flat = MBPLS(3).fit(tensors(blocks), torch.from_numpy(y[:, 0]))
    column = MBPLS(3).fit(tensors(blocks), torch.from_numpy(y))
    assert torch.equal(flat.super_scores, column.super_scores)
    assert flat.predict(tensors(blocks)).shape == (63, 1)


def test_constant_block_gets_zero_importance():
    """A block with no variance standardises to zeros: zero weights and importance, not NaN."""
    blocks, y = make_data(63, (7, 1, 13), 1, seed=4)
    blocks[1] = np.full((63, 1), 3.0)
    model = MBPLS(3).fit(tensors(blocks), torch.from_numpy(y))
    assert all(bool(torch.isfinite(t).all()) for t in model.to_tensors().values())
    assert_close(model.block_importances[1], torch.zeros(3), atol=0.0, msg="constant block importance")
    assert_close(model.block_weights[1], torch.zeros(1, 3), atol=0.0, msg="constant block weights")


def test_no_covariance_left_is_a_clear_error():
    """Uncorrelated, equal-variance X columns: PLS1 fits y's projection in one component, after which
    X^T y is zero and a second component does not exist."""
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((63, 5))
    orthonormal, _ = np.linalg.qr(raw - raw.mean(0))
    y = torch.from_numpy(rng.standard_normal(63))
    model = MBPLS(1).fit([torch.from_numpy(orthonormal[:, :2]), torch.from_numpy(orthonormal[:, 2:])], y)
    assert model.explained_variance_y.shape == (1,)
    with pytest.raises(ValueError, match="no covariance left after 1 component"):
        MBPLS(2).fit([torch.from_numpy(orthonormal[:, :2]), torch.from_numpy(orthonormal[:, 2:])], y)
    # A refit that raises leaves the model unfitted rather than half-updated.
    with pytest.raises(ValueError, match="no covariance left after 0"):
        model.fit([torch.from_numpy(orthonormal[:, :2]), torch.from_numpy(orthonormal[:, 2:])], torch.ones(63))
    with pytest.raises(RuntimeError, match="call fit"):
        model.transform([torch.from_numpy(orthonormal[:, :2]), torch.from_numpy(orthonormal[:, 2:])])


def test_non_convergence_is_logged(caplog):
    blocks, y = make_data(63, (7, 13), 5, seed=1)
    with caplog.at_level(logging.WARNING, logger="ser_fast.models.mbpls"):
        model = MBPLS(2, max_iter=1).fit(tensors(blocks), torch.from_numpy(y))
    assert "did not converge in 1 NIPALS iterations" in caplog.text
    assert model.n_iter.tolist() == [1, 1]


@pytest.mark.parametrize("method", METHODS)
def test_safetensors_round_trip_gives_identical_outputs(tmp_path, method):
    blocks, y = make_data(63, (7, 13, 1, 30), 5, seed=9)
    model = MBPLS(4, method=method, block_weighting=True).fit(tensors(blocks), torch.from_numpy(y))
    save_file(model.to_tensors(), tmp_path / "mbpls.safetensors")
    (tmp_path / "mbpls.json").write_text(json.dumps(model.config()))
    loaded = MBPLS.from_tensors(load_file(tmp_path / "mbpls.safetensors"),
                                json.loads((tmp_path / "mbpls.json").read_text()))
    new_blocks, _ = make_data(17, (7, 13, 1, 30), 5, seed=10)
    scores, block_scores = model.transform(tensors(new_blocks), return_block_scores=True)
    loaded_scores, loaded_block_scores = loaded.transform(tensors(new_blocks), return_block_scores=True)
    assert torch.equal(scores, loaded_scores)
    assert all(torch.equal(a, b) for a, b in zip(block_scores, loaded_block_scores))
    assert torch.equal(model.predict(tensors(new_blocks)), loaded.predict(tensors(new_blocks)))
    assert loaded.config() == model.config()


def test_from_tensors_rejects_mismatched_state():
    blocks, y = make_data(63, (7, 13), 1, seed=3)
    model = MBPLS(2).fit(tensors(blocks), torch.from_numpy(y))
    state = model.to_tensors()
    with pytest.raises(ValueError, match=r"missing \['block_weights.1'\]"):
        MBPLS.from_tensors({k: v for k, v in state.items() if k != "block_weights.1"}, model.config())
    with pytest.raises(ValueError, match="'x_mean' must have shape"):
        MBPLS.from_tensors({**state, "x_mean": torch.zeros(3)}, model.config())
    with pytest.raises(ValueError, match="config lacks"):
        MBPLS.from_tensors(state, {k: v for k, v in model.config().items() if k != "method"})
    with pytest.raises(ValueError, match="not an ser_fast.MBPLS config"):
        MBPLS.from_tensors(state, {})


def _fitted() -> MBPLS:
    blocks, y = make_data(63, (7, 13, 1), 2, seed=6)
    return MBPLS(2).fit(tensors(blocks), torch.from_numpy(y))


N63 = [torch.randn(63, 7, dtype=torch.float64), torch.randn(63, 13, dtype=torch.float64)]
Y63 = torch.randn(63, 2, dtype=torch.float64)
BAD_INPUTS = [
    pytest.param(lambda: MBPLS(0), ValueError, "n_components must be an int >= 1", id="zero-components"),
    pytest.param(lambda: MBPLS(True), ValueError, "n_components must be an int", id="bool-components"),
    pytest.param(lambda: MBPLS(2, method="simpls"), ValueError, "method must be one of", id="unknown-method"),
    pytest.param(lambda: MBPLS(2, tol=0.0), ValueError, "tol must be", id="zero-tol"),
    pytest.param(lambda: MBPLS(2, dtype=torch.float16), ValueError, "dtype must be", id="half-dtype"),
    pytest.param(lambda: MBPLS(2, standardize=1), TypeError, "standardize must be a bool", id="int-standardize"),
    pytest.param(lambda: MBPLS(2).fit(torch.randn(63, 7), Y63), TypeError, "must be a list", id="tensor-not-list"),
    pytest.param(lambda: MBPLS(2).fit([], Y63), ValueError, "at least one block", id="no-blocks"),
    pytest.param(lambda: MBPLS(2).fit([np.ones((63, 7))], Y63), TypeError, "must be a torch.Tensor", id="numpy"),
    pytest.param(lambda: MBPLS(2).fit([torch.randn(63)], Y63), ValueError, r"x_blocks\[0\] must be 2-D", id="1d"),
    pytest.param(lambda: MBPLS(2).fit([N63[0], torch.randn(62, 3)], Y63), ValueError, "blocks must share N",
                 id="unequal-N"),
    pytest.param(lambda: MBPLS(1).fit([torch.randn(1, 3)], torch.randn(1)), ValueError, "N >= 2", id="N1"),
    pytest.param(lambda: MBPLS(2).fit([N63[0], torch.full((63, 3), math.nan)], Y63), ValueError,
                 r"x_blocks\[1\] holds NaN", id="nan-block"),
    pytest.param(lambda: MBPLS(2).fit(N63, torch.full((63, 2), math.inf)), ValueError, "y holds NaN or inf",
                 id="inf-y"),
    pytest.param(lambda: MBPLS(2).fit(N63, torch.randn(62, 2)), ValueError, "y has 62 rows", id="y-rows"),
    pytest.param(lambda: MBPLS(2).fit(N63, torch.randn(63, 2, 1)), ValueError, "y must be 2-D", id="y-3d"),
    pytest.param(lambda: MBPLS(21).fit(N63, Y63), ValueError, r"exceeds min\(N - 1, sum of block widths\)",
                 id="too-many-components"),
    pytest.param(lambda: MBPLS(3).fit([torch.randn(3, 30)], torch.randn(3)), ValueError, r"min\(2, 30\) = 2",
                 id="components-vs-N"),
    pytest.param(lambda: MBPLS(1).fit(N63, torch.ones(63, 2)), ValueError, "no covariance left after 0",
                 id="constant-y"),
    pytest.param(lambda: MBPLS(2).transform(N63), RuntimeError, "call fit", id="transform-before-fit"),
    pytest.param(lambda: MBPLS(2).to_tensors(), RuntimeError, "call fit", id="save-before-fit"),
    pytest.param(lambda: _fitted().transform(N63), ValueError, "has 2 blocks, the model was fitted with 3",
                 id="transform-block-count"),
    pytest.param(lambda: _fitted().predict([N63[0], N63[1], torch.randn(63, 4)]), ValueError,
                 r"x_blocks\[2\] has 4 columns, the model was fitted with 1", id="predict-block-width"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(method):
    blocks, y = make_data(151, (7, 13, 1, 30), 5, seed=12)
    cpu = MBPLS(5, method=method).fit(tensors(blocks), torch.from_numpy(y))
    cuda = MBPLS(5, method=method).fit([b.cuda() for b in tensors(blocks)], torch.from_numpy(y).cuda())
    assert cuda.device.type == "cuda"
    assert_close(cuda.super_scores, cpu.super_scores, atol=1e-9, msg="CUDA super scores")
    new_blocks, _ = make_data(17, (7, 13, 1, 30), 5, seed=13)
    assert_close(cuda.predict([b.cuda() for b in tensors(new_blocks)]), cpu.predict(tensors(new_blocks)), atol=1e-9,
                 msg="CUDA predict")
    assert_close(cpu.to("cuda").transform([b.cuda() for b in tensors(new_blocks)]),
                 cuda.transform([b.cuda() for b in tensors(new_blocks)]), atol=1e-9, msg="model moved to CUDA")
