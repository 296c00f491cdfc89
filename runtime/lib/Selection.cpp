//===- Selection.cpp - exact order statistics over a select phase's keys ---===//
#include "mergec/Runtime/Selection.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/RowSort.h"
#include "mergec/Runtime/ThreadPool.h"
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <utility>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace mergec::rt {

uint32_t orderedKey(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

float fromOrderedKey(uint32_t k) {
  uint32_t u = (k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

std::pair<int64_t, int64_t> topkBand(int64_t n, int64_t population, double density, double skip) {
  // Python's int(density * n): the product in f64, truncated.
  int64_t k = density >= 1 ? population
                           : static_cast<int64_t>(density * static_cast<double>(population));
  k = std::clamp<int64_t>(k, 0, population);
  int64_t s = static_cast<int64_t>(skip * static_cast<double>(n));
  if (s + k > n)
    s = n - k;
  s = std::max<int64_t>(s, 0);
  return {s, s + k};
}

namespace {

uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

/// |x| as bits: integer order is magnitude order, NaN above inf.
uint32_t magnitudeKey(float f) { return bitsOf(f) & 0x7FFFFFFFu; }

/// The key orders as types, so the passes' templates inline them (a function pointer would
/// be an indirect call per key).
struct ByMagnitude {
  uint32_t operator()(float f) const { return magnitudeKey(f); }
};
struct ByValue {
  uint32_t operator()(float f) const { return orderedKey(f); }
};


/// The states of one kind that passes hand to their chunks, kept from pass to pass (released
/// by StateSet), so their histograms are not allocated and page-faulted anew for every tensor:
/// about one per thread. A state taken again is reset().
template <typename State> class Spares {
public:
  static std::unique_ptr<State> take() {
    {
      std::lock_guard<std::mutex> lock(mutex());
      if (!list().empty()) {
        std::unique_ptr<State> s = std::move(list().back());
        list().pop_back();
        s->reset();
        return s;
      }
    }
    return std::make_unique<State>();
  }
  static void give(std::unique_ptr<State> s) {
    std::lock_guard<std::mutex> lock(mutex());
    list().push_back(std::move(s));
  }

private:
  static std::mutex &mutex() {
    static std::mutex m;
    return m;
  }
  static std::vector<std::unique_ptr<State>> &list() {
    static std::vector<std::unique_ptr<State>> l;
    return l;
  }
};

/// The states a pass used; they go back to Spares when the set goes.
template <typename State> struct StateSet {
  std::vector<std::unique_ptr<State>> all;
  StateSet() = default;
  StateSet(StateSet &&) = default;
  StateSet &operator=(StateSet &&) = delete;
  ~StateSet() {
    for (auto &s : all)
      if (s)
        Spares<State>::give(std::move(s));
  }
};

/// Runs body(state, c) for chunks c in [0, chunks), in parallel on `pool` (serially without
/// one), each chunk with a State no other running chunk holds: a chunk takes an idle one or a
/// spare, so there are about as many as threads; state.scratch holds at least `scratch`
/// floats. Returns them all for the caller to merge (by integer sums, so the result does not
/// depend on which state saw which chunk).
template <typename State, typename Body>
StateSet<State> overChunkIndices(ThreadPool *pool, size_t chunks, int64_t scratch, Body body) {
  std::mutex mutex;
  StateSet<State> states;
  std::vector<State *> idle;
  auto run = [&](size_t c) {
    State *state;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (idle.empty()) {
        states.all.push_back(Spares<State>::take());
        state = states.all.back().get();
      } else {
        state = idle.back();
        idle.pop_back();
      }
    }
    if (state->scratch.size() < static_cast<size_t>(scratch))
      state->scratch.resize(static_cast<size_t>(scratch));
    body(*state, c);
    std::lock_guard<std::mutex> lock(mutex);
    idle.push_back(state);
  };
  if (pool && chunks > 1)
    pool->parallelFor(chunks, run);
  else
    for (size_t c = 0; c < chunks; ++c)
      run(c);
  return states;
}

/// overChunkIndices over the chunks of `keys`: body(state, c, keys of chunk c, their count).
template <typename State, typename Body>
StateSet<State> overChunks(ThreadPool *pool, const KeyChunks &keys, Body body) {
  return overChunkIndices<State>(
      pool, keys.chunks(), keys.needsScratch() ? keys.chunkSize() : 0,
      [&](State &state, size_t c) {
        body(state, c, keys.get(c, state.scratch.data()), keys.end(c) - keys.begin(c));
      });
}

/// A pass's state that needs only the chunk scratch.
struct ScratchOnly {
  std::vector<float> scratch;
  void reset() {}
};

/// 65536 counters and the range [first, last] outside which they are all zero. A tensor's keys
/// crowd into a few hundred of them (a few exponents), and most tensors are small: clearing,
/// merging and scanning the range instead of all 65536 is what a selection of a 512-element
/// tensor costs, not 1.5 MB of memory traffic.
struct Bins {
  std::vector<int64_t> count = std::vector<int64_t>(65536);
  uint32_t first = 65536, last = 0; ///< first > last: all zero

  void widen(uint32_t lo, uint32_t hi) {
    first = std::min(first, lo);
    last = std::max(last, hi);
  }
  void add(uint32_t b) {
    ++count[b];
    widen(b, b);
  }
  void add(const Bins &other) {
    if (other.first > other.last)
      return;
    widen(other.first, other.last);
    for (uint32_t b = other.first; b <= other.last; ++b)
      count[b] += other.count[b];
  }
  void clear() {
    if (first <= last)
      std::fill(count.begin() + first, count.begin() + last + 1, 0);
    first = 65536;
    last = 0;
  }
};

/// Pass one: a histogram of the keys' bits 31..16 and how many keys have magnitude 0.
struct HighCounts {
  Bins hist;
  int64_t zeros = 0;
  std::vector<float> scratch;
  void reset() {
    hist.clear();
    zeros = 0;
  }
};

/// The smallest and largest key of x[0..n) (n > 0) by magnitude, or (`ordered`) by value, in
/// a loop that vectorizes (built for AVX2 too: SSE2 has no unsigned 32-bit minimum). Plain
/// out-parameters: clang does not emit template code (std::pair) only target_clones use.
__attribute__((target_clones("avx2", "default"))) void keyBitsRange(const float *x, int64_t n,
                                                                   bool ordered, uint32_t *lo,
                                                                   uint32_t *hi) {
  uint32_t a = 0xFFFFFFFFu, b = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t k = ordered ? orderedKey(x[i]) : magnitudeKey(x[i]);
    a = k < a ? k : a;
    b = k > b ? k : b;
  }
  *lo = a;
  *hi = b;
}
void keyRange(ByMagnitude, const float *x, int64_t n, uint32_t *lo, uint32_t *hi) {
  keyBitsRange(x, n, false, lo, hi);
}
void keyRange(ByValue, const float *x, int64_t n, uint32_t *lo, uint32_t *hi) {
  keyBitsRange(x, n, true, lo, hi);
}

/// Pass one's work on x[0..n): the keys' bits 31..16 counted into `bins`; returns how many
/// keys have magnitude 0.
template <typename KeyFn>
int64_t countHighBits(Bins &bins, const float *x, int64_t n, KeyFn key) {
  if (n == 0)
    return 0;
  uint32_t lo, hi;
  keyRange(key, x, n, &lo, &hi);
  bins.widen(lo >> 16, hi >> 16);
  int64_t *count = bins.count.data();
  int64_t zeros = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t k = key(x[i]);
    ++count[k >> 16];
    zeros += magnitudeKey(x[i]) == 0;
  }
  return zeros;
}

/// Pass one over the keys; the counts merged into the first state (there is one: n > 0).
template <typename KeyFn>
StateSet<HighCounts> countHigh(ThreadPool *pool, const KeyChunks &keys, KeyFn key) {
  auto states = overChunks<HighCounts>(pool, keys, [&](HighCounts &s, size_t, const float *x,
                                                       int64_t n) {
    s.zeros += countHighBits(s.hist, x, n, key);
  });
  HighCounts &total = *states.all.front();
  for (size_t j = 1; j < states.all.size(); ++j) {
    total.hist.add(states.all[j]->hist);
    total.zeros += states.all[j]->zeros;
  }
  return states;
}

/// hit(i, magnitude bits) for each i in [0, n) whose magnitude's bits 31..16 are `bucket`, in
/// order. A bucket holds a few percent of the keys at most, so blocks of 16 are first checked in
/// a loop that vectorizes (most have none) and only a block with one is scanned again.
/// (Two buckets at once, for the two cuts of a band: hit(w, i, bits) for bucket w, where a key
/// in both when they are one bucket is hit for each; kNoBucket for a cut not asked for.)
constexpr uint32_t kNoBucket = 0xFFFFFFFFu;
template <typename Hit>
void forBucketKeys(const float *x, int64_t n, uint32_t bucket0, uint32_t bucket1, Hit hit) {
  auto visit = [&](int64_t i) {
    uint32_t k = magnitudeKey(x[i]);
    if ((k >> 16) == bucket0)
      hit(0, i, k);
    if ((k >> 16) == bucket1)
      hit(1, i, k);
  };
  constexpr int64_t kBlock = 16;
  int64_t whole = n / kBlock * kBlock;
  for (int64_t b = 0; b < whole; b += kBlock) {
    // A block of fixed length: the check is a few vector compares, no loop of its own.
    uint32_t any = 0;
    for (int64_t i = 0; i < kBlock; ++i) {
      uint32_t high = magnitudeKey(x[b + i]) >> 16;
      any |= static_cast<uint32_t>(high == bucket0) | static_cast<uint32_t>(high == bucket1);
    }
    if (any != 0)
      for (int64_t i = b; i < b + kBlock; ++i)
        visit(i);
  }
  for (int64_t i = whole; i < n; ++i)
    visit(i);
}
template <typename Hit> void forBucketKeys(const float *x, int64_t n, uint32_t bucket, Hit hit) {
  forBucketKeys(x, n, bucket, kNoBucket, [&](int, int64_t i, uint32_t k) { hit(i, k); });
}

/// Histograms of bits 15..0 inside up to two buckets of bits 31..16.
struct LowCounts {
  Bins hist[2];
  std::vector<float> scratch;
  void reset() {
    for (auto &h : hist)
      h.clear();
  }
};

/// Histogram w of a pass's states, summed into the first state's (there is one: n > 0).
const Bins &mergedLow(const StateSet<LowCounts> &states, int w) {
  Bins &total = states.all.front()->hist[w];
  for (size_t j = 1; j < states.all.size(); ++j)
    total.add(states.all[j]->hist[w]);
  return total;
}

/// The histogram bucket (from the top) where the m-th largest falls; `above` gains the counts
/// of the buckets above it.
uint32_t bucketOf(const std::vector<int64_t> &hist, int64_t m, int64_t &above,
                  uint32_t top = 65535) {
  uint32_t b = std::min<uint32_t>(top, 65535);
  for (; b > 0 && above + hist[b] < m; --b)
    above += hist[b];
  return b;
}
uint32_t bucketOf(const Bins &bins, int64_t m, int64_t &above) {
  return bucketOf(bins.count, m, above, bins.first <= bins.last ? bins.last : 0);
}

/// A key of descending rank `rank` (1-based; 0: none) in a key order: its value and how many
/// keys are strictly greater. After pass one, `bucket` holds its bits 31..16.
struct Ranked {
  int64_t rank = 0;
  uint32_t value = 0;
  int64_t above = 0;
  uint32_t bucket = 0;
};

/// Each cut's bucket from pass one.
void placeInBuckets(const HighCounts &high, Ranked *cuts, int count) {
  for (int w = 0; w < count; ++w) {
    Ranked &cut = cuts[w];
    if (cut.rank > 0)
      cut.bucket = bucketOf(high.hist, cut.rank, cut.above);
  }
}

/// The flat index of the r-th (1-based) key whose magnitude bits equal `value`, from per-chunk
/// counts (column w of 2): the chunk where the running count reaches r, scanned.
int64_t indexOfEqual(const KeyChunks &keys, const std::vector<int64_t> &counts, int w,
                     uint32_t value, int64_t r) {
  for (size_t c = 0; c < keys.chunks(); ++c) {
    int64_t here = counts[c * 2 + static_cast<size_t>(w)];
    if (r > here) {
      r -= here;
      continue;
    }
    std::vector<float> scratch(keys.needsScratch() ? static_cast<size_t>(keys.chunkSize()) : 0);
    const float *x = keys.get(c, scratch.data());
    for (int64_t i = 0, n = keys.end(c) - keys.begin(c); i < n; ++i)
      if (magnitudeKey(x[i]) == value && --r == 0)
        return keys.begin(c) + i;
    break;
  }
  throw RuntimeError("internal: a top-k tie not found");
}

/// Per chunk (column w of 2), how many keys have magnitude bits equal to values[w], for the
/// cuts `want` names.
void countEqualPerChunk(ThreadPool *pool, const KeyChunks &keys, const uint32_t values[2],
                        const bool want[2], std::vector<int64_t> &counts) {
  counts.resize(keys.chunks() * 2);
  overChunks<ScratchOnly>(pool, keys, [&](ScratchOnly &, size_t c, const float *x, int64_t n) {
    for (int w = 0; w < 2; ++w) {
      if (!want[w])
        continue;
      int64_t equal = 0;
      for (int64_t i = 0; i < n; ++i)
        equal += magnitudeKey(x[i]) == values[w];
      counts[c * 2 + static_cast<size_t>(w)] = equal;
    }
  });
}

/// The keys of ranks cuts[0..count) in a key order: pass one, then a pass histogramming bits
/// 15..0 inside the cuts' buckets.
template <typename KeyFn>
void rankedValues(ThreadPool *pool, const KeyChunks &keys, KeyFn key, Ranked *cuts, int count) {
  auto high = countHigh(pool, keys, key);
  placeInBuckets(*high.all.front(), cuts, count);
  bool any = false;
  for (int w = 0; w < count; ++w)
    any = any || cuts[w].rank > 0;
  if (!any)
    return;
  auto low = overChunks<LowCounts>(pool, keys, [&](LowCounts &s, size_t, const float *x,
                                                   int64_t n) {
    for (int w = 0; w < count; ++w) {
      if (cuts[w].rank <= 0)
        continue;
      Bins &hist = s.hist[w];
      uint32_t b = cuts[w].bucket;
      for (int64_t i = 0; i < n; ++i) {
        uint32_t k = key(x[i]);
        if ((k >> 16) == b)
          hist.add(k & 0xFFFF);
      }
    }
  });
  for (int w = 0; w < count; ++w)
    if (cuts[w].rank > 0)
      cuts[w].value = (cuts[w].bucket << 16) | bucketOf(mergedLow(low, w), cuts[w].rank,
                                                        cuts[w].above);
}

/// Keys of a boundary bucket that pass two keeps, (bits 15..0) << 16 | offset in the chunk, so
/// that the boundary's tie counts and index need no third pass; past this many (8 MiB, twice
/// that with the vectors' growth: Executor's scratchBytes counts it) it stops keeping them and
/// a third pass counts.
constexpr int64_t kMaxKeptBucketKeys = int64_t{1} << 21;

} // namespace

KeyChunks::KeyChunks(int64_t n, int64_t chunkSize, bool needsScratch, Fill fill)
    : n_(n), chunk_(std::max<int64_t>(chunkSize, 1)), needsScratch_(needsScratch),
      fill_(std::move(fill)) {}

KeyChunks KeyChunks::buffer(const float *keys, int64_t n, int64_t chunkSize) {
  return KeyChunks(n, chunkSize, false, [keys, chunkSize](size_t c, float *) {
    return keys + static_cast<int64_t>(c) * chunkSize;
  });
}

namespace {

/// Pass one of several top-k jobs: each job's high-bits histogram and zero count.
struct JobHighCounts {
  std::vector<Bins> hist;
  std::vector<int64_t> zeros;
  std::vector<float> scratch;
  void reset() {
    for (Bins &b : hist)
      b.clear();
    std::fill(zeros.begin(), zeros.end(), 0);
  }
  void size(size_t jobs) {
    if (hist.size() < jobs)
      hist.resize(jobs);
    zeros.resize(std::max(zeros.size(), jobs));
  }
};

/// Pass two of several top-k jobs: each job's low-bits histograms of its two cuts' buckets.
struct JobLowCounts {
  std::vector<std::array<Bins, 2>> hist;
  std::vector<float> scratch;
  void reset() {
    for (auto &cuts : hist)
      for (Bins &b : cuts)
        b.clear();
  }
  void size(size_t jobs) {
    if (hist.size() < jobs)
      hist.resize(jobs);
  }
};

/// The sampled path's cut of a job: the band of keys [lo, hi] it keeps while counting the
/// keys above it, chosen from a sample so that the cut's key falls inside. A cut the sample
/// does not want has an empty band and no room, so its check fails if the exact counts want it.
struct SampledCut {
  uint32_t lo = 0x7FFFFFFFu, hi = 0x7FFFFFFEu; ///< lo > hi: nothing kept (a cut not wanted)
  int64_t sampled = 0;                         ///< the sample's keys in the band
};

/// What countAroundBands finds in one chunk of one job's keys: per cut, the keys above its
/// band and the offsets of those in it (room for the chunk and 8 more); the keys of magnitude
/// 0.
struct AroundBands {
  int64_t above[2] = {0, 0}, zeros = 0, inside[2] = {0, 0};
  uint32_t *offsets[2];
};

/// countAroundBands for keys x[from..n), one by one: offsets stored always, counted if inside.
void countAroundBandsPlain(const float *x, int64_t from, int64_t n, const int32_t lo[2],
                           const int32_t hi[2], AroundBands &r) {
  for (int64_t i = from; i < n; ++i) {
    int32_t k = static_cast<int32_t>(bitsOf(x[i]) & 0x7FFFFFFFu);
    r.zeros += k == 0;
    for (int w = 0; w < 2; ++w) {
      r.above[w] += k > hi[w];
      r.offsets[w][r.inside[w]] = static_cast<uint32_t>(i);
      r.inside[w] += k >= lo[w] && k <= hi[w];
    }
  }
}

#if defined(__x86_64__)
/// Lane numbers of the set bits of each 8-bit mask, in order: a left-packing shuffle.
constexpr std::array<std::array<uint8_t, 8>, 256> kPackLanes = [] {
  std::array<std::array<uint8_t, 8>, 256> t{};
  for (unsigned m = 0; m < 256; ++m) {
    unsigned c = 0;
    for (unsigned b = 0; b < 8; ++b)
      if ((m >> b) & 1)
        t[m][c++] = static_cast<uint8_t>(b);
  }
  return t;
}();

__attribute__((target("avx2,popcnt"))) void countAroundBandsAvx2(const float *x, int64_t n,
                                                                 const int32_t lo[2],
                                                                 const int32_t hi[2],
                                                                 AroundBands &r) {
  const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF), zero = _mm256_setzero_si256();
  const __m256i step = _mm256_set1_epi32(8);
  __m256i l[2], h[2], c[2], cz = zero; // 32-bit lane counts: a chunk is under 2^31 keys
  for (int w = 0; w < 2; ++w) {
    l[w] = _mm256_set1_epi32(lo[w]);
    h[w] = _mm256_set1_epi32(hi[w]);
    c[w] = zero;
  }
  __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  int64_t whole = n / 8 * 8;
  for (int64_t i = 0; i < whole; i += 8) {
    __m256i k = _mm256_and_si256(
        _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x + i)), magnitude);
    cz = _mm256_sub_epi32(cz, _mm256_cmpeq_epi32(k, zero));
    for (int w = 0; w < 2; ++w) {
      __m256i above = _mm256_cmpgt_epi32(k, h[w]);
      c[w] = _mm256_sub_epi32(c[w], above);
      // In the band: neither below lo (lo > k) nor above hi; the offsets of those packed to
      // the left and stored whole, the count moved on by how many.
      __m256i outside = _mm256_or_si256(_mm256_cmpgt_epi32(l[w], k), above);
      unsigned in =
          ~static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(outside))) & 0xFF;
      __m256i lanes = _mm256_cvtepu8_epi32(
          _mm_loadl_epi64(reinterpret_cast<const __m128i *>(kPackLanes[in].data())));
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(r.offsets[w] + r.inside[w]),
                          _mm256_permutevar8x32_epi32(index, lanes));
      r.inside[w] += __builtin_popcount(in);
    }
    index = _mm256_add_epi32(index, step);
  }
  alignas(32) int32_t lanes[3][8];
  _mm256_store_si256(reinterpret_cast<__m256i *>(lanes[0]), c[0]);
  _mm256_store_si256(reinterpret_cast<__m256i *>(lanes[1]), c[1]);
  _mm256_store_si256(reinterpret_cast<__m256i *>(lanes[2]), cz);
  for (int t = 0; t < 8; ++t) {
    r.above[0] += lanes[0][t];
    r.above[1] += lanes[1][t];
    r.zeros += lanes[2][t];
  }
  countAroundBandsPlain(x, whole, n, lo, hi, r);
}
#endif

