//===- GpuSelectionTest.cpp - GpuSelection against runtime/lib/Selection.cpp -===//
// Every GpuSelection result must equal Selection.cpp's bit for bit (row sums: within one f32
// ulp, the f64 sum being reassociated). Skips, saying why, without a CUDA driver or device.
#include "GpuSelection.h"
#include "mergec/Runtime/Selection.h"
#include "mergec/Runtime/ThreadPool.h"
#include <gtest/gtest.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace mergec::rt;
using mergec::rt::cuda::CudaDriver;
using mergec::rt::cuda::GpuSelection;

namespace {

uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float fromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint64_t bitsOf(double d) {
  uint64_t u;
  std::memcpy(&u, &d, 8);
  return u;
}

enum class Style { Ties, Gauss, Bits, Constant, Sparse };
const char *name(Style s) {
  switch (s) {
  case Style::Ties: return "ties";
  case Style::Gauss: return "gauss-bf16";
  case Style::Bits: return "random-bits";
  case Style::Constant: return "constant";
  case Style::Sparse: return "sparse";
  }
  return "?";
}
constexpr Style kStyles[] = {Style::Ties, Style::Gauss, Style::Bits, Style::Constant,
                             Style::Sparse};

/// Keys with many ties, zeros (both signs), negatives, infinities and a few NaNs.
std::vector<float> makeKeys(size_t n, Style style, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> x(n);
  std::normal_distribution<float> gauss(0.0f, 0.02f);
  std::uniform_int_distribution<int> pick(-6, 6);
  std::uniform_real_distribution<double> unit(0, 1);
  for (size_t i = 0; i < n; ++i) {
    switch (style) {
    case Style::Ties:
      x[i] = static_cast<float>(pick(rng)) * 0.25f;
      if (x[i] == 0 && (rng() & 1))
        x[i] = -0.0f;
      break;
    case Style::Gauss: {
      double u = unit(rng);
      x[i] = u < 0.2 ? (u < 0.1 ? 0.0f : -0.0f) : fromBits(bitsOf(gauss(rng)) & 0xFFFF0000u);
      break;
    }
    case Style::Bits:
      x[i] = fromBits(static_cast<uint32_t>(rng()));
      break;
    case Style::Constant:
      x[i] = (rng() % 8 == 0) ? -1.5f : 1.5f;
      break;
    case Style::Sparse:
      x[i] = unit(rng) < 0.95 ? 0.0f : fromBits(bitsOf(gauss(rng)) & 0xFFFF0000u);
      break;
    }
  }
  if (style == Style::Gauss || style == Style::Ties) {
    // A few non-finite keys at fixed places (every function defines what they do).
    const size_t at[] = {n / 3, n / 2, n / 7, n - 1};
    const float special[] = {INFINITY, -INFINITY, fromBits(0x7FC00001u), fromBits(0xFFC00000u)};
    for (int k = 0; k < (style == Style::Gauss ? 4 : 2); ++k)
      if (n > 100)
        x[at[k]] = special[k];
  }
  return x;
}

/// The first differing element and how many differ, for a readable failure.
::testing::AssertionResult sameBits(const std::vector<float> &cpu, const std::vector<float> &gpu,
                                    bool withinUlp = false) {
  if (cpu.size() != gpu.size())
    return ::testing::AssertionFailure() << "sizes " << cpu.size() << " vs " << gpu.size();
  auto ordered = [](float f) -> int64_t {
    uint32_t u = bitsOf(f);
    return (u & 0x80000000u) ? -static_cast<int64_t>(u & 0x7FFFFFFFu) : static_cast<int64_t>(u);
  };
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    bool same = bitsOf(cpu[i]) == bitsOf(gpu[i]);
    if (!same && withinUlp)
      same = (std::isnan(cpu[i]) && std::isnan(gpu[i])) ||
             (!std::isnan(cpu[i]) && !std::isnan(gpu[i]) &&
              std::llabs(ordered(cpu[i]) - ordered(gpu[i])) <= 1);
    if (!same && bad++ == 0)
      first = i;
  }
  if (bad == 0)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << cpu.size() << " differ; first at " << first << ": cpu "
         << cpu[first] << " (0x" << std::hex << bitsOf(cpu[first]) << ") gpu " << std::dec
         << gpu[first] << " (0x" << std::hex << bitsOf(gpu[first]) << ")";
}

