//===- DeviceFactoryTest.cpp - createDevice and checkDevice on the CPU ----===//
#include "mergec/Runtime/Device.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/ThreadPool.h"

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <string>

namespace rt = mergec::rt;

namespace {

std::string errorOf(const std::function<void()> &fn) {
  try {
    fn();
  } catch (const rt::RuntimeError &e) {
    return e.what();
  }
  return "";
}

TEST(DeviceFactory, CpuIsTheHost) {
  rt::ThreadPool pool(2);
  rt::RunOptions options; // device "cpu" by default
  EXPECT_NO_THROW(rt::checkDevice(options));
  std::unique_ptr<rt::Device> device = rt::createDevice(options, pool);
  ASSERT_TRUE(device);
  EXPECT_TRUE(device->hostResident());
  auto buffer = device->allocate(16);
  float x = 1.5f;
  device->copyToHost(buffer.get(), &x, sizeof x);
  EXPECT_EQ(*static_cast<float *>(buffer.get()), 1.5f);
  EXPECT_EQ(device->summary(3), "");
}

TEST(DeviceFactory, DeviceNamesAreOneList) {
  EXPECT_EQ(rt::parseDeviceKind("cpu"), rt::DeviceKind::CPU);
  EXPECT_EQ(rt::parseDeviceKind("cuda"), rt::DeviceKind::CUDA);
  EXPECT_EQ(rt::parseDeviceKind("tpu"), std::nullopt);
  EXPECT_EQ(rt::parseDeviceKind("CUDA"), std::nullopt);
  for (rt::DeviceKind kind : {rt::DeviceKind::CPU, rt::DeviceKind::CUDA})
    EXPECT_EQ(rt::parseDeviceKind(rt::deviceName(kind)), kind);
  EXPECT_EQ(rt::deviceNames(), "cpu, cuda");
}

// On a machine without libcuda (the build machine) --device cuda fails before anything is
// created; where a driver is installed the CUDA suite (tests/cuda) covers it instead.
TEST(DeviceFactory, CudaWithoutADriver) {
  if (void *handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) {
    dlclose(handle);
    GTEST_SKIP() << "a CUDA driver is installed here";
  }
  rt::RunOptions options;
  options.device = rt::DeviceKind::CUDA;
  std::string check = errorOf([&] { rt::checkDevice(options); });
#if MERGEC_HAVE_CUDA
  EXPECT_NE(check.find("no CUDA driver"), std::string::npos) << check;
  EXPECT_NE(check.find("libcuda.so.1"), std::string::npos) << check;
#else
  EXPECT_NE(check.find("built without CUDA support"), std::string::npos) << check;
#endif
  rt::ThreadPool pool(1);
  EXPECT_EQ(errorOf([&] { rt::createDevice(options, pool); }), check);
}

} // namespace
