//===- Selection.cpp - exact order statistics over materialized keys -------===//
#include "mergec/Runtime/Selection.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/ThreadPool.h"
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>
#include <vector>

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


/// The key of rank m (1-based) in descending order: two histogram passes over 16-bit digits.
/// Returns the key and how many keys are strictly greater.
template <typename KeyFn>
std::pair<uint32_t, int64_t> kthLargest(const float *keys, int64_t n, int64_t m, KeyFn key) {
  std::vector<int64_t> hist(65536);
  for (int64_t i = 0; i < n; ++i)
    ++hist[key(keys[i]) >> 16];
  int64_t above = 0;
  uint32_t high = 65535;
  for (;; --high) {
    if (above + hist[high] >= m)
      break;
    above += hist[high];
  }
  std::fill(hist.begin(), hist.end(), 0);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t k = key(keys[i]);
    if ((k >> 16) == high)
      ++hist[k & 0xFFFF];
  }
  uint32_t low = 65535;
  for (;; --low) {
    if (above + hist[low] >= m)
      break;
    above += hist[low];
  }
  return {(high << 16) | low, above};
}

RankBoundary boundary(const float *keys, int64_t n, int64_t m) {
  RankBoundary b;
  if (m <= 0)
    return b;
  auto [value, above] = kthLargest(keys, n, m, magnitudeKey);
  // The (m - above)-th element equal to the boundary value, in index order, is the last kept.
  int64_t ties = m - above;
  for (int64_t i = 0; i < n; ++i)
    if (magnitudeKey(keys[i]) == value && --ties == 0) {
      b.index = static_cast<double>(i);
      break;
    }
  b.bits = static_cast<double>(value);
  return b;
}

int64_t countNonzero(const float *keys, int64_t n) {
  int64_t population = 0;
  for (int64_t i = 0; i < n; ++i)
    population += magnitudeKey(keys[i]) != 0;
  return population;
}

/// The histogram bucket (from the top) where the m-th largest falls; `above` gains the counts
/// of the buckets above it.
uint32_t bucketOf(const std::vector<int64_t> &hist, int64_t m, int64_t &above) {
  uint32_t b = 65535;
  for (; b > 0 && above + hist[b] < m; --b)
    above += hist[b];
  return b;
}

} // namespace

void topkBoundaries(const float *keys, int64_t n, double density, double skip, bool nonzero,
                    RankBoundary &hi, RankBoundary &lo) {
  auto [s, e] = topkBand(n, nonzero ? countNonzero(keys, n) : n, density, skip);
  hi = boundary(keys, n, s);
  lo = boundary(keys, n, e);
}

ModelTopK::ModelTopK(double density, double skip, bool nonzero)
    : density_(density), skip_(skip), nonzero_(nonzero), high_(65536) {}

void ModelTopK::count(const float *keys, int64_t n) {
  if (pass_ == 0) {
    total_ += n;
    if (nonzero_)
      nonzeros_ += countNonzero(keys, n);
    for (int64_t i = 0; i < n; ++i)
      ++high_[magnitudeKey(keys[i]) >> 16];
    return;
  }
  for (Cut *cut : {&hi_, &lo_}) {
    if (cut->rank == 0)
      continue;
    for (int64_t i = 0; i < n; ++i) {
      uint32_t k = magnitudeKey(keys[i]);
      if ((k >> 16) == cut->high)
        ++cut->hist[k & 0xFFFF];
    }
  }
}

