// RUN: merge-opt %s -merge-convert-kernels-to-gpu | FileCheck %s
// The CUDA target's first step: each phase function of merge-lower-kernels becomes a gpu.func
// kernel with the same arguments (the runtime passes the CPU's packed argument array to
// cuLaunchKernel), in one gpu.module, 256 threads per block, buffers noalias. The loop nest
// maps onto the grid: block b is chunk b (the scf.parallel's induction variable becomes the
// block index), and the chunk's loop is spread over the block's threads (thread t from the
// chunk's start + t, step 256).

// CHECK:       module attributes {gpu.container_module}
// CHECK:       gpu.module @mergec_kernels

// A map phase. When the chunk's start and both buffers are aligned to a 16-byte vector (4 f32;
// every launch the runtime makes is), thread t takes elements cb + 4t .. cb + 4t + 3, then 1024
// further, ...: one vector load of the input, the body four times, one vector store; threads
// 0..r-1 take the chunk's last r < 4 elements one each.
// CHECK-LABEL: gpu.func @rule_0(
// CHECK-SAME:    %[[IN:[^:]*]]: memref<?xf32> {llvm.noalias}, %[[OUT:[^:]*]]: memref<?xf32> {llvm.noalias}, %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index,
// CHECK-SAME:    kernel attributes {known_block_size = array<i32: 256, 1, 1>
// CHECK-DAG:   %[[TID:.*]] = gpu.thread_id x
// CHECK-DAG:   %[[BID:.*]] = gpu.block_id x
// CHECK-DAG:   %[[C256:.*]] = arith.constant 256 : index
// CHECK:       %[[OFF:.*]] = arith.muli %[[BID]], %[[K:.*]] : index
// CHECK:       %[[CB:.*]] = arith.addi %[[BEGIN]], %[[OFF]] : index
// CHECK:       %[[CE0:.*]] = arith.addi %[[CB]], %[[K]] : index
// CHECK:       %[[CE:.*]] = arith.minsi %[[END]], %[[CE0]] : index
// CHECK:       %[[C4:.*]] = arith.constant 4 : index
// CHECK:       %[[C4B:.*]] = arith.constant 4 : index
// CHECK:       arith.remui %[[CB]], %[[C4B]] : index
// CHECK:       %[[PIN:.*]] = memref.extract_aligned_pointer_as_index %[[IN]]
// CHECK:       %[[C16:.*]] = arith.constant 16 : index
// CHECK:       arith.remui %[[PIN]], %[[C16]] : index
// CHECK:       memref.extract_aligned_pointer_as_index %[[OUT]]
// CHECK:       %[[ALIGNED:.*]] = arith.andi
// CHECK:       scf.if %[[ALIGNED]] {
// CHECK:         %[[COUNT:.*]] = arith.maxsi
// CHECK:         %[[NV:.*]] = arith.divui %[[COUNT]], %[[C4]] : index
// CHECK:         %[[WHOLE:.*]] = arith.muli %[[NV]], %[[C4]] : index
// CHECK:         %[[VEND:.*]] = arith.addi %[[CB]], %[[WHOLE]] : index
// CHECK:         %[[T4:.*]] = arith.muli %[[TID]], %[[C4]] : index
// CHECK:         %[[VFIRST:.*]] = arith.addi %[[CB]], %[[T4]] : index
// CHECK:         %[[VSTEP:.*]] = arith.muli %[[C256]], %[[C4]] : index
// CHECK:         scf.for %[[V:.*]] = %[[VFIRST]] to %[[VEND]] step %[[VSTEP]] {
// CHECK:           %[[W:.*]] = vector.load %[[IN]][%[[V]]] {alignment = 16 : i64} : memref<?xf32>, vector<4xf32>
// CHECK:           %[[E0:.*]] = vector.extract %[[W]][0]
// CHECK:           %[[E1:.*]] = vector.extract %[[W]][1]
// CHECK:           %[[E2:.*]] = vector.extract %[[W]][2]
// CHECK:           %[[E3:.*]] = vector.extract %[[W]][3]
// CHECK:           %[[R0:.*]] = arith.mulf %[[E0]], %[[E0]]
// CHECK:           %[[R1:.*]] = arith.mulf %[[E1]], %[[E1]]
// CHECK:           %[[R2:.*]] = arith.mulf %[[E2]], %[[E2]]
// CHECK:           %[[R3:.*]] = arith.mulf %[[E3]], %[[E3]]
// CHECK:           %[[WR:.*]] = vector.from_elements %[[R0]], %[[R1]], %[[R2]], %[[R3]] : vector<4xf32>
// CHECK:           vector.store %[[WR]], %[[OUT]][%[[V]]] {alignment = 16 : i64} : memref<?xf32>, vector<4xf32>
// CHECK:         }
// CHECK:         %[[TAIL:.*]] = arith.addi %[[VEND]], %[[TID]] : index
// CHECK:         %[[INTAIL:.*]] = arith.cmpi slt, %[[TAIL]], %[[CE]] : index
// CHECK:         scf.if %[[INTAIL]] {
// CHECK:           %[[XT:.*]] = memref.load %[[IN]][%[[TAIL]]]
// CHECK:           %[[YT:.*]] = arith.mulf %[[XT]], %[[XT]]
// CHECK:           memref.store %[[YT]], %[[OUT]][%[[TAIL]]]
// CHECK:         }
// CHECK:       } else {
// Otherwise (unaligned buffers): four elements (256 apart) per iteration, every load and
// computation first (copies past the chunk's end read its last element), then the stores
// (copies past the end store nothing).
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
// result[b * 2 + j]. When the chunk's start and the input are aligned to a 16-byte vector, the
// chunk's whole tiles of 1024 f32 come first, staged through workgroup memory: one vector load
// a thread (elements 4t .. 4t + 3 of the tile), a barrier, then thread t adds the tile's
// elements t, t + 256, t + 512, t + 768 from there (the order it adds them in without the
// tiles), a barrier; the strided loop adds what is left, from where the tiles stopped and with
// their accumulators. The tree's buffer holds both accumulators' partials, 256 apart.
// CHECK-LABEL: gpu.func @rule_0_phase0(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xf32> {llvm.noalias}, %[[RES:[^:]*]]: memref<?xf64> {llvm.noalias}, %[[B:[^:]*]]: index, %[[E:[^:]*]]: index,
// CHECK-SAME:    workgroup(%[[TREE:.*]] : memref<512xf64, #gpu.address_space<workgroup>>, %[[TILE:.*]] : memref<1024xf32, #gpu.address_space<workgroup>>)
// CHECK-DAG:   %[[TID2:.*]] = gpu.thread_id x
// CHECK-DAG:   %[[BID2:.*]] = gpu.block_id x
// CHECK:       %[[OFF2:.*]] = arith.muli %[[BID2]], %{{.*}} : index
// CHECK:       %[[CB2:.*]] = arith.addi %[[B]], %[[OFF2]] : index
// CHECK:       %[[CE2:.*]] = arith.minsi %[[E]], %{{.*}} : index
// CHECK:       %[[C1024:.*]] = arith.constant 1024 : index
// CHECK:       arith.remui %[[CB2]], %{{.*}} : index
// CHECK:       memref.extract_aligned_pointer_as_index %[[A]]
// CHECK:       %[[ALIGNED:.*]] = arith.andi
// CHECK:       %[[COUNT:.*]] = arith.maxsi
// CHECK:       %[[NT:.*]] = arith.divui %[[COUNT]], %[[C1024]] : index
// CHECK:       %[[WHOLE:.*]] = arith.muli %[[NT]], %[[C1024]] : index
// CHECK:       %[[STAGED:.*]] = arith.select %[[ALIGNED]], %[[WHOLE]], %{{.*}} : index
// CHECK:       %[[SE:.*]] = arith.addi %[[CB2]], %[[STAGED]] : index
// CHECK:       %[[TILES:.*]]:2 = scf.for %[[AT:.*]] = %[[CB2]] to %[[SE]] step %[[C1024]] iter_args
// CHECK:         %[[MINE:.*]] = arith.muli %[[TID2]], %{{.*}} : index
// CHECK:         %[[FROM:.*]] = arith.addi %[[AT]], %[[MINE]] : index
// CHECK:         %[[W:.*]] = vector.load %[[A]][%[[FROM]]] {alignment = 16 : i64} : memref<?xf32>, vector<4xf32>
// CHECK:         vector.store %[[W]], %[[TILE]][%[[MINE]]] {alignment = 16 : i64} : memref<1024xf32, #gpu.address_space<workgroup>>, vector<4xf32>
// CHECK:         gpu.barrier
// CHECK:         %[[IN:.*]]:2 = scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args
// CHECK:           %[[JS:.*]] = arith.muli %[[J]], %{{.*}} : index
// CHECK:           %[[O:.*]] = arith.addi %[[TID2]], %[[JS]] : index
// CHECK:           %[[X:.*]] = memref.load %[[TILE]][%[[O]]]
// CHECK:           arith.extf %[[X]] : f32 to f64
// CHECK:           arith.addf
// CHECK:           arith.maximumf
// CHECK:         gpu.barrier
// CHECK:         scf.yield %[[IN]]#0, %[[IN]]#1
// CHECK:       %[[LB:.*]] = arith.addi %[[SE]], %[[TID2]] : index
// CHECK:       %[[ACC:.*]]:2 = scf.for %{{.*}} = %[[LB]] to %[[CE2]] step %{{.*}} iter_args(%{{.*}} = %[[TILES]]#0, %{{.*}} = %[[TILES]]#1)
// CHECK:         memref.load %[[A]]
// CHECK:       %[[P0:.*]] = arith.muli %[[BID2]], %{{.*}} : index
// CHECK:       %[[P1:.*]] = arith.addi %[[P0]], %{{.*}} : index
// CHECK:       memref.store %[[ACC]]#0, %[[TREE]][%[[TID2]]]
// CHECK:       %[[SECOND:.*]] = arith.addi %[[TID2]], %{{.*}} : index
// CHECK:       memref.store %[[ACC]]#1, %[[TREE]][%[[SECOND]]]
// CHECK:       gpu.barrier
// CHECK:       arith.cmpi ult, %[[TID2]], %{{.*}} : index
// CHECK:       scf.if
// CHECK:         arith.addf
// CHECK:         arith.maximumf
// CHECK:       gpu.barrier
// CHECK-COUNT-7: gpu.barrier
// CHECK:       %[[IS0:.*]] = arith.cmpi eq, %[[TID2]], %{{.*}} : index
// CHECK:       scf.if %[[IS0]] {
// CHECK:         %[[T0:.*]] = memref.load %[[TREE]][%{{.*}}]
// CHECK:         memref.store %[[T0]], %[[RES]][%[[P0]]]
// CHECK:         %[[T1:.*]] = memref.load %[[TREE]][%{{.*}}]
// CHECK:         memref.store %[[T1]], %[[RES]][%[[P1]]]
// CHECK-NOT:   gpu.barrier
// CHECK:       gpu.return
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

