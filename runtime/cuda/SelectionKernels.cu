//===- SelectionKernels.cu - runtime/lib/Selection.cpp's order statistics on a GPU -===//
// Compiled to PTX at build time (SelectionKernels.cmake) and loaded by GpuSelection.cpp
// through the driver API: extern "C" kernels, no runtime API, no dynamic parallelism.
//
// Every result is bit-identical to Selection.cpp's (row sums too: the CPU adds them in this
// kernel's order, see mergec_row_reduce):
//  - radix select: three histogram passes over the key's bits 31..21, 20..10 and 9..0 (shared-
//    memory histograms; integer atomics only, so the counts are exact and deterministic). The
//    m-th largest key and the number of keys strictly above it do not depend on how the key is
//    cut into digits, so this finds what the CPU's two 16-bit passes find. The host scans the
//    histograms between passes.
//  - tie index: per-block counts of the keys equal to the boundary over contiguous chunks, a
//    prefix on the host, then one block walks its chunk in index order.
//  - row ranks: one block per row, a stable LSD radix sort (8-bit digits) of the column
//    indices by magnitude bits: equal magnitudes keep index order, as on the CPU.
#include <cstdint>

// Dynamic shared memory. tests/cuda/mock compiles this file for the CPU (CudaEmulation.h) and
// defines the macro as a pointer into the block's emulated shared memory.
#ifndef MERGEC_DYNAMIC_SHARED
#define MERGEC_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace {

constexpr unsigned kFull = 0xFFFFFFFFu;

// Histogram / count kernels: 256 threads, 8 keys per thread per tile, at most 32 registers
// (__launch_bounds__(256, 8)) so that 8 blocks fill an SM: GpuSelection launches one wave of
// 8 blocks per SM, each over an equal contiguous chunk.
constexpr unsigned kThreads = 256;
constexpr unsigned kItems = 8;
constexpr unsigned kTile = kThreads * kItems;
constexpr unsigned kMaxBins = 2048;

/// kind 0: |x| as bits (Selection.cpp's magnitudeKey). kind 1: the bits mapped so that
/// unsigned order is numeric order (orderedKey).
__device__ __forceinline__ unsigned keyOf(float f, unsigned kind) {
  unsigned u = __float_as_uint(f);
  if (kind == 0)
    return u & 0x7FFFFFFFu;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ unsigned laneId() { return threadIdx.x & 31u; }

/// The keys block blockIdx.x of a histogram, count or find grid covers: [start, end), `chunk`
/// keys each (the last block's range ends at n).
__device__ __forceinline__ void blockRange(unsigned long long n, unsigned long long chunk,
                                           unsigned long long &start, unsigned long long &end) {
  start = blockIdx.x * chunk;
  end = start + chunk < n ? start + chunk : n;
}

/// This thread's kItems keys of the tile at `base` (kThreads apart, so a warp reads
/// consecutive keys), as `kind` keys; those at or past `end` are invalid (and 0).
__device__ __forceinline__ void loadTile(const float *__restrict__ keys, unsigned long long base,
                                         unsigned long long end, unsigned kind,
                                         unsigned (&k)[kItems], bool (&valid)[kItems]) {
#pragma unroll
  for (unsigned j = 0; j < kItems; ++j) {
    unsigned long long i = base + j * kThreads + threadIdx.x;
    valid[j] = i < end;
    k[j] = valid[j] ? keyOf(keys[i], kind) : 0u;
  }
}
__device__ __forceinline__ unsigned lanesBelow() { return (1u << laneId()) - 1u; }

} // namespace

