//===- ThreadPoolTest.cpp - fixed pool for chunked kernels ----------------===//
#include "mergec/Runtime/ThreadPool.h"

#include <chrono>
#include <gtest/gtest.h>
#include <set>
#include <stdexcept>

using mergec::rt::ThreadPool;

namespace {
/// Runs `numChunks` chunks and checks each ran exactly once.
void expectEachChunkOnce(ThreadPool &pool, size_t numChunks) {
  std::vector<std::atomic<int>> counts(numChunks);
  pool.parallelFor(numChunks, [&](size_t c) { counts[c].fetch_add(1); });
  for (size_t c = 0; c < numChunks; ++c)
    ASSERT_EQ(counts[c].load(), 1) << "chunk " << c << " of " << numChunks;
}
} // namespace

TEST(ThreadPoolTest, SizeCountsTheCaller) {
  EXPECT_EQ(ThreadPool(1).size(), 1u);
  EXPECT_EQ(ThreadPool(8).size(), 8u);
  EXPECT_GE(ThreadPool(0).size(), 1u);
}

TEST(ThreadPoolTest, EveryChunkRunsExactlyOnce) {
  for (unsigned threads : {1u, 2u, 8u}) {
    ThreadPool pool(threads);
    for (size_t n : {0u, 1u, 2u, 7u, 8u, 9u, 1000u})
      expectEachChunkOnce(pool, n);
  }
}

TEST(ThreadPoolTest, ZeroChunksNeverCallsFn) {
  ThreadPool pool(4);
  bool called = false;
  pool.parallelFor(0, [&](size_t) { called = true; });
  EXPECT_FALSE(called);
}

TEST(ThreadPoolTest, ReusedAcrossManyCalls) {
  ThreadPool pool(8);
  std::atomic<uint64_t> sum{0};
  for (int round = 0; round < 2000; ++round) {
    size_t n = static_cast<size_t>(round % 17);
    pool.parallelFor(n, [&](size_t c) { sum.fetch_add(c + 1); });
  }
  // sum over rounds of n(n+1)/2 with n = round % 17
  uint64_t expected = 0;
  for (int round = 0; round < 2000; ++round) {
    uint64_t n = static_cast<uint64_t>(round % 17);
    expected += n * (n + 1) / 2;
  }
  EXPECT_EQ(sum.load(), expected);
}

TEST(ThreadPoolTest, ResultsAreVisibleToTheCaller) {
  ThreadPool pool(4);
  std::vector<uint64_t> out(1024, 0); // plain writes, read after parallelFor returns
  std::mutex m;
  std::set<std::thread::id> ids;
  pool.parallelFor(out.size(), [&](size_t c) {
    uint64_t v = 0;
    for (uint64_t i = 0; i <= c * 10; ++i)
      v += i;
    out[c] = v;
    std::lock_guard<std::mutex> lock(m);
    ids.insert(std::this_thread::get_id());
  });
  for (size_t c = 0; c < out.size(); ++c)
    ASSERT_EQ(out[c], (c * 10) * (c * 10 + 1) / 2);
  EXPECT_GE(ids.size(), 1u);
  EXPECT_LE(ids.size(), 4u);
}

TEST(ThreadPoolTest, ChunksRunConcurrently) {
  // Each of two chunks waits for the other to start: only possible with two threads at work.
  ThreadPool pool(2);
  std::atomic<int> started{0};
  std::atomic<bool> timedOut{false};
  pool.parallelFor(2, [&](size_t) {
    started.fetch_add(1);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (started.load() < 2) {
      if (std::chrono::steady_clock::now() > deadline) {
        timedOut = true;
        return;
      }
      std::this_thread::yield();
    }
  });
  EXPECT_FALSE(timedOut.load());
}

TEST(ThreadPoolTest, ExceptionsPropagateAndThePoolStaysUsable) {
  ThreadPool pool(4);
  EXPECT_THROW(pool.parallelFor(100,
                                [](size_t c) {
                                  if (c == 37)
                                    throw std::runtime_error("chunk 37 failed");
                                }),
               std::runtime_error);
  expectEachChunkOnce(pool, 500);
}

TEST(ThreadPoolTest, NestedCallRunsInline) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> counts(8 * 8);
  pool.parallelFor(8, [&](size_t outer) {
    pool.parallelFor(8, [&](size_t inner) { counts[outer * 8 + inner].fetch_add(1); });
  });
  for (auto &c : counts)
    EXPECT_EQ(c.load(), 1);
}
