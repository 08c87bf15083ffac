// Options of the log-Mel filterbank, with Kaldi's names and meanings (compute-fbank-feats), except
// the defaults of dither (0 here) and the absence of htk_compat / VTLN.
#pragma once

#include <cstdint>
#include <string>

namespace ser_fast {

// The FFT does each prime factor p of its size as a direct DFT (p^2 work): allow the primes real frame
// lengths give, refuse the sizes that would be quadratic.
constexpr int32_t kMaxPrimeFactor = 1021;

enum class WindowType { kPovey, kHamming, kHanning, kRectangular, kBlackman, kSine };

struct FbankOptions {
  float sample_rate = 16000.0f;      // Hz
  float frame_length_ms = 25.0f;     // window length
  float frame_shift_ms = 10.0f;      // hop
  float dither = 0.0f;               // std-dev of Gaussian noise added to each sample; 0 = none
  float preemph_coeff = 0.97f;       // x[i] -= c * x[i-1], applied after DC removal
  bool remove_dc_offset = true;      // subtract each frame's mean
  WindowType window_type = WindowType::kPovey;
  float blackman_coeff = 0.42f;      // only for the Blackman window
  bool round_to_power_of_two = true; // zero-pad each frame to the next power of two for the FFT
  bool snip_edges = true;            // true: frames fit in the signal; false: reflect at the edges
  int32_t num_mel_bins = 80;
  float low_freq = 20.0f;            // Hz, lower edge of the first Mel filter
  float high_freq = 0.0f;            // Hz; <= 0 means Nyquist + high_freq
  bool use_energy = false;           // prepend the frame's log energy as column 0
  float energy_floor = 0.0f;         // floor on the energy (linear); 0 = none
  bool raw_energy = true;            // energy before pre-emphasis and windowing
  bool use_log_fbank = true;         // log of the Mel energies (floored at FLT_EPSILON)
  bool use_power = true;             // power spectrum; false = magnitude

  // Kaldi computes these in float arithmetic; so do we, to give the same integer.
  int32_t WindowShift() const { return static_cast<int32_t>(sample_rate * 0.001f * frame_shift_ms); }
  int32_t WindowSize() const { return static_cast<int32_t>(sample_rate * 0.001f * frame_length_ms); }
  int32_t PaddedWindowSize() const;
  int32_t FeatureDim() const { return num_mel_bins + (use_energy ? 1 : 0); }

  // Throws std::invalid_argument naming the option and the accepted range.
  void Validate() const;
  // Every field, `name=value` separated by spaces: a cache key and a readable repr.
  std::string ToString() const;
};

int64_t NumFrames(int64_t num_samples, const FbankOptions& opts);
int64_t FirstSampleOfFrame(int64_t frame, const FbankOptions& opts);

}  // namespace ser_fast
