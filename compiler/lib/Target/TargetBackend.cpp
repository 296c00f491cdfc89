//===- TargetBackend.cpp - the backends mergec can compile for ------------===//
#include "mergec/Target/TargetBackend.h"
#include "mergec/Target/CPU/CPUBackend.h"
#ifdef MERGEC_HAVE_CUDA
#include "mergec/Target/CUDA/CUDABackend.h"
#endif

namespace mergec {

std::unique_ptr<TargetBackend> createTargetBackend(llvm::StringRef name) {
  if (name == "cpu")
    return std::make_unique<cpu::CPUBackend>();
#ifdef MERGEC_HAVE_CUDA
  if (name == "cuda")
    return std::make_unique<cuda::CUDABackend>();
#endif
  return nullptr;
}

std::string knownTargetBackends() {
#ifdef MERGEC_HAVE_CUDA
  return "cpu, cuda";
#else
  return "cpu";
#endif
}

} // namespace mergec
