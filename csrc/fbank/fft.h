// Complex FFT of any size over kLanes independent signals at once (structure of arrays: element i of
// lane l lives at [i * kLanes + l]). Self-sorting Stockham decimation in frequency with radix-4, radix-2
// and a generic odd-prime butterfly, so power-of-two and mixed sizes share one code path and the
// output is in natural order without a bit-reversal pass.
#pragma once

#include <cstdint>
#include <vector>

#include "../common/simd.h"

namespace ser_fast {

class FftPlan {
 public:
  explicit FftPlan(int n);

  int size() const { return n_; }

  // Forward transform (sign -1) of re/im, each [n * kLanes]. work_re/work_im are scratch of the same
  // size. Returns true when the result was left in the work buffers, false when in re/im.
  SF_INLINE bool Forward(float* re, float* im, float* work_re, float* work_im) const;

 private:
  struct Stage {
    int radix;
    int span;     // length of the sub-transforms entering this stage
    int stride;   // n / span
    int twiddle;  // offset of this stage's [span / radix][radix] twiddles in twiddle_re_/im_
    int dft;      // offset of the radix x radix DFT matrix (generic radix only)
  };

  SF_INLINE void Radix2(const Stage& s, const float* xr, const float* xi, float* yr, float* yi) const;
  SF_INLINE void Radix4(const Stage& s, const float* xr, const float* xi, float* yr, float* yi) const;
  SF_INLINE void RadixOdd(const Stage& s, const float* xr, const float* xi, float* yr, float* yi) const;

  int n_;
  std::vector<Stage> stages_;
  std::vector<float> twiddle_re_, twiddle_im_;
  std::vector<float> dft_re_, dft_im_;
};

SF_INLINE void FftPlan::Radix2(const Stage& s, const float* xr, const float* xi, float* yr,
                               float* yi) const {
  const int m = s.span / 2;
  const int run = s.stride * kLanes;  // contiguous floats sharing one twiddle
  for (int j = 0; j < m; ++j) {
    const float w_re = twiddle_re_[s.twiddle + j * 2 + 1];
    const float w_im = twiddle_im_[s.twiddle + j * 2 + 1];
    const float* a_re = xr + j * run;
    const float* a_im = xi + j * run;
    const float* b_re = xr + (j + m) * run;
    const float* b_im = xi + (j + m) * run;
    float* y0_re = yr + (2 * j) * run;
    float* y0_im = yi + (2 * j) * run;
    float* y1_re = yr + (2 * j + 1) * run;
    float* y1_im = yi + (2 * j + 1) * run;
    SF_IVDEP
    for (int i = 0; i < run; ++i) {
      const float d_re = a_re[i] - b_re[i];
      const float d_im = a_im[i] - b_im[i];
      y0_re[i] = a_re[i] + b_re[i];
      y0_im[i] = a_im[i] + b_im[i];
      y1_re[i] = d_re * w_re - d_im * w_im;
      y1_im[i] = d_re * w_im + d_im * w_re;
    }
  }
}

SF_INLINE void FftPlan::Radix4(const Stage& s, const float* xr, const float* xi, float* yr,
                               float* yi) const {
  const int m = s.span / 4;
  const int run = s.stride * kLanes;
  for (int j = 0; j < m; ++j) {
    const float* tw_re = &twiddle_re_[s.twiddle + j * 4];
    const float* tw_im = &twiddle_im_[s.twiddle + j * 4];
    const float w1r = tw_re[1], w1i = tw_im[1], w2r = tw_re[2], w2i = tw_im[2];
    const float w3r = tw_re[3], w3i = tw_im[3];
    const float* a0r = xr + j * run;
    const float* a0i = xi + j * run;
    const float* a1r = xr + (j + m) * run;
    const float* a1i = xi + (j + m) * run;
    const float* a2r = xr + (j + 2 * m) * run;
    const float* a2i = xi + (j + 2 * m) * run;
    const float* a3r = xr + (j + 3 * m) * run;
    const float* a3i = xi + (j + 3 * m) * run;
    float* y0r = yr + (4 * j) * run;
    float* y0i = yi + (4 * j) * run;
    float* y1r = y0r + run;
    float* y1i = y0i + run;
    float* y2r = y1r + run;
    float* y2i = y1i + run;
    float* y3r = y2r + run;
    float* y3i = y2i + run;
    SF_IVDEP
    for (int i = 0; i < run; ++i) {
      const float t0r = a0r[i] + a2r[i], t0i = a0i[i] + a2i[i];
      const float t1r = a0r[i] - a2r[i], t1i = a0i[i] - a2i[i];
      const float t2r = a1r[i] + a3r[i], t2i = a1i[i] + a3i[i];
      const float t3r = a1r[i] - a3r[i], t3i = a1i[i] - a3i[i];
      // b1 = t1 - i*t3, b3 = t1 + i*t3 (forward transform)
      const float b1r = t1r + t3i, b1i = t1i - t3r;
      const float b2r = t0r - t2r, b2i = t0i - t2i;
      const float b3r = t1r - t3i, b3i = t1i + t3r;
      y0r[i] = t0r + t2r;
      y0i[i] = t0i + t2i;
      y1r[i] = b1r * w1r - b1i * w1i;
      y1i[i] = b1r * w1i + b1i * w1r;
      y2r[i] = b2r * w2r - b2i * w2i;
      y2i[i] = b2r * w2i + b2i * w2r;
      y3r[i] = b3r * w3r - b3i * w3i;
      y3i[i] = b3r * w3i + b3i * w3r;
    }
  }
}

SF_INLINE void FftPlan::RadixOdd(const Stage& s, const float* xr, const float* xi, float* yr,
                                 float* yi) const {
  const int p = s.radix;
  const int m = s.span / p;
  const int run = s.stride * kLanes;
  const float* c_re = &dft_re_[s.dft];
  const float* c_im = &dft_im_[s.dft];
  for (int j = 0; j < m; ++j) {
    for (int k = 0; k < p; ++k) {
      const float w_re = twiddle_re_[s.twiddle + j * p + k];
      const float w_im = twiddle_im_[s.twiddle + j * p + k];
      float* out_re = yr + (p * j + k) * run;
      float* out_im = yi + (p * j + k) * run;
      SF_IVDEP
      for (int i = 0; i < run; ++i) {
        float acc_re = 0.0f, acc_im = 0.0f;
        for (int r = 0; r < p; ++r) {
          const float a_re = xr[(j + r * m) * run + i];
          const float a_im = xi[(j + r * m) * run + i];
          acc_re += a_re * c_re[r * p + k] - a_im * c_im[r * p + k];
          acc_im += a_re * c_im[r * p + k] + a_im * c_re[r * p + k];
        }
        out_re[i] = acc_re * w_re - acc_im * w_im;
        out_im[i] = acc_re * w_im + acc_im * w_re;
      }
    }
  }
}

SF_INLINE bool FftPlan::Forward(float* re, float* im, float* work_re, float* work_im) const {
  float* src_re = re;
  float* src_im = im;
  float* dst_re = work_re;
  float* dst_im = work_im;
  for (const Stage& s : stages_) {
    if (s.radix == 4) {
      Radix4(s, src_re, src_im, dst_re, dst_im);
    } else if (s.radix == 2) {
      Radix2(s, src_re, src_im, dst_re, dst_im);
    } else {
      RadixOdd(s, src_re, src_im, dst_re, dst_im);
    }
    std::swap(src_re, dst_re);
    std::swap(src_im, dst_im);
  }
  return src_re == work_re;
}

}  // namespace ser_fast
