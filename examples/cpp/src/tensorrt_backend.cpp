// The TensorRT backend: model.plan (from `lite export --format tensorrt`) with the TensorRT C++
// runtime, like lite_export/engines/tensorrt_engine.py. Compiled only when CMake finds TensorRT
// and the CUDA runtime (LITE_WITH_TENSORRT); written for TensorRT 10 and 11 (named I/O tensors,
// setInputShape / setTensorAddress / enqueueV3, int64 tensors, objects freed with delete). None
// of these is on TensorRT 11.x's list of removed C++ APIs:
// https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-c-api-reference.html
// The plan's optimisation profile (ICudaEngine::getProfileShape(name, 0, kMIN/kOPT/kMAX)) is what
// Recommender keeps every call inside (run_in_profile); IExecutionContext::setInputShape returns
// false for a shape outside it, reported with the input, its shape and the profile.
#include "lite/recommender.hpp"

#ifdef LITE_WITH_TENSORRT

#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <utility>

#if NV_TENSORRT_MAJOR < 10
#error "the TensorRT backend needs TensorRT 10 or newer (enqueueV3, int64 I/O tensors)"
#endif

namespace lite {
namespace {

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw EngineError(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status));
  }
}

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << msg << '\n';
  }
};

// A device buffer that grows to the largest request and is freed once.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  void* reserve(std::size_t bytes) {
    if (bytes > bytes_) {
      if (ptr_) check_cuda(cudaFree(ptr_), "cudaFree");
      ptr_ = nullptr;
      check_cuda(cudaMalloc(&ptr_, bytes), "cudaMalloc");
      bytes_ = bytes;
    }
    return ptr_;
  }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

