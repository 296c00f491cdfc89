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
  // expected-error @+1 {{must end the body of a merge.kernel, of a phase or of a merge.matrix_map}}
  merge.yield %c : f32
}

// -----

func.func @bad_predicate() -> !merge.tensor {
  %a = merge.input "a"
  // expected-error @+2 {{expected one of [lt, gt, le, ge, eq, ne] for an elementwise comparison, got: bigger}}
  // expected-error @+1 {{failed to parse Merge_CmpPredicateAttr parameter 'value'}}
  %m = merge.cmp <bigger> %a, %a
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
  // expected-error @+2 {{expected one of [sum, max] for a reduction of many values to one, got: mean}}
  // expected-error @+1 {{failed to parse Merge_ReductionKindAttr parameter 'value'}}
  %r = merge.reduce <mean> %a
  return %r : f32
}

// -----

// The kinds are enum attributes (op properties): the generic form cannot smuggle in a string
// or another enum's attribute either.
func.func @string_kind() -> f32 {
  %a = merge.input "a"
  // expected-error @+1 {{Invalid attribute `kind` in property conversion: "sum"}}
  %r = "merge.reduce"(%a) <{kind = "sum"}> : (!merge.tensor) -> f32
  return %r : f32
}

// -----

func.func @string_predicate() -> !merge.tensor {
  %a = merge.input "a"
  // expected-error @+1 {{Invalid attribute `predicate` in property conversion: #merge.reduction<sum>}}
  %m = "merge.cmp"(%a, %a) <{predicate = #merge.reduction<sum>}> : (!merge.tensor, !merge.tensor) -> !merge.tensor
  return %m : !merge.tensor
}

// -----

func.func @bad_reduce_kernel_kind() -> f32 {
  %a = merge.input "a"
  // expected-error @+2 {{expected one of [sum, max] for a reduction of many values to one, got: mean}}
  // expected-error @+1 {{failed to parse Merge_ReductionKindArrayAttr parameter 'value'}}
  %r = merge.reduce_kernel [sum, mean] ins(%a) : f32, f32 {
  ^bb0(%x: f32):
    merge.yield %x, %x : f32, f32
  }
  return %r : f32
}

// -----

func.func @reduce_kernel_arity() -> f32 {
  %a = merge.input "a"
  // expected-error @+1 {{has 1 kinds for 2 results}}
  %r, %s = merge.reduce_kernel [sum] ins(%a) : f32, f32 {
  ^bb0(%x: f32):
    merge.yield %x, %x : f32, f32
  }
  return %r : f32
}

// -----

func.func @bad_select_kind() -> f64 {
  %a = merge.input "a"
  // expected-error @+2 {{expected one of [topk, quantile] for what a selection phase finds, got: median}}
  // expected-error @+1 {{failed to parse Merge_SelectKindAttr parameter 'value'}}
  %t0, %t1, %t2, %t3 = merge.select_kernel <median> ins(%a) {
  ^bb0(%x: f32):
    merge.yield %x : f32
  } {nonzero = false, param = 5.000000e-01 : f64, skip = 0.000000e+00 : f64}
  return %t0 : f64
}

// -----

func.func @bad_row_kind() -> !merge.tensor {
  %a = merge.input "a"
  // expected-error @+2 {{expected one of [rank, sum, max] for what a row phase computes per row, got: min}}
  // expected-error @+1 {{failed to parse Merge_RowKindAttr parameter 'value'}}
  %r = merge.row_kernel <min> ins(%a) {
  ^bb0(%x: f32):
    merge.yield %x : f32
  }
  return %r : !merge.tensor
}

// -----

func.func @matrix_phase_yield_count() -> !merge.tensor {
  %a = merge.input "a"
  // expected-error @+1 {{program yields 2 values for 1 results}}
  %t = merge.matrix_phase ins(%a) : !merge.tensor {
  ^bb0(%x: f32):
    merge.yield %x : f32
  } program {
  ^bb0(%m: !merge.matrix):
    %r = merge.rank_of %m
    merge.matrix_yield %r, %m : f32, !merge.matrix
  }
  return %t : !merge.tensor
}

// -----

func.func @matrix_phase_order() -> !merge.tensor {
  %a = merge.input "a"
  // expected-error @+1 {{program yield 0 must be a matrix (scalars first, then matrices), got 'f32'}}
  %t = merge.matrix_phase ins(%a) : !merge.tensor {
  ^bb0(%x: f32):
    merge.yield %x : f32
  } program {
  ^bb0(%m: !merge.matrix):
    %r = merge.rank_of %m
    merge.matrix_yield %r : f32
  }
  return %t : !merge.tensor
}

// -----

func.func @matrix_phase_body_yields() -> !merge.tensor {
  %a = merge.input "a"
  // expected-error @+1 {{body yields 1 values, expected 2}}
  %t = merge.matrix_phase ins(%a) : !merge.tensor {
  ^bb0(%x: f32):
    merge.yield %x : f32
  } program {
  ^bb0(%m: !merge.matrix, %n: !merge.matrix):
    merge.matrix_yield %m : !merge.matrix
  }
  return %t : !merge.tensor
}

// -----

func.func @matrix_map_without_inputs(%s: f32) {
  // expected-error @+1 {{needs at least one matrix input}}
  %r = merge.matrix_map ins() {
  ^bb0:
    merge.yield %s : f32
  }
  return
}

// -----

func.func @emit_without_name(%x: f32) {
  // expected-error @+1 {{'merge.emit_matrix' op needs a non-empty name}}
  merge.emit_matrix "", %x : f32
  return
}
