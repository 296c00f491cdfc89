//===- DeviceFactory.cpp - the Device a run's --device names --------------===//
// Always compiled: a mergec without CUDA still knows the name "cuda" and says why it cannot
// use it, instead of calling it an unknown device.
#include "mergec/Runtime/Device.h"
#include "mergec/Runtime/Error.h"
#include <optional>
#include <string_view>
#if MERGEC_HAVE_CUDA
#include "CudaDevice.h"
#include "CudaDriver.h"
#endif

namespace mergec::rt {

namespace {

#if !MERGEC_HAVE_CUDA
[[noreturn]] void noCudaSupport() {
  throw RuntimeError("this mergec was built without CUDA support (configure with the CUDA "
                     "toolkit present)");
}
#endif

} // namespace

const char *deviceName(DeviceKind kind) {
  switch (kind) {
  case DeviceKind::CPU:
    return "cpu";
  case DeviceKind::CUDA:
    return "cuda";
  }
  return "?";
}

std::optional<DeviceKind> parseDeviceKind(std::string_view name) {
  for (DeviceKind kind : {DeviceKind::CPU, DeviceKind::CUDA})
    if (name == deviceName(kind))
      return kind;
  return std::nullopt;
}

std::string deviceNames() {
  return std::string(deviceName(DeviceKind::CPU)) + ", " + deviceName(DeviceKind::CUDA);
}

void checkDevice(const RunOptions &options) {
  if (options.device == DeviceKind::CPU)
    return;
#if MERGEC_HAVE_CUDA
  // Loads libcuda, cuInit and counts the devices: the errors a run without a GPU must stop at
  // before it writes anything. Creating the context is left to createDevice.
  (void)cuda::CudaDriver::get();
#else
  noCudaSupport();
#endif
}

std::unique_ptr<Device> createDevice(const RunOptions &options, ThreadPool &pool) {
  if (options.device == DeviceKind::CPU)
    return std::make_unique<HostDevice>(pool);
#if MERGEC_HAVE_CUDA
  return std::make_unique<cuda::CudaDevice>();
#else
  noCudaSupport();
#endif
}

} // namespace mergec::rt
