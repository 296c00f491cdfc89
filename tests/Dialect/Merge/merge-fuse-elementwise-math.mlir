// RUN: merge-opt %s -pass-pipeline='builtin.module(func.func(merge-fuse-elementwise),canonicalize)' | FileCheck %s
// Math, comparison and selection ops fuse like arithmetic. A median is a branch-free
// compare-exchange network (odd-even transposition), so the kernel stays one vector loop; a
// variance is arithmetic in f64.

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

// A variance is Welford's update in f64 in operand order (torch.var's CPU algorithm), then
// m2 / n rounded once to f32. The first step's divide by 1 folds away; the rest stays.
// CHECK-LABEL: func.func @variance2
// CHECK-DAG:     %[[TWO:.*]] = arith.constant 2.000000e+00 : f64
// CHECK-DAG:     %[[ZERO:.*]] = arith.constant 0.000000e+00 : f64
// CHECK:       merge.kernel ins(%{{.*}}, %{{.*}}) {
// CHECK-NEXT:  ^bb0(%[[X:.*]]: f32, %[[Y:.*]]: f32):
// CHECK-NEXT:    %[[WX:.*]] = arith.extf %[[X]] : f32 to f64
// CHECK-NEXT:    %[[MEAN1:.*]] = arith.addf %[[WX]], %[[ZERO]] : f64
// CHECK-NEXT:    %[[DX2:.*]] = arith.subf %[[WX]], %[[MEAN1]] : f64
// CHECK-NEXT:    %[[P1:.*]] = arith.mulf %[[WX]], %[[DX2]] : f64
// CHECK-NEXT:    %[[M21:.*]] = arith.addf %[[P1]], %[[ZERO]] : f64
// CHECK-NEXT:    %[[WY:.*]] = arith.extf %[[Y]] : f32 to f64
// CHECK-NEXT:    %[[DY:.*]] = arith.subf %[[WY]], %[[MEAN1]] : f64
// CHECK-NEXT:    %[[STEP:.*]] = arith.divf %[[DY]], %[[TWO]] : f64
// CHECK-NEXT:    %[[MEAN2:.*]] = arith.addf %[[MEAN1]], %[[STEP]] : f64
// CHECK-NEXT:    %[[DY2:.*]] = arith.subf %[[WY]], %[[MEAN2]] : f64
// CHECK-NEXT:    %[[P2:.*]] = arith.mulf %[[DY]], %[[DY2]] : f64
// CHECK-NEXT:    %[[M22:.*]] = arith.addf %[[M21]], %[[P2]] : f64
// CHECK-NEXT:    %[[VAR:.*]] = arith.divf %[[M22]], %[[TWO]] : f64
// CHECK-NEXT:    %[[R:.*]] = arith.truncf %[[VAR]] : f64 to f32
// CHECK-NEXT:    merge.yield %[[R]] : f32
// CHECK-NOT:   merge.variance
func.func @variance2() -> !merge.tensor {
  %a = merge.input "a"
  %b = merge.input "b"
  %v = merge.variance %a, %b
  return %v : !merge.tensor
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
  %mask = merge.cmp <gt> %abs, %b
  %s = merge.sign %a
  %q = merge.sqrt %b
  %r = merge.select %mask, %s, %q
  return %r : !merge.tensor
}
