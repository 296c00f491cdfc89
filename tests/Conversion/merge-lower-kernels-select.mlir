// RUN: merge-opt %s -merge-lower-kernels -canonicalize | FileCheck %s
// Selection and rank phases store their f32 keys (one per element) for the runtime; a rank
// buffer is one more f32 memref argument of every phase after the model inputs; a selection's
// results are read from its four scalar slots (phase 0: slots 4..7); merge.element_index is the
// loop index.

func.func @rule_0() -> !merge.tensor attributes {merge.store = bf16} {
  %a = merge.input "a" stored bf16
  %t0, %t1, %t2, %t3 = merge.select_kernel <topk> ins(%a) {
  ^bb0(%x: f32):
    merge.yield %x : f32
  } {nonzero = false, param = 5.000000e-01 : f64, skip = 0.000000e+00 : f64}
  %r = merge.row_kernel <rank> ins(%a) {
  ^bb0(%x: f32):
    merge.yield %x : f32
  }
  %k = merge.kernel ins(%a, %r) {
  ^bb0(%x: f32, %rank: f32):
    %i = merge.element_index
    %fi = arith.sitofp %i : i64 to f64
    %lt = arith.cmpf olt, %fi, %t1 : f64
    %y = arith.mulf %x, %rank : f32
    %z = arith.select %lt, %y, %x : f32
    merge.yield %z : f32
  }
  return %k : !merge.tensor
}

// CHECK-LABEL: func.func @rule_0_phase0(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xi16>, %{{[^:]*}}: memref<?xf32>, %[[KEYS:[^:]*]]: memref<?xf32>,
// CHECK-SAME:    merge.kind = #merge.select<topk>
// A selection phase writes one key per element, in the same loop nest as every phase: chunks
// in an scf.parallel, a chunk's elements in order.
// CHECK:         scf.parallel (%[[C:.*]]) = (%{{.*}}) to (%{{.*}}) step
// CHECK:           scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step
// CHECK:             memref.store %{{.*}}, %[[KEYS]][%[[J]]] : memref<?xf32>
// CHECK:           scf.reduce
// CHECK-LABEL: func.func @rule_0_phase1(
// CHECK-SAME:    %{{[^:]*}}: memref<?xi16>, %{{[^:]*}}: memref<?xf32>, %[[RKEYS:[^:]*]]: memref<?xf32>,
// CHECK-SAME:    merge.kind = #merge.row<rank>
// CHECK:         scf.parallel
// CHECK:           scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step
// CHECK:             memref.store %{{.*}}, %[[RKEYS]][%[[K]]] : memref<?xf32>
// CHECK-LABEL: func.func @rule_0(
// CHECK-SAME:    %[[A2:[^:]*]]: memref<?xi16>, %[[RANKS:[^:]*]]: memref<?xf32>, %[[OUT:[^:]*]]: memref<?xi16>,
// CHECK-SAME:    %[[SC:[^:]*]]: memref<?xf64>)
// CHECK:         %[[C5:.*]] = arith.constant 5 : index
// CHECK:         %[[T1:.*]] = memref.load %[[SC]][%[[C5]]] : memref<?xf64>
// CHECK:         scf.parallel
// CHECK:         scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step
// CHECK:           %[[RANK:.*]] = memref.load %[[RANKS]][%[[I]]] : memref<?xf32>
// CHECK:           %[[IDX:.*]] = arith.index_cast %[[I]] : index to i64
// CHECK:           %[[F:.*]] = arith.sitofp %[[IDX]] : i64 to f64
// CHECK:           arith.cmpf olt, %[[F]], %[[T1]] : f64
// CHECK:           arith.mulf %{{.*}}, %[[RANK]] : f32
// CHECK:           memref.store %{{.*}}, %[[OUT]][%[[I]]] : memref<?xi16>
