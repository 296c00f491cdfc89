//===- GpuKernelEmulation.cpp - CPU builds of the GPU kernels, for tests --===//
// GpuKernelEmulation.h says what this is for and what changes on the way to the host.
#include "mergec/Target/CPU/GpuKernelEmulation.h"
#include "mergec/Runtime/Error.h"

#include "mlir/ExecutionEngine/OptUtils.h"
#include "llvm/AsmParser/Parser.h"
#include "llvm/IR/Constants.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"

namespace mergec::cpu {

namespace {

/// Whether a declaration is something the emulator provides: an NVVM intrinsic (thread and
/// block indices, barriers) or a libdevice function (math). Other intrinsics (llvm.fabs,
/// llvm.maximum, ...) mean the same on every target and stay.
bool providedByEmulator(const llvm::Function &f) {
  llvm::StringRef name = f.getName();
  return f.isDeclaration() && (name.starts_with("llvm.nvvm.") || name.starts_with("__nv_"));
}

/// A private C string.
llvm::Constant *cString(llvm::Module &m, llvm::StringRef text, const llvm::Twine &name) {
  auto *data = llvm::ConstantDataArray::getString(m.getContext(), text, /*AddNull=*/true);
  return new llvm::GlobalVariable(m, data->getType(), true, llvm::GlobalValue::PrivateLinkage,
                                  data, name);
}

/// An internal function of `decl`'s type that resolves `decl`'s name through the emulator
/// once and calls what it got.
llvm::Function *resolvingStub(llvm::Module &m, llvm::Function &decl, llvm::GlobalVariable &resolver) {
  llvm::LLVMContext &ctx = m.getContext();
  llvm::Type *ptr = llvm::PointerType::getUnqual(ctx);
  std::string name = decl.getName().str();
  auto *stub = llvm::Function::Create(decl.getFunctionType(), llvm::GlobalValue::InternalLinkage,
                                      "mergec_gpuemu_stub." + name, m);
  auto *slot = new llvm::GlobalVariable(m, ptr, false, llvm::GlobalValue::InternalLinkage,
                                        llvm::ConstantPointerNull::get(llvm::PointerType::getUnqual(ctx)),
                                        "mergec_gpuemu_slot." + name);
  llvm::Constant *text = cString(m, name, "mergec_gpuemu_name." + name);
  auto *entry = llvm::BasicBlock::Create(ctx, "entry", stub);
  auto *resolve = llvm::BasicBlock::Create(ctx, "resolve", stub);
  auto *call = llvm::BasicBlock::Create(ctx, "call", stub);
  llvm::IRBuilder<> b(entry);
  llvm::Value *known = b.CreateLoad(ptr, slot);
  b.CreateCondBr(b.CreateIsNull(known), resolve, call);
  b.SetInsertPoint(resolve);
  llvm::Value *resolveFn = b.CreateLoad(ptr, &resolver);
  llvm::Value *found = b.CreateCall(llvm::FunctionType::get(ptr, {ptr}, false), resolveFn, {text});
  b.CreateStore(found, slot);
  b.CreateBr(call);
  b.SetInsertPoint(call);
  llvm::PHINode *fn = b.CreatePHI(ptr, 2);
  fn->addIncoming(known, entry);
  fn->addIncoming(found, resolve);
  llvm::SmallVector<llvm::Value *> args;
  for (llvm::Argument &a : stub->args())
    args.push_back(&a);
  llvm::CallInst *result = b.CreateCall(decl.getFunctionType(), fn, args);
  if (result->getType()->isVoidTy())
    b.CreateRetVoid();
  else
    b.CreateRet(result);
  return stub;
}

/// `void entry(void **params)`: loads each of `kernel`'s arguments from the pointer
/// cuLaunchKernel's kernelParams has for it, and calls the kernel.
llvm::Function *launchEntry(llvm::Module &m, llvm::Function &kernel, const std::string &name) {
  llvm::LLVMContext &ctx = m.getContext();
  llvm::Type *ptr = llvm::PointerType::getUnqual(ctx);
  auto *entry = llvm::Function::Create(llvm::FunctionType::get(llvm::Type::getVoidTy(ctx), {ptr}, false),
                                       llvm::GlobalValue::ExternalLinkage, name, m);
  entry->setVisibility(llvm::GlobalValue::HiddenVisibility);
  llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", entry));
  llvm::SmallVector<llvm::Value *> args;
  for (llvm::Argument &a : kernel.args()) {
    llvm::Value *where = b.CreateLoad(ptr, b.CreateConstGEP1_64(ptr, entry->getArg(0), a.getArgNo()));
    args.push_back(b.CreateLoad(a.getType(), where));
  }
  b.CreateCall(&kernel, args);
  b.CreateRetVoid();
  return entry;
}

} // namespace

std::unique_ptr<llvm::Module> buildGpuEmulation(const std::string &nvvmIR, llvm::LLVMContext &ctx,
                                                llvm::TargetMachine &tm,
                                                std::vector<EmulatedKernel> &kernels) {
  llvm::SMDiagnostic error;
  std::unique_ptr<llvm::Module> m =
      llvm::parseAssembly(llvm::MemoryBufferRef(nvvmIR, "kernels"), error, ctx);
  if (!m) {
    std::string text;
    llvm::raw_string_ostream os(text);
    error.print("nvvm-llvm", os);
    throw rt::RuntimeError("--gpu-emulation: cannot read the kernels' LLVM IR: " + text);
  }
  m->setDataLayout(tm.createDataLayout());
  m->setTargetTriple(tm.getTargetTriple());
  for (const char *nvvmOnly : {"nvvm.annotations", "nvvmir.version"})
    if (llvm::NamedMDNode *md = m->getNamedMetadata(nvvmOnly))
      m->eraseNamedMetadata(md);
  llvm::Type *ptr = llvm::PointerType::getUnqual(ctx);
  auto *resolver = new llvm::GlobalVariable(*m, ptr, false, llvm::GlobalValue::ExternalLinkage,
                                            nullptr, kGpuEmulationResolver);

  // Workgroup memory: one block runs at a time, so an ordinary global serves its threads. The
  // uses keep their address space through a cast, a no-op on the host.
  for (llvm::GlobalVariable &g : llvm::make_early_inc_range(m->globals())) {
    if (g.getAddressSpace() == 0)
      continue;
    auto *host = new llvm::GlobalVariable(*m, g.getValueType(), false, llvm::GlobalValue::InternalLinkage,
                                          llvm::Constant::getNullValue(g.getValueType()),
                                          g.getName() + ".host");
    host->setAlignment(g.getAlign());
    g.replaceAllUsesWith(llvm::ConstantExpr::getAddrSpaceCast(host, g.getType()));
    g.eraseFromParent();
  }

  llvm::SmallVector<llvm::Function *> provided, defined;
  for (llvm::Function &f : *m) {
    if (providedByEmulator(f))
      provided.push_back(&f);
    else if (!f.isDeclaration())
      defined.push_back(&f);
  }
  for (llvm::Function *decl : provided) {
    llvm::Function *stub = resolvingStub(*m, *decl, *resolver);
    decl->replaceAllUsesWith(stub);
    decl->eraseFromParent();
  }
  for (llvm::Function *f : defined) {
    bool kernel = f->getCallingConv() == llvm::CallingConv::PTX_Kernel;
    f->setCallingConv(llvm::CallingConv::C);
    for (llvm::User *user : f->users())
      if (auto *call = llvm::dyn_cast<llvm::CallBase>(user))
        call->setCallingConv(llvm::CallingConv::C);
    f->removeFnAttr("target-cpu");
    f->removeFnAttr("target-features");
    std::string symbol = f->getName().str();
    // Internal, so it links beside the CPU twin of the same name.
    f->setLinkage(llvm::GlobalValue::InternalLinkage);
    f->setName("mergec_gpuemu_kernel." + symbol);
    if (kernel) {
      std::string entry = "mergec_gpuemu_entry." + symbol;
      launchEntry(*m, *f, entry);
      kernels.push_back({symbol, entry});
    }
  }
  std::string broken;
  llvm::raw_string_ostream os(broken);
  if (llvm::verifyModule(*m, &os))
    throw rt::RuntimeError("--gpu-emulation: the host build of the kernels is invalid: " + broken);
  if (auto err = mlir::makeOptimizingTransformer(2, 0, &tm)(m.get()))
    throw rt::RuntimeError("--gpu-emulation: " + llvm::toString(std::move(err)));
  return m;
}

} // namespace mergec::cpu
