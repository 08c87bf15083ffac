// Batched log-Mel filterbank, numerically Kaldi's compute-fbank-feats. No torch in here: the caller
// owns the memory and the threads and hands each thread a range of blocks of kLanes frames.
#pragma once

#include <cstdint>
#include <vector>

#include "fbank_options.h"
#include "fft.h"
#include "mel_banks.h"

namespace ser_fast {

template <int W>
struct BlockKernel;

enum class SampleType { kFloat32, kFloat64, kInt16 };

struct WaveformView {
  const void* data;
  int64_t length;
  SampleType type;
};

// True when every sample is finite and within float32 range (always true for int16). Vectorised.
bool AllFinite(const WaveformView& w);

// Samples [0, begin) and [end, length) of a waveform are read by no frame: the kernel cannot vouch
// for them, so the binding checks them with AllFinite. {0, 0} when frames leave gaps (shift > length).
struct Coverage {
  int64_t begin;
  int64_t end;
};
Coverage FrameCoverage(int64_t num_samples, const FbankOptions& opts);

// One call's inputs and output. Frames of all waveforms are numbered one after another
// (frame_offsets is the exclusive prefix sum of frame counts, num_waves + 1 entries);
// out is [num_waves, max_frames, FeatureDim()] and rows past an item's frame count are not written.
struct FbankBatch {
  const WaveformView* waves;
  int64_t num_waves;
  const int64_t* frame_offsets;
  float* out;
  int64_t max_frames;
  uint64_t seed;  // dither noise is a pure function of (seed, item, frame, sample)
  // Set to 1 for an item one of whose frames holds NaN, Inf or a sum beyond float32 range: the
  // check rides on the frame sums taken during extraction instead of a separate pass.
  uint8_t* bad_items;
};

class FbankComputer {
 public:
  explicit FbankComputer(const FbankOptions& opts);

  const FbankOptions& options() const { return opts_; }

  int64_t NumBlocks(const FbankBatch& batch) const {
    return (batch.frame_offsets[batch.num_waves] + kLanes - 1) / kLanes;
  }
  // Computes blocks [begin, end); allocates its scratch once per call. Thread-safe.
  void Compute(const FbankBatch& batch, int64_t begin, int64_t end) const;

  struct Scratch;  // per-call work buffers, defined in fbank.cc

 private:
  FbankOptions opts_;
  MelBanks mel_;
  std::vector<float> window_;
  bool real_fft_;  // even padded size: a half-size complex FFT of the packed real frame
  FftPlan fft_;
  std::vector<float> rfft_twiddle_re_, rfft_twiddle_im_;  // e^(-2 pi i k / N), k < N/2

  template <int W>
  friend struct BlockKernel;
};

}  // namespace ser_fast
