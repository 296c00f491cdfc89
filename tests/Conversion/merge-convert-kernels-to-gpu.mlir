// RUN: merge-opt %s -merge-convert-kernels-to-gpu | FileCheck %s
// The CUDA target's first step: each phase function of merge-lower-kernels becomes a gpu.func
// kernel with the same arguments (the runtime passes the CPU's packed argument array to
// cuLaunchKernel), in one gpu.module, 256 threads per block, buffers noalias. The loop nest
// maps onto the grid: block b is chunk b (the scf.parallel's induction variable becomes the
// block index), and the chunk's loop is spread over the block's threads (thread t from the
// chunk's start + t, step 256).

// CHECK:       module attributes {gpu.container_module}
// CHECK:       gpu.module @mergec_kernels

// A map phase: four elements (256 apart) per iteration, every load and computation first
// (copies past the chunk's end read its last element), then the stores (copies past the end
// store nothing).
// CHECK-LABEL: gpu.func @rule_0(
// CHECK-SAME:    %[[IN:[^:]*]]: memref<?xf32> {llvm.noalias}, %[[OUT:[^:]*]]: memref<?xf32> {llvm.noalias}, %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index,
// CHECK-SAME:    kernel attributes {known_block_size = array<i32: 256, 1, 1>
// CHECK-DAG:   %[[C256:.*]] = arith.constant 256 : index
// CHECK-DAG:   %[[TID:.*]] = gpu.thread_id x
// CHECK-DAG:   %[[BID:.*]] = gpu.block_id x
// CHECK:       %[[OFF:.*]] = arith.muli %[[BID]], %[[K:.*]] : index
// CHECK:       %[[CB:.*]] = arith.addi %[[BEGIN]], %[[OFF]] : index
// CHECK:       %[[CE0:.*]] = arith.addi %[[CB]], %[[K]] : index
// CHECK:       %[[CE:.*]] = arith.minsi %[[END]], %[[CE0]] : index
// CHECK:       %[[FIRST:.*]] = arith.addi %[[CB]], %[[TID]] : index
// CHECK:       %[[S4:.*]] = arith.muli %[[C256]], %{{.*}} : index
// CHECK:       %[[LAST:.*]] = arith.subi %[[CE]], %{{.*}} : index
// CHECK:       scf.for %[[I:.*]] = %[[FIRST]] to %[[CE]] step %[[S4]] {
// CHECK:         %[[X0:.*]] = memref.load %[[IN]][%[[I]]]
// CHECK:         %[[Y0:.*]] = arith.mulf %[[X0]], %[[X0]]
// CHECK:         %[[I1:.*]] = arith.addi %[[I]], %{{.*}} : index
// CHECK:         %[[IN1:.*]] = arith.cmpi slt, %[[I1]], %[[CE]] : index
// CHECK:         %[[J1:.*]] = arith.minsi %[[I1]], %[[LAST]] : index
// CHECK:         %[[X1:.*]] = memref.load %[[IN]][%[[J1]]]
// CHECK-COUNT-2: memref.load %[[IN]]
// CHECK-NOT:     memref.load
// CHECK:         memref.store %[[Y0]], %[[OUT]][%[[I]]]
// CHECK:         scf.if %[[IN1]] {
// CHECK:           memref.store %{{.*}}, %[[OUT]][%[[J1]]]
// CHECK-COUNT-2: scf.if
// CHECK-NOT:   scf.parallel
// CHECK:       gpu.return
func.func @rule_0(%in: memref<?xf32>, %out: memref<?xf32>, %begin: index, %end: index,
                  %layer: f32, %nl: f32, %scalars: memref<?xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %k = arith.constant 65536 : index
  %span = arith.subi %end, %begin : index
  %chunks = arith.ceildivsi %span, %k : index
  scf.parallel (%c) = (%c0) to (%chunks) step (%c1) {
    %off = arith.muli %c, %k : index
    %cb = arith.addi %begin, %off : index
    %ce0 = arith.addi %cb, %k : index
    %ce = arith.minsi %end, %ce0 : index
    scf.for %i = %cb to %ce step %c1 {
      %x = memref.load %in[%i] : memref<?xf32>
      %y = arith.mulf %x, %x : f32
      memref.store %y, %out[%i] : memref<?xf32>
    }
    scf.reduce
  }
  return
}