/// Whether countAroundBands may use AVX2 (allowSimdBandCounting: tests run the plain loop too).
std::atomic<bool> simdBandCounting{true};

/// One chunk x[0..n) of one job's keys against its cuts' bands [lo[w], hi[w]] (lo > hi: an
/// empty band): the keys above each band and the offsets of those inside, and the keys of
/// magnitude 0. Magnitude keys are below 2^31: signed compares of 32-bit lanes. AVX2 where the
/// CPU has it (compares, a mask move and a packing shuffle per 8 keys, no branch: compilers
/// do not make those from a loop), else a plain loop.
void countAroundBands(const float *x, int64_t n, const int32_t lo[2], const int32_t hi[2],
                      AroundBands &r) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
  if (avx2 && simdBandCounting.load(std::memory_order_relaxed))
    return countAroundBandsAvx2(x, n, lo, hi, r);
#endif
  countAroundBandsPlain(x, 0, n, lo, hi, r);
}

/// Where the keys inside a cut's band go: its room of (~key << 32 | flat index) pairs, so that
/// ascending order is the band's order, the room's size, and how many keys the chunks found so
/// far (past the size they are counted, not stored: the caller's check then fails).
struct BandRoom {
  uint64_t *keys = nullptr;
  int64_t size = 0;
  std::atomic<int64_t> *filled = nullptr;
};

