//===- CUDABackend.cpp - NVIDIA GPU code generation -----------------------===//
#include "mergec/Target/CUDA/CUDABackend.h"
#include "mergec/Conversion/Passes.h"
#include "mergec/Pipelines/CapturedDiagnostics.h"
#include "mergec/Pipelines/Pipelines.h"
#include "mergec/Runtime/Error.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include <cstdlib>
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

namespace mergec::cuda {

namespace {

const EmitStage kStages[] = {
    {"gpu", "each phase as a gpu.func kernel (grid-stride loops, block-per-chunk reductions)"},
    {"nvvm", "the kernels in the NVVM dialect for --gpu-arch"},
    {"nvvm-llvm", "the kernels as LLVM IR for NVPTX, before libdevice and the NVPTX backend"},
    {"ptx", "PTX assembly: every phase kernel of every rule (what the CUDA driver loads)"},
};

void run(ModuleOp module, const std::function<void(PassManager &)> &build, const char *what) {
  CapturedDiagnostics diags(module.getContext());
  PassManager pm(module.getContext());
  build(pm);
  if (failed(pm.run(module)))
    throw rt::RuntimeError(std::string("codegen (cuda): ") + what + " failed:\n" + diags.text);
}

/// libdevice picks its sqrt by __nvvm_reflect("__CUDA_PREC_SQRT"), 0 (sqrt.approx) unless the
/// compiler says otherwise, as nvcc does without -prec-sqrt=false. The CPU's sqrt is correctly
/// rounded, so ours must be too: the NVVMReflect pass reads extra values from this (process-
/// wide) LLVM option. Denormals stay (no __CUDA_FTZ), like nvcc's default.
void requestPreciseSqrt() {
  static bool done = [] {
    auto &options = llvm::cl::getRegisteredOptions();
    auto it = options.find("nvvm-reflect-add");
    if (it == options.end())
      throw rt::RuntimeError("codegen (cuda): this LLVM has no nvvm-reflect-add option");
    if (it->second->addOccurrence(0, "nvvm-reflect-add", "__CUDA_PREC_SQRT=1"))
      throw rt::RuntimeError("codegen (cuda): cannot set __CUDA_PREC_SQRT");
    return true;
  }();
  (void)done;
}

/// The CUDA toolkit whose libdevice the kernels link: $CUDA_HOME when it has one, else the
/// toolkit mergec was configured with.
std::string toolkitDirectory() {
  auto hasLibdevice = [](const std::string &dir) {
    return !dir.empty() && llvm::sys::fs::exists(dir + "/nvvm/libdevice/libdevice.10.bc");
  };
  if (const char *home = std::getenv("CUDA_HOME"); home && hasLibdevice(home))
    return home;
  if (hasLibdevice(MERGEC_CUDA_TOOLKIT_DIR))
    return MERGEC_CUDA_TOOLKIT_DIR;
  throw rt::RuntimeError("codegen (cuda): libdevice (nvvm/libdevice/libdevice.10.bc) is in "
                         "neither $CUDA_HOME nor " MERGEC_CUDA_TOOLKIT_DIR
                         "; install the CUDA toolkit or set CUDA_HOME");
}

std::string print(ModuleOp module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  module.print(os);
  return text;
}

} // namespace

bool isKnownGpuArch(llvm::StringRef arch) {
  // NVPTX knows sm_20 .. sm_121; mergec needs f64 and 64-bit atomics-free code: sm_60 and up.
  if (!arch.consume_front("sm_"))
    return false;
  arch.consume_back("a");
  unsigned n = 0;
  return !arch.getAsInteger(10, n) && n >= 60 && n <= 121;
}

llvm::ArrayRef<EmitStage> CUDABackend::stages() const { return kStages; }

std::string CUDABackend::identity() const { return "cuda nvptx " + arch_ + " +ptx80"; }

std::string CUDABackend::emit(ModuleOp loops, llvm::StringRef stage, const std::string &tag) {
  // The packed names of KernelABI.h, so one rule's kernels from several signatures (and rules)
  // can share a module.
  for (auto f : llvm::make_early_inc_range(loops.getOps<func::FuncOp>())) {
    if (f.getSymName().starts_with("mergec_"))
      continue; // named already (KernelJIT::emitAll: several rules in one module)
    std::string symbol = "mergec_" + f.getSymName().str() + "__" + tag;
    if (failed(SymbolTable::replaceAllSymbolUses(f, StringAttr::get(loops.getContext(), symbol),
                                                 loops)))
      throw rt::RuntimeError("codegen (cuda): cannot rename " + f.getSymName().str());
    f.setSymName(symbol);
  }
  run(loops, [](PassManager &pm) { buildLoopsToGPUPipeline(pm); }, "lowering to GPU kernels");
  if (stage == "gpu")
    return print(loops);
  run(loops, [&](PassManager &pm) { buildGPUToNVVMPipeline(pm, arch_); }, "lowering to NVVM");
  if (stage == "nvvm")
    return print(loops);
  if (stage == "nvvm-llvm") {
    // What gpu-module-to-binary translates (the gpu.module) before it links libdevice and runs
    // the NVPTX backend: the kernels' own code, which a CPU build of them (merge executables'
    // --gpu-emulation, GpuKernelEmulation.cpp) starts from.
    gpu::GPUModuleOp kernels;
    loops.walk([&](gpu::GPUModuleOp m) { kernels = m; });
    if (!kernels)
      throw rt::RuntimeError("codegen (cuda): no gpu.module to translate");
    llvm::LLVMContext ctx;
    std::unique_ptr<llvm::Module> module = translateModuleToLLVMIR(kernels, ctx, "kernels");
    if (!module)
      throw rt::RuntimeError("codegen (cuda): translation of the kernels to LLVM IR failed");
    std::string text;
    llvm::raw_string_ostream os(text);
    module->print(os, nullptr);
    return text;
  }
  if (stage != "ptx")
    throw rt::RuntimeError("codegen: the cuda target has no stage '" + stage.str() + "'");
  requestPreciseSqrt();
  std::string toolkit = toolkitDirectory();
  run(loops, [&](PassManager &pm) { buildNVVMToPTXPipeline(pm, toolkit); }, "PTX generation");
  std::string ptx;
  loops.walk([&](gpu::BinaryOp binary) {
    for (Attribute object : binary.getObjects())
      if (auto obj = dyn_cast<gpu::ObjectAttr>(object))
        ptx += obj.getObject().getValue().str();
  });
  if (ptx.empty())
    throw rt::RuntimeError("codegen (cuda): the NVPTX backend produced no PTX");
  // A math function left as a call means libdevice was not linked: the driver would refuse
  // the module at run time; say so now.
  if (auto call = ptx.find("__nv_"); call != std::string::npos)
    throw rt::RuntimeError("codegen (cuda): the PTX calls libdevice's " +
                           ptx.substr(call, ptx.find_first_of(",;) \n", call) - call) +
                           " but libdevice was not linked (from " + toolkit + ")");
  return ptx;
}

} // namespace mergec::cuda