// A bf16 map (16-bit buffers) with a per-row value read at i / cols: 8 elements per 16-byte
// vector; only the accesses at the loop's index become vector ones, the row value is read per
// element (its index computed from each element's own index).
// CHECK-LABEL: gpu.func @rule_1(
// CHECK-SAME:    %[[X:[^:]*]]: memref<?xi16> {llvm.noalias}, %[[ROW:[^:]*]]: memref<?xf32> {llvm.noalias}, %[[Y:[^:]*]]: memref<?xi16> {llvm.noalias}
// CHECK:       %[[C8:.*]] = arith.constant 8 : index
// CHECK:       memref.extract_aligned_pointer_as_index %[[X]]
// CHECK-NOT:   memref.extract_aligned_pointer_as_index %[[ROW]]
// CHECK:       memref.extract_aligned_pointer_as_index %[[Y]]
// CHECK:       scf.for %[[V:.*]] =
// CHECK:         %[[V7:.*]] = arith.addi %[[V]], %{{.*}} : index
// CHECK:         %[[W:.*]] = vector.load %[[X]][%[[V]]] {alignment = 16 : i64} : memref<?xi16>, vector<8xi16>
// CHECK-COUNT-8: vector.extract %[[W]]
// CHECK:         %[[R0:.*]] = arith.divui %[[V]], %{{.*}} : index
// CHECK:         memref.load %[[ROW]][%[[R0]]] : memref<?xf32>
// CHECK:         %[[R7:.*]] = arith.divui %[[V7]], %{{.*}} : index
// CHECK:         memref.load %[[ROW]][%[[R7]]] : memref<?xf32>
// CHECK:         vector.from_elements {{.*}} : vector<8xi16>
// CHECK:         vector.store %{{.*}}, %[[Y]][%[[V]]] {alignment = 16 : i64} : memref<?xi16>, vector<8xi16>
// CHECK:       } else {
func.func @rule_1(%x: memref<?xi16>, %row: memref<?xf32>, %y: memref<?xi16>, %begin: index,
                  %end: index, %layer: f32, %nl: f32, %scalars: memref<?xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %cols = arith.constant 257 : index
  %k = arith.constant 65536 : index
  %span = arith.subi %end, %begin : index
  %chunks = arith.ceildivsi %span, %k : index
  scf.parallel (%c) = (%c0) to (%chunks) step (%c1) {
    %off = arith.muli %c, %k : index
    %cb = arith.addi %begin, %off : index
    %ce0 = arith.addi %cb, %k : index
    %ce = arith.minsi %end, %ce0 : index
    scf.for %i = %cb to %ce step %c1 {
      %v = memref.load %x[%i] : memref<?xi16>
      %r = arith.divui %i, %cols : index
      %s = memref.load %row[%r] : memref<?xf32>
      %si = arith.fptosi %s : f32 to i16
      %o = arith.addi %v, %si : i16
      memref.store %o, %y[%i] : memref<?xi16>
    }
    scf.reduce
  }
  return
}