/// countAroundBands over one chunk x[0..count) whose first key has flat index `begin`, the
/// keys inside each band stored at the next free place of its cut's room (the order of chunks
/// does not matter: a selection's result does not depend on it). Returns the counts.
AroundBands keepAroundBands(const float *x, int64_t count, int64_t begin, const int32_t lo[2],
                            const int32_t hi[2], const BandRoom room[2]) {
  thread_local std::vector<uint32_t> offsets[2];
  for (auto &o : offsets)
    o.resize(static_cast<size_t>(count + 8));
  AroundBands r;
  r.offsets[0] = offsets[0].data();
  r.offsets[1] = offsets[1].data();
  countAroundBands(x, count, lo, hi, r);
  for (int w = 0; w < 2; ++w) {
    if (r.inside[w] == 0)
      continue;
    int64_t at = room[w].filled->fetch_add(r.inside[w]);
    if (at + r.inside[w] > room[w].size)
      continue;
    uint64_t *to = room[w].keys + at;
    for (int64_t q = 0; q < r.inside[w]; ++q) {
      uint32_t i = offsets[w][static_cast<size_t>(q)];
      to[q] = uint64_t{~magnitudeKey(x[i])} << 32 | static_cast<uint64_t>(begin + i);
    }
  }
  return r;
}

/// How many chunks the sampled path computes first, spread evenly over the tensor (all of a
/// tensor of fewer); their keys are kept for the counting pass, not computed twice.
constexpr size_t kSampleChunks = 8;
/// How many of x[0..n)'s magnitude keys exceed `bits` (below 2^31: a signed compare); a
/// loop that vectorizes, built for AVX2 too where the CPU has it.
__attribute__((target_clones("avx2", "default"))) int64_t countAbove(const float *x, int64_t n,
                                                                    int32_t bits) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i)
    count += static_cast<int32_t>(bitsOf(x[i]) & 0x7FFFFFFFu) > bits;
  return count;
}

/// The standard error of a sample's estimate of a share from the shares its S (> 1) chunks
/// see (share[i] of the chunk's keys): how much the chunks disagree, which for a sample of
/// whole chunks (neighbouring rows) is what it may be off by when a tensor's rows differ. The
/// binomial error of the pooled sample assumes keys drawn independently.
double chunkSpread(const double *share, size_t chunks) {
  double S = static_cast<double>(chunks), sum = 0, squares = 0;
  for (size_t i = 0; i < chunks; ++i) {
    sum += share[i];
    squares += share[i] * share[i];
  }
  double mean = sum / S;
  return std::sqrt(std::max(0.0, (squares - S * mean * mean) / (S - 1)) / S);
}

/// The band of keys around sample rank t (1-based, |key| descending) wide enough that the
/// tensor's key of the matching rank falls in it unless the sample misleads: `margin` sample
/// ranks either side, widened to whole 16-bit buckets of the sample's histogram, and to every
/// key beyond where it reaches the sample's largest or smallest bucket. `sampled`: the
/// sample's keys inside.
SampledCut bandAround(const Bins &sample, int64_t m, double t, double margin) {
  SampledCut cut;
  int64_t top = std::clamp<int64_t>(static_cast<int64_t>(std::floor(t - margin)), 1, m);
  int64_t bottom = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(t + margin)), 1, m);
  int64_t above = 0;
  uint32_t hiBucket = bucketOf(sample, top, above);
  above = 0;
  uint32_t loBucket = bucketOf(sample, bottom, above);
  cut.hi = hiBucket >= sample.last ? 0x7FFFFFFFu : (hiBucket << 16) | 0xFFFF;
  cut.lo = loBucket <= sample.first ? 0 : loBucket << 16;
  for (uint32_t b = loBucket; b <= hiBucket; ++b)
    cut.sampled += sample.count[b];
  return cut;
}

/// topkBoundaries in one counting pass where a sample tells where the boundaries are. The
/// keys of a few chunks (kSampleChunks, evenly spread; all of a small tensor's) estimate each
/// cut's key; the pass then counts, per job, the keys above a band around it and keeps the
/// keys inside with their flat indices; the boundary is the right one of those by (|key|
/// descending, index ascending), a selection over the band alone. Each band is checked
/// against the exact counts: where the sample misled (a cut's key outside its band, or more
/// keys in it than its room), the job's boundaries are left to the two counting passes
/// (countedBoundaries), which find the same ones. Returns the jobs left to them. What this
/// saves over those passes is the second computation of every key (a second read of the
/// inputs) and pass one's histogram update per key (the sample's keys aside).
std::vector<size_t> sampledBoundaries(ThreadPool *pool, std::vector<TopKJob> &jobs) {
  const KeyChunks &first = *jobs.front().keys;
  int64_t n = first.size();
  size_t J = jobs.size(), chunks = first.chunks();
  std::vector<size_t> all(J);
  std::iota(all.begin(), all.end(), size_t{0});
  // Flat indices kept in 32 bits, a chunk's offsets and lane counts in 31.
  if (n >= (int64_t{1} << 32) || first.chunkSize() >= (int64_t{1} << 31))
    return all;
  bool scratch = false;
  for (const TopKJob &job : jobs)
    scratch = scratch || job.keys->needsScratch();
  // The sample: chunks (2i + 1) * chunks / 2S, every job's keys of them kept (held keys by
  // pointer, computed ones copied, into room kept between calls) and histogrammed.
  size_t S = std::min(chunks, kSampleChunks);
  std::vector<size_t> sampled(S), sampleOf(chunks, S);
  for (size_t i = 0; i < S; ++i) {
    sampled[i] = (2 * i + 1) * chunks / (2 * S);
    sampleOf[sampled[i]] = i;
  }
  thread_local std::vector<std::vector<float>> callers;
  std::vector<std::vector<float>> &room = callers; // the calling thread's, not each worker's
  if (room.size() < S * J)
    room.resize(S * J);
  std::vector<const float *> kept(S * J);
  bool whole = S == chunks; // the sample is every key: its ranks are the tensor's
  auto sample = overChunkIndices<JobHighCounts>(
      pool, S, scratch ? first.chunkSize() : 0, [&](JobHighCounts &st, size_t i) {
        st.size(J);
        size_t c = sampled[i];
        int64_t m = first.end(c) - first.begin(c);
        for (size_t j = 0; j < J; ++j) {
          const float *x = jobs[j].keys->get(c, st.scratch.data());
          if (x == st.scratch.data()) {
            room[i * J + j].assign(x, x + m);
            x = room[i * J + j].data();
          }
          kept[i * J + j] = x;
          st.zeros[j] += countHighBits(st.hist[j], x, m, ByMagnitude{});
        }
      });
  JobHighCounts &counted = *sample.all.front();
  for (size_t k = 1; k < sample.all.size(); ++k)
    for (size_t j = 0; j < J; ++j) {
      counted.hist[j].add(sample.all[k]->hist[j]);
      counted.zeros[j] += sample.all[k]->zeros[j];
    }
  int64_t m = 0;
  for (size_t c : sampled)
    m += first.end(c) - first.begin(c);
  double scale = static_cast<double>(n) / static_cast<double>(m);
  // Each job's cuts as the sample sees them: their ranks scaled from the sample (the
  // population, the non-zero keys, too), and where the sample is not every key, how much its
  // chunks disagree about the share above each cut's bucket (one parallel pass over them).
  std::vector<double> at(J * 2, 0.0);     // cut t's sample rank; 0: not wanted
  std::vector<int32_t> cutBits(J * 2, 0); // the top of cut t's bucket in the sample
  for (size_t j = 0; j < J; ++j) {
    const TopKJob &job = jobs[j];
    int64_t population =
        job.nonzero ? std::clamp<int64_t>(
                          std::llround(static_cast<double>(m - counted.zeros[j]) * scale), 0, n)
                    : n;
    auto [s, e] = topkBand(n, population, job.density, job.skip);
    int64_t ranks[2] = {s, e};
    for (size_t w = 0; w < 2; ++w) {
      if (ranks[w] <= 0)
        continue;
      at[j * 2 + w] = static_cast<double>(ranks[w]) / scale;
      int64_t above = 0;
      uint32_t bucket = bucketOf(counted.hist[j],
                                 std::clamp<int64_t>(std::llround(at[j * 2 + w]), 1, m), above);
      cutBits[j * 2 + w] = static_cast<int32_t>(bucket << 16 | 0xFFFF);
    }
  }
  std::vector<double> share(whole ? 0 : S * J * 2, 0.0); // (cut, sample chunk)
  if (!whole) {
    auto shares = [&](size_t q) {
      size_t i = q / J, j = q % J, c = sampled[i];
      int64_t keys = first.end(c) - first.begin(c);
      for (size_t w = 0; w < 2; ++w)
        if (at[j * 2 + w] > 0)
          share[(j * 2 + w) * S + i] =
              static_cast<double>(countAbove(kept[i * J + j], keys, cutBits[j * 2 + w])) /
              static_cast<double>(keys);
    };
    if (pool)
      pool->parallelFor(S * J, shares);
    else
      for (size_t q = 0; q < S * J; ++q)
        shares(q);
  }
  // Each cut's band, and room for the keys it will hold: what the sample says and half as
  // much again.
  std::vector<std::array<SampledCut, 2>> bands(J);
  std::vector<int64_t> room0(J * 2 + 1, 0); // band t's room starts at room0[t]
  for (size_t t = 0; t < J * 2; ++t) {
    int64_t size = 0;
    if (at[t] > 0) {
      double p = at[t] / static_cast<double>(m);
      // The larger of eight standard deviations of a random sample's rank and six standard
      // errors from the sample chunks' disagreement (rows that differ), and 0.1 % of the
      // sample. None for every key.
      double margin = 0;
      if (!whole)
        margin = std::max(8.0 * std::sqrt(static_cast<double>(m) * p * (1 - p)),
                          6.0 * chunkSpread(share.data() + t * S, S) * static_cast<double>(m)) +
                 0.001 * static_cast<double>(m) + 1;
      SampledCut &band = bands[t / 2][t % 2];
      band = bandAround(counted.hist[t / 2], m, at[t], margin);
      size = whole ? band.sampled
                   : static_cast<int64_t>(1.5 * static_cast<double>(band.sampled) * scale) +
                         1024;
    }
    room0[t + 1] = room0[t] + size;
  }
  // Bands too full (a crowded bucket: few values): the counting passes, which keep a
  // boundary bucket's keys within a budget of their own.
  if (room0.back() > kMaxTensorBandKeys)
    return all;
  std::unique_ptr<uint64_t[]> band(new uint64_t[static_cast<size_t>(room0.back()) + 1]);
  std::unique_ptr<std::atomic<int64_t>[]> filled(new std::atomic<int64_t>[J * 2]);
  for (size_t t = 0; t < J * 2; ++t)
    filled[t] = 0;
  // The counting pass: per chunk and job, the keys above each band and the zeros, and the
  // keys inside kept in the band's room (no room: the check below sends the job to the
  // counting passes).
  std::vector<int64_t> above(J * 2 * chunks, 0), zeros(J * chunks, 0);
  overChunkIndices<ScratchOnly>(
      pool, chunks, scratch ? first.chunkSize() : 0, [&](ScratchOnly &st, size_t c) {
        int64_t count = first.end(c) - first.begin(c);
        for (size_t j = 0; j < J; ++j) {
          const float *x = sampleOf[c] < S ? kept[sampleOf[c] * J + j]
                                           : jobs[j].keys->get(c, st.scratch.data());
          const auto &cut = bands[j];
          int32_t lo[2] = {static_cast<int32_t>(cut[0].lo), static_cast<int32_t>(cut[1].lo)};
          int32_t hi[2] = {static_cast<int32_t>(cut[0].hi), static_cast<int32_t>(cut[1].hi)};
          BandRoom room[2];
          for (size_t w = 0; w < 2; ++w) {
            size_t t = j * 2 + w;
            room[w] = {band.get() + room0[t], room0[t + 1] - room0[t], &filled[t]};
          }
          AroundBands r = keepAroundBands(x, count, first.begin(c), lo, hi, room);
          zeros[j * chunks + c] = r.zeros;
          for (size_t w = 0; w < 2; ++w)
            above[(j * 2 + w) * chunks + c] = r.above[w];
        }
      });
  // Each job's exact cuts; a cut whose key is in its band is the right band key: found by a
  // selection over the band, the cuts' selections in parallel.
  struct Found {
    int64_t rank = 0, higher = 0; ///< the exact cut, and the keys above its band
    bool checked = true;          ///< false: the cut's key is not in its band, or no room
    RankBoundary boundary;
  };
  std::vector<Found> found(J * 2);
  for (size_t j = 0; j < J; ++j) {
    const TopKJob &job = jobs[j];
    int64_t z = std::accumulate(zeros.begin() + static_cast<ptrdiff_t>(j * chunks),
                                zeros.begin() + static_cast<ptrdiff_t>((j + 1) * chunks),
                                int64_t{0});
    auto [s, e] = topkBand(n, job.nonzero ? n - z : n, job.density, job.skip);
    int64_t ranks[2] = {s, e};
    for (size_t w = 0; w < 2; ++w) {
      size_t t = j * 2 + w;
      Found &f = found[t];
      f.rank = ranks[w];
      if (f.rank <= 0)
        continue;
      f.higher = std::accumulate(above.begin() + static_cast<ptrdiff_t>(t * chunks),
                                 above.begin() + static_cast<ptrdiff_t>((t + 1) * chunks),
                                 int64_t{0});
      int64_t inside = filled[t];
      f.checked = inside <= room0[t + 1] - room0[t] && f.rank > f.higher &&
                  f.rank <= f.higher + inside;
    }
  }
  auto select = [&](size_t t) {
    Found &f = found[t];
    if (f.rank <= 0 || !f.checked)
      return;
    uint64_t *from = band.get() + room0[t], *nth = from + (f.rank - f.higher - 1);
    std::nth_element(from, nth, from + filled[t].load());
    f.boundary.bits = static_cast<double>(~static_cast<uint32_t>(*nth >> 32));
    f.boundary.index = static_cast<double>(*nth & 0xFFFFFFFFu);
  };
  if (pool)
    pool->parallelFor(J * 2, select);
  else
    for (size_t t = 0; t < J * 2; ++t)
      select(t);
  std::vector<size_t> left;
  for (size_t j = 0; j < J; ++j) {
    if (!found[j * 2].checked || !found[j * 2 + 1].checked) {
      left.push_back(j);
      continue;
    }
    jobs[j].hi = found[j * 2].boundary;
    jobs[j].lo = found[j * 2 + 1].boundary;
  }
  return left;
}

