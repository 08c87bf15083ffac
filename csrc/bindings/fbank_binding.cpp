// Python binding of the filterbank: checks every input, caches one FbankComputer per option set,
// releases the GIL and spreads blocks of frames over torch's intra-op threads.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../fbank/fbank.h"

namespace ser_fast {

namespace {

const char* kWindowNames[] = {"povey", "hamming", "hanning", "rectangular", "blackman", "sine"};

WindowType ParseWindow(const std::string& name) {
  for (int i = 0; i < 6; ++i) {
    if (name == kWindowNames[i]) return static_cast<WindowType>(i);
  }
  throw std::invalid_argument("window_type='" + name +
                              "' is not one of povey, hamming, hanning, rectangular, blackman, sine");
}

// Building a computer costs FFT tables, a window and Mel weights; reuse the last few.
std::shared_ptr<const FbankComputer> GetComputer(const FbankOptions& opts) {
  static std::mutex mutex;
  static std::list<std::pair<std::string, std::shared_ptr<const FbankComputer>>> cache;
  constexpr size_t kCapacity = 16;
  const std::string key = opts.ToString();
  std::lock_guard<std::mutex> lock(mutex);
  for (auto it = cache.begin(); it != cache.end(); ++it) {
    if (it->first == key) {
      cache.splice(cache.begin(), cache, it);
      return cache.front().second;
    }
  }
  auto computer = std::make_shared<const FbankComputer>(opts);
  cache.emplace_front(key, computer);
  if (cache.size() > kCapacity) cache.pop_back();
  return computer;
}

SampleType ToSampleType(const at::Tensor& t, size_t index) {
  switch (t.scalar_type()) {
    case at::kFloat: return SampleType::kFloat32;
    case at::kDouble: return SampleType::kFloat64;
    case at::kShort: return SampleType::kInt16;
    default:
      TORCH_CHECK_TYPE(false, "waveforms[", index, "] has dtype ", t.scalar_type(),
                       "; expected float32, float64 or int16");
  }
}

// Fills out[b, :num_frames(b)] for every waveform b. out must be float32 [B, T >= max frames, dim].
void FbankOut(const std::vector<at::Tensor>& waveforms, const FbankOptions& opts, at::Tensor out,
              uint64_t seed) {
  const auto computer = GetComputer(opts);
  const int64_t num = static_cast<int64_t>(waveforms.size());
  TORCH_CHECK_VALUE(num > 0, "waveforms is empty; expected at least one waveform");
  std::vector<WaveformView> views(num);
  std::vector<int64_t> offsets(num + 1, 0);
  int64_t max_frames = 0;
  for (int64_t b = 0; b < num; ++b) {
    const at::Tensor& w = waveforms[b];
    TORCH_CHECK_VALUE(w.device().is_cpu(), "waveforms[", b, "] is on ", w.device(), "; expected CPU");
    TORCH_CHECK_VALUE(w.dim() == 1, "waveforms[", b, "] has shape ", w.sizes(), "; expected 1-D");
    TORCH_CHECK_VALUE(w.is_contiguous(), "waveforms[", b, "] must be contiguous");
    views[b] = WaveformView{w.data_ptr(), w.numel(), ToSampleType(w, b)};
    const int64_t frames = NumFrames(w.numel(), opts);
    offsets[b + 1] = offsets[b] + frames;
    max_frames = std::max(max_frames, frames);
  }
  const int64_t dim = opts.FeatureDim();
  TORCH_CHECK_VALUE(out.device().is_cpu() && out.scalar_type() == at::kFloat && out.is_contiguous(),
                    "out must be a contiguous float32 CPU tensor");
  TORCH_CHECK_VALUE(out.dim() == 3 && out.size(0) == num && out.size(1) >= max_frames && out.size(2) == dim,
                    "out has shape ", out.sizes(), "; expected [", num, ", >=", max_frames, ", ", dim, "]");
  float* out_data = out.data_ptr<float>();
  for (int64_t b = 0; b < num; ++b) {
    const int64_t frames = offsets[b + 1] - offsets[b];
    std::fill(out_data + (b * out.size(1) + frames) * dim, out_data + (b + 1) * out.size(1) * dim, 0.0f);
  }
  std::vector<uint8_t> bad(num, 0);
  const FbankBatch batch{views.data(), num, offsets.data(), out_data, out.size(1), seed, bad.data()};
  const int64_t blocks = computer->NumBlocks(batch);
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) { computer->Compute(batch, begin, end); });
  // The kernel flagged frames with non-finite samples; samples no frame reads are checked here.
  at::parallel_for(0, num, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      if (bad[b]) continue;
      const WaveformView& w = views[b];
      const Coverage cover = FrameCoverage(w.length, opts);
      const size_t size = w.type == SampleType::kFloat64 ? 8 : (w.type == SampleType::kFloat32 ? 4 : 2);
      const auto* base = static_cast<const char*>(w.data);
      const WaveformView head{base, cover.begin, w.type};
      const WaveformView tail{base + cover.end * size, w.length - cover.end, w.type};
      if (!AllFinite(head) || !AllFinite(tail)) bad[b] = 1;
    }
  });
  for (int64_t b = 0; b < num; ++b) {
    TORCH_CHECK_VALUE(!bad[b], "waveforms[", b,
                      "] contains NaN, Inf or values beyond float32 range; expected finite samples");
  }
}

}  // namespace