bool ModelTopK::finishPass() {
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

RankBoundary ModelTopK::apply(Cut &cut, const float *keys, int64_t n) {
  if (cut.rank == 0)
    return RankBoundary{};
  int64_t equal = 0;
  for (int64_t i = 0; i < n; ++i)
    equal += magnitudeKey(keys[i]) == cut.value;
  return applyCounted(cut, equal, [&](int64_t r) {
    for (int64_t i = 0; i < n; ++i)
      if (magnitudeKey(keys[i]) == cut.value && --r == 0)
        return i;
    throw RuntimeError("internal: model-scope top-k tie not found");
  });
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

void ModelTopK::boundaries(const float *keys, int64_t n, RankBoundary &hi, RankBoundary &lo) {
  hi = apply(hi_, keys, n);
  lo = apply(lo_, keys, n);
}

QuantilePosition quantilePosition(int64_t n, double q) {
  // numpy: virtual index q * (n - 1) into the ascending order, linear between its neighbours.
  double position = q * static_cast<double>(n - 1);
  int64_t below = static_cast<int64_t>(std::floor(position));
  below = std::clamp<int64_t>(below, 0, n - 1);
  int64_t above = std::min<int64_t>(below + 1, n - 1);
  return {below, above, position - static_cast<double>(below)};
}

double quantile(const float *keys, int64_t n, double q) {
  if (n == 0)
    return NAN;
  QuantilePosition p = quantilePosition(n, q);
  // Ascending rank r (0-based) is descending rank n - r.
  auto at = [&](int64_t r) {
    return static_cast<double>(fromOrderedKey(kthLargest(keys, n, n - r, orderedKey).first));
  };
  double a = at(p.below);
  return p.lerp(a, p.above == p.below ? a : at(p.above));
}

void rowRanks(ThreadPool &pool, const float *keys, float *ranks, int64_t n, int64_t cols) {
  if (cols <= 0 || n == 0)
    return;
  if (cols > (int64_t{1} << 32))
    throw RuntimeError("row_rank: rows of more than 2^32 elements are not supported");
  int64_t rows = n / cols;
  pool.parallelFor(static_cast<size_t>(rows), [&](size_t row) {
    const float *x = keys + static_cast<int64_t>(row) * cols;
    // LSD radix sort of (magnitude bits, index) on the bits, 8 at a time: stable, so equal
    // magnitudes keep index order (ties go to the lower index), and branch-free, several times
    // faster than a comparison sort on rows of a few hundred to a few thousand. A byte every
    // element shares (the exponent's, mostly) costs one counting pass and no scatter.
    thread_local std::vector<uint32_t> key, index, key2, index2;
    size_t c = static_cast<size_t>(cols);
    key.resize(c), index.resize(c), key2.resize(c), index2.resize(c);
    for (size_t i = 0; i < c; ++i) {
      key[i] = magnitudeKey(x[i]);
      index[i] = static_cast<uint32_t>(i);
    }
    for (unsigned shift = 0; shift < 32; shift += 8) {
      size_t count[256] = {};
      for (size_t i = 0; i < c; ++i)
        ++count[(key[i] >> shift) & 0xFF];
      if (count[(key[0] >> shift) & 0xFF] == c)
        continue;
      size_t start = 0;
      for (size_t &n : count)
        start += std::exchange(n, start);
      for (size_t i = 0; i < c; ++i) {
        size_t at = count[(key[i] >> shift) & 0xFF]++;
        key2[at] = key[i];
        index2[at] = index[i];
      }
      key.swap(key2);
      index.swap(index2);
    }
    float *r = ranks + static_cast<int64_t>(row) * cols;
    for (size_t i = 0; i < c; ++i)
      r[index[i]] = static_cast<float>(i + 1);
  });
}

void rowReduce(ThreadPool &pool, const float *keys, float *out, int64_t n, int64_t cols,
               bool sum) {
  if (cols <= 0 || n == 0)
    return;
  int64_t rows = n / cols;
  pool.parallelFor(static_cast<size_t>(rows), [&](size_t row) {
    const float *x = keys + static_cast<int64_t>(row) * cols;
    double acc = sum ? 0.0 : -INFINITY;
    for (int64_t i = 0; i < cols; ++i)
      acc = sum ? acc + x[i] : (std::isnan(x[i]) || std::isnan(acc) ? NAN : std::max(acc, double(x[i])));
    std::fill(out + static_cast<int64_t>(row) * cols, out + static_cast<int64_t>(row + 1) * cols,
              static_cast<float>(acc));
  });
}

} // namespace mergec::rt