class GpuSelectionTest : public ::testing::Test {
protected:
  static inline const CudaDriver *driver = nullptr;
  static inline CUdevice device = 0;
  static inline CUcontext context = nullptr;
  static inline CUstream stream = nullptr;
  static inline std::string skipReason;

  static void SetUpTestSuite() {
    try {
      driver = &CudaDriver::get();
      int count = 0;
      driver->check(driver->cuDeviceGetCount(&count), "cuDeviceGetCount");
      if (count == 0) {
        skipReason = "no CUDA device";
        return;
      }
      driver->check(driver->cuDeviceGet(&device, 0), "cuDeviceGet");
      driver->check(driver->cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain");
      driver->check(driver->cuCtxSetCurrent(context), "cuCtxSetCurrent");
      // A blocking stream: it waits for the synchronous copies on the legacy default stream.
      driver->check(driver->cuStreamCreate(&stream, CU_STREAM_DEFAULT), "cuStreamCreate");
    } catch (const std::exception &e) {
      skipReason = std::string("no CUDA driver or device: ") + e.what();
    }
  }
  static void TearDownTestSuite() {
    if (stream)
      driver->cuStreamDestroy(stream);
    if (context)
      driver->cuDevicePrimaryCtxRelease(device);
    stream = nullptr;
    context = nullptr;
  }

  void SetUp() override {
    if (!skipReason.empty())
      GTEST_SKIP() << skipReason;
    driver->check(driver->cuCtxSetCurrent(context), "cuCtxSetCurrent");
    selection = std::make_unique<GpuSelection>(*driver, stream);
  }
  void TearDown() override { selection.reset(); }

  /// Device memory freed at scope exit.
  struct Buffer {
    const CudaDriver &d;
    CUdeviceptr ptr = 0;
    Buffer(const CudaDriver &d, size_t bytes) : d(d) {
      d.check(d.cuMemAlloc(&ptr, std::max<size_t>(bytes, 16)), "cuMemAlloc");
    }
    ~Buffer() { d.cuMemFree(ptr); }
  };
  std::unique_ptr<Buffer> upload(const std::vector<float> &x) {
    auto b = std::make_unique<Buffer>(*driver, x.size() * 4);
    if (!x.empty())
      driver->check(driver->cuMemcpyHtoD(b->ptr, x.data(), x.size() * 4), "cuMemcpyHtoD");
    // A pageable upload may still be in flight when cuMemcpyHtoD returns.
    driver->check(driver->cuCtxSynchronize(), "cuCtxSynchronize");
    return b;
  }
  std::vector<float> download(CUdeviceptr p, size_t n) {
    driver->check(driver->cuStreamSynchronize(stream), "cuStreamSynchronize");
    std::vector<float> x(n);
    if (n)
      driver->check(driver->cuMemcpyDtoH(x.data(), p, n * 4), "cuMemcpyDtoH");
    return x;
  }

  std::unique_ptr<GpuSelection> selection;
  ThreadPool pool{0};
};

constexpr size_t kSizes[] = {0, 1, 1000, 65536 * 3 + 17, 4u << 20};

/// Under the mock driver (tests/cuda/mock, which sets nothing: the lit test sets
/// MERGEC_MOCK_CUDA=1) the kernels run emulated thread by thread on the CPU: the 4M-element
/// sizes would take many minutes there, and the timing test means nothing.
bool mockDriver() {
  const char *v = std::getenv("MERGEC_MOCK_CUDA");
  return v && *v && std::string(v) != "0";
}
std::vector<size_t> sizes() {
  std::vector<size_t> out;
  for (size_t n : kSizes)
    if (!mockDriver() || n <= (1u << 18))
      out.push_back(n);
  return out;
}

TEST_F(GpuSelectionTest, TopKBoundariesMatchTheCpu) {
  uint64_t seed = 1;
  for (size_t n : sizes())
    for (Style style : kStyles) {
      auto x = makeKeys(n, style, seed++);
      auto keys = upload(x);
      bool big = n > 1000000;
      for (double density : {0.0, 0.001, 0.2, 0.9, 1.0})
        for (double skip : {0.0, 0.3, 0.99})
          for (bool nonzero : {false, true}) {
            if (big && (density == 0.001 || density == 0.9 || skip == 0.99))
              continue; // keeps the CPU reference's time down
            RankBoundary hi, lo, gpuHi, gpuLo;
            topkBoundaries(x.data(), static_cast<int64_t>(n), density, skip, nonzero, hi, lo);
            selection->topkBoundaries(keys->ptr, static_cast<int64_t>(n), density, skip, nonzero,
                                      gpuHi, gpuLo);
            SCOPED_TRACE(::testing::Message() << "n " << n << " " << name(style) << " density "
                                              << density << " skip " << skip << " nonzero "
                                              << nonzero);
            EXPECT_EQ(gpuHi.bits, hi.bits);
            EXPECT_EQ(gpuHi.index, hi.index);
            EXPECT_EQ(gpuLo.bits, lo.bits);
            EXPECT_EQ(gpuLo.index, lo.index);
          }
    }
}

// Model-scope top-k: the same ModelTopK fed by the GPU's 16-bit histograms and tie counts (the
// keys stay on the device) gives every tensor the boundaries the host's ModelTopK gives it,
// over a "model" of tensors of several sizes and styles (ties across tensors included).
TEST_F(GpuSelectionTest, ModelScopeTopKMatchesTheCpu) {
  std::vector<std::vector<float>> model;
  uint64_t seed = 500;
  for (size_t n : {size_t{1000}, size_t{65536 * 2 + 5}, size_t{1}, size_t{70001}})
    for (Style style : {Style::Ties, Style::Gauss, Style::Sparse})
      model.push_back(makeKeys(n, style, seed++));
  std::vector<std::unique_ptr<Buffer>> onDevice;
  for (auto &x : model)
    onDevice.push_back(upload(x));
  for (double density : {0.0, 0.01, 0.2, 0.97})
    for (double skip : {0.0, 0.5})
      for (bool nonzero : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "density " << density << " skip " << skip
                                          << " nonzero " << nonzero);
        ModelTopK cpu(density, skip, nonzero), gpu(density, skip, nonzero);
        for (bool done = false; !done;) {
          for (size_t t = 0; t < model.size(); ++t) {
            cpu.count(model[t].data(), static_cast<int64_t>(model[t].size()));
            selection->countModelTopK(gpu, onDevice[t]->ptr, static_cast<int64_t>(model[t].size()));
          }
          done = cpu.finishPass();
          ASSERT_EQ(gpu.finishPass(), done);
        }
        for (size_t t = 0; t < model.size(); ++t) {
          RankBoundary hi, lo, gpuHi, gpuLo;
          cpu.boundaries(model[t].data(), static_cast<int64_t>(model[t].size()), hi, lo);
          selection->modelTopKBoundaries(gpu, onDevice[t]->ptr,
                                         static_cast<int64_t>(model[t].size()), gpuHi, gpuLo);
          SCOPED_TRACE(::testing::Message() << "tensor " << t);
          EXPECT_EQ(gpuHi.bits, hi.bits);
          EXPECT_EQ(gpuHi.index, hi.index);
          EXPECT_EQ(gpuLo.bits, lo.bits);
          EXPECT_EQ(gpuLo.index, lo.index);
        }
        EXPECT_EQ(gpu.handedOut(), cpu.handedOut());
      }
}

