// RUN: merge-opt %s -merge-tile-reductions='lanes=4' -split-input-file | FileCheck %s
// RUN: not merge-opt %s -merge-tile-reductions='lanes=3' -split-input-file 2>&1 | FileCheck %s --check-prefix=BAD
// A chunk's reduction in the GPU block's order, here with 4 lanes: each lane starts at the
// loop's initial values; tiles of 4 elements are computed (no loop-carried values: it
// vectorizes), element first + k goes into lane k (lanes are independent: it vectorizes), and
// the lanes combine by halving strides (lane l takes l + 2, then l + 1). The buffers are
// allocated once per call.
// BAD: merge-tile-reductions: lanes must be a power of two

// CHECK-LABEL: func.func @rule_0_phase0(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xf32>, %[[RES:[^:]*]]: memref<?xf64>, %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index
// Every value is an f32 widened to f64: the buffer keeps the f32 (half the bytes).
// CHECK:       %[[BUF:.*]] = memref.alloca() : memref<2x4xf32>
// CHECK:       %[[LANES:.*]] = memref.alloca() : memref<2x4xf64>
// CHECK-DAG:   %[[ZERO:.*]] = arith.constant 0.000000e+00 : f64
// CHECK-DAG:   %[[NINF:.*]] = arith.constant 0xFFF0000000000000 : f64
// CHECK:       scf.parallel
// CHECK:         scf.for %[[L0:.*]] = %{{.*}} to %[[C4:.*]] step
// CHECK:           memref.store %[[ZERO]], %[[LANES]][%{{.*}}, %[[L0]]]
// CHECK:           memref.store %[[NINF]], %[[LANES]][%{{.*}}, %[[L0]]]
// CHECK:         scf.for %[[F:.*]] = %[[BEGIN]] to %[[END]] step %[[C4]] {
// CHECK:           %[[TE:.*]] = arith.addi %[[F]], %[[C4]] : index
// CHECK:           %[[L:.*]] = arith.minsi %[[END]], %[[TE]] : index
// CHECK:           scf.for %[[I:.*]] = %[[F]] to %[[L]] step %{{.*}} {
// CHECK:             %[[X:.*]] = memref.load %[[A]][%[[I]]] : memref<?xf32>
// CHECK:             %[[SQ:.*]] = arith.mulf %[[X]], %[[X]] : f32
// CHECK-NOT:         arith.extf
// CHECK:             %[[O:.*]] = arith.subi %[[I]], %[[F]] : index
// CHECK:             memref.store %[[SQ]], %[[BUF]][%{{.*}}, %[[O]]] : memref<2x4xf32>
// CHECK:             memref.store %[[X]], %[[BUF]][%{{.*}}, %[[O]]] : memref<2x4xf32>
// CHECK-NOT:         arith.addf
// CHECK:           }
// CHECK:           %[[N:.*]] = arith.subi %[[L]], %[[F]] : index
// CHECK:           scf.for %[[K:.*]] = %{{.*}} to %[[N]] step %{{.*}} {
// CHECK-NOT:         iter_args
// CHECK:             %[[P0:.*]] = memref.load %[[LANES]][%{{.*}}, %[[K]]] : memref<2x4xf64>
// CHECK:             %[[B0:.*]] = memref.load %[[BUF]][%{{.*}}, %[[K]]] : memref<2x4xf32>
// CHECK:             %[[W0:.*]] = arith.extf %[[B0]] : f32 to f64
// CHECK:             %[[S0:.*]] = arith.addf %[[P0]], %[[W0]] : f64
// CHECK:             memref.store %[[S0]], %[[LANES]][%{{.*}}, %[[K]]] : memref<2x4xf64>
// CHECK:             %[[P1:.*]] = memref.load %[[LANES]][%{{.*}}, %[[K]]] : memref<2x4xf64>
// CHECK:             %[[B1:.*]] = memref.load %[[BUF]][%{{.*}}, %[[K]]] : memref<2x4xf32>
// CHECK:             %[[W1:.*]] = arith.extf %[[B1]] : f32 to f64
// CHECK:             %[[S1:.*]] = arith.maximumf %[[P1]], %[[W1]] : f64
// CHECK:             memref.store %[[S1]], %[[LANES]][%{{.*}}, %[[K]]] : memref<2x4xf64>
// The tree: stride 2, then stride 1.
// CHECK:         %[[C2:.*]] = arith.constant 2 : index
// CHECK:         scf.for %[[T:.*]] = %{{.*}} to %[[C2]] step
// CHECK:           %[[U:.*]] = arith.addi %[[T]], %[[C2]] : index
// CHECK:           %[[M0:.*]] = memref.load %[[LANES]][%{{.*}}, %[[T]]]
// CHECK:           %[[Y0:.*]] = memref.load %[[LANES]][%{{.*}}, %[[U]]]
// CHECK:           %[[Z0:.*]] = arith.addf %[[M0]], %[[Y0]] : f64
// CHECK:           memref.store %[[Z0]], %[[LANES]][%{{.*}}, %[[T]]]
// CHECK:           arith.maximumf
// CHECK:         %[[CS1:.*]] = arith.constant 1 : index
// CHECK:         scf.for %{{.*}} = %{{.*}} to %[[CS1]] step
// CHECK:           arith.addf
// CHECK:           arith.maximumf
// CHECK:         %[[R0:.*]] = memref.load %[[LANES]][%{{.*}}, %[[Z:.*]]] : memref<2x4xf64>
// CHECK:         %[[R1:.*]] = memref.load %[[LANES]][%{{.*}}, %[[Z]]] : memref<2x4xf64>
// CHECK:         memref.store %[[R0]], %[[RES]]
// CHECK:         memref.store %[[R1]], %[[RES]]
func.func @rule_0_phase0(%a: memref<?xf32>, %res: memref<?xf64>, %begin: index, %end: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  %ninf = arith.constant 0xFFF0000000000000 : f64
  scf.parallel (%c) = (%c0) to (%c1) step (%c1) {
    %r:2 = scf.for %i = %begin to %end step %c1 iter_args(%p = %zero, %q = %ninf) -> (f64, f64) {
      %x = memref.load %a[%i] : memref<?xf32>
      %sq = arith.mulf %x, %x : f32
      %w = arith.extf %sq : f32 to f64
      %v = arith.extf %x : f32 to f64
      %n = arith.addf %p, %w : f64
      %m = arith.maximumf %q, %v : f64
      scf.yield %n, %m : f64, f64
    }
    memref.store %r#0, %res[%c0] : memref<?xf64>
    memref.store %r#1, %res[%c1] : memref<?xf64>
    scf.reduce
  }
  return
}

