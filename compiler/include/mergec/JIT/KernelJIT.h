//===- KernelJIT.h - compile rules per dtype signature, through the cache -*- C++ -*-===//
#pragma once
#include "mergec/JIT/KernelCache.h"
#include "mergec/JIT/ObjectLoader.h"
#include "mergec/Runtime/DType.h"
#include "mergec/Runtime/Executor.h"
#include "mergec/Runtime/RuleDescription.h"
#include "mergec/Target/TargetBackend.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mergec {

/// The description of `rule` (a fused rule function) for the signature `tag`: its phases with
/// their kinds, parameters, slots and dependencies, and the packed entry points' symbols
/// `mergec_<rule>[_phaseK]__<tag>`. Shared by the JIT and executables.
rt::CompiledRule describeRule(mlir::func::FuncOp rule, const std::string &tag);

struct KernelJITOptions {
  bool verbose = false;      ///< print, per kernel, whether it was compiled (ms) or loaded
  std::string cacheDir;      ///< the kernel cache; empty: no cache
  std::string version;       ///< mergec's version, part of every cache key
  /// The params' values this run (final, --set applied): kernels read them at run time, so
  /// they are not part of the cache key.
  std::vector<std::pair<std::string, double>> params;
  /// Where kernel() compiles for: the CPU (object files, linked into the process) or CUDA
  /// (PTX for CompiledRule::deviceImage, for --gpu-arch).
  rt::DeviceKind device = rt::DeviceKind::CPU;
  std::string gpuArch; ///< empty: the CUDA target's default
};

/// Compiles the rules of a fused module (one func per rule) on demand, once per (rule, input
/// dtypes, output dtype): lowered to loops, serialized by the CPU backend (an object file),
/// stored in and loaded from the kernel cache, and linked into the process by ObjectLoader.
class KernelJIT : public rt::KernelSource {
public:
  /// `fused` must outlive the JIT.
  KernelJIT(mlir::ModuleOp fused, KernelJITOptions options);
  ~KernelJIT() override;

  std::vector<std::string> ruleInputs(size_t rule) override;
  rt::CompiledRule kernel(size_t rule, const std::vector<rt::DType> &inputs,
                          rt::DType output) override;

  /// The specialized module of `rule` lowered to loops over memrefs (the last shared stage).
  mlir::OwningOpRef<mlir::ModuleOp> lower(size_t rule, const rt::KernelSignature &signature);
  /// A backend stage of `rule` (the cpu target's llvm-dialect, llvm, asm, obj; the cuda
  /// target's gpu, nvvm, ptx) for `signature`.
  std::string emit(size_t rule, const rt::KernelSignature &signature, llvm::StringRef stage);
  /// A stage of the cuda target for every rule at once (rule r for signatures[r]): one
  /// module, so `--emit=ptx` is one PTX file with every phase kernel of every rule.
  std::string emitAll(const std::vector<rt::KernelSignature> &signatures, llvm::StringRef stage);
  mlir::func::FuncOp ruleFunction(size_t rule);
  TargetBackend &backend() { return *backend_; }
  /// The CUDA target (--gpu-arch); throws when this mergec was built without it.
  TargetBackend &gpuBackend();

  double totalCompileMs() const { return totalMs_; }
  size_t compiledCount() const { return compiledCount_; }
  size_t cachedCount() const { return cachedCount_; }

private:
  /// The kernel binary for `key`: from the cache when `accept` takes it (it returns why not,
  /// "" when it takes it), else `compile()`d (which `accept` must take) and stored. Counts and,
  /// under --verbose, reports it as `label`, timed from `start`.
  void throughCache(const std::string &key, const std::string &label,
                    std::chrono::steady_clock::time_point start,
                    const std::function<std::string(const std::string &)> &accept,
                    const std::function<std::string()> &compile, const char *compiledHow);

  mlir::ModuleOp fused_;
  KernelJITOptions options_;
  std::unique_ptr<TargetBackend> backend_, gpuBackend_;
  KernelCache cache_;
  std::unique_ptr<ObjectLoader> loader_;
  /// The phases' entry points per signature, so tensors after the first look up nothing.
  std::map<std::string, rt::CompiledRule> compiled_;
  double totalMs_ = 0;
  size_t compiledCount_ = 0, cachedCount_ = 0;
  bool warnedCache_ = false;
  uint64_t cacheMaxBytes_;  ///< KernelCache::maxBytes(), read when the JIT is made
  bool prunedCache_ = false; ///< once a run, after its first store
  struct timespec madeAt_;   ///< when the JIT was made: the cache keeps entries used since
};

} // namespace mergec
