//===- KernelJIT.h - compile rules per dtype signature with ORC -*- C++ -*-===//
#pragma once
#include "mergec/Runtime/DType.h"
#include "mergec/Runtime/Executor.h"
#include "mlir/IR/BuiltinOps.h"
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace llvm {
class Error;
class Module;
class TargetMachine;
} // namespace llvm
namespace mlir {
class ExecutionEngine;
}

namespace mergec {

/// Compiles the rules of a fused module (one merge.kernel per rule) on demand, once per
/// (rule, input dtypes, output dtype), with mlir::ExecutionEngine (ORC, -O3, host CPU).
class KernelJIT : public rt::KernelSource {
public:
  /// `fused` must outlive the JIT; `verbose` prints each compile time to stderr.
  KernelJIT(mlir::ModuleOp fused, bool verbose);
  ~KernelJIT() override;

  std::vector<std::string> ruleInputs(size_t rule) override;
  rt::CompiledRule kernel(size_t rule, const std::vector<rt::DType> &inputs,
                          rt::DType output) override;

  /// The specialized module of `rule` lowered to loops over memrefs, or to the LLVM dialect.
  mlir::OwningOpRef<mlir::ModuleOp> lower(size_t rule, const std::vector<rt::DType> &inputs,
                                          rt::DType output, bool toLLVMDialect);
  /// LLVM IR after -O3, as the JIT runs it.
  std::string optimizedLLVMIR(size_t rule, const std::vector<rt::DType> &inputs,
                              rt::DType output);
  double totalCompileMs() const { return totalMs_; }
  size_t compiledCount() const { return engines_.size(); }

private:
  mlir::ModuleOp fused_;
  bool verbose_;
  std::unique_ptr<llvm::TargetMachine> optimizerTM_;
  std::function<llvm::Error(llvm::Module *)> optimizer_;
  std::map<std::string, std::unique_ptr<mlir::ExecutionEngine>> engines_;
  /// The phases' entry points per signature, so tensors after the first look up nothing.
  std::map<std::string, rt::CompiledRule> compiled_;
  double totalMs_ = 0;
};

} // namespace mergec
