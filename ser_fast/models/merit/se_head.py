"""Sparse MERIT's speech-enhancement head, as released: a mask on the noisy log1p magnitude.

    X = STFT(noisy)                       n_fft 400, Hamming 400, hop 160 (10 ms at 16 kHz) → [B, 201, T]
    u = repeat₂(h_se)                     SE expert features, 20 ms → 10 ms frames, trimmed/padded to T
    m = σ(W_o · BLSTM(W_i [u; log1p|X|])) Linear(D+201→256), 2-layer BLSTM (directions summed), Linear(256→201)
    Ŝ = m · log1p|X|                      enhanced log1p magnitude; loss L1(Ŝ, log1p|S_clean|)
    ŝ = iSTFT(expm1(Ŝ), ∠X)               waveform with the noisy phase, as long as the input
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ser_fast.models.checks import check_positive_ints
from ser_fast.ops.lstm_by_lengths import lstm_by_lengths

N_FFT = 400
HOP_LENGTH = 160
N_FREQ = N_FFT // 2 + 1


class Spectrogram(nn.Module):
    """The head's STFT and its inverse: n_fft 400, a 400-sample Hamming window, hop 160, centred frames."""

    def __init__(self, n_fft: int = N_FFT, win_length: int = N_FFT, hop_length: int = HOP_LENGTH) -> None:
        super().__init__()
        check_positive_ints("Spectrogram", n_fft=n_fft, win_length=win_length, hop_length=hop_length)
        if win_length > n_fft:
            raise ValueError(f"Spectrogram: win_length={win_length} exceeds n_fft={n_fft}")
        if hop_length > win_length:
            raise ValueError(f"Spectrogram: hop_length={hop_length} exceeds win_length={win_length}; "
                             "the inverse needs overlapping windows")
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        # A constant of the transform, not a learned state: kept out of state dicts.
        self.register_buffer("window", torch.hamming_window(win_length), persistent=False)

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def frames(self, num_samples: int) -> int:
        """The number of frames ``forward`` gives for ``num_samples`` samples (centred frames)."""
        check_positive_ints("Spectrogram.frames", num_samples=num_samples)
        return 1 + num_samples // self.hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [B, S]`` float → complex STFT ``[B, F, T]`` (F = n_fft/2 + 1, T = ``frames(S)``)."""
        _check_float(wave, "wave", "[B, S]", dims=2)
        # Centring reflects n_fft/2 samples at each end, which needs that many samples plus one.
        if wave.shape[1] <= self.n_fft // 2:
            raise ValueError(f"Spectrogram: wave needs more than {self.n_fft // 2} samples, got {wave.shape[1]}")
        return torch.stft(wave, self.n_fft, self.hop_length, self.win_length, self.window.to(wave.dtype),
                          center=True, return_complex=True)

    @staticmethod
    def log1p_magnitude(spec: torch.Tensor) -> torch.Tensor:
        """``log(1 + |X|)`` of a complex spectrogram, the head's feature and its loss's domain."""
        if not isinstance(spec, torch.Tensor) or not spec.is_complex():
            raise TypeError(f"log1p_magnitude: spec must be a complex tensor, got {_describe(spec)}")
        return torch.log1p(spec.abs())

    def inverse(self, magnitude: torch.Tensor, phase_source: torch.Tensor, length: int) -> torch.Tensor:
        """Waveform ``[B, length]`` from ``magnitude [B, F, T]`` and the phase of ``phase_source`` (complex, same
        shape). The phase is a constant: no gradient flows into ``phase_source``."""
        _check_float(magnitude, "magnitude", "[B, F, T]", dims=3)
        if not isinstance(phase_source, torch.Tensor) or not phase_source.is_complex():
            raise TypeError(f"inverse: phase_source must be a complex tensor, got {_describe(phase_source)}")
        if phase_source.shape != magnitude.shape or magnitude.shape[1] != self.n_freq:
            raise ValueError(f"inverse: magnitude {tuple(magnitude.shape)} and phase_source "
                             f"{tuple(phase_source.shape)} must both be [B, F={self.n_freq}, T]")
        if torch.compiler.is_exporting():  # length is a symbolic size there
            return self._traceable_inverse(magnitude, phase_source, length)
        check_positive_ints("inverse", length=length)
        # The angle's gradient is undefined at zero bins; the noisy phase is an input, not a prediction.
        phase = torch.angle(phase_source.detach()).to(magnitude.dtype)
        return torch.istft(torch.polar(magnitude, phase), self.n_fft, self.hop_length, self.win_length,
                           self.window.to(magnitude.dtype), center=True, length=length)

    def _traceable_inverse(self, magnitude: torch.Tensor, phase_source: torch.Tensor, length: int) -> torch.Tensor:
        """:meth:`inverse` in ops every exporter has (ONNX has no inverse STFT): the unit phasor ``X / |X|`` (1 where
        ``X = 0``, as ``angle(0) = 0``), the inverse real DFT as two matrix products, the window, overlap-add as
        ``ceil(n_fft / hop)`` shifted sums of hop-long chunks, division by the summed squared window, the centring
        trimmed."""
        parts = torch.view_as_real(phase_source)
        norm = torch.sqrt(parts[..., 0].square() + parts[..., 1].square())
        zero = norm == 0
        cos = torch.where(zero, 1.0, parts[..., 0] / torch.where(zero, 1.0, norm))
        sin = torch.where(zero, 0.0, parts[..., 1] / torch.where(zero, 1.0, norm))
        basis_cos, basis_sin = _inverse_dft(self.n_fft, magnitude.dtype, magnitude.device)
        frames = ((magnitude * cos).transpose(1, 2) @ basis_cos - (magnitude * sin).transpose(1, 2) @ basis_sin)
        left = (self.n_fft - self.win_length) // 2  # as torch.istft centres a shorter window
        window = F.pad(self.window.to(magnitude.dtype), (left, self.n_fft - self.win_length - left))
        signal = self._overlap_add(frames * window)
        envelope = self._overlap_add(window.square().expand(1, frames.shape[1], -1))
        start = self.n_fft // 2
        return (signal / envelope.clamp(min=1e-11))[:, start:start + length]

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [B, T, n_fft]`` laid every ``hop`` samples and summed → ``[B, (T + chunks - 1) · hop]``."""
        hop = self.hop_length
        chunks = -(-self.n_fft // hop)
        batch, count, _ = frames.shape
        split = F.pad(frames, (0, chunks * hop - self.n_fft)).reshape(batch, count, chunks, hop)
        total = sum(F.pad(split[:, :, k], (0, 0, k, chunks - 1 - k)) for k in range(chunks))
        return total.reshape(batch, (count + chunks - 1) * hop)


def _inverse_dft(n_fft: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(C, S)``, each ``[n_fft/2 + 1, n_fft]``, with ``irfft(X) = Re X @ C - Im X @ S`` (``irfft`` ignores the
    imaginary parts of the DC and Nyquist bins, where ``S`` is 0)."""
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    phase = 2 * torch.pi * bins[:, None] * torch.arange(n_fft, dtype=torch.float64)[None, :] / n_fft
    weight = torch.full_like(bins, 2.0)
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0
    weight = weight[:, None] / n_fft
    return tuple((weight * basis(phase)).to(dtype=dtype, device=device) for basis in (torch.cos, torch.sin))


