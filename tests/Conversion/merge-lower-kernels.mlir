// RUN: merge-opt %s -merge-lower-kernels -canonicalize | FileCheck %s
// A fused, specialized rule becomes a phase function: memref arguments per input and for the
// output, [begin, end), the layer context, and the target-neutral loop nest: an scf.parallel
// over chunks of 65536 elements around one scf.for reading each input once.

// CHECK-LABEL: func.func @rule_0(
// CHECK-SAME:    %[[BASE:[^:]*]]: memref<?xi16>, %[[A:[^:]*]]: memref<?xf16>, %[[OUT:[^:]*]]: memref<?xi16>,
// CHECK-SAME:    %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index, %[[LAYER:[^:]*]]: f32, %[[NL:[^:]*]]: f32,
// CHECK-SAME:    %[[SCALARS:[^:]*]]: memref<?xf64>)
// CHECK-SAME:    merge.inputs = ["base", "a"]
// CHECK:       %[[SPAN:.*]] = arith.subi %[[END]], %[[BEGIN]] : index
// CHECK:       %[[CHUNKS:.*]] = arith.ceildivsi %[[SPAN]], %[[K:c65536[_0-9]*]] : index
// CHECK:       scf.parallel (%[[C:.*]]) = (%{{.*}}) to (%[[CHUNKS]]) step
// CHECK:         %[[OFF:.*]] = arith.muli %[[C]], %[[K]] : index
// CHECK:         %[[CB:.*]] = arith.addi %[[BEGIN]], %[[OFF]] : index
// CHECK:         %[[CE0:.*]] = arith.addi %[[CB]], %[[K]] : index
// CHECK:         %[[CE:.*]] = arith.minsi %[[END]], %[[CE0]] : index
// CHECK:         scf.for %[[I:.*]] = %[[CB]] to %[[CE]] step
// bf16 load: the bits become the top half of an f32.
// CHECK:         %[[RB:.*]] = memref.load %[[BASE]][%[[I]]] : memref<?xi16>
// CHECK-NEXT:    %[[WB:.*]] = arith.extui %[[RB]] : i16 to i32
// CHECK-NEXT:    %[[SB:.*]] = arith.shli %[[WB]], %{{.*}} : i32
// CHECK-NEXT:    %[[XB:.*]] = arith.bitcast %[[SB]] : i32 to f32
// f16 load: a plain extension.
// CHECK-NEXT:    %[[RA:.*]] = memref.load %[[A]][%[[I]]] : memref<?xf16>
// CHECK-NEXT:    %[[XA:.*]] = arith.extf %[[RA]] : f16 to f32
// CHECK-NEXT:    %[[SUM:.*]] = arith.addf %[[XB]], %[[XA]] : f32
// bf16 store: round to nearest even on the bits, NaN kept quiet.
// CHECK-NEXT:    %[[BITS:.*]] = arith.bitcast %[[SUM]] : f32 to i32
// CHECK:         arith.andi
// CHECK:         arith.addi
// CHECK:         arith.cmpf uno, %[[SUM]], %[[SUM]] : f32
// CHECK:         %[[NARROW:.*]] = arith.trunci %{{.*}} : i32 to i16
// CHECK-NEXT:    memref.store %[[NARROW]], %[[OUT]][%[[I]]] : memref<?xi16>
func.func @rule_0() -> !merge.tensor attributes {merge.store = bf16} {
  %base = merge.input "base" stored bf16
  %a = merge.input "a" stored f16
  %k = merge.kernel ins(%base, %a) {
  ^bb0(%x: f32, %y: f32):
    %z = arith.addf %x, %y : f32
    merge.yield %z : f32
  }
  return %k : !merge.tensor
}