TEST_F(GpuSelectionTest, QuantileMatchesTheCpu) {
  uint64_t seed = 100;
  for (size_t n : sizes())
    for (Style style : kStyles) {
      auto x = makeKeys(n, style, seed++);
      auto keys = upload(x);
      for (double q : {0.0, 0.1, 1.0 / 3, 0.5, 0.75, 0.999, 1.0}) {
        double cpu = quantile(x.data(), static_cast<int64_t>(n), q);
        double gpu = selection->quantile(keys->ptr, static_cast<int64_t>(n), q);
        EXPECT_TRUE(bitsOf(cpu) == bitsOf(gpu) || (std::isnan(cpu) && std::isnan(gpu)))
            << "n " << n << " " << name(style) << " q " << q << ": cpu " << cpu << " gpu " << gpu;
      }
    }
}

constexpr int64_t kCols[] = {1, 7, 4096, 14336, 40000, 65536};

TEST_F(GpuSelectionTest, RowRanksMatchTheCpu) {
  uint64_t seed = 200;
  for (size_t n : sizes())
    for (int64_t cols : kCols)
      for (Style style : {Style::Ties, Style::Gauss, Style::Bits, Style::Constant}) {
        if (n < 65536 && style != Style::Gauss && style != Style::Ties)
          continue;
        if (mockDriver() && n >= 65536 && style != Style::Ties)
          continue; // emulated thread by thread: one style of the large size is enough
        auto x = makeKeys(n, style, seed++);
        auto keys = upload(x);
        // Elements past the last whole row are not written: both keep the sentinel.
        std::vector<float> cpu(n, -7.0f);
        auto out = upload(cpu);
        rowRanks(pool, x.data(), cpu.data(), static_cast<int64_t>(n), cols);
        selection->rowRanks(keys->ptr, out->ptr, static_cast<int64_t>(n), cols);
        EXPECT_TRUE(sameBits(cpu, download(out->ptr, n)))
            << "n " << n << " cols " << cols << " " << name(style);
      }
}

