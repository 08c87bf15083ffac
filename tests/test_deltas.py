"""ser_fast.deltas against kaldi_native_fbank.compute_deltas (Kaldi's add-deltas)."""

import numpy as np
import pytest
import torch
from helpers import assert_close

import ser_fast

knf = pytest.importorskip("kaldi_native_fbank")


def knf_deltas(x: np.ndarray, order: int, window: int) -> np.ndarray:
    opts = knf.DeltaOptions()
    opts.order = order
    opts.window = window
    return np.asarray(knf.compute_deltas(opts, x.astype(np.float32)))


@pytest.mark.parametrize("frames", [1, 2, 5, 63, 151], ids=lambda t: f"T{t}")
@pytest.mark.parametrize("order, window", [(1, 1), (2, 2), (3, 2), (2, 3), (0, 2)], ids=lambda v: str(v))
def test_matches_compute_deltas(frames, order, window):
    x = np.random.default_rng(frames).standard_normal((frames, 23)).astype(np.float32)
    ours = ser_fast.deltas(torch.from_numpy(x), order=order, window=window)
    assert_close(ours, knf_deltas(x, order, window), atol=1e-5, msg=f"T={frames} order={order} window={window}")


def test_batched_with_lengths_equals_one_at_a_time():
    rng = np.random.default_rng(0)
    lengths = [37, 1, 75, 12]
    padded = torch.zeros(4, 75, 40)
    for i, n in enumerate(lengths):
        padded[i, :n] = torch.from_numpy(rng.standard_normal((n, 40)).astype(np.float32))
    out = ser_fast.deltas(padded, lengths=torch.tensor(lengths))
    assert out.shape == (4, 75, 120)
    for i, n in enumerate(lengths):
        assert_close(out[i, :n], knf_deltas(padded[i, :n].numpy(), 2, 2), atol=1e-5, msg=f"item {i}")
        assert not out[i, n:].any()


def test_gradients_flow_and_match_finite_differences():
    x = torch.randn(2, 9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ser_fast.deltas(t, lengths=[9, 4]), (x,))


@pytest.mark.parametrize("call, error, pattern", [
    pytest.param(lambda: ser_fast.deltas(np.zeros((4, 3))), TypeError, "tensor", id="numpy"),
    pytest.param(lambda: ser_fast.deltas(torch.zeros(4, dtype=torch.int64)), TypeError, "floating", id="int"),
    pytest.param(lambda: ser_fast.deltas(torch.zeros(4)), ValueError, r"\[T, M\]", id="1-D"),
    pytest.param(lambda: ser_fast.deltas(torch.zeros(4, 3), window=0), ValueError, "window", id="window-0"),
    pytest.param(lambda: ser_fast.deltas(torch.zeros(4, 3), order=-1), ValueError, "order", id="order-negative"),
    pytest.param(lambda: ser_fast.deltas(torch.zeros(2, 4, 3), lengths=[5, 1]), ValueError, "lengths", id="too-long"),
])
def test_bad_input(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
