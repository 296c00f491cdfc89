// RUN: merge-opt %s -merge-fuse-elementwise -cse | FileCheck %s
// bernoulli's stream s reads word s mod 4 of the Philox block at counter (index, s div 4):
// the masks of list positions 0-3 are built from identical rounds, so after CSE the fused
// kernel evaluates Philox once per element (20 mului_extended). Position 4 starts a second
// block (counter word 2 = 1): 38 more, as the first two rounds' products of the index words
// are the same in both blocks.

func.func @rule_0() -> !merge.tensor {
  %b = merge.input "base"
  %a = merge.input "a"
  %h = merge.name_hash
  %half = arith.constant 5.000000e-01 : f32
  %p = merge.splat %half
  %m0 = merge.bernoulli %p, %h {seed = 7 : i64, stream = 0 : i64}
  %m1 = merge.bernoulli %p, %h {seed = 7 : i64, stream = 1 : i64}
  %m2 = merge.bernoulli %p, %h {seed = 7 : i64, stream = 2 : i64}
  %s0 = merge.add %m0, %m1
  %s1 = merge.add %s0, %m2
  %x = merge.mul %a, %s1
  return %x : !merge.tensor
}

// CHECK-LABEL: func.func @rule_0
// CHECK:       merge.kernel
// CHECK-COUNT-20: arith.mului_extended
// CHECK-NOT:   arith.mului_extended
// CHECK:       merge.yield

func.func @rule_1() -> !merge.tensor {
  %a = merge.input "a"
  %h = merge.name_hash
  %half = arith.constant 5.000000e-01 : f32
  %p = merge.splat %half
  %m0 = merge.bernoulli %p, %h {seed = 7 : i64, stream = 0 : i64}
  %m4 = merge.bernoulli %p, %h {seed = 7 : i64, stream = 4 : i64}
  %s = merge.add %m0, %m4
  %x = merge.mul %a, %s
  return %x : !merge.tensor
}

// CHECK-LABEL: func.func @rule_1
// CHECK:       merge.kernel
// CHECK-COUNT-38: arith.mului_extended
// CHECK-NOT:   arith.mului_extended
// CHECK:       merge.yield
