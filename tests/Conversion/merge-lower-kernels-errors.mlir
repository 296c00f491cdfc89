// RUN: merge-opt %s -split-input-file -merge-lower-kernels -verify-diagnostics
// Rules that are not ready to lower say which pass they still need.

// expected-error @+1 {{rule has no output dtype (run merge-specialize-dtypes)}}
func.func @rule_1() -> !merge.tensor {
  %a = merge.input "a" stored f32
  %k = merge.kernel ins(%a) {
  ^bb0(%x: f32):
    merge.yield %x : f32
  }
  return %k : !merge.tensor
}

// -----

// expected-error @+1 {{rule is not fused into a merge.kernel (run merge-fuse-elementwise)}}
func.func @rule_2() -> !merge.tensor attributes {merge.store = f32} {
  %a = merge.input "a" stored f32
  return %a : !merge.tensor
}

// -----

func.func @rule_3() -> !merge.tensor attributes {merge.store = f32} {
  // expected-error @+1 {{kernel inputs must be merge.input ops with a storage dtype}}
  %a = merge.input "a"
  %k = merge.kernel ins(%a) {
  ^bb0(%x: f32):
    merge.yield %x : f32
  }
  return %k : !merge.tensor
}