/// What a job works out between the passes.
struct JobWork {
  Ranked cuts[2];
  bool want[2] = {false, false};
  bool third[2] = {false, false};
  std::vector<int64_t> counts;             ///< per chunk, per cut: keys equal to its value
  std::vector<std::vector<uint32_t>> kept; ///< per chunk, per cut: its bucket's keys
};

} // namespace

namespace {

/// topkBoundaries by two counting passes (and a third where a boundary bucket holds too many
/// keys to keep): pass one's histogram of the keys' high 16 bits finds each cut's bucket,
/// pass two's of the low 16 bits inside it the cut's key.
void countedBoundaries(ThreadPool *pool, std::vector<TopKJob> &jobs) {
  const KeyChunks &first = *jobs.front().keys;
  int64_t n = first.size();
  size_t J = jobs.size(), chunks = first.chunks();
  // A pass computes every job's keys of a chunk in turn into the state's scratch and counts
  // them: sibling selections (TIES's, one a task vector) share their inputs' chunk (the base
  // model's) from cache, and the passes' hand-out and merges are paid once.
  bool scratch = false;
  for (const TopKJob &job : jobs)
    scratch = scratch || job.keys->needsScratch();
  std::vector<JobWork> work(J);
  {
    auto high = overChunkIndices<JobHighCounts>(
        pool, chunks, scratch ? first.chunkSize() : 0, [&](JobHighCounts &s, size_t c) {
          s.size(J);
          int64_t m = first.end(c) - first.begin(c);
          for (size_t j = 0; j < J; ++j)
            s.zeros[j] += countHighBits(s.hist[j], jobs[j].keys->get(c, s.scratch.data()), m,
                                        ByMagnitude{});
        });
    JobHighCounts &total = *high.all.front();
    for (size_t k = 1; k < high.all.size(); ++k)
      for (size_t j = 0; j < J; ++j) {
        total.hist[j].add(high.all[k]->hist[j]);
        total.zeros[j] += high.all[k]->zeros[j];
      }
    for (size_t j = 0; j < J; ++j) {
      const TopKJob &job = jobs[j];
      JobWork &w = work[j];
      auto [s, e] = topkBand(n, job.nonzero ? n - total.zeros[j] : n, job.density, job.skip);
      w.cuts[0].rank = s;
      w.cuts[1].rank = e;
      for (Ranked &cut : w.cuts)
        if (cut.rank > 0)
          cut.bucket = bucketOf(total.hist[j], cut.rank, cut.above);
      w.want[0] = s > 0;
      w.want[1] = e > 0;
    }
  }
  std::vector<size_t> active;
  for (size_t j = 0; j < J; ++j)
    if (work[j].want[0] || work[j].want[1])
      active.push_back(j);
  if (active.empty())
    return;
  // Pass two: each cut histograms bits 15..0 in its bucket and keeps the bucket's keys of each
  // chunk, from which its counts and tie index follow once the histogram gives its value. (A
  // pass-one flag for buckets of one value would spare this histogram for bf16-like keys, at
  // a second table update per key in pass one for every key: it cost more than it saved.)
  // The jobs share one budget of kept keys.
  bool keep = first.chunkSize() <= 65536; // offsets in 16 bits
  for (size_t j : active) {
    work[j].counts.assign(chunks * 2, 0);
    work[j].kept.resize(keep ? chunks * 2 : 0);
  }
  std::atomic<int64_t> keptTotal{0};
  std::atomic<bool> overflow{!keep};
  auto low = overChunkIndices<JobLowCounts>(
      pool, chunks, scratch ? first.chunkSize() : 0, [&](JobLowCounts &st, size_t c) {
        st.size(J);
        int64_t m = first.end(c) - first.begin(c);
        for (size_t j : active) {
          const float *x = jobs[j].keys->get(c, st.scratch.data());
          JobWork &wk = work[j];
          // Both cuts in one scan of the keys.
          bool keepHere = !overflow.load(std::memory_order_relaxed);
          forBucketKeys(x, m, wk.want[0] ? wk.cuts[0].bucket : kNoBucket,
                        wk.want[1] ? wk.cuts[1].bucket : kNoBucket,
                        [&](int w, int64_t i, uint32_t k) {
                          st.hist[j][static_cast<size_t>(w)].add(k & 0xFFFF);
                          if (keepHere)
                            wk.kept[c * 2 + static_cast<size_t>(w)].push_back(
                                k << 16 | static_cast<uint32_t>(i));
                        });
          if (keepHere) {
            int64_t here = static_cast<int64_t>(wk.kept[c * 2].size() + wk.kept[c * 2 + 1].size());
            if (keptTotal += here; keptTotal > kMaxKeptBucketKeys)
              overflow = true;
          }
        }
      });
  JobLowCounts &lowTotal = *low.all.front();
  for (size_t k = 1; k < low.all.size(); ++k)
    for (size_t j : active)
      for (size_t w = 0; w < 2; ++w)
        lowTotal.hist[j][w].add(low.all[k]->hist[j][w]);
  for (size_t j : active) {
    JobWork &wk = work[j];
    for (int w = 0; w < 2; ++w) {
      Ranked &cut = wk.cuts[w];
      if (!wk.want[w])
        continue;
      cut.value = (cut.bucket << 16) |
                  bucketOf(lowTotal.hist[j][static_cast<size_t>(w)], cut.rank, cut.above);
      if (overflow) {
        wk.third[w] = true;
        continue;
      }
      for (size_t c = 0; c < chunks; ++c) {
        int64_t equal = 0;
        for (uint32_t k : wk.kept[c * 2 + static_cast<size_t>(w)])
          equal += (k >> 16) == (cut.value & 0xFFFF);
        wk.counts[c * 2 + static_cast<size_t>(w)] = equal;
      }
    }
    const KeyChunks &keys = *jobs[j].keys;
    if (wk.third[0] || wk.third[1]) {
      uint32_t values[2] = {wk.cuts[0].value, wk.cuts[1].value};
      countEqualPerChunk(pool, keys, values, wk.third, wk.counts);
    }
    for (int w = 0; w < 2; ++w) {
      const Ranked &cut = wk.cuts[w];
      if (!wk.want[w])
        continue;
      // The (rank - above)-th key equal to the boundary value, in index order, is the last
      // kept.
      RankBoundary &b = w == 0 ? jobs[j].hi : jobs[j].lo;
      b.bits = static_cast<double>(cut.value);
      int64_t r = cut.rank - cut.above;
      if (wk.third[w]) {
        b.index = static_cast<double>(indexOfEqual(keys, wk.counts, w, cut.value, r));
        continue;
      }
      for (size_t c = 0; c < chunks && b.index < 0; ++c) {
        if (int64_t here = wk.counts[c * 2 + static_cast<size_t>(w)]; r > here) {
          r -= here;
          continue;
        }
        for (uint32_t k : wk.kept[c * 2 + static_cast<size_t>(w)])
          if ((k >> 16) == (cut.value & 0xFFFF) && --r == 0) {
            b.index = static_cast<double>(keys.begin(c) + (k & 0xFFFF));
            break;
          }
      }
      if (b.index < 0)
        throw RuntimeError("internal: a top-k tie not found");
    }
  }
}

} // namespace

