// RUN: merge-opt %s -merge-tile-reductions='tile=64' -split-input-file | FileCheck %s
// A chunk's reduction loop becomes tiles of 64 elements: one loop that computes and stores
// each accumulator's value (no loop-carried values: it vectorizes), then one that adds them
// in element order (the partials keep their bits). The buffer is allocated once per call.

// CHECK-LABEL: func.func @rule_0_phase0(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xf32>, %[[RES:[^:]*]]: memref<?xf64>, %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index
// Every value is an f32 widened to f64: the buffer keeps the f32 (half the bytes).
// CHECK:       %[[BUF:.*]] = memref.alloca() : memref<2x64xf32>
// CHECK:       scf.parallel
// CHECK:         %[[T:.*]]:2 = scf.for %[[F:.*]] = %[[BEGIN]] to %[[END]] step %[[C64:.*]] iter_args(%[[P:.*]] = %{{.*}}, %[[Q:.*]] = %{{.*}}) -> (f64, f64) {
// CHECK:           %[[TE:.*]] = arith.addi %[[F]], %[[C64]] : index
// CHECK:           %[[L:.*]] = arith.minsi %[[END]], %[[TE]] : index
// CHECK:           scf.for %[[I:.*]] = %[[F]] to %[[L]] step %{{.*}} {
// CHECK:             %[[X:.*]] = memref.load %[[A]][%[[I]]] : memref<?xf32>
// CHECK:             %[[SQ:.*]] = arith.mulf %[[X]], %[[X]] : f32
// CHECK-NOT:         arith.extf
// CHECK:             %[[O:.*]] = arith.subi %[[I]], %[[F]] : index
// CHECK:             memref.store %[[SQ]], %[[BUF]][%{{.*}}, %[[O]]] : memref<2x64xf32>
// CHECK:             memref.store %[[X]], %[[BUF]][%{{.*}}, %[[O]]] : memref<2x64xf32>
// CHECK-NOT:         arith.addf
// CHECK:           }
// CHECK:           %[[N:.*]] = arith.subi %[[L]], %[[F]] : index
// CHECK:           %[[U:.*]]:2 = scf.for %[[K:.*]] = %{{.*}} to %[[N]] step %{{.*}} iter_args(%[[PP:.*]] = %[[P]], %[[QQ:.*]] = %[[Q]]) -> (f64, f64) {
// CHECK:             %[[B0:.*]] = memref.load %[[BUF]][%{{.*}}, %[[K]]] : memref<2x64xf32>
// CHECK:             %[[W0:.*]] = arith.extf %[[B0]] : f32 to f64
// CHECK:             %[[S0:.*]] = arith.addf %[[PP]], %[[W0]] : f64
// CHECK:             %[[B1:.*]] = memref.load %[[BUF]][%{{.*}}, %[[K]]] : memref<2x64xf32>
// CHECK:             %[[W1:.*]] = arith.extf %[[B1]] : f32 to f64
// CHECK:             %[[S1:.*]] = arith.maximumf %[[QQ]], %[[W1]] : f64
// CHECK:             scf.yield %[[S0]], %[[S1]] : f64, f64
// CHECK:           scf.yield %[[U]]#0, %[[U]]#1 : f64, f64
// CHECK:         memref.store %[[T]]#0, %[[RES]]
// CHECK:         memref.store %[[T]]#1, %[[RES]]
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
// CHECK:       %[[BUF:.*]] = memref.alloca() : memref<1x64xf64>
// CHECK:       scf.for
// CHECK:         scf.for
// CHECK:           %[[W:.*]] = arith.mulf %{{.*}}, %{{.*}} : f64
// CHECK:           memref.store %[[W]], %[[BUF]]
// CHECK:         scf.for
// CHECK:           %[[B:.*]] = memref.load %[[BUF]]
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
