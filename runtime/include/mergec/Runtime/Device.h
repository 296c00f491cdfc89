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
#include <string>
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

/// The packed argument array of one phase call (KernelABI.h): a pointer to each argument of the
/// lowered function, the five fields of each input's and the result's descriptor, begin, end,
/// layer, num_layers, then the scalars' descriptor. The CPU passes data() to the packed entry
/// point; a GPU passes it to cuLaunchKernel as kernelParams. It owns the values pointed at.
class PackedArgs {
public:
  PackedArgs(const std::vector<MemRefDescriptor> &inputs, const MemRefDescriptor &result,
             int64_t begin, int64_t end, float layer, float numLayers,
             const MemRefDescriptor &scalars)
      : descs_(inputs), begin_(begin), end_(end), layer_(layer), numLayers_(numLayers) {
    descs_.push_back(result);
    descs_.push_back(scalars);
    pointers_.reserve(descs_.size() * 5 + 4);
    for (size_t i = 0; i + 1 < descs_.size(); ++i)
      addDescriptor(descs_[i]);
    for (void *scalar : {static_cast<void *>(&begin_), static_cast<void *>(&end_),
                         static_cast<void *>(&layer_), static_cast<void *>(&numLayers_)})
      pointers_.push_back(scalar);
    addDescriptor(descs_.back());
  }
  PackedArgs(const PackedArgs &) = delete; // the pointers point into this object
  PackedArgs &operator=(const PackedArgs &) = delete;
  void **data() { return pointers_.data(); }
  size_t size() const { return pointers_.size(); }

private:
  void addDescriptor(MemRefDescriptor &d) {
    for (void *field : {static_cast<void *>(&d.allocated), static_cast<void *>(&d.aligned),
                        static_cast<void *>(&d.offset), static_cast<void *>(&d.size),
                        static_cast<void *>(&d.stride)})
      pointers_.push_back(field);
  }
  std::vector<MemRefDescriptor> descs_;
  int64_t begin_, end_;
  float layer_, numLayers_;
  std::vector<void *> pointers_;
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

  /// `bytes` of device memory, freed when the last handle goes. On a device with queues the
  /// memory is ordered on Compute: it may have been another buffer of Compute work still queued,
  /// so Upload or Download must wait for a record(Compute) before they touch it.
  virtual std::shared_ptr<void> allocate(size_t bytes) = 0;
  virtual void copyToHost(void *host, const void *device, size_t bytes) = 0;
  /// `n` floats of device memory readable on the host: the host returns `device` itself, a GPU
  /// copies into `staging` (model-scope top-k counts keys on the host).

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
  /// launch over the chunks of [begin, end) alone (`begin` a multiple of kChunk): chunk c of
  /// the tensor still gets result(c) and its absolute element indices, so a window of a tensor
  /// computes exactly what the whole-tensor launch computes there. The map phase of a tensor
  /// streamed window by window runs so on host devices; a device with memory of its own runs
  /// whole tensors, and its default here takes only begin 0.
  virtual void launchRange(const CompiledRule &rule, size_t phase,
                           const std::vector<MemRefDescriptor> &inputs,
                           const std::function<MemRefDescriptor(size_t chunk)> &result,
                           int64_t begin, int64_t end, float layer, float numLayers,
                           const MemRefDescriptor &scalars, const ChunkHook *afterChunk = nullptr);

  /// The order statistics of Selection.h over `keys` (n floats in device memory).
  virtual void topkBoundaries(const float *keys, int64_t n, double density, double skip,
                              bool nonzero, RankBoundary &hi, RankBoundary &lo) = 0;
  virtual double quantile(const float *keys, int64_t n, double q) = 0;
  virtual void rowRanks(const float *keys, float *ranks, int64_t n, int64_t cols) = 0;
  virtual void rowReduce(const float *keys, float *out, int64_t n, int64_t cols, bool sum) = 0;
  /// Model-scope top-k (Selection.h's ModelTopK) over `keys` (n floats in device memory): a
  /// counting pass sees this tensor, or, once the boundaries are known, the boundaries for it.
  /// The host gives ModelTopK the keys; a GPU counts where they are and gives it histograms.
  virtual void countModelTopK(ModelTopK &topk, const float *keys, int64_t n) {
    topk.count(keys, n);
  }
  virtual void modelTopKBoundaries(ModelTopK &topk, const float *keys, int64_t n,
                                   RankBoundary &hi, RankBoundary &lo) {
    topk.boundaries(keys, n, hi, lo);
  }

  /// Whether top-k and quantile selections take their keys chunk by chunk (KeyChunks: the
  /// select phase's kernel re-run into per-thread scratch on each pass) rather than from a
  /// tensor-sized key buffer: the host, where a kernel runs on any thread. The stream* calls
  /// are the selections above over such keys; a device that does not stream never gets them.
  virtual bool streamsKeys() const { return false; }
  /// One or several sibling top-k selections of a tensor, their passes shared (TopKJob).
  virtual void streamTopKBoundaries(std::vector<TopKJob> &jobs);
  virtual double streamQuantile(const KeyChunks &keys, double q);
  virtual void streamCountModelTopK(ModelTopK &topk, const KeyChunks &keys);
  virtual void streamModelTopKBoundaries(ModelTopK &topk, const KeyChunks &keys,
                                         RankBoundary &hi, RankBoundary &lo);
  /// Row phases over keys in chunks of whole rows (rowChunkSize), into `out` (a rank per
  /// element, a sum or maximum per row).
  /// One or several sibling row phases of a tensor (ranks, sums, maxima), one pass (RowJob).
  virtual void streamRows(std::vector<RowJob> &jobs, int64_t cols);

