// The ser_fast._C extension: one Bind* function per op family.
#include <torch/extension.h>

#include "../common/isa.h"

namespace ser_fast {
void BindAttentionPool(pybind11::module& m);
void BindFbank(pybind11::module& m);
}  // namespace ser_fast

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ser_fast compiled ops";
  m.def("cpu_isa", [] { return ser_fast::IsaName(ser_fast::ActiveIsa()); },
        "The instruction set the kernels run with: 'avx512', 'avx2' or 'baseline'.");
  m.def("best_cpu_isa", [] { return ser_fast::IsaName(ser_fast::BestSupportedIsa()); },
        "The widest instruction set this CPU supports (what the kernels use unless told otherwise).");
  m.def("set_cpu_isa", &ser_fast::SetActiveIsa, pybind11::arg("name"),
        "Pin the kernels to one instruction set (for tests and benchmarks); ValueError if unsupported.");
  ser_fast::BindAttentionPool(m);
  ser_fast::BindFbank(m);
}
