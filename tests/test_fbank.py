"""ser_fast.fbank against kaldi-native-fbank, across backends, threads, batching, and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from helpers import assert_close, speech_like

import ser_fast
from ser_fast.frontend.options import FbankOptions

knf = pytest.importorskip("kaldi_native_fbank")

RATES = (8000, 16000, 22050, 44100)
WINDOWS = ("povey", "hamming", "hanning", "rectangular", "blackman", "sine")
# Options varied together: every value of every flag appears across the grid below.
FLAG_COMBOS = list(itertools.product((23, 40, 80), (True, False), (True, False), (False, True), (True, False)))


def knf_fbank(x: np.ndarray, opts: FbankOptions) -> np.ndarray:
    """kaldi-native-fbank as its users call it: OnlineFbank, one frame at a time."""
    o = knf.FbankOptions()
    fo = o.frame_opts
    fo.samp_freq = opts.sample_rate
    fo.frame_length_ms = opts.frame_length_ms
    fo.frame_shift_ms = opts.frame_shift_ms
    fo.dither = 0.0
    fo.preemph_coeff = opts.preemph_coeff
    fo.remove_dc_offset = opts.remove_dc_offset
    fo.window_type = opts.window_type
    fo.round_to_power_of_two = opts.round_to_power_of_two
    fo.blackman_coeff = opts.blackman_coeff
    fo.snip_edges = opts.snip_edges
    o.mel_opts.num_bins = opts.num_mel_bins
    o.mel_opts.low_freq = opts.low_freq
    o.mel_opts.high_freq = opts.high_freq
    o.use_energy = opts.use_energy
    o.energy_floor = opts.energy_floor
    o.raw_energy = opts.raw_energy
    o.use_log_fbank = opts.use_log_fbank
    o.use_power = opts.use_power
    computer = knf.OnlineFbank(o)
    computer.accept_waveform(opts.sample_rate, x.astype(np.float32))
    computer.input_finished()
    frames = [computer.get_frame(i) for i in range(computer.num_frames_ready)]
    return np.array(frames, dtype=np.float32).reshape(len(frames), opts.feature_dim)


def assert_matches_kaldi(ours: torch.Tensor, ref: np.ndarray, opts: FbankOptions, msg: str) -> None:
    """log outputs: 1e-3 absolute; linear outputs: 1e-3 relative to the value (plus a floor for
    Mel energies near zero)."""
    if opts.use_log_fbank:
        assert_close(ours, ref, atol=1e-3, msg=msg)
    else:
        mel_cols = slice(int(opts.use_energy), None)
        assert_close(ours[:, mel_cols], ref[:, mel_cols], atol=1e-3, rtol=1e-3, msg=msg)
        if opts.use_energy:
            assert_close(ours[:, 0], ref[:, 0], atol=1e-3, msg=msg + " (log energy)")


def grid_cases():
    for i, (rate, window, snip) in enumerate(itertools.product(RATES, WINDOWS, (True, False))):
        bins, power, log, energy, round_pow2 = FLAG_COMBOS[(7 * i) % len(FLAG_COMBOS)]
        case_id = f"{rate}Hz-{window}-snip{int(snip)}-bins{bins}-power{int(power)}-log{int(log)}-energy{int(energy)}-pow2{int(round_pow2)}"
        yield pytest.param(dict(sample_rate=rate, window_type=window, snip_edges=snip, num_mel_bins=bins,
                                use_power=power, use_log_fbank=log, use_energy=energy,
                                round_to_power_of_two=round_pow2), id=case_id)
    for bins, power, log, energy, round_pow2 in FLAG_COMBOS:
        yield pytest.param(dict(sample_rate=16000, num_mel_bins=bins, use_power=power, use_log_fbank=log,
                                use_energy=energy, round_to_power_of_two=round_pow2),
                           id=f"16000Hz-bins{bins}-power{int(power)}-log{int(log)}-energy{int(energy)}-pow2{int(round_pow2)}")
    for extra, name in ((dict(raw_energy=False, use_energy=True), "windowed-energy"),
                        (dict(energy_floor=1e9, use_energy=True), "energy-floor"),
                        (dict(preemph_coeff=0.0, remove_dc_offset=False), "no-preemph-no-dc"),
                        (dict(low_freq=300.0, high_freq=-400.0), "band-limits"),
                        (dict(frame_length_ms=20.0, frame_shift_ms=8.0), "20ms-8ms")):
        yield pytest.param(dict(sample_rate=16000, **extra), id=name)


def _invalid_for_kaldi(opts: FbankOptions) -> str | None:
    if opts.padded_window_size % 2:
        return "odd FFT size"
    try:
        ser_fast.frontend.tables.mel_banks(opts)
    except ValueError as err:
        return str(err)
    return None


@pytest.mark.parametrize("options", list(grid_cases()))
@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_matches_kaldi_native_fbank(options, backend):
    opts = FbankOptions(**options)
    rate = int(opts.sample_rate)
    x = speech_like(int(0.73 * rate) + 13, rate, seed=len(str(options)))
    reason = _invalid_for_kaldi(opts)
    if reason == "odd FFT size":
        # Kaldi and kaldi-native-fbank refuse odd FFT sizes; ours computes them: check against float64.
        feats, n = ser_fast.fbank([x], backend=backend, **options)
        assert_matches_kaldi(feats[0], float64_fbank(x, opts), opts, msg="odd FFT size vs float64")
        return
    if reason is not None:
        with pytest.raises(ValueError, match="too large"):
            ser_fast.fbank([x], backend=backend, **options)
        return
    ref = knf_fbank(x, opts)
    feats, num_frames = ser_fast.fbank([x], backend=backend, **options)
    assert int(num_frames[0]) == ref.shape[0], "frame count differs from kaldi-native-fbank"
    assert feats.shape == (1, ref.shape[0], opts.feature_dim)
    assert_matches_kaldi(feats[0], ref, opts, msg=str(options))


@pytest.mark.parametrize("num_samples", [0, 1, 399, 400, 401, 559, 560, 16000 + 7], ids=lambda n: f"n{n}")
@pytest.mark.parametrize("snip_edges", [True, False], ids=["snip", "reflect"])
def test_frame_counts_and_short_signals(num_samples, snip_edges):
    x = speech_like(num_samples, 16000, seed=num_samples)
    opts = FbankOptions(snip_edges=snip_edges)
    feats, num_frames = ser_fast.fbank([x], snip_edges=snip_edges)
    assert int(num_frames[0]) == opts.num_frames(num_samples)
    if num_samples > 0:
        ref = knf_fbank(x, opts)
        assert ref.shape[0] == int(num_frames[0])
        assert_close(feats[0, : ref.shape[0]], ref, atol=1e-3, msg=f"n={num_samples}")


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16"])
def test_sample_dtypes_are_used_as_given(dtype):
    x16 = speech_like(5011, 16000, seed=1).clip(-32768, 32767).astype(np.int16)
    ref = knf_fbank(x16.astype(np.float32), FbankOptions())
    feats, _ = ser_fast.fbank([x16.astype(dtype)])
    assert_close(feats[0], ref, atol=1e-3, msg=dtype)


def _batch(seed=0):
    lengths = [16000, 401, 7919, 0, 12345, 160 * 37 + 240]
    return [speech_like(n, 16000, seed=seed + i) for i, n in enumerate(lengths)]


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_batched_equals_one_at_a_time(backend):
    batch = _batch()
    feats, num_frames = ser_fast.fbank(batch, backend=backend)
    assert feats.shape[1] == int(num_frames.max())
    for i, x in enumerate(batch):
        single, n = ser_fast.fbank([x], backend=backend)
        assert int(n[0]) == int(num_frames[i])
        if backend == "cpp":  # lanes compute independently with the same instructions: bit-identical
            assert torch.equal(feats[i, : int(n[0])], single[0, : int(n[0])]), f"item {i}"
        else:
            assert_close(feats[i, : int(n[0])], single[0, : int(n[0])], atol=1e-5, msg=f"item {i}")
        assert not feats[i, int(n[0]):].any(), "rows past num_frames must be zero"


def test_padded_tensor_with_lengths_equals_list():
    batch = _batch(seed=5)
    width = max(len(x) for x in batch)
    padded = torch.zeros(len(batch), width)
    for i, x in enumerate(batch):
        padded[i, : len(x)] = torch.from_numpy(x)
    lengths = torch.tensor([len(x) for x in batch])
    a, na = ser_fast.fbank(padded, lengths=lengths)
    b, nb = ser_fast.fbank(batch)
    assert torch.equal(na, nb) and torch.equal(a, b)


def test_threads_do_not_change_results():
    batch = _batch(seed=9) * 3
    torch.set_num_threads(1)
    one, _ = ser_fast.fbank(batch, dither=1.0, seed=3)
    torch.set_num_threads(2)
    two, _ = ser_fast.fbank(batch, dither=1.0, seed=3)
    assert torch.equal(one, two)


@pytest.mark.parametrize("options", [
    pytest.param({}, id="default"),
    pytest.param(dict(snip_edges=False, window_type="hamming", use_energy=True), id="reflect-hamming-energy"),
    pytest.param(dict(round_to_power_of_two=False, sample_rate=22050, num_mel_bins=40), id="odd-fft-22050"),
    pytest.param(dict(use_log_fbank=False, use_power=False), id="linear-magnitude"),
])
def test_torch_path_equals_cpp_path(options):
    rate = int(options.get("sample_rate", 16000))
    batch = [speech_like(n, rate, seed=n) for n in (rate, 3 * rate // 2 + 11, 999)]
    a, na = ser_fast.fbank(batch, backend="cpp", **options)
    b, nb = ser_fast.fbank(batch, backend="torch", **options)
    assert torch.equal(na, nb)
    assert_close(a, b, atol=1e-3, rtol=1e-4, msg=str(options))


def test_dither_is_reproducible_with_seed_and_has_the_right_scale():
    silence = np.zeros(16000, dtype=np.float32)
    options = dict(dither=1.0, use_energy=True, window_type="rectangular", preemph_coeff=0.0, remove_dc_offset=False)
    a, _ = ser_fast.fbank([silence, silence], seed=7, **options)
    b, _ = ser_fast.fbank([silence, silence], seed=7, **options)
    c, _ = ser_fast.fbank([silence, silence], seed=8, **options)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1]), "each item gets its own noise"
    # Raw energy of 400 unit Gaussians: log(400) on average.
    assert abs(float(a[..., 0].mean()) - np.log(400)) < 0.05
    torch.manual_seed(0)
    d, _ = ser_fast.fbank([silence], **options)
    torch.manual_seed(0)
    e, _ = ser_fast.fbank([silence], **options)
    assert torch.equal(d, e), "seed=None follows torch.manual_seed"
    t, _ = ser_fast.fbank([silence], backend="torch", seed=7, **options)
    assert abs(float(t[..., 0].mean()) - np.log(400)) < 0.05


BAD_INPUTS = [
    pytest.param(lambda: ([np.array([1.0, np.nan] * 400, dtype=np.float32)], {}), ValueError, r"waveforms\[0\].*NaN", id="nan"),
    pytest.param(lambda: ([np.ones(800, np.float32), np.array([np.inf] * 800)], {}), ValueError, r"waveforms\[1\].*Inf", id="inf"),
    pytest.param(lambda: ([np.array([1e39] * 800)], {}), ValueError, r"float32 range", id="float64-overflow"),
    pytest.param(lambda: ([np.ones(800, np.float32), np.r_[np.ones(16006, np.float32), np.nan]], {}), ValueError,
                 r"waveforms\[1\].*NaN", id="nan-in-the-unread-tail"),
    pytest.param(lambda: ([np.r_[np.ones(500, np.float32), np.inf, np.ones(1000, np.float32)]],
                          {"frame_length_ms": 5.0, "frame_shift_ms": 40.0, "num_mel_bins": 10}), ValueError, r"waveforms\[0\].*Inf",
                 id="inf-between-frames"),
    pytest.param(lambda: ([np.r_[np.ones(50, np.float32), np.nan]], {}), ValueError, r"waveforms\[0\].*NaN",
                 id="nan-in-a-signal-shorter-than-a-frame"),
    pytest.param(lambda: ([], {}), ValueError, "empty batch", id="empty-list"),
    pytest.param(lambda: (torch.zeros(0, 100), {}), ValueError, "empty batch", id="empty-tensor"),
    pytest.param(lambda: ([np.ones(800, np.float32), np.ones((2, 800), np.float32)], {}), ValueError,
                 r"waveforms\[1\].*1-D.*mix down", id="stereo-item"),
    pytest.param(lambda: ([np.ones(800, np.complex64)], {}), TypeError, r"waveforms\[0\].*complex", id="complex"),
    pytest.param(lambda: ([torch.ones(800, dtype=torch.bool)], {}), TypeError, r"waveforms\[0\].*bool", id="bool"),
    pytest.param(lambda: ([torch.ones(800, dtype=torch.int32)], {}), TypeError, r"waveforms\[0\].*int16", id="int32"),
    pytest.param(lambda: (["abc"], {}), TypeError, r"waveforms\[0\] is a str", id="string-item"),
    pytest.param(lambda: (torch.zeros(2, 800), {"lengths": [800, 801]}), ValueError, r"lengths\[1\]=801", id="lengths-too-long"),
    pytest.param(lambda: (torch.zeros(2, 800), {"lengths": [800, -1]}), ValueError, r"lengths\[1\]=-1", id="negative-length"),
    pytest.param(lambda: (torch.zeros(2, 800), {"lengths": [800]}), ValueError, "lengths", id="lengths-wrong-size"),
    pytest.param(lambda: ([np.ones(800)], {"sample_rate": 0}), ValueError, "sample_rate", id="zero-rate"),
    pytest.param(lambda: ([np.ones(800)], {"sample_rate": -16000}), ValueError, "sample_rate", id="negative-rate"),
    pytest.param(lambda: ([np.ones(800)], {"sample_rate": float("nan")}), ValueError, "sample_rate", id="nan-rate"),
    pytest.param(lambda: ([np.ones(800)], {"window_type": "kaiser"}), ValueError, "window_type", id="bad-window"),
    pytest.param(lambda: ([np.ones(800)], {"num_mel_bins": 2}), ValueError, "num_mel_bins", id="too-few-bins"),
    pytest.param(lambda: ([np.ones(800)], {"num_mel_bins": 200}), ValueError, "too large", id="too-many-bins"),
    pytest.param(lambda: ([np.ones(800)], {"high_freq": 9000}), ValueError, "Nyquist", id="high-freq-above-nyquist"),
    pytest.param(lambda: ([np.ones(800)], {"frame_shift_ms": 0}), ValueError, "frame_shift_ms", id="zero-shift"),
    pytest.param(lambda: ([np.ones(800)], {"preemph_coeff": 1.5}), ValueError, "preemph_coeff", id="bad-preemph"),
    pytest.param(lambda: ([np.ones(800)], {"backend": "cuda"}), ValueError, "backend", id="unknown-backend"),
    pytest.param(lambda: ([np.ones(800)], {"seed": -1}), ValueError, "seed", id="negative-seed"),
    pytest.param(lambda: ([np.ones(800)], {"sample_rate": 1e39}), ValueError, "sample_rate", id="huge-rate"),
    pytest.param(lambda: ([np.ones(800)], {"frame_shift_ms": 1e9}), ValueError, "frame_shift_ms", id="huge-shift"),
    pytest.param(lambda: ([np.ones(800)], {"frame_length_ms": 500.5625, "round_to_power_of_two": False}),
                 ValueError, "prime factor 8009", id="prime-fft-size"),
    pytest.param(lambda: (torch.zeros(2, 800), {"lengths": [True, True]}), ValueError, "lengths", id="bool-lengths"),
    pytest.param(lambda: ([torch.zeros(800, device="meta")], {}), ValueError, r"waveforms\[0\] is a meta", id="meta"),
    pytest.param(lambda: ([np.ones(800, dtype=">f4")], {}), TypeError, r"waveforms\[0\].*astype", id="big-endian"),
    pytest.param(lambda: (torch.zeros(2, 800), {"lengths": [None, 1]}), ValueError,
                 r"lengths=\[None, 1\] cannot be read", id="none-in-lengths"),
    pytest.param(lambda: (torch.zeros(2, 800), {"lengths": "ab"}), TypeError, "lengths is a str", id="string-lengths"),
    pytest.param(lambda: (torch.zeros(2, 800), {"lengths": [2**64, 10]}), ValueError, "cannot be read as integers",
                 id="lengths-beyond-int64"),
    pytest.param(lambda: (torch.zeros(2, 800).to_sparse(), {}), TypeError, "sparse_coo tensor; expected a dense",
                 id="sparse-batch"),
    pytest.param(lambda: ([torch.zeros(800).to_sparse()], {}), TypeError, r"waveforms\[0\] is a torch.sparse_coo",
                 id="sparse-item"),
    pytest.param(lambda: ([np.ones(800)], {"num_mel_bins": 2**40}), ValueError, "from 3 to 256", id="2^40-bins"),
    pytest.param(lambda: ([np.ones(800)], {"dither": 1e38}), ValueError, "dither=1e.38: expected 0 to 1e.06",
                 id="dither-1e38"),
    pytest.param(lambda: ([np.ones(800)], {"frame_length_ms": 0.1, "sample_rate": 17000}), ValueError,
                 "gives 1.7 samples at 17000 Hz", id="fractional-window-message"),
]


@pytest.mark.parametrize("rate", [np.float32(16000), np.float64(16000), np.int64(16000), np.int16(16000)],
                         ids=lambda r: type(r).__name__)
def test_numpy_scalars_are_numbers(rate):
    x = [np.random.default_rng(0).standard_normal(800).astype(np.float32)]
    feats, _ = ser_fast.fbank(x, rate, num_mel_bins=np.int64(40))
    expected, _ = ser_fast.fbank(x, 16000, num_mel_bins=40)
    assert torch.equal(feats, expected)


@pytest.mark.parametrize("make, error, pattern", BAD_INPUTS)
@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_bad_input_gets_a_clear_error(make, error, pattern, backend):
    waveforms, kwargs = make()
    with pytest.raises(error, match=pattern):
        ser_fast.fbank(waveforms, **{"backend": backend, **kwargs})


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_huge_finite_samples_overflow_like_kaldi_instead_of_raising(backend):
    """Finite samples whose power overflows float32: Kaldi's arithmetic gives inf/NaN, and so do we
    (not an error about NaN input, and not a finite value made up by the log)."""
    feats, _ = ser_fast.fbank([np.tile(np.float32([3e37, -3e37]), 400)], backend=backend)
    assert not torch.isfinite(feats).any()


def test_signal_shorter_than_a_frame_gives_zero_frames_like_kaldi():
    feats, n = ser_fast.fbank([np.ones(100, np.float32)])
    assert feats.shape == (1, 0, 80) and int(n[0]) == 0
    feats, n = ser_fast.fbank([np.ones(100, np.float32)], snip_edges=False)
    assert int(n[0]) == 1 and torch.isfinite(feats).all()


def test_cpp_backend_refuses_what_it_cannot_run():
    from ser_fast._extension import extension

    ext = extension()
    opts = FbankOptions().to_cpp()
    with pytest.raises(ValueError, match=r"waveforms\[0\] has shape"):
        ext.fbank_out([torch.zeros(2, 800)], opts, torch.zeros(1, 4, 80), 0)
    with pytest.raises(ValueError, match="out has shape"):
        ext.fbank_out([torch.zeros(800)], opts, torch.zeros(1, 1, 80), 0)
    with pytest.raises(TypeError, match="dtype"):
        ext.fbank_out([torch.zeros(800, dtype=torch.int32)], opts, torch.zeros(1, 3, 80), 0)
    with pytest.raises(ValueError, match="window_type"):
        opts.window_type = "kaiser"


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_every_instruction_set_copy_matches_kaldi(isa):
    """The kernels are compiled once per ISA; every copy this CPU can run must give Kaldi's numbers."""
    try:
        ser_fast.set_cpu_isa(isa)
    except ValueError:
        pytest.skip(f"this CPU cannot run the {isa} kernels")
    try:
        assert ser_fast.cpu_isa() == isa
        cases = [dict(), dict(snip_edges=False, use_energy=True, window_type="hamming"),
                 dict(sample_rate=22050, num_mel_bins=40), dict(use_log_fbank=False, raw_energy=False, use_energy=True)]
        for options in cases:
            opts = FbankOptions(**options)
            rate = int(opts.sample_rate)
            batch = [speech_like(n, rate, seed=n) for n in (rate + 3, 7 * rate // 10, 2 * rate - 1)]
            feats, num_frames = ser_fast.fbank(batch, backend="cpp", **options)
            for i, x in enumerate(batch):
                ref = knf_fbank(x, opts)
                assert int(num_frames[i]) == ref.shape[0]
                assert_matches_kaldi(feats[i, : ref.shape[0]], ref, opts, msg=f"{isa} {options} item {i}")
        odd = dict(sample_rate=22050, round_to_power_of_two=False)
        x = speech_like(30011, 22050, seed=4)
        assert_close(ser_fast.fbank([x], backend="cpp", **odd)[0], ser_fast.fbank([x], backend="torch", **odd)[0],
                     atol=1e-3, rtol=1e-4, msg=f"{isa} odd FFT size")
    finally:
        ser_fast.set_cpu_isa(None)


def test_unknown_instruction_set_is_refused():
    with pytest.raises(ValueError, match="expected one of baseline, avx2, avx512"):
        ser_fast.set_cpu_isa("neon")


@pytest.mark.parametrize("snip_edges", [True, False], ids=["snip", "reflect"])
def test_frame_count_formula_agrees_with_the_extension(snip_edges):
    from ser_fast._extension import extension

    opts = FbankOptions(snip_edges=snip_edges, sample_rate=22050)
    lengths = torch.arange(0, 3000, 7)
    batched = opts.num_frames_of(lengths).tolist()
    assert batched == [opts.num_frames(int(n)) for n in lengths]
    assert batched == [extension().fbank_num_frames(int(n), opts.to_cpp()) for n in lengths]


def _random_input(rng: np.random.Generator):
    """Anything a confused caller might pass: odd dtypes, shapes, devices, values and options."""
    kind = rng.integers(0, 12)
    n = int(rng.choice([0, 1, 2, 399, 400, 401, 1601]))
    dtype = rng.choice(["float32", "float64", "int16", "int32", "uint8", "complex64", "bool", "float16"])
    if kind == 0:
        x = rng.standard_normal(n).astype(dtype) if dtype != "bool" else rng.integers(0, 2, n).astype(bool)
        return [x], {}
    if kind == 1:
        return [rng.standard_normal((2, n)).astype(np.float32)], {}
    if kind == 2:
        x = rng.standard_normal(n).astype(np.float32)
        if n:
            x[rng.integers(0, n)] = rng.choice([np.nan, np.inf, -np.inf])
        return [x], {}
    if kind == 3:
        return torch.zeros(3, n), {"lengths": rng.integers(-2, n + 3, 3).tolist()}
    if kind == 4:
        return [torch.zeros(n, device="meta")], {"backend": "cpp"}
    if kind == 5:
        return [np.zeros(max(n, 1), np.float32)[::-1]], {"sample_rate": float(rng.choice([0.5, 8000, 1e7, -1]))}
    if kind == 6:
        return [np.zeros(n, np.float32)], {"num_mel_bins": int(rng.integers(-1, 300)),
                                           "frame_length_ms": float(rng.choice([0.01, 25.0, 1e5]))}
    if kind == 8:
        junk = [[None, 1], "ab", [2**64, 10], [1.5, 2], [[1], [2]], torch.ones(2).to_sparse(), {"a": 1}]
        return torch.zeros(2, n), {"lengths": junk[int(rng.integers(0, len(junk)))]}
    if kind == 9:
        return torch.randn(2, max(n, 1)).to_sparse(), {}
    if kind == 10:
        scalar = rng.choice([np.float32, np.float64, np.int64, np.int16])
        return [np.ones(max(n, 1), np.float32)], {"sample_rate": scalar(16000),
                                                  "num_mel_bins": int(rng.choice([3, 80, 2**40, -5]))}
    if kind == 11:
        return [rng.standard_normal(max(n, 1)).astype(np.float32)], {"dither": float(rng.choice([1.0, 1e6, 1e38]))}
    return [rng.standard_normal(n).astype(np.float32), None], {}


def test_random_bad_inputs_raise_errors_and_never_crash():
    rng = np.random.default_rng(1234)
    for _ in range(300):
        waveforms, kwargs = _random_input(rng)
        try:
            feats, n = ser_fast.fbank(waveforms, **kwargs)
        except (ValueError, TypeError) as err:
            assert str(err), "errors must say what was wrong"
        else:
            assert feats.shape[0] == n.shape[0] and torch.isfinite(feats).all()


def float64_fbank(x: np.ndarray, opts: FbankOptions) -> np.ndarray:
    """Kaldi's recipe in float64, frame by frame as Kaldi writes it: the exact answer that float32
    implementations approximate (no dither)."""
    from ser_fast.frontend import tables

    eps = np.finfo(np.float32).eps
    rows = []
    for t in range(opts.num_frames(len(x))):
        idx = []
        for s in range(opts.window_size):
            i = opts.first_sample(t) + s
            while i < 0 or i >= len(x):
                i = -i - 1 if i < 0 else 2 * len(x) - 1 - i
            idx.append(i)
        frame = x[idx].astype(np.float64)
        if opts.remove_dc_offset:
            frame -= frame.mean()
        energy = np.sum(frame**2)
        c = opts.preemph_coeff
        frame = np.r_[frame[0] * (1 - c), frame[1:] - c * frame[:-1]] * tables.window(opts)
        if not opts.raw_energy:
            energy = np.sum(frame**2)
        spectrum = np.abs(np.fft.fft(frame, opts.padded_window_size))[: opts.padded_window_size // 2]
        mel = (spectrum**2 if opts.use_power else spectrum) @ tables.mel_banks(opts).astype(np.float64)
        if opts.use_log_fbank:
            mel = np.log(np.maximum(mel, eps))
        if opts.use_energy:
            log_energy = np.log(max(energy, eps))
            if opts.energy_floor > 0:
                log_energy = max(log_energy, np.log(opts.energy_floor))
            mel = np.r_[log_energy, mel]
        rows.append(mel)
    return np.array(rows).reshape(-1, opts.feature_dim)


@pytest.mark.parametrize("num_samples", [8, 9, 31, 250], ids=lambda n: f"n{n}")
def test_frames_longer_than_the_signal_reflect_repeatedly_like_kaldi(num_samples):
    """A 100 ms frame over a few samples reflects them many times: a periodic frame with a line
    spectrum whose empty bands sit at float32 rounding level. There no two float32 implementations
    agree to 1e-3, so each is held to the float64 answer, as close as kaldi-native-fbank gets (x2)."""
    options = dict(snip_edges=False, frame_length_ms=100.0, frame_shift_ms=1.0, num_mel_bins=40)
    opts = FbankOptions(**options)
    x = speech_like(num_samples, 16000, seed=num_samples)
    exact = float64_fbank(x, opts)
    kaldi = knf_fbank(x, opts)
    for backend in ("cpp", "torch"):
        feats, n = ser_fast.fbank([x], backend=backend, **options)
        assert int(n[0]) == kaldi.shape[0] == exact.shape[0]
        ours_error = float(np.abs(feats[0].numpy() - exact).max())
        kaldi_error = float(np.abs(kaldi - exact).max())
        assert ours_error <= 2 * kaldi_error + 1e-3, f"{backend}: {ours_error:.2e} vs kaldi-native-fbank's {kaldi_error:.2e}"
