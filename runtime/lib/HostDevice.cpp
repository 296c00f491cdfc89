//===- HostDevice.cpp - phases on the CPU's thread pool -------------------===//
#include "mergec/Runtime/Device.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/ThreadPool.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>

namespace mergec::rt {

/// Blocks released by their last handle, by rounded size, for the next request of that size
/// (tensors repeat their shapes layer after layer, so key and row buffers are not mapped and
/// page-faulted anew for every tensor). What is held, in use or kept, never exceeds the most
/// ever in use at once (highWater): a request that finds no block of its size frees kept
/// blocks, the largest first, until it fits under that mark.
struct HostDevice::BlockCache {
  std::mutex mutex;
  std::multimap<size_t, void *> blocks;
  size_t kept = 0, inUse = 0, highWater = 0;
  ~BlockCache() {
    for (auto &[size, block] : blocks)
      std::free(block);
  }
};

HostDevice::HostDevice(ThreadPool &pool) : pool_(pool), cache_(std::make_shared<BlockCache>()) {}

std::shared_ptr<void> HostDevice::allocate(size_t bytes) {
  // 64-byte alignment: whole cache lines and the widest vector loads. Sizes round to pages,
  // so a shape finds its block again.
  size_t rounded = std::max<size_t>(4096, (bytes + 4095) / 4096 * 4096);
  void *p = nullptr;
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    BlockCache &c = *cache_;
    c.inUse += rounded;
    if (auto it = c.blocks.find(rounded); it != c.blocks.end()) {
      p = it->second;
      c.blocks.erase(it);
      c.kept -= rounded;
    } else {
      c.highWater = std::max(c.highWater, c.inUse);
      while (!c.blocks.empty() && c.kept + c.inUse > c.highWater) {
        auto largest = std::prev(c.blocks.end());
        std::free(largest->second);
        c.kept -= largest->first;
        c.blocks.erase(largest);
      }
    }
  }
  if (!p)
    p = std::aligned_alloc(64, rounded);
  if (!p) {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    cache_->inUse -= rounded;
    throw std::bad_alloc();
  }
  return std::shared_ptr<void>(p, [cache = cache_, rounded](void *block) {
    std::lock_guard<std::mutex> lock(cache->mutex);
    cache->blocks.emplace(rounded, block);
    cache->kept += rounded;
    cache->inUse -= rounded;
  });
}

void HostDevice::copyToHost(void *host, const void *device, size_t bytes) {
  if (host != device)
    std::memcpy(host, device, bytes);
}


void HostDevice::launch(const CompiledRule &rule, size_t phase,
                        const std::vector<MemRefDescriptor> &inputs,
                        const std::function<MemRefDescriptor(size_t)> &result, int64_t n,
                        float layer, float numLayers, const MemRefDescriptor &scalars,
                        const ChunkHook *afterChunk) {
  launchRange(rule, phase, inputs, result, 0, n, layer, numLayers, scalars, afterChunk);
}

void HostDevice::launchRange(const CompiledRule &rule, size_t phase,
                             const std::vector<MemRefDescriptor> &inputs,
                             const std::function<MemRefDescriptor(size_t)> &result,
                             int64_t begin, int64_t end, float layer, float numLayers,
                             const MemRefDescriptor &scalars, const ChunkHook *afterChunk) {
  PackedKernel fn = rule.phases[phase].fn;
  if (!fn)
    throw RuntimeError("internal: phase " + rule.phases[phase].symbol + " has no host code");
  if (begin % kChunk)
    throw RuntimeError("internal: a launch from element " + std::to_string(begin) +
                       ", inside a chunk");
  size_t first = static_cast<size_t>(begin / kChunk);
  pool_.parallelFor(chunkCount(end - begin), [&](size_t k) {
    size_t c = first + k;
    int64_t from = static_cast<int64_t>(c) * kChunk, to = std::min(end, from + kChunk);
    PackedArgs args(inputs, result(c), from, to, layer, numLayers, scalars);
    fn(args.data());
    if (afterChunk)
      (*afterChunk)(from, to);
  });
}

void HostDevice::topkBoundaries(const float *keys, int64_t n, double density, double skip,
                                bool nonzero, RankBoundary &hi, RankBoundary &lo) {
  rt::topkBoundaries(&pool_, KeyChunks::buffer(keys, n), density, skip, nonzero, hi, lo);
}

