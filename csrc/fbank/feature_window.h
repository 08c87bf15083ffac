// Kaldi's analysis windows (feature-window.cc), computed in double and stored as float.
#pragma once

#include <vector>

#include "fbank_options.h"

namespace ser_fast {

std::vector<float> MakeWindow(const FbankOptions& opts);

}  // namespace ser_fast
