// Python binding of the CPU attention pooling forward with one score per frame: checks what the kernel
// relies on (device, dtype, layout, shapes), releases the GIL and spreads sequences over torch's threads.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <optional>
#include <tuple>

#include "../attention_pool/attention_pool.h"

namespace ser_fast {

namespace {

void CheckFloat32(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), name,
                    " must be a contiguous float32 CPU tensor, got ", t.scalar_type(), " on ", t.device(),
                    t.is_contiguous() ? "" : " (not contiguous)");
}

// Returns weights [B, T] and moments [1, B, D] (mu), the layout of the torch path's state.
std::tuple<at::Tensor, at::Tensor> PoolSharedScoresForward(const at::Tensor& x, const at::Tensor& scores,
                                                           const std::optional<at::Tensor>& lengths) {
  CheckFloat32(x, "x");
  CheckFloat32(scores, "scores");
  TORCH_CHECK_VALUE(x.dim() == 3 && x.size(0) > 0 && x.size(1) > 0 && x.size(2) > 0, "x has shape ", x.sizes(),
                    "; expected [B, T, D] with every size >= 1");
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
  TORCH_CHECK_VALUE(scores.dim() == 2 && scores.size(0) == B && scores.size(1) == T, "scores has shape ",
                    scores.sizes(), "; expected [", B, ", ", T, "]");
  const int64_t* length_data = nullptr;
  if (lengths.has_value()) {
    const at::Tensor& n = *lengths;
    TORCH_CHECK_VALUE(n.device().is_cpu() && n.scalar_type() == at::kLong && n.is_contiguous() && n.dim() == 1 &&
                          n.size(0) == B,
                      "lengths must be a contiguous int64 CPU tensor of shape [", B, "], got ", n.scalar_type(),
                      " of shape ", n.sizes(), " on ", n.device());
    length_data = n.data_ptr<int64_t>();
  }
  at::Tensor weights = at::empty({B, T}, x.options());
  at::Tensor moments = at::empty({1, B, D}, x.options());
  const SharedScoresPool pool{x.data_ptr<float>(), scores.data_ptr<float>(), length_data, T, D,
                              weights.data_ptr<float>(), moments.data_ptr<float>()};
  // A thread gets at least ~2^15 multiply-adds: below that, waking another thread costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / (T * D));
  {
    pybind11::gil_scoped_release release;
    at::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) { PoolSharedScores(pool, begin, end); });
  }
  return {weights, moments};
}

}  // namespace

void BindAttentionPool(pybind11::module& m) {
  namespace py = pybind11;
  m.def("attention_pool_shared_forward", &PoolSharedScoresForward, py::arg("x"), py::arg("scores"),
        py::arg("lengths"),
        "(weights [B, T], moments [1, B, D]) of attention pooling x [B, T, D] with scores [B, T] (float32, "
        "contiguous, CPU) over lengths [B] (int64 or None): the softmax weights and mu.");
}

}  // namespace ser_fast
