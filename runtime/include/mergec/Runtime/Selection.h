//===- Selection.h - exact order statistics over materialized keys -*- C++ -*-===//
// What selection and ranking phases do between their kernels: O(n) radix select (two 16-bit
// histogram passes, never a sort) for top-k boundaries and quantiles, and per-row ranks.
#pragma once
#include <cstdint>

namespace mergec::rt {

class ThreadPool;

/// "Rank below m" in the order |key| descending, ties by lowest flat index: an element is
/// below the boundary when its magnitude bits exceed `bits`, or equal them at a flat index
/// <= `index`. m = 0 gives bits = 2^32 - 1, index = -1 (nothing is below).
struct RankBoundary {
  double bits = 4294967295.0;
  double index = -1;
};

/// The boundaries of merge.topk_mask's band [s, s + k): k = int(density * N), N = n or (with
/// `nonzero`) the non-zero keys; s = int(skip * n), lowered to n - k when s + k > n.
void topkBoundaries(const float *keys, int64_t n, double density, double skip, bool nonzero,
                    RankBoundary &hi, RankBoundary &lo);

/// numpy.quantile(keys, q) with the default linear method, in f64. NaN when n == 0.
double quantile(const float *keys, int64_t n, double q);

/// ranks[i] = the rank 1..cols of |keys[i]| ascending within its row of `cols` elements, ties
/// by lowest index. Rows run in parallel on `pool`.
void rowRanks(ThreadPool &pool, const float *keys, float *ranks, int64_t n, int64_t cols);

} // namespace mergec::rt
