// RUN: merge-opt %s -pass-pipeline='builtin.module(func.func(merge-fuse-elementwise))' | FileCheck %s
// A rule's whole elementwise DAG (7 tensor ops here) becomes one merge.kernel that reads each
// distinct input once; scalars stay outside and are used inside directly.

// CHECK-LABEL: func.func @rule_0
// CHECK-DAG:   %[[HALF:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-DAG:   %[[BASE:.*]] = merge.input "base"
// CHECK-DAG:   %[[A:.*]] = merge.input "a"
// CHECK-DAG:   %[[B:.*]] = merge.input "b"
// CHECK:       %[[K:.*]] = merge.kernel ins(%[[BASE]], %[[A]], %[[B]]) {
// CHECK-NEXT:  ^bb0(%[[XB:.*]]: f32, %[[XA:.*]]: f32, %[[XC:.*]]: f32):
// CHECK-NEXT:    %[[TA:.*]] = arith.subf %[[XA]], %[[XB]] : f32
// CHECK-NEXT:    %[[TB:.*]] = arith.subf %[[XC]], %[[XB]] : f32
// CHECK-NEXT:    %[[S:.*]] = arith.addf %[[TA]], %[[TB]] : f32
// CHECK-NEXT:    %[[N:.*]] = arith.constant 2.000000e+00 : f32
// CHECK-NEXT:    %[[M:.*]] = arith.divf %[[S]], %[[N]] : f32
// CHECK-NEXT:    %[[W:.*]] = arith.mulf %[[HALF]], %[[M]] : f32
// CHECK-NEXT:    %[[R:.*]] = arith.addf %[[XB]], %[[W]] : f32
// CHECK-NEXT:    merge.yield %[[R]] : f32
// CHECK-NEXT:  }
// CHECK-NEXT:  return %[[K]] : !merge.tensor
// CHECK-NOT:   merge.sub
func.func @rule_0() -> !merge.tensor {
  %half = arith.constant 0.5 : f32
  %base = merge.input "base"
  %a = merge.input "a"
  %b = merge.input "b"
  %ta = merge.sub %a, %base
  %tb = merge.sub %b, %base
  %m = merge.mean %ta, %tb
  %s = merge.splat %half
  %w = merge.mul %s, %m
  %r = merge.add %base, %w
  return %r : !merge.tensor
}

// A model's tensor unchanged still gets a (identity) kernel: it converts dtypes when needed.
// CHECK-LABEL: func.func @rule_1
// CHECK:       %[[IN:.*]] = merge.input "base"
// CHECK-NEXT:  %[[K:.*]] = merge.kernel ins(%[[IN]]) {
// CHECK-NEXT:  ^bb0(%[[X:.*]]: f32):
// CHECK-NEXT:    merge.yield %[[X]] : f32
func.func @rule_1() -> !merge.tensor {
  %base = merge.input "base"
  return %base : !merge.tensor
}

// Negation and a 3-way sum: sums accumulate left to right.
// CHECK-LABEL: func.func @rule_2
// CHECK:       ^bb0(%[[X:.*]]: f32, %[[Y:.*]]: f32):
// CHECK-NEXT:    %[[N:.*]] = arith.negf %[[Y]] : f32
// CHECK-NEXT:    %[[S1:.*]] = arith.addf %[[X]], %[[N]] : f32
// CHECK-NEXT:    %[[S2:.*]] = arith.addf %[[S1]], %[[X]] : f32
// CHECK-NEXT:    merge.yield %[[S2]] : f32
func.func @rule_2() -> !merge.tensor {
  %a = merge.input "a"
  %b = merge.input "b"
  %n = merge.neg %b
  %s = merge.sum %a, %n, %a
  return %s : !merge.tensor
}
