// Per sequence: the softmax of its scores over the valid frames, then one pass over its frames that adds
// w_t x_t into a row of D channels. Fusing the two saves the batched matrix-vector product
// torch would launch per sequence, which at DSNet's shapes (T = 37, D = 256) costs more than the sums.
#include "attention_pool.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../common/isa.h"

namespace ser_fast {

namespace {

inline __attribute__((always_inline)) void PoolRange(const SharedScoresPool& p, int64_t begin, int64_t end) {
  const int64_t T = p.T, D = p.D;
  for (int64_t b = begin; b < end; ++b) {
    const float* s = p.scores + b * T;
    float* w = p.weights + b * T;
    float* mu = p.mu + b * D;
    const int64_t valid = p.lengths == nullptr ? T : std::min<int64_t>(p.lengths[b], T);
    if (valid < 1) {
      std::fill(w, w + T, std::numeric_limits<float>::quiet_NaN());
      std::fill(mu, mu + D, std::numeric_limits<float>::quiet_NaN());
      continue;
    }
    // A NaN score makes the max NaN, hence every weight NaN, as torch.softmax does.
    float max = s[0];
    for (int64_t t = 1; t < valid; ++t) max = (s[t] > max || std::isnan(s[t])) ? s[t] : max;
    float sum = 0.0f;
    for (int64_t t = 0; t < valid; ++t) {
      w[t] = std::exp(s[t] - max);
      sum += w[t];
    }
    const float inverse = 1.0f / sum;
    for (int64_t t = 0; t < valid; ++t) w[t] *= inverse;
    std::fill(w + valid, w + T, 0.0f);
    std::fill(mu, mu + D, 0.0f);
    const float* x = p.x + b * T * D;
    for (int64_t t = 0; t < valid; ++t) {
      const float wt = w[t];
      const float* xt = x + t * D;
#pragma GCC ivdep
      for (int64_t d = 0; d < D; ++d) mu[d] += wt * xt[d];
    }
  }
}

#define SF_DEFINE_POOL(NAME, ATTRIBUTES) \
  ATTRIBUTES void NAME(const SharedScoresPool& p, int64_t begin, int64_t end) { PoolRange(p, begin, end); }

SF_DEFINE_POOL(PoolBaseline, )
#if SF_HAS_ISA_COPIES
SF_DEFINE_POOL(PoolAvx2, SF_TARGET_AVX2)
SF_DEFINE_POOL(PoolAvx512, SF_TARGET_AVX512)
#endif
#undef SF_DEFINE_POOL

}  // namespace

void PoolSharedScores(const SharedScoresPool& pool, int64_t begin, int64_t end) {
#if SF_HAS_ISA_COPIES
  switch (ActiveIsa()) {
    case Isa::kAvx512: return PoolAvx512(pool, begin, end);
    case Isa::kAvx2: return PoolAvx2(pool, begin, end);
    case Isa::kBaseline: break;
  }
#endif
  PoolBaseline(pool, begin, end);
}

}  // namespace ser_fast