  // --- Devices with memory of their own (hostResident() false). The executor moves every
  // tensor through them: inputs read into page-locked host memory and uploaded on the Upload
  // queue while the Compute queue runs the previous tensor's phases, outputs downloaded on the
  // Download queue. Queues run in order; fences order one queue after another's work. launch,
  // the selections, allocate's stream order and copyToHost are on the Compute queue. The host
  // implements none of this (the executor never calls it there).
  enum class Queue { Compute, Upload, Download };
  /// A point in a queue: the work enqueued on it before record() returned.
  using Fence = std::shared_ptr<void>;
  /// `bytes` of page-locked host memory (the source and target of asynchronous copies).
  /// Released on a thread where the device is usable, after the copies using it completed.
  virtual std::shared_ptr<void> allocateHost(size_t bytes);
  /// Enqueues a copy on `queue`: host -> device when `toDevice`, else device -> host. `host`
  /// should be allocateHost memory (else the copy is synchronous).
  virtual void copyAsync(void *dst, const void *src, size_t bytes, bool toDevice, Queue queue);
  virtual Fence record(Queue queue);
  /// Work enqueued on `queue` from now on starts after `fence`.
  virtual void wait(Queue queue, const Fence &fence);
  /// The host waits for `fence` (or, without one, for every queue).
  virtual void synchronize(const Fence &fence = nullptr);
  /// Device memory free now (what --max-gpu-memory 0 allows).
  virtual uint64_t freeMemory();
  /// Caps the device memory the device keeps (cached blocks are returned before it is passed).
  virtual void limitMemory(uint64_t bytes) { (void)bytes; }
  /// Device scratch the selections need for a tensor of `n` elements in rows of `cols`.
  virtual uint64_t selectionScratchBytes(int64_t n, int64_t cols) const {
    (void)n, (void)cols;
    return 0;
  }
  /// The device's name ("NVIDIA H200"); the host's is "cpu".
  virtual std::string name() const { return "cpu"; }
  /// One line for --verbose after a run that computed `tensors` tensors (empty: nothing to say).
  virtual std::string summary(size_t tensors) { (void)tensors; return ""; }
};

/// The CPU: host memory, chunks on a thread pool, Selection.h's radix selects and row sorts.
class HostDevice : public Device {
public:
  explicit HostDevice(ThreadPool &pool);
  /// Blocks released by their last handle are kept for the next request of the same rounded
  /// size (tensors repeat their shapes layer after layer), so the key and row buffers are not
  /// mapped and page-faulted anew for every tensor. A request that finds none frees every kept
  /// block first: what is held never exceeds the largest set of buffers in use at once.
  std::shared_ptr<void> allocate(size_t bytes) override;
  void copyToHost(void *host, const void *device, size_t bytes) override;
  void launch(const CompiledRule &rule, size_t phase, const std::vector<MemRefDescriptor> &inputs,
              const std::function<MemRefDescriptor(size_t chunk)> &result, int64_t n, float layer,
              float numLayers, const MemRefDescriptor &scalars,
              const ChunkHook *afterChunk) override;
  void launchRange(const CompiledRule &rule, size_t phase,
                   const std::vector<MemRefDescriptor> &inputs,
                   const std::function<MemRefDescriptor(size_t chunk)> &result, int64_t begin,
                   int64_t end, float layer, float numLayers, const MemRefDescriptor &scalars,
                   const ChunkHook *afterChunk) override;
  void topkBoundaries(const float *keys, int64_t n, double density, double skip, bool nonzero,
                      RankBoundary &hi, RankBoundary &lo) override;
  double quantile(const float *keys, int64_t n, double q) override;
  void rowRanks(const float *keys, float *ranks, int64_t n, int64_t cols) override;
  void rowReduce(const float *keys, float *out, int64_t n, int64_t cols, bool sum) override;
  void countModelTopK(ModelTopK &topk, const float *keys, int64_t n) override;
  void modelTopKBoundaries(ModelTopK &topk, const float *keys, int64_t n, RankBoundary &hi,
                           RankBoundary &lo) override;
  bool streamsKeys() const override { return true; }
  void streamTopKBoundaries(std::vector<TopKJob> &jobs) override;
  double streamQuantile(const KeyChunks &keys, double q) override;
  void streamCountModelTopK(ModelTopK &topk, const KeyChunks &keys) override;
  void streamModelTopKBoundaries(ModelTopK &topk, const KeyChunks &keys, RankBoundary &hi,
                                 RankBoundary &lo) override;
  void streamRows(std::vector<RowJob> &jobs, int64_t cols) override;

private:
  ThreadPool &pool_;
  /// The released blocks allocate keeps; shared with the blocks' deleters, which may run after
  /// the device is gone.
  struct BlockCache;
  std::shared_ptr<BlockCache> cache_;
};

/// The device options.device names: a HostDevice on `pool`, or the first CUDA GPU (throws "this
/// mergec was built without CUDA support ..." when it is not compiled in, or the errors of
/// checkDevice).
std::unique_ptr<Device> createDevice(const RunOptions &options, ThreadPool &pool);

/// Opens the driver and the device options.device names without creating it, so a run can fail
/// before it creates anything: "no CUDA driver (...)", "no CUDA device", or the errors of
/// createDevice. Nothing to check for the CPU.
void checkDevice(const RunOptions &options);

} // namespace mergec::rt
