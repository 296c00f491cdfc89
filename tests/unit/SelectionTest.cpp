//===- SelectionTest.cpp - radix select, quantiles and row ranks ----------===//
#include "mergec/Runtime/Device.h"
#include "mergec/Runtime/KernelABI.h"
#include "mergec/Runtime/RowSort.h"
#include "mergec/Runtime/Selection.h"
#include "mergec/Runtime/ThreadPool.h"
#include <gtest/gtest.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace mergec::rt;

namespace {

/// The band mask the kernels compute from the boundaries (merge.rank_band).
std::vector<int> bandMask(const std::vector<float> &x, const RankBoundary &hi, const RankBoundary &lo) {
  std::vector<int> mask(x.size());
  auto below = [](uint32_t key, int64_t i, const RankBoundary &b) {
    auto t = static_cast<int64_t>(b.bits);
    return static_cast<int64_t>(key) > t ||
           (static_cast<int64_t>(key) == t && i <= static_cast<int64_t>(b.index));
  };
  for (size_t i = 0; i < x.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &x[i], 4);
    u &= 0x7FFFFFFFu;
    mask[i] = below(u, static_cast<int64_t>(i), lo) && !below(u, static_cast<int64_t>(i), hi);
  }
  return mask;
}

/// The same band by sorting: (|x| descending, index ascending), ranks [s, s + k).
std::vector<int> sortedMask(const std::vector<float> &x, int64_t s, int64_t k) {
  std::vector<int64_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return std::fabs(x[a]) > std::fabs(x[b]); });
  std::vector<int> mask(x.size());
  for (int64_t r = s; r < s + k; ++r)
    mask[order[r]] = 1;
  return mask;
}

TEST(Selection, TopKMatchesASortWithTiesByLowestIndex) {
  std::mt19937 rng(5);
  // Few distinct values: many ties at every threshold.
  std::uniform_int_distribution<int> pick(-6, 6);
  std::vector<float> x(10007);
  for (float &v : x)
    v = static_cast<float>(pick(rng)) * 0.25f;
  for (double density : {0.0, 0.001, 0.2, 0.5, 0.77, 1.0}) {
    RankBoundary hi, lo;
    topkBoundaries(x.data(), static_cast<int64_t>(x.size()), density, 0, false, hi, lo);
    auto k = static_cast<int64_t>(density * static_cast<double>(x.size()));
    EXPECT_EQ(bandMask(x, hi, lo), sortedMask(x, 0, k)) << "density " << density;
  }
}

TEST(Selection, SkipDropsTheLargestAndShrinksWhenTheBandOverflows) {
  std::vector<float> x = {5, -4, 3, 0.5f, -2, 1, 4, 0, 3, -1};
  RankBoundary hi, lo;
  topkBoundaries(x.data(), 10, 0.3, 0.2, false, hi, lo); // skip 2 (5, -4), keep 3 (4, 3, 3)
  EXPECT_EQ(bandMask(x, hi, lo), sortedMask(x, 2, 3));
  topkBoundaries(x.data(), 10, 0.9, 0.5, false, hi, lo); // s + k = 14 > 10: s = 1
  EXPECT_EQ(bandMask(x, hi, lo), sortedMask(x, 1, 9));
}

TEST(Selection, NonzeroCountsOnlyNonZeroKeys) {
  std::vector<float> x = {0, 0, 3, 0, 1, 2, 0, 0};
  RankBoundary hi, lo;
  topkBoundaries(x.data(), 8, 0.7, 0, true, hi, lo); // k = int(0.7 * 3) = 2
  EXPECT_EQ(bandMask(x, hi, lo), (std::vector<int>{0, 0, 1, 0, 0, 1, 0, 0}));
}

TEST(Selection, NaNRanksAboveInfinity) {
  std::vector<float> x = {1, NAN, INFINITY, 2};
  RankBoundary hi, lo;
  topkBoundaries(x.data(), 4, 0.5, 0, false, hi, lo);
  EXPECT_EQ(bandMask(x, hi, lo), (std::vector<int>{0, 1, 1, 0}));
}

TEST(Selection, QuantileIsNumpysLinearMethod) {
  std::vector<float> x = {7, -1, 3, 3, 10, 0.5f};
  // sorted: -1 0.5 3 3 7 10
  EXPECT_DOUBLE_EQ(quantile(x.data(), 6, 0), -1);
  EXPECT_DOUBLE_EQ(quantile(x.data(), 6, 1), 10);
  EXPECT_DOUBLE_EQ(quantile(x.data(), 6, 0.5), 3);
  EXPECT_DOUBLE_EQ(quantile(x.data(), 6, 0.9), 7 + (10 - 7) * 0.5); // position 4.5
  EXPECT_DOUBLE_EQ(quantile(x.data(), 6, 0.1), -1 + (0.5 + 1) * 0.5); // position 0.5: b - (b-a)(1-t)
  std::vector<float> neg = {-3, -2, -5};
  EXPECT_DOUBLE_EQ(quantile(neg.data(), 3, 0.25), -5 + (-3 + 5) * 0.5);
}

