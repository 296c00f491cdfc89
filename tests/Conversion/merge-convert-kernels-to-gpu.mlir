// RUN: merge-opt %s -merge-convert-kernels-to-gpu | FileCheck %s
// The CUDA target's first step: each lowered phase function becomes a gpu.func kernel with the
// same arguments (the runtime passes the CPU's packed argument array to cuLaunchKernel), in one
// gpu.module, with a known block size of 256 threads.

// CHECK:       module attributes {gpu.container_module}
// CHECK:       gpu.module @mergec_kernels

// A map phase: its loop becomes a grid-stride loop starting at begin + block * 256 + thread,
// four elements (S apart, S the grid's threads) per iteration: every load and computation
// first (copies past the end read element end - 1), then the stores (copies past the end store
// nothing). Buffers are noalias so the loads may run ahead of the stores.
// CHECK-LABEL: gpu.func @rule_0(
// CHECK-SAME:    %[[IN:[^:]*]]: memref<?xf32> {llvm.noalias}, %[[OUT:[^:]*]]: memref<?xf32> {llvm.noalias}, %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index,
// CHECK-SAME:    kernel attributes {known_block_size = array<i32: 256, 1, 1>
// CHECK-DAG:   %[[C256:.*]] = arith.constant 256 : index
// CHECK-DAG:   %[[TID:.*]] = gpu.thread_id x
// CHECK-DAG:   %[[BID:.*]] = gpu.block_id x
// CHECK-DAG:   %[[GRID:.*]] = gpu.grid_dim x
// CHECK:       %[[OFF:.*]] = arith.muli %[[BID]], %[[C256]] : index
// CHECK:       %[[T:.*]] = arith.addi %[[OFF]], %[[TID]] : index
// CHECK:       %[[FIRST:.*]] = arith.addi %[[BEGIN]], %[[T]] : index
// CHECK:       %[[S:.*]] = arith.muli %[[GRID]], %[[C256]] : index
// CHECK:       %[[S4:.*]] = arith.muli %[[S]], %{{.*}} : index
// CHECK:       %[[LAST:.*]] = arith.subi %[[END]], %{{.*}} : index
// CHECK:       scf.for %[[I:.*]] = %[[FIRST]] to %[[END]] step %[[S4]] {
// CHECK:         %[[X0:.*]] = memref.load %[[IN]][%[[I]]]
// CHECK:         %[[Y0:.*]] = arith.mulf %[[X0]], %[[X0]]
// CHECK:         %[[I1:.*]] = arith.addi %[[I]], %{{.*}} : index
// CHECK:         %[[IN1:.*]] = arith.cmpi slt, %[[I1]], %[[END]] : index
// CHECK:         %[[J1:.*]] = arith.minsi %[[I1]], %[[LAST]] : index
// CHECK:         %[[X1:.*]] = memref.load %[[IN]][%[[J1]]]
// CHECK-COUNT-2: memref.load %[[IN]]
// CHECK-NOT:     memref.load
// CHECK:         memref.store %[[Y0]], %[[OUT]][%[[I]]]
// CHECK:         scf.if %[[IN1]] {
// CHECK:           memref.store %{{.*}}, %[[OUT]][%[[J1]]]
// CHECK-COUNT-2: scf.if
// CHECK:       gpu.return
func.func @rule_0(%in: memref<?xf32>, %out: memref<?xf32>, %begin: index, %end: index,
                  %layer: f32, %nl: f32, %scalars: memref<?xf64>) {
  %c1 = arith.constant 1 : index
  scf.for %i = %begin to %end step %c1 {
    %x = memref.load %in[%i] : memref<?xf32>
    %y = arith.mulf %x, %x : f32
    memref.store %y, %out[%i] : memref<?xf32>
  }
  return
}

// A reduction phase (a sum and a maximum): one block per 65536-element chunk, each thread
// adding its elements in order, then a fixed tree in workgroup memory (strides 128 .. 1 with a
// barrier after each level), thread 0 writing partial j of chunk b at result[b * 2 + j].
// CHECK-LABEL: gpu.func @rule_0_phase0(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xf32> {llvm.noalias}, %[[RES:[^:]*]]: memref<?xf64> {llvm.noalias}, %[[B:[^:]*]]: index, %[[E:[^:]*]]: index,
// CHECK-SAME:    workgroup(%[[S0:.*]] : memref<256xf64, #gpu.address_space<workgroup>>, %[[S1:.*]] : memref<256xf64, #gpu.address_space<workgroup>>)
// CHECK-DAG:   %[[C65536:.*]] = arith.constant 65536 : index
// CHECK-DAG:   %[[TID2:.*]] = gpu.thread_id x
// CHECK-DAG:   %[[BID2:.*]] = gpu.block_id x
// CHECK:       %[[CB0:.*]] = arith.muli %[[BID2]], %[[C65536]] : index
// CHECK:       %[[CB:.*]] = arith.addi %[[B]], %[[CB0]] : index
// CHECK:       %[[CE0:.*]] = arith.addi %[[CB]], %[[C65536]] : index
// CHECK:       %[[CE:.*]] = arith.minsi %[[E]], %[[CE0]] : index
// CHECK:       %[[LB:.*]] = arith.addi %[[CB]], %[[TID2]] : index
// CHECK:       %[[ACC:.*]]:2 = scf.for %{{.*}} = %[[LB]] to %[[CE]] step %{{.*}} iter_args
// CHECK:       memref.store %[[ACC]]#0, %[[S0]][%[[TID2]]]
// CHECK:       memref.store %[[ACC]]#1, %[[S1]][%[[TID2]]]
// CHECK:       gpu.barrier
// CHECK:       arith.cmpi ult, %[[TID2]], %{{.*}} : index
// CHECK:       scf.if
// CHECK:         arith.addf
// CHECK:         arith.maximumf
// CHECK:       gpu.barrier
// CHECK-COUNT-7: gpu.barrier
// CHECK:       %[[IS0:.*]] = arith.cmpi eq, %[[TID2]], %{{.*}} : index
// CHECK:       scf.if %[[IS0]] {
// CHECK:         %[[BASE:.*]] = arith.muli %[[BID2]], %{{.*}} : index
// CHECK:         %[[T0:.*]] = memref.load %[[S0]][%{{.*}}]
// CHECK:         memref.store %[[T0]], %[[RES]][%{{.*}}]
// CHECK:         %[[T1:.*]] = memref.load %[[S1]][%{{.*}}]
// CHECK:         memref.store %[[T1]], %[[RES]][%{{.*}}]
func.func @rule_0_phase0(%a: memref<?xf32>, %res: memref<?xf64>, %begin: index, %end: index,
                         %layer: f32, %nl: f32, %scalars: memref<?xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  %ninf = arith.constant 0xFFF0000000000000 : f64
  %r:2 = scf.for %i = %begin to %end step %c1 iter_args(%s = %zero, %m = %ninf) -> (f64, f64) {
    %x = memref.load %a[%i] : memref<?xf32>
    %w = arith.extf %x : f32 to f64
    %s2 = arith.addf %s, %w : f64
    %m2 = arith.maximumf %m, %w : f64
    scf.yield %s2, %m2 : f64, f64
  }
  memref.store %r#0, %res[%c0] : memref<?xf64>
  memref.store %r#1, %res[%c1] : memref<?xf64>
  return
}
