//===- MergeObject.cpp - every kernel of a recipe in one object file ------===//
#include "mergec/Target/CPU/MergeObject.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Target/CPU/CPUBackend.h"
#include "mergec/Target/CPU/GpuKernelEmulation.h"

#include "llvm/IR/Constants.h"
#include "llvm/IR/DerivedTypes.h"
#include "llvm/IR/GlobalVariable.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Linker/Linker.h"
#include "llvm/Target/TargetMachine.h"

namespace mergec::cpu {

namespace {

/// A constant C string global.
llvm::Constant *cString(llvm::Module &module, const std::string &text, const std::string &name,
                        bool external) {
  auto *data = llvm::ConstantDataArray::getString(module.getContext(), text, /*AddNull=*/true);
  auto *global = new llvm::GlobalVariable(
      module, data->getType(), /*isConstant=*/true,
      external ? llvm::GlobalValue::ExternalLinkage : llvm::GlobalValue::PrivateLinkage, data, name);
  return global;
}

/// `tableName`: {symbol name, entry point} for each of `entries` ({the name looked up, the
/// function in `m`}), and `countName`: how many; both external, for dlsym.
void addEntryTable(llvm::Module &m,
                   const std::vector<std::pair<std::string, std::string>> &entries,
                   const char *tableName, const char *countName) {
  llvm::LLVMContext &ctx = m.getContext();
  llvm::Type *ptr = llvm::PointerType::getUnqual(ctx);
  auto *entryType = llvm::StructType::get(ctx, {ptr, ptr});
  std::vector<llvm::Constant *> rows;
  for (const auto &[name, function] : entries) {
    llvm::Function *fn = m.getFunction(function);
    if (!fn)
      throw rt::RuntimeError("codegen: the object lacks " + function);
    rows.push_back(llvm::ConstantStruct::get(
        entryType, {cString(m, name, std::string(tableName) + ".name", false), fn}));
  }
  auto *tableType = llvm::ArrayType::get(entryType, rows.size());
  new llvm::GlobalVariable(m, tableType, true, llvm::GlobalValue::ExternalLinkage,
                           llvm::ConstantArray::get(tableType, rows), tableName);
  auto *i64 = llvm::Type::getInt64Ty(ctx);
  new llvm::GlobalVariable(m, i64, true, llvm::GlobalValue::ExternalLinkage,
                           llvm::ConstantInt::get(i64, rows.size()), countName);
}

} // namespace

std::string buildMergeObject(KernelJIT &jit,
                             const std::vector<std::vector<rt::KernelSignature>> &signatures,
                             nlohmann::json program, bool withDeviceKernels,
                             const std::string &cpu, bool withGpuEmulation) {
  auto tm = hostTargetMachine(cpu);
  llvm::LLVMContext ctx;
  auto composite = std::make_unique<llvm::Module>("merge", ctx);
  composite->setDataLayout(tm->createDataLayout());
  composite->setTargetTriple(tm->getTargetTriple());
  llvm::Linker linker(*composite);
  std::vector<std::string> symbols;
  std::vector<EmulatedKernel> emulated;
  nlohmann::json kernels = nlohmann::json::array();
  for (size_t rule = 0; rule < signatures.size(); ++rule) {
    for (const rt::KernelSignature &signature : signatures[rule]) {
      // The same steps as KernelJIT::kernel: lower, then the backend's LLVM module.
      mlir::OwningOpRef<mlir::ModuleOp> loops = jit.lower(rule, signature);
      std::unique_ptr<llvm::Module> module =
          buildLLVMModule(*loops, ctx, *tm, signature.tag());
      if (linker.linkInModule(std::move(module)))
        throw rt::RuntimeError("codegen: cannot link the kernels of rule " +
                               std::to_string(rule + 1) + " (" + signature.text() + ")");
      rt::CompiledRule description = describeRule(jit.ruleFunction(rule), signature.tag());
      for (auto &phase : description.phases)
        symbols.push_back(phase.symbol);
      std::vector<std::string> inputs;
      for (rt::DType d : signature.inputs)
        inputs.push_back(rt::dtypeName(d));
      kernels.push_back({{"rule", rule},
                         {"inputs", inputs},
                         {"output", rt::dtypeName(signature.output)},
                         {"description", rt::describeRule(description)}});
      if (withDeviceKernels && description.hasMatrixPhase()) {
        // Linear algebra runs on the host under a GPU too (its CPU kernels above).
        kernels.back()["host"] = true;
      } else if (withDeviceKernels) {
        TargetBackend &gpu = jit.gpuBackend();
        mlir::OwningOpRef<mlir::ModuleOp> gpuLoops = jit.lower(rule, signature);
        kernels.back()["ptx"] = gpu.emit(*gpuLoops, gpu.binaryStage(), signature.tag());
        if (withGpuEmulation) {
          mlir::OwningOpRef<mlir::ModuleOp> again = jit.lower(rule, signature);
          std::unique_ptr<llvm::Module> host = buildGpuEmulation(
              gpu.emit(*again, "nvvm-llvm", signature.tag()), ctx, *tm, emulated);
          if (linker.linkInModule(std::move(host)))
            throw rt::RuntimeError("--gpu-emulation: cannot link the kernels of rule " +
                                   std::to_string(rule + 1) + " (" + signature.text() + ")");
        }
      }
    }
  }
  program["kernels"] = kernels;

  // mergec_kernel_table: every packed entry point by its own name.
  llvm::Module &m = *composite;
  std::vector<std::pair<std::string, std::string>> packed;
  for (const std::string &symbol : symbols)
    packed.emplace_back(symbol, symbol);
  addEntryTable(m, packed, "mergec_kernel_table", "mergec_kernel_count");
  if (withGpuEmulation) {
    // The same kind of table for the host builds of the GPU kernels (by the kernel's name),
    // and the resolver their stubs call through (set by the mock driver).
    std::vector<std::pair<std::string, std::string>> hostBuilds;
    for (const EmulatedKernel &k : emulated)
      hostBuilds.emplace_back(k.symbol, k.entry);
    addEntryTable(m, hostBuilds, kGpuEmulationTable, kGpuEmulationCount);
    llvm::Type *ptr = llvm::PointerType::getUnqual(ctx);
    llvm::GlobalVariable *resolver = m.getGlobalVariable(kGpuEmulationResolver);
    if (!resolver)
      resolver = new llvm::GlobalVariable(m, ptr, false, llvm::GlobalValue::ExternalLinkage, nullptr,
                                          kGpuEmulationResolver);
    resolver->setInitializer(llvm::ConstantPointerNull::get(llvm::PointerType::getUnqual(ctx)));
  }
  cString(m, program.dump(), "mergec_program", true);
  return emitObject(m, *tm);
}

} // namespace mergec::cpu
