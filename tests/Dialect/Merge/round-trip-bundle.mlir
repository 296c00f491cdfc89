// RUN: merge-opt %s | merge-opt | FileCheck %s
// compress(...)'s ops print and parse back unchanged: the rank the runtime sets per tensor,
// and the named matrices (or scalars) a matrix phase hands to the runtime. merge.emit_matrix
// writes (a side effect): canonicalization keeps it although it has no result.

// CHECK-LABEL: func.func @bundle_ops
// CHECK: %[[K:.*]] = merge.bundle_rank
// CHECK: %[[M:.*]] = merge.to_matrix
// CHECK: %[[U:.*]], %[[S:.*]], %[[VT:.*]] = merge.rsvd %[[M]], %[[K]], %{{.*}} {iters = 2 : i64, oversample = 8 : i64, seed = 0 : i64}
// CHECK: merge.emit_matrix "U.0", %[[U]] : !merge.matrix
// CHECK: merge.emit_matrix "scale.0", %{{.*}} : f32
func.func @bundle_ops() -> !merge.tensor {
  %k = merge.bundle_rank
  %a = merge.input "a"
  %m = merge.to_matrix %a
  %h = merge.name_hash
  %u, %s, %vt = merge.rsvd %m, %k, %h {iters = 2 : i64, oversample = 8 : i64, seed = 0 : i64}
  merge.emit_matrix "U.0", %u : !merge.matrix
  %n = arith.constant 2.0 : f32
  merge.emit_matrix "scale.0", %n : f32
  return %a : !merge.tensor
}