void BindFbank(pybind11::module& m) {
  namespace py = pybind11;
  py::class_<FbankOptions>(m, "FbankOptions")
      .def(py::init<>())
      .def_readwrite("sample_rate", &FbankOptions::sample_rate)
      .def_readwrite("frame_length_ms", &FbankOptions::frame_length_ms)
      .def_readwrite("frame_shift_ms", &FbankOptions::frame_shift_ms)
      .def_readwrite("dither", &FbankOptions::dither)
      .def_readwrite("preemph_coeff", &FbankOptions::preemph_coeff)
      .def_readwrite("remove_dc_offset", &FbankOptions::remove_dc_offset)
      .def_property(
          "window_type", [](const FbankOptions& o) { return std::string(kWindowNames[static_cast<int>(o.window_type)]); },
          [](FbankOptions& o, const std::string& name) { o.window_type = ParseWindow(name); })
      .def_readwrite("blackman_coeff", &FbankOptions::blackman_coeff)
      .def_readwrite("round_to_power_of_two", &FbankOptions::round_to_power_of_two)
      .def_readwrite("snip_edges", &FbankOptions::snip_edges)
      .def_readwrite("num_mel_bins", &FbankOptions::num_mel_bins)
      .def_readwrite("low_freq", &FbankOptions::low_freq)
      .def_readwrite("high_freq", &FbankOptions::high_freq)
      .def_readwrite("use_energy", &FbankOptions::use_energy)
      .def_readwrite("energy_floor", &FbankOptions::energy_floor)
      .def_readwrite("raw_energy", &FbankOptions::raw_energy)
      .def_readwrite("use_log_fbank", &FbankOptions::use_log_fbank)
      .def_readwrite("use_power", &FbankOptions::use_power)
      .def_property_readonly("window_size", &FbankOptions::WindowSize)
      .def_property_readonly("window_shift", &FbankOptions::WindowShift)
      .def_property_readonly("padded_window_size", &FbankOptions::PaddedWindowSize)
      .def_property_readonly("feature_dim", &FbankOptions::FeatureDim)
      .def("validate", &FbankOptions::Validate)
      .def("__repr__", [](const FbankOptions& o) { return "FbankOptions(" + o.ToString() + ")"; });
  m.def("fbank_num_frames", &NumFrames, py::arg("num_samples"), py::arg("options"));
  m.def("fbank_out", &FbankOut, py::arg("waveforms"), py::arg("options"), py::arg("out"), py::arg("seed"),
        py::call_guard<py::gil_scoped_release>(),
        "Fill out[b] with the filterbank of waveforms[b] (1-D CPU float32/float64/int16), zero past its frames.");
}

}  // namespace ser_fast