void allowSimdBandCounting(bool allow) { simdBandCounting = allow; }

void topkBoundaries(ThreadPool *pool, std::vector<TopKJob> &jobs) {
  if (jobs.empty())
    return;
  const KeyChunks &first = *jobs.front().keys;
  int64_t n = first.size();
  for (TopKJob &job : jobs) {
    if (job.keys->size() != n || job.keys->chunkSize() != first.chunkSize())
      throw RuntimeError("internal: sibling top-k jobs over keys of different lengths");
    job.hi = job.lo = RankBoundary{};
  }
  if (n == 0)
    return;
  std::vector<size_t> left = sampledBoundaries(pool, jobs);
  if (left.size() == jobs.size()) {
    countedBoundaries(pool, jobs);
    return;
  }
  if (left.empty())
    return;
  std::vector<TopKJob> rest;
  for (size_t j : left)
    rest.push_back(jobs[j]);
  countedBoundaries(pool, rest);
  for (size_t r = 0; r < left.size(); ++r)
    jobs[left[r]] = rest[r];
}

void topkBoundaries(ThreadPool *pool, const KeyChunks &keys, double density, double skip,
                    bool nonzero, RankBoundary &hi, RankBoundary &lo) {
  std::vector<TopKJob> jobs{TopKJob{&keys, density, skip, nonzero, {}, {}}};
  topkBoundaries(pool, jobs);
  hi = jobs.front().hi;
  lo = jobs.front().lo;
}

void topkBoundaries(const float *keys, int64_t n, double density, double skip, bool nonzero,
                    RankBoundary &hi, RankBoundary &lo) {
  topkBoundaries(nullptr, KeyChunks::buffer(keys, n), density, skip, nonzero, hi, lo);
}

namespace {
/// The standard error of a share estimated from a sample of whole chunks of different sizes:
/// chunk i has size[i] keys, above[i] of them above the cut (a ratio estimate over S > 1
/// clusters). With equal sizes it is chunkSpread's.
double clusterSpread(const std::vector<int64_t> &size, const std::vector<int64_t> &above) {
  double S = static_cast<double>(size.size()), keys = 0, over = 0;
  for (size_t i = 0; i < size.size(); ++i) {
    keys += static_cast<double>(size[i]);
    over += static_cast<double>(above[i]);
  }
  double share = over / keys, squares = 0;
  for (size_t i = 0; i < size.size(); ++i) {
    double d = static_cast<double>(above[i]) - share * static_cast<double>(size[i]);
    squares += d * d;
  }
  return std::sqrt(S / (S - 1) * squares) / keys;
}
} // namespace

ModelTopK::ModelTopK(double density, double skip, bool nonzero)
    : density_(density), skip_(skip), nonzero_(nonzero), high_(65536) {}

namespace {
/// A band's half-width in sample ranks where the sample is m keys and the cut's share above
/// is p: eight standard deviations of a random sample's rank (finishSample widens it where
/// the sampled chunks disagree more).
double sampledMargin(double m, double p) { return 8.0 * std::sqrt(m * p * (1 - p)) + 1; }
} // namespace

bool ModelTopK::sampleFirst(int64_t elements) {
  if (pass_ != 0 || total_ != 0)
    throw RuntimeError("internal: a model-scope top-k sampled after its passes began");
  // The room the bands would take with the binomial margin alone (finishSample's estimate).
  double n = static_cast<double>(elements);
  double m = std::min(n, static_cast<double>(kMaxSampleKeys));
  auto [s, e] = topkBand(elements, elements, density_, skip_);
  double room = 0;
  for (int64_t rank : {s, e})
    if (rank > 0 && m < n)
      room += 1.5 * 2 * sampledMargin(m, static_cast<double>(rank) / n) * (n / m) + 1024;
  if (room > static_cast<double>(kMaxBandKeys))
    return false;
  pass_ = kSamplePass;
  return true;
}

void ModelTopK::countFromStart() {
  pass_ = 0;
  total_ = nonzeros_ = 0;
  std::vector<SampleChunk>().swap(sample_);
  sampleKeys_ = sampleZeros_ = chunksSeen_ = 0;
  stride_ = 1;
  sampleWhole_ = true;
  for (Band &b : bands_)
    b = Band{};
  tensors_.clear();
  for (auto &r : runs_)
    r.clear();
  for (auto &e : equal_)
    e.clear();
  overflow_ = banded_ = false;
}

void ModelTopK::sampleTensor(ThreadPool *pool, const KeyChunks &keys) {
  int64_t n = keys.size();
  total_ += n;
  // The band keeps flat indices in 32 bits, a chunk's offsets and lane counts in 31.
  if (n >= (int64_t{1} << 32) || keys.chunkSize() >= (int64_t{1} << 31))
    overflow_ = true;
  // Chunks numbered over the model in plan order; every stride-th is sampled, so the sample
  // spreads over every tensor kind and layer as the model does.
  std::vector<size_t> chosen;
  for (size_t c = 0; c < keys.chunks(); ++c) {
    if ((chunksSeen_ + static_cast<int64_t>(c)) % stride_ == 0)
      chosen.push_back(c);
    else
      sampleWhole_ = false;
  }
  std::vector<SampleChunk> add(chosen.size());
  std::vector<int64_t> zeros(chosen.size(), 0);
  overChunkIndices<ScratchOnly>(
      pool, chosen.size(), keys.needsScratch() ? keys.chunkSize() : 0,
      [&](ScratchOnly &st, size_t i) {
        size_t c = chosen[i];
        const float *x = keys.get(c, st.scratch.data());
        SampleChunk &chunk = add[i];
        chunk.number = chunksSeen_ + static_cast<int64_t>(c);
        chunk.keys.resize(static_cast<size_t>(keys.end(c) - keys.begin(c)));
        int64_t z = 0;
        for (size_t q = 0; q < chunk.keys.size(); ++q) {
          chunk.keys[q] = magnitudeKey(x[q]);
          z += chunk.keys[q] == 0;
        }
        zeros[i] = z;
      });
  chunksSeen_ += static_cast<int64_t>(keys.chunks());
  for (size_t i = 0; i < add.size(); ++i) {
    sampleKeys_ += static_cast<int64_t>(add[i].keys.size());
    sampleZeros_ += zeros[i];
    sample_.push_back(std::move(add[i]));
  }
  while (sampleKeys_ > kMaxSampleKeys) {
    stride_ *= 2;
    sampleWhole_ = false;
    std::vector<SampleChunk> kept;
    sampleKeys_ = sampleZeros_ = 0;
    for (SampleChunk &chunk : sample_)
      if (chunk.number % stride_ == 0) {
        sampleKeys_ += static_cast<int64_t>(chunk.keys.size());
        sampleZeros_ += std::count(chunk.keys.begin(), chunk.keys.end(), 0u);
        kept.push_back(std::move(chunk));
      }
    sample_ = std::move(kept);
  }
}

bool ModelTopK::finishSample() {
  int64_t m = sampleKeys_;
  if (overflow_ || m == 0) {
    countFromStart();
    return false;
  }
  double scale = static_cast<double>(total_) / static_cast<double>(m);
  int64_t population =
      nonzero_ ? std::clamp<int64_t>(
                     std::llround(static_cast<double>(m - sampleZeros_) * scale), 0, total_)
               : total_;
  auto [s, e] = topkBand(total_, population, density_, skip_);
  int64_t ranks[2] = {s, e};
  std::vector<uint32_t> flat;
  flat.reserve(static_cast<size_t>(m));
  for (const SampleChunk &chunk : sample_)
    flat.insert(flat.end(), chunk.keys.begin(), chunk.keys.end());
  // The sample's key of descending rank r (1-based, clamped to the sample), by a selection
  // within [from, to) of `flat` (the part an earlier selection left rank r in).
  auto keyAt = [&](int64_t r, int64_t from, int64_t to) {
    auto nth = flat.begin() + (std::clamp<int64_t>(r, from + 1, to) - 1);
    std::nth_element(flat.begin() + from, nth, flat.begin() + to, std::greater<uint32_t>());
    return *nth;
  };
  int64_t room = 0;
  for (int w = 0; w < 2; ++w) {
    Band &band = bands_[w];
    band = Band{};
    if (ranks[w] <= 0)
      continue;
    double t = static_cast<double>(ranks[w]) / scale;
    if (sampleWhole_) {
      // The sample is every key: the band is the cut's key alone.
      band.lo = band.hi = keyAt(ranks[w], 0, m);
    } else {
      // The larger of eight standard deviations of a random sample's rank and six standard
      // errors from the sample chunks' disagreement about the share above the estimated key
      // (tensors and rows differ; the sample is of whole chunks).
      int64_t at = std::clamp<int64_t>(std::llround(t), 1, m);
      uint32_t estimate = keyAt(at, 0, m);
      double spread = 0;
      if (sample_.size() > 1) {
        std::vector<int64_t> size(sample_.size()), above(sample_.size());
        for (size_t i = 0; i < sample_.size(); ++i) {
          size[i] = static_cast<int64_t>(sample_[i].keys.size());
          above[i] = std::count_if(sample_[i].keys.begin(), sample_[i].keys.end(),
                                   [&](uint32_t k) { return k > estimate; });
        }
        spread = clusterSpread(size, above);
      }
      double p = std::clamp(t / static_cast<double>(m), 0.0, 1.0);
      double margin = std::max(sampledMargin(static_cast<double>(m), p),
                               6.0 * spread * static_cast<double>(m) + 1);
      auto top = static_cast<int64_t>(std::floor(t - margin));
      auto bottom = static_cast<int64_t>(std::ceil(t + margin));
      // Past the sample's largest or smallest key the band takes every key beyond.
      band.hi = top <= 1 ? 0x7FFFFFFFu : keyAt(top, 0, at - 1);
      band.lo = bottom >= m ? 0 : keyAt(bottom, at, m);
    }
    int64_t sampled = std::count_if(flat.begin(), flat.end(), [&](uint32_t k) {
      return k >= band.lo && k <= band.hi;
    });
    band.room = sampleWhole_ ? sampled
                             : static_cast<int64_t>(1.5 * static_cast<double>(sampled) * scale) +
                                   1024;
    room += band.room;
  }
  std::vector<SampleChunk>().swap(sample_);
  // Bands too full (a crowded key: few values around the cut): the counting passes.
  if (room > ModelTopK::kMaxBandKeys) {
    countFromStart();
    return false;
  }
  for (Band &band : bands_)
    band.keys.resize(static_cast<size_t>(band.room));
  total_ = 0;
  pass_ = kBandPass;
  return false;
}