/// Histogram of digit (key >> shift) & (bins - 1) over the keys whose (key & prefMask) equals
/// pref0 (target 0) or pref1 (target 1, when nt == 2), added into hist[t * bins + digit].
/// Block b covers keys [b * chunk, (b + 1) * chunk). With `zeros`, also counts key == 0.
extern "C" __global__ void __launch_bounds__(kThreads, 8)
mergec_sel_hist(const float *__restrict__ keys, unsigned long long n, unsigned long long chunk,
                unsigned kind, unsigned shift, unsigned bins, unsigned nt, unsigned prefMask,
                unsigned pref0, unsigned pref1, unsigned long long *__restrict__ hist,
                unsigned long long *__restrict__ zeros) {
  __shared__ unsigned sh[2 * kMaxBins];
  __shared__ unsigned shZeros;
  const unsigned tid = threadIdx.x, lane = laneId();
  for (unsigned i = tid; i < nt * bins; i += kThreads)
    sh[i] = 0;
  if (tid == 0)
    shZeros = 0;
  __syncthreads();

  unsigned long long start, end;
  blockRange(n, chunk, start, end);
  unsigned myZeros = 0;
  for (unsigned long long base = start; base < end; base += kTile) {
    unsigned k[kItems];
    bool valid[kItems];
    loadTile(keys, base, end, kind, k, valid);
#pragma unroll
    for (unsigned j = 0; j < kItems; ++j) {
      myZeros += valid[j] && k[j] == 0;
      unsigned digit = (k[j] >> shift) & (bins - 1);
      for (unsigned t = 0; t < nt; ++t) {
        bool match = valid[j] && (k[j] & prefMask) == (t ? pref1 : pref0);
        unsigned matching = __ballot_sync(kFull, match);
        if (matching == 0)
          continue; // warp-uniform
        // A warp whose matching lanes share one digit (zeros, heavy ties) adds once.
        unsigned leader = __ffs(matching) - 1;
        unsigned first = __shfl_sync(kFull, digit, leader);
        if (__all_sync(kFull, !match || digit == first)) {
          if (lane == leader)
            atomicAdd(&sh[t * bins + first], __popc(matching));
        } else if (match) {
          atomicAdd(&sh[t * bins + digit], 1u);
        }
      }
    }
  }
  if (zeros) {
    myZeros = __reduce_add_sync(kFull, myZeros);
    if (lane == 0 && myZeros)
      atomicAdd(&shZeros, myZeros);
  }
  __syncthreads();
  for (unsigned i = tid; i < nt * bins; i += kThreads)
    if (sh[i])
      atomicAdd(&hist[i], (unsigned long long)sh[i]);
  if (zeros && tid == 0 && shZeros)
    atomicAdd(zeros, (unsigned long long)shZeros);
}

/// counts[t * gridDim.x + b] = how many keys of block b's chunk equal v0 (t = 0) / v1 (t = 1).
extern "C" __global__ void __launch_bounds__(kThreads, 8)
mergec_sel_count(const float *__restrict__ keys, unsigned long long n, unsigned long long chunk,
                 unsigned kind, unsigned nt, unsigned v0, unsigned v1,
                 unsigned *__restrict__ counts) {
  __shared__ unsigned sc[2];
  const unsigned tid = threadIdx.x, lane = laneId();
  if (tid < 2)
    sc[tid] = 0;
  __syncthreads();
  unsigned long long start, end;
  blockRange(n, chunk, start, end);
  unsigned c0 = 0, c1 = 0;
  for (unsigned long long base = start; base < end; base += kTile) {
    unsigned k[kItems];
    bool valid[kItems];
    loadTile(keys, base, end, kind, k, valid);
#pragma unroll
    for (unsigned j = 0; j < kItems; ++j) {
      c0 += valid[j] && k[j] == v0;
      c1 += valid[j] && k[j] == v1;
    }
  }
  c0 = __reduce_add_sync(kFull, c0);
  c1 = __reduce_add_sync(kFull, c1);
  if (lane == 0) {
    atomicAdd(&sc[0], c0);
    atomicAdd(&sc[1], c1);
  }
  __syncthreads();
  if (tid == 0) {
    counts[blockIdx.x] = sc[0];
    if (nt > 1)
      counts[gridDim.x + blockIdx.x] = sc[1];
  }
}

