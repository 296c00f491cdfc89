// RUN: not merge-opt %s -merge-convert-kernels-to-gpu 2>&1 | FileCheck %s
// A function without the phase loop from its begin to its end argument is not a lowered phase.

// CHECK: error: a phase function must hold one loop from its begin to its end argument
func.func @rule_0(%in: memref<?xf32>, %out: memref<?xf32>, %begin: index, %end: index,
                  %layer: f32, %nl: f32, %scalars: memref<?xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %end step %c1 {
    %x = memref.load %in[%i] : memref<?xf32>
    memref.store %x, %out[%i] : memref<?xf32>
  }
  return
}
