//===- CudaDeviceTest.cpp - the CUDA device on a real GPU -----------------===//
// Every test needs a GPU and skips, saying why ("no CUDA driver (...)", "no CUDA device"), on a
// machine without one. The kernels are hand-written PTX with the packed ABI's parameters
// (KernelABI.h), as the compiler's CUDA target emits them.
#include "CudaDevice.h"
#include "mergec/Runtime/Device.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/PhaseRunner.h"
#include "mergec/Runtime/ThreadPool.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace rt = mergec::rt;
using rt::CompiledRule;
using rt::Device;
using rt::MemRefDescriptor;
using rt::cuda::CudaDevice;

namespace {

/// Skips the test when this machine cannot run CUDA, with checkDevice's reason.
#define REQUIRE_GPU()                                                                            \
  do {                                                                                           \
    rt::RunOptions gpuOptions;                                                                   \
    gpuOptions.device = rt::DeviceKind::CUDA;                                                    \
    try {                                                                                        \
      rt::checkDevice(gpuOptions);                                                               \
    } catch (const rt::RuntimeError &e) {                                                        \
      GTEST_SKIP() << e.what();                                                                  \
    }                                                                                            \
  } while (0)

// `add_scaled`: out[i] = a[i] + b[i] * (float)scalars[4] + layer over [begin, end), a
// grid-stride loop. Parameters: a, b, out (5 descriptor fields each: allocated, aligned, offset,
// size, stride), begin, end, layer, num_layers, scalars (5 fields). Targets sm_52 so the driver
// JIT-compiles it for whatever GPU runs the test (validated with ptxas -arch=sm_90).
//
// `block_ids` (a reduction's launch shape): one input, a f64 result; thread 0 of block c writes
// result[c] = c + 1000 * gridDim.x, so the test sees the grid the device chose.
const char *kPtx = R"PTX(
.version 7.0
.target sm_52
.address_size 64

.visible .entry add_scaled(
  .param .u64 p0, .param .u64 p1, .param .u64 p2, .param .u64 p3, .param .u64 p4,
  .param .u64 p5, .param .u64 p6, .param .u64 p7, .param .u64 p8, .param .u64 p9,
  .param .u64 p10, .param .u64 p11, .param .u64 p12, .param .u64 p13, .param .u64 p14,
  .param .u64 p15, .param .u64 p16, .param .f32 p17, .param .f32 p18,
  .param .u64 p19, .param .u64 p20, .param .u64 p21, .param .u64 p22, .param .u64 p23)
{
  .reg .pred %p<2>;
  .reg .b32 %r<5>;
  .reg .b64 %rd<20>;
  .reg .f32 %f<6>;
  .reg .f64 %fd<2>;

  ld.param.u64 %rd1, [p1];
  ld.param.u64 %rd2, [p2];
  ld.param.u64 %rd3, [p6];
  ld.param.u64 %rd4, [p7];
  ld.param.u64 %rd5, [p11];
  ld.param.u64 %rd6, [p12];
  ld.param.u64 %rd7, [p15];
  ld.param.u64 %rd8, [p16];
  ld.param.f32 %f1, [p17];
  ld.param.u64 %rd9, [p20];
  ld.param.u64 %rd10, [p21];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd3, %rd3;
  cvta.to.global.u64 %rd5, %rd5;
  cvta.to.global.u64 %rd9, %rd9;
  shl.b64 %rd2, %rd2, 2;
  add.s64 %rd1, %rd1, %rd2;
  shl.b64 %rd4, %rd4, 2;
  add.s64 %rd3, %rd3, %rd4;
  shl.b64 %rd6, %rd6, 2;
  add.s64 %rd5, %rd5, %rd6;
  shl.b64 %rd10, %rd10, 3;
  add.s64 %rd9, %rd9, %rd10;
  ld.global.f64 %fd1, [%rd9+32];
  cvt.rn.f32.f64 %f2, %fd1;
  mov.u32 %r1, %ctaid.x;
  mov.u32 %r2, %ntid.x;
  mov.u32 %r3, %tid.x;
  mov.u32 %r4, %nctaid.x;
  mul.wide.u32 %rd11, %r1, %r2;
  cvt.u64.u32 %rd12, %r3;
  add.s64 %rd11, %rd11, %rd12;
  add.s64 %rd11, %rd11, %rd7;
  mul.wide.u32 %rd13, %r4, %r2;
LOOP:
  setp.ge.s64 %p1, %rd11, %rd8;
  @%p1 bra DONE;
  shl.b64 %rd14, %rd11, 2;
  add.s64 %rd15, %rd1, %rd14;
  ld.global.f32 %f3, [%rd15];
  add.s64 %rd16, %rd3, %rd14;
  ld.global.f32 %f4, [%rd16];
  fma.rn.f32 %f5, %f4, %f2, %f3;
  add.f32 %f5, %f5, %f1;
  add.s64 %rd17, %rd5, %rd14;
  st.global.f32 [%rd17], %f5;
  add.s64 %rd11, %rd11, %rd13;
  bra LOOP;
DONE:
  ret;
}

.visible .entry block_ids(
  .param .u64 q0, .param .u64 q1, .param .u64 q2, .param .u64 q3, .param .u64 q4,
  .param .u64 q5, .param .u64 q6, .param .u64 q7, .param .u64 q8, .param .u64 q9,
  .param .u64 q10, .param .u64 q11, .param .f32 q12, .param .f32 q13,
  .param .u64 q14, .param .u64 q15, .param .u64 q16, .param .u64 q17, .param .u64 q18)
{
  .reg .pred %p<2>;
  .reg .b32 %r<4>;
  .reg .b64 %rd<6>;
  .reg .f64 %fd<4>;

  mov.u32 %r1, %tid.x;
  setp.ne.u32 %p1, %r1, 0;
  @%p1 bra END;
  ld.param.u64 %rd1, [q6];
  ld.param.u64 %rd2, [q7];
  cvta.to.global.u64 %rd1, %rd1;
  shl.b64 %rd2, %rd2, 3;
  add.s64 %rd1, %rd1, %rd2;
  mov.u32 %r2, %ctaid.x;
  mov.u32 %r3, %nctaid.x;
  cvt.rn.f64.u32 %fd1, %r2;
  cvt.rn.f64.u32 %fd2, %r3;
  fma.rn.f64 %fd3, %fd2, 0d408F400000000000, %fd1;
  mul.wide.u32 %rd3, %r2, 8;
  add.s64 %rd4, %rd1, %rd3;
  st.global.f64 [%rd4], %fd3;
END:
  ret;
}
)PTX";

