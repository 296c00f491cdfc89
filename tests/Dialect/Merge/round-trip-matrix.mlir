// RUN: merge-opt %s | merge-opt | FileCheck %s
// The matrix ops and the matrix phase print and parse back unchanged.

// CHECK-LABEL: func.func @matrix_ops
// CHECK: %[[M:.*]] = merge.to_matrix %{{.*}}
// CHECK: %[[U:.*]], %[[S:.*]], %[[VT:.*]] = merge.svd %[[M]] rank %{{.*}}
// CHECK: merge.rsvd %[[M]], %{{.*}}, %{{.*}} {iters = 2 : i64, oversample = 8 : i64, seed = 7 : i64}
// CHECK: merge.svd %[[M]]{{$}}
// CHECK: merge.matmul %[[U]], %[[VT]]
// CHECK: merge.transpose
// CHECK: merge.diag %[[S]]
// CHECK: merge.cumsum %[[S]]
// CHECK: merge.highpass %[[M]], %{{.*}}
// CHECK: merge.lowpass %[[M]], %{{.*}}
// CHECK: merge.orth
// CHECK: merge.hcat %[[U]], %[[U]]
// CHECK: merge.vcat %[[VT]], %[[VT]]
// CHECK: merge.take_cols %[[U]], %{{.*}}
// CHECK: merge.take_rows %[[VT]], %{{.*}}
// CHECK: merge.lowrank %[[M]], %{{.*}}
// CHECK: merge.rank_of %[[M]]
// CHECK: merge.matrix_reduce <sum> %[[S]]
// CHECK: merge.matrix_map ins(%{{.*}}) {
// CHECK: merge.to_tensor
func.func @matrix_ops() -> !merge.tensor {
  %k = arith.constant 2.0 : f32
  %a = merge.input "a"
  %m = merge.to_matrix %a
  %u, %s, %vt = merge.svd %m rank %k
  %h = merge.name_hash
  %ru, %rs, %rvt = merge.rsvd %m, %k, %h {oversample = 8 : i64, iters = 2 : i64, seed = 7 : i64}
  %fu, %fs, %fvt = merge.svd %m
  %p = merge.matmul %u, %vt
  %t = merge.transpose %p
  %d = merge.diag %s
  %c = merge.cumsum %s
  %ratio = arith.constant 0.9 : f32
  %hp = merge.highpass %m, %ratio
  %lp = merge.lowpass %m, %ratio
  %o = merge.orth %t
  %hc = merge.hcat %u, %u
  %vc = merge.vcat %vt, %vt
  %uc = merge.take_cols %u, %k
  %vr = merge.take_rows %vt, %k
  %l = merge.lowrank %m, %k
  %r = merge.rank_of %m
  %tot = merge.matrix_reduce <sum> %s
  %scaled = merge.matrix_map ins(%l) {
  ^bb0(%x: f32):
    %y = arith.mulf %x, %tot : f32
    merge.yield %y : f32
  }
  %out = merge.to_tensor %scaled
  return %out : !merge.tensor
}

// CHECK-LABEL: func.func @phase
// CHECK: %{{.*}}:2 = merge.matrix_phase ins(%{{.*}}) : f32, !merge.tensor {
// CHECK: } program {
// CHECK: ^bb0(%{{.*}}: !merge.matrix):
// CHECK: merge.matrix_yield %{{.*}}, %{{.*}} : f32, !merge.matrix
func.func @phase() -> !merge.tensor {
  %a = merge.input "a"
  %s, %t = merge.matrix_phase ins(%a) : f32, !merge.tensor {
  ^bb0(%x: f32):
    merge.yield %x : f32
  } program {
  ^bb0(%m: !merge.matrix):
    %u, %sv, %vt = merge.svd %m
    %n = merge.matrix_reduce <max> %sv
    %o = merge.matmul %u, %vt
    merge.matrix_yield %n, %o : f32, !merge.matrix
  }
  return %t : !merge.tensor
}
