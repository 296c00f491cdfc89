// RUN: merge-opt %s -merge-fuse-elementwise | FileCheck %s
// Selections, quantiles and ranks become phases of their own, in program order: the select
// kernel materializes |x| (the runtime radix-selects the boundaries), topk_mask becomes a
// rank_band test on the element index (the magnitude bits compared in 32 bits, the boundary's
// bits clamped to 2^31 - 1), quantile the f32 of the phase result, row_rank a rank
// kernel the final kernel reads as one more input; bernoulli becomes Philox rounds inline.

func.func @rule_0() -> !merge.tensor {
  %b = merge.input "base"
  %a = merge.input "a"
  %tv = merge.sub %a, %b
  %m = merge.topk_mask %tv {density = 2.000000e-01 : f64, skip = 0.0 : f64, nonzero = false}
  %r = merge.row_rank %tv
  %h = merge.name_hash
  %p = merge.bernoulli %r, %h {seed = 7 : i64, stream = 1 : i64}
  %q = merge.quantile %a {q = 9.000000e-01 : f64}
  %qs = merge.splat %q
  %k1 = merge.mul %tv, %m
  %k2 = merge.mul %k1, %p
  %k3 = merge.add %k2, %qs
  return %k3 : !merge.tensor
}

// CHECK-LABEL: func.func @rule_0
// CHECK:       %[[B:.*]] = merge.input "base"
// CHECK:       %[[A:.*]] = merge.input "a"
// CHECK:       %[[T0:[^,]*]], %[[T1:[^,]*]], %[[T2:[^,]*]], %[[T3:[^ ]*]] = merge.select_kernel <topk> ins(%[[B]], %[[A]])
// CHECK:         arith.subf
// CHECK:       } {nonzero = false, param = 2.000000e-01 : f64, skip = 0.000000e+00 : f64}
// CHECK:       %[[R:.*]] = merge.row_kernel <rank> ins(%[[B]], %[[A]])
// CHECK:       %[[H:.*]] = merge.name_hash
// CHECK:       %[[Q0:[^,]*]], {{.*}} = merge.select_kernel <quantile> ins(%[[A]])
// CHECK:       } {nonzero = false, param = 9.000000e-01 : f64, skip = 0.000000e+00 : f64}
// CHECK:       %[[Q:.*]] = arith.truncf %[[Q0]] : f64 to f32
// CHECK:       merge.kernel ins(%[[B]], %[[A]], %[[R]])
// CHECK:         %[[I:.*]] = merge.element_index
// CHECK:         %[[KEY:.*]] = arith.andi %{{.*}}, %c2147483647_i32 : i32
// CHECK:         %[[LO:.*]] = arith.fptosi %[[T2]] : f64 to i64
// CHECK:         %[[CLAMPED:.*]] = arith.minsi %[[LO]], %c2147483647_i64 : i64
// CHECK:         %[[LO32:.*]] = arith.trunci %[[CLAMPED]] : i64 to i32
// CHECK:         arith.cmpi sgt, %[[KEY]], %[[LO32]] : i32
// CHECK:         arith.cmpi eq, %[[KEY]], %[[LO32]] : i32
// CHECK:         arith.cmpi sle, %[[I]], %{{.*}} : i64
// CHECK:         arith.fptosi %[[T0]] : f64 to i64
// CHECK:         arith.trunci %[[H]] : i64 to i32
// CHECK-COUNT-20: arith.mului_extended
// CHECK:         arith.uitofp
// CHECK:         arith.cmpf olt
// CHECK:         arith.addf %{{.*}}, %[[Q]] : f32
// CHECK:         merge.yield
