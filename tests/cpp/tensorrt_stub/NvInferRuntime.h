// Stand-in for TensorRT's NvInferRuntime.h: only the declarations that
// examples/cpp/src/tensorrt_backend.cpp uses, with the signatures of the TensorRT 10.x / 11.x C++
// API reference (https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/c-api/ : ILogger,
// Dims64, DataType, TensorIOMode, OptProfileSelector, IRuntime, ICudaEngine, IExecutionContext).
// No definitions: tests/cpp/test_tensorrt_backend_compiles.py only compiles the backend, so a
// type or signature mistake in it fails on a machine without TensorRT.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cuda_runtime_api.h"

namespace nvinfer1 {

using AsciiChar = char;

class ILogger {
 public:
  enum class Severity : int32_t {
    kINTERNAL_ERROR = 0,
    kERROR = 1,
    kWARNING = 2,
    kINFO = 3,
    kVERBOSE = 4,
  };
  virtual void log(Severity severity, AsciiChar const* msg) noexcept = 0;
  ILogger() = default;
  virtual ~ILogger() = default;
};

class Dims64 {
 public:
  static constexpr int32_t MAX_DIMS{8};
  int32_t nbDims;
  int64_t d[MAX_DIMS];
};
using Dims = Dims64;

enum class DataType : int32_t {
  kFLOAT = 0,
  kHALF = 1,
  kINT8 = 2,
  kINT32 = 3,
  kBOOL = 4,
  kUINT8 = 5,
  kFP8 = 6,
  kBF16 = 7,
  kINT64 = 8,
  kINT4 = 9,
};

enum class TensorIOMode : int32_t { kNONE = 0, kINPUT = 1, kOUTPUT = 2 };

enum class OptProfileSelector : int32_t { kMIN = 0, kOPT = 1, kMAX = 2 };

enum class ExecutionContextAllocationStrategy : int32_t {
  kSTATIC = 0,
  kON_PROFILE_CHANGE = 1,
  kUSER_MANAGED = 2,
};

class IExecutionContext {
 public:
  virtual ~IExecutionContext() noexcept = default;
  bool setInputShape(char const* tensorName, Dims const& dims) noexcept;
  Dims getTensorShape(char const* tensorName) const noexcept;
  bool setTensorAddress(char const* tensorName, void* data) noexcept;
  bool enqueueV3(cudaStream_t stream) noexcept;
};

class ICudaEngine {
 public:
  virtual ~ICudaEngine() noexcept = default;
  Dims getProfileShape(char const* tensorName, int32_t profileIndex,
                       OptProfileSelector select) const noexcept;
  TensorIOMode getTensorIOMode(char const* tensorName) const noexcept;
  DataType getTensorDataType(char const* tensorName) const noexcept;
  IExecutionContext* createExecutionContext(
      ExecutionContextAllocationStrategy strategy =
          ExecutionContextAllocationStrategy::kSTATIC) noexcept;
};

class IRuntime {
 public:
  virtual ~IRuntime() noexcept = default;
  ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size) noexcept;
};

IRuntime* createInferRuntime(ILogger& logger) noexcept;

}  // namespace nvinfer1
