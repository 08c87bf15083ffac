// Kaldi's triangular Mel filters (mel(f) = 1127 ln(1 + f/700)), built in float arithmetic exactly as
// Kaldi and kaldi-native-fbank build them, stored sparsely: filter b covers FFT bins
// [first[b], first[b] + weights[b].size()).
#pragma once

#include <cstdint>
#include <vector>

namespace ser_fast {

struct FbankOptions;

struct MelBanks {
  explicit MelBanks(const FbankOptions& opts);

  int32_t num_fft_bins;                      // padded window / 2: Kaldi never uses the Nyquist bin
  std::vector<int32_t> first;                // first FFT bin of each filter
  std::vector<std::vector<float>> weights;   // weights over consecutive bins
};

}  // namespace ser_fast
