#include "mel_banks.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "fbank_options.h"

namespace ser_fast {

namespace {

float MelScale(float hz) { return 1127.0f * logf(1.0f + hz / 700.0f); }

}  // namespace

MelBanks::MelBanks(const FbankOptions& opts) {
  const int32_t padded = opts.PaddedWindowSize();
  num_fft_bins = padded / 2;
  const float nyquist = 0.5f * opts.sample_rate;
  const float low_freq = opts.low_freq;
  const float high_freq = opts.high_freq > 0.0f ? opts.high_freq : nyquist + opts.high_freq;
  const float fft_bin_width = opts.sample_rate / static_cast<float>(padded);
  const float mel_low = MelScale(low_freq);
  const float mel_high = MelScale(high_freq);
  const float mel_delta = (mel_high - mel_low) / static_cast<float>(opts.num_mel_bins + 1);

  first.resize(opts.num_mel_bins);
  weights.resize(opts.num_mel_bins);
  for (int32_t bin = 0; bin < opts.num_mel_bins; ++bin) {
    const float left = mel_low + static_cast<float>(bin) * mel_delta;
    const float center = mel_low + static_cast<float>(bin + 1) * mel_delta;
    const float right = mel_low + static_cast<float>(bin + 2) * mel_delta;
    int32_t first_index = -1;
    for (int32_t i = 0; i < num_fft_bins; ++i) {
      const float mel = MelScale(fft_bin_width * static_cast<float>(i));
      if (mel > left && mel < right) {
        const float w = mel <= center ? (mel - left) / (center - left) : (right - mel) / (right - center);
        if (first_index < 0) first_index = i;
        // Bins inside (left, right) are consecutive because MelScale is monotonic.
        weights[bin].push_back(w);
      }
    }
    if (first_index < 0) {
      throw std::invalid_argument(
          "num_mel_bins=" + std::to_string(opts.num_mel_bins) + " is too large for a " +
          std::to_string(padded) + "-point FFT: Mel filter " + std::to_string(bin) +
          " covers no FFT bin (use fewer bins, a longer frame or a wider frequency range)");
    }
    first[bin] = first_index;
  }
}

}  // namespace ser_fast