/// One block of kThreads: *out = the flat index of the rank-th (1-based) key in [start, end)
/// equal to `value`, in index order. Writes nothing when there are fewer.
extern "C" __global__ void __launch_bounds__(kThreads)
mergec_sel_find(const float *__restrict__ keys, unsigned long long start, unsigned long long end,
                unsigned kind, unsigned value, unsigned long long rank,
                unsigned long long *__restrict__ out) {
  constexpr unsigned kWarps = kThreads / 32, kFindItems = 16;
  __shared__ unsigned warpCount[kWarps];
  const unsigned tid = threadIdx.x, lane = laneId(), warp = tid / 32;
  unsigned long long running = 0; // matches before the current step, block-uniform
  for (unsigned long long base = start; base < end; base += kThreads * kFindItems) {
    bool match[kFindItems];
#pragma unroll
    for (unsigned j = 0; j < kFindItems; ++j) {
      unsigned long long i = base + j * kThreads + tid;
      match[j] = i < end && keyOf(keys[i], kind) == value;
    }
#pragma unroll
    for (unsigned j = 0; j < kFindItems; ++j) {
      unsigned ballot = __ballot_sync(kFull, match[j]);
      if (lane == 0)
        warpCount[warp] = __popc(ballot);
      __syncthreads();
      unsigned long long before = running;
      unsigned total = 0;
      for (unsigned w = 0; w < kWarps; ++w) {
        unsigned c = warpCount[w];
        total += c;
        if (w < warp)
          before += c;
      }
      before += __popc(ballot & lanesBelow());
      if (match[j] && before + 1 == rank)
        *out = base + j * kThreads + tid;
      running += total;
      __syncthreads();
      if (running >= rank)
        return; // block-uniform
    }
  }
}

//===----------------------------------------------------------------------===//
// Row ranks
//===----------------------------------------------------------------------===//

