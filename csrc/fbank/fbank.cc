#include "fbank.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "feature_window.h"

namespace ser_fast {

namespace {

// Reflects an out-of-range sample index back into [0, n) as Kaldi does (-1 -> 0, n -> n - 1),
// repeatedly if the frame is longer than the signal.
int64_t Reflect(int64_t i, int64_t n) {
  while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - 1 - i;
  return i;
}

float SampleAsFloat(const WaveformView& w, int64_t i) {
  switch (w.type) {
    case SampleType::kFloat32: return static_cast<const float*>(w.data)[i];
    case SampleType::kFloat64: return static_cast<float>(static_cast<const double*>(w.data)[i]);
    case SampleType::kInt16: return static_cast<float>(static_cast<const int16_t*>(w.data)[i]);
  }
  return 0.0f;
}

// Copies samples [start, start + count) of w into dst[s * kLanes], converting to float.
// Kept scalar on purpose: vectorised, this strided store becomes an AVX-512 scatter, which is slower.
template <typename T>
__attribute__((optimize("no-tree-vectorize"))) void Gather(const T* src, int64_t count, float* dst) {
  for (int64_t s = 0; s < count; ++s) dst[s * kLanes] = static_cast<float>(src[s]);
}

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Standard normal noise for samples of one frame, a pure function of (seed, item, frame, sample):
// Box-Muller over two 24-bit uniforms drawn from a counter-based hash.
void AddDither(uint64_t seed, int64_t item, int64_t frame, int n, float scale, float* dst) {
  const uint64_t key = SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(item) * 0x100000001b3ull ^
                                                    SplitMix64(static_cast<uint64_t>(frame))));
  for (int s = 0; s < n; s += 2) {
    const uint64_t r = SplitMix64(key + static_cast<uint64_t>(s));
    const double u1 = (static_cast<double>(r >> 40) + 1.0) / 16777217.0;  // (0, 1)
    const double u2 = static_cast<double>((r >> 16) & 0xffffff) / 16777216.0;
    const double radius = std::sqrt(-2.0 * std::log(u1));
    dst[s * kLanes] += scale * static_cast<float>(radius * std::cos(2.0 * M_PI * u2));
    if (s + 1 < n) dst[(s + 1) * kLanes] += scale * static_cast<float>(radius * std::sin(2.0 * M_PI * u2));
  }
}

template <typename T>
SF_MULTIVERSION bool AllWithinFloatRange(const T* x, int64_t n) {
  // |x| <= FLT_MAX is false for NaN and +-Inf, and for float64 values that overflow float32.
  const T limit = static_cast<T>(std::numeric_limits<float>::max());
  int64_t bad = 0;  // a count rather than a bool: the compare-and-add vectorises, && does not
  for (int64_t i = 0; i < n; ++i) bad += !(std::fabs(x[i]) <= limit);
  return bad == 0;
}

}  // namespace

bool AllFinite(const WaveformView& w) {
  switch (w.type) {
    case SampleType::kFloat32: return AllWithinFloatRange(static_cast<const float*>(w.data), w.length);
    case SampleType::kFloat64: return AllWithinFloatRange(static_cast<const double*>(w.data), w.length);
    case SampleType::kInt16: return true;
  }
  return true;
}

struct FbankComputer::Scratch {
  explicit Scratch(const FbankComputer& c)
      : frame(static_cast<size_t>(c.opts_.WindowSize()) * kLanes),
        re(static_cast<size_t>(c.fft_.size()) * kLanes),
        im(re.size()),
        work_re(re.size()),
        work_im(re.size()),
        spectrum(static_cast<size_t>(c.mel_.num_fft_bins) * kLanes) {}
  std::vector<float> frame, re, im, work_re, work_im, spectrum;
  float* out_row[kLanes];  // destination row of each lane's frame; nullptr for an idle lane
};