// A reduction phase (a sum and a maximum): each thread adds its elements of the block's chunk
// in order, then a fixed tree in workgroup memory (strides 128 .. 1, a barrier after each
// level), and thread 0 stores the chunk's partials where the loop nest put them,
// result[b * 2 + j].
// CHECK-LABEL: gpu.func @rule_0_phase0(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xf32> {llvm.noalias}, %[[RES:[^:]*]]: memref<?xf64> {llvm.noalias}, %[[B:[^:]*]]: index, %[[E:[^:]*]]: index,
// CHECK-SAME:    workgroup(%[[S0:.*]] : memref<256xf64, #gpu.address_space<workgroup>>, %[[S1:.*]] : memref<256xf64, #gpu.address_space<workgroup>>)
// CHECK-DAG:   %[[TID2:.*]] = gpu.thread_id x
// CHECK-DAG:   %[[BID2:.*]] = gpu.block_id x
// CHECK:       %[[OFF2:.*]] = arith.muli %[[BID2]], %{{.*}} : index
// CHECK:       %[[CB2:.*]] = arith.addi %[[B]], %[[OFF2]] : index
// CHECK:       %[[CE2:.*]] = arith.minsi %[[E]], %{{.*}} : index
// CHECK:       %[[LB:.*]] = arith.addi %[[CB2]], %[[TID2]] : index
// CHECK:       %[[ACC:.*]]:2 = scf.for %{{.*}} = %[[LB]] to %[[CE2]] step %{{.*}} iter_args
// CHECK:       %[[P0:.*]] = arith.muli %[[BID2]], %{{.*}} : index
// CHECK:       %[[P1:.*]] = arith.addi %[[P0]], %{{.*}} : index
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
// CHECK:         %[[T0:.*]] = memref.load %[[S0]][%{{.*}}]
// CHECK:         memref.store %[[T0]], %[[RES]][%[[P0]]]
// CHECK:         %[[T1:.*]] = memref.load %[[S1]][%{{.*}}]
// CHECK:         memref.store %[[T1]], %[[RES]][%[[P1]]]
func.func @rule_0_phase0(%a: memref<?xf32>, %res: memref<?xf64>, %begin: index, %end: index,
                         %layer: f32, %nl: f32, %scalars: memref<?xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %k = arith.constant 65536 : index
  %zero = arith.constant 0.0 : f64
  %ninf = arith.constant 0xFFF0000000000000 : f64
  %span = arith.subi %end, %begin : index
  %chunks = arith.ceildivsi %span, %k : index
  scf.parallel (%c) = (%c0) to (%chunks) step (%c1) {
    %off = arith.muli %c, %k : index
    %cb = arith.addi %begin, %off : index
    %ce0 = arith.addi %cb, %k : index
    %ce = arith.minsi %end, %ce0 : index
    %r:2 = scf.for %i = %cb to %ce step %c1 iter_args(%s = %zero, %m = %ninf) -> (f64, f64) {
      %x = memref.load %a[%i] : memref<?xf32>
      %w = arith.extf %x : f32 to f64
      %s2 = arith.addf %s, %w : f64
      %m2 = arith.maximumf %m, %w : f64
      scf.yield %s2, %m2 : f64, f64
    }
    %p0 = arith.muli %c, %c2 : index
    %p1 = arith.addi %p0, %c1 : index
    memref.store %r#0, %res[%p0] : memref<?xf64>
    memref.store %r#1, %res[%p1] : memref<?xf64>
    scf.reduce
  }
  return
}
