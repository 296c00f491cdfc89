// RUN: merge-opt %s -pass-pipeline='builtin.module(func.func(merge-fuse-elementwise),canonicalize)' | FileCheck %s
// Math, comparison and selection ops fuse like arithmetic. A median is a branch-free
// compare-exchange network (odd-even transposition), so the kernel stays one vector loop.

// CHECK-LABEL: func.func @median3
// CHECK:       merge.kernel ins(%{{.*}}, %{{.*}}, %{{.*}}) {
// CHECK-NEXT:  ^bb0(%[[X:.*]]: f32, %[[Y:.*]]: f32, %[[Z:.*]]: f32):
// CHECK-NEXT:    %[[LO1:.*]] = arith.minimumf %[[X]], %[[Y]] : f32
// CHECK-NEXT:    %[[HI1:.*]] = arith.maximumf %[[X]], %[[Y]] : f32
// CHECK-NEXT:    %[[LO2:.*]] = arith.minimumf %[[HI1]], %[[Z]] : f32
// CHECK-NEXT:    %[[MID:.*]] = arith.maximumf %[[LO1]], %[[LO2]] : f32
// CHECK-NEXT:    merge.yield %[[MID]] : f32
func.func @median3() -> !merge.tensor {
  %a = merge.input "a"
  %b = merge.input "b"
  %c = merge.input "c"
  %m = merge.median %a, %b, %c
  return %m : !merge.tensor
}

// An even count averages the middle two, as numpy does.
// CHECK-LABEL: func.func @median2
// CHECK:         %[[LO:.*]] = arith.minimumf
// CHECK-NEXT:    %[[HI:.*]] = arith.maximumf
// CHECK-NEXT:    %[[S:.*]] = arith.addf %[[LO]], %[[HI]] : f32
// CHECK-NEXT:    %[[M:.*]] = arith.mulf %[[S]], %{{.*}} : f32
// CHECK-NEXT:    merge.yield %[[M]] : f32
func.func @median2() -> !merge.tensor {
  %a = merge.input "a"
  %b = merge.input "b"
  %m = merge.median %a, %b
  return %m : !merge.tensor
}

// where(|a| > b, sign(a), sqrt(b)): comparisons give 1.0/0.0, select tests the mask != 0.
// CHECK-LABEL: func.func @select
// CHECK:         %[[ABS:.*]] = math.absf %[[A:.*]] : f32
// CHECK-NEXT:    %[[GT:.*]] = arith.cmpf ogt, %[[ABS]], %[[B:.*]] : f32
// CHECK-NEXT:    %[[MASK:.*]] = arith.select %[[GT]]
// CHECK:         math.sqrt %[[B]] : f32
// CHECK:         %[[SET:.*]] = arith.cmpf une, %[[MASK]]
// CHECK-NEXT:    %[[R:.*]] = arith.select %[[SET]]
// CHECK-NEXT:    merge.yield %[[R]] : f32
// CHECK-NOT:   merge.cmp
func.func @select() -> !merge.tensor {
  %a = merge.input "a"
  %b = merge.input "b"
  %abs = merge.abs %a
  %mask = merge.cmp "gt" %abs, %b
  %s = merge.sign %a
  %q = merge.sqrt %b
  %r = merge.select %mask, %s, %q
  return %r : !merge.tensor
}