namespace {

/// The lanes of this warp whose `valid` is set and whose 8-bit digit equals this lane's.
/// Shared words sortRow uses ahead of the row: the [digit][warp] table, warp totals, a flag
/// (GpuSelection.cpp computes the same).
__device__ __forceinline__ unsigned rankHeaderWords(unsigned warps) { return 256 * warps + 64; }

__device__ __forceinline__ unsigned peersOf(unsigned digit, bool valid) {
  unsigned peers = __ballot_sync(kFull, valid);
#pragma unroll
  for (unsigned bit = 0; bit < 8; ++bit) {
    bool set = (digit >> bit) & 1u;
    unsigned ballot = __ballot_sync(kFull, set);
    peers &= set ? ballot : ~ballot;
  }
  return peers;
}

/// Exclusive prefix sum of x over the block in thread order; uses warpTotal[blockDim / 32].
__device__ unsigned blockExclusiveScan(unsigned x, unsigned *warpTotal) {
  const unsigned lane = laneId(), warp = threadIdx.x / 32;
  unsigned inclusive = x;
#pragma unroll
  for (unsigned offset = 1; offset < 32; offset *= 2) {
    unsigned y = __shfl_up_sync(kFull, inclusive, offset);
    if (lane >= offset)
      inclusive += y;
  }
  if (lane == 31)
    warpTotal[warp] = inclusive;
  __syncthreads();
  unsigned before = 0;
  for (unsigned w = 0; w < warp; ++w)
    before += warpTotal[w];
  __syncthreads();
  return before + inclusive - x;
}

/// Stable LSD radix sort of the column indices 0..cols-1 of one row by the magnitude bits of
/// bits[index] (the row's raw float bits), 8 bits a digit. Warp w owns the contiguous segment
/// [w * seg, (w + 1) * seg) of the current order and walks it in order, 32 at a time, so the
/// scatter keeps the order of equal digits: the block's digit offsets come from one exclusive
/// scan of the counts laid out as [digit][warp]. A digit every key shares costs a counting
/// walk and no scatter. `shared` holds rankHeaderWords(warps) words. Returns the sorted array
/// (a or b).
template <typename Idx>
__device__ Idx *sortRow(const unsigned *bits, Idx *a, Idx *b, unsigned cols, unsigned *shared) {
  const unsigned tid = threadIdx.x, lane = laneId(), warp = tid / 32;
  const unsigned warps = blockDim.x / 32;
  unsigned *table = shared;                  // [256][warps]: counts, then running offsets
  unsigned *warpTotal = shared + 256 * warps; // [32]
  unsigned &uniform = shared[256 * warps + 32];
  const unsigned seg = (cols + warps - 1) / warps;
  const unsigned segStart = min(cols, warp * seg), segEnd = min(cols, segStart + seg);

  for (unsigned i = tid; i < cols; i += blockDim.x)
    a[i] = static_cast<Idx>(i);
  __syncthreads();

  for (unsigned shift = 0; shift < 32; shift += 8) {
    for (unsigned e = tid; e < 256 * warps; e += blockDim.x)
      table[e] = 0;
    __syncthreads();
    // Count each digit in each warp's segment.
    for (unsigned i0 = segStart; i0 < segEnd; i0 += 32) {
      unsigned i = i0 + lane;
      bool valid = i < segEnd;
      unsigned digit = valid ? ((bits[a[i]] & 0x7FFFFFFFu) >> shift) & 0xFFu : 0u;
      unsigned peers = peersOf(digit, valid);
      if (valid && (peers & lanesBelow()) == 0)
        table[digit * warps + warp] += __popc(peers);
      __syncwarp();
    }
    __syncthreads();
    if (tid == 0) {
      unsigned digit = ((bits[a[0]] & 0x7FFFFFFFu) >> shift) & 0xFFu;
      unsigned total = 0;
      for (unsigned w = 0; w < warps; ++w)
        total += table[digit * warps + w];
      uniform = total == cols;
    }
    __syncthreads();
    if (uniform)
      continue; // block-uniform: nothing moves on this digit
    // Exclusive scan of the table in [digit][warp] order: 256 * warps = 8 entries a thread.
    unsigned v[8], sum = 0;
#pragma unroll
    for (unsigned e = 0; e < 8; ++e) {
      v[e] = table[tid * 8 + e];
      sum += v[e];
    }
    unsigned offset = blockExclusiveScan(sum, warpTotal);
#pragma unroll
    for (unsigned e = 0; e < 8; ++e) {
      table[tid * 8 + e] = offset;
      offset += v[e];
    }
    __syncthreads();
    // Scatter, each warp in its segment's order; only warp w touches column w of the table.
    for (unsigned i0 = segStart; i0 < segEnd; i0 += 32) {
      unsigned i = i0 + lane;
      bool valid = i < segEnd;
      Idx index = valid ? a[i] : Idx(0);
      unsigned digit = valid ? ((bits[index] & 0x7FFFFFFFu) >> shift) & 0xFFu : 0u;
      unsigned peers = peersOf(digit, valid);
      unsigned rank = __popc(peers & lanesBelow());
      unsigned at = valid ? table[digit * warps + warp] : 0u;
      __syncwarp();
      if (valid) {
        b[at + rank] = index;
        if (rank == 0)
          table[digit * warps + warp] = at + __popc(peers);
      }
      __syncwarp();
    }
    __syncthreads();
    Idx *t = a;
    a = b;
    b = t;
  }
  return a;
}

} // namespace

