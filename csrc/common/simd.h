// Helpers for the lane-parallel kernels: a block of kLanes frames is processed together, one frame
// per SIMD lane, so every inner loop runs over lanes and vectorises with whatever ISA the calling
// kernel copy was compiled for (see isa.h). Everything here is always_inline for that reason.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#if defined(__GNUC__)
#define SF_INLINE inline __attribute__((always_inline))
#else
#define SF_INLINE inline
#endif

// The loops over lanes read and write distinct buffers; saying so spares the compiler alias checks it
// would otherwise give up on (a radix-4 butterfly touches 16 pointers).
#if defined(__clang__)
#define SF_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define SF_IVDEP _Pragma("GCC ivdep")
#else
#define SF_IVDEP
#endif

namespace ser_fast {

// Frames per block. 16 floats fill one AVX-512 register, two AVX2 or four SSE registers.
constexpr int kLanes = 16;

template <int W>
struct Native {
  typedef float vec __attribute__((vector_size(W * sizeof(float))));
  typedef int32_t index __attribute__((vector_size(W * sizeof(int32_t))));
};

// kLanes floats (one per frame of a block) as N = kLanes / W native vectors of W floats: W is 16 in the
// AVX-512 copy of a kernel, 8 in the AVX2 copy and 4 in the baseline one. A vector type wider than
// the ISA's registers would live in memory, and so would an array of native vectors indexed in a
// loop; a head/tail chain of single vectors is split into registers by the compiler.
template <int W, int N = kLanes / W>
struct Lanes {
  Lanes<W, 1> head;
  Lanes<W, N - 1> tail;

  SF_INLINE static Lanes Zero() { return {Lanes<W, 1>::Zero(), Lanes<W, N - 1>::Zero()}; }
  SF_INLINE static Lanes Load(const float* p) { return {Lanes<W, 1>::Load(p), Lanes<W, N - 1>::Load(p + W)}; }
  SF_INLINE void Store(float* p) const {
    head.Store(p);
    tail.Store(p + W);
  }
  SF_INLINE Lanes operator+(const Lanes& o) const { return {head + o.head, tail + o.tail}; }
  SF_INLINE Lanes operator-(const Lanes& o) const { return {head - o.head, tail - o.tail}; }
  SF_INLINE Lanes operator*(const Lanes& o) const { return {head * o.head, tail * o.tail}; }
  SF_INLINE Lanes operator*(float s) const { return {head * s, tail * s}; }
  SF_INLINE Lanes operator/(float s) const { return {head / s, tail / s}; }
  SF_INLINE Lanes& operator+=(const Lanes& o) { return *this = *this + o; }
};

template <int W>
struct Lanes<W, 1> {
  using Vec = typename Native<W>::vec;
  Vec v;