// A buffer read and written in the same loop keeps the scalar loop alone (a vector store
// after the vector load would change nothing here, but the pass does not reason about it).
// CHECK-LABEL: gpu.func @rule_2(
// CHECK-NOT:   vector.
// CHECK:       gpu.return
func.func @rule_2(%x: memref<?xf32>, %begin: index, %end: index, %layer: f32, %nl: f32,
                  %scalars: memref<?xf64>) {
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
      %v = memref.load %x[%i] : memref<?xf32>
      %w = arith.mulf %v, %v : f32
      memref.store %w, %x[%i] : memref<?xf32>
    }
    scf.reduce
  }
  return
}

// Five f16 inputs and nine accumulators. Five 16-byte tiles (4 KiB each) would exceed the
// staging budget of 16 KiB, so each thread stages 4 elements (8 bytes) of each: 5 x 2 KiB. The
// tree combines at most 8 accumulators at a time through one 16 KiB buffer: the first eight,
// thread 0 writes their totals, a barrier, then the ninth (kernels with 36 accumulators, e.g.
// geomedian of 8 models, had 72 KiB of workgroup memory and did not compile: ptxas allows 48).
// CHECK-LABEL: gpu.func @rule_3_phase0(
// CHECK-SAME:    workgroup(%[[TREE3:[^ ]*]] : memref<2048xf64, #gpu.address_space<workgroup>>, %{{[^ ]*}} : memref<1024xf16, #gpu.address_space<workgroup>>, %{{[^ ]*}} : memref<1024xf16, #gpu.address_space<workgroup>>, %{{[^ ]*}} : memref<1024xf16, #gpu.address_space<workgroup>>, %{{[^ ]*}} : memref<1024xf16, #gpu.address_space<workgroup>>, %{{[^ ]*}} : memref<1024xf16, #gpu.address_space<workgroup>>)
// CHECK-COUNT-5: vector.load {{.*}} {alignment = 8 : i64} : memref<?xf16>, vector<4xf16>
// CHECK-COUNT-8: memref.store {{.*}}, %[[TREE3]]
// CHECK-NOT:   memref.store {{.*}}, %[[TREE3]]
// CHECK:       gpu.barrier
// CHECK-COUNT-8: gpu.barrier
// CHECK:       scf.if
// CHECK-COUNT-8: memref.store
// CHECK:       }
// CHECK-NEXT:  gpu.barrier
// CHECK-NEXT:  memref.store {{.*}}, %[[TREE3]][
// CHECK-NEXT:  gpu.barrier
// CHECK-COUNT-8: gpu.barrier
// CHECK:       scf.if
// CHECK:         memref.load %[[TREE3]]
// CHECK-NEXT:    memref.store
// CHECK-NEXT:  }
// CHECK-NEXT:  gpu.return
func.func @rule_3_phase0(%x0: memref<?xf16>, %x1: memref<?xf16>, %x2: memref<?xf16>,
                         %x3: memref<?xf16>, %x4: memref<?xf16>, %res: memref<?xf64>,
                         %begin: index, %end: index, %layer: f32, %nl: f32,
                         %scalars: memref<?xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c9 = arith.constant 9 : index
  %k = arith.constant 65536 : index
  %zero = arith.constant 0.0 : f64
  %span = arith.subi %end, %begin : index
  %chunks = arith.ceildivsi %span, %k : index
  scf.parallel (%c) = (%c0) to (%chunks) step (%c1) {
    %off = arith.muli %c, %k : index
    %cb = arith.addi %begin, %off : index
    %ce0 = arith.addi %cb, %k : index
    %ce = arith.minsi %end, %ce0 : index
    %r:9 = scf.for %i = %cb to %ce step %c1
        iter_args(%s0 = %zero, %s1 = %zero, %s2 = %zero, %s3 = %zero, %s4 = %zero,
                  %s5 = %zero, %s6 = %zero, %s7 = %zero, %s8 = %zero)
        -> (f64, f64, f64, f64, f64, f64, f64, f64, f64) {
      %a = memref.load %x0[%i] : memref<?xf16>
      %b = memref.load %x1[%i] : memref<?xf16>
      %cc = memref.load %x2[%i] : memref<?xf16>
      %d = memref.load %x3[%i] : memref<?xf16>
      %e = memref.load %x4[%i] : memref<?xf16>
      %wa = arith.extf %a : f16 to f64
      %wb = arith.extf %b : f16 to f64
      %wc = arith.extf %cc : f16 to f64
      %wd = arith.extf %d : f16 to f64
      %we = arith.extf %e : f16 to f64
      %ab = arith.mulf %wa, %wb : f64
      %bc = arith.mulf %wb, %wc : f64
      %cd = arith.mulf %wc, %wd : f64
      %de = arith.mulf %wd, %we : f64
      %n0 = arith.addf %s0, %wa : f64
      %n1 = arith.addf %s1, %wb : f64
      %n2 = arith.addf %s2, %wc : f64
      %n3 = arith.addf %s3, %wd : f64
      %n4 = arith.addf %s4, %we : f64
      %n5 = arith.addf %s5, %ab : f64
      %n6 = arith.addf %s6, %bc : f64
      %n7 = arith.addf %s7, %cd : f64
      %n8 = arith.addf %s8, %de : f64
      scf.yield %n0, %n1, %n2, %n3, %n4, %n5, %n6, %n7, %n8
          : f64, f64, f64, f64, f64, f64, f64, f64, f64
    }
    %p = arith.muli %c, %c9 : index
    memref.store %r#0, %res[%p] : memref<?xf64>
    %p1 = arith.addi %p, %c1 : index
    memref.store %r#1, %res[%p1] : memref<?xf64>
    %p2 = arith.addi %p1, %c1 : index
    memref.store %r#2, %res[%p2] : memref<?xf64>
    %p3 = arith.addi %p2, %c1 : index
    memref.store %r#3, %res[%p3] : memref<?xf64>
    %p4 = arith.addi %p3, %c1 : index
    memref.store %r#4, %res[%p4] : memref<?xf64>
    %p5 = arith.addi %p4, %c1 : index
    memref.store %r#5, %res[%p5] : memref<?xf64>
    %p6 = arith.addi %p5, %c1 : index
    memref.store %r#6, %res[%p6] : memref<?xf64>
    %p7 = arith.addi %p6, %c1 : index
    memref.store %r#7, %res[%p7] : memref<?xf64>
    %p8 = arith.addi %p7, %c1 : index
    memref.store %r#8, %res[%p8] : memref<?xf64>
    scf.reduce
  }
  return
}
