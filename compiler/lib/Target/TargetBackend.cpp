//===- TargetBackend.cpp - the backends mergec can compile for ------------===//
#include "mergec/Target/TargetBackend.h"
#include "mergec/Target/CPU/CPUBackend.h"

namespace mergec {

std::unique_ptr<TargetBackend> createTargetBackend(llvm::StringRef name) {
  if (name == "cpu")
    return std::make_unique<cpu::CPUBackend>();
  return nullptr;
}

std::string knownTargetBackends() { return "cpu"; }

} // namespace mergec
