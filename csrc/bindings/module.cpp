// The ser_fast._C extension: one Bind* function per op family.
#include <torch/extension.h>

namespace ser_fast {
void BindFbank(pybind11::module& m);
}  // namespace ser_fast

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ser_fast compiled ops";
  ser_fast::BindFbank(m);
}
