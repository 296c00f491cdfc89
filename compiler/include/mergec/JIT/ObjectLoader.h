//===- ObjectLoader.h - link kernel objects into this process ---*- C++ -*-===//
#pragma once
#include "mergec/Runtime/Executor.h"
#include <memory>
#include <string>
#include <vector>

namespace llvm::orc {
class LLJIT;
}

namespace mergec {

/// Links relocatable objects (what the CPU backend emits and the kernel cache stores) into the
/// running process with ORC's JITLink, each into a JITDylib of its own, and resolves their
/// packed entry points. Library calls in the kernels (acosf) resolve to this process's libm.
class ObjectLoader {
public:
  ObjectLoader();
  ~ObjectLoader();

  /// Links `object` and returns the entry point of each of `symbols`, in order. Throws
  /// RuntimeError (and keeps nothing of it) when the object cannot be linked or lacks one.
  std::vector<rt::PackedKernel> load(const std::string &object,
                                     const std::vector<std::string> &symbols);

private:
  std::unique_ptr<llvm::orc::LLJIT> jit_;
  unsigned count_ = 0;
};

} // namespace mergec
