//===- GpuSelectionStub.cpp - until the GPU selection lands ---------------===//
// Compiled instead of GpuSelection.cpp when that file is absent (runtime/cuda/CMakeLists.txt),
// so the CUDA device links: rules without selections or row phases run; the others stop with
// this error when CudaDevice first needs a selection.
#include "GpuSelection.h"
#include "mergec/Runtime/Error.h"

namespace mergec::rt::cuda {

namespace {
[[noreturn]] void notBuilt() {
  throw RuntimeError("GPU selection not built (this mergec lacks runtime/cuda/GpuSelection.cpp): "
                     "rules with top-k, quantile or row phases cannot run on --device cuda");
}
} // namespace

GpuSelection::GpuSelection(const CudaDriver &, CUstream) { notBuilt(); }
void GpuSelection::topkBoundaries(CUdeviceptr, int64_t, double, double, bool, RankBoundary &,
                                  RankBoundary &) {
  notBuilt();
}
double GpuSelection::quantile(CUdeviceptr, int64_t, double) { notBuilt(); }
void GpuSelection::rowRanks(CUdeviceptr, CUdeviceptr, int64_t, int64_t) { notBuilt(); }
void GpuSelection::rowReduce(CUdeviceptr, CUdeviceptr, int64_t, int64_t, bool) { notBuilt(); }
uint64_t GpuSelection::scratchBytes(int64_t, int64_t) { return 0; }

} // namespace mergec::rt::cuda