CompiledRule ptxRule(std::shared_ptr<const std::string> image) {
  CompiledRule rule;
  CompiledRule::Phase map;
  map.kind = CompiledRule::Kind::Map;
  map.symbol = "add_scaled";
  rule.phases.push_back(map);
  rule.deviceImage = std::move(image);
  // scalars[4] is the run-time param `w` (KernelABI.h: params follow the phases' slots).
  rule.params = {"w"};
  rule.firstParamSlot = 4;
  rule.paramValues = {2.0};
  rule.scalarSlots = 5;
  return rule;
}

std::shared_ptr<void> upload(Device &device, const std::vector<float> &host) {
  std::shared_ptr<void> buffer = device.allocate(host.size() * sizeof(float));
  device.copyAsync(buffer.get(), host.data(), host.size() * sizeof(float), true,
                   Device::Queue::Compute);
  return buffer;
}

MemRefDescriptor desc(void *p, int64_t n) { return {p, p, 0, n, 1}; }

TEST(CudaDevice, LaunchesPtxKernelThroughTheDevice) {
  REQUIRE_GPU();
  CudaDevice device;
  EXPECT_FALSE(device.hostResident());
  // Not a multiple of the block, more blocks than the grid cap: the grid-stride loop covers all.
  const int64_t n = 3'000'017;
  std::vector<float> a(n), b(n);
  for (int64_t i = 0; i < n; ++i) {
    a[i] = static_cast<float>(i % 1000);
    b[i] = static_cast<float>(i % 7) - 3.0f;
  }
  auto da = upload(device, a), db = upload(device, b);
  auto out = device.allocate(n * sizeof(float));
  CompiledRule rule = ptxRule(std::make_shared<const std::string>(kPtx));
  std::vector<double> scalars = {0, 0, 0, 0, 2.0};
  device.launch(rule, 0, {desc(da.get(), n), desc(db.get(), n)},
                [&](size_t) { return desc(out.get(), n); }, n, 0.5f, 32.0f,
                desc(scalars.data(), static_cast<int64_t>(scalars.size())), nullptr);
  // The host array changes right after the launch: the kernel must still see 2.0.
  scalars[4] = 100.0;
  std::vector<float> result(n);
  device.copyToHost(result.data(), out.get(), n * sizeof(float));
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(result[i], a[i] + b[i] * 2.0f + 0.5f) << "element " << i;
  rt::cuda::CudaStats stats = device.stats();
  EXPECT_EQ(stats.launches, 1u);
  EXPECT_GT(stats.kernelMs, 0.0);
  EXPECT_NE(device.summary(1).find(stats.device), std::string::npos);
}

