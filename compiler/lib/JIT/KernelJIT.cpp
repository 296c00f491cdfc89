//===- KernelJIT.cpp - compile rules per dtype signature, through the cache ---===//
#include "mergec/JIT/KernelJIT.h"
#include "mergec/JIT/GpuEmulation.h"
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/IR/PhaseLayout.h"
#include "mergec/Dialect/Merge/Transforms/Passes.h"
#include "mergec/Frontend/MLIRGen.h"
#include "mergec/Pipelines/CapturedDiagnostics.h"
#include "mergec/Pipelines/Pipelines.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Events.h"
#ifdef MERGEC_HAVE_CUDA
#include "mergec/Target/CUDA/CUDABackend.h"
#endif

#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <iostream>

using namespace mlir;
using namespace mergec;

namespace {

Type storageType(MLIRContext *ctx, rt::DType d) {
  switch (d) {
  case rt::DType::F32:
    return Float32Type::get(ctx);
  case rt::DType::F16:
    return Float16Type::get(ctx);
  case rt::DType::BF16:
    return BFloat16Type::get(ctx);
  default:
    throw rt::RuntimeError(std::string("jit: no kernel can load or store ") + rt::dtypeName(d));
  }
}

/// The phases whose results `phase` reads: through its inputs (rank buffers), its operands
/// and the scalars its body uses, back through everything but other phases.
std::vector<size_t> phaseDependencies(Operation *phase, ArrayRef<Operation *> phases) {
  SetVector<Operation *> seen;
  SmallVector<Value> work(phase->getOperands().begin(), phase->getOperands().end());
  SetVector<Value> above;
  getUsedValuesDefinedAbove(phase->getRegions(), above);
  work.append(above.begin(), above.end());
  std::vector<size_t> deps;
  while (!work.empty()) {
    Operation *def = work.pop_back_val().getDefiningOp();
    if (!def || !seen.insert(def))
      continue;
    if (auto it = llvm::find(phases, def); it != phases.end()) {
      deps.push_back(static_cast<size_t>(it - phases.begin()));
      continue;
    }
    work.append(def->getOperands().begin(), def->getOperands().end());
    SetVector<Value> nested;
    getUsedValuesDefinedAbove(def->getRegions(), nested);
    work.append(nested.begin(), nested.end());
  }
  llvm::sort(deps);
  return deps;
}

// The dialect's kinds in the runtime's terms: exhaustive switches, so a new kind is a
// compile-time warning here (-Wswitch) rather than a phase silently run as another.

rt::CompiledRule::Reduction runtimeReduction(merge::ReductionKind kind) {
  switch (kind) {
  case merge::ReductionKind::Sum:
    return rt::CompiledRule::Reduction::Sum;
  case merge::ReductionKind::Max:
    return rt::CompiledRule::Reduction::Max;
  }
  llvm_unreachable("unknown reduction");
}

rt::CompiledRule::Kind runtimeSelection(merge::SelectKind kind) {
  switch (kind) {
  case merge::SelectKind::TopK:
    return rt::CompiledRule::Kind::TopK;
  case merge::SelectKind::Quantile:
    return rt::CompiledRule::Kind::Quantile;
  }
  llvm_unreachable("unknown selection");
}

rt::CompiledRule::RowOp runtimeRowOp(merge::RowKind kind) {
  switch (kind) {
  case merge::RowKind::Rank:
    return rt::CompiledRule::RowOp::Rank;
  case merge::RowKind::Sum:
    return rt::CompiledRule::RowOp::Sum;
  case merge::RowKind::Max:
    return rt::CompiledRule::RowOp::Max;
  }
  llvm_unreachable("unknown row phase");
}

std::string printed(ModuleOp module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  module.print(os);
  return text;
}

} // namespace

