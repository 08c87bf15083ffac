#include "fbank.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../common/isa.h"
#include "feature_window.h"

namespace ser_fast {

namespace {

// Reflects an out-of-range sample index back into [0, n) as Kaldi does (-1 -> 0, n -> n - 1), as
// often as needed when the frame is longer than the signal. Kaldi loops once per reflection; the
// reflections repeat with period 2n, so one remainder does it in constant time.
int64_t Reflect(int64_t i, int64_t n) {
  const int64_t period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

float SampleAsFloat(const WaveformView& w, int64_t i) {
  switch (w.type) {
    case SampleType::kFloat32: return static_cast<const float*>(w.data)[i];
    case SampleType::kFloat64: return static_cast<float>(static_cast<const double*>(w.data)[i]);
    case SampleType::kInt16: return static_cast<float>(static_cast<const int16_t*>(w.data)[i]);
  }
  return 0.0f;
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
SF_INLINE bool AllWithinFloatRange(const T* x, int64_t n) {
  // |x| <= FLT_MAX is false for NaN and +-Inf, and for float64 values that overflow float32.
  const T limit = static_cast<T>(std::numeric_limits<float>::max());
  int64_t bad = 0;  // a count rather than a bool: the compare-and-add vectorises, && does not
  for (int64_t i = 0; i < n; ++i) bad += !(std::fabs(x[i]) <= limit);
  return bad == 0;
}

SF_INLINE bool AllFiniteImpl(const WaveformView& w) {
  switch (w.type) {
    case SampleType::kFloat32: return AllWithinFloatRange(static_cast<const float*>(w.data), w.length);
    case SampleType::kFloat64: return AllWithinFloatRange(static_cast<const double*>(w.data), w.length);
    case SampleType::kInt16: return true;
  }
  return true;
}

}  // namespace

struct FbankComputer::Scratch {
  explicit Scratch(const FbankComputer& c)
      : frame(static_cast<size_t>(c.opts_.WindowSize()) * kLanes),
        re(static_cast<size_t>(c.fft_.size()) * kLanes),
        im(re.size()),
        work_re(re.size()),
        work_im(re.size()),
        spectrum(static_cast<size_t>(c.mel_.num_fft_bins) * kLanes),
        staging(static_cast<size_t>(c.opts_.WindowSize()) * kLanes),
        zeros(static_cast<size_t>(c.opts_.WindowSize()) + kLanes, 0.0f),
        features(static_cast<size_t>(c.opts_.FeatureDim()) * kLanes) {}
  std::vector<float> frame, re, im, work_re, work_im, spectrum;
  std::vector<float> staging;  // [kLanes][WindowSize]: edge frames and non-float32 samples as float32
  std::vector<float> zeros;    // the source of idle lanes
  std::vector<float> features; // [FeatureDim][kLanes]: one block's outputs before the transpose
  float* out_row[kLanes];   // destination row of each lane's frame; nullptr for an idle lane
  float lane_sums[kLanes];  // sum of each lane's samples, taken during extraction
};

template <int W>
struct BlockKernel {
  // Fills the lanes of one block: frames sample-major (frame[s * kLanes + l]) and output rows. Each
  // lane first gets a contiguous float32 source (the waveform itself for inner float32 frames, else
  // a converted or reflected copy), then kLanes x kLanes tiles are transposed into place.
  SF_INLINE static void Extract(const FbankComputer& c, const FbankBatch& batch, int64_t block,
                                FbankComputer::Scratch& sc) {
    const FbankOptions& o = c.opts_;
    const int len = o.WindowSize();
    const int64_t total = batch.frame_offsets[batch.num_waves];
    const int64_t dim = o.FeatureDim();
    const float* source[kLanes];
    int64_t item_of[kLanes], frame_of[kLanes];
    int64_t item = std::upper_bound(batch.frame_offsets, batch.frame_offsets + batch.num_waves + 1,
                                    block * kLanes) - batch.frame_offsets - 1;
    for (int l = 0; l < kLanes; ++l) {
      const int64_t g = block * kLanes + l;
      item_of[l] = -1;
      if (g >= total) {
        source[l] = sc.zeros.data();
        sc.out_row[l] = nullptr;
        continue;
      }
      while (batch.frame_offsets[item + 1] <= g) ++item;
      const int64_t t = g - batch.frame_offsets[item];
      item_of[l] = item;
      frame_of[l] = t;
      const WaveformView& w = batch.waves[item];
      sc.out_row[l] = batch.out + (item * batch.max_frames + t) * dim;
      const int64_t start = FirstSampleOfFrame(t, o);
      const bool inside = start >= 0 && start + len <= w.length;
      if (inside && w.type == SampleType::kFloat32) {
        source[l] = static_cast<const float*>(w.data) + start;
        continue;
      }
      float* copy = sc.staging.data() + static_cast<size_t>(l) * len;
      if (!inside) {
        for (int s = 0; s < len; ++s) copy[s] = SampleAsFloat(w, Reflect(start + s, w.length));
      } else if (w.type == SampleType::kFloat64) {
        const double* x = static_cast<const double*>(w.data) + start;
        for (int s = 0; s < len; ++s) copy[s] = static_cast<float>(x[s]);
      } else {
        const int16_t* x = static_cast<const int16_t*>(w.data) + start;
        for (int s = 0; s < len; ++s) copy[s] = static_cast<float>(x[s]);
      }
      source[l] = copy;
    }
    // The lane sums (for the DC offset) are taken on the way, while the samples are in registers.
    float* frame = sc.frame.data();
    float* sums = sc.lane_sums;
    for (int l = 0; l < kLanes; ++l) sums[l] = 0.0f;
    int s0 = 0;
    for (; s0 + kLanes <= len; s0 += kLanes) TransposeToLanes<W>(source, s0, frame, sums);
    for (int s = s0; s < len; ++s) {
      for (int l = 0; l < kLanes; ++l) {
        frame[s * kLanes + l] = source[l][s];
        sums[l] += source[l][s];
      }
    }
    for (int l = 0; l < kLanes; ++l) {
      // A non-finite sum means a NaN/Inf sample, or finite samples too large to add up: tell apart.
      if (item_of[l] >= 0 && !(std::fabs(sums[l]) <= std::numeric_limits<float>::max()) &&
          !AllWithinFloatRange(source[l], len)) {
        __atomic_store_n(batch.bad_items + item_of[l], uint8_t{1}, __ATOMIC_RELAXED);
      }
    }
    if (o.dither != 0.0f) {
      for (int l = 0; l < kLanes; ++l) {
        if (item_of[l] >= 0) AddDither(batch.seed, item_of[l], frame_of[l], len, o.dither, frame + l);
      }
      Lanes<W> dithered = Lanes<W>::Zero();
      for (int s = 0; s < len; ++s) dithered += Lanes<W>::Load(frame + s * kLanes);
      dithered.Store(sums);
    }
  }

  // DC removal, raw energy, pre-emphasis, window, packing into the FFT input, FFT, power spectrum,
  // Mel filters, log, and the scatter to the output rows: everything after extraction, over lanes.
  SF_INLINE static void Transform(const FbankComputer& c, FbankComputer::Scratch& sc) {
    const FbankOptions& o = c.opts_;
    const int len = o.WindowSize();
    const int padded = o.PaddedWindowSize();
    const float coeff = o.preemph_coeff;
    const float* win = c.window_.data();
    float* frame = sc.frame.data();
    float* re = sc.re.data();
    float* im = sc.im.data();
    // Sums in Lanes registers: a float[kLanes] accumulator would be a chain through memory.
    Lanes<W> mean = Lanes<W>::Zero();
    Lanes<W> energy = Lanes<W>::Zero();
    if (o.remove_dc_offset) mean = Lanes<W>::Load(sc.lane_sums) / static_cast<float>(len);
    if (o.use_energy && o.raw_energy) {
      for (int s = 0; s < len; ++s) {
        const Lanes<W> v = Lanes<W>::Load(frame + s * kLanes) - mean;
        energy += v * v;
      }
    }
    // y[s] = w[s] * ((x[s] - mean) - c (x[s-1] - mean)), y[0] = w[0] (1 - c)(x[0] - mean); the even
    // FFT size packs y[2j] + i y[2j+1] into a half-size complex transform.
    const bool packed = c.real_fft_;
    Lanes<W> prev = Lanes<W>::Load(frame) - mean;
    auto emphasised = [&](int s) {
      const Lanes<W> x = Lanes<W>::Load(frame + s * kLanes) - mean;
      const Lanes<W> y = win[s] * (x - coeff * prev);
      prev = x;
      return y;
    };
    int s = 0;
    if (packed) {
      for (; s + 1 < len; s += 2) {
        emphasised(s).Store(re + (s >> 1) * kLanes);
        emphasised(s + 1).Store(im + (s >> 1) * kLanes);
      }
      if (s < len) {  // odd frame length: the last sample pairs with the first zero of the padding
        emphasised(s).Store(re + (s >> 1) * kLanes);
        Lanes<W>::Zero().Store(im + (s >> 1) * kLanes);
        s += 2;
      }
      for (; s < padded; s += 2) {
        Lanes<W>::Zero().Store(re + (s >> 1) * kLanes);
        Lanes<W>::Zero().Store(im + (s >> 1) * kLanes);
      }
    } else {
      for (; s < len; ++s) emphasised(s).Store(re + s * kLanes);
      for (; s < padded; ++s) Lanes<W>::Zero().Store(re + s * kLanes);
      for (int i = 0; i < padded * kLanes; ++i) im[i] = 0.0f;
    }
    if (o.use_energy && !o.raw_energy) {
      for (int s = 0; s < padded; ++s) {
        const Lanes<W> y = Lanes<W>::Load(packed ? ((s & 1) ? im : re) + (s >> 1) * kLanes : re + s * kLanes);
        energy += y * y;
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
    // Feature rows (log energy first when asked for), lane-minor: features[r * kLanes + l].
    const float eps = std::numeric_limits<float>::epsilon();
    const int offset = o.use_energy ? 1 : 0;
    const int dim = o.FeatureDim();
    float* features = sc.features.data();
    if (o.use_energy) energy.Store(features);
    for (int b = 0; b < o.num_mel_bins; ++b) {
      const float* wts = c.mel_.weights[b].data();
      const float* p = power + c.mel_.first[b] * kLanes;
      const int count = static_cast<int>(c.mel_.weights[b].size());
      Lanes<W> sum = Lanes<W>::Zero();
      for (int k = 0; k < count; ++k) sum += wts[k] * Lanes<W>::Load(p + k * kLanes);
      sum.Store(features + (offset + b) * kLanes);
    }
    // The energy is always a log (as in Kaldi); the Mel rows only with use_log_fbank.
    const int log_rows = o.use_log_fbank ? dim : offset;
    for (int i = 0; i < log_rows * kLanes; ++i) features[i] = LogPositive(std::max(features[i], eps));
    if (o.use_energy && o.energy_floor > 0.0f) {
      const float log_floor = std::log(o.energy_floor);
      for (int l = 0; l < kLanes; ++l) features[l] = std::max(features[l], log_floor);
    }
    // Out to each lane's row: kLanes x kLanes tiles transposed in registers, then one contiguous copy
    // per lane; the rows past the last whole tile are copied element by element.
    int r0 = 0;
    for (; r0 + kLanes <= dim; r0 += kLanes) {
      const float* rows[kLanes];
      for (int j = 0; j < kLanes; ++j) rows[j] = features + (r0 + j) * kLanes;
      float tile[kLanes * kLanes];
      TransposeToLanes<W>(rows, 0, tile);
      for (int l = 0; l < kLanes; ++l) {
        if (sc.out_row[l] != nullptr) std::memcpy(sc.out_row[l] + r0, tile + l * kLanes, kLanes * sizeof(float));
      }
    }
    for (int l = 0; l < kLanes; ++l) {
      if (sc.out_row[l] == nullptr) continue;
      for (int r = r0; r < dim; ++r) sc.out_row[l][r] = features[r * kLanes + l];
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

namespace {

using BlocksFn = void (*)(const FbankComputer&, const FbankBatch&, int64_t, int64_t, FbankComputer::Scratch&);

// One copy of the whole per-block pipeline per instruction set; the inlined helpers take its ISA.
// W is the ISA's register width in floats.
#define SF_DEFINE_BLOCKS(NAME, ATTRIBUTES, W)                                                           \
  ATTRIBUTES void NAME(const FbankComputer& c, const FbankBatch& batch, int64_t begin, int64_t end,    \
                       FbankComputer::Scratch& sc) {                                                    \
    for (int64_t block = begin; block < end; ++block) {                                                 \
      BlockKernel<W>::Extract(c, batch, block, sc);                                                     \
      BlockKernel<W>::Transform(c, sc);                                                                 \
    }                                                                                                   \
  }                                                                                                     \
  ATTRIBUTES bool NAME##AllFinite(const WaveformView& w) { return AllFiniteImpl(w); }

SF_DEFINE_BLOCKS(BlocksBaseline, , 4)
#if SF_HAS_ISA_COPIES
SF_DEFINE_BLOCKS(BlocksAvx2, SF_TARGET_AVX2, 8)
SF_DEFINE_BLOCKS(BlocksAvx512, SF_TARGET_AVX512, 16)
#endif
#undef SF_DEFINE_BLOCKS

}  // namespace

Coverage FrameCoverage(int64_t num_samples, const FbankOptions& opts) {
  const int64_t frames = NumFrames(num_samples, opts);
  if (frames == 0) return {num_samples, num_samples};
  if (opts.WindowSize() < opts.WindowShift()) return {0, 0};
  // Reflected samples lie inside the signal, next to samples the edge frames read directly.
  const int64_t begin = std::max<int64_t>(0, FirstSampleOfFrame(0, opts));
  const int64_t end = std::min<int64_t>(num_samples, FirstSampleOfFrame(frames - 1, opts) + opts.WindowSize());
  return {begin, std::max(begin, end)};
}

bool AllFinite(const WaveformView& w) {
#if SF_HAS_ISA_COPIES
  switch (ActiveIsa()) {
    case Isa::kAvx512: return BlocksAvx512AllFinite(w);
    case Isa::kAvx2: return BlocksAvx2AllFinite(w);
    case Isa::kBaseline: break;
  }
#endif
  return BlocksBaselineAllFinite(w);
}

void FbankComputer::Compute(const FbankBatch& batch, int64_t begin, int64_t end) const {
  Scratch scratch(*this);
  BlocksFn blocks = BlocksBaseline;
#if SF_HAS_ISA_COPIES
  if (ActiveIsa() == Isa::kAvx512) blocks = BlocksAvx512;
  if (ActiveIsa() == Isa::kAvx2) blocks = BlocksAvx2;
#endif
  blocks(*this, batch, begin, end, scratch);
}

}  // namespace ser_fast
