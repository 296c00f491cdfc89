// RUN: merge-opt %s -merge-tile-reductions='lanes=4' -split-input-file | FileCheck %s
// RUN: not merge-opt %s -merge-tile-reductions='lanes=3' -split-input-file 2>&1 | FileCheck %s --check-prefix=BAD
// A chunk's reduction in the GPU block's order, here with 4 lanes: each lane starts at the
// loop's initial values; tiles of 4 elements, element first + k added into lane k (lanes are
// independent: it vectorizes), and the lanes combine by halving strides (lane l takes l + 2,
// then l + 1). Light f32 math (at most 12 ops a value added) is computed and added in one
// loop; heavier f32 math is computed into a tile buffer first (the f32 math at twice the f64
// adds' vector width). The buffers are allocated once per call.
// BAD: merge-tile-reductions: lanes must be a power of two

// Light math: one loop, no tile buffer.
// CHECK-LABEL: func.func @light(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xf32>, %[[RES:[^:]*]]: memref<?xf64>, %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index
// CHECK-NOT:   memref<2x4xf32>
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
// CHECK-NOT:         iter_args
// CHECK:             %[[X:.*]] = memref.load %[[A]][%[[I]]] : memref<?xf32>
// CHECK:             %[[SQ:.*]] = arith.mulf %[[X]], %[[X]] : f32
// CHECK:             %[[W:.*]] = arith.extf %[[SQ]] : f32 to f64
// CHECK:             %[[V:.*]] = arith.extf %[[X]] : f32 to f64
// CHECK:             %[[O:.*]] = arith.subi %[[I]], %[[F]] : index
// CHECK:             %[[P0:.*]] = memref.load %[[LANES]][%{{.*}}, %[[O]]] : memref<2x4xf64>
// CHECK:             %[[S0:.*]] = arith.addf %[[P0]], %[[W]] : f64
// CHECK:             memref.store %[[S0]], %[[LANES]][%{{.*}}, %[[O]]] : memref<2x4xf64>
// CHECK:             %[[P1:.*]] = memref.load %[[LANES]][%{{.*}}, %[[O]]] : memref<2x4xf64>
// CHECK:             %[[S1:.*]] = arith.maximumf %[[P1]], %[[V]] : f64
// CHECK:             memref.store %[[S1]], %[[LANES]][%{{.*}}, %[[O]]] : memref<2x4xf64>
// CHECK:           }
// CHECK-NEXT:    }
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
func.func @light(%a: memref<?xf32>, %res: memref<?xf64>, %begin: index, %end: index) {
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

// Heavy f32 math (14 ops a value here: the load, 12 multiplies, the widening): the tile is
// computed into a buffer of the f32 values, then added lane by lane in a loop of its own,
// widened there.
// CHECK-LABEL: func.func @heavy(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xf32>, %[[RES:[^:]*]]: memref<?xf64>, %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index
// CHECK:       %[[BUF:.*]] = memref.alloca() : memref<1x4xf32>
// CHECK:       %[[LANES:.*]] = memref.alloca() : memref<1x4xf64>
// CHECK:       scf.parallel
// CHECK:         scf.for %[[F:.*]] = %[[BEGIN]] to %[[END]] step %[[C4:[^ ]*]] {
// CHECK:           %[[TE:.*]] = arith.addi %[[F]], %[[C4]] : index
// CHECK:           %[[L:.*]] = arith.minsi %[[END]], %[[TE]] : index
// CHECK:           scf.for %[[I:.*]] = %[[F]] to %[[L]] step %{{.*}} {
// CHECK:             %[[X:.*]] = memref.load %[[A]][%[[I]]] : memref<?xf32>
// CHECK-COUNT-12:    arith.mulf
// CHECK-NOT:         arith.extf
// CHECK:             %[[O:.*]] = arith.subi %[[I]], %[[F]] : index
// CHECK:             memref.store %{{.*}}, %[[BUF]][%{{.*}}, %[[O]]] : memref<1x4xf32>
// CHECK-NOT:         arith.addf
// CHECK:           }
// CHECK:           %[[N:.*]] = arith.subi %[[L]], %[[F]] : index
// CHECK:           scf.for %[[K:.*]] = %{{.*}} to %[[N]] step %{{.*}} {
// CHECK-NOT:         iter_args
// CHECK:             %[[P0:.*]] = memref.load %[[LANES]][%{{.*}}, %[[K]]] : memref<1x4xf64>
// CHECK:             %[[B0:.*]] = memref.load %[[BUF]][%{{.*}}, %[[K]]] : memref<1x4xf32>
// CHECK:             %[[W0:.*]] = arith.extf %[[B0]] : f32 to f64
// CHECK:             %[[S0:.*]] = arith.addf %[[P0]], %[[W0]] : f64
// CHECK:             memref.store %[[S0]], %[[LANES]][%{{.*}}, %[[K]]] : memref<1x4xf64>
// CHECK:         memref.load %[[LANES]]
// CHECK:         memref.store %{{.*}}, %[[RES]]
func.func @heavy(%a: memref<?xf32>, %res: memref<?xf64>, %begin: index, %end: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  scf.parallel (%c) = (%c0) to (%c1) step (%c1) {
    %r = scf.for %i = %begin to %end step %c1 iter_args(%p = %zero) -> (f64) {
      %x = memref.load %a[%i] : memref<?xf32>
      %y1 = arith.mulf %x, %x : f32
      %y2 = arith.mulf %y1, %x : f32
      %y3 = arith.mulf %y2, %x : f32
      %y4 = arith.mulf %y3, %x : f32
      %y5 = arith.mulf %y4, %x : f32
      %y6 = arith.mulf %y5, %x : f32
      %y7 = arith.mulf %y6, %x : f32
      %y8 = arith.mulf %y7, %x : f32
      %y9 = arith.mulf %y8, %x : f32
      %y10 = arith.mulf %y9, %x : f32
      %y11 = arith.mulf %y10, %x : f32
      %y12 = arith.mulf %y11, %x : f32
      %w = arith.extf %y12 : f32 to f64
      %n = arith.addf %p, %w : f64
      scf.yield %n : f64
    }
    memref.store %r, %res[%c0] : memref<?xf64>
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

// A value computed in f64: one loop (the math is at the f64 adds' width anyway), however heavy.
// CHECK-LABEL: func.func @wide(
// CHECK-NOT:   memref<1x4xf64>
// CHECK:       %[[LANES:.*]] = memref.alloca() : memref<1x4xf64>
// CHECK-NOT:   memref.alloca
// CHECK:       scf.for
// CHECK:         scf.for
// CHECK:           %[[W:.*]] = arith.mulf %{{.*}}, %{{.*}} : f64
// CHECK:           %[[P:.*]] = memref.load %[[LANES]][
// CHECK:           arith.addf %[[P]], %[[W]] : f64
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