  SF_INLINE static Lanes Zero() { return {Vec{}}; }
  SF_INLINE static Lanes Load(const float* p) {
    Lanes r;
    std::memcpy(&r.v, p, sizeof(Vec));
    return r;
  }
  SF_INLINE void Store(float* p) const { std::memcpy(p, &v, sizeof(Vec)); }
  SF_INLINE Lanes operator+(const Lanes& o) const { return {v + o.v}; }
  SF_INLINE Lanes operator-(const Lanes& o) const { return {v - o.v}; }
  SF_INLINE Lanes operator*(const Lanes& o) const { return {v * o.v}; }
  SF_INLINE Lanes operator*(float s) const { return {v * s}; }
  SF_INLINE Lanes operator/(float s) const { return {v / s}; }
  SF_INLINE Lanes& operator+=(const Lanes& o) { return *this = *this + o; }
};

template <int W, int N>
SF_INLINE Lanes<W, N> operator*(float s, const Lanes<W, N>& v) { return v * s; }

// Two-input shuffle masks of one transpose round: round `Bit` swaps bit Bit of the row index with bit
// Bit of the column index between rows r and r | Bit.
template <int W, int Bit, bool High, int... C>
constexpr typename Native<W>::index TransposeMask(std::integer_sequence<int, C...>) {
  return typename Native<W>::index{
      (High ? ((C & Bit) ? W + C : (C ^ Bit)) : ((C & Bit) ? W + (C ^ Bit) : C))...};
}

template <int W, int Bit = 1>
SF_INLINE void TransposeTile(typename Native<W>::vec rows[W]) {
  constexpr auto kLow = TransposeMask<W, Bit, false>(std::make_integer_sequence<int, W>{});
  constexpr auto kHigh = TransposeMask<W, Bit, true>(std::make_integer_sequence<int, W>{});
  for (int r = 0; r < W; ++r) {
    if (r & Bit) continue;
    const auto a = rows[r], b = rows[r | Bit];
    rows[r] = __builtin_shuffle(a, b, kLow);
    rows[r | Bit] = __builtin_shuffle(a, b, kHigh);
  }
  if constexpr (Bit * 2 < W) TransposeTile<W, Bit * 2>(rows);
}

// frame[(s0 + s) * kLanes + l] = source[l][s0 + s] for s, l < kLanes: a kLanes x kLanes transpose done
// as W x W register tiles (log2 W rounds of shuffles each) instead of kLanes^2 scalar moves. When
// lane_sums is given, the transposed values are also added into it (kLanes floats), while in registers.
template <int W>
SF_INLINE void TransposeToLanes(const float* const source[kLanes], int s0, float* frame, float* lane_sums = nullptr) {
  using Vec = typename Native<W>::vec;
  for (int bl = 0; bl < kLanes / W; ++bl) {
    Vec sum = {};
    for (int bs = 0; bs < kLanes / W; ++bs) {
      Vec tile[W];
      for (int t = 0; t < W; ++t) std::memcpy(&tile[t], source[bl * W + t] + s0 + bs * W, sizeof(Vec));
      TransposeTile<W>(tile);
      for (int t = 0; t < W; ++t) {
        std::memcpy(frame + (s0 + bs * W + t) * kLanes + bl * W, &tile[t], sizeof(Vec));
        sum += tile[t];
      }
    }
    if (lane_sums != nullptr) {
      Vec total;
      std::memcpy(&total, lane_sums + bl * W, sizeof(Vec));
      total += sum;
      std::memcpy(lane_sums + bl * W, &total, sizeof(Vec));
    }
  }
}

// Natural logarithm for x >= FLT_MIN (and +Inf, NaN) written without branches so that it vectorises
// (std::log does not, unless -ffast-math). Cephes' logf polynomial: relative error about 1e-7.
SF_INLINE float LogPositive(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  const int32_t exponent = static_cast<int32_t>((bits >> 23) & 0xff) - 126;
  const uint32_t mant_bits = (bits & 0x007fffffu) | 0x3f000000u;  // mantissa scaled to [0.5, 1)
  float m;
  std::memcpy(&m, &mant_bits, sizeof(m));
  const bool below = m < 0.707106781186547524f;
  const float e = static_cast<float>(exponent) - (below ? 1.0f : 0.0f);
  const float t = below ? (m + m - 1.0f) : (m - 1.0f);
  const float z = t * t;
  float y = 7.0376836292e-2f;
  y = y * t - 1.1514610310e-1f;
  y = y * t + 1.1676998740e-1f;
  y = y * t - 1.2420140846e-1f;
  y = y * t + 1.4249322787e-1f;
  y = y * t - 1.6668057665e-1f;
  y = y * t + 2.0000714765e-1f;
  y = y * t - 2.4999993993e-1f;
  y = y * t + 3.3333331174e-1f;
  y = y * t * z;
  y += -2.12194440e-4f * e;
  y += -0.5f * z;
  float r = t + y;
  r += 0.693359375f * e;
  // +Inf and NaN (an overflowed spectrum) pass through, as std::log would give them. One comparison,
  // false for both, keeps this a select: an || of two would be a branch and stop vectorisation.
  return x <= std::numeric_limits<float>::max() ? r : x;
}

}  // namespace ser_fast