/// ranks[row * cols + c] = the rank 1..cols of |keys[row * cols + c]| ascending, ties by
/// lowest index, with the row in shared memory: dynamic shared memory of
/// (256 * warps + 64) * 4 + cols * 8 bytes (raw bits, then two u16 index arrays; cols <= 65535).
extern "C" __global__ void __launch_bounds__(1024)
mergec_rank_shared(const float *__restrict__ keys, float *__restrict__ ranks,
                   unsigned long long rows, unsigned cols) {
  MERGEC_DYNAMIC_SHARED(unsigned, smem);
  const unsigned warps = blockDim.x / 32;
  unsigned *bits = smem + rankHeaderWords(warps);
  unsigned short *a = reinterpret_cast<unsigned short *>(bits + cols);
  unsigned short *b = a + cols;
  const unsigned *in = reinterpret_cast<const unsigned *>(keys);
  for (unsigned long long row = blockIdx.x; row < rows; row += gridDim.x) {
    const unsigned *x = in + row * cols;
    for (unsigned c = threadIdx.x; c < cols; c += blockDim.x)
      bits[c] = x[c];
    __syncthreads();
    unsigned short *sorted = sortRow(bits, a, b, cols, smem);
    unsigned short *rankOf = sorted == a ? b : a;
    for (unsigned i = threadIdx.x; i < cols; i += blockDim.x)
      rankOf[sorted[i]] = static_cast<unsigned short>(i + 1);
    __syncthreads();
    float *r = ranks + row * cols;
    for (unsigned c = threadIdx.x; c < cols; c += blockDim.x)
      r[c] = static_cast<float>(rankOf[c]);
    __syncthreads();
  }
}

/// The same with the index arrays in global scratch (2 * cols u32 per block) and the keys read
/// from global memory: rows of any width below 2^32. Dynamic shared: (256 * warps + 64) * 4.
extern "C" __global__ void __launch_bounds__(1024)
mergec_rank_global(const float *__restrict__ keys, float *__restrict__ ranks,
                   unsigned long long rows, unsigned cols, unsigned *__restrict__ scratch) {
  MERGEC_DYNAMIC_SHARED(unsigned, smem);
  unsigned *a = scratch + blockIdx.x * 2ull * cols;
  unsigned *b = a + cols;
  const unsigned *in = reinterpret_cast<const unsigned *>(keys);
  for (unsigned long long row = blockIdx.x; row < rows; row += gridDim.x) {
    unsigned *sorted = sortRow(in + row * cols, a, b, cols, smem);
    float *r = ranks + row * cols;
    // i + 1 <= cols < 2^32; the float conversion rounds to nearest like the CPU's.
    for (unsigned i = threadIdx.x; i < cols; i += blockDim.x)
      r[sorted[i]] = static_cast<float>(i + 1);
    __syncthreads();
  }
}

//===----------------------------------------------------------------------===//
// Row reductions
//===----------------------------------------------------------------------===//

/// out[row] = the row's sum or maximum: one value per row (the kernels read element i's at
/// i / cols). One block (a power of two of threads, at most 256) per row.
///  - sum: thread t adds columns t, t + blockDim, ... in order in f64, then a fixed shared-
///    memory tree adds the partials; the f64 total is rounded to f32 once. Selection.cpp's
///    rowReduce adds in this order (blockDim as GpuSelection::rowReduce picks it), so the CPU
///    gives the same bits; the same keys give the same bits on every run. No float atomics.
///  - max: NaN (0x7FC00000, the CPU's NAN) if any key is NaN, else the greatest key; of equal
///    keys (+0 and -0) the one at the lowest column, as the CPU's sequential std::max keeps.
extern "C" __global__ void __launch_bounds__(256)
mergec_row_reduce(const float *__restrict__ keys, float *__restrict__ out,
                  unsigned long long rows, unsigned long long cols, unsigned sum) {
  __shared__ double partSum[256];
  __shared__ float partMax[256];
  __shared__ unsigned long long partIndex[256];
  __shared__ int anyNan;
  const unsigned tid = threadIdx.x;
  for (unsigned long long row = blockIdx.x; row < rows; row += gridDim.x) {
    const float *x = keys + row * cols;
    float result;
    if (sum) {
      double acc = 0.0;
      for (unsigned long long c = tid; c < cols; c += blockDim.x)
        acc += static_cast<double>(x[c]);
      partSum[tid] = acc;
      __syncthreads();
      for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
        if (tid < s)
          partSum[tid] += partSum[tid + s];
        __syncthreads();
      }
      result = static_cast<float>(partSum[0]);
    } else {
      if (tid == 0)
        anyNan = 0;
      __syncthreads();
      float best = __uint_as_float(0xFF800000u); // -inf, like the CPU's start
      unsigned long long bestIndex = ~0ull;
      bool nan = false;
      for (unsigned long long c = tid; c < cols; c += blockDim.x) {
        float v = x[c];
        if (v != v)
          nan = true;
        else if (v > best) {
          best = v;
          bestIndex = c;
        }
      }
      if (nan)
        anyNan = 1;
      partMax[tid] = best;
      partIndex[tid] = bestIndex;
      __syncthreads();
      for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
        if (tid < s) {
          float o = partMax[tid + s];
          unsigned long long oi = partIndex[tid + s];
          if (o > partMax[tid] || (o == partMax[tid] && oi < partIndex[tid])) {
            partMax[tid] = o;
            partIndex[tid] = oi;
          }
        }
        __syncthreads();
      }
      result = anyNan ? __uint_as_float(0x7FC00000u) : partMax[0];
    }
    if (tid == 0)
      out[row] = result;
    __syncthreads();
  }
}

