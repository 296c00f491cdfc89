//===- Device.h - where a rule's phases execute -----------------*- C++ -*-===//
// PhaseRunner decides what runs when: which phases, in which order, what a model-scope phase
// adds up and which scalar slot each result goes to. A Device owns the memory the phases work
// in and runs things there: a compiled phase over every chunk of a tensor, and the order
// statistics between phases (top-k boundaries, quantiles, ranks and sums within rows). The host
// (its thread pool) is the first implementation; a CUDA device implements the same with device
// buffers, kernel launches and GPU selection, and PhaseRunner does not change.
#pragma once
#include "mergec/Runtime/Executor.h"
#include "mergec/Runtime/KernelABI.h"
#include "mergec/Runtime/Selection.h"
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace mergec::rt {

class ThreadPool;

/// A memref<?xT> descriptor as the lowered kernels take it (KernelABI.h).
struct MemRefDescriptor {
  void *allocated;
  void *aligned;
  int64_t offset;
  int64_t size;
  int64_t stride;
};

/// Called for each chunk [begin, end) of the output right after the map phase wrote it (on the
/// host, while it is in cache); chunks may run concurrently.
using ChunkHook = std::function<void(int64_t begin, int64_t end)>;

class Device {
public:
  virtual ~Device() = default;

  /// Elements per chunk: the unit of parallel work and of reduction partials. Partials are
  /// combined in chunk order by the caller, so results never depend on the device's parallelism.
  static constexpr int64_t kChunk = abi::kChunkElements;
  static size_t chunkCount(int64_t n) { return static_cast<size_t>((n + kChunk - 1) / kChunk); }

  /// `bytes` of device memory, freed when the last handle goes.
  virtual std::shared_ptr<void> allocate(size_t bytes) = 0;
  virtual void copyToHost(void *host, const void *device, size_t bytes) = 0;
  /// `n` floats of device memory readable on the host: the host returns `device` itself, a GPU
  /// copies into `staging` (model-scope top-k counts keys on the host).
  virtual const float *hostView(const float *device, int64_t n, std::vector<float> &staging) = 0;

  /// Whether phases read the tensors where the host has them (the CPU: the inputs' mappings and
  /// the output buffer) or need them copied into device memory first (a GPU).
  virtual bool hostResident() const { return true; }

  /// Runs phase `phase` of `rule` on every chunk of [0, n): chunk c reads `inputs` (device
  /// memory; on the host the inputs' mappings) and `scalars` (host memory, read when the phase
  /// starts: earlier phases' results) and writes `result(c)` (device memory: the output, the
  /// chunk's partials, or keys). `afterChunk` follows each chunk (host devices only). The CPU
  /// calls the phase's packed function per chunk; a GPU launches the kernel named by its
  /// symbol from the rule's device image.
  virtual void launch(const CompiledRule &rule, size_t phase,
                      const std::vector<MemRefDescriptor> &inputs,
                      const std::function<MemRefDescriptor(size_t chunk)> &result, int64_t n,
                      float layer, float numLayers, const MemRefDescriptor &scalars,
                      const ChunkHook *afterChunk = nullptr) = 0;

  /// The order statistics of Selection.h over `keys` (n floats in device memory).
  virtual void topkBoundaries(const float *keys, int64_t n, double density, double skip,
                              bool nonzero, RankBoundary &hi, RankBoundary &lo) = 0;
  virtual double quantile(const float *keys, int64_t n, double q) = 0;
  virtual void rowRanks(const float *keys, float *ranks, int64_t n, int64_t cols) = 0;
  virtual void rowReduce(const float *keys, float *out, int64_t n, int64_t cols, bool sum) = 0;
};

/// The CPU: host memory, chunks on a thread pool, Selection.h's radix selects and row sorts.
class HostDevice : public Device {
public:
  explicit HostDevice(ThreadPool &pool) : pool_(pool) {}
  std::shared_ptr<void> allocate(size_t bytes) override;
  void copyToHost(void *host, const void *device, size_t bytes) override;
  const float *hostView(const float *device, int64_t n, std::vector<float> &staging) override;
  void launch(const CompiledRule &rule, size_t phase, const std::vector<MemRefDescriptor> &inputs,
              const std::function<MemRefDescriptor(size_t chunk)> &result, int64_t n, float layer,
              float numLayers, const MemRefDescriptor &scalars,
              const ChunkHook *afterChunk) override;
  void topkBoundaries(const float *keys, int64_t n, double density, double skip, bool nonzero,
                      RankBoundary &hi, RankBoundary &lo) override;
  double quantile(const float *keys, int64_t n, double q) override;
  void rowRanks(const float *keys, float *ranks, int64_t n, int64_t cols) override;
  void rowReduce(const float *keys, float *out, int64_t n, int64_t cols, bool sum) override;

private:
  ThreadPool &pool_;
};

} // namespace mergec::rt
