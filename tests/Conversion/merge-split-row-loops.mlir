// RUN: merge-opt %s -merge-split-row-loops -split-input-file | FileCheck %s
// An element loop that reads per-row values (divui of its index by a value fixed for the
// loop) runs row by row: rows lb / c to ceildiv(ub, c), each over its part of [lb, ub), the
// quotient replaced by the row, and the loads at the row from memrefs the function never
// stores to hoisted out of the row's loop. The same elements in the same order.

// CHECK-LABEL: func.func @map(
// CHECK-SAME:    %[[IN:[^:]*]]: memref<?xf32>, %[[ROWS:[^:]*]]: memref<?xf32>, %[[OUT:[^:]*]]: memref<?xf32>, %[[LB:[^:]*]]: index, %[[UB:[^:]*]]: index, %[[C:[^:]*]]: index)
// CHECK:         %[[FIRST:.*]] = arith.divui %[[LB]], %[[C]] : index
// CHECK:         %[[LAST:.*]] = arith.ceildivui %[[UB]], %[[C]] : index
// CHECK:         scf.for %[[R:.*]] = %[[FIRST]] to %[[LAST]] step
// CHECK:           %[[RB:.*]] = arith.muli %[[R]], %[[C]] : index
// CHECK:           %[[B:.*]] = arith.maxui %[[LB]], %[[RB]] : index
// CHECK:           %[[RE:.*]] = arith.addi %[[RB]], %[[C]] : index
// CHECK:           %[[E:.*]] = arith.minui %[[UB]], %[[RE]] : index
// CHECK:           %[[V:.*]] = memref.load %[[ROWS]][%[[R]]] : memref<?xf32>
// CHECK:           scf.for %[[I:.*]] = %[[B]] to %[[E]] step
// CHECK-NOT:         arith.divui
// CHECK:             %[[X:.*]] = memref.load %[[IN]][%[[I]]] : memref<?xf32>
// CHECK:             %[[Y:.*]] = arith.mulf %[[X]], %[[V]] : f32
// CHECK:             memref.store %[[Y]], %[[OUT]][%[[I]]] : memref<?xf32>
func.func @map(%in: memref<?xf32>, %rows: memref<?xf32>, %out: memref<?xf32>, %lb: index,
               %ub: index, %c: index) {
  %one = arith.constant 1 : index
  scf.for %i = %lb to %ub step %one {
    %x = memref.load %in[%i] : memref<?xf32>
    %r = arith.divui %i, %c : index
    %v = memref.load %rows[%r] : memref<?xf32>
    %y = arith.mulf %x, %v : f32
    memref.store %y, %out[%i] : memref<?xf32>
  }
  return
}

// -----

// Left as they are: a loop carrying values (the split would have to thread them), a divisor
// computed inside the loop, and a load at the row from a memref the function also writes (it
// stays in the inner loop).
// CHECK-LABEL: func.func @kept(
// CHECK:         scf.for %{{.*}} iter_args
// CHECK:           arith.divui
// CHECK:         scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step
// CHECK:           %[[D:.*]] = arith.addi %[[J]], %{{.*}} : index
// CHECK:           arith.divui %[[J]], %[[D]] : index
// CHECK:         scf.for %[[R:.*]] = %{{.*}} to %{{.*}} step
// CHECK:           scf.for %{{.*}} = %{{.*}} to %{{.*}} step
// CHECK:             memref.load %{{.*}}[%[[R]]] : memref<?xf32>
// CHECK:             memref.store
func.func @kept(%rows: memref<?xf32>, %out: memref<?xf32>, %lb: index, %ub: index,
                %c: index) -> f32 {
  %one = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %s = scf.for %i = %lb to %ub step %one iter_args(%acc = %zero) -> f32 {
    %r = arith.divui %i, %c : index
    %v = memref.load %rows[%r] : memref<?xf32>
    %n = arith.addf %acc, %v : f32
    scf.yield %n : f32
  }
  scf.for %j = %lb to %ub step %one {
    %d = arith.addi %j, %c : index
    %r = arith.divui %j, %d : index
    %v = memref.load %rows[%r] : memref<?xf32>
    memref.store %v, %out[%j] : memref<?xf32>
  }
  scf.for %k = %lb to %ub step %one {
    %r = arith.divui %k, %c : index
    %v = memref.load %out[%r] : memref<?xf32>
    memref.store %v, %out[%k] : memref<?xf32>
  }
  return %s : f32
}
