//===- LinearAlgebraJitTest.cpp - kernels calling mergec_la_* through ORC -===//
// A small LLVM IR module that calls the runtime's linear algebra by symbol, compiled for the
// host with the CPU backend's code generation and linked into this process by the project's
// ObjectLoader: the calls resolve to the functions this program exports, as they do in mergec.
#include "mergec/JIT/ObjectLoader.h"
#include "mergec/Runtime/LinearAlgebra.h"
#include "mergec/Target/CPU/CPUBackend.h"

#include "llvm/AsmParser/Parser.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Target/TargetMachine.h"

#include <gtest/gtest.h>
#include <string>
#include <vector>

namespace {

/// Packed entry points (void(void **args)) as mergec's kernels have: args[0..2] point at a, b
/// and c, args[3] at an i32 status; @call_svd asks for rank 5 of a 2×3 matrix, which fails.
const char *kModule = R"(
declare i32 @mergec_la_gemm(i32, i32, i64, i64, i64, float, ptr, ptr, ptr)
declare i32 @mergec_la_svd(i64, i64, ptr, i64, ptr, ptr, ptr)

define void @call_gemm(ptr %args) {
  %a = load ptr, ptr %args
  %pb = getelementptr ptr, ptr %args, i64 1
  %b = load ptr, ptr %pb
  %pc = getelementptr ptr, ptr %args, i64 2
  %c = load ptr, ptr %pc
  %ps = getelementptr ptr, ptr %args, i64 3
  %status = load ptr, ptr %ps
  %r = call i32 @mergec_la_gemm(i32 0, i32 0, i64 2, i64 2, i64 3, float 2.0, ptr %a, ptr %b, ptr %c)
  store i32 %r, ptr %status
  ret void
}

define void @call_svd(ptr %args) {
  %a = load ptr, ptr %args
  %pc = getelementptr ptr, ptr %args, i64 2
  %c = load ptr, ptr %pc
  %ps = getelementptr ptr, ptr %args, i64 3
  %status = load ptr, ptr %ps
  %r = call i32 @mergec_la_svd(i64 2, i64 3, ptr %a, i64 5, ptr %c, ptr %c, ptr %c)
  store i32 %r, ptr %status
  ret void
}
)";

std::string compileForHost() {
  llvm::LLVMContext ctx;
  llvm::SMDiagnostic diag;
  std::unique_ptr<llvm::Module> module = llvm::parseAssemblyString(kModule, diag, ctx);
  if (!module)
    return "";
  auto tm = mergec::cpu::hostTargetMachine();
  module->setDataLayout(tm->createDataLayout());
  module->setTargetTriple(tm->getTargetTriple());
  return mergec::cpu::emitObject(*module, *tm);
}

TEST(LinearAlgebraJitTest, KernelsCallTheRuntimeBySymbol) {
  std::string object = compileForHost();
  ASSERT_FALSE(object.empty());
  mergec::ObjectLoader loader;
  auto entries = loader.load(object, {"call_gemm", "call_svd"});
  ASSERT_EQ(entries.size(), 2u);

  // c = 2 · a (2×3) · b (3×2)
  std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {1, 0, 0, 1, 1, 1}, c(4, -1);
  int32_t status = -1;
  void *args[] = {a.data(), b.data(), c.data(), &status};
  entries[0](args);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(c, (std::vector<float>{8, 10, 20, 22}));

  entries[1](args);
  EXPECT_EQ(status, 1);
  EXPECT_STREQ(mergec_la_error(), "svd of a 2x3 matrix: rank 5 is out of range 1..2");
}

} // namespace
