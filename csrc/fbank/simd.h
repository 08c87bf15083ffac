// Helpers for the lane-parallel kernels: a block of kLanes frames is processed together, one frame
// per SIMD lane, so every inner loop runs over lanes and vectorises with whatever ISA the function
// was compiled for. The entry points are multiversioned; the CPU picks the widest clone at load time.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

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

// GCC resolves target_clones through an ifunc at load time, so no CPU feature is assumed at build
// time: AVX-512 and AVX2+FMA clones exist beside the baseline one.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SF_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SF_MULTIVERSION
#endif

namespace ser_fast {

// Frames per block. 16 floats fill one AVX-512 register, two AVX2 or four SSE registers.
constexpr int kLanes = 16;

// kLanes floats as one value: the compiler keeps it in registers (one zmm, two ymm or four xmm),
// which a float[kLanes] accumulator in a loop is not guaranteed to be.
typedef float LaneVec __attribute__((vector_size(kLanes * sizeof(float))));

SF_INLINE LaneVec LoadLanes(const float* p) {
  LaneVec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

SF_INLINE void StoreLanes(float* p, LaneVec v) { std::memcpy(p, &v, sizeof(v)); }

// Natural logarithm for x >= FLT_MIN written without branches so that it vectorises (std::log does
// not, unless -ffast-math). Cephes' logf polynomial: max relative error about 1e-7 on normal inputs.
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
  return x == std::numeric_limits<float>::infinity() ? x : r;
}

}  // namespace ser_fast
