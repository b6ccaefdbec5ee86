// Stand-in for TensorRT's NvInferVersion.h (tests/cpp/test_tensorrt_backend_compiles.py).
#pragma once
#ifndef NV_TENSORRT_MAJOR
#define NV_TENSORRT_MAJOR 10
#endif
#define NV_TENSORRT_MINOR 16
