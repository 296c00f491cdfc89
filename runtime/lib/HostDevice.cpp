//===- HostDevice.cpp - phases on the CPU's thread pool -------------------===//
#include "mergec/Runtime/Device.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/ThreadPool.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

namespace mergec::rt {

std::shared_ptr<void> HostDevice::allocate(size_t bytes) {
  // 64-byte alignment: whole cache lines and the widest vector loads.
  void *p = std::aligned_alloc(64, std::max<size_t>(64, (bytes + 63) / 64 * 64));
  if (!p)
    throw std::bad_alloc();
  return std::shared_ptr<void>(p, std::free);
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
  rt::topkBoundaries(keys, n, density, skip, nonzero, hi, lo);
}

double HostDevice::quantile(const float *keys, int64_t n, double q) {
  return rt::quantile(keys, n, q);
}

void HostDevice::rowRanks(const float *keys, float *ranks, int64_t n, int64_t cols) {
  rt::rowRanks(pool_, keys, ranks, n, cols);
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
uint64_t Device::freeMemory() { return 0; }

} // namespace mergec::rt