class TensorRtBackend final : public Backend {
 public:
  TensorRtBackend(const Artifact& art, const Options&) {
    const auto plan_path = art.file("model.plan");
    std::ifstream in(plan_path, std::ios::binary);
    if (!in) {
      throw ArgumentError(plan_path.string() + " does not exist; build it with `lite export CKPT " +
                          "--out " + art.dir().string() +
                          " --format tensorrt --force` on this GPU host");
    }
    const std::vector<char> plan((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw EngineError("TensorRT could not create a runtime (is a GPU visible?)");
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_) {
      throw EngineError("TensorRT could not deserialise " + plan_path.string() +
                        " (built by another TensorRT version or GPU?); rebuild it here");
    }
    using nvinfer1::DataType;
    using nvinfer1::TensorIOMode;
    const struct {
      const char* name;
      TensorIOMode mode;
      DataType type;
    } expected[] = {{"item_ids", TensorIOMode::kINPUT, DataType::kINT64},
                    {"exclude_ids", TensorIOMode::kINPUT, DataType::kINT64},
                    {"scores", TensorIOMode::kOUTPUT, DataType::kFLOAT},
                    {"indices", TensorIOMode::kOUTPUT, DataType::kINT64}};
    for (const auto& e : expected) {
      if (engine_->getTensorIOMode(e.name) != e.mode ||
          engine_->getTensorDataType(e.name) != e.type) {
        throw ArtifactError(plan_path.string() + ": tensor '" + e.name +
                            "' is missing or has another type than the lite-export model's; "
                            "rebuild the plan with `lite export --format tensorrt --force`");
      }
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw EngineError("TensorRT could not create an execution context");
    InputProfile p;
    p.source = "model.plan";
    bool ok = true;
    for (const char* name : {"item_ids", "exclude_ids"}) {
      ShapeRange& r = std::string(name) == "item_ids" ? p.item_ids : p.exclude_ids;
      const nvinfer1::OptProfileSelector sel[3] = {nvinfer1::OptProfileSelector::kMIN,
                                                   nvinfer1::OptProfileSelector::kOPT,
                                                   nvinfer1::OptProfileSelector::kMAX};
      std::int64_t* out[3] = {r.min, r.opt, r.max};
      for (int w = 0; w < 3; ++w) {
        const nvinfer1::Dims d = engine_->getProfileShape(name, 0, sel[w]);
        if (d.nbDims != 2 || d.d[0] < 1 || d.d[1] < 1) {
          ok = false;
          continue;
        }
        out[w][0] = d.d[0];
        out[w][1] = d.d[1];
      }
    }
    if (ok) profile_ = p;
    check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate");
  }

  ~TensorRtBackend() override {
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "tensorrt"; }

  std::optional<InputProfile> profile() const override { return profile_; }

  std::string describe() const override {
    return "tensorrt " + std::to_string(NV_TENSORRT_MAJOR) + "." +
           std::to_string(NV_TENSORRT_MINOR) + ", model.plan";
  }

  void run(const ModelInputs& in, std::vector<float>& scores, std::vector<std::int64_t>& indices,
           std::int64_t* k_out) override {
    nvinfer1::Dims ids_dims{};
    ids_dims.nbDims = 2;
    ids_dims.d[0] = in.batch;
    ids_dims.d[1] = in.history;
    nvinfer1::Dims exc_dims = ids_dims;
    exc_dims.d[1] = in.exclude;
    using Named = std::pair<const char*, nvinfer1::Dims>;
    for (const auto& [name, dims] : {Named{"item_ids", ids_dims}, Named{"exclude_ids", exc_dims}}) {
      if (!context_->setInputShape(name, dims)) {
        const bool items = std::string(name) == "item_ids";
        const std::string allowed =
            profile_ ? (items ? profile_->item_ids : profile_->exclude_ids).str() : "unknown";
        throw ProfileError(std::string("TensorRT refused input ") + name + " of shape [" +
                           std::to_string(dims.d[0]) + ", " + std::to_string(dims.d[1]) +
                           "]: the optimisation profile of model.plan allows " + allowed +
                           ". Rebuild the plan with `lite export --format tensorrt --max-shape "
                           "BATCH,HISTORY --max-exclude H --force` to cover it");
      }
    }
    const nvinfer1::Dims out_dims = context_->getTensorShape("scores");
    if (out_dims.nbDims != 2 || out_dims.d[0] != in.batch || out_dims.d[1] < 1) {
      throw EngineError("TensorRT reports an unexpected scores shape");
    }
    const std::int64_t k = out_dims.d[1];
    const auto n_out = static_cast<std::size_t>(in.batch * k);
    const std::size_t ids_bytes = in.item_ids.size() * sizeof(std::int64_t);
    const std::size_t exc_bytes = in.exclude_ids.size() * sizeof(std::int64_t);
    void* d_ids = ids_.reserve(ids_bytes);
    void* d_exc = exc_.reserve(exc_bytes);
    void* d_scores = scores_.reserve(n_out * sizeof(float));
    void* d_indices = indices_.reserve(n_out * sizeof(std::int64_t));
    check_cuda(
        cudaMemcpyAsync(d_ids, in.item_ids.data(), ids_bytes, cudaMemcpyHostToDevice, stream_),
        "copy item_ids");
    check_cuda(
        cudaMemcpyAsync(d_exc, in.exclude_ids.data(), exc_bytes, cudaMemcpyHostToDevice, stream_),
        "copy exclude_ids");
    if (!context_->setTensorAddress("item_ids", d_ids) ||
        !context_->setTensorAddress("exclude_ids", d_exc) ||
        !context_->setTensorAddress("scores", d_scores) ||
        !context_->setTensorAddress("indices", d_indices)) {
      throw EngineError("TensorRT rejected a tensor address");
    }
    if (!context_->enqueueV3(stream_)) {
      throw EngineError("TensorRT execution failed (see the [TensorRT] log above)");
    }
    scores.resize(n_out);
    indices.resize(n_out);
    check_cuda(cudaMemcpyAsync(scores.data(), d_scores, n_out * sizeof(float),
                               cudaMemcpyDeviceToHost, stream_),
               "copy scores");
    check_cuda(cudaMemcpyAsync(indices.data(), d_indices, n_out * sizeof(std::int64_t),
                               cudaMemcpyDeviceToHost, stream_),
               "copy indices");
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    *k_out = k;
  }

 private:
  // declaration order = reverse destruction order: context, engine, runtime, then the logger
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  std::optional<InputProfile> profile_;
  DeviceBuffer ids_, exc_, scores_, indices_;
};

}  // namespace

bool tensorrt_built() { return true; }

std::unique_ptr<Backend> make_tensorrt_backend(const Artifact& art, const Options& opt) {
  return std::make_unique<TensorRtBackend>(art, opt);
}

}  // namespace lite

#else  // no TensorRT in this build

namespace lite {

bool tensorrt_built() { return false; }

std::unique_ptr<Backend> make_tensorrt_backend(const Artifact&, const Options&) {
  throw EngineError(
      "this build has no TensorRT backend: CMake did not find TensorRT (NvInfer.h, libnvinfer) "
      "and the CUDA runtime; on an NVIDIA host rebuild with -DTENSORRT_ROOT=/path/to/TensorRT");
}

}  // namespace lite

#endif
