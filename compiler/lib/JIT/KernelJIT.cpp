//===- KernelJIT.cpp - compile rules per dtype signature with ORC ---------===//
#include "mergec/JIT/KernelJIT.h"
#include "mergec/Conversion/Passes.h"
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/IR/PhaseLayout.h"
#include "mergec/Dialect/Merge/Transforms/Passes.h"
#include "mergec/Frontend/MLIRGen.h"
#include "mergec/Pipelines/Pipelines.h"
#include "mergec/Runtime/Error.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/RegionUtils.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <iostream>

using namespace mlir;
using namespace mergec;

namespace {

void initializeNativeTarget() {
  static bool done = [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    return true;
  }();
  (void)done;
}

/// The host's CPU and features, so the vectorizer uses the machine's widest vectors.
std::unique_ptr<llvm::TargetMachine> hostTargetMachine() {
  initializeNativeTarget();
  auto builder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!builder)
    throw rt::RuntimeError("jit: cannot detect the host: " + llvm::toString(builder.takeError()));
  builder->setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  auto tm = builder->createTargetMachine();
  if (!tm)
    throw rt::RuntimeError("jit: " + llvm::toString(tm.takeError()));
  return std::move(*tm);
}

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

std::string signatureKey(size_t rule, const std::vector<rt::DType> &inputs, rt::DType output) {
  std::string key = std::to_string(rule) + ":";
  for (size_t i = 0; i < inputs.size(); ++i)
    key += std::string(i ? "," : "") + rt::dtypeName(inputs[i]);
  return key + " -> " + rt::dtypeName(output);
}

/// Collects MLIR diagnostics so a failed pipeline reports what went wrong.
struct CapturedDiagnostics {
  explicit CapturedDiagnostics(MLIRContext *ctx)
      : handler(ctx, [this](Diagnostic &d) {
          text += d.str() + "\n";
          return success();
        }) {}
  std::string text;
  ScopedDiagnosticHandler handler;
};

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

} // namespace

KernelJIT::KernelJIT(ModuleOp fused, bool verbose) : fused_(fused), verbose_(verbose) {}
KernelJIT::~KernelJIT() = default;

std::vector<std::string> KernelJIT::ruleInputs(size_t rule) {
  // Every merge.input of the rule in program order: each phase function takes all of them.
  auto func = fused_.lookupSymbol<func::FuncOp>(ruleFunctionName(rule));
  std::vector<std::string> models;
  for (Operation &op : func.getBody().front())
    if (auto in = dyn_cast<merge::InputOp>(op))
      models.push_back(in.getModel().str());
  return models;
}

OwningOpRef<ModuleOp> KernelJIT::lower(size_t rule, const std::vector<rt::DType> &inputs,
                                       rt::DType output, bool toLLVMDialect) {
  MLIRContext *ctx = fused_.getContext();
  std::string name = ruleFunctionName(rule);
  auto func = fused_.lookupSymbol<func::FuncOp>(name);
  if (!func)
    throw rt::RuntimeError("jit: no function " + name);
  OpBuilder b(ctx);
  OwningOpRef<ModuleOp> module = ModuleOp::create(fused_.getLoc());
  b.setInsertionPointToEnd(module->getBody());
  auto clone = cast<func::FuncOp>(b.clone(*func));

  // Specialize: the storage dtype of each kernel input (in argument order) and of the result.
  std::vector<std::string> models = ruleInputs(rule);
  if (models.size() != inputs.size())
    throw rt::RuntimeError("jit: " + name + " reads " + std::to_string(models.size()) +
                           " inputs, given " + std::to_string(inputs.size()) + " dtypes");
  clone.walk([&](merge::InputOp in) {
    for (size_t i = 0; i < models.size(); ++i)
      if (models[i] == in.getModel())
        in.setStorageAttr(TypeAttr::get(storageType(ctx, inputs[i])));
  });
  clone->setAttr(merge::kStoreAttr, TypeAttr::get(storageType(ctx, output)));

  CapturedDiagnostics diags(ctx);
  PassManager pm(ctx);
  buildLowerToLoopsPipeline(pm);
  if (toLLVMDialect)
    buildLoopsToLLVMPipeline(pm);
  if (failed(pm.run(*module)))
    throw rt::RuntimeError("jit: lowering " + name + " failed:\n" + diags.text);
  return module;
}

