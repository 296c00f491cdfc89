//===- GpuSelection.h - Selection.h's order statistics on a GPU -*- C++ -*-===//
// topkBoundaries, quantile, rowRanks and rowReduce over keys already in device memory, with the
// results of runtime/lib/Selection.cpp bit for bit (row sums too: the CPU adds them in the
// kernel's lane-and-tree order, see SelectionKernels.cu). The keys never leave the device: the
// host reads histograms and counts.
// All work is queued on the stream given at construction; each call returns when its results
// are ready (rowRanks and rowReduce: when they are queued).
#pragma once
#include "CudaDriver.h"
#include "mergec/Runtime/Selection.h"
#include <cstdint>

namespace mergec::rt::cuda {

class GpuSelection {
public:
  /// Called with the context current; loads mergec_selection_ptx with cuModuleLoadDataEx.
  GpuSelection(const CudaDriver &driver, CUstream stream);
  ~GpuSelection();
  GpuSelection(const GpuSelection &) = delete;
  GpuSelection &operator=(const GpuSelection &) = delete;

  /// rt::topkBoundaries over n f32 keys at `keys`.
  void topkBoundaries(CUdeviceptr keys, int64_t n, double density, double skip, bool nonzero,
                      RankBoundary &hi, RankBoundary &lo);
  /// rt::quantile.
  double quantile(CUdeviceptr keys, int64_t n, double q);
  /// rt::rowRanks: n f32 ranks at `ranks` (elements past the last whole row are not written).
  void rowRanks(CUdeviceptr keys, CUdeviceptr ranks, int64_t n, int64_t cols);
  /// rt::rowReduce: n / cols f32 results at `out`, each a row's sum or maximum.
  void rowReduce(CUdeviceptr keys, CUdeviceptr out, int64_t n, int64_t cols, bool sum);
  /// Model-scope top-k: ModelTopK's counting pass over this tensor's keys (16-bit histograms
  /// counted on the device and added on the host), and its boundaries for this tensor (the
  /// count of keys equal to each cut and the index of the tie that ends it, on the device).
  void countModelTopK(ModelTopK &topk, CUdeviceptr keys, int64_t n);
  void modelTopKBoundaries(ModelTopK &topk, CUdeviceptr keys, int64_t n, RankBoundary &hi,
                           RankBoundary &lo);
  /// Device scratch the calls need for these sizes, at most (for a memory limit).
  static uint64_t scratchBytes(int64_t n, int64_t cols);

private:
  struct Grid;
  Grid gridFor(int64_t n) const;
  void launch(CUfunction fn, unsigned grid, unsigned block, unsigned sharedBytes, void **args);
  void ensureScratch(uint64_t bytes);
  void toHost(void *host, CUdeviceptr device, size_t bytes);
  void sync();
  /// One histogram pass (see mergec_sel_hist); returns nt * bins counts in host_.
  const uint64_t *histogram(CUdeviceptr keys, int64_t n, unsigned kind, unsigned shift,
                            unsigned bins, unsigned nt, unsigned prefMask, const uint32_t *pref,
                            uint64_t *zeros);
  /// The m[t]-th largest keys (1 <= m[t] <= n) given the first pass's histogram: their values
  /// and how many keys are strictly greater.
  void kthLargest(CUdeviceptr keys, int64_t n, unsigned kind, unsigned nt, const int64_t *m,
                  const uint64_t *firstPass, uint32_t *value, int64_t *above);
  /// A 65536-bin histogram of magnitude bits [shift, shift + 16) over the keys whose bits
  /// 31..16 equal `pref` (with `filter`), in host_; with `zeros`, the count of zero keys.
  const uint64_t *histogram16(CUdeviceptr keys, int64_t n, unsigned shift, bool filter,
                              uint32_t pref, uint64_t *zeros);
  /// The histogram at `offset` in the scratch (`bins` counts) and, with `zeros`, the zero
  /// count, copied to host_ once the queued passes are done.
  const uint64_t *histogramToHost(uint64_t offset, size_t bins, uint64_t *zeros);
  /// Per block of gridFor(n): how many magnitude keys equal value[t] (t < nt), in host_ as
  /// counts[t * blocks + b].
  const uint32_t *blockCounts(CUdeviceptr keys, int64_t n, unsigned nt, const uint32_t *value);
  /// How many magnitude keys equal `value`.
  int64_t equalCount(CUdeviceptr keys, int64_t n, uint32_t value);
  /// The flat index of the ties[t]-th magnitude key equal to value[t], in index order.
  void tieIndex(CUdeviceptr keys, int64_t n, unsigned nt, const uint32_t *value,
                const int64_t *ties, int64_t *index);

  const CudaDriver &driver_;
  CUstream stream_;
  CUmodule module_ = nullptr;
  CUfunction hist16_ = nullptr;
  CUfunction hist_ = nullptr, count_ = nullptr, find_ = nullptr, rankShared_ = nullptr,
             rankGlobal_ = nullptr, reduce_ = nullptr;
  int multiprocessors_ = 0;
  int sharedOptin_ = 0; ///< the most dynamic shared memory a block may use
  CUdeviceptr scratch_ = 0;
  uint64_t scratchSize_ = 0;
  void *host_ = nullptr; ///< pinned staging for histograms and counts
};

} // namespace mergec::rt::cuda
