// The ONNX Runtime backend (C++ API), like lite_export/engines/onnxruntime_engine.py on CPU.
//
// ORT_API_MANUAL_INIT (set by CMake for this file): the API table is fetched at first use and
// checked, so a libonnxruntime older than the headers gives a clear error instead of a crash.
#include <onnxruntime_cxx_api.h>

#include <array>
#include <mutex>
#include <set>

#include "lite/recommender.hpp"

namespace lite {
namespace {

void init_ort_api() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    const OrtApiBase* base = OrtGetApiBase();
    const OrtApi* api = base->GetApi(ORT_API_VERSION);
    if (api == nullptr) {
      failure = std::string("the ONNX Runtime library loaded here (") + base->GetVersionString() +
                ") is older than the headers this program was built with (C API version " +
                std::to_string(ORT_API_VERSION) +
                "); point LD_LIBRARY_PATH at a newer libonnxruntime.so.1 or rebuild with older "
                "headers (examples/cpp/build.sh)";
      return;
    }
    Ort::InitApi(api);
  });
  if (!failure.empty()) throw EngineError(failure);
}

class OnnxRuntimeBackend final : public Backend {
 public:
  OnnxRuntimeBackend(const Artifact& art, const Options& opt) {
    init_ort_api();
    std::string graph = opt.graph;
    if (graph.empty()) {
      // model.ort.onnx was optimised for the CPU provider, which is the one used here
      graph = std::filesystem::exists(art.file("model.ort.onnx")) ? "model.ort.onnx" : "model.onnx";
    }
    const std::filesystem::path path =
        std::filesystem::path(graph).is_absolute() ? std::filesystem::path(graph) : art.file(graph);
    if (!std::filesystem::is_regular_file(path)) {
      throw ArgumentError("ONNX graph " + path.string() +
                          " does not exist; pass --graph model.onnx or model.ort.onnx "
                          "(re-export if both are missing)");
    }
    graph_ = path.filename().string();
    threads_ = opt.threads;
    try {
      env_ = Ort::Env(ORT_LOGGING_LEVEL_ERROR, "lite-export");
      run_options_ = Ort::RunOptions();
      memory_ = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
      Ort::SessionOptions so;
      so.SetLogSeverityLevel(3);
      so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
      if (opt.threads > 0) so.SetIntraOpNumThreads(opt.threads);
      session_ = Ort::Session(env_, path.c_str(), so);
      std::set<std::string> inputs, outputs;
      Ort::AllocatorWithDefaultOptions alloc;
      for (std::size_t i = 0; i < session_.GetInputCount(); ++i) {
        inputs.insert(session_.GetInputNameAllocated(i, alloc).get());
      }
      for (std::size_t i = 0; i < session_.GetOutputCount(); ++i) {
        outputs.insert(session_.GetOutputNameAllocated(i, alloc).get());
      }
      if (!inputs.count("item_ids") || !inputs.count("exclude_ids") || !outputs.count("scores") ||
          !outputs.count("indices")) {
        throw ArtifactError(path.string() +
                            " does not have the inputs item_ids, exclude_ids and outputs scores, "
                            "indices of a lite-export model; re-export");
      }
    } catch (const Ort::Exception& e) {
      throw EngineError("ONNX Runtime could not load " + path.string() + ": " + e.what());
    }
  }

  std::string name() const override { return "onnxruntime"; }

  std::string describe() const override {
    return "onnxruntime " + onnxruntime_version() + " (CPU), " + graph_ + ", intra-op threads " +
           (threads_ > 0 ? std::to_string(threads_) : std::string("default"));
  }

  void run(const ModelInputs& in, std::vector<float>& scores, std::vector<std::int64_t>& indices,
           std::int64_t* k_out) override {
    const std::array<std::int64_t, 2> ids_shape{in.batch, in.history};
    const std::array<std::int64_t, 2> exc_shape{in.batch, in.exclude};
    static const char* const kInputs[] = {"item_ids", "exclude_ids"};
    static const char* const kOutputs[] = {"scores", "indices"};
    try {
      std::array<Ort::Value, 2> values{
          Ort::Value::CreateTensor<std::int64_t>(
              memory_, const_cast<std::int64_t*>(in.item_ids.data()), in.item_ids.size(),
              ids_shape.data(), ids_shape.size()),
          Ort::Value::CreateTensor<std::int64_t>(
              memory_, const_cast<std::int64_t*>(in.exclude_ids.data()), in.exclude_ids.size(),
              exc_shape.data(), exc_shape.size())};
      auto out = session_.Run(run_options_, kInputs, values.data(), values.size(), kOutputs, 2);
      const auto s_info = out[0].GetTensorTypeAndShapeInfo();
      const auto i_info = out[1].GetTensorTypeAndShapeInfo();
      const auto shape = s_info.GetShape();
      if (s_info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ||
          i_info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 || shape.size() != 2 ||
          shape[0] != in.batch || i_info.GetShape() != shape) {
        throw EngineError(graph_ +
                          " returned outputs other than scores float32 [B, K] and indices int64 "
                          "[B, K]; re-export");
      }
      const float* s = out[0].GetTensorData<float>();
      const std::int64_t* i = out[1].GetTensorData<std::int64_t>();
      const auto n = static_cast<std::size_t>(shape[0] * shape[1]);
      scores.assign(s, s + n);
      indices.assign(i, i + n);
      *k_out = shape[1];
    } catch (const Ort::Exception& e) {
      throw EngineError(std::string("ONNX Runtime failed to run ") + graph_ + ": " + e.what());
    }
  }

 private:
  Ort::Env env_{nullptr};
  Ort::Session session_{nullptr};
  Ort::RunOptions run_options_{nullptr};  // created after init_ort_api(), like every Ort object
  Ort::MemoryInfo memory_{nullptr};
  std::string graph_;
  int threads_ = 0;
};

}  // namespace

std::string onnxruntime_version() { return OrtGetApiBase()->GetVersionString(); }

std::unique_ptr<Backend> make_onnxruntime_backend(const Artifact& art, const Options& opt) {
  return std::make_unique<OnnxRuntimeBackend>(art, opt);
}

}  // namespace lite
