//===- CudaDevice.h - phases on the first CUDA GPU --------------*- C++ -*-===//
// The Device of Device.h on a GPU: device memory from a caching allocator, every phase one
// kernel launch from the rule's PTX module (CompiledRule::deviceImage, one .entry per phase
// named by its symbol), the order statistics by GpuSelection. Three streams: Compute (kernels,
// selections, the allocator's order), Upload and Download (the executor's tensor transfers,
// overlapping the compute of the tensor before and after).
//
// Threads: CUDA calls are made only on the thread that created the device (it makes device 0's
// primary context current there) or one that called makeCurrent(). Handles returned by
// allocate() may be dropped on any thread: a dropped block goes back to the cache without a
// CUDA call.
#pragma once
#include "CudaDriver.h"
#include "mergec/Runtime/Device.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace mergec::rt::cuda {

class GpuSelection;

/// What the device did, for --verbose and benchmarks. Times are measured with events on the
/// streams (GPU time, not host time).
struct CudaStats {
  std::string device;
  uint64_t launches = 0;      ///< kernels launched
  double kernelMs = 0;        ///< their time, selections included
  uint64_t selections = 0;    ///< GpuSelection calls (included in kernelMs)
  uint64_t hostToDeviceBytes = 0, deviceToHostBytes = 0;
  double hostToDeviceMs = 0, deviceToHostMs = 0;
  uint64_t deviceBytesHeld = 0;  ///< device memory held now (in use or cached)
  uint64_t peakDeviceBytes = 0;  ///< the most held at once
  uint64_t deviceAllocations = 0; ///< cuMemAlloc calls
  uint64_t reusedAllocations = 0; ///< allocate() calls served from the cache
};

class CudaDevice : public Device {
public:
  /// Device 0 (throws the driver's "no CUDA driver"/"no CUDA device" errors), its primary
  /// context made current on this thread.
  CudaDevice();
  ~CudaDevice() override;
  CudaDevice(const CudaDevice &) = delete;
  CudaDevice &operator=(const CudaDevice &) = delete;

  bool hostResident() const override { return false; }
  std::shared_ptr<void> allocate(size_t bytes) override;
  void copyToHost(void *host, const void *device, size_t bytes) override;
  /// `n` floats of device memory copied into `staging` (for tests and debugging).
  const float *hostView(const float *device, int64_t n, std::vector<float> &staging);
  void launch(const CompiledRule &rule, size_t phase, const std::vector<MemRefDescriptor> &inputs,
              const std::function<MemRefDescriptor(size_t chunk)> &result, int64_t n, float layer,
              float numLayers, const MemRefDescriptor &scalars,
              const ChunkHook *afterChunk) override;
  void topkBoundaries(const float *keys, int64_t n, double density, double skip, bool nonzero,
                      RankBoundary &hi, RankBoundary &lo) override;
  double quantile(const float *keys, int64_t n, double q) override;
  void rowRanks(const float *keys, float *ranks, int64_t n, int64_t cols) override;
  void rowReduce(const float *keys, float *out, int64_t n, int64_t cols, bool sum) override;
  void countModelTopK(ModelTopK &topk, const float *keys, int64_t n) override;
  void modelTopKBoundaries(ModelTopK &topk, const float *keys, int64_t n, RankBoundary &hi,
                           RankBoundary &lo) override;

  std::shared_ptr<void> allocateHost(size_t bytes) override;
  void copyAsync(void *dst, const void *src, size_t bytes, bool toDevice, Queue queue) override;
  Fence record(Queue queue) override;
  void wait(Queue queue, const Fence &fence) override;
  void synchronize(const Fence &fence = nullptr) override;
  uint64_t freeMemory() override;
  void limitMemory(uint64_t bytes) override { budget_ = bytes; }
  uint64_t selectionScratchBytes(int64_t n, int64_t cols) const override;
  std::string name() const override { return name_; }
  std::string summary(size_t tensors) override;

  /// Makes the device's context current on the calling thread.
  void makeCurrent();
  /// Waits for the timing events still pending, then the totals.
  CudaStats stats();
  /// Gives every cached (unused) device block back to the driver.
  void trimCache();
  const CudaDriver &driver() const { return driver_; }
  CUstream stream(Queue queue) const;
  int multiprocessors() const { return multiprocessors_; }

private:
  struct Module;
  struct Timing {
    CUevent start, stop;
    enum Kind { Kernel, HostToDevice, DeviceToHost } kind;
    uint64_t bytes;
  };
  /// State shared with the deleters of allocate()'s handles, which may outlive the device.
  struct Pool {
    std::mutex mutex;
    bool closed = false;
    std::vector<std::pair<CUdeviceptr, size_t>> returned; ///< dropped, not yet fenced
    std::vector<CUevent> spareEvents;                     ///< fences' events back from use
  };
  void shutdown();
  CUfunction function(const CompiledRule &rule, size_t phase);
  GpuSelection &selection();
  CUevent takeEvent(bool timing);
  void beginTiming(Queue queue, CUevent &start);
  void endTiming(Queue queue, CUevent start, Timing::Kind kind, uint64_t bytes);
  /// Adds finished timings to the totals; with `all`, waits for the unfinished ones.
  void collectTimings(bool all);
  void collectReturnedBlocks();
  CUdeviceptr uploadScalars(const MemRefDescriptor &scalars);
  /// Checks `status`; a failure is named with the last kernel launched (asynchronous errors
  /// surface at the next synchronising call).
  void check(CUresult status, const char *what) const;

  const CudaDriver &driver_;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  std::string name_;
  int multiprocessors_ = 1;
  CUstream streams_[3] = {nullptr, nullptr, nullptr};
  std::shared_ptr<Pool> pool_;
  std::multimap<size_t, CUdeviceptr> free_; ///< cached blocks by size
  uint64_t cachedBytes_ = 0, budget_ = 0;
  /// Modules by PTX text: a kernel source that builds a new deviceImage per call still loads
  /// each module once. The last image used is remembered by address, so consecutive launches
  /// of one rule skip the text comparison.
  std::map<std::string, std::unique_ptr<Module>, std::less<>> modules_;
  std::shared_ptr<const std::string> lastImage_;
  Module *lastModule_ = nullptr;
  std::unique_ptr<GpuSelection> selection_;
  std::vector<CUevent> timingEvents_; ///< spare timing events
  std::vector<Timing> pendingTimings_;
  /// Page-locked copies of the scalars array, one per recent launch: an asynchronous copy reads
  /// its source when the stream gets to it, so each launch needs its own until then.
  struct ScalarSlot {
    void *host = nullptr;
    size_t capacity = 0;
    CUevent copied = nullptr; ///< recorded after the copy out of `host`
    bool pending = false;
  };
  std::vector<ScalarSlot> scalarSlots_;
  size_t nextScalarSlot_ = 0;
  std::shared_ptr<void> deviceScalars_;
  size_t deviceScalarsCapacity_ = 0;
  std::string lastKernel_;
  CudaStats stats_;
};

} // namespace mergec::rt::cuda