/// Model-scope top-k (Selection.h's ModelTopK counts 16-bit digits): a 65536-bin histogram of
/// magnitude bits [shift, shift + 16) over the keys whose bits 31..16 equal `pref` (when
/// `filter`), added into hist; with `zeros`, also counts zero keys (of all keys). The block
/// keeps its counters as 16-bit halves of 32768 shared words (128 KiB of dynamic shared
/// memory) and adds them into hist every kFlush keys, before a half could overflow; integer
/// atomics only, so the counts are exact.
extern "C" __global__ void __launch_bounds__(kThreads)
mergec_sel_hist16(const float *__restrict__ keys, unsigned long long n, unsigned long long chunk,
                  unsigned shift, unsigned filter, unsigned pref,
                  unsigned long long *__restrict__ hist, unsigned long long *__restrict__ zeros) {
  MERGEC_DYNAMIC_SHARED(unsigned, sh);
  __shared__ unsigned shZeros;
  constexpr unsigned kWords = 32768;
  constexpr unsigned long long kFlush = 65535ull / kThreads * kThreads;
  const unsigned tid = threadIdx.x;
  for (unsigned w = tid; w < kWords; w += kThreads)
    sh[w] = 0;
  if (tid == 0)
    shZeros = 0;
  __syncthreads();
  unsigned long long start, end;
  blockRange(n, chunk, start, end);
  for (unsigned long long segment = start; segment < end; segment += kFlush) {
    unsigned long long segmentEnd = segment + kFlush < end ? segment + kFlush : end;
    unsigned myZeros = 0;
    for (unsigned long long i = segment + tid; i < segmentEnd; i += kThreads) {
      unsigned k = keyOf(keys[i], 0);
      myZeros += k == 0;
      if (filter && (k >> 16) != pref)
        continue;
      unsigned digit = (k >> shift) & 0xFFFFu;
      atomicAdd(&sh[digit >> 1], 1u << ((digit & 1u) * 16));
    }
    if (zeros) {
      myZeros = __reduce_add_sync(kFull, myZeros);
      if (laneId() == 0 && myZeros)
        atomicAdd(&shZeros, myZeros);
    }
    __syncthreads();
    for (unsigned w = tid; w < kWords; w += kThreads) {
      unsigned v = sh[w];
      if (v) {
        if (v & 0xFFFFu)
          atomicAdd(&hist[2 * w], (unsigned long long)(v & 0xFFFFu));
        if (v >> 16)
          atomicAdd(&hist[2 * w + 1], (unsigned long long)(v >> 16));
        sh[w] = 0;
      }
    }
    __syncthreads();
  }
  if (zeros && tid == 0 && shZeros)
    atomicAdd(zeros, (unsigned long long)shZeros);
}
