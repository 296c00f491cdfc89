//===- Sema.h - names, kinds, arities; defs inlined -------------*- C++ -*-===//
// Sema checks a recipe and reduces every rule to a DAG of primitive operations on the current
// tensor (lists unrolled, defs and library functions inlined), which MLIRGen turns into the
// merge dialect. Every error is reported here, before any checkpoint is opened.
#pragma once
#include "mergec/AST/AST.h"
#include "mergec/Frontend/Diagnostics.h"
#include "mergec/Runtime/LayerStack.h"
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mergec::sema {

/// Scalar: one f32 for the whole tensor; Tensor: one per element of the current tensor;
/// Matrix: a 2-D value of any shape (linear algebra: svd's factors, a @ b), known at run time.
enum class Kind { Scalar, Tensor, Matrix };

/// One primitive operation. Scalars are f32 values the same for every element of a tensor;
/// tensors are per-element values of the current tensor.
struct Node {
  enum class Op {
    Constant,  ///< scalar `value`
    Input,     ///< tensor: model `model`'s tensor with the current name (rt::kSourceInput:
               ///< the slice's first source's, mapped per tensor by the planner)
    Layer,     ///< scalar: the layer index of the current tensor, or -1
    NumLayers, ///< scalar
    Ramp,      ///< scalar: piecewise linear over the operands (the anchors) at t(layer)
    Splat,     ///< tensor from a scalar operand
    Add, Sub, Mul, Div, Neg,
    Sum,    ///< elementwise sum of the operands (all of one kind)
    Mean,   ///< elementwise mean of the operands
    Max,    ///< elementwise maximum of the operands
    Min,    ///< elementwise minimum of the operands
    Median, ///< elementwise median of the operands (mean of the middle two for an even count)
    Variance, ///< elementwise population variance of the operands (Welford in f64, rounded once)
    Abs, Sign, Sqrt, Exp, Log, Sin, Cos, Acos, Floor,
    Cmp,    ///< 1 where `predicate` (< > <= >= == !=) holds between the operands, else 0
    Select, ///< operand 1 where operand 0 is non-zero, else operand 2
    ReduceSum, ///< scalar: the sum of every element of the tensor operand
    ReduceMax, ///< scalar: the largest element of the tensor operand
    RowSum,    ///< tensor: each element replaced by the sum of its row (last dimension)
    RowMax,    ///< tensor: each element replaced by the maximum of its row
    TopK,      ///< tensor: 1 for ranks [s, s + k) by magnitude; `value` density, `value2` skip,
               ///< `flag` nonzero
    Quantile,  ///< scalar: the `value`-quantile of the tensor operand
    RowRank,   ///< tensor: rank 1..cols of |x| ascending within each row
    Bernoulli, ///< tensor: 1 with probability operand 0; `value` seed, `value2` list position
    Cols,      ///< scalar: the length of the current tensor's last dimension
    Numel,     ///< scalar: the current tensor's number of elements
    String,    ///< a string literal (`text`); only compared, never computed with
    Weiszfeld, ///< scalar group: Weiszfeld's geometric-median iteration in coefficient space;
               ///< operands: the Gram matrix (upper triangle, row by row), then the weights;
               ///< `value` eps, `value2` tol, `value3` max_iter
    Karcher,   ///< scalar group: the Karcher mean iteration (mergekit's karcher, equal weights)
               ///< in coefficient space; operands: the Gram matrix (upper triangle, row by
               ///< row); `value` tol, `value3` max_iter
    Multislerp, ///< scalar group: mergekit's multislerp in coefficient space; operands: the Gram
                ///< matrix (upper triangle, row by row), then the weights; `value` eps
    Coefficient, ///< scalar: coefficient `value` of the Weiszfeld, Karcher or Multislerp operand
    // Linear algebra. Matrix operands may be tensors (the current tensor as rows x cols, its
    // last dimension the columns); elementwise ops and ReduceSum / ReduceMax also take
    // matrices (Kind::Matrix when no operand is a tensor).
    MatMul,    ///< matrix: operand 0 @ operand 1
    Transpose, ///< matrix
    HCat,      ///< matrix: the operands side by side
    VCat,      ///< matrix: the operands one above the other
    Diag,      ///< matrix: k x k with a vector's k values on the diagonal
    TakeRows,  ///< matrix: the first k (operand 1) rows
    TakeCols,  ///< matrix: the first k (operand 1) columns
    Orth,      ///< matrix: the polar factor u @ vt of the SVD
    CumSum,    ///< matrix: each row's running sum
    Highpass,  ///< FR-Merging's filter of operand 0's 2-D spectrum, ratio operand 1; a tensor
               ///< when operand 0 is (same shape), else a matrix
    Lowpass,   ///< the complement of Highpass (same operands)
    LowRank,   ///< matrix: the best rank-k (operand 1) approximation
    RankOf,    ///< scalar: min(rows, cols)
    Svd,       ///< group: u, s, vt of operand 0; `flag`: truncated to rank operand 1
    Rsvd,      ///< group: randomised u, s, vt of rank operand 1; `value` oversample,
               ///< `value2` power iterations, `value3` seed
    SvdPart,   ///< matrix: factor `value` (0 u, 1 s, 2 vt) of the Svd or Rsvd operand
    BundleRank, ///< scalar: compress(...)'s rank for the current tensor (set by the runtime)
    Emit,       ///< compress(...): hands operand 0 (a matrix or a scalar) to the runtime as
                ///< `text` ("U.0", "scale.1"); a root of its own (Rule::emits), no value
  };
  Op op;
  Kind kind;
  double value = 0;
  std::string model;
  double value2 = 0;
  double value3 = 0;
  bool flag = false;
  bool modelScope = false; ///< ReduceSum, ReduceMax, TopK: over every tensor the rule merges
  /// Constant only: the recipe param this value is (`lam`), when it is one. Unless Sema needed
  /// its value while compiling (Program::fixedParams), it stays a run-time input of the kernels,
  /// so a merge executable can take another value and a new `--set` reuses cached kernels.
  std::string param;
  ast::BinaryOp predicate = ast::BinaryOp::Eq; ///< Cmp only: the comparison (isComparison)
  std::string text;      ///< String only
  std::vector<const Node *> operands;
  ast::SourceLoc loc;
  /// 1 + the deepest operand's depth: how far MLIRGen and the fusion pass recurse from here
  /// (Sema keeps it within limits::kMaxInlinedDepth).
  size_t depth = 1;
};

struct Model {
  std::string name;
  std::string path; ///< as resolved (override applied; relative to the recipe or the cwd)
  ast::SourceLoc loc;
  /// `lora NAME = "PATH" on MODEL`: `path` is a PEFT adapter directory and its Input nodes
  /// read the adapter's delta on model `on` (0 where it changes nothing), not a checkpoint.
  bool lora = false;
  std::string on;
  /// `zoo[i]` of `bundle zoo = "PATH"`: `path` is the bundle, this model its member i (named
  /// "zoo[i]"), reconstructed by the runtime; -1 for a checkpoint or a lora.
  int64_t bundleMember = -1;
};

struct Rule {
  ast::SourceLoc loc;
  std::vector<ast::Pattern> patterns; ///< empty: matches every tensor
  const Node *result = nullptr;       ///< a tensor, or a matrix of the tensor's shape
  bool readsNumLayers = false;        ///< uses num_layers (directly or through ramp)
  /// Emit nodes the rule runs besides computing its result (compress(...)'s factors).
  std::vector<const Node *> emits;
};

/// `merge compress([a, b, c], rank = 64)`: the output is a compressed bundle of the members
/// (the NeurIPS 2024 LLM-merging winner's compression), not a model. The one rule computes, for
/// each compressed tensor, the normalised average as its result and emits each member's scale
/// and factors; the runtime decides per tensor what is compressed and at which rank.
struct BundleOutput {
  ast::SourceLoc loc;
  std::vector<std::string> members; ///< model names, in the bundle's member order
  int64_t rank = 0;                 ///< rank = K; 0 when rate is given
  double rate = 0;                  ///< rate = R in (0, 1): keep (1 - R) of each matrix's size
  std::vector<std::string> exclude; ///< globs: tensors stored per member, not compressed
  int64_t oversample = 8, iters = 2, seed = 0;
};

struct Program {
  std::string recipeFile;
  std::vector<std::string> sourceFiles; ///< by SourceLoc::file: the recipe, then stdlib files
  std::vector<Model> models;
  /// The model whose names, shapes, order and dtype the output takes: `base`, else the first.
  std::string outputModel;
  std::vector<std::pair<std::string, double>> params; ///< final values, overrides applied
  /// The params whose value compiling depended on (a density, an iteration count, a condition
  /// known while compiling, a checked range): their value is built into the kernels.
  std::set<std::string> fixedParams;
  std::vector<Rule> rules;
  /// `layers [...]`: the output's layers as slices of the models' layers (checked: declared
  /// models, integer ranges with begin < end, a slice's sources of one length); empty without
  /// the declaration. The planner checks the ranges against the models.
  std::vector<rt::LayerSlice> layers;
  /// Set when the merge expression is compress(...): the output is a bundle.
  std::optional<BundleOutput> bundle;
  std::deque<Node> nodes; ///< owns every Node (a deque keeps their addresses stable)

  const Model *findModel(const std::string &name) const;
};

/// Command-line overrides: `--set NAME=VALUE` and `--model NAME=PATH`.
struct Overrides {
  std::vector<std::pair<std::string, std::string>> params;
  std::vector<std::pair<std::string, std::string>> models;
};

/// Whether `name` is a built-in (a function such as `sum` or `topk_mask`, or a context name such
/// as `layer` or `cols`), which no model, param or def can redefine.
bool isBuiltinName(const std::string &name);

/// Returns null when an error was reported. `libraries` are parsed stdlib files: their defs are
/// visible to the recipe, which may shadow them with its own names.
std::unique_ptr<Program> analyze(const ast::Recipe &recipe, const Overrides &overrides,
                                 DiagnosticEngine &diags,
                                 const std::vector<const ast::Recipe *> &libraries = {});

} // namespace mergec::sema
