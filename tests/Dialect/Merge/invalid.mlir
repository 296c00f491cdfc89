// RUN: merge-opt %s -split-input-file -verify-diagnostics

func.func @bad_storage() -> !merge.tensor {
  // expected-error @+1 {{stored type must be f32, f16 or bf16, got 'i32'}}
  %a = merge.input "a" stored i32
  return %a : !merge.tensor
}

// -----

func.func @empty_model() -> !merge.tensor {
  // expected-error @+1 {{needs a model name}}
  %a = merge.input ""
  return %a : !merge.tensor
}

// -----

func.func @empty_sum() -> !merge.tensor {
  // expected-error @+1 {{needs at least one operand}}
  %s = merge.sum
  return %s : !merge.tensor
}

// -----

func.func @empty_ramp() -> f32 {
  // expected-error @+1 {{needs at least one anchor value}}
  %r = merge.ramp []
  return %r : f32
}

// -----

func.func @kernel_arity() -> !merge.tensor {
  %a = merge.input "a"
  // expected-error @+1 {{body has 2 arguments for 1 inputs}}
  %k = merge.kernel ins(%a) {
  ^bb0(%x: f32, %y: f32):
    merge.yield %x : f32
  }
  return %k : !merge.tensor
}

// -----

func.func @kernel_arg_type() -> !merge.tensor {
  %a = merge.input "a"
  // expected-error @+1 {{body arguments must be f32}}
  %k = merge.kernel ins(%a) {
  ^bb0(%x: f16):
    %y = arith.extf %x : f16 to f32
    merge.yield %y : f32
  }
  return %k : !merge.tensor
}

// -----

func.func @yield_outside() -> f32 {
  %c = arith.constant 1.0 : f32
  // expected-error @+1 {{expects parent op to be one of 'merge.kernel, merge.reduce_kernel, merge.select_kernel, merge.row_kernel'}}
  merge.yield %c : f32
}

// -----

func.func @bad_predicate() -> !merge.tensor {
  %a = merge.input "a"
  // expected-error @+1 {{predicate must be one of lt, gt, le, ge, eq, ne; got 'bigger'}}
  %m = merge.cmp "bigger" %a, %a
  return %m : !merge.tensor
}

// -----

func.func @empty_median() -> !merge.tensor {
  // expected-error @+1 {{needs at least one operand}}
  %m = merge.median
  return %m : !merge.tensor
}

// -----

func.func @empty_variance() -> !merge.tensor {
  // expected-error @+1 {{needs at least one operand}}
  %v = merge.variance
  return %v : !merge.tensor
}

// -----

func.func @bad_reduce_kind() -> f32 {
  %a = merge.input "a"
  // expected-error @+1 {{kind must be 'sum' or 'max', got 'mean'}}
  %r = merge.reduce "mean" %a
  return %r : f32
}