// -----

// An accumulator the body reads for anything but its own update (a running value, not a
// sum of independent terms), and a scalar loop outside any chunk loop: both left as they are.
// CHECK-LABEL: func.func @not_reductions(
// CHECK-NOT:   memref.alloca
// CHECK:       scf.for {{.*}} iter_args
// CHECK:         arith.mulf
// CHECK:       scf.parallel
// CHECK:         scf.for {{.*}} iter_args
// CHECK:           arith.truncf
// CHECK-NOT:   scf.for
// CHECK:       return
func.func @not_reductions(%a: memref<?xf32>, %res: memref<?xf64>, %begin: index, %end: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  %s = scf.for %i = %begin to %end step %c1 iter_args(%p = %zero) -> (f64) {
    %x = memref.load %a[%i] : memref<?xf32>
    %y = arith.mulf %x, %x : f32
    %w = arith.extf %y : f32 to f64
    %n = arith.addf %p, %w : f64
    scf.yield %n : f64
  }
  memref.store %s, %res[%c0] : memref<?xf64>
  scf.parallel (%c) = (%c0) to (%c1) step (%c1) {
    %r = scf.for %i = %begin to %end step %c1 iter_args(%p = %zero) -> (f64) {
      %x = memref.load %a[%i] : memref<?xf32>
      %pf = arith.truncf %p : f64 to f32
      %y = arith.mulf %x, %pf : f32
      %w = arith.extf %y : f32 to f64
      %n = arith.addf %p, %w : f64
      scf.yield %n : f64
    }
    memref.store %r, %res[%c1] : memref<?xf64>
    scf.reduce
  }
  return
}

// -----

// A value computed in f64 is kept in f64.
// CHECK-LABEL: func.func @wide(
// CHECK:       %[[BUF:.*]] = memref.alloca() : memref<1x4xf64>
// CHECK:       scf.for
// CHECK:         scf.for
// CHECK:           %[[W:.*]] = arith.mulf %{{.*}}, %{{.*}} : f64
// CHECK:           memref.store %[[W]], %[[BUF]][
// CHECK:         scf.for
// CHECK:           %[[B:.*]] = memref.load %[[BUF]][
// CHECK:           arith.addf %{{.*}}, %[[B]] : f64
func.func @wide(%a: memref<?xf32>, %res: memref<?xf64>, %begin: index, %end: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  scf.parallel (%c) = (%c0) to (%c1) step (%c1) {
    %r = scf.for %i = %begin to %end step %c1 iter_args(%p = %zero) -> (f64) {
      %x = memref.load %a[%i] : memref<?xf32>
      %v = arith.extf %x : f32 to f64
      %w = arith.mulf %v, %v : f64
      %n = arith.addf %p, %w : f64
      scf.yield %n : f64
    }
    memref.store %r, %res[%c0] : memref<?xf64>
    scf.reduce
  }
  return
}
