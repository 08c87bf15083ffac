#include "fft.h"

#include <cmath>
#include <stdexcept>

namespace ser_fast {

namespace {

// Radix-4 first (fewest passes over memory), then 2, then odd primes in increasing order.
std::vector<int> Factorise(int n) {
  std::vector<int> radices;
  while (n % 4 == 0) {
    radices.push_back(4);
    n /= 4;
  }
  if (n % 2 == 0) {
    radices.push_back(2);
    n /= 2;
  }
  for (int p = 3; n > 1; p += 2) {
    if (p * p > n) {
      radices.push_back(n);
      break;
    }
    while (n % p == 0) {
      radices.push_back(p);
      n /= p;
    }
  }
  return radices;
}

}  // namespace

FftPlan::FftPlan(int n) : n_(n) {
  if (n < 1) throw std::invalid_argument("FFT size must be positive");
  const double two_pi = 2.0 * M_PI;
  int span = n;
  for (int radix : Factorise(n)) {
    Stage s{radix, span, n / span, static_cast<int>(twiddle_re_.size()), 0};
    const int m = span / radix;
    // Twiddle W_span^(j*k) for output k of butterfly j, computed in double then rounded once.
    for (int j = 0; j < m; ++j) {
      for (int k = 0; k < radix; ++k) {
        const double angle = -two_pi * static_cast<double>(j) * k / span;
        twiddle_re_.push_back(static_cast<float>(std::cos(angle)));
        twiddle_im_.push_back(static_cast<float>(std::sin(angle)));
      }
    }
    if (radix != 2 && radix != 4) {
      s.dft = static_cast<int>(dft_re_.size());
      for (int r = 0; r < radix; ++r) {
        for (int k = 0; k < radix; ++k) {
          const double angle = -two_pi * static_cast<double>((r * k) % radix) / radix;
          dft_re_.push_back(static_cast<float>(std::cos(angle)));
          dft_im_.push_back(static_cast<float>(std::sin(angle)));
        }
      }
    }
    stages_.push_back(s);
    span = m;
  }
}

}  // namespace ser_fast