void ModelTopK::bandTensor(ThreadPool *pool, const KeyChunks &keys) {
  int64_t n = keys.size();
  total_ += n;
  if (overflow_)
    return; // already too full: the counting passes follow; no need to compute the keys
  tensors_.push_back(tensor_);
  int32_t lo[2], hi[2];
  std::atomic<int64_t> filled[2];
  for (int w = 0; w < 2; ++w) {
    const Band &band = bands_[w];
    bool wanted = band.lo <= band.hi;
    lo[w] = wanted ? static_cast<int32_t>(band.lo) : 0x7FFFFFFF;
    hi[w] = wanted ? static_cast<int32_t>(band.hi) : 0x7FFFFFFE;
    runs_[w].push_back(band.filled);
    filled[w] = band.filled;
  }
  // No room for a band's keys: finishBand sends the model to the counting passes.
  BandRoom room[2];
  for (int w = 0; w < 2; ++w)
    room[w] = {bands_[w].keys.data(), bands_[w].room, &filled[w]};
  size_t chunks = keys.chunks();
  std::vector<int64_t> above(chunks * 2, 0), zeros(chunks, 0);
  overChunkIndices<ScratchOnly>(
      pool, chunks, keys.needsScratch() ? keys.chunkSize() : 0, [&](ScratchOnly &st, size_t c) {
        const float *x = keys.get(c, st.scratch.data());
        AroundBands r =
            keepAroundBands(x, keys.end(c) - keys.begin(c), keys.begin(c), lo, hi, room);
        zeros[c] = r.zeros;
        for (size_t w = 0; w < 2; ++w)
          above[c * 2 + w] = r.above[w];
      });
  nonzeros_ += n - std::accumulate(zeros.begin(), zeros.end(), int64_t{0});
  for (int w = 0; w < 2; ++w) {
    Band &band = bands_[w];
    for (size_t c = 0; c < chunks; ++c)
      band.above += above[c * 2 + static_cast<size_t>(w)];
    band.filled = filled[w];
    overflow_ = overflow_ || band.filled > band.room;
  }
}

bool ModelTopK::finishBand() {
  auto [s, e] = topkBand(total_, nonzero_ ? nonzeros_ : total_, density_, skip_);
  int64_t ranks[2] = {s, e};
  // The exact counts check each cut's key is in its band.
  bool held = !overflow_;
  for (int w = 0; held && w < 2; ++w) {
    const Band &band = bands_[w];
    held = ranks[w] <= 0 ||
           (band.lo <= band.hi && ranks[w] > band.above && ranks[w] <= band.above + band.filled);
  }
  if (!held) {
    countFromStart();
    return false;
  }
  for (int w = 0; w < 2; ++w) {
    Cut &cut = cutAt(w);
    cut.rank = ranks[w];
    if (cut.rank <= 0)
      continue;
    Band &band = bands_[w];
    // The cut's key by a selection over the band's keys (~key ascending is |key| descending);
    // the keys above it, and each tensor's flat indices of keys equal to it.
    std::vector<uint32_t> order(static_cast<size_t>(band.filled));
    for (size_t q = 0; q < order.size(); ++q)
      order[q] = static_cast<uint32_t>(band.keys[q] >> 32);
    auto nth = order.begin() + (cut.rank - band.above - 1);
    std::nth_element(order.begin(), nth, order.end());
    uint32_t inverted = *nth;
    cut.value = ~inverted;
    cut.above = band.above + std::count_if(order.begin(), order.end(),
                                           [&](uint32_t k) { return k < inverted; });
    for (size_t t = 0; t < tensors_.size(); ++t) {
      auto from = static_cast<size_t>(runs_[w][t]);
      auto to = t + 1 < tensors_.size() ? static_cast<size_t>(runs_[w][t + 1])
                                        : static_cast<size_t>(band.filled);
      std::vector<int64_t> equal;
      for (size_t q = from; q < to; ++q)
        if (static_cast<uint32_t>(band.keys[q] >> 32) == inverted)
          equal.push_back(static_cast<int64_t>(band.keys[q] & 0xFFFFFFFFu));
      std::sort(equal.begin(), equal.end());
      equal_[w][tensors_[t]] = std::move(equal);
    }
  }
  for (Band &b : bands_)
    b = Band{};
  for (auto &r : runs_)
    r.clear();
  tensors_.clear();
  banded_ = true;
  pass_ = 2;
  return true;
}

const char *ModelTopK::passName() const {
  switch (pass_) {
  case kSamplePass:
    return "a sample of the top-k keys";
  case kBandPass:
    return "the top-k keys around the sampled boundaries";
  case 0:
    return "the top-k keys' high bits";
  case 1:
    return "the top-k keys' low bits at the boundaries";
  default:
    return "";
  }
}

void ModelTopK::count(ThreadPool *pool, const KeyChunks &keys) {
  if (keys.size() == 0)
    return;
  if (pass_ == kSamplePass)
    return sampleTensor(pool, keys);
  if (pass_ == kBandPass)
    return bandTensor(pool, keys);
  if (pass_ == 0) {
    auto high = countHigh(pool, keys, ByMagnitude{});
    const HighCounts &h = *high.all.front();
    total_ += keys.size();
    if (nonzero_)
      nonzeros_ += keys.size() - h.zeros;
    for (uint32_t b = h.hist.first; b <= h.hist.last; ++b)
      high_[b] += h.hist.count[b];
    return;
  }
  Cut *cuts[2] = {&hi_, &lo_};
  auto low = overChunks<LowCounts>(pool, keys, [&](LowCounts &s, size_t, const float *x,
                                                   int64_t n) {
    for (int w = 0; w < 2; ++w) {
      if (cuts[w]->rank == 0)
        continue;
      Bins &hist = s.hist[w];
      forBucketKeys(x, n, cuts[w]->high, [&](int64_t, uint32_t k) { hist.add(k & 0xFFFF); });
    }
  });
  for (int w = 0; w < 2; ++w)
    if (cuts[w]->rank > 0) {
      const Bins &hist = mergedLow(low, w);
      for (uint32_t b = hist.first; b <= hist.last; ++b)
        cuts[w]->hist[b] += hist.count[b];
    }
}

bool ModelTopK::finishPass() {
  if (pass_ == kSamplePass)
    return finishSample();
  if (pass_ == kBandPass)
    return finishBand();
  if (pass_ == 0) {
    auto [s, e] = topkBand(total_, nonzero_ ? nonzeros_ : total_, density_, skip_);
    hi_.rank = s;
    lo_.rank = e;
    for (Cut *cut : {&hi_, &lo_})
      if (cut->rank > 0) {
        cut->high = bucketOf(high_, cut->rank, cut->above);
        cut->hist.assign(65536, 0);
      }
    high_ = {};
  } else if (pass_ == 1) {
    for (Cut *cut : {&hi_, &lo_})
      if (cut->rank > 0) {
        cut->value = (cut->high << 16) | bucketOf(cut->hist, cut->rank, cut->above);
        cut->hist = {};
      }
  }
  return ++pass_ == 2;
}

void ModelTopK::rewind() {
  hi_.given = 0;
  lo_.given = 0;
}

RankBoundary ModelTopK::applyCounted(Cut &cut, int64_t equal,
                                     const std::function<int64_t(int64_t)> &indexOf) {
  RankBoundary b;
  if (cut.rank == 0)
    return b;
  // Of the elements equal to the boundary, the first (rank - above) over the model are below
  // it: those of earlier tensors first. This tensor's last one below is the min(quota, equal)-th.
  int64_t quota = cut.rank - cut.above - cut.given;
  b.bits = static_cast<double>(cut.value);
  if (int64_t last = std::min(quota, equal); last > 0)
    b.index = static_cast<double>(indexOf(last));
  cut.given += equal;
  return b;
}

void ModelTopK::addHighHistogram(const uint64_t *hist, int64_t n, int64_t nonzeros) {
  if (pass_ != 0)
    throw RuntimeError("internal: a model-scope top-k high histogram after its first pass");
  total_ += n;
  nonzeros_ += nonzeros;
  for (size_t b = 0; b < high_.size(); ++b)
    high_[b] += static_cast<int64_t>(hist[b]);
}

std::optional<uint32_t> ModelTopK::cutHigh(int cut) const {
  const Cut &c = cutAt(cut);
  if (pass_ != 1 || c.rank == 0)
    return std::nullopt;
  return c.high;
}

void ModelTopK::addLowHistogram(int cut, const uint64_t *hist) {
  Cut &c = cutAt(cut);
  if (pass_ != 1 || c.rank == 0)
    throw RuntimeError("internal: a model-scope top-k low histogram out of turn");
  for (size_t b = 0; b < c.hist.size(); ++b)
    c.hist[b] += static_cast<int64_t>(hist[b]);
}

std::optional<uint32_t> ModelTopK::cutValue(int cut) const {
  const Cut &c = cutAt(cut);
  if (!known() || c.rank == 0)
    return std::nullopt;
  return c.value;
}

RankBoundary ModelTopK::applyCounted(int cut, int64_t equal,
                                     const std::function<int64_t(int64_t)> &indexOf) {
  return applyCounted(cutAt(cut), equal, indexOf);
}