TEST(Selection, RowRanksAscendByMagnitudeTiesByIndex) {
  ThreadPool pool(2);
  std::vector<float> x = {3, -1, 2, -3, /* row 2 */ 0, 0, -0.5f, 7};
  std::vector<float> r(8);
  rowRanks(pool, x.data(), r.data(), 8, 4);
  EXPECT_EQ(r, (std::vector<float>{3, 1, 2, 4, 1, 2, 3, 4}));
}

// One value per row (the kernels read element i's at i / cols), nothing past the rows.
TEST(Selection, RowReduceGivesEachRowItsSumOrMax) {
  ThreadPool pool(2);
  std::vector<float> x = {1, 2, 3, /* row 2 */ -4, 0.5f, 1e8f};
  std::vector<float> s(3, -1), m(3, -1);
  rowReduce(pool, x.data(), s.data(), 6, 3, /*sum=*/true);
  rowReduce(pool, x.data(), m.data(), 6, 3, /*sum=*/false);
  EXPECT_EQ(s, (std::vector<float>{6, 1e8f - 3.5f, -1}));
  EXPECT_EQ(m, (std::vector<float>{3, 1e8f, -1}));
}

// The model-wide band over tensors handed in order equals topkBoundaries over their
// concatenation: the same elements are inside, ties at the boundary going to earlier tensors.
TEST(Selection, ModelTopKMatchesTheConcatenation) {
  std::vector<std::vector<float>> tensors = {
      {0.5f, -2, 1, 1, 0}, {3, 1, -1, 0.25f}, {1, 1, -2, 4, 0, 0.5f}};
  for (double density : {0.0, 0.2, 0.4, 0.6, 1.0})
    for (double skip : {0.0, 0.1, 0.3}) {
      std::vector<float> all;
      for (auto &t : tensors)
        all.insert(all.end(), t.begin(), t.end());
      RankBoundary hi, lo;
      topkBoundaries(all.data(), static_cast<int64_t>(all.size()), density, skip, false, hi, lo);
      auto inside = [](float v, int64_t i, const RankBoundary &h, const RankBoundary &l) {
        auto below = [&](const RankBoundary &b) {
          uint32_t bits;
          float a = std::fabs(v);
          std::memcpy(&bits, &a, 4);
          return bits > b.bits || (bits == b.bits && static_cast<double>(i) <= b.index);
        };
        return below(l) && !below(h);
      };
      std::vector<bool> expected;
      for (size_t i = 0; i < all.size(); ++i)
        expected.push_back(inside(all[i], static_cast<int64_t>(i), hi, lo));

      ModelTopK model(density, skip, false);
      for (int pass = 0; pass < 2; ++pass) {
        for (auto &t : tensors)
          model.count(t.data(), static_cast<int64_t>(t.size()));
        EXPECT_EQ(model.finishPass(), pass == 1);
      }
      for (int round = 0; round < 2; ++round) { // rewinding hands the quotas out again
        model.rewind();
        std::vector<bool> got;
        for (auto &t : tensors) {
          RankBoundary th, tl;
          model.boundaries(t.data(), static_cast<int64_t>(t.size()), th, tl);
          for (size_t i = 0; i < t.size(); ++i)
            got.push_back(inside(t[i], static_cast<int64_t>(i), th, tl));
        }
        EXPECT_EQ(got, expected) << "density " << density << " skip " << skip;
      }
    }
}

/// Keys produced chunk by chunk into the caller's scratch, as a streamed select phase does,
/// with a chunk size that does not divide n; counts how many chunks were produced.
KeyChunks streamed(const std::vector<float> &x, int64_t chunk, std::atomic<int64_t> *made) {
  return KeyChunks(static_cast<int64_t>(x.size()), chunk, true,
                   [&x, chunk, made](size_t c, float *scratch) {
                     int64_t begin = static_cast<int64_t>(c) * chunk;
                     int64_t end = std::min<int64_t>(static_cast<int64_t>(x.size()), begin + chunk);
                     std::copy(x.begin() + begin, x.begin() + end, scratch);
                     if (made)
                       ++*made;
                     return scratch;
                   });
}

/// Keys with many ties: few distinct magnitudes, some with low mantissa bits (f32 values) and
/// some without (bf16-like values), and zeros.
std::vector<float> tiedKeys(size_t n, unsigned seed, bool bf16Like) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(-40, 40);
  std::vector<float> x(n);
  for (float &v : x) {
    int p = pick(rng);
    v = bf16Like ? static_cast<float>(p) * 0.25f : static_cast<float>(p) * 0.1f + 1e-3f * (p % 3);
  }
  return x;
}

std::vector<double> boundaryFields(const RankBoundary &hi, const RankBoundary &lo) {
  return {hi.bits, hi.index, lo.bits, lo.index};
}

