// RUN: merge-opt %s -split-input-file -pass-pipeline='builtin.module(func.func(merge-fuse-elementwise))' -verify-diagnostics | FileCheck %s
// A rule's matrix ops become one merge.matrix_phase: the operand of each merge.to_matrix is
// computed per element in its body (here tv(a) = a - base), the matrix ops and the scalar
// arithmetic they need (total(s) / 2) move into its program, and what the tensor side uses
// (the matrix turned back into the tensor, and total(s) itself) become its results, read by the
// final kernel as a buffer and a scalar.

// CHECK-LABEL: func.func @rule_0
// CHECK:       %[[BASE:.*]] = merge.input "base"
// CHECK:       %[[A:.*]] = merge.input "a"
// CHECK:       %[[P:.*]]:2 = merge.matrix_phase ins(%[[BASE]], %[[A]]) : f32, !merge.tensor {
// CHECK-NEXT:  ^bb0(%[[X:.*]]: f32, %[[Y:.*]]: f32):
// CHECK-NEXT:    %[[D:.*]] = arith.subf %[[Y]], %[[X]] : f32
// CHECK-NEXT:    merge.yield %[[D]] : f32
// CHECK-NEXT:  } program {
// CHECK-NEXT:  ^bb0(%[[M:.*]]: !merge.matrix):
// CHECK-NEXT:    %[[U:.*]], %[[S:.*]], %[[VT:.*]] = merge.svd %[[M]] rank
// CHECK-NEXT:    %[[T:.*]] = merge.matrix_reduce <sum> %[[S]]
// CHECK-NEXT:    %[[H:.*]] = arith.divf %[[T]]
// CHECK-NEXT:    %[[UV:.*]] = merge.matmul %[[U]], %[[VT]]
// CHECK-NEXT:    %[[SC:.*]] = merge.matrix_map ins(%[[UV]]) {
// CHECK:           arith.mulf %[[H]]
// CHECK:         merge.matrix_yield %[[T]], %[[SC]] : f32, !merge.matrix
// CHECK:       %[[K:.*]] = merge.kernel ins(%[[BASE]], %[[P]]#1) {
// CHECK-NEXT:  ^bb0(%[[B:.*]]: f32, %[[L:.*]]: f32):
// CHECK-NEXT:    %[[R:.*]] = arith.addf %[[B]], %[[L]] : f32
// CHECK-NEXT:    %[[R2:.*]] = arith.addf %[[R]], %[[P]]#0 : f32
// CHECK-NEXT:    merge.yield %[[R2]] : f32
// CHECK:       return %[[K]]
func.func @rule_0() -> !merge.tensor {
  %two = arith.constant 2.0 : f32
  %base = merge.input "base"
  %a = merge.input "a"
  %d = merge.sub %a, %base
  %m = merge.to_matrix %d
  %u, %s, %vt = merge.svd %m rank %two
  %t = merge.matrix_reduce <sum> %s
  %half = arith.divf %t, %two : f32
  %uv = merge.matmul %u, %vt
  %sc = merge.matrix_map ins(%uv) {
  ^bb0(%x: f32):
    %y = arith.mulf %half, %x : f32
    merge.yield %y : f32
  }
  %lr = merge.to_tensor %sc
  %sum = merge.add %base, %lr
  %st = merge.splat %t
  %out = merge.add %sum, %st
  return %out : !merge.tensor
}

// -----

// A matrix computed from a reduction of another matrix of the same rule would need two matrix
// phases: reported.
func.func @rule_1() -> !merge.tensor {
  %a = merge.input "a"
  %m = merge.to_matrix %a
  %two = arith.constant 2.0 : f32
  %l = merge.lowrank %m, %two
  %lt = merge.to_tensor %l
  %n = merge.reduce <sum> %lt
  %sn = merge.splat %n
  %again = merge.mul %a, %sn
  %m2 = merge.to_matrix %again
  %o = merge.orth %m2
  // The phase is placed (and reported) at its last matrix op.
  // expected-error @+1 {{needs a matrix that depends on this phase's own results through another phase}}
  %ot = merge.to_tensor %o
  return %ot : !merge.tensor
}