void ModelTopK::boundaries(ThreadPool *pool, const KeyChunks &keys, RankBoundary &hi,
                           RankBoundary &lo) {
  Cut *cuts[2] = {&hi_, &lo_};
  // After the sampled passes each tensor's keys equal to a boundary are known (every tensor
  // the band pass saw has its list, empty or not): no pass over the keys. A tensor it did not
  // see (none in a run that analysed the whole rule) takes the pass below.
  bool known = banded_;
  for (int w = 0; known && w < 2; ++w)
    known = cuts[w]->rank <= 0 || equal_[w].count(tensor_);
  if (known) {
    for (int w = 0; w < 2; ++w) {
      RankBoundary &b = w == 0 ? hi : lo;
      b = RankBoundary{};
      if (cuts[w]->rank <= 0)
        continue;
      const std::vector<int64_t> &equal = equal_[w].at(tensor_);
      b = applyCounted(*cuts[w], static_cast<int64_t>(equal.size()),
                       [&](int64_t r) { return equal[static_cast<size_t>(r - 1)]; });
    }
    return;
  }
  // One pass counts each chunk's keys equal to either boundary; a tie's index then comes from
  // the one chunk it falls in.
  uint32_t values[2] = {hi_.value, lo_.value};
  bool want[2] = {hi_.rank > 0, lo_.rank > 0};
  std::vector<int64_t> counts(keys.chunks() * 2);
  if ((want[0] || want[1]) && keys.size() > 0)
    countEqualPerChunk(pool, keys, values, want, counts);
  for (int w = 0; w < 2; ++w) {
    Cut &cut = *cuts[w];
    RankBoundary &b = w == 0 ? hi : lo;
    if (!want[w]) {
      b = RankBoundary{};
      continue;
    }
    int64_t equal = 0;
    for (size_t c = 0; c < keys.chunks(); ++c)
      equal += counts[c * 2 + static_cast<size_t>(w)];
    b = applyCounted(cut, equal,
                     [&](int64_t r) { return indexOfEqual(keys, counts, w, cut.value, r); });
  }
}

QuantilePosition quantilePosition(int64_t n, double q) {
  // numpy: virtual index q * (n - 1) into the ascending order, linear between its neighbours.
  double position = q * static_cast<double>(n - 1);
  int64_t below = static_cast<int64_t>(std::floor(position));
  below = std::clamp<int64_t>(below, 0, n - 1);
  int64_t above = std::min<int64_t>(below + 1, n - 1);
  return {below, above, position - static_cast<double>(below)};
}

double quantile(ThreadPool *pool, const KeyChunks &keys, double q) {
  int64_t n = keys.size();
  if (n == 0)
    return NAN;
  QuantilePosition p = quantilePosition(n, q);
  // Ascending rank r (0-based) is descending rank n - r; both neighbours from the same passes.
  Ranked cuts[2];
  cuts[0].rank = n - p.below;
  cuts[1].rank = n - p.above;
  rankedValues(pool, keys, ByValue{}, cuts, 2);
  double a = static_cast<double>(fromOrderedKey(cuts[0].value));
  return p.lerp(a, p.above == p.below ? a : static_cast<double>(fromOrderedKey(cuts[1].value)));
}

double quantile(const float *keys, int64_t n, double q) {
  return quantile(nullptr, KeyChunks::buffer(keys, n), q);
}

namespace {

/// r[i] = the rank 1..c of |x[i]| ascending in the row x of c elements, ties by lowest index,
/// for keys whose bits outside `varying` are all `all`'s (varying != 0): an LSD radix sort of
/// (magnitude bits, index) on bytes: stable, so equal magnitudes keep index order (ties go to
/// the lower index), branch-free, and several times faster than a comparison sort. Only bytes
/// that vary within the row (bits where the keys' OR and AND differ) take a pass: the low bytes
/// of a difference of bf16 weights are mostly all zero.
/// Each pass runs four streams: the row's current order cut into four consecutive runs, each
/// counted and scattered with its own counters, interleaved. A byte that takes few values (the
/// exponent's) sends keys in a row to the same counter, and each increment then waits on the
/// one before (a store-to-load chain of ~5 cycles); four streams are four chains at once.
/// Within a bucket stream 0's keys go first, then stream 1's, ...: the runs are in order, so
/// the sort stays stable. ~4.5 ns a key on rows of differences of bf16 weights (512 to 11008
/// columns, one thread); the SIMD sort below is used where the CPU has one.
void rankRowRadix(const float *x, float *r, size_t c, uint32_t any, uint32_t all) {
  constexpr size_t kStreams = 4;
  uint32_t varying = any ^ all;
  unsigned digits[4], active = 0;
  for (unsigned d = 0; d < 4; ++d)
    if ((varying >> (8 * d)) & 0xFF)
      digits[active++] = d;
  thread_local std::vector<uint64_t> from, to;
  from.resize(c), to.resize(c);
  // Stream s holds positions [s q, (s + 1) q), the last one also the tail [S q, c).
  size_t q = c / kStreams;
  uint32_t at[kStreams][256];
  for (unsigned a = 0; a < active; ++a) {
    unsigned shift = 8 * digits[a];
    bool first = a == 0, last = a + 1 == active;
    // Every key's digit lies between the AND's and the OR's (its bits are between theirs):
    // counters outside [lo, hi] stay 0, so only those are cleared and scanned.
    uint32_t lo = (all >> shift) & 0xFF, hi = (any >> shift) & 0xFF;
    // The item at position i of this pass: (key << 32 | index).
    auto item = [&](size_t i) -> uint64_t {
      return first ? uint64_t{magnitudeKey(x[i])} << 32 | i : from[i];
    };
    auto bin = [&](uint64_t p) { return static_cast<uint32_t>(p >> (32 + shift)) & 0xFF; };
    for (size_t st = 0; st < kStreams; ++st)
      std::fill(at[st] + lo, at[st] + hi + 1, 0u);
    for (size_t i = 0; i < q; ++i)
      for (size_t st = 0; st < kStreams; ++st)
        ++at[st][bin(item(st * q + i))];
    for (size_t i = kStreams * q; i < c; ++i)
      ++at[kStreams - 1][bin(item(i))];
    uint32_t start = 0;
    for (uint32_t b = lo; b <= hi; ++b) {
      uint32_t here = start;
      start += at[0][b] + at[1][b] + at[2][b] + at[3][b];
      for (size_t st = 0; st < kStreams; ++st)
        here += std::exchange(at[st][b], here);
    }
    auto place = [&](size_t st, uint64_t p) {
      uint32_t slot = at[st][bin(p)]++;
      if (last)
        r[static_cast<uint32_t>(p)] = static_cast<float>(slot + 1);
      else
        to[slot] = p;
    };
    for (size_t i = 0; i < q; ++i)
      for (size_t st = 0; st < kStreams; ++st)
        place(st, item(st * q + i));
    for (size_t i = kStreams * q; i < c; ++i)
      place(kStreams - 1, item(i));
    from.swap(to);
  }
}

/// rankRow's passes over a row, each a loop that vectorizes, built for AVX-512 and AVX2 too
/// (the runtime's baseline is SSE2: 4 keys a vector instead of 16). Plain pointers and
/// integers only: clang does not emit template code that only target_clones functions use.
/// A row's 32-bit sort item: the key's bits [shift, shift + width of mask) above the index.
inline uint32_t packedItem(uint32_t key, unsigned shift, uint32_t mask, unsigned indexBits,
                           uint32_t index) {
  return ((key >> shift) & mask) << indexBits | index;
}
/// Whether a key has bits under `dropped` other than the row's least (`least`).
inline bool isRareKey(uint32_t key, uint32_t dropped, uint32_t least) {
  return (key & dropped) != least;
}

/// The OR and the AND of the row's magnitude keys.
__attribute__((target_clones("avx512f", "avx2", "default"))) void
rowKeyBits(const float *x, size_t c, uint32_t *any, uint32_t *all) {
  uint32_t a = 0, b = 0xFFFFFFFFu;
  for (size_t i = 0; i < c; ++i) {
    uint32_t k = magnitudeKey(x[i]);
    a |= k;
    b &= k;
  }
  *any = a;
  *all = b;
}

/// How many of the row's keys have bits under `dropped` other than `least`.
__attribute__((target_clones("avx512f", "avx2", "default"))) size_t
countRare(const float *x, size_t c, uint32_t dropped, uint32_t least) {
  size_t n = 0;
  for (size_t i = 0; i < c; ++i)
    n += isRareKey(magnitudeKey(x[i]), dropped, least);
  return n;
}

/// items[i] = packedItem of key i.
__attribute__((target_clones("avx512f", "avx2", "default"))) void
packItems32(const float *x, size_t c, unsigned shift, uint32_t mask, unsigned indexBits,
            uint32_t *items) {
  for (size_t i = 0; i < c; ++i)
    items[i] = packedItem(magnitudeKey(x[i]), shift, mask, indexBits, static_cast<uint32_t>(i));
}

/// items[i] = key << 32 | i.
__attribute__((target_clones("avx512f", "avx2", "default"))) void
packItems64(const float *x, size_t c, uint64_t *items) {
  for (size_t i = 0; i < c; ++i)
    items[i] = uint64_t{magnitudeKey(x[i])} << 32 | i;
}

/// r[i] = float(ranks[i]), ranks under 2^31: a signed conversion (SIMD on x86; the unsigned
/// one is not).
__attribute__((target_clones("avx512f", "avx2", "default"))) void
ranksToFloat(const uint32_t *ranks, float *r, size_t c) {
  for (size_t i = 0; i < c; ++i)
    r[i] = static_cast<float>(static_cast<int32_t>(ranks[i]));
}

/// Ranks from a SIMD sort of c distinct items, pack(items) writing item i with i in its bits
/// `index`, and `refine(items)` run on the sorted items before ranks are read off them: false
/// (r untouched) when the CPU or build has no SIMD sort.
template <typename Item, typename Pack, typename Refine>
bool rankBySort(float *r, size_t c, Item index, Pack pack, Refine refine) {
  thread_local std::vector<Item> items;
  items.resize(c);
  pack(items.data());
  if (!rowsort::sort(items.data(), c))
    return false;
  refine(items.data());
  // Ranks scattered as integers into a row buffer in cache, then converted in one pass that
  // vectorizes: scattered straight into r (the rank buffer, far larger than the caches) each
  // store missed, in no order a prefetcher follows, and converted one by one each was a
  // scalar conversion (each a few percent of DELLA, A/B). Rows are under 2^32 (checkRowChunks).
  thread_local std::vector<uint32_t> row;
  row.resize(c);
  uint32_t *to = row.data();
  for (size_t s = 0; s < c; ++s)
    to[static_cast<size_t>(items[s] & index)] = static_cast<uint32_t>(s + 1);
  if (c < (size_t{1} << 31))
    ranksToFloat(to, r, c);
  else
    for (size_t i = 0; i < c; ++i)
      r[i] = static_cast<float>(to[i]);
  return true;
}

/// After a sort of items (the keys' bits above the dropped ones, index): puts each run of
/// items equal in those bits that holds one of `rare` (the indices whose dropped bits are not
/// the row's least) in (key, index) order, key(i) the whole key of index i and item(i) index
/// i's item. A run's other items have the least dropped bits, so they stay first, in index
/// order; an insertion sort by whole key (stable, linear on what is in order) moves the rare
/// ones behind them. A few rare keys a row: a binary search and a short run each (a run holding
/// two is sorted twice, the second time a pass that moves nothing).
template <typename ItemOf, typename KeyOf>
void sortRareRuns(uint32_t *items, size_t c, unsigned indexBits,
                  const std::vector<uint32_t> &rare, ItemOf item, KeyOf key) {
  uint32_t index = (uint32_t{1} << indexBits) - 1;
  for (uint32_t i : rare) {
    uint32_t high = item(i) >> indexBits;
    size_t s = static_cast<size_t>(
        std::lower_bound(items, items + c, high << indexBits) - items);
    size_t e = s + 1;
    while (e < c && (items[e] >> indexBits) == high)
      ++e;
    for (size_t j = s + 1; j < e; ++j) {
      uint32_t moving = items[j], k = key(moving & index);
      size_t to = j;
      for (; to > s && key(items[to - 1] & index) > k; --to)
        items[to] = items[to - 1];
      items[to] = moving;
    }
  }
}

/// How many of a row's lowest varying key bits rankRow may leave out of 32-bit items, and
/// for how few of its keys (at most 1 / kRareShare) those bits may not be the row's least.
constexpr unsigned kMaxDroppedBits = 8;
constexpr size_t kRareShare = 32;

/// r[i] = the rank 1..c of |x[i]| ascending in the row x of c elements, ties by lowest index.
/// Items (magnitude, index) with the index in the low bits are distinct, so any sort orders
/// them as the stable one would: ascending magnitude, ties by index. The bits every key of the
/// row shares say nothing about its order; without them a row's items often fit 32 bits (keys
/// of 512-element rows of bf16-weight differences vary in ~21 bits), and a SIMD sort of 32-bit
/// items moves twice the items per vector. Where they do not fit by up to kMaxDroppedBits,
/// the lowest varying bits are left out too if few keys have them other than the row's least
/// (in 512 x 1408 bf16 differences 2.7 keys a row on average, 8 at most); sortRareRuns then
/// puts the runs holding those keys in order: still exact. Measured on one thread, rows of
/// differences of bf16 weights: 2.3 ns a key at 512 columns (32-bit items), 2.9-3.3 ns at
/// 1408-11008 (64-bit) with vqsort on AVX-512, against 4.4-4.8 ns for the radix; the 32-bit
/// items with dropped bits took DELLA's 100M benchmark (a sixth of its keys in rows of 1408)
/// from 0.946 to 0.922 s (A/B).
void rankRow(const float *x, float *r, size_t c) {
  uint32_t any, all;
  rowKeyBits(x, c, &any, &all);
  uint32_t varying = any ^ all;
  if (varying == 0) { // one magnitude: index order
    for (size_t i = 0; i < c; ++i)
      r[i] = static_cast<float>(static_cast<int64_t>(i) + 1);
    return;
  }
  unsigned low = static_cast<unsigned>(std::countr_zero(varying));
  unsigned width = 32 - static_cast<unsigned>(std::countl_zero(varying)) - low;
  unsigned indexBits = static_cast<unsigned>(std::bit_width(c - 1));
  bool sorted = false, packed = false;
  if (width + indexBits <= 32 + kMaxDroppedBits && indexBits < 32) {
    // Items of the key bits above `drop` (those past 32), and the indices of the keys whose
    // dropped bits are not the row's least: a 32-bit sort if they are few. (An index of 32
    // bits leaves no room for a key bit.)
    unsigned drop = width + indexBits > 32 ? width + indexBits - 32 : 0;
    uint32_t dropped = ((uint32_t{1} << drop) - 1) << low, least = all & dropped;
    // Counted first (a loop that vectorizes), collected only when few, up to the last one.
    thread_local std::vector<uint32_t> rare;
    rare.clear();
    size_t rareKeys = drop == 0 ? 0 : countRare(x, c, dropped, least);
    if (rareKeys <= c / kRareShare) {
      for (size_t i = 0; rare.size() < rareKeys; ++i)
        if (isRareKey(magnitudeKey(x[i]), dropped, least))
          rare.push_back(static_cast<uint32_t>(i));
      packed = true;
      unsigned shift = low + drop, kept = width - drop;
      uint32_t mask = kept == 32 ? 0xFFFFFFFFu : (uint32_t{1} << kept) - 1;
      auto item = [&](size_t i) {
        return packedItem(magnitudeKey(x[i]), shift, mask, indexBits, static_cast<uint32_t>(i));
      };
      sorted = rankBySort<uint32_t>(r, c, (uint32_t{1} << indexBits) - 1,
                                    [&](uint32_t *items) {
                                      packItems32(x, c, shift, mask, indexBits, items);
                                    },
                                    [&](uint32_t *items) {
                                      sortRareRuns(items, c, indexBits, rare, item,
                                                   [&](uint32_t i) { return magnitudeKey(x[i]); });
                                    });
    }
  }
  if (!packed)
    sorted = rankBySort<uint64_t>(
        r, c, 0xFFFFFFFFu, [&](uint64_t *items) { packItems64(x, c, items); }, [](uint64_t *) {});
  if (!sorted)
    rankRowRadix(x, r, c, any, all);
}

/// The f64 sum of y[0..cols) in `lanes` (a power of two, at most 256) partials, lane t adding
/// columns t, t + lanes, ... in order, combined by halving strides. Both loops vectorize; built
/// for AVX2 too where the CPU has it (4 doubles an add instead of SSE2's 2; the same sums).
__attribute__((target_clones("avx2", "default"))) double laneSum(const float *y, int64_t cols,
                                                                  int64_t lanes) {
  double part[256];
  std::fill(part, part + lanes, 0.0);
  for (int64_t first = 0; first < cols; first += lanes) {
    int64_t count = std::min(lanes, cols - first);
    const float *z = y + first;
    for (int64_t t = 0; t < count; ++t)
      part[t] += static_cast<double>(z[t]);
  }
  for (int64_t stride = lanes / 2; stride > 0; stride /= 2)
    for (int64_t t = 0; t < stride; ++t)
      part[t] += part[t + stride];
  return part[0];
}

/// The rows of a chunk: its whole rows only (a partial last row is not written).
void checkRowChunks(const KeyChunks &keys, int64_t cols) {
  // Ranks count in 32 bits.
  if (cols >= (int64_t{1} << 32))
    throw RuntimeError("row_rank: rows of 2^32 elements or more are not supported");
  if (keys.chunkSize() % cols != 0)
    throw RuntimeError("internal: row keys in chunks that split rows");
}

} // namespace