// Streamed keys on 1 and 2 threads and serially give the boundaries of the buffer path and the
// band of a stable sort, with n not a multiple of the chunk, both bands' ends tied.
TEST(Selection, StreamedTopKMatchesTheBufferAndASortForAnyThreads) {
  ThreadPool one(1), two(2);
  for (bool bf16Like : {false, true})
    for (size_t n : {size_t{1}, size_t{999}, size_t{70001}}) {
      std::vector<float> x = tiedKeys(n, static_cast<unsigned>(n), bf16Like);
      for (double density : {0.0, 0.01, 0.3, 0.5, 1.0})
        for (double skip : {0.0, 0.1})
          for (bool nonzero : {false, true}) {
            RankBoundary hi, lo;
            topkBoundaries(x.data(), static_cast<int64_t>(n), density, skip, nonzero, hi, lo);
            int64_t population = nonzero ? std::count_if(x.begin(), x.end(),
                                                          [](float v) { return v != 0; })
                                         : static_cast<int64_t>(n);
            auto [s, e] = topkBand(static_cast<int64_t>(n), population, density, skip);
            EXPECT_EQ(bandMask(x, hi, lo), sortedMask(x, s, e - s))
                << "n " << n << " density " << density << " skip " << skip;
            for (ThreadPool *pool : {static_cast<ThreadPool *>(nullptr), &one, &two}) {
              RankBoundary shi, slo;
              topkBoundaries(pool, streamed(x, 4096 + 7, nullptr), density, skip, nonzero, shi,
                             slo);
              EXPECT_EQ(boundaryFields(shi, slo), boundaryFields(hi, lo))
                  << "n " << n << " density " << density << " threads "
                  << (pool ? pool->size() : 0);
            }
          }
    }
}

// One pass over the keys where a sample of chunks tells where the boundaries are, whether
// the boundary bucket holds one value (bf16-like keys: no low mantissa bits) or more: the
// sample's chunks are kept, the others computed once, and each boundary selected from the
// keys of a band around it.
TEST(Selection, TopKComputesEachKeyOnceWhereTheSampleHolds) {
  for (bool simd : {true, false}) {
    allowSimdBandCounting(simd); // AVX2 where the CPU has it, or the plain loop
    for (bool bf16Like : {true, false})
      for (double skip : {0.0, 0.1}) {
        std::vector<float> x = tiedKeys(100 * 1000, 3, bf16Like);
        std::atomic<int64_t> made{0};
        RankBoundary hi, lo, bhi, blo;
        topkBoundaries(nullptr, streamed(x, 1000, &made), 0.3, skip, false, hi, lo);
        EXPECT_EQ(made.load(), 100) << "bf16-like " << bf16Like << " skip " << skip;
        topkBoundaries(x.data(), static_cast<int64_t>(x.size()), 0.3, skip, false, bhi, blo);
        EXPECT_EQ(boundaryFields(hi, lo), boundaryFields(bhi, blo));
        auto [s, e] = topkBand(static_cast<int64_t>(x.size()), static_cast<int64_t>(x.size()),
                               0.3, skip);
        EXPECT_EQ(bandMask(x, hi, lo), sortedMask(x, s, e - s));
      }
  }
  allowSimdBandCounting(true);
}

// A sample that misleads: the sampled chunks' keys are all small, the others large, so the
// bands drawn from the sample hold neither boundary, or (the boundary's value crowding the
// chunks the sample missed) hold it but with more keys than their room. The two counting
// passes then find the boundaries: those of a stable sort, for any threads; each key is
// computed once for the sampled pass and twice more for them (the sample's chunks once).
TEST(Selection, TopKWhoseSampleMisleadsFallsBackToTwoCountingPasses) {
  ThreadPool two(2);
  int64_t chunks = 100, chunk = 1000;
  std::vector<bool> sampledChunk(static_cast<size_t>(chunks), false);
  for (int64_t i = 0; i < 8; ++i) // the sample's chunks: (2i + 1) * chunks / 16
    sampledChunk[static_cast<size_t>((2 * i + 1) * chunks / 16)] = true;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> unit(1.0f, 2.0f);
  for (bool crowded : {false, true}) {
    std::vector<float> x(static_cast<size_t>(chunks * chunk));
    for (int64_t i = 0; i < chunks * chunk; ++i) {
      bool inSample = sampledChunk[static_cast<size_t>(i / chunk)];
      if (crowded) // uniform in the sample, half the rest the value at the cut it estimates
        x[static_cast<size_t>(i)] = inSample || i % 2 == 0 ? unit(rng) : 1.45f;
      else
        x[static_cast<size_t>(i)] = inSample ? unit(rng) * 1e-3f : unit(rng);
    }
    for (ThreadPool *pool : {static_cast<ThreadPool *>(nullptr), &two}) {
      allowSimdBandCounting(pool == nullptr); // serially the plain loop
      std::atomic<int64_t> made{0};
      RankBoundary hi, lo;
      topkBoundaries(pool, streamed(x, chunk, &made), 0.5, 0.05, false, hi, lo);
      allowSimdBandCounting(true);
      auto [s, e] = topkBand(chunks * chunk, chunks * chunk, 0.5, 0.05);
      EXPECT_EQ(bandMask(x, hi, lo), sortedMask(x, s, e - s)) << "crowded " << crowded;
      EXPECT_EQ(made.load(), chunks + 2 * chunks) << "crowded " << crowded;
    }
  }
}

