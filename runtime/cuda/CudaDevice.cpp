//===- CudaDevice.cpp - phases on the first CUDA GPU ----------------------===//
#include "CudaDevice.h"
#include "GpuSelection.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/KernelABI.h"
#include "mergec/Runtime/Size.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace mergec::rt::cuda {

namespace {

std::string describe(const CudaDriver &driver, CUresult status) {
  const char *name = nullptr, *text = nullptr;
  if (driver.cuGetErrorName(status, &name) != CUDA_SUCCESS)
    name = nullptr;
  if (driver.cuGetErrorString(status, &text) != CUDA_SUCCESS)
    text = nullptr;
  std::string s = name ? name : "CUDA error " + std::to_string(static_cast<int>(status));
  return text ? s + ": " + text : s;
}

/// Errors a kernel raises while it runs: they stick to the context and come back from whichever
/// call synchronises next, so that call's own name says little.
bool isKernelFault(CUresult status) {
  switch (status) {
  case CUDA_ERROR_ILLEGAL_ADDRESS:
  case CUDA_ERROR_LAUNCH_FAILED:
  case CUDA_ERROR_ILLEGAL_INSTRUCTION:
  case CUDA_ERROR_MISALIGNED_ADDRESS:
  case CUDA_ERROR_INVALID_ADDRESS_SPACE:
  case CUDA_ERROR_INVALID_PC:
  case CUDA_ERROR_HARDWARE_STACK_ERROR:
  case CUDA_ERROR_LAUNCH_TIMEOUT:
  case CUDA_ERROR_ASSERT:
    return true;
  default:
    return false;
  }
}

constexpr size_t kAlignment = 512;   ///< allocate() rounds sizes up to this
constexpr size_t kScalarSlots = 64;  ///< launches whose scalars may be in flight at once

CUdeviceptr dptr(const void *p) { return reinterpret_cast<CUdeviceptr>(p); }

} // namespace

/// One PTX module (a rule's deviceImage) and the kernels looked up in it.
struct CudaDevice::Module {
  CUmodule module = nullptr;
  std::map<std::string, CUfunction> functions;
};

