// RUN: merge-opt %s -merge-lower-to-llvm | FileCheck %s
// The whole lowering pipeline ends in the LLVM dialect only: memref descriptors are expanded
// into pointer/offset/size/stride arguments and the loop into branches.

// CHECK-LABEL: llvm.func @rule_0(
// CHECK-SAME:    !llvm.ptr
// CHECK-SAME:    merge.inputs = ["base", "a"]
// CHECK-NOT:   memref.
// CHECK-NOT:   scf.
// CHECK-NOT:   merge.kernel
// CHECK:       llvm.cond_br
// CHECK:       llvm.load {{.*}} -> i16
// CHECK:       llvm.fsub
// CHECK:       llvm.store {{.*}} : i16, !llvm.ptr
// CHECK:       llvm.return
func.func @rule_0() -> !merge.tensor attributes {merge.store = bf16} {
  %base = merge.input "base" stored bf16
  %a = merge.input "a" stored bf16
  %k = merge.kernel ins(%base, %a) {
  ^bb0(%x: f32, %y: f32):
    %z = arith.subf %y, %x : f32
    merge.yield %z : f32
  }
  return %k : !merge.tensor
}