// Rows that differ (each row's keys scaled by its own lognormal factor, as task vectors'
// rows do): a sample of whole chunks (neighbouring rows) is a poorer estimate than its size
// says, and the chunks' disagreement widens the bands by as much, so the sample does not
// mislead: either the one pass holds (each chunk's keys computed once) or the bands would be
// too full and the counting passes run at once (the sample's 8 chunks aside), never the
// sampled pass and then the counting passes. The boundaries are a stable sort's either way.
TEST(Selection, TopKOfRowsThatDifferIsNotMisledByItsSample) {
  ThreadPool two(2);
  int64_t rows = 256, cols = 4096, chunk = 16384, chunks = rows * cols / chunk;
  std::mt19937 rng(3);
  std::normal_distribution<float> noise(0, 1), logScale(0, 0.7f);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    float scale = std::exp(logScale(rng));
    for (int64_t c = 0; c < cols; ++c)
      x[static_cast<size_t>(r * cols + c)] = noise(rng) * scale;
  }
  for (double density : {0.2, 0.9}) {
    std::atomic<int64_t> made{0};
    RankBoundary hi, lo;
    topkBoundaries(&two, streamed(x, chunk, &made), density, 0.01, false, hi, lo);
    auto [s, e] = topkBand(rows * cols, rows * cols, density, 0.01);
    EXPECT_EQ(bandMask(x, hi, lo), sortedMask(x, s, e - s)) << "density " << density;
    EXPECT_TRUE(made.load() == chunks || made.load() == 8 + 2 * chunks)
        << "density " << density << ": " << made.load() << " chunks computed";
  }
}

// Sibling selections sharing their passes (TopKJob) get each the boundaries it gets alone, for
// any threads, with different densities, skips and nonzero; each job's keys are made once (one
// sampled pass).
TEST(Selection, TopKJobsMatchTheirSelectionsAlone) {
  ThreadPool two(2);
  std::vector<std::vector<float>> x = {tiedKeys(70001, 1, true), tiedKeys(70001, 2, false),
                                       tiedKeys(70001, 3, true)};
  x[2][5] = 0; // and some zeros for nonzero
  double density[3] = {0.2, 0.5, 0.0}, skip[3] = {0.0, 0.1, 0.0};
  bool nonzero[3] = {false, true, false};
  for (ThreadPool *pool : {static_cast<ThreadPool *>(nullptr), &two}) {
    std::atomic<int64_t> made[3] = {0, 0, 0};
    std::vector<KeyChunks> keys;
    for (size_t j = 0; j < 3; ++j)
      keys.push_back(streamed(x[j], 4096 + 7, &made[j]));
    std::vector<TopKJob> jobs;
    for (size_t j = 0; j < 3; ++j)
      jobs.push_back(TopKJob{&keys[j], density[j], skip[j], nonzero[j], {}, {}});
    topkBoundaries(pool, jobs);
    for (size_t j = 0; j < 3; ++j) {
      RankBoundary hi, lo;
      topkBoundaries(x[j].data(), static_cast<int64_t>(x[j].size()), density[j], skip[j],
                     nonzero[j], hi, lo);
      EXPECT_EQ(boundaryFields(jobs[j].hi, jobs[j].lo), boundaryFields(hi, lo)) << "job " << j;
    }
    int64_t chunks = (70001 + 4096 + 7 - 1) / (4096 + 7);
    for (size_t j = 0; j < 3; ++j) // density 0 too: its keys shared the pass
      EXPECT_EQ(made[j].load(), chunks) << "job " << j;
  }
}

// More keys in the boundary bucket than pass two keeps (2^21): a third pass counts the ties,
// and the band is still a stable sort's. The sample (8 chunks) saw the crowded bucket and left
// the tensor to the counting passes before its own pass.
TEST(Selection, CrowdedBoundaryBucketFallsBackToATiePass) {
  ThreadPool two(2);
  std::mt19937 rng(11);
  std::uniform_int_distribution<uint32_t> low(0, 15);
  std::vector<float> x(3 * 1000 * 1000);
  for (float &v : x) {
    uint32_t bits = 0x3F800000u | low(rng); // 1.0 and the next 15 floats: one high bucket
    std::memcpy(&v, &bits, 4);
  }
  std::atomic<int64_t> made{0};
  RankBoundary hi, lo;
  topkBoundaries(&two, streamed(x, 65536, &made), 0.4, 0.1, false, hi, lo);
  auto [s, e] = topkBand(static_cast<int64_t>(x.size()), static_cast<int64_t>(x.size()), 0.4, 0.1);
  EXPECT_EQ(bandMask(x, hi, lo), sortedMask(x, s, e - s));
  int64_t chunks = (static_cast<int64_t>(x.size()) + 65535) / 65536;
  EXPECT_EQ(made.load(), 8 + 3 * chunks + 2);
}

