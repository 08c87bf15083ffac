#include "feature_window.h"

#include <cmath>

namespace ser_fast {

std::vector<float> MakeWindow(const FbankOptions& opts) {
  const int n = opts.WindowSize();
  std::vector<float> window(n);
  const double a = 2.0 * M_PI / (n - 1);
  for (int i = 0; i < n; ++i) {
    const double x = a * i;
    double w = 1.0;
    switch (opts.window_type) {
      case WindowType::kHanning: w = 0.5 - 0.5 * std::cos(x); break;
      case WindowType::kSine: w = std::sin(0.5 * x); break;
      case WindowType::kHamming: w = 0.54 - 0.46 * std::cos(x); break;
      case WindowType::kPovey: w = std::pow(0.5 - 0.5 * std::cos(x), 0.85); break;
      case WindowType::kRectangular: w = 1.0; break;
      case WindowType::kBlackman:
        w = opts.blackman_coeff - 0.5 * std::cos(x) + (0.5 - opts.blackman_coeff) * std::cos(2.0 * x);
        break;
    }
    window[i] = static_cast<float>(w);
  }
  return window;
}

}  // namespace ser_fast