rt::CompiledRule mergec::describeRule(func::FuncOp func, const std::string &tag) {
  std::string name = func.getSymName().str();
  auto symbol = [&](const std::string &function) { return "mergec_" + function + "__" + tag; };
  rt::CompiledRule compiled;
  merge::PhaseLayout layout = merge::phaseLayout(func);
  using Kind = rt::CompiledRule::Kind;
  for (auto [k, op] : llvm::enumerate(layout.phases)) {
    rt::CompiledRule::Phase phase;
    phase.symbol = symbol(name + "_phase" + std::to_string(k));
    phase.firstSlot = layout.firstSlot[k];
    phase.deps = phaseDependencies(op, layout.phases);
    phase.modelScope = cast<merge::PhaseOpInterface>(op).isModelScope();
    llvm::TypeSwitch<Operation *>(op)
        .Case<merge::ReduceKernelOp>([&](merge::ReduceKernelOp reduce) {
          phase.kind = Kind::Reduce;
          for (merge::ReductionKind kind : reduce.getKinds())
            phase.reductions.push_back(runtimeReduction(kind));
        })
        .Case<merge::SelectKernelOp>([&](merge::SelectKernelOp select) {
          phase.kind = runtimeSelection(select.getKind());
          phase.param = select.getParam().convertToDouble();
          phase.skip = select.getSkip().convertToDouble();
          phase.nonzero = select.getNonzero();
        })
        .Case<merge::RowKernelOp>([&](merge::RowKernelOp row) {
          phase.kind = Kind::Row;
          phase.row = runtimeRowOp(row.getKind());
          phase.buffers = 1;
        })
        .Case<merge::MatrixPhaseOp>([&](merge::MatrixPhaseOp matrix) {
          phase.kind = Kind::Matrix;
          phase.scalars = matrix.getNumScalars();
          phase.buffers = matrix.getBufferResults().size();
          matrix.getProgram().walk([&](Operation *op) {
            for (Value r : op->getResults())
              phase.matrices += isa<merge::MatrixType>(r.getType());
            phase.spectral = phase.spectral || isa<merge::HighpassOp, merge::LowpassOp>(op);
          });
          phase.matrices += matrix.getProgram().getNumArguments();
        })
        .Default([](Operation *other) {
          // A new phase op needs a runtime kind (and its runner) before it can run.
          throw rt::RuntimeError("jit: the runtime has no phase for " +
                                 other->getName().getStringRef().str());
        });
    compiled.phases.push_back(std::move(phase));
  }
  rt::CompiledRule::Phase map;
  map.symbol = symbol(name);
  map.kind = Kind::Map;
  map.firstSlot = layout.firstSlot.back();
  map.deps = phaseDependencies(
      func.getBody().front().getTerminator()->getOperand(0).getDefiningOp(), layout.phases);
  compiled.phases.push_back(std::move(map));
  // The params the kernels read follow the phases' slots (LowerKernels loads them there).
  compiled.firstParamSlot = layout.firstSlot.back();
  if (auto module = func->getParentOfType<ModuleOp>())
    if (auto params = module->getAttrOfType<ArrayAttr>(merge::kParamsAttr))
      for (Attribute p : params)
        compiled.params.push_back(cast<StringAttr>(p).getValue().str());
  compiled.scalarSlots = compiled.firstParamSlot + static_cast<int64_t>(compiled.params.size());
  return compiled;
}

KernelJIT::KernelJIT(ModuleOp fused, KernelJITOptions options)
    : fused_(fused), options_(std::move(options)), backend_(createTargetBackend("cpu")),
      cache_(options_.cacheDir), cacheMaxBytes_(cache_.enabled() ? KernelCache::maxBytes() : 0) {
  ::clock_gettime(CLOCK_REALTIME, &madeAt_);
}
KernelJIT::~KernelJIT() = default;

func::FuncOp KernelJIT::ruleFunction(size_t rule) {
  auto func = fused_.lookupSymbol<func::FuncOp>(ruleFunctionName(rule));
  if (!func)
    throw rt::RuntimeError("jit: no function " + ruleFunctionName(rule));
  return func;
}

std::vector<std::string> KernelJIT::ruleInputs(size_t rule) {
  // Every merge.input of the rule in program order: each phase function takes all of them.
  std::vector<std::string> models;
  for (Operation &op : ruleFunction(rule).getBody().front())
    if (auto in = dyn_cast<merge::InputOp>(op))
      models.push_back(in.getModel().str());
  return models;
}

