#include "fbank_options.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "mel_banks.h"

namespace ser_fast {

namespace {

int32_t RoundUpToPowerOfTwo(int32_t n) {
  int32_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

int32_t LargestPrimeFactor(int32_t n) {
  int32_t largest = 1;
  for (int32_t p = 2; p * p <= n; ++p) {
    while (n % p == 0) {
      largest = p;
      n /= p;
    }
  }
  return std::max(largest, n);
}

void Require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

}  // namespace

int32_t FbankOptions::PaddedWindowSize() const {
  return round_to_power_of_two ? RoundUpToPowerOfTwo(WindowSize()) : WindowSize();
}

void FbankOptions::Validate() const {
  Require(sample_rate > 0.0f && sample_rate <= 1e7f, "sample_rate must be in (0, 1e7]");
  // Range-check the float products before WindowShift()/WindowSize() cast them to int32.
  const float shift = sample_rate * 0.001f * frame_shift_ms;
  const float size = sample_rate * 0.001f * frame_length_ms;
  Require(frame_shift_ms > 0.0f && shift >= 1.0f && shift < 2147483648.0f,
          "frame_shift_ms must give at least one sample per shift (and fewer than 2^31)");
  Require(frame_length_ms > 0.0f && size >= 2.0f && size <= 65536.0f,
          "frame_length_ms must give 2 to 65536 samples per frame");
  Require(LargestPrimeFactor(PaddedWindowSize()) <= kMaxPrimeFactor,
          "the FFT size has a prime factor above " + std::to_string(kMaxPrimeFactor) +
              ", which a direct DFT would take quadratic time for; use round_to_power_of_two");
  Require(preemph_coeff >= 0.0f && preemph_coeff <= 1.0f, "preemph_coeff must be in [0, 1]");
  Require(dither >= 0.0f, "dither must be >= 0");
  Require(energy_floor >= 0.0f, "energy_floor must be >= 0");
  Require(num_mel_bins >= 3, "num_mel_bins must be >= 3 (Kaldi's minimum)");
  const float nyquist = 0.5f * sample_rate;
  const float high = high_freq > 0.0f ? high_freq : nyquist + high_freq;
  std::ostringstream os;
  os << "low_freq=" << low_freq << " and high_freq=" << high_freq << " (effective " << high
     << ") must satisfy 0 <= low_freq < high <= nyquist=" << nyquist;
  Require(low_freq >= 0.0f && low_freq < nyquist && high > 0.0f && high <= nyquist && high > low_freq,
          os.str());
  MelBanks banks(*this);  // throws if a filter would be empty (too many bins for the FFT size)
}

std::string FbankOptions::ToString() const {
  std::ostringstream os;
  os.precision(9);
  os << "sample_rate=" << sample_rate << " frame_length_ms=" << frame_length_ms
     << " frame_shift_ms=" << frame_shift_ms << " dither=" << dither
     << " preemph_coeff=" << preemph_coeff << " remove_dc_offset=" << remove_dc_offset
     << " window_type=" << static_cast<int>(window_type) << " blackman_coeff=" << blackman_coeff
     << " round_to_power_of_two=" << round_to_power_of_two << " snip_edges=" << snip_edges
     << " num_mel_bins=" << num_mel_bins << " low_freq=" << low_freq << " high_freq=" << high_freq
     << " use_energy=" << use_energy << " energy_floor=" << energy_floor
     << " raw_energy=" << raw_energy << " use_log_fbank=" << use_log_fbank
     << " use_power=" << use_power;
  return os.str();
}

int64_t NumFrames(int64_t num_samples, const FbankOptions& opts) {
  const int64_t shift = opts.WindowShift();
  const int64_t length = opts.WindowSize();
  if (opts.snip_edges) {
    return num_samples < length ? 0 : 1 + (num_samples - length) / shift;
  }
  return (num_samples + shift / 2) / shift;
}

int64_t FirstSampleOfFrame(int64_t frame, const FbankOptions& opts) {
  const int64_t shift = opts.WindowShift();
  if (opts.snip_edges) return frame * shift;
  return frame * shift + shift / 2 - opts.WindowSize() / 2;
}

}  // namespace ser_fast
