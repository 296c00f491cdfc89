// RUN: merge-opt %s -merge-lower-kernels -canonicalize -cse | FileCheck %s
// A row phase's sum or maximum is one value per row: the phases after it read element i's at
// row i / cols (cols from scalar slot 1, once per call; one division per element for every
// per-row buffer), where a rank (one per element) is read at i.

func.func @rule_0() -> !merge.tensor attributes {merge.store = f32} {
  %a = merge.input "a" stored f32
  %r = merge.row_kernel <rank> ins(%a) {
  ^bb0(%x: f32):
    merge.yield %x : f32
  }
  %s = merge.row_kernel <sum> ins(%a) {
  ^bb0(%x: f32):
    %sq = arith.mulf %x, %x : f32
    merge.yield %sq : f32
  }
  %m = merge.row_kernel <max> ins(%a) {
  ^bb0(%x: f32):
    merge.yield %x : f32
  }
  %k = merge.kernel ins(%a, %r, %s, %m) {
  ^bb0(%x: f32, %rank: f32, %sum: f32, %max: f32):
    %y = arith.mulf %x, %rank : f32
    %z = arith.divf %y, %sum : f32
    %w = arith.addf %z, %max : f32
    merge.yield %w : f32
  }
  return %k : !merge.tensor
}

// The row phases themselves store one key per element, as every row phase does.
// CHECK-LABEL: func.func @rule_0_phase1(
// CHECK-SAME:    merge.kind = #merge.row<sum>
// CHECK:         scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step
// CHECK:           memref.store %{{.*}}, %{{.*}}[%[[K]]] : memref<?xf32>
// CHECK-LABEL: func.func @rule_0(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xf32>, %[[RANKS:[^:]*]]: memref<?xf32>, %[[SUMS:[^:]*]]: memref<?xf32>, %[[MAXES:[^:]*]]: memref<?xf32>, %[[OUT:[^:]*]]: memref<?xf32>,
// CHECK-SAME:    %[[SC:[^:]*]]: memref<?xf64>)
// CHECK:         %[[C1:.*]] = arith.constant 1 : index
// CHECK:         %[[WIDE:.*]] = memref.load %[[SC]][%[[C1]]] : memref<?xf64>
// CHECK:         %[[COLS64:.*]] = arith.fptosi %[[WIDE]] : f64 to i64
// CHECK:         %[[COLS:.*]] = arith.index_cast %[[COLS64]] : i64 to index
// CHECK:         scf.parallel
// CHECK:         scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step
// CHECK:           %[[X:.*]] = memref.load %[[A]][%[[I]]] : memref<?xf32>
// CHECK:           %[[RANK:.*]] = memref.load %[[RANKS]][%[[I]]] : memref<?xf32>
// CHECK:           %[[ROW:.*]] = arith.divui %[[I]], %[[COLS]] : index
// CHECK:           %[[SUM:.*]] = memref.load %[[SUMS]][%[[ROW]]] : memref<?xf32>
// CHECK-NOT:       arith.divui
// CHECK:           %[[MAX:.*]] = memref.load %[[MAXES]][%[[ROW]]] : memref<?xf32>
// CHECK:           arith.mulf %[[X]], %[[RANK]] : f32
// CHECK:           memref.store %{{.*}}, %[[OUT]][%[[I]]] : memref<?xf32>