TEST(Selection, StreamedQuantileMatchesASortForAnyThreads) {
  ThreadPool two(2);
  for (bool bf16Like : {false, true})
    for (size_t n : {size_t{1}, size_t{2}, size_t{999}, size_t{70001}}) {
      std::vector<float> x = tiedKeys(n, static_cast<unsigned>(n) + 1, bf16Like);
      std::vector<float> sorted = x;
      std::sort(sorted.begin(), sorted.end());
      for (double q : {0.0, 0.1, 0.5, 0.77, 1.0}) {
        QuantilePosition p = quantilePosition(static_cast<int64_t>(n), q);
        double expected = p.lerp(sorted[p.below], sorted[p.above]);
        EXPECT_EQ(quantile(x.data(), static_cast<int64_t>(n), q), expected) << n << " " << q;
        for (ThreadPool *pool : {static_cast<ThreadPool *>(nullptr), &two})
          EXPECT_EQ(quantile(pool, streamed(x, 333, nullptr), q), expected) << n << " " << q;
      }
    }
}

// Model scope over streamed tensors on 2 threads hands out the boundaries of the serial buffer
// path.
TEST(Selection, StreamedModelTopKMatchesTheBuffer) {
  ThreadPool two(2);
  std::vector<std::vector<float>> tensors = {tiedKeys(5000, 1, false), tiedKeys(77, 2, true),
                                             tiedKeys(12345, 3, true)};
  for (double density : {0.1, 0.5})
    for (bool nonzero : {false, true}) {
      ModelTopK serial(density, 0.05, nonzero), parallel(density, 0.05, nonzero);
      for (int pass = 0; pass < 2; ++pass) {
        for (auto &t : tensors) {
          serial.count(t.data(), static_cast<int64_t>(t.size()));
          parallel.count(&two, streamed(t, 1000, nullptr));
        }
        EXPECT_EQ(serial.finishPass(), parallel.finishPass());
      }
      for (auto &t : tensors) {
        RankBoundary hi, lo, phi, plo;
        serial.boundaries(t.data(), static_cast<int64_t>(t.size()), hi, lo);
        parallel.boundaries(&two, streamed(t, 1000, nullptr), phi, plo);
        EXPECT_EQ(boundaryFields(phi, plo), boundaryFields(hi, lo));
      }
    }
}

/// Runs a model-scope top-k over `tensors` (streamed in chunks of 65536 on 2 threads, each
/// tensor named) with the sampled passes first or not; returns each tensor's boundaries (twice:
/// the merge handed out after a rewind too) and how many passes it took. `keysMade` counts the
/// chunks of keys computed.
struct ModelRun {
  std::vector<std::vector<double>> boundaries;
  int passes = 0;
  bool sampled = false;
  int64_t keysMade = 0;
};
ModelRun runModelTopK(const std::vector<std::vector<float>> &tensors, double density,
                      double skip, bool nonzero, bool sampleFirst) {
  ThreadPool two(2);
  ModelTopK topk(density, skip, nonzero);
  if (sampleFirst) {
    int64_t elements = 0;
    for (auto &t : tensors)
      elements += static_cast<int64_t>(t.size());
    EXPECT_TRUE(topk.sampleFirst(elements));
  }
  std::atomic<int64_t> made{0};
  ModelRun run;
  while (!topk.known()) {
    for (size_t t = 0; t < tensors.size(); ++t) {
      topk.setTensor("t" + std::to_string(t));
      topk.count(&two, streamed(tensors[t], 65536, &made));
    }
    topk.finishPass();
    ++run.passes;
  }
  run.sampled = topk.sampled();
  for (int round = 0; round < 2; ++round) {
    topk.rewind();
    for (size_t t = 0; t < tensors.size(); ++t) {
      RankBoundary hi, lo;
      topk.setTensor("t" + std::to_string(t));
      topk.boundaries(&two, streamed(tensors[t], 65536, &made), hi, lo);
      run.boundaries.push_back(boundaryFields(hi, lo));
    }
  }
  run.keysMade = made;
  return run;
}

/// Keys of bf16-like task vectors: magnitudes spread lognormally, each tensor at a scale of its
/// own, rounded to 8 significant bits so that many are equal.
std::vector<float> taskVectorKeys(size_t n, unsigned seed, float scale) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> magnitude(0.0f, 1.0f);
  std::bernoulli_distribution negative(0.5);
  std::vector<float> x(n);
  for (float &v : x) {
    float f = magnitude(rng) * scale * (negative(rng) ? -1.0f : 1.0f);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u &= 0xFFFF0000u;
    std::memcpy(&v, &u, 4);
  }
  return x;
}