struct BlockKernel {
  // Fills the lanes of one block: sample-major frames (frame[s * kLanes + l]) and output rows.
  static void Extract(const FbankComputer& c, const FbankBatch& batch, int64_t block,
                      FbankComputer::Scratch& sc) {
    const FbankOptions& o = c.opts_;
    const int len = o.WindowSize();
    const int64_t total = batch.frame_offsets[batch.num_waves];
    const int64_t dim = o.FeatureDim();
    int64_t item = std::upper_bound(batch.frame_offsets, batch.frame_offsets + batch.num_waves + 1,
                                    block * kLanes) - batch.frame_offsets - 1;
    for (int l = 0; l < kLanes; ++l) {
      const int64_t g = block * kLanes + l;
      float* dst = sc.frame.data() + l;
      if (g >= total) {
        for (int s = 0; s < len; ++s) dst[s * kLanes] = 0.0f;
        sc.out_row[l] = nullptr;
        continue;
      }
      while (batch.frame_offsets[item + 1] <= g) ++item;
      const int64_t t = g - batch.frame_offsets[item];
      const WaveformView& w = batch.waves[item];
      sc.out_row[l] = batch.out + (item * batch.max_frames + t) * dim;
      const int64_t start = FirstSampleOfFrame(t, o);
      if (start >= 0 && start + len <= w.length) {
        switch (w.type) {
          case SampleType::kFloat32: Gather(static_cast<const float*>(w.data) + start, len, dst); break;
          case SampleType::kFloat64: Gather(static_cast<const double*>(w.data) + start, len, dst); break;
          case SampleType::kInt16: Gather(static_cast<const int16_t*>(w.data) + start, len, dst); break;
        }
      } else {
        for (int s = 0; s < len; ++s) dst[s * kLanes] = SampleAsFloat(w, Reflect(start + s, w.length));
      }
      if (o.dither != 0.0f) AddDither(batch.seed, item, t, len, o.dither, dst);
    }
  }