OwningOpRef<ModuleOp> KernelJIT::lower(size_t rule, const rt::KernelSignature &signature) {
  MLIRContext *ctx = fused_.getContext();
  func::FuncOp func = ruleFunction(rule);
  OpBuilder b(ctx);
  OwningOpRef<ModuleOp> module = ModuleOp::create(fused_.getLoc());
  b.setInsertionPointToEnd(module->getBody());
  auto clone = cast<func::FuncOp>(b.clone(*func));

  // Specialize: the storage dtype of each kernel input (in argument order) and of the result.
  std::vector<std::string> models = ruleInputs(rule);
  if (models.size() != signature.inputs.size())
    throw rt::RuntimeError("jit: " + func.getSymName().str() + " reads " +
                           std::to_string(models.size()) + " inputs, given " +
                           std::to_string(signature.inputs.size()) + " dtypes");
  clone.walk([&](merge::InputOp in) {
    for (size_t i = 0; i < models.size(); ++i)
      if (models[i] == in.getModel())
        in.setStorageAttr(TypeAttr::get(storageType(ctx, signature.inputs[i])));
  });
  clone->setAttr(merge::kStoreAttr, TypeAttr::get(storageType(ctx, signature.output)));

  CapturedDiagnostics diags(ctx);
  PassManager pm(ctx);
  buildLowerToLoopsPipeline(pm);
  if (failed(pm.run(*module)))
    throw rt::RuntimeError("jit: lowering " + func.getSymName().str() + " failed:\n" + diags.text);
  return module;
}

TargetBackend &KernelJIT::gpuBackend() {
#ifdef MERGEC_HAVE_CUDA
  if (!gpuBackend_) {
    std::string arch = options_.gpuArch.empty() ? cuda::kDefaultGpuArch : options_.gpuArch;
    if (!cuda::isKnownGpuArch(arch))
      throw rt::RuntimeError("--gpu-arch " + arch +
                             ": not an NVIDIA architecture mergec can compile for (sm_60 to "
                             "sm_121, e.g. sm_80, sm_90)");
    gpuBackend_ = std::make_unique<cuda::CUDABackend>(arch);
  }
  return *gpuBackend_;
#else
  throw rt::RuntimeError("this mergec was built without the CUDA target (configure with the "
                         "CUDA toolkit present, MERGEC_CUDA=ON)");
#endif
}

std::string KernelJIT::emit(size_t rule, const rt::KernelSignature &signature,
                            llvm::StringRef stage) {
  TargetBackend *backend = backend_.get();
  if (!llvm::any_of(backend->stages(), [&](const EmitStage &s) { return stage == s.name; }))
    backend = &gpuBackend();
  OwningOpRef<ModuleOp> loops = lower(rule, signature);
  return backend->emit(*loops, stage, signature.tag());
}

std::string KernelJIT::emitAll(const std::vector<rt::KernelSignature> &signatures,
                               llvm::StringRef stage) {
  MLIRContext *ctx = fused_.getContext();
  OwningOpRef<ModuleOp> all = ModuleOp::create(fused_.getLoc());
  OpBuilder b(ctx);
  for (size_t r = 0; r < signatures.size(); ++r) {
    if (describeRule(ruleFunction(r), signatures[r].tag()).hasMatrixPhase()) {
      rt::events().note("rule " + std::to_string(r + 1) + " has linear algebra and no GPU "
                        "kernels: with --device cuda it runs on the CPU");
      continue;
    }
    OwningOpRef<ModuleOp> loops = lower(r, signatures[r]);
    for (auto f : llvm::make_early_inc_range(loops->getOps<func::FuncOp>())) {
      f.setSymName("mergec_" + f.getSymName().str() + "__" + signatures[r].tag());
      f->moveBefore(all->getBody(), all->getBody()->end());
    }
  }
  if (all->getBody()->empty())
    return ""; // every rule runs on the CPU (the notes say which)
  return gpuBackend().emit(*all, stage, "");
}

namespace {

/// Why a cached PTX module cannot serve `symbols` (empty when it can): the entry points must
/// all be there; a truncated or foreign entry fails this, and the driver checks the rest.
std::string ptxDamage(const std::string &ptx, const std::vector<std::string> &symbols) {
  if (ptx.find(".version") == std::string::npos || ptx.find(".target") == std::string::npos)
    return "not PTX";
  for (const std::string &symbol : symbols)
    if (ptx.find(".entry " + symbol + "(") == std::string::npos)
      return "no entry point " + symbol;
  return "";
}

} // namespace