// The sampled passes find the boundaries the counting passes find, in two passes and without
// counting each tensor's ties again at merge time: a small model (the sample is every key),
// and one of 3.4M keys whose tensors differ in scale (every other chunk sampled), each with
// ties at the cuts, with and without the non-zero population, one band and two.
TEST(Selection, SampledModelTopKMatchesTheCountingPasses) {
  std::vector<std::vector<float>> small = {tiedKeys(5000, 1, false), tiedKeys(77, 2, true),
                                           tiedKeys(140000, 3, true)};
  std::vector<std::vector<float>> large;
  const float scales[] = {0.01f, 0.003f, 0.02f, 0.001f, 0.008f};
  for (unsigned t = 0; t < 5; ++t)
    large.push_back(taskVectorKeys(t == 3 ? 1000 : 850000 + 1000 * t, t, scales[t]));
  for (auto *model : {&small, &large})
    for (double density : {0.2, 0.5})
      for (double skip : {0.0, 0.05})
        for (bool nonzero : {false, true}) {
          ModelRun counted = runModelTopK(*model, density, skip, nonzero, false);
          ModelRun sampled = runModelTopK(*model, density, skip, nonzero, true);
          std::string what = (model == &small ? "small" : "large") + std::string(" density ") +
                             std::to_string(density) + " skip " + std::to_string(skip) +
                             (nonzero ? " nonzero" : "");
          EXPECT_EQ(counted.passes, 2) << what;
          EXPECT_FALSE(counted.sampled) << what;
          EXPECT_EQ(sampled.passes, 2) << what;
          EXPECT_TRUE(sampled.sampled) << what;
          EXPECT_EQ(sampled.boundaries, counted.boundaries) << what;
          // The counting passes compute every chunk twice and twice more for the merges' tie
          // counts (and a chunk again for a tie's index); the sampled ones once, plus the
          // sample's chunks (all of the small model, half of the large one).
          int64_t chunks = 0;
          for (auto &t : *model)
            chunks += static_cast<int64_t>((t.size() + 65535) / 65536);
          EXPECT_GE(counted.keysMade, 4 * chunks) << what;
          EXPECT_LE(sampled.keysMade, (model == &small ? 2 : 1) * chunks + chunks / 2 + 32)
              << what;
        }
}

// Where the sample misleads (the sampled chunks, every other one, all small while the others
// are large) or its bands would hold too many keys (one value nearly everywhere), the counting
// passes follow and give their boundaries.
TEST(Selection, SampledModelTopKFallsBackToTheCountingPasses) {
  std::vector<std::vector<float>> misleading;
  for (unsigned t = 0; t < 2; ++t) {
    std::vector<float> x = taskVectorKeys(24 * 65536, t, 0.001f);
    for (size_t i = 0; i < x.size(); ++i)
      if ((i / 65536) % 2 == 1)
        x[i] *= 1000.0f; // odd chunks (24 a tensor: numbers over the model alike) large
    misleading.push_back(std::move(x));
  }
  std::vector<std::vector<float>> crowded = {std::vector<float>(5000000, 0.5f)};
  for (size_t i = 0; i < crowded[0].size(); i += 1001)
    crowded[0][i] = static_cast<float>(i % 7);
  // A model too large for bands of 2^22 keys from a sample of 2^21 (~500M keys at density
  // 0.2) takes the counting passes without a sample.
  EXPECT_TRUE(ModelTopK(0.2, 0.0, false).sampleFirst(int64_t{100} << 20));
  EXPECT_FALSE(ModelTopK(0.2, 0.0, false).sampleFirst(int64_t{1} << 30));
  for (auto *model : {&misleading, &crowded}) {
    std::string what = model == &crowded ? "crowded" : "misleading";
    ModelRun counted = runModelTopK(*model, 0.2, 0.0, false, false);
    ModelRun sampled = runModelTopK(*model, 0.2, 0.0, false, true);
    EXPECT_FALSE(sampled.sampled) << what;
    // The misled sample takes its two passes before the counting passes; the crowded one's
    // sample already shows a band too full.
    EXPECT_EQ(sampled.passes, model == &crowded ? 3 : 4) << what;
    EXPECT_EQ(sampled.boundaries, counted.boundaries) << what;
  }
}

/// Every way a row is ranked: the SIMD sort on each SIMD level this CPU has, and the byte
/// radix (nullptr, rowsort::use(nullptr)); printed once.
std::vector<const char *> rankingWays() {
  std::vector<const char *> ways = rowsort::targets();
  static bool printed = false;
  if (!std::exchange(printed, true)) {
    std::printf("row ranks: SIMD sorts on this CPU:");
    for (const char *t : ways)
      std::printf(" %s", t);
    std::printf("%s; and the radix\n", ways.empty() ? " none (CPU or build)" : "");
  }
  ways.push_back(nullptr);
  return ways;
}

/// The ranks of the rows of x (cols each) from whole-row chunks of streamed keys and from a
/// buffer, on 1 and 2 threads and every ranking way, equal a stable sort of each row.
void expectRanksOfAStableSort(const std::vector<float> &x, int64_t cols, const char *what) {
  ThreadPool one(1), two(2);
  int64_t rows = static_cast<int64_t>(x.size()) / cols;
  std::vector<float> expected(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int64_t> order(static_cast<size_t>(cols));
    std::iota(order.begin(), order.end(), r * cols);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return std::fabs(x[a]) < std::fabs(x[b]); });
    for (int64_t i = 0; i < cols; ++i)
      expected[order[i]] = static_cast<float>(i + 1);
  }
  const char *widest = rowsort::target();
  for (const char *way : rankingWays()) {
    rowsort::use(way);
    for (ThreadPool *pool : {&one, &two}) {
      std::vector<float> got(x.size(), -1), buffered(x.size(), -1);
      rowRanks(*pool, streamed(x, rowChunkSize(cols), nullptr), got.data(), cols);
      rowRanks(*pool, x.data(), buffered.data(), static_cast<int64_t>(x.size()), cols);
      EXPECT_EQ(got, expected) << what << ", cols " << cols << " on " << (way ? way : "the radix");
      EXPECT_EQ(buffered, expected) << what << ", cols " << cols << " on "
                                    << (way ? way : "the radix");
    }
  }
  rowsort::use(widest);
}

