#include "isa.h"

#include <atomic>
#include <stdexcept>

namespace ser_fast {

namespace {

bool Supported(Isa isa) {
#if SF_HAS_ISA_COPIES
  __builtin_cpu_init();
  switch (isa) {
    case Isa::kBaseline: return true;
    case Isa::kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return false;
#else
  return isa == Isa::kBaseline;
#endif
}

std::atomic<int>& Active() {
  static std::atomic<int> active{static_cast<int>(BestSupportedIsa())};
  return active;
}

}  // namespace

Isa BestSupportedIsa() {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2}) {
    if (Supported(isa)) return isa;
  }
  return Isa::kBaseline;
}

Isa ActiveIsa() { return static_cast<Isa>(Active().load(std::memory_order_relaxed)); }

std::string IsaName(Isa isa) {
  switch (isa) {
    case Isa::kBaseline: return "baseline";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "baseline";
}

void SetActiveIsa(const std::string& name) {
  for (Isa isa : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512}) {
    if (name != IsaName(isa)) continue;
    if (!Supported(isa)) throw std::invalid_argument("this CPU does not support the '" + name + "' kernels");
    Active().store(static_cast<int>(isa), std::memory_order_relaxed);
    return;
  }
  throw std::invalid_argument("isa='" + name + "': expected one of baseline, avx2, avx512");
}

}  // namespace ser_fast
