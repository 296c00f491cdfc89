// RUN: merge-opt %s -canonicalize | FileCheck %s
// merge.select with a mask known while compiling (a splat of a constant) is its chosen side,
// so the other side's phases are never built: non-zero picks a, zero picks b.

// CHECK-LABEL: func.func @picks_a
// CHECK-NEXT:    %[[A:.*]] = merge.input "a"
// CHECK-NEXT:    return %[[A]]
func.func @picks_a() -> !merge.tensor {
  %a = merge.input "a"
  %b = merge.input "b"
  %one = arith.constant 1.0 : f32
  %m = merge.splat %one
  %r = merge.select %m, %a, %b
  return %r : !merge.tensor
}

// CHECK-LABEL: func.func @picks_b
// CHECK-NEXT:    %[[B:.*]] = merge.input "b"
// CHECK-NEXT:    return %[[B]]
func.func @picks_b() -> !merge.tensor {
  %a = merge.input "a"
  %b = merge.input "b"
  %s = merge.reduce <sum> %a
  %zero = arith.constant 0.0 : f32
  %m = merge.splat %zero
  %r = merge.select %m, %a, %b
  return %r : !merge.tensor
}

// CHECK-LABEL: func.func @unknown_mask_stays
// CHECK:         merge.select
func.func @unknown_mask_stays(%x: f32) -> !merge.tensor {
  %a = merge.input "a"
  %b = merge.input "b"
  %m = merge.splat %x
  %r = merge.select %m, %a, %b
  return %r : !merge.tensor
}
