// RUN: merge-opt %s -merge-lower-kernels -canonicalize | FileCheck %s
// A reduction phase becomes its own function: one f64 accumulator per reduction carried through
// one loop over the chunk (the inputs are read once), stored into result[0..] (the runtime
// combines chunks in order). Later phases read the results back from the scalars array (f64;
// phase 0's slots start at 4, after the tensor's context, one per reduction).

// CHECK-LABEL: func.func @rule_0_phase0(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xf32>, %[[RES:[^:]*]]: memref<?xf64>,
// CHECK-SAME:    merge.kinds = #merge<reductions[sum, max]>
// The loop nest: chunk c of the call (an scf.parallel over chunks) accumulates its elements in
// order and stores its two partials at result[c * 2 + j].
// CHECK:       scf.parallel (%[[C:.*]]) = (%{{.*}}) to (%{{.*}}) step
// CHECK:       %[[ACC:.*]]:2 = scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[P:.*]] = %{{.*}}, %[[Q:.*]] = %{{.*}}) -> (f64, f64) {
// CHECK:         %[[SQ:.*]] = arith.mulf
// CHECK-DAG:     %[[W:.*]] = arith.extf %[[SQ]] : f32 to f64
// CHECK-DAG:     %[[N:.*]] = arith.addf %[[P]], %[[W]] : f64
// CHECK-DAG:     %[[M:.*]] = arith.maximumf %[[Q]], %{{.*}} : f64
// CHECK:         scf.yield %[[N]], %[[M]] : f64, f64
// CHECK:       %[[FIRST:.*]] = arith.muli %[[C]], %[[M:c2[_0-9]*]] : index
// CHECK-DAG:   memref.store %[[ACC]]#0, %[[RES]][%[[FIRST]]] : memref<?xf64>
// CHECK-DAG:   %[[SECOND:.*]] = arith.addi %[[FIRST]], %{{c1[_0-9]*}} : index
// CHECK-DAG:   memref.store %[[ACC]]#1, %[[RES]][%[[SECOND]]] : memref<?xf64>
// CHECK:       scf.reduce

// CHECK-LABEL: func.func @rule_0(
// CHECK-SAME:    %[[SC:[^:]*]]: memref<?xf64>)
// CHECK-SAME:    merge.phases = 2 : i64
// CHECK-DAG:   %[[C4:.*]] = arith.constant 4 : index
// CHECK-DAG:   %[[C5:.*]] = arith.constant 5 : index
// CHECK:       %[[W:.*]] = memref.load %[[SC]][%[[C4]]] : memref<?xf64>
// CHECK:       %[[S:.*]] = arith.truncf %[[W]] : f64 to f32
// CHECK:       %[[V:.*]] = memref.load %[[SC]][%[[C5]]] : memref<?xf64>
// CHECK:       %[[R:.*]] = math.sqrt %[[S]] : f32
// CHECK:       scf.for
// CHECK:         arith.mulf %{{.*}}, %[[R]] : f32
func.func @rule_0() -> !merge.tensor attributes {merge.store = f32} {
  %a = merge.input "a" stored f32
  %n, %m = merge.reduce_kernel [sum, max] ins(%a) : f32, f32 {
  ^bb0(%x: f32):
    %sq = arith.mulf %x, %x : f32
    merge.yield %sq, %x : f32, f32
  }
  %r = math.sqrt %n : f32
  %k = merge.kernel ins(%a) {
  ^bb0(%x: f32):
    %y = arith.mulf %x, %r : f32
    %z = arith.addf %y, %m : f32
    merge.yield %z : f32
  }
  return %k : !merge.tensor
}
