//===- GpuEmulation.cpp - host builds of JIT-compiled GPU kernels, for tests --===//
#include "mergec/JIT/GpuEmulation.h"
#include "mergec/JIT/ObjectLoader.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Target/CPU/CPUBackend.h"
#include "mergec/Target/CPU/GpuKernelEmulation.h"

#include "llvm/IR/Constants.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Target/TargetMachine.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

namespace mergec {

namespace {

struct Registered {
  void (*entry)(void **);
  void **resolver;
};

std::mutex registryMutex;
std::map<std::string, Registered> &registry() {
  static std::map<std::string, Registered> kernels;
  return kernels;
}

} // namespace

bool gpuEmulationRequested() {
  const char *v = std::getenv("MERGEC_GPU_EMULATION");
  return v && *v && std::strcmp(v, "0") != 0;
}

void registerGpuEmulation(ObjectLoader &loader, const std::string &nvvmIR) {
  auto tm = cpu::hostTargetMachine();
  llvm::LLVMContext ctx;
  std::vector<cpu::EmulatedKernel> kernels;
  std::unique_ptr<llvm::Module> module = cpu::buildGpuEmulation(nvvmIR, ctx, *tm, kernels);
  // Each linked object gets its own resolver (the JITDylibs are separate), and the entries must
  // be visible to a lookup.
  llvm::GlobalVariable *resolver = module->getGlobalVariable(cpu::kGpuEmulationResolver);
  if (!resolver)
    throw rt::RuntimeError("MERGEC_GPU_EMULATION: the kernels' host build has no resolver");
  resolver->setInitializer(
      llvm::ConstantPointerNull::get(llvm::PointerType::getUnqual(module->getContext())));
  std::vector<std::string> symbols;
  for (const cpu::EmulatedKernel &k : kernels) {
    module->getFunction(k.entry)->setVisibility(llvm::GlobalValue::DefaultVisibility);
    symbols.push_back(k.entry);
  }
  symbols.push_back(cpu::kGpuEmulationResolver);
  std::vector<rt::PackedKernel> addresses = loader.load(cpu::emitObject(*module, *tm), symbols);
  auto *slot = reinterpret_cast<void **>(addresses.back());
  std::lock_guard<std::mutex> lock(registryMutex);
  for (size_t i = 0; i < kernels.size(); ++i)
    registry()[kernels[i].symbol] = {reinterpret_cast<void (*)(void **)>(addresses[i]), slot};
}

} // namespace mergec

extern "C" __attribute__((visibility("default"))) void (*mergec_gpu_emulation_find(
    const char *name, void ***resolver))(void **) {
  std::lock_guard<std::mutex> lock(mergec::registryMutex);
  auto it = mergec::registry().find(name);
  if (it == mergec::registry().end())
    return nullptr;
  *resolver = it->second.resolver;
  return it->second.entry;
}