TEST(CudaDevice, RunRuleDrivesTheDevice) {
  REQUIRE_GPU();
  CudaDevice device;
  const int64_t n = 70'000;
  std::vector<float> a(n), b(n);
  for (int64_t i = 0; i < n; ++i) {
    a[i] = static_cast<float>(i);
    b[i] = 1.0f;
  }
  auto da = upload(device, a), db = upload(device, b);
  auto out = device.allocate(n * sizeof(float));
  rt::TensorInfo tensor;
  tensor.name = "model.layers.3.mlp.weight";
  tensor.dtype = rt::DType::F32;
  tensor.shape = {700, 100};
  tensor.nbytes = n * sizeof(float);
  CompiledRule rule = ptxRule(std::make_shared<const std::string>(kPtx));
  rt::runRule(device, rule, {da.get(), db.get()}, out.get(), tensor, 3.0f, 32.0f);
  std::vector<float> result(n);
  device.copyToHost(result.data(), out.get(), n * sizeof(float));
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(result[i], a[i] + 2.0f + 3.0f) << "element " << i;
}

TEST(CudaDevice, ReductionsLaunchOneBlockPerChunk) {
  REQUIRE_GPU();
  CudaDevice device;
  const int64_t n = 3 * Device::kChunk + 5; // 4 chunks
  size_t chunks = Device::chunkCount(n);
  auto in = device.allocate(n * sizeof(float));
  auto partials = device.allocate(chunks * sizeof(double));
  CompiledRule rule;
  CompiledRule::Phase reduce;
  reduce.kind = CompiledRule::Kind::Reduce;
  reduce.symbol = "block_ids";
  reduce.reductions = {CompiledRule::Reduction::Sum};
  rule.phases.push_back(reduce);
  rule.deviceImage = std::make_shared<const std::string>(kPtx);
  std::vector<double> scalars(4, 0.0);
  auto *base = static_cast<double *>(partials.get());
  device.launch(
      rule, 0, {desc(in.get(), n)},
      [&](size_t c) {
        double *p = base + c;
        return MemRefDescriptor{p, p, 0, 1, 1};
      },
      n, 0, 0, desc(scalars.data(), 4), nullptr);
  std::vector<double> result(chunks);
  device.copyToHost(result.data(), partials.get(), chunks * sizeof(double));
  for (size_t c = 0; c < chunks; ++c)
    EXPECT_EQ(result[c], static_cast<double>(c) + 1000.0 * chunks) << "chunk " << c;
}

TEST(CudaDevice, EmptyTensorLaunchesNothing) {
  REQUIRE_GPU();
  CudaDevice device;
  CompiledRule rule = ptxRule(std::make_shared<const std::string>(kPtx));
  std::vector<double> scalars(5, 0.0);
  device.launch(rule, 0, {desc(nullptr, 0), desc(nullptr, 0)},
                [&](size_t) { return desc(nullptr, 0); }, 0, 0, 0, desc(scalars.data(), 5),
                nullptr);
  EXPECT_EQ(device.stats().launches, 0u);
}