CudaDevice::CudaDevice() : driver_(CudaDriver::get()), pool_(std::make_shared<Pool>()) {
  try {
    check(driver_.cuDeviceGet(&device_, 0), "cuDeviceGet");
    char name[256] = {};
    check(driver_.cuDeviceGetName(name, sizeof name - 1, device_), "cuDeviceGetName");
    name_ = name;
    stats_.device = name_;
    check(driver_.cuDeviceGetAttribute(&multiprocessors_, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                       device_),
          "cuDeviceGetAttribute(MULTIPROCESSOR_COUNT)");
    multiprocessors_ = std::max(multiprocessors_, 1);
    // The primary context is the one the runtime API and other libraries share: retaining it
    // (rather than creating one) costs nothing extra when the process already has it.
    check(driver_.cuDevicePrimaryCtxRetain(&context_, device_), "cuDevicePrimaryCtxRetain");
    check(driver_.cuCtxSetCurrent(context_), "cuCtxSetCurrent");
    // Non-blocking: the streams never wait for the legacy default stream (nothing of ours
    // uses it, a library in the process might).
    for (CUstream &s : streams_)
      check(driver_.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  } catch (...) {
    shutdown();
    throw;
  }
}

CudaDevice::~CudaDevice() { shutdown(); }

void CudaDevice::shutdown() {
  if (!context_)
    return;
  // Best effort throughout: a destructor cannot report, and after a kernel fault every call
  // fails with the same sticky error.
  driver_.cuCtxSetCurrent(context_);
  for (CUstream s : streams_)
    if (s)
      driver_.cuStreamSynchronize(s);
  selection_.reset();
  deviceScalars_.reset();
  std::vector<std::pair<CUdeviceptr, size_t>> returned;
  std::vector<CUevent> events;
  {
    std::lock_guard<std::mutex> lock(pool_->mutex);
    pool_->closed = true; // handles dropped from now on leave their memory to the context
    returned.swap(pool_->returned);
    events.swap(pool_->spareEvents);
  }
  for (auto &[ptr, size] : returned)
    driver_.cuMemFree(ptr);
  for (auto &[size, ptr] : free_)
    driver_.cuMemFree(ptr);
  free_.clear();
  for (CUevent e : events)
    driver_.cuEventDestroy(e);
  for (ScalarSlot &slot : scalarSlots_) {
    if (slot.host)
      driver_.cuMemFreeHost(slot.host);
    if (slot.copied)
      driver_.cuEventDestroy(slot.copied);
  }
  scalarSlots_.clear();
  for (Timing &t : pendingTimings_) {
    driver_.cuEventDestroy(t.start);
    driver_.cuEventDestroy(t.stop);
  }
  pendingTimings_.clear();
  for (CUevent e : timingEvents_)
    driver_.cuEventDestroy(e);
  timingEvents_.clear();
  for (auto &[key, module] : modules_)
    if (module->module)
      driver_.cuModuleUnload(module->module);
  modules_.clear();
  lastModule_ = nullptr;
  lastImage_ = nullptr;
  for (CUstream &s : streams_)
    if (s) {
      driver_.cuStreamDestroy(s);
      s = nullptr;
    }
  driver_.cuDevicePrimaryCtxRelease(device_);
  context_ = nullptr;
}

void CudaDevice::check(CUresult status, const char *what) const {
  if (status == CUDA_SUCCESS)
    return;
  std::string message = std::string("cuda: ") + what + ": " + describe(driver_, status);
  if (isKernelFault(status) && !lastKernel_.empty())
    message += " (the last kernel launched was " + lastKernel_ + ")";
  throw RuntimeError(message);
}

void CudaDevice::makeCurrent() { check(driver_.cuCtxSetCurrent(context_), "cuCtxSetCurrent"); }

CUstream CudaDevice::stream(Queue queue) const { return streams_[static_cast<int>(queue)]; }

// --- Memory ---------------------------------------------------------------------------------

void CudaDevice::collectReturnedBlocks() {
  std::vector<std::pair<CUdeviceptr, size_t>> returned;
  {
    std::lock_guard<std::mutex> lock(pool_->mutex);
    returned.swap(pool_->returned);
  }
  // A returned block may still be read or written by kernels queued on Compute. Handing it out
  // again is safe without a fence because allocate()'s blocks are for Compute, which runs
  // in order (Device.h: other queues wait for a record(Compute) before touching them).
  for (auto &[ptr, size] : returned) {
    free_.emplace(size, ptr);
    cachedBytes_ += size;
  }
}

void CudaDevice::trimCache() {
  collectReturnedBlocks();
  if (free_.empty())
    return;
  // cuMemFree is not ordered with the streams: nothing queued may still use a block.
  synchronize();
  for (auto &[size, ptr] : free_) {
    check(driver_.cuMemFree(ptr), "cuMemFree");
    stats_.deviceBytesHeld -= size;
  }
  free_.clear();
  cachedBytes_ = 0;
}

std::shared_ptr<void> CudaDevice::allocate(size_t bytes) {
  collectReturnedBlocks();
  size_t size = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  // Tensors of a model come in a few shapes, so exact (or near) sizes recur: a cached block up
  // to a quarter (or 64 KiB) larger serves, a larger one is left for a larger request.
  size_t slack = std::max<size_t>(size / 4, 64 << 10);
  CUdeviceptr ptr = 0;
  size_t blockSize = size;
  if (auto it = free_.lower_bound(size); it != free_.end() && it->first - size <= slack) {
    blockSize = it->first;
    ptr = it->second;
    free_.erase(it);
    cachedBytes_ -= blockSize;
    ++stats_.reusedAllocations;
  } else {
    if (budget_ && stats_.deviceBytesHeld + size > budget_ && cachedBytes_)
      trimCache();
    CUresult status = driver_.cuMemAlloc(&ptr, size);
    if (status == CUDA_ERROR_OUT_OF_MEMORY && (collectReturnedBlocks(), cachedBytes_)) {
      trimCache();
      status = driver_.cuMemAlloc(&ptr, size);
    }
    if (status != CUDA_SUCCESS) {
      std::string what = "allocating " + formatSize(size) + " of GPU memory (" +
                         formatSize(stats_.deviceBytesHeld) + " held by mergec)";
      check(status, what.c_str());
    }
    stats_.deviceBytesHeld += size;
    stats_.peakDeviceBytes = std::max(stats_.peakDeviceBytes, stats_.deviceBytesHeld);
    ++stats_.deviceAllocations;
  }
  // The deleter makes no CUDA call (it may run on any thread): the block goes back to the cache.
  std::shared_ptr<Pool> pool = pool_;
  return std::shared_ptr<void>(reinterpret_cast<void *>(ptr), [pool, ptr, blockSize](void *) {
    std::lock_guard<std::mutex> lock(pool->mutex);
    if (!pool->closed)
      pool->returned.emplace_back(ptr, blockSize);
  });
}

std::shared_ptr<void> CudaDevice::allocateHost(size_t bytes) {
  void *p = nullptr;
  std::string what = "allocating " + formatSize(bytes) + " of page-locked host memory";
  check(driver_.cuMemAllocHost(&p, std::max<size_t>(bytes, 1)), what.c_str());
  std::shared_ptr<Pool> pool = pool_;
  const CudaDriver *driver = &driver_;
  return std::shared_ptr<void>(p, [pool, driver](void *q) {
    // After the device is gone its context released this memory with everything else.
    std::lock_guard<std::mutex> lock(pool->mutex);
    if (!pool->closed)
      driver->cuMemFreeHost(q);
  });
}

uint64_t CudaDevice::freeMemory() {
  size_t freeBytes = 0, total = 0;
  check(driver_.cuMemGetInfo(&freeBytes, &total), "cuMemGetInfo");
  collectReturnedBlocks();
  // What the cache holds unused is ours to hand out too.
  return freeBytes + cachedBytes_;
}

uint64_t CudaDevice::selectionScratchBytes(int64_t n, int64_t cols) const {
  return GpuSelection::scratchBytes(n, cols);
}

// --- Queues, fences and timing ----------------------------------------------------------------

CUevent CudaDevice::takeEvent(bool timing) {
  CUevent e = nullptr;
  if (timing) {
    if (!timingEvents_.empty()) {
      e = timingEvents_.back();
      timingEvents_.pop_back();
      return e;
    }
    check(driver_.cuEventCreate(&e, CU_EVENT_DEFAULT), "cuEventCreate");
    return e;
  }
  {
    std::lock_guard<std::mutex> lock(pool_->mutex);
    if (!pool_->spareEvents.empty()) {
      e = pool_->spareEvents.back();
      pool_->spareEvents.pop_back();
      return e;
    }
  }
  // Fences need no timestamps, and events without them are cheaper to record and wait on.
  check(driver_.cuEventCreate(&e, CU_EVENT_DISABLE_TIMING), "cuEventCreate");
  return e;
}

Device::Fence CudaDevice::record(Queue queue) {
  CUevent e = takeEvent(false);
  std::shared_ptr<Pool> pool = pool_;
  Fence fence(reinterpret_cast<void *>(e), [pool](void *p) {
    std::lock_guard<std::mutex> lock(pool->mutex);
    if (!pool->closed)
      pool->spareEvents.push_back(reinterpret_cast<CUevent>(p));
  });
  check(driver_.cuEventRecord(e, stream(queue)), "cuEventRecord");
  return fence;
}

void CudaDevice::wait(Queue queue, const Fence &fence) {
  if (fence)
    check(driver_.cuStreamWaitEvent(stream(queue), reinterpret_cast<CUevent>(fence.get()), 0),
          "cuStreamWaitEvent");
}

void CudaDevice::synchronize(const Fence &fence) {
  if (fence) {
    check(driver_.cuEventSynchronize(reinterpret_cast<CUevent>(fence.get())),
          "waiting for the GPU");
    return;
  }
  for (CUstream s : streams_)
    check(driver_.cuStreamSynchronize(s), "waiting for the GPU");
}

void CudaDevice::beginTiming(Queue queue, CUevent &start) {
  start = takeEvent(true);
  check(driver_.cuEventRecord(start, stream(queue)), "cuEventRecord");
}

void CudaDevice::endTiming(Queue queue, CUevent start, Timing::Kind kind, uint64_t bytes) {
  CUevent stop = takeEvent(true);
  check(driver_.cuEventRecord(stop, stream(queue)), "cuEventRecord");
  pendingTimings_.push_back({start, stop, kind, bytes});
  // Collected now and then without waiting, so the events in flight stay few.
  if (pendingTimings_.size() >= 256)
    collectTimings(pendingTimings_.size() >= 4096);
}

void CudaDevice::collectTimings(bool all) {
  std::vector<Timing> unfinished;
  for (Timing &t : pendingTimings_) {
    if (all) {
      check(driver_.cuEventSynchronize(t.stop), "waiting for the GPU");
    } else {
      CUresult status = driver_.cuEventQuery(t.stop);
      if (status == CUDA_ERROR_NOT_READY) {
        unfinished.push_back(t);
        continue;
      }
      check(status, "waiting for the GPU");
    }
    float ms = 0;
    check(driver_.cuEventElapsedTime(&ms, t.start, t.stop), "cuEventElapsedTime");
    switch (t.kind) {
    case Timing::Kernel:
      stats_.kernelMs += ms;
      break;
    case Timing::HostToDevice:
      stats_.hostToDeviceMs += ms;
      stats_.hostToDeviceBytes += t.bytes;
      break;
    case Timing::DeviceToHost:
      stats_.deviceToHostMs += ms;
      stats_.deviceToHostBytes += t.bytes;
      break;
    }
    timingEvents_.push_back(t.start);
    timingEvents_.push_back(t.stop);
  }
  pendingTimings_.swap(unfinished);
}

CudaStats CudaDevice::stats() {
  collectTimings(true);
  return stats_;
}

std::string CudaDevice::summary(size_t tensors) {
  CudaStats s = stats();
  auto rate = [](uint64_t bytes, double ms) { return ms > 0 ? bytes / (ms / 1e3) / 1e9 : 0.0; };
  char line[512];
  std::snprintf(line, sizeof line,
                "cuda: %s: kernels %.3f ms over %zu tensors, host->device %.2f GB/s, "
                "device->host %.2f GB/s, peak device memory %.0f MiB",
                s.device.c_str(), s.kernelMs, tensors,
                rate(s.hostToDeviceBytes, s.hostToDeviceMs),
                rate(s.deviceToHostBytes, s.deviceToHostMs),
                s.peakDeviceBytes / (1024.0 * 1024.0));
  return line;
}

// --- Copies -----------------------------------------------------------------------------------

void CudaDevice::copyAsync(void *dst, const void *src, size_t bytes, bool toDevice, Queue queue) {
  if (!bytes)
    return;
  CUevent start;
  beginTiming(queue, start);
  if (toDevice)
    check(driver_.cuMemcpyHtoDAsync(dptr(dst), src, bytes, stream(queue)),
          "copying to the GPU");
  else
    check(driver_.cuMemcpyDtoHAsync(dst, dptr(src), bytes, stream(queue)),
          "copying from the GPU");
  endTiming(queue, start, toDevice ? Timing::HostToDevice : Timing::DeviceToHost, bytes);
}

void CudaDevice::copyToHost(void *host, const void *device, size_t bytes) {
  // On Compute, behind the kernels that wrote `device`.
  copyAsync(host, device, bytes, false, Queue::Compute);
  check(driver_.cuStreamSynchronize(stream(Queue::Compute)), "waiting for the GPU");
}

const float *CudaDevice::hostView(const float *device, int64_t n, std::vector<float> &staging) {
  staging.resize(static_cast<size_t>(std::max<int64_t>(n, 0)));
  copyToHost(staging.data(), device, staging.size() * sizeof(float));
  return staging.data();
}

// --- Kernels ----------------------------------------------------------------------------------

CUfunction CudaDevice::function(const CompiledRule &rule, size_t phase) {
  const std::string &symbol = rule.phases[phase].symbol;
  if (!rule.deviceImage)
    throw RuntimeError("phase " + symbol + " has no GPU code: its rule was compiled for the CPU "
                       "(the kernel source must compile for --device cuda)");
  if (rule.deviceImage != lastImage_) {
    lastModule_ = nullptr;
    lastImage_ = nullptr;
  }
  auto it = modules_.end();
  if (!lastModule_)
    it = modules_.find(*rule.deviceImage);
  if (!lastModule_ && it == modules_.end()) {
    auto module = std::make_unique<Module>();
    // The PTX is compiled for this GPU here (the driver's JIT); its complaints go to the log.
    std::string log(32 << 10, '\0');
    CUjit_option options[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *values[] = {log.data(), reinterpret_cast<void *>(static_cast<uintptr_t>(log.size()))};
    CUresult status = driver_.cuModuleLoadDataEx(&module->module, rule.deviceImage->c_str(), 2,
                                                 options, values);
    if (status != CUDA_SUCCESS) {
      log.resize(std::strlen(log.c_str()));
      while (!log.empty() && (log.back() == '\n' || log.back() == ' '))
        log.pop_back();
      throw RuntimeError("cuda: loading the PTX module of kernel " + symbol + ": " +
                         describe(driver_, status) + (log.empty() ? "" : "\n" + log));
    }
    it = modules_.emplace(*rule.deviceImage, std::move(module)).first;
  }
  if (!lastModule_) {
    lastModule_ = it->second.get();
    lastImage_ = rule.deviceImage; // held: its address cannot be reused for another text
  }
  Module &module = *lastModule_;
  auto fn = module.functions.find(symbol);
  if (fn == module.functions.end()) {
    CUfunction f = nullptr;
    CUresult status = driver_.cuModuleGetFunction(&f, module.module, symbol.c_str());
    if (status != CUDA_SUCCESS)
      throw RuntimeError("cuda: kernel " + symbol + " is not in its rule's PTX module: " +
                         describe(driver_, status));
    fn = module.functions.emplace(symbol, f).first;
  }
  return fn->second;
}

CUdeviceptr CudaDevice::uploadScalars(const MemRefDescriptor &scalars) {
  size_t count = static_cast<size_t>(std::max<int64_t>(scalars.size, 0));
  size_t bytes = std::max<size_t>(count, 1) * sizeof(double);
  if (scalarSlots_.empty())
    scalarSlots_.resize(kScalarSlots);
  ScalarSlot &slot = scalarSlots_[nextScalarSlot_++ % scalarSlots_.size()];
  // The slot's previous copy must have read it before it is overwritten (64 launches ago: done).
  if (slot.pending) {
    check(driver_.cuEventSynchronize(slot.copied), "waiting for the GPU");
    slot.pending = false;
  }
  if (slot.capacity < bytes) {
    if (slot.host)
      check(driver_.cuMemFreeHost(slot.host), "cuMemFreeHost");
    slot.host = nullptr;
    slot.capacity = 0;
    size_t capacity = std::max<size_t>(bytes, 1024);
    check(driver_.cuMemAllocHost(&slot.host, capacity), "allocating page-locked host memory");
    slot.capacity = capacity;
  }
  if (!slot.copied)
    check(driver_.cuEventCreate(&slot.copied, CU_EVENT_DISABLE_TIMING), "cuEventCreate");
  // The array as it is now: PhaseRunner writes the next phase's inputs into it after this
  // launch returns, and the kernel must not see them.
  if (count)
    std::memcpy(slot.host, static_cast<const double *>(scalars.aligned) + scalars.offset,
                count * sizeof(double));
  // One device copy serves every launch: Compute runs the copy for the next launch only after
  // this launch's kernel finished.
  if (deviceScalarsCapacity_ < bytes) {
    deviceScalars_ = allocate(std::max<size_t>(bytes, 1024));
    deviceScalarsCapacity_ = std::max<size_t>(bytes, 1024);
  }
  CUdeviceptr target = dptr(deviceScalars_.get());
  check(driver_.cuMemcpyHtoDAsync(target, slot.host, bytes, stream(Queue::Compute)),
        "copying the scalars to the GPU");
  check(driver_.cuEventRecord(slot.copied, stream(Queue::Compute)), "cuEventRecord");
  slot.pending = true;
  return target;
}

void CudaDevice::launch(const CompiledRule &rule, size_t phase,
                        const std::vector<MemRefDescriptor> &inputs,
                        const std::function<MemRefDescriptor(size_t)> &result, int64_t n,
                        float layer, float numLayers, const MemRefDescriptor &scalars,
                        const ChunkHook *afterChunk) {
  // afterChunk is for host devices (Device.h): the executor checks a GPU's output on the host
  // once it is downloaded.
  (void)afterChunk;
  const CompiledRule::Phase &p = rule.phases[phase];
  CUfunction fn = function(rule, phase); // loads the module: its errors come first
  if (n <= 0)
    return;
  CUdeviceptr deviceScalars = uploadScalars(scalars);
  // The kernel's parameters are the packed ABI's arguments (KernelABI.h), so kernelParams is
  // the same array of pointers HostDevice passes to the packed function, over device pointers.
  // A reduction writes chunk c's partials at result[c * m + j]: its result is the base, chunk 0.
  PackedArgs args(inputs, result(0), /*begin=*/0, /*end=*/n, layer, numLayers,
                  {reinterpret_cast<void *>(deviceScalars), reinterpret_cast<void *>(deviceScalars),
                   0, scalars.size, 1});

  // Every phase kernel runs one block per chunk of the loop nest (KernelABI.h): a reduction's
  // partials are then the CPU's, chunk by chunk.
  int64_t blocks = std::max<int64_t>(static_cast<int64_t>(chunkCount(n)), 1);
  CUevent start;
  beginTiming(Queue::Compute, start);
  CUresult status =
      driver_.cuLaunchKernel(fn, static_cast<unsigned>(blocks), 1, 1,
                             static_cast<unsigned>(abi::kGpuBlock), 1, 1, 0,
                             stream(Queue::Compute), args.data(), nullptr);
  if (status != CUDA_SUCCESS) {
    timingEvents_.push_back(start);
    std::string what = "launching kernel " + p.symbol + " (" + std::to_string(blocks) +
                       " blocks of " + std::to_string(abi::kGpuBlock) + " threads, " +
                       std::to_string(n) + " elements)";
    check(status, what.c_str());
  }
  lastKernel_ = p.symbol;
  ++stats_.launches;
  endTiming(Queue::Compute, start, Timing::Kernel, 0);
}

// --- Selection --------------------------------------------------------------------------------

GpuSelection &CudaDevice::selection() {
  // Built on first use: it loads its own PTX, which rules without selections never need.
  if (!selection_)
    selection_ = std::make_unique<GpuSelection>(driver_, stream(Queue::Compute));
  return *selection_;
}

void CudaDevice::topkBoundaries(const float *keys, int64_t n, double density, double skip,
                                bool nonzero, RankBoundary &hi, RankBoundary &lo) {
  GpuSelection &s = selection();
  CUevent start;
  beginTiming(Queue::Compute, start);
  s.topkBoundaries(dptr(keys), n, density, skip, nonzero, hi, lo);
  ++stats_.selections;
  endTiming(Queue::Compute, start, Timing::Kernel, 0);
}

double CudaDevice::quantile(const float *keys, int64_t n, double q) {
  GpuSelection &s = selection();
  CUevent start;
  beginTiming(Queue::Compute, start);
  double value = s.quantile(dptr(keys), n, q);
  ++stats_.selections;
  endTiming(Queue::Compute, start, Timing::Kernel, 0);
  return value;
}

void CudaDevice::rowRanks(const float *keys, float *ranks, int64_t n, int64_t cols) {
  GpuSelection &s = selection();
  CUevent start;
  beginTiming(Queue::Compute, start);
  s.rowRanks(dptr(keys), dptr(ranks), n, cols);
  ++stats_.selections;
  endTiming(Queue::Compute, start, Timing::Kernel, 0);
}

void CudaDevice::rowReduce(const float *keys, float *out, int64_t n, int64_t cols, bool sum) {
  GpuSelection &s = selection();
  CUevent start;
  beginTiming(Queue::Compute, start);
  s.rowReduce(dptr(keys), dptr(out), n, cols, sum);
  ++stats_.selections;
  endTiming(Queue::Compute, start, Timing::Kernel, 0);
}

void CudaDevice::countModelTopK(ModelTopK &topk, const float *keys, int64_t n) {
  GpuSelection &s = selection();
  CUevent start;
  beginTiming(Queue::Compute, start);
  s.countModelTopK(topk, dptr(keys), n);
  ++stats_.selections;
  endTiming(Queue::Compute, start, Timing::Kernel, 0);
}

void CudaDevice::modelTopKBoundaries(ModelTopK &topk, const float *keys, int64_t n,
                                     RankBoundary &hi, RankBoundary &lo) {
  GpuSelection &s = selection();
  CUevent start;
  beginTiming(Queue::Compute, start);
  s.modelTopKBoundaries(topk, dptr(keys), n, hi, lo);
  ++stats_.selections;
  endTiming(Queue::Compute, start, Timing::Kernel, 0);
}

} // namespace mergec::rt::cuda