TEST_F(GpuSelectionTest, RowReduceMatchesTheCpu) {
  uint64_t seed = 300;
  for (size_t n : sizes())
    for (int64_t cols : kCols)
      for (Style style : kStyles)
        for (bool sum : {false, true}) {
          if (sum && style == Style::Bits)
            continue; // sums of random bit patterns cancel catastrophically in any order
          if (n < 65536 && style != Style::Gauss && style != Style::Ties)
            continue;
          auto x = makeKeys(n, style, seed++);
          auto keys = upload(x);
          // A value per whole row; the rest of both buffers stays -7.
          std::vector<float> cpu(n, -7.0f);
          auto out = upload(cpu);
          rowReduce(pool, x.data(), cpu.data(), static_cast<int64_t>(n), cols, sum);
          selection->rowReduce(keys->ptr, out->ptr, static_cast<int64_t>(n), cols, sum);
          // Sums: the GPU reassociates the f64 sum (a fixed tree), so within one f32 ulp.
          EXPECT_TRUE(sameBits(cpu, download(out->ptr, n), sum))
              << "n " << n << " cols " << cols << " " << name(style) << (sum ? " sum" : " max");
        }
}

TEST_F(GpuSelectionTest, RepeatedCallsGiveTheSameBits) {
  auto x = makeKeys(65536 * 3 + 17, Style::Gauss, 7);
  auto keys = upload(x);
  int64_t n = static_cast<int64_t>(x.size()), cols = 4099;
  Buffer a(*driver, x.size() * 4), b(*driver, x.size() * 4);
  selection->rowReduce(keys->ptr, a.ptr, n, cols, true);
  size_t rows = static_cast<size_t>(n / cols); // a sum per row
  auto first = download(a.ptr, rows);
  for (int run = 0; run < 3; ++run) {
    selection->rowReduce(keys->ptr, b.ptr, n, cols, true);
    EXPECT_TRUE(sameBits(first, download(b.ptr, rows)));
  }
}

