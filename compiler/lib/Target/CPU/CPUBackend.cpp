//===- CPUBackend.cpp - host CPU code generation --------------------------===//
#include "mergec/Target/CPU/CPUBackend.h"
#include "mergec/Pipelines/CapturedDiagnostics.h"
#include "mergec/Pipelines/Pipelines.h"
#include "mergec/Runtime/Error.h"

#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/TargetParser/SubtargetFeature.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"

using namespace mlir;

namespace mergec::cpu {

namespace {

void initializeNativeTarget() {
  static bool done = [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    return true;
  }();
  (void)done;
}

const EmitStage kStages[] = {
    {"llvm-dialect", "the rule in MLIR's LLVM dialect"},
    {"llvm", "LLVM IR after -O3 for the host CPU, with mergec's packed entry points"},
    {"asm", "host assembly"},
    {"obj", "an ELF object with the packed entry points (what the kernel cache stores)"},
};

std::string runCodegen(llvm::Module &module, llvm::TargetMachine &tm, llvm::CodeGenFileType type) {
  llvm::SmallVector<char, 0> buffer;
  llvm::raw_svector_ostream os(buffer);
  llvm::legacy::PassManager pm;
  if (tm.addPassesToEmitFile(pm, os, nullptr, type))
    throw rt::RuntimeError("codegen: the host target cannot emit this file type");
  pm.run(module);
  return std::string(buffer.begin(), buffer.end());
}

/// For each function `f(a0, ..., an)` the lowering defined: `mergec_f__tag(void **args)` calling
/// it with `*(T_i *)args[i]` (a memref argument is five of those: allocated and aligned pointers,
/// offset, size, stride). The wrappers are mergec's ABI; `f` itself becomes internal (and is
/// inlined into its wrapper by -O3).
void addPackedEntryPoints(llvm::Module &module, const std::string &tag) {
  std::vector<llvm::Function *> defined;
  for (llvm::Function &f : module)
    if (!f.isDeclaration() && !f.hasLocalLinkage())
      defined.push_back(&f);
  llvm::LLVMContext &ctx = module.getContext();
  llvm::Type *ptr = llvm::PointerType::getUnqual(ctx);
  for (llvm::Function *f : defined) {
    std::string name = f->getName().str();
    if (!f->getReturnType()->isVoidTy())
      throw rt::RuntimeError("codegen: kernel " + name + " returns a value");
    f->setName(name + "__" + tag + "_impl");
    f->setLinkage(llvm::GlobalValue::InternalLinkage);
    auto *wrapper = llvm::Function::Create(llvm::FunctionType::get(llvm::Type::getVoidTy(ctx), {ptr}, false),
                                           llvm::GlobalValue::ExternalLinkage,
                                           "mergec_" + name + "__" + tag, module);
    llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", wrapper));
    llvm::Value *args = wrapper->getArg(0);
    std::vector<llvm::Value *> callArgs;
    for (llvm::Argument &arg : f->args()) {
      llvm::Value *slot = b.CreateConstGEP1_64(ptr, args, arg.getArgNo());
      llvm::Value *field = b.CreateLoad(ptr, slot);
      callArgs.push_back(b.CreateLoad(arg.getType(), field));
    }
    b.CreateCall(f, callArgs);
    b.CreateRetVoid();
  }
}

void lowerToLLVMDialect(ModuleOp loops) {
  CapturedDiagnostics diags(loops.getContext());
  PassManager pm(loops.getContext());
  buildLoopsToLLVMPipeline(pm);
  if (failed(pm.run(loops)))
    throw rt::RuntimeError("codegen: lowering to the LLVM dialect failed:\n" + diags.text);
}

} // namespace

bool isKnownCPU(const std::string &cpu) {
  initializeNativeTarget();
  std::string error;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(llvm::Triple(llvm::sys::getProcessTriple()), error);
  if (!target)
    return false;
  std::unique_ptr<llvm::MCSubtargetInfo> info(target->createMCSubtargetInfo(
      llvm::Triple(llvm::sys::getProcessTriple()), "", ""));
  return info && info->isCPUStringValid(cpu);
}

std::unique_ptr<llvm::TargetMachine> hostTargetMachine(const std::string &cpu) {
  initializeNativeTarget();
  auto builder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!builder)
    throw rt::RuntimeError("codegen: cannot detect the host: " +
                           llvm::toString(builder.takeError()));
  if (!cpu.empty()) {
    if (!isKnownCPU(cpu))
      throw rt::RuntimeError("--cpu " + cpu + ": not an x86-64 CPU LLVM knows (e.g. x86-64-v2, "
                             "x86-64-v3, x86-64-v4, znver4, sapphirerapids)");
    builder->setCPU(cpu);
    builder->getFeatures() = llvm::SubtargetFeatures();
  }
  builder->setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  builder->setRelocationModel(llvm::Reloc::PIC_);
  auto tm = builder->createTargetMachine();
  if (!tm)
    throw rt::RuntimeError("codegen: " + llvm::toString(tm.takeError()));
  return std::move(*tm);
}

