//===- SelectionTest.cpp - radix select, quantiles and row ranks ----------===//
#include "mergec/Runtime/KernelABI.h"
#include "mergec/Runtime/Selection.h"
#include "mergec/Runtime/ThreadPool.h"
#include <gtest/gtest.h>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <cstring>
#include <random>
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

TEST(Selection, RowReduceFillsEachRowWithItsSumOrMax) {
  ThreadPool pool(2);
  std::vector<float> x = {1, 2, 3, /* row 2 */ -4, 0.5f, 1e8f};
  std::vector<float> s(6), m(6);
  rowReduce(pool, x.data(), s.data(), 6, 3, /*sum=*/true);
  rowReduce(pool, x.data(), m.data(), 6, 3, /*sum=*/false);
  EXPECT_EQ(s, (std::vector<float>{6, 6, 6, 1e8f - 3.5f, 1e8f - 3.5f, 1e8f - 3.5f}));
  EXPECT_EQ(m, (std::vector<float>{3, 3, 3, 1e8f, 1e8f, 1e8f}));
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
