// RUN: not merge-opt %s -merge-convert-kernels-to-gpu 2>&1 | FileCheck %s
// A function without merge-lower-kernels' loop nest (an scf.parallel over chunks around one
// scf.for) is not a lowered phase.

// CHECK: error: a phase function must hold one scf.parallel over chunks around one scf.for over their elements
func.func @rule_0(%in: memref<?xf32>, %out: memref<?xf32>, %begin: index, %end: index,
                  %layer: f32, %nl: f32, %scalars: memref<?xf64>) {
  %c1 = arith.constant 1 : index
  scf.for %i = %begin to %end step %c1 {
    %x = memref.load %in[%i] : memref<?xf32>
    memref.store %x, %out[%i] : memref<?xf32>
  }
  return
}
