// RUN: merge-opt %s -merge-lower-kernels -canonicalize | FileCheck %s
// A matrix phase becomes a host program, not a loop nest (merge.host): its body computes each
// matrix the program starts from into a buffer (here bf16 `a` widened), then each step calls
// the runtime's mergec_la_* functions with raw pointers, a non-zero status or a shape that
// does not fit branching to an exit that reports it, frees the program's buffers and returns;
// at the end the scalar results go to result[0..] (f64) and each matrix into its buffer (an
// input of the later phases).

// CHECK-DAG:   func.func private @mergec_la_lowrank(i64, i64, !llvm.ptr, i64, !llvm.ptr) -> i32
// CHECK-DAG:   func.func private @mergec_la_gemm(i32, i32, i64, i64, i64, f32, !llvm.ptr, !llvm.ptr, !llvm.ptr) -> i32
// CHECK-DAG:   func.func private @mergec_matrix_shape_error(i32, i64, i64, i64, i64)
// CHECK-DAG:   func.func private @mergec_matrix_call_failed()
// CHECK-LABEL: func.func @rule_0_phase0(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xi16>, %[[BUF:[^:]*]]: memref<?xf32>, %[[RES:[^:]*]]: memref<?xf64>, %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index,
// CHECK-SAME:    merge.host
// CHECK-NOT:   scf.parallel
// CHECK:       %[[M:.*]] = memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK:       scf.for
// CHECK:         memref.load %[[A]]
// CHECK:         memref.store %{{.*}}, %[[M]]
// CHECK:       %[[LR:.*]] = memref.alloc
// CHECK:       %[[ST:.*]] = call @mergec_la_lowrank
// CHECK:       %[[OK:.*]] = arith.cmpi eq, %[[ST]], %{{.*}} : i32
// CHECK:       cf.cond_br %[[OK]], ^[[NEXT:.*]], ^[[FAIL:.*]]
// CHECK:       ^[[FAIL]]:
// CHECK-NEXT:    call @mergec_matrix_call_failed()
// CHECK-NEXT:    memref.dealloc %[[M]]
// CHECK-NEXT:    memref.dealloc %[[LR]]
// CHECK-NEXT:    return
// The product's inner dimensions are checked (lowrank keeps the shape: rows against cols).
// CHECK:       cf.cond_br %{{.*}}, ^{{.*}}, ^[[SHAPE:.*]]
// CHECK:       ^[[SHAPE]]:
// CHECK:         call @mergec_matrix_shape_error(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}})
// CHECK:       call @mergec_la_gemm
// CHECK:       memref.store %{{.*}}, %[[RES]][%{{.*}}] : memref<?xf64>
// CHECK:       scf.for
// CHECK:         memref.store %{{.*}}, %[[BUF]]
// CHECK:       memref.dealloc %[[M]]
// CHECK:       return
// The final kernel reads the buffer as an input and the scalar from slot 4.
// CHECK-LABEL: func.func @rule_0(
// CHECK-SAME:    %{{[^:]*}}: memref<?xi16>, %[[B:[^:]*]]: memref<?xf32>, %{{[^:]*}}: memref<?xf32>,
// CHECK:         memref.load %{{.*}}[%c4{{.*}}] : memref<?xf64>
// CHECK:         scf.parallel
// CHECK:           memref.load %[[B]]
func.func @rule_0() -> !merge.tensor attributes {merge.store = f32} {
  %a = merge.input "a" stored bf16
  %k = arith.constant 3.0 : f32
  %s, %t = merge.matrix_phase ins(%a) : f32, !merge.tensor {
  ^bb0(%x: f32):
    merge.yield %x : f32
  } program {
  ^bb0(%m: !merge.matrix):
    %l = merge.lowrank %m, %k
    %r = merge.rank_of %m
    %p = merge.matmul %l, %l
    merge.matrix_yield %r, %p : f32, !merge.matrix
  }
  %o = merge.kernel ins(%a, %t) {
  ^bb0(%x: f32, %y: f32):
    %z = arith.addf %x, %y : f32
    %w = arith.mulf %z, %s : f32
    merge.yield %w : f32
  }
  return %o : !merge.tensor
}