std::unique_ptr<llvm::Module> buildLLVMModule(ModuleOp loops, llvm::LLVMContext &ctx,
                                              llvm::TargetMachine &tm, const std::string &tag) {
  lowerToLLVMDialect(loops);
  std::unique_ptr<llvm::Module> module = translateModuleToLLVMIR(loops, ctx);
  if (!module)
    throw rt::RuntimeError("codegen: translation to LLVM IR failed");
  module->setDataLayout(tm.createDataLayout());
  module->setTargetTriple(tm.getTargetTriple());
  addPackedEntryPoints(*module, tag);
  if (auto err = makeOptimizingTransformer(3, 0, &tm)(module.get()))
    throw rt::RuntimeError("codegen: " + llvm::toString(std::move(err)));
  return module;
}

std::string emitObject(llvm::Module &module, llvm::TargetMachine &tm) {
  return runCodegen(module, tm, llvm::CodeGenFileType::ObjectFile);
}

llvm::ArrayRef<EmitStage> CPUBackend::stages() const { return kStages; }

std::string CPUBackend::identity() const {
  // The CPU name alone is not enough (virtual machines mask features): the features decide
  // which instructions the code may use.
  std::string id = "cpu " + llvm::sys::getProcessTriple() + " " + llvm::sys::getHostCPUName().str();
  for (auto &feature : llvm::sys::getHostCPUFeatures())
    if (feature.getValue())
      id += " +" + feature.getKey().str();
  // The same loops compile to different code when this target's own passes change (a cached
  // kernel from before merge-tile-reductions stays correct but scalar): name them too.
  OpPassManager pm("builtin.module");
  buildLoopsToLLVMPipeline(pm);
  llvm::raw_string_ostream os(id);
  os << " | ";
  pm.printAsTextualPipeline(os);
  return id;
}

std::string CPUBackend::emit(ModuleOp loops, llvm::StringRef stage, const std::string &tag) {
  if (stage == "llvm-dialect") {
    lowerToLLVMDialect(loops);
    std::string text;
    llvm::raw_string_ostream os(text);
    loops.print(os);
    return text;
  }
  auto tm = hostTargetMachine();
  llvm::LLVMContext ctx;
  std::unique_ptr<llvm::Module> module = buildLLVMModule(loops, ctx, *tm, tag);
  if (stage == "llvm") {
    std::string text;
    llvm::raw_string_ostream os(text);
    module->print(os, nullptr);
    return text;
  }
  if (stage == "asm")
    return runCodegen(*module, *tm, llvm::CodeGenFileType::AssemblyFile);
  if (stage == "obj")
    return emitObject(*module, *tm);
  throw rt::RuntimeError("codegen: the cpu target has no stage '" + stage.str() + "'");
}

} // namespace mergec::cpu