class SEHead(nn.Module):
    """The mask estimator: ``Linear(D+F→hidden) → BLSTM(layers, hidden) → Linear(hidden→F) → σ``. The BLSTM's two
    directions are summed at its output (as released), so the output projection sees ``hidden`` features; between its
    layers nn.LSTM passes both directions concatenated.
    """

    def __init__(self, feature_dim: int, hidden: int = 256, layers: int = 2, n_freq: int = N_FREQ,
                 upsample: int = 2) -> None:
        super().__init__()
        check_positive_ints("SEHead", feature_dim=feature_dim, hidden=hidden, layers=layers, n_freq=n_freq,
                            upsample=upsample)
        self.feature_dim, self.hidden, self.n_freq, self.upsample = feature_dim, hidden, n_freq, upsample
        self.input_proj = nn.Linear(feature_dim + n_freq, hidden)
        self.blstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.output_proj = nn.Linear(hidden, n_freq)

    @property
    def max_frame_mismatch(self) -> int:
        """How far the upsampled expert frames may miss the STFT frame count. An SSL encoder's convolutions lose about
        one of its frames at each end of the signal, ``upsample`` STFT frames each; a larger gap means the features and
        the spectrogram do not belong together."""
        return 2 * self.upsample

    def forward(self, expert_features: torch.Tensor, noisy_log_mag: torch.Tensor,
                frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The mask ``[B, F, T]`` in (0, 1) on the noisy log1p magnitude.

        Args:
            expert_features: ``[B, T_ssl, D]`` SE expert features at the SSL frame rate (20 ms).
            noisy_log_mag: ``[B, F, T]`` log1p magnitude of the noisy STFT (10 ms frames).
            frame_lengths: ``[B]`` int64, valid STFT frames per item (``stft_lengths`` of the sample counts), or None
                when nothing is padded. The BLSTM runs on the valid frames only, so padding never reaches the backward
                direction; the mask is 0 on padding frames.
        """
        _check_float(expert_features, "expert_features", "[B, T_ssl, D]", dims=3)
        _check_float(noisy_log_mag, "noisy_log_mag", "[B, F, T]", dims=3)
        batch, _, num_frames = noisy_log_mag.shape
        if expert_features.shape[0] != batch or expert_features.shape[2] != self.feature_dim:
            raise ValueError(f"SEHead: expert_features must be [B={batch}, T_ssl, D={self.feature_dim}], "
                             f"got {tuple(expert_features.shape)}")
        if noisy_log_mag.shape[1] != self.n_freq:
            raise ValueError(f"SEHead: noisy_log_mag must be [B, F={self.n_freq}, T], got {tuple(noisy_log_mag.shape)}")
        upsampled = self._to_stft_frames(expert_features, num_frames)
        x = self.input_proj(torch.cat([upsampled, noisy_log_mag.transpose(1, 2)], dim=-1))
        if frame_lengths is None:
            y, _ = self.blstm(x)
        elif torch.compiler.is_exporting():
            # Packed sequences do not trace; the op keeps the per-item lengths in the graph.
            lengths = frame_lengths
            y = lstm_by_lengths(self.blstm, x, lengths)
        else:
            lengths = _check_lengths(frame_lengths, batch, num_frames)
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            y, _ = pad_packed_sequence(self.blstm(packed)[0], batch_first=True, total_length=num_frames)
        y = y[..., :self.hidden] + y[..., self.hidden:]
        mask = torch.sigmoid(self.output_proj(y))
        if frame_lengths is not None:
            valid = torch.arange(num_frames, device=mask.device) < lengths.to(mask.device).unsqueeze(1)
            mask = mask * valid.unsqueeze(-1).to(mask.dtype)
        return mask.transpose(1, 2)

    def _to_stft_frames(self, expert_features: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Repeat each SSL frame ``upsample`` times, then trim, or pad with zeros (``F.pad`` trims with a negative
        width): zeros are what a shorter item of a padded batch finds past its own expert frames (ExpertPool zeroes
        padding frames), so an item gets the same mask alone or in a batch."""
        upsampled = expert_features.repeat_interleave(self.upsample, dim=1)
        if abs(upsampled.shape[1] - num_frames) > self.max_frame_mismatch:
            raise ValueError(f"SEHead: {expert_features.shape[1]} expert frames ×{self.upsample} = "
                             f"{upsampled.shape[1]} do not match the {num_frames} STFT frames (at most "
                             f"{self.max_frame_mismatch} apart); are the features at the SSL frame rate?")
        return F.pad(upsampled, (0, 0, 0, num_frames - upsampled.shape[1]))


def enhance(noisy_wave: torch.Tensor, mask: torch.Tensor, spectrogram: Spectrogram) -> torch.Tensor:
    """The enhanced waveform ``[B, S]``: ``mask [B, F, T]`` scales the noisy log1p magnitude, and
    ``spectrogram.inverse`` returns to samples with the noisy phase, as long as ``noisy_wave [B, S]``."""
    if not isinstance(spectrogram, Spectrogram):
        raise TypeError(f"enhance: spectrogram must be a Spectrogram, got {type(spectrogram).__name__}")
    noisy = spectrogram(noisy_wave)
    _check_float(mask, "mask", "[B, F, T]", dims=3)
    if mask.shape != noisy.shape:
        raise ValueError(f"enhance: mask must match the noisy STFT {tuple(noisy.shape)}, got {tuple(mask.shape)}")
    enhanced_log_mag = mask * spectrogram.log1p_magnitude(noisy)
    return spectrogram.inverse(torch.expm1(enhanced_log_mag), noisy, noisy_wave.shape[1])


def se_loss(enhanced_log_mag: torch.Tensor, clean_log_mag: torch.Tensor,
            frame_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error between ``[B, F, T]`` log1p magnitudes over the valid bins, float32; ``frame_mask [B, T]``
    bool marks the padding frames (True), which do not count."""
    _check_float(enhanced_log_mag, "enhanced_log_mag", "[B, F, T]", dims=3)
    _check_float(clean_log_mag, "clean_log_mag", "[B, F, T]", dims=3)
    if enhanced_log_mag.shape != clean_log_mag.shape:
        raise ValueError(f"se_loss: enhanced_log_mag {tuple(enhanced_log_mag.shape)} and clean_log_mag "
                         f"{tuple(clean_log_mag.shape)} differ in shape")
    error = (enhanced_log_mag.float() - clean_log_mag.float()).abs()
    if frame_mask is None:
        return error.mean()
    batch, n_freq, num_frames = error.shape
    if not isinstance(frame_mask, torch.Tensor) or frame_mask.dtype != torch.bool:
        raise TypeError(f"se_loss: frame_mask must be a bool tensor [B, T] (True = padding), "
                        f"got {_describe(frame_mask)}")
    if tuple(frame_mask.shape) != (batch, num_frames):
        raise ValueError(f"se_loss: frame_mask must be [B={batch}, T={num_frames}], got {tuple(frame_mask.shape)}")
    valid = ~frame_mask.to(error.device)
    count = int(valid.sum())
    if count == 0:
        raise ValueError("se_loss: every frame is padding; nothing to score")
    return (error * valid.unsqueeze(1)).sum() / (count * n_freq)


def stft_lengths(num_samples: torch.Tensor, hop_length: int = HOP_LENGTH) -> torch.Tensor:
    """Valid STFT frames ``[B]`` for ``num_samples [B]`` (int64), as ``Spectrogram.frames`` counts them."""
    if not isinstance(num_samples, torch.Tensor) or num_samples.dtype != torch.int64 or num_samples.dim() != 1:
        raise TypeError(f"stft_lengths: num_samples must be a 1-D int64 tensor, got {_describe(num_samples)}")
    if not torch.compiler.is_compiling() and bool((num_samples < 1).any()):
        raise ValueError(f"stft_lengths: num_samples must be positive, got {num_samples.tolist()}")
    check_positive_ints("stft_lengths", hop_length=hop_length)
    return 1 + torch.div(num_samples, hop_length, rounding_mode="floor")


def _check_lengths(lengths: torch.Tensor, batch: int, num_frames: int) -> torch.Tensor:
    if not isinstance(lengths, torch.Tensor) or lengths.dtype != torch.int64:
        raise TypeError(f"SEHead: frame_lengths must be an int64 tensor [B], got {_describe(lengths)}")
    if tuple(lengths.shape) != (batch,):
        raise ValueError(f"SEHead: frame_lengths must be [B={batch}], got shape {tuple(lengths.shape)}")
    if bool(((lengths < 1) | (lengths > num_frames)).any()):
        raise ValueError(f"SEHead: frame_lengths must lie in 1..{num_frames}, got {lengths.tolist()}")
    # pack_padded_sequence reads lengths on the CPU.
    return lengths.cpu()


def _check_float(t: object, name: str, shape: str, *, dims: int) -> None:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise TypeError(f"{name} must be a real floating-point tensor {shape}, got {_describe(t)}")
    if t.dim() != dims:
        raise ValueError(f"{name} must be {shape}, got shape {tuple(t.shape)}")


def _describe(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"a tensor of dtype {t.dtype} and shape {tuple(t.shape)}"
    return type(t).__name__