double HostDevice::quantile(const float *keys, int64_t n, double q) {
  return rt::quantile(&pool_, KeyChunks::buffer(keys, n), q);
}

void HostDevice::countModelTopK(ModelTopK &topk, const float *keys, int64_t n) {
  topk.count(&pool_, KeyChunks::buffer(keys, n));
}

void HostDevice::modelTopKBoundaries(ModelTopK &topk, const float *keys, int64_t n,
                                     RankBoundary &hi, RankBoundary &lo) {
  topk.boundaries(&pool_, KeyChunks::buffer(keys, n), hi, lo);
}

void HostDevice::streamTopKBoundaries(std::vector<TopKJob> &jobs) {
  rt::topkBoundaries(&pool_, jobs);
}

double HostDevice::streamQuantile(const KeyChunks &keys, double q) {
  return rt::quantile(&pool_, keys, q);
}

void HostDevice::streamCountModelTopK(ModelTopK &topk, const KeyChunks &keys) {
  topk.count(&pool_, keys);
}

void HostDevice::streamModelTopKBoundaries(ModelTopK &topk, const KeyChunks &keys,
                                           RankBoundary &hi, RankBoundary &lo) {
  topk.boundaries(&pool_, keys, hi, lo);
}

void HostDevice::rowRanks(const float *keys, float *ranks, int64_t n, int64_t cols) {
  rt::rowRanks(pool_, keys, ranks, n, cols);
}

void HostDevice::streamRows(std::vector<RowJob> &jobs, int64_t cols) {
  rt::rowPhases(pool_, jobs, cols);
}

void HostDevice::rowReduce(const float *keys, float *out, int64_t n, int64_t cols, bool sum) {
  rt::rowReduce(pool_, keys, out, n, cols, sum);
}

// The transfer interface is for devices with memory of their own; the executor never calls it
// on the host (hostResident() is true), so reaching it is a bug.
namespace {
[[noreturn]] void hostHasNoQueues(const char *what) {
  throw RuntimeError(std::string("internal: Device::") + what +
                     " called on a host-resident device");
}
} // namespace

void Device::launchRange(const CompiledRule &rule, size_t phase,
                         const std::vector<MemRefDescriptor> &inputs,
                         const std::function<MemRefDescriptor(size_t)> &result, int64_t begin,
                         int64_t end, float layer, float numLayers,
                         const MemRefDescriptor &scalars, const ChunkHook *afterChunk) {
  if (begin != 0)
    throw RuntimeError("internal: Device::launchRange from element " + std::to_string(begin) +
                       " on a device that runs whole tensors");
  launch(rule, phase, inputs, result, end, layer, numLayers, scalars, afterChunk);
}

std::shared_ptr<void> Device::allocateHost(size_t) { hostHasNoQueues("allocateHost"); }
void Device::copyAsync(void *, const void *, size_t, bool, Queue) { hostHasNoQueues("copyAsync"); }
Device::Fence Device::record(Queue) { hostHasNoQueues("record"); }
void Device::wait(Queue, const Fence &) { hostHasNoQueues("wait"); }
void Device::synchronize(const Fence &) {}

// Streamed keys are for devices whose streamsKeys() is true; PhaseRunner gives the others a
// key buffer, so reaching these is a bug.
namespace {
[[noreturn]] void doesNotStream(const char *what) {
  throw RuntimeError(std::string("internal: Device::") + what +
                     " called on a device that takes its keys from a buffer");
}
} // namespace

void Device::streamTopKBoundaries(std::vector<TopKJob> &) {
  doesNotStream("streamTopKBoundaries");
}
double Device::streamQuantile(const KeyChunks &, double) { doesNotStream("streamQuantile"); }
void Device::streamCountModelTopK(ModelTopK &, const KeyChunks &) {
  doesNotStream("streamCountModelTopK");
}
void Device::streamModelTopKBoundaries(ModelTopK &, const KeyChunks &, RankBoundary &,
                                       RankBoundary &) {
  doesNotStream("streamModelTopKBoundaries");
}
void Device::streamRows(std::vector<RowJob> &, int64_t) { doesNotStream("streamRows"); }
uint64_t Device::freeMemory() { return 0; }

} // namespace mergec::rt
