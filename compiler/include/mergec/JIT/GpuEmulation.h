//===- GpuEmulation.h - host builds of JIT-compiled GPU kernels, for tests -*- C++ -*-===//
// `mergec compile --emit=exe --device cuda --gpu-emulation` links the host builds of the GPU
// kernels into an executable (Target/CPU/GpuKernelEmulation.h), for the mock CUDA driver. This
// is the same for `mergec run --device cuda`, whose kernels are compiled at run time: with
// MERGEC_GPU_EMULATION=1 in the environment (tests only), the JIT also builds each rule's GPU
// kernels for the host, links them into the process and registers them by kernel name; the
// mock finds them through mergec_gpu_emulation_find (exported by mergec), so the JIT's GPU
// path (PTX through the kernel cache, module loading, launches) runs end to end without a GPU.
#pragma once
#include <string>

namespace mergec {

class ObjectLoader;

/// Whether MERGEC_GPU_EMULATION asks for host builds of the GPU kernels.
bool gpuEmulationRequested();

/// Builds `nvvmIR` (the cuda target's nvvm-llvm stage of one rule and signature) for the host,
/// links it with `loader` and registers its kernels.
void registerGpuEmulation(ObjectLoader &loader, const std::string &nvvmIR);

} // namespace mergec

/// For the mock driver: the host build of kernel `name` (its `void entry(void **params)`), and
/// in `*resolver` the address of the pointer its stubs call through; null when none was built.
extern "C" void (*mergec_gpu_emulation_find(const char *name, void ***resolver))(void **);