void KernelJIT::throughCache(const std::string &key, const std::string &label,
                             std::chrono::steady_clock::time_point start,
                             const std::function<std::string(const std::string &)> &accept,
                             const std::function<std::string()> &compile,
                             const char *compiledHow) {
  std::string how, damage;
  if (auto cached = cache_.load(key, damage)) {
    damage = accept(*cached);
    if (damage.empty()) {
      how = "loaded from the cache";
      ++cachedCount_;
    }
  }
  if (!damage.empty() && options_.verbose)
    rt::events().info("jit: " + label + ": cache entry " + cache_.entryPath(key) +
                      " is damaged (" + damage + "); recompiling");
  if (how.empty()) {
    std::string bytes = compile();
    if (std::string why = accept(bytes); !why.empty())
      throw rt::RuntimeError("jit: " + label + ": " + why);
    if (auto warning = cache_.store(key, bytes); warning && !warnedCache_) {
      rt::events().warning(*warning + " (kernels are compiled every run)");
      warnedCache_ = true;
    } else if (!warning && !prunedCache_) {
      // Once a run, after it first adds an entry (a run that only loads adds nothing).
      prunedCache_ = true;
      if (auto removed = cache_.prune(cacheMaxBytes_, madeAt_); removed && options_.verbose)
        rt::events().info("jit: " + *removed);
    }
    how = compiledHow;
    ++compiledCount_;
  }
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  totalMs_ += ms;
  if (options_.verbose) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.1f", ms);
    rt::events().info("jit: " + label + ": " + how + " in " + text + " ms");
  }
}

rt::CompiledRule KernelJIT::kernel(size_t rule, const std::vector<rt::DType> &inputs,
                                   rt::DType output) {
  rt::KernelSignature signature{inputs, output};
  std::string memo = std::to_string(rule) + ":" + signature.tag();
  if (auto done = compiled_.find(memo); done != compiled_.end())
    return done->second;

  auto start = std::chrono::steady_clock::now();
  std::string name = ruleFunctionName(rule);
  rt::CompiledRule compiled = describeRule(ruleFunction(rule), signature.tag());
  std::vector<std::string> symbols;
  for (auto &phase : compiled.phases)
    symbols.push_back(phase.symbol);
  // A rule with linear algebra runs on the host under a GPU too (cuBLAS and cuSOLVER are not
  // wired in): the CPU's kernels, and no PTX.
  bool onDevice = options_.device == rt::DeviceKind::CUDA && !compiled.hasMatrixPhase();
  if (!loader_ && !onDevice)
    loader_ = std::make_unique<ObjectLoader>();

  OwningOpRef<ModuleOp> loops = lower(rule, signature);
  std::string label = name + " (" + signature.text() + ")";
  if (onDevice) {
    // The GPU's kernels: one PTX module for the rule's phases, through the same cache.
    TargetBackend &gpu = gpuBackend();
    std::string ptx;
    throughCache(
        KernelCache::key(options_.version, gpu.identity(), signature.tag() + "\n" + printed(*loops)),
        label, start,
        [&](const std::string &bytes) {
          std::string damage = ptxDamage(bytes, symbols);
          if (damage.empty())
            ptx = bytes;
          return damage;
        },
        [&] { return gpu.emit(*loops, gpu.binaryStage(), signature.tag()); }, "compiled to PTX");
    compiled.deviceImage = std::make_shared<const std::string>(std::move(ptx));
    if (gpuEmulationRequested()) { // tests only: the mock driver runs these (GpuEmulation.h)
      if (!loader_)
        loader_ = std::make_unique<ObjectLoader>();
      OwningOpRef<ModuleOp> again = lower(rule, signature);
      registerGpuEmulation(*loader_, gpu.emit(*again, "nvvm-llvm", signature.tag()));
    }
    compiled.paramValues = rt::bindParams(compiled.params, options_.params);
    return compiled_[memo] = compiled;
  }
  // The key covers everything the object's bytes depend on: the lowered loops (which carry the
  // rule's math, constants and dtypes), the entry points' tag, the backend and the version.
  std::vector<rt::PackedKernel> entries;
  throughCache(
      KernelCache::key(options_.version, backend_->identity(), signature.tag() + "\n" + printed(*loops)),
      label, start,
      [&](const std::string &object) -> std::string {
        try {
          entries = loader_->load(object, symbols);
          return "";
        } catch (const rt::RuntimeError &e) {
          return e.what();
        }
      },
      [&] { return backend_->emit(*loops, backend_->binaryStage(), signature.tag()); },
      "compiled");
  for (size_t k = 0; k < entries.size(); ++k)
    compiled.phases[k].fn = entries[k];
  compiled.paramValues = rt::bindParams(compiled.params, options_.params);
  return compiled_[memo] = compiled;
}
