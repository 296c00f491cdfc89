//===- CudaDriver.h - the CUDA driver API, loaded at run time ---*- C++ -*-===//
// mergec and merge executables must start on machines without a GPU, so nothing links
// libcuda: CudaDriver::get() dlopens libcuda.so.1 on first use and resolves the entry points
// below by the names cuda.h maps them to (cuMemAlloc is cuMemAlloc_v2, ...). Only cuda.h's
// types and macros are used at build time.
#pragma once
#include <cuda.h>
#include <string>

namespace mergec::rt::cuda {

// The symbol a cuda.h name resolves to, as a string: MERGEC_CU_NAME(cuMemAlloc) is
// "cuMemAlloc_v2" (the macro expands before it is stringized).
#define MERGEC_CU_STR2(x) #x
#define MERGEC_CU_NAME(x) MERGEC_CU_STR2(x)

// Every driver entry point mergec uses, once: the table's members and the loader come from it.
#define MERGEC_CUDA_DRIVER_FUNCTIONS(X)                                                           \
  X(cuInit)                                                                                      \
  X(cuDriverGetVersion)                                                                          \
  X(cuGetErrorName)                                                                              \
  X(cuGetErrorString)                                                                            \
  X(cuDeviceGetCount)                                                                            \
  X(cuDeviceGet)                                                                                 \
  X(cuDeviceGetName)                                                                             \
  X(cuDeviceGetAttribute)                                                                        \
  X(cuDeviceTotalMem)                                                                            \
  X(cuDevicePrimaryCtxRetain)                                                                    \
  X(cuDevicePrimaryCtxRelease)                                                                   \
  X(cuCtxSetCurrent)                                                                             \
  X(cuCtxSynchronize)                                                                            \
  X(cuCtxGetDevice)                                                                              \
  X(cuMemGetInfo)                                                                                \
  X(cuMemAlloc)                                                                                  \
  X(cuMemFree)                                                                                   \
  X(cuMemAllocHost)                                                                              \
  X(cuMemFreeHost)                                                                               \
  X(cuMemHostRegister)                                                                           \
  X(cuMemHostUnregister)                                                                         \
  X(cuMemcpyHtoD)                                                                                \
  X(cuMemcpyDtoH)                                                                                \
  X(cuMemcpyHtoDAsync)                                                                           \
  X(cuMemcpyDtoHAsync)                                                                           \
  X(cuMemcpyDtoDAsync)                                                                           \
  X(cuMemsetD8Async)                                                                             \
  X(cuMemsetD32Async)                                                                            \
  X(cuModuleLoadDataEx)                                                                          \
  X(cuModuleUnload)                                                                              \
  X(cuModuleGetFunction)                                                                         \
  X(cuFuncSetAttribute)                                                                          \
  X(cuLaunchKernel)                                                                              \
  X(cuStreamCreate)                                                                              \
  X(cuStreamDestroy)                                                                             \
  X(cuStreamSynchronize)                                                                         \
  X(cuStreamWaitEvent)                                                                           \
  X(cuEventCreate)                                                                               \
  X(cuEventDestroy)                                                                              \
  X(cuEventRecord)                                                                               \
  X(cuEventQuery)                                                                                \
  X(cuEventSynchronize)                                                                          \
  X(cuEventElapsedTime)

/// The loaded driver: one pointer per entry point, typed as cuda.h declares it.
struct CudaDriver {
#define MERGEC_CU_MEMBER(fn) decltype(&::fn) fn = nullptr;
  MERGEC_CUDA_DRIVER_FUNCTIONS(MERGEC_CU_MEMBER)
#undef MERGEC_CU_MEMBER

  /// The driver, loaded and cuInit'ed once. Throws RuntimeError "no CUDA driver: ..." when
  /// libcuda.so.1 cannot be loaded, lacks an entry point or cuInit fails.
  static const CudaDriver &get();

  /// Throws RuntimeError("<what>: <CUDA error name>: <description>") unless `status` is
  /// CUDA_SUCCESS.
  void check(CUresult status, const char *what) const;
};

} // namespace mergec::rt::cuda
