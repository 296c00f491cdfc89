//===- CudaDriver.cpp - load libcuda.so.1 at run time ---------------------===//
#include "CudaDriver.h"
#include "mergec/Runtime/Error.h"

#include <dlfcn.h>

namespace mergec::rt::cuda {

namespace {

std::string errorText(const CudaDriver &driver, CUresult status) {
  const char *name = nullptr, *description = nullptr;
  // Both may fail (an unknown code): then the number is all there is.
  if (driver.cuGetErrorName && driver.cuGetErrorName(status, &name) != CUDA_SUCCESS)
    name = nullptr;
  if (driver.cuGetErrorString && driver.cuGetErrorString(status, &description) != CUDA_SUCCESS)
    description = nullptr;
  std::string text = name ? name : "CUDA error " + std::to_string(static_cast<int>(status));
  if (description)
    text += std::string(": ") + description;
  return text;
}

/// The driver, or the message saying why there is none. Loaded once per process: a failed load
/// is not retried (the answer would be the same) and every caller sees the same message.
struct Loaded {
  CudaDriver driver;
  std::string error;
};

/// The versioned symbols an older driver lacks whose unversioned predecessor has the same
/// signature and is as good for mergec: cuEventElapsedTime_v2 is CUDA 12.8's (driver r570);
/// timing with the old one beats refusing an older driver.
void *olderSymbol(void *handle, const std::string &name) {
  if (name == "cuEventElapsedTime_v2")
    return ::dlsym(handle, "cuEventElapsedTime");
  return nullptr;
}

Loaded load() {
  Loaded loaded;
  CudaDriver &d = loaded.driver;
  // RTLD_LOCAL: the driver's symbols stay out of the global namespace (nothing else here
  // should bind to them). The handle is never closed: the driver stays for the process.
  void *handle = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *why = ::dlerror();
    // dlerror names the library itself ("libcuda.so.1: cannot open shared object file: ...").
    loaded.error = std::string("no CUDA driver (") +
                   (why ? why : "libcuda.so.1 cannot be loaded") + ")";
    return loaded;
  }
  // MERGEC_CU_NAME gives the versioned symbol cuda.h maps each name to (cuMemAlloc_v2, ...):
  // the unversioned ones are the old ABIs kept for old binaries.
#define MERGEC_CU_LOAD(fn)                                                                        \
  d.fn = reinterpret_cast<decltype(d.fn)>(::dlsym(handle, MERGEC_CU_NAME(fn)));                   \
  if (!d.fn)                                                                                     \
    d.fn = reinterpret_cast<decltype(d.fn)>(olderSymbol(handle, MERGEC_CU_NAME(fn)));             \
  if (!d.fn) {                                                                                   \
    loaded.error = std::string("no CUDA driver: ") + MERGEC_CU_NAME(fn) +                        \
                   " missing from libcuda.so.1 (a driver older than this mergec's CUDA headers)"; \
    return loaded;                                                                               \
  }
  MERGEC_CUDA_DRIVER_FUNCTIONS(MERGEC_CU_LOAD)
#undef MERGEC_CU_LOAD
  if (CUresult status = d.cuInit(0); status != CUDA_SUCCESS) {
    // cuInit reports a machine with the driver but no usable GPU as CUDA_ERROR_NO_DEVICE.
    loaded.error = "no CUDA device (cuInit: " + errorText(d, status) + ")";
    return loaded;
  }
  int count = 0;
  if (CUresult status = d.cuDeviceGetCount(&count); status != CUDA_SUCCESS) {
    loaded.error = "no CUDA device (cuDeviceGetCount: " + errorText(d, status) + ")";
    return loaded;
  }
  if (count == 0)
    loaded.error = "no CUDA device";
  return loaded;
}

} // namespace

const CudaDriver &CudaDriver::get() {
  // A function-local static: initialised exactly once, thread-safe (C++11 magic statics).
  static const Loaded loaded = load();
  if (!loaded.error.empty())
    throw RuntimeError(loaded.error);
  return loaded.driver;
}

void CudaDriver::check(CUresult status, const char *what) const {
  if (status != CUDA_SUCCESS)
    throw RuntimeError(std::string(what) + ": " + errorText(*this, status));
}

} // namespace mergec::rt::cuda