TEST(CudaDevice, AllocateAndCopyRoundTrip) {
  REQUIRE_GPU();
  CudaDevice device;
  const size_t n = 1 << 20;
  std::shared_ptr<void> pinned = device.allocateHost(n * sizeof(float));
  auto *host = static_cast<float *>(pinned.get());
  for (size_t i = 0; i < n; ++i)
    host[i] = static_cast<float>(i) * 0.25f;
  auto buffer = device.allocate(n * sizeof(float));
  // Compute's memory: the Upload queue waits for it, Compute for the upload.
  device.wait(Device::Queue::Upload, device.record(Device::Queue::Compute));
  device.copyAsync(buffer.get(), host, n * sizeof(float), true, Device::Queue::Upload);
  device.wait(Device::Queue::Compute, device.record(Device::Queue::Upload));
  std::vector<float> back(n);
  device.copyToHost(back.data(), buffer.get(), n * sizeof(float));
  EXPECT_EQ(std::memcmp(back.data(), host, n * sizeof(float)), 0);
  std::vector<float> staging;
  const float *view = device.hostView(static_cast<const float *>(buffer.get()), 1000, staging);
  EXPECT_EQ(view, staging.data());
  EXPECT_EQ(view[999], 999 * 0.25f);
  // Download into page-locked memory on its own queue.
  std::shared_ptr<void> down = device.allocateHost(n * sizeof(float));
  device.copyAsync(down.get(), buffer.get(), n * sizeof(float), false, Device::Queue::Download);
  device.synchronize(device.record(Device::Queue::Download));
  EXPECT_EQ(std::memcmp(down.get(), host, n * sizeof(float)), 0);
  rt::cuda::CudaStats stats = device.stats();
  EXPECT_GE(stats.hostToDeviceBytes, n * sizeof(float));
  EXPECT_GE(stats.deviceToHostBytes, 2 * n * sizeof(float));
}

TEST(CudaDevice, CachingAllocatorReusesBlocks) {
  REQUIRE_GPU();
  CudaDevice device;
  void *first;
  {
    auto block = device.allocate(3 << 20);
    first = block.get();
  }
  uint64_t allocations = device.stats().deviceAllocations;
  auto again = device.allocate(3 << 20);
  EXPECT_EQ(again.get(), first);
  EXPECT_EQ(device.stats().deviceAllocations, allocations);
  EXPECT_EQ(device.stats().reusedAllocations, 1u);
  // A much smaller request does not take a large block.
  auto small = device.allocate(4096);
  EXPECT_NE(small.get(), first);
  uint64_t peak = device.stats().peakDeviceBytes;
  EXPECT_GE(peak, (3u << 20) + 4096u);
  small.reset();
  again.reset();
  device.trimCache();
  EXPECT_LE(device.stats().deviceBytesHeld, 4096u); // only the scalars buffer, if any
}

TEST(CudaDevice, BadPtxNamesTheKernelAndTheLog) {
  REQUIRE_GPU();
  CudaDevice device;
  CompiledRule rule = ptxRule(std::make_shared<const std::string>(
      ".version 7.0\n.target sm_52\n.address_size 64\n.visible .entry add_scaled() { bogus; }\n"));
  std::vector<double> scalars(5, 0.0);
  try {
    device.launch(rule, 0, {}, [&](size_t) { return desc(nullptr, 1); }, 1, 0, 0,
                  desc(scalars.data(), 5), nullptr);
    FAIL() << "expected an error";
  } catch (const rt::RuntimeError &e) {
    std::string what = e.what();
    EXPECT_NE(what.find("add_scaled"), std::string::npos) << what;
    EXPECT_NE(what.find("CUDA_ERROR"), std::string::npos) << what;
  }
}

TEST(CudaDevice, MissingKernelAndMissingImage) {
  REQUIRE_GPU();
  CudaDevice device;
  CompiledRule rule = ptxRule(std::make_shared<const std::string>(kPtx));
  rule.phases[0].symbol = "no_such_kernel";
  std::vector<double> scalars(5, 0.0);
  auto launch = [&] {
    device.launch(rule, 0, {}, [&](size_t) { return desc(nullptr, 1); }, 1, 0, 0,
                  desc(scalars.data(), 5), nullptr);
  };
  try {
    launch();
    FAIL() << "expected an error";
  } catch (const rt::RuntimeError &e) {
    EXPECT_NE(std::string(e.what()).find("no_such_kernel"), std::string::npos) << e.what();
  }
  rule.deviceImage = nullptr;
  try {
    launch();
    FAIL() << "expected an error";
  } catch (const rt::RuntimeError &e) {
    EXPECT_NE(std::string(e.what()).find("no GPU code"), std::string::npos) << e.what();
  }
}

TEST(CudaDevice, CreateDevice) {
  rt::ThreadPool pool(1);
  rt::RunOptions options;
  options.device = rt::DeviceKind::CPU;
  EXPECT_TRUE(rt::createDevice(options, pool)->hostResident());
  REQUIRE_GPU();
  options.device = rt::DeviceKind::CUDA;
  std::unique_ptr<Device> device = rt::createDevice(options, pool);
  EXPECT_FALSE(device->hostResident());
  EXPECT_GT(device->freeMemory(), 0u);
  EXPECT_NE(device->name(), "cpu");
}

} // namespace
