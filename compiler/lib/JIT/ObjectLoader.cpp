//===- ObjectLoader.cpp - link kernel objects into this process -----------===//
#include "mergec/JIT/ObjectLoader.h"
#include "mergec/Runtime/Error.h"

#include "llvm/ExecutionEngine/Orc/LLJIT.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/TargetSelect.h"

namespace mergec {

ObjectLoader::ObjectLoader() {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  auto jit = llvm::orc::LLJITBuilder().create();
  if (!jit)
    throw rt::RuntimeError("jit: cannot start ORC: " + llvm::toString(jit.takeError()));
  jit_ = std::move(*jit);
}

ObjectLoader::~ObjectLoader() = default;

std::vector<rt::PackedKernel> ObjectLoader::load(const std::string &object,
                                                 const std::vector<std::string> &symbols) {
  auto dylib = jit_->createJITDylib("kernels" + std::to_string(count_++));
  if (!dylib)
    throw rt::RuntimeError("jit: " + llvm::toString(dylib.takeError()));
  auto buffer = llvm::MemoryBuffer::getMemBufferCopy(object, "kernel.o");
  if (auto err = jit_->addObjectFile(*dylib, std::move(buffer)))
    throw rt::RuntimeError("jit: cannot link a kernel object: " + llvm::toString(std::move(err)));
  std::vector<rt::PackedKernel> entries;
  for (const std::string &symbol : symbols) {
    auto address = jit_->lookup(*dylib, symbol);
    if (!address)
      throw rt::RuntimeError("jit: kernel object without " + symbol + ": " +
                             llvm::toString(address.takeError()));
    entries.push_back(address->toPtr<rt::PackedKernel>());
  }
  return entries;
}

} // namespace mergec
