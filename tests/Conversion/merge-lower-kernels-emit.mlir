// RUN: merge-opt %s -merge-lower-kernels -canonicalize | FileCheck %s
// compress(...): merge.bundle_rank reads the rank the runtime set in slot 3 of the scalars
// array (KernelABI.h kBundleRankSlot), and merge.emit_matrix becomes a call of
// mergec_matrix_emit with its name (a private constant global of its bytes), its shape and its
// data; a scalar goes out as a 1 x 1 buffer of its own. A non-zero status (the runtime refused
// the name or shape) branches to the exit that frees the program's buffers and returns.

// CHECK-DAG:   memref.global "private" constant @mergec_emit_name_{{[0-9A-F]+}} : memref<3xi8> = dense<[85, 46, 48]>
// CHECK-DAG:   memref.global "private" constant @mergec_emit_name_{{[0-9A-F]+}} : memref<7xi8>
// CHECK-DAG:   func.func private @mergec_matrix_emit(!llvm.ptr, i64, i64, i64, !llvm.ptr) -> i32
// CHECK-LABEL: func.func @rule_0_phase0(
// CHECK:       %[[C3:.*]] = arith.constant 3 : index
// CHECK:       %[[K:.*]] = memref.load %{{.*}}[%[[C3]]] : memref<?xf64>
// CHECK:       call @mergec_la_rsvd
// CHECK:       %[[NAME:.*]] = memref.get_global @mergec_emit_name_{{[0-9A-F]+}} : memref<3xi8>
// CHECK:       %[[ST:.*]] = call @mergec_matrix_emit(%{{.*}}, %c3_i64, %{{.*}}, %{{.*}}, %{{.*}})
// CHECK:       %[[OK:.*]] = arith.cmpi eq, %[[ST]], %{{.*}} : i32
// CHECK:       cf.cond_br %[[OK]], ^[[NEXT:.*]], ^[[FAIL:.*]]
// CHECK:       ^[[FAIL]]:
// CHECK-NOT:     call
// CHECK:         memref.dealloc
// CHECK:         return
// CHECK:       memref.alloc() : memref<1xf32>
// CHECK:       memref.get_global @mergec_emit_name_{{[0-9A-F]+}} : memref<7xi8>
// CHECK:       call @mergec_matrix_emit(%{{.*}}, %c7_i64, %c1_i64, %c1_i64, %{{.*}})
func.func @rule_0() -> !merge.tensor attributes {merge.store = f32} {
  %a = merge.input "a" stored f32
  %k = merge.bundle_rank
  %h = merge.name_hash
  %two = arith.constant 2.0 : f32
  merge.matrix_phase ins(%a) {
  ^bb0(%x: f32):
    merge.yield %x : f32
  } program {
  ^bb0(%m: !merge.matrix):
    %u, %s, %vt = merge.rsvd %m, %k, %h {iters = 2 : i64, oversample = 8 : i64, seed = 0 : i64}
    merge.emit_matrix "U.0", %u : !merge.matrix
    merge.emit_matrix "scale.0", %two : f32
    merge.matrix_yield
  }
  %o = merge.kernel ins(%a) {
  ^bb0(%x: f32):
    merge.yield %x : f32
  }
  return %o : !merge.tensor
}
