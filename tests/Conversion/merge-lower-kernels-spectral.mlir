// RUN: merge-opt %s -merge-lower-kernels -canonicalize | FileCheck %s
// highpass and lowpass in a matrix phase become calls of the runtime's
// mergec_la_spectral_filter(rows, cols, x, ratio, keep_low, out): keep_low 0 for highpass, 1
// for lowpass, the ratio the f32 scalar the program computed, the status checked like every
// mergec_la_* call (an exit that reports, frees and returns).

// CHECK-DAG:   func.func private @mergec_la_spectral_filter(i64, i64, !llvm.ptr, f32, i32, !llvm.ptr) -> i32
// CHECK-DAG:   func.func private @mergec_matrix_call_failed()
// CHECK-LABEL: func.func @rule_0_phase0(
// CHECK-SAME:    merge.host
// CHECK-DAG:   %[[HIGH:.*]] = arith.constant 0 : i32
// CHECK-DAG:   %[[LOW:.*]] = arith.constant 1 : i32
// CHECK-DAG:   %[[RATIO:.*]] = arith.constant 4.000000e-01 : f32
// CHECK:       %[[X:.*]] = memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK:       %[[HP:.*]] = memref.alloc
// CHECK:       %[[ST:.*]] = call @mergec_la_spectral_filter(%{{.*}}, %{{.*}}, %{{.*}}, %[[RATIO]], %[[HIGH]], %{{.*}})
// CHECK:       %[[OK:.*]] = arith.cmpi eq, %[[ST]], %{{.*}} : i32
// CHECK:       cf.cond_br %[[OK]], ^[[NEXT:.*]], ^[[FAIL:.*]]
// CHECK:       ^[[FAIL]]:
// CHECK-NEXT:    call @mergec_matrix_call_failed()
// CHECK-NEXT:    memref.dealloc %[[X]]
// CHECK-NEXT:    memref.dealloc %[[HP]]
// CHECK-NEXT:    return
// CHECK:       call @mergec_la_spectral_filter(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[LOW]], %{{.*}})
// CHECK-LABEL: func.func @rule_0(
func.func @rule_0() -> !merge.tensor attributes {merge.store = f32} {
  %a = merge.input "a" stored f32
  %r = arith.constant 0.4 : f32
  %hp, %lp = merge.matrix_phase ins(%a) : !merge.tensor, !merge.tensor {
  ^bb0(%x: f32):
    merge.yield %x : f32
  } program {
  ^bb0(%m: !merge.matrix):
    %h = merge.highpass %m, %r
    %l = merge.lowpass %m, %r
    merge.matrix_yield %h, %l : !merge.matrix, !merge.matrix
  }
  %o = merge.kernel ins(%hp, %lp) {
  ^bb0(%x: f32, %y: f32):
    %s = arith.addf %x, %y : f32
    merge.yield %s : f32
  }
  return %o : !merge.tensor
}
