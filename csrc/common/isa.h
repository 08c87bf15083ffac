// Which instruction set the hot kernels run with. Each kernel is compiled three times (baseline
// x86-64, AVX2+FMA, AVX-512); the best one the CPU supports is picked at run time, and tests can pin
// any supported one to check that every build agrees.
#pragma once

#include <string>

namespace ser_fast {

enum class Isa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

Isa BestSupportedIsa();
Isa ActiveIsa();
// Throws std::invalid_argument for an unknown name or an ISA this CPU lacks.
void SetActiveIsa(const std::string& name);
std::string IsaName(Isa isa);

}  // namespace ser_fast

// Function attributes for the per-ISA copies (GCC/Clang on x86-64 only; elsewhere one portable copy).
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define SF_HAS_ISA_COPIES 1
#define SF_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,f16c")))
#define SF_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi,bmi2,f16c,prefer-vector-width=512")))
#else
#define SF_HAS_ISA_COPIES 0
#endif