// Ranks from whole-row chunks of streamed keys, on 1 and 2 threads, equal a stable sort of each
// row; rows where a byte is shared by all (the skipped digits) and constant rows included.
// Every way a row is ranked: the SIMD sort of packed (magnitude, index) items on each SIMD
// level this CPU has (32-bit items where the row's varying bits and its index fit, else
// 64-bit), and the byte radix (rowsort::use(nullptr)). Widths 2, 3, 33, 4097 start a new index
// bit.
TEST(Selection, StreamedRowRanksMatchASortPerRow) {
  for (int64_t cols : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{33}, int64_t{512},
                       int64_t{1031}, int64_t{4097}, int64_t{5000}}) {
    int64_t rows = 37;
    std::vector<float> x = tiedKeys(static_cast<size_t>(rows * cols), 9, cols == 512 || cols == 33);
    if (cols == 1031) { // every bit of the magnitudes varies: all four byte passes
      std::mt19937 rng(5);
      std::normal_distribution<float> noise(0, 1);
      for (float &v : x)
        v = noise(rng);
    }
    std::fill(x.begin(), x.begin() + cols, 2.5f); // one magnitude: ranks in index order
    expectRanksOfAStableSort(x, cols, "tied keys");
  }
}

/// x with the bits `bits` of its magnitude set (a key's low mantissa bits).
float withBits(float x, uint32_t bits) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u |= bits;
  std::memcpy(&x, &u, 4);
  return x;
}

// Rows whose varying key bits and index need more than 32 bits by a few: rankRow sorts 32-bit
// items without the lowest varying bits when few keys have them (sortRareRuns puts those in
// order), else 64-bit items. bf16-like keys (low 16 bits clear), with a few keys given low
// bits: some equal to another key but for them (one run of the truncated sort), two in one
// run, one in a run of equal keys before and after it, and rows where a bit inside the dropped
// ones is set in every key (the row's least dropped bits are not zero). Then rows where many
// keys have them (the 64-bit items).
TEST(Selection, RowRanksWithoutTheLowestBitsMatchASortPerRow) {
  // The keys' bits 17..30 vary (0 is among them); low bits from `low` on make them 31 - low
  // bits wide, which with the index (11, 12 and 14 bits) is 6 bits past 32.
  for (auto [cols, low] : {std::pair<int64_t, unsigned>{1408, 4}, {4096, 5}, {11008, 7}}) {
    int64_t rows = 6;
    for (bool many : {false, true}) {
      std::vector<float> x = tiedKeys(static_cast<size_t>(rows * cols), 11, /*bf16Like=*/true);
      std::mt19937 rng(static_cast<unsigned>(cols));
      std::uniform_int_distribution<int64_t> column(0, cols - 1);
      for (int64_t r = 0; r < rows; ++r) {
        float *y = x.data() + r * cols;
        if (r % 2 == 1) // a bit among the dropped ones every key has
          for (int64_t i = 0; i < cols; ++i)
            y[i] = withBits(y[i], 1u << (low + 2));
        int64_t rare = many ? cols / 4 : 5;
        for (int64_t k = 0; k < rare; ++k) {
          int64_t a = column(rng), b = column(rng);
          y[a] = withBits(y[b], 1u << (low + k % 4) | (k % 3 == 0 ? 1u << (low + 5) : 0u));
        }
        // Two rare keys in one run of equal keys, the larger at the lower index.
        int64_t at = column(rng) / 2;
        for (int64_t i = at; i < at + 6; ++i)
          y[i] = y[at];
        y[at + 1] = withBits(y[at], 1u << (low + 3));
        y[at + 3] = withBits(y[at], 1u << (low + 1));
      }
      expectRanksOfAStableSort(x, cols, many ? "many keys with low bits" : "a few keys with low bits");
    }
  }
}

/// A row's sum as the GPU's row kernel adds it: L threads (the least power of two >= cols, 32
/// to 256), thread t adding columns t, t + L, ... in f64, then the shared-memory tree.
double gpuRowSum(const float *y, int64_t cols) {
  int64_t lanes = 32;
  while (lanes < 256 && lanes < cols)
    lanes *= 2;
  std::vector<double> part(static_cast<size_t>(lanes), 0.0);
  for (int64_t t = 0; t < lanes; ++t)
    for (int64_t c = t; c < cols; c += lanes)
      part[static_cast<size_t>(t)] += y[c];
  for (int64_t s = lanes / 2; s > 0; s /= 2)
    for (int64_t t = 0; t < s; ++t)
      part[static_cast<size_t>(t)] += part[static_cast<size_t>(t + s)];
  return part[0];
}