  // DC removal, raw energy, pre-emphasis, window, packing into the FFT input, FFT, power spectrum,
  // Mel filters, log, and the scatter to the output rows: everything after extraction, over lanes.
  SF_MULTIVERSION
  static void Transform(const FbankComputer& c, FbankComputer::Scratch& sc) {
    const FbankOptions& o = c.opts_;
    const int len = o.WindowSize();
    const int padded = o.PaddedWindowSize();
    const float coeff = o.preemph_coeff;
    const float* win = c.window_.data();
    float* frame = sc.frame.data();
    float* re = sc.re.data();
    float* im = sc.im.data();
    float mean[kLanes];
    float energy[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      mean[l] = 0.0f;
      energy[l] = 0.0f;
    }
    if (o.remove_dc_offset) {
      for (int s = 0; s < len; ++s) {
        for (int l = 0; l < kLanes; ++l) mean[l] += frame[s * kLanes + l];
      }
      for (int l = 0; l < kLanes; ++l) mean[l] /= static_cast<float>(len);
    }
    if (o.use_energy && o.raw_energy) {
      for (int s = 0; s < len; ++s) {
        for (int l = 0; l < kLanes; ++l) {
          const float v = frame[s * kLanes + l] - mean[l];
          energy[l] += v * v;
        }
      }
    }
    // y[s] = w[s] * ((x[s] - mean) - c (x[s-1] - mean)), y[0] = w[0] (1 - c)(x[0] - mean); the even
    // FFT size packs y[2j] + i y[2j+1] into a half-size complex transform.
    const bool packed = c.real_fft_;
    for (int s = 0; s < padded; ++s) {
      float* dst = packed ? ((s & 1) ? im : re) + (s >> 1) * kLanes : re + s * kLanes;
      if (s >= len) {
        for (int l = 0; l < kLanes; ++l) dst[l] = 0.0f;
        continue;
      }
      const float* x = frame + s * kLanes;
      const float* prev = frame + (s > 0 ? s - 1 : 0) * kLanes;
      SF_IVDEP
      for (int l = 0; l < kLanes; ++l) dst[l] = win[s] * ((x[l] - mean[l]) - coeff * (prev[l] - mean[l]));
    }
    if (!packed) {
      for (int s = 0; s < padded * kLanes; ++s) im[s] = 0.0f;
    }
    if (o.use_energy && !o.raw_energy) {
      for (int s = 0; s < padded; ++s) {
        const float* y = packed ? ((s & 1) ? im : re) + (s >> 1) * kLanes : re + s * kLanes;
        for (int l = 0; l < kLanes; ++l) energy[l] += y[l] * y[l];
      }
    }
    if (c.fft_.Forward(re, im, sc.work_re.data(), sc.work_im.data())) {
      re = sc.work_re.data();
      im = sc.work_im.data();
    }
    const int bins = c.mel_.num_fft_bins;
    float* power = sc.spectrum.data();
    if (packed) {
      const int n = c.fft_.size();
      for (int k = 0; k < bins; ++k) {
        const float wr = c.rfft_twiddle_re_[k], wi = c.rfft_twiddle_im_[k];
        const float* ar = re + k * kLanes;
        const float* ai = im + k * kLanes;
        const float* br = re + ((n - k) % n) * kLanes;
        const float* bi = im + ((n - k) % n) * kLanes;
        float* p = power + k * kLanes;
        SF_IVDEP
        for (int l = 0; l < kLanes; ++l) {
          const float e_re = 0.5f * (ar[l] + br[l]), e_im = 0.5f * (ai[l] - bi[l]);
          const float o_re = 0.5f * (ai[l] + bi[l]), o_im = -0.5f * (ar[l] - br[l]);
          const float x_re = e_re + wr * o_re - wi * o_im;
          const float x_im = e_im + wr * o_im + wi * o_re;
          p[l] = x_re * x_re + x_im * x_im;
        }
      }
    } else {
      for (int k = 0; k < bins * kLanes; ++k) power[k] = re[k] * re[k] + im[k] * im[k];
    }
    if (!o.use_power) {
      for (int k = 0; k < bins * kLanes; ++k) power[k] = std::sqrt(power[k]);
    }
    const float eps = std::numeric_limits<float>::epsilon();
    const int offset = o.use_energy ? 1 : 0;
    const int num_bins = o.num_mel_bins;
    for (int b = 0; b < num_bins; ++b) {
      const float* wts = c.mel_.weights[b].data();
      const float* p = power + c.mel_.first[b] * kLanes;
      const int count = static_cast<int>(c.mel_.weights[b].size());
      LaneVec sum = {};
      for (int k = 0; k < count; ++k) sum += wts[k] * LoadLanes(p + k * kLanes);
      float acc[kLanes];
      StoreLanes(acc, sum);
      if (o.use_log_fbank) {
        for (int l = 0; l < kLanes; ++l) acc[l] = LogPositive(std::max(acc[l], eps));
      }
      for (int l = 0; l < kLanes; ++l) {
        if (sc.out_row[l] != nullptr) sc.out_row[l][offset + b] = acc[l];
      }
    }
    if (o.use_energy) {
      const float log_floor = o.energy_floor > 0.0f ? std::log(o.energy_floor) : 0.0f;
      for (int l = 0; l < kLanes; ++l) {
        float e = LogPositive(std::max(energy[l], eps));
        if (o.energy_floor > 0.0f && e < log_floor) e = log_floor;
        if (sc.out_row[l] != nullptr) sc.out_row[l][0] = e;
      }
    }
  }
};

FbankComputer::FbankComputer(const FbankOptions& opts)
    : opts_((opts.Validate(), opts)),
      mel_(opts),
      window_(MakeWindow(opts)),
      real_fft_(opts.PaddedWindowSize() % 2 == 0),
      fft_(real_fft_ ? opts.PaddedWindowSize() / 2 : opts.PaddedWindowSize()) {
  const int padded = opts.PaddedWindowSize();
  for (int k = 0; k < padded / 2; ++k) {
    const double angle = -2.0 * M_PI * k / padded;
    rfft_twiddle_re_.push_back(static_cast<float>(std::cos(angle)));
    rfft_twiddle_im_.push_back(static_cast<float>(std::sin(angle)));
  }
}

void FbankComputer::Compute(const FbankBatch& batch, int64_t begin, int64_t end) const {
  Scratch scratch(*this);
  for (int64_t block = begin; block < end; ++block) {
    BlockKernel::Extract(*this, batch, block, scratch);
    BlockKernel::Transform(*this, scratch);
  }
}

}  // namespace ser_fast