int64_t rowChunkSize(int64_t cols) {
  cols = std::max<int64_t>(cols, 1);
  return std::max<int64_t>(1, (int64_t{1} << 16) / cols) * cols;
}

void rowPhases(ThreadPool &pool, std::vector<RowJob> &jobs, int64_t cols) {
  if (cols <= 0 || jobs.empty() || jobs.front().keys->size() == 0)
    return;
  const KeyChunks &first = *jobs.front().keys;
  bool scratch = false;
  for (const RowJob &job : jobs) {
    checkRowChunks(*job.keys, cols);
    if (job.keys->size() != first.size() || job.keys->chunkSize() != first.chunkSize())
      throw RuntimeError("internal: sibling row phases over keys of different lengths");
    scratch = scratch || job.keys->needsScratch();
  }
  // A row's sum has the order of the GPU's row kernel (mergec_row_reduce): `lanes` (its block:
  // the least power of two >= cols, from 32 to 256) f64 partials, lane t adding columns t,
  // t + lanes, ... in order, then a tree of halving strides, rounded once. So the same keys
  // give the same bits on either device, and the lanes' adds vectorize (no chain of adds).
  int64_t lanes = 32;
  while (lanes < 256 && lanes < cols)
    lanes *= 2;
  // A chunk of rows of every job in turn: sibling row phases (filter_wise's six sums over
  // pairs of task vectors, DELLA's three ranks) read the inputs they share from cache.
  overChunkIndices<ScratchOnly>(
      &pool, first.chunks(), scratch ? first.chunkSize() : 0, [&](ScratchOnly &st, size_t c) {
        int64_t rows = (first.end(c) - first.begin(c)) / cols;
        for (RowJob &job : jobs) {
          const float *x = job.keys->get(c, st.scratch.data());
          for (int64_t row = 0; row < rows; ++row) {
            const float *y = x + row * cols;
            if (job.op == RowJob::Op::Rank) {
              rankRow(y, job.out + first.begin(c) + row * cols, static_cast<size_t>(cols));
              continue;
            }
            double acc;
            if (job.op == RowJob::Op::Sum) {
              acc = laneSum(y, cols, lanes);
            } else {
              acc = -INFINITY;
              for (int64_t i = 0; i < cols; ++i)
                acc = std::isnan(y[i]) || std::isnan(acc) ? NAN : std::max(acc, double(y[i]));
            }
            job.out[first.begin(c) / cols + row] = static_cast<float>(acc);
          }
        }
      });
}

void rowRanks(ThreadPool &pool, const KeyChunks &keys, float *ranks, int64_t cols) {
  std::vector<RowJob> jobs{RowJob{&keys, ranks, RowJob::Op::Rank}};
  rowPhases(pool, jobs, cols);
}

void rowRanks(ThreadPool &pool, const float *keys, float *ranks, int64_t n, int64_t cols) {
  if (cols > 0)
    rowRanks(pool, KeyChunks::buffer(keys, n, rowChunkSize(cols)), ranks, cols);
}

void rowReduce(ThreadPool &pool, const KeyChunks &keys, float *out, int64_t cols, bool sum) {
  std::vector<RowJob> jobs{RowJob{&keys, out, sum ? RowJob::Op::Sum : RowJob::Op::Max}};
  rowPhases(pool, jobs, cols);
}

void rowReduce(ThreadPool &pool, const float *keys, float *out, int64_t n, int64_t cols,
               bool sum) {
  if (cols > 0)
    rowReduce(pool, KeyChunks::buffer(keys, n, rowChunkSize(cols)), out, cols, sum);
}

} // namespace mergec::rt
