"""The numbers every part of ser_fast agrees on about audio and the models' input features."""

SAMPLE_RATE = 16000  # Hz: every model, the corpora and the noise bank work at 16 kHz
# Kaldi's log-Mel is defined on int16-range samples; waveforms in [-1, 1] are scaled by this first.
INT16_SCALE = 32768.0
FRAME_SHIFT_S = 0.01  # 10 ms frames
MIN_SAMPLES = 400  # one 25 ms frame at 16 kHz: the features need at least one
IN_CHANNELS = 3  # log-Mel, Δ, ΔΔ
N_MELS = 80
DELTA_WINDOW = 2
