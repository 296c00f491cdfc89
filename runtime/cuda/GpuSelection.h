//===- GpuSelection.h - order statistics on the GPU -------------*- C++ -*-===//
// TEMPORARY: the interface of the GPU selection, written on another branch (which brings the
// real header and GpuSelection.cpp; its file replaces this one when the branches merge). Until
// then runtime/cuda/CMakeLists.txt compiles GpuSelectionStub.cpp, which throws when used.
#pragma once
#include "CudaDriver.h"
#include "mergec/Runtime/Selection.h"
#include <cstdint>

namespace mergec::rt::cuda {

class GpuSelection {
public:
  GpuSelection(const CudaDriver &driver, CUstream stream); // in the current context; loads its own PTX
  void topkBoundaries(CUdeviceptr keys, int64_t n, double density, double skip, bool nonzero,
                      RankBoundary &hi, RankBoundary &lo);
  double quantile(CUdeviceptr keys, int64_t n, double q);
  void rowRanks(CUdeviceptr keys, CUdeviceptr ranks, int64_t n, int64_t cols);
  void rowReduce(CUdeviceptr keys, CUdeviceptr out, int64_t n, int64_t cols, bool sum);
  static uint64_t scratchBytes(int64_t n, int64_t cols); // device scratch it needs, for --max-gpu-memory
};

} // namespace mergec::rt::cuda