/// TIES' shape: a 4096 x 14336 bf16 tensor's magnitudes. Prints the GPU time of
/// topkBoundaries (cuEvents around the whole call, host round trips included) for the
/// benchmark, and checks the result once against the CPU.
TEST_F(GpuSelectionTest, TopKTimeOn4096x14336) {
  if (mockDriver())
    GTEST_SKIP() << "a GPU timing: meaningless under the mock driver (MERGEC_MOCK_CUDA)";
  const int64_t rows = 4096, cols = 14336, n = rows * cols;
  auto x = makeKeys(static_cast<size_t>(n), Style::Gauss, 42);
  auto keys = upload(x);
  const double density = 0.2;
  RankBoundary hi, lo, gpuHi, gpuLo;
  topkBoundaries(x.data(), n, density, 0, false, hi, lo);
  selection->topkBoundaries(keys->ptr, n, density, 0, false, gpuHi, gpuLo); // also warms up
  EXPECT_EQ(gpuHi.bits, hi.bits);
  EXPECT_EQ(gpuHi.index, hi.index);
  EXPECT_EQ(gpuLo.bits, lo.bits);
  EXPECT_EQ(gpuLo.index, lo.index);

  CUevent start, stop;
  driver->check(driver->cuEventCreate(&start, CU_EVENT_DEFAULT), "cuEventCreate");
  driver->check(driver->cuEventCreate(&stop, CU_EVENT_DEFAULT), "cuEventCreate");
  auto timeIt = [&](auto &&call) {
    std::vector<float> ms;
    for (int run = 0; run < 10; ++run) {
      driver->check(driver->cuEventRecord(start, stream), "cuEventRecord");
      call();
      driver->check(driver->cuEventRecord(stop, stream), "cuEventRecord");
      driver->check(driver->cuEventSynchronize(stop), "cuEventSynchronize");
      float t = 0;
      driver->check(driver->cuEventElapsedTime(&t, start, stop), "cuEventElapsedTime");
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    return std::pair<float, float>{ms.front(), ms[ms.size() / 2]};
  };
  auto topk = timeIt([&] {
    RankBoundary h, l;
    selection->topkBoundaries(keys->ptr, n, density, 0, false, h, l);
  });
  auto topkNonzero = timeIt([&] {
    RankBoundary h, l;
    selection->topkBoundaries(keys->ptr, n, density, 0, true, h, l);
  });
  Buffer out(*driver, static_cast<size_t>(n) * 4);
  auto ranks = timeIt([&] { selection->rowRanks(keys->ptr, out.ptr, n, cols); });
  auto sums = timeIt([&] { selection->rowReduce(keys->ptr, out.ptr, n, cols, true); });
  driver->cuEventDestroy(start);
  driver->cuEventDestroy(stop);
  std::printf("[gpu-selection] topkBoundaries 4096x14336 (58.7M keys) density 0.2: min %.3f ms, "
              "median %.3f ms\n",
              topk.first, topk.second);
  std::printf("[gpu-selection] topkBoundaries 4096x14336 nonzero: min %.3f ms, median %.3f ms\n",
              topkNonzero.first, topkNonzero.second);
  std::printf("[gpu-selection] rowRanks 4096x14336: min %.3f ms, median %.3f ms\n", ranks.first,
              ranks.second);
  std::printf("[gpu-selection] rowReduce sum 4096x14336: min %.3f ms, median %.3f ms\n",
              sums.first, sums.second);
  RecordProperty("topk_4096x14336_ms_min", std::to_string(topk.first));
  RecordProperty("topk_4096x14336_ms_median", std::to_string(topk.second));
  RecordProperty("rowranks_4096x14336_ms_median", std::to_string(ranks.second));
  RecordProperty("rowreduce_4096x14336_ms_median", std::to_string(sums.second));
}

} // namespace