rt::CompiledRule KernelJIT::kernel(size_t rule, const std::vector<rt::DType> &inputs,
                                   rt::DType output) {
  std::string key = signatureKey(rule, inputs, output);
  if (auto done = compiled_.find(key); done != compiled_.end())
    return done->second;
  auto found = engines_.find(key);
  std::string name = ruleFunctionName(rule);
  if (found == engines_.end()) {
    auto start = std::chrono::steady_clock::now();
    OwningOpRef<ModuleOp> module = lower(rule, inputs, output, /*toLLVMDialect=*/true);
    if (!optimizerTM_) {
      // The transformer runs when ORC materializes the module (at lookup), so it and its
      // target machine live as long as the JIT.
      optimizerTM_ = hostTargetMachine();
      optimizer_ = makeOptimizingTransformer(3, 0, optimizerTM_.get());
    }
    ExecutionEngineOptions options;
    options.transformer = optimizer_;
    options.jitCodeGenOptLevel = llvm::CodeGenOptLevel::Aggressive;
    auto engine = ExecutionEngine::create(*module, options, hostTargetMachine());
    if (!engine)
      throw rt::RuntimeError("jit: compiling " + name + " failed: " +
                             llvm::toString(engine.takeError()));
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count();
    totalMs_ += ms;
    if (verbose_)
      std::cerr << "jit: " << name << " (" << key.substr(key.find(':') + 1) << "): " << ms
                << " ms\n";
    found = engines_.emplace(key, std::move(*engine)).first;
  }
  auto lookup = [&](const std::string &symbol) {
    auto fn = found->second->lookupPacked(symbol);
    if (!fn)
      throw rt::RuntimeError("jit: " + llvm::toString(fn.takeError()));
    return *fn;
  };
  rt::CompiledRule compiled;
  auto func = fused_.lookupSymbol<func::FuncOp>(name);
  merge::PhaseLayout layout = merge::phaseLayout(func);
  using Kind = rt::CompiledRule::Kind;
  for (auto [k, op] : llvm::enumerate(layout.phases)) {
    rt::CompiledRule::Phase phase{lookup(name + "_phase" + std::to_string(k)), Kind::Map};
    phase.firstSlot = layout.firstSlot[k];
    phase.deps = phaseDependencies(op, layout.phases);
    if (auto reduce = dyn_cast<merge::ReduceKernelOp>(op)) {
      phase.kind = Kind::Reduce;
      for (Attribute kind : reduce.getKinds())
        phase.reductions.push_back(cast<StringAttr>(kind).getValue() == "sum"
                                       ? rt::CompiledRule::Reduction::Sum
                                       : rt::CompiledRule::Reduction::Max);
      phase.modelScope = reduce.getModelScope();
    } else if (auto select = dyn_cast<merge::SelectKernelOp>(op)) {
      phase.kind = select.getKind() == "topk" ? Kind::TopK : Kind::Quantile;
      phase.param = select.getParam().convertToDouble();
      phase.skip = select.getSkip().convertToDouble();
      phase.nonzero = select.getNonzero();
      phase.modelScope = select.getModelScope();
    } else {
      StringRef kind = cast<merge::RowKernelOp>(op).getKind();
      phase.kind = Kind::Row;
      phase.row = kind == "rank"  ? rt::CompiledRule::RowOp::Rank
                  : kind == "sum" ? rt::CompiledRule::RowOp::Sum
                                  : rt::CompiledRule::RowOp::Max;
    }
    compiled.phases.push_back(std::move(phase));
  }
  compiled.phases.push_back({lookup(name), Kind::Map});
  compiled.phases.back().firstSlot = layout.firstSlot.back();
  compiled.phases.back().deps = phaseDependencies(
      func.getBody().front().getTerminator()->getOperand(0).getDefiningOp(), layout.phases);
  compiled.scalarSlots = layout.firstSlot.back();
  return compiled_[key] = compiled;
}

std::string KernelJIT::optimizedLLVMIR(size_t rule, const std::vector<rt::DType> &inputs,
                                       rt::DType output) {
  OwningOpRef<ModuleOp> module = lower(rule, inputs, output, /*toLLVMDialect=*/true);
  llvm::LLVMContext llvmCtx;
  std::unique_ptr<llvm::Module> llvmModule = translateModuleToLLVMIR(*module, llvmCtx);
  if (!llvmModule)
    throw rt::RuntimeError("jit: translation to LLVM IR failed");
  auto tm = hostTargetMachine();
  llvmModule->setDataLayout(tm->createDataLayout());
  llvmModule->setTargetTriple(tm->getTargetTriple());
  if (auto err = makeOptimizingTransformer(3, 0, tm.get())(llvmModule.get()))
    throw rt::RuntimeError("jit: " + llvm::toString(std::move(err)));
  std::string text;
  llvm::raw_string_ostream os(text);
  llvmModule->print(os, nullptr);
  return text;
}