// Row sums in the GPU kernel's order, bit for bit, for rows narrower than its smallest block,
// between block sizes and wider than its largest; maxima in index order; a partial last row is
// not written.
TEST(Selection, StreamedRowSumsAreTheGpuKernelsSums) {
  ThreadPool two(2);
  for (int64_t cols : {int64_t{5}, int64_t{100}, int64_t{1000}}) {
    int64_t rows = 7;
    std::vector<float> x = tiedKeys(static_cast<size_t>(rows * cols + 3), 4, false);
    x[3] = 1e30f; // order matters in f64 only at this scale
    x[static_cast<size_t>(cols + 1)] = -3e29f;
    std::vector<float> sums(x.size(), -1), maxima(x.size(), -1);
    KeyChunks keys = streamed(x, rowChunkSize(cols), nullptr);
    rowReduce(two, keys, sums.data(), cols, /*sum=*/true);
    rowReduce(two, keys, maxima.data(), cols, /*sum=*/false);
    for (int64_t r = 0; r < rows; ++r) {
      double sum = gpuRowSum(x.data() + r * cols, cols), max = -INFINITY;
      for (int64_t i = r * cols; i < (r + 1) * cols; ++i)
        max = std::max(max, double(x[i]));
      EXPECT_EQ(sums[static_cast<size_t>(r)], static_cast<float>(sum)) << "cols " << cols << " row " << r;
      EXPECT_EQ(maxima[static_cast<size_t>(r)], static_cast<float>(max));
    }
    EXPECT_EQ(sums[static_cast<size_t>(rows)], -1); // the partial last row
  }
}

// Sibling row phases in one pass (RowJob): ranks, sums and maxima of different keys, each the
// same as rowRanks or rowReduce alone, each job's keys made once.
TEST(Selection, RowJobsMatchTheirPhasesAlone) {
  ThreadPool two(2);
  int64_t cols = 700, rows = 200;
  std::vector<std::vector<float>> x;
  for (unsigned seed : {1u, 2u, 3u})
    x.push_back(tiedKeys(static_cast<size_t>(rows * cols), seed, seed == 2));
  std::vector<std::vector<float>> out(3, std::vector<float>(x[0].size(), -1));
  std::atomic<int64_t> made[3] = {0, 0, 0};
  std::vector<KeyChunks> keys;
  for (size_t j = 0; j < 3; ++j)
    keys.push_back(streamed(x[j], rowChunkSize(cols), &made[j]));
  std::vector<RowJob> jobs = {RowJob{&keys[0], out[0].data(), RowJob::Op::Rank},
                              RowJob{&keys[1], out[1].data(), RowJob::Op::Sum},
                              RowJob{&keys[2], out[2].data(), RowJob::Op::Max}};
  rowPhases(two, jobs, cols);
  std::vector<float> rank(x[0].size()), sum(x[0].size(), -1), max(x[0].size(), -1); // sums, maxima: a value per row
  rowRanks(two, x[0].data(), rank.data(), static_cast<int64_t>(x[0].size()), cols);
  rowReduce(two, x[1].data(), sum.data(), static_cast<int64_t>(x[1].size()), cols, true);
  rowReduce(two, x[2].data(), max.data(), static_cast<int64_t>(x[2].size()), cols, false);
  EXPECT_EQ(out[0], rank);
  EXPECT_EQ(out[1], sum);
  EXPECT_EQ(out[2], max);
  int64_t chunks = (rows * cols + rowChunkSize(cols) - 1) / rowChunkSize(cols);
  for (auto &m : made)
    EXPECT_EQ(m.load(), chunks);
}

// A released block serves the next request of its size; one of another size frees kept blocks
// only as far as the most ever in use at once requires.
TEST(HostDevice, ReusesReleasedBlocksOfTheSameSize) {
  ThreadPool pool(1);
  HostDevice device(pool);
  void *first;
  {
    auto a = device.allocate(100000);
    first = a.get();
    static_cast<float *>(a.get())[24999] = 1;
  }
  auto b = device.allocate(100000);
  EXPECT_EQ(b.get(), first);
  auto c = device.allocate(100000); // none kept: a new block
  void *second = c.get();
  EXPECT_NE(second, first);
  b.reset();
  c.reset();
  // Two blocks kept, two were in use at most: a new size frees one of them and the other
  // still serves its size.
  auto d = device.allocate(5000);
  auto e = device.allocate(100000);
  EXPECT_TRUE(e.get() == first || e.get() == second);
  EXPECT_NE(d.get(), e.get());
}

TEST(KernelABI, NameHashIsFnv1a32) {
  EXPECT_EQ(mergec::rt::abi::nameHash(""), 2166136261u);
  EXPECT_EQ(mergec::rt::abi::nameHash("a"), 0xe40c292cu);
}

TEST(KernelABI, PhaseSlotsFollowTheContextBackToBack) {
  // A fused reduction of three values, a selection (four), a ranking (none), the final kernel.
  EXPECT_EQ(mergec::rt::abi::firstPhaseSlots({3, 4, 0, 0}),
            (std::vector<int64_t>{4, 7, 11, 11, 11}));
}

} // namespace
