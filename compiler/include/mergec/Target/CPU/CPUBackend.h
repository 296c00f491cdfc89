//===- CPUBackend.h - host CPU code generation ------------------*- C++ -*-===//
#pragma once
#include "mergec/Target/TargetBackend.h"
#include <vector>

namespace llvm {
class LLVMContext;
class Module;
class TargetMachine;
} // namespace llvm

namespace mergec::cpu {

/// The host CPU: its target machine (-O3, PIC so that the same object is loaded by the JIT and
/// linked into executables) and description.
/// `cpu` names another x86-64 CPU to compile for instead (e.g. x86-64-v3, sapphirerapids;
/// LLVM's names): its features replace the host's, so executables run on machines that lack
/// some of this one's instructions.
std::unique_ptr<llvm::TargetMachine> hostTargetMachine(const std::string &cpu = "");
/// Whether LLVM's x86 backend knows `cpu`.
bool isKnownCPU(const std::string &cpu);

/// `loops` through the LLVM dialect into an optimized LLVM module for `tm` with mergec's packed
/// entry points (KernelABI.h): every function the lowering defined gets a wrapper
/// `mergec_<name>__<tag>(void **args)` and becomes internal, so several rules and signatures
/// link into one object without clashes.
std::unique_ptr<llvm::Module> buildLLVMModule(mlir::ModuleOp loops, llvm::LLVMContext &ctx,
                                              llvm::TargetMachine &tm, const std::string &tag);
/// `module` compiled by `tm` to an ELF relocatable object.
std::string emitObject(llvm::Module &module, llvm::TargetMachine &tm);

class CPUBackend : public TargetBackend {
public:
  llvm::StringRef name() const override { return "cpu"; }
  llvm::ArrayRef<EmitStage> stages() const override;
  std::string identity() const override;
  std::string emit(mlir::ModuleOp loops, llvm::StringRef stage, const std::string &tag) override;
  llvm::StringRef binaryStage() const override { return "obj"; }
};

} // namespace mergec::cpu
