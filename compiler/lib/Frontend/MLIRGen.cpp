//===- MLIRGen.cpp - Sema's rule DAGs to the merge dialect ----------------===//
#include "mergec/Frontend/MLIRGen.h"
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/Transforms/Passes.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "llvm/ADT/DenseMap.h"

using namespace mlir;
using namespace mergec;
using sema::Kind;
using sema::Node;

std::string mergec::ruleFunctionName(size_t index) { return "rule_" + std::to_string(index); }

namespace {

/// A comparison operator as the dialect's predicate.
merge::CmpPredicate cmpPredicate(ast::BinaryOp op) {
  switch (op) {
  case ast::BinaryOp::Lt: return merge::CmpPredicate::LT;
  case ast::BinaryOp::Gt: return merge::CmpPredicate::GT;
  case ast::BinaryOp::Le: return merge::CmpPredicate::LE;
  case ast::BinaryOp::Ge: return merge::CmpPredicate::GE;
  case ast::BinaryOp::Eq: return merge::CmpPredicate::EQ;
  case ast::BinaryOp::Ne: return merge::CmpPredicate::NE;
  case ast::BinaryOp::Add:
  case ast::BinaryOp::Sub:
  case ast::BinaryOp::Mul:
  case ast::BinaryOp::Div:
  case ast::BinaryOp::MatMul: break;
  }
  llvm_unreachable("a Cmp node's predicate is a comparison");
}

class Generator {
public:
  Generator(MLIRContext &ctx, const sema::Program &program)
      : ctx_(ctx), program_(program), b_(&ctx) {}

  OwningOpRef<ModuleOp> run() {
    OwningOpRef<ModuleOp> module = ModuleOp::create(loc({1, 1}));
    b_.setInsertionPointToEnd(module->getBody());
    if (!program_.params.empty()) {
      // Every param in order: merge.param's index names one, and the run time gives values.
      SmallVector<Attribute> params;
      for (auto &[name, value] : program_.params)
        params.push_back(b_.getStringAttr(name));
      (*module)->setAttr(merge::kParamsAttr, b_.getArrayAttr(params));
    }
    Type tensor = merge::TensorType::get(&ctx_);
    for (size_t i = 0; i < program_.rules.size(); ++i) {
      const sema::Rule &rule = program_.rules[i];
      auto func = func::FuncOp::create(b_, loc(rule.loc), ruleFunctionName(i),
                                       b_.getFunctionType({}, {tensor}));
      if (!rule.patterns.empty()) {
        SmallVector<Attribute> patterns;
        for (auto &p : rule.patterns)
          patterns.push_back(b_.getStringAttr(p.glob));
        func->setAttr(kPatternsAttr, b_.getArrayAttr(patterns));
      }
      OpBuilder::InsertionGuard guard(b_);
      b_.setInsertionPointToStart(func.addEntryBlock());
      values_.clear();
      groups_.clear();
      asMatrix_.clear();
      asTensor_.clear();
      // compress(...)'s factors and scales: side effects of the rule, emitted first so that
      // the matrix phase they form comes before the map phase of the result.
      for (const Node *e : rule.emits) {
        const Node *operand = e->operands[0];
        Value v = emit(operand);
        if (operand->kind == Kind::Tensor) {
          Value &m = asMatrix_[operand];
          if (!m)
            m = merge::ToMatrixOp::create(b_, loc(operand->loc), matrixType(), v);
          v = m;
        }
        merge::EmitMatrixOp::create(b_, loc(e->loc), e->text, v);
      }
      Value result = emit(rule.result);
      if (rule.result->kind == Kind::Matrix)
        result = merge::ToTensorOp::create(b_, loc(rule.loc), tensorType(), result);
      func::ReturnOp::create(b_, loc(rule.loc), result);
    }
    return module;
  }

private:
  Type tensorType() { return merge::TensorType::get(&ctx_); }
  Type matrixType() { return merge::MatrixType::get(&ctx_); }

  /// Whether node `n` computes on matrices: its tensor operands are the current tensor as a
  /// matrix (merge.to_matrix).
  static bool takesMatrices(const Node *n) {
    switch (n->op) {
    case Node::Op::MatMul:
    case Node::Op::Transpose:
    case Node::Op::HCat:
    case Node::Op::VCat:
    case Node::Op::Diag:
    case Node::Op::TakeRows:
    case Node::Op::TakeCols:
    case Node::Op::Orth:
    case Node::Op::CumSum:
    case Node::Op::Highpass:
    case Node::Op::Lowpass:
    case Node::Op::LowRank:
    case Node::Op::RankOf:
    case Node::Op::Svd:
    case Node::Op::Rsvd:
      return true;
    default:
      return n->kind == Kind::Matrix;
    }
  }

  /// Operand `i` of `n` as `n` takes it: a tensor viewed as a matrix by a matrix op, a matrix
  /// turned into the tensor (shape checked when it runs) by a tensor op.
  Value converted(const Node *n, size_t i, Value v) {
    const Node *operand = n->operands[i];
    Location l = loc(operand->loc);
    if (operand->kind == Kind::Tensor && takesMatrices(n)) {
      Value &m = asMatrix_[operand];
      if (!m)
        m = merge::ToMatrixOp::create(b_, l, matrixType(), v);
      return m;
    }
    bool reducesMatrix = (n->op == Node::Op::ReduceSum || n->op == Node::Op::ReduceMax);
    if (operand->kind == Kind::Matrix && !takesMatrices(n) && !reducesMatrix &&
        n->op != Node::Op::SvdPart) {
      Value &t = asTensor_[operand];
      if (!t)
        t = merge::ToTensorOp::create(b_, l, tensorType(), v);
      return t;
    }
    return v;
  }

  /// A param's position in the program's list (and the module's `merge.params`).
  int64_t paramIndex(const std::string &name) {
    for (size_t i = 0; i < program_.params.size(); ++i)
      if (program_.params[i].first == name)
        return static_cast<int64_t>(i);
    return -1;
  }

  Location loc(ast::SourceLoc l) {
    const std::string &file = static_cast<size_t>(l.file) < program_.sourceFiles.size()
                                  ? program_.sourceFiles[l.file]
                                  : program_.recipeFile;
    return FileLineColLoc::get(&ctx_, file, l.line, l.col);
  }

  Value emit(const Node *n) {
    if (auto it = values_.find(n); it != values_.end())
      return it->second;
    SmallVector<Value> ops;
    for (const Node *operand : n->operands)
      ops.push_back(emit(operand));
    for (size_t i = 0; i < ops.size(); ++i)
      ops[i] = converted(n, i, ops[i]);
    Location l = loc(n->loc);
    Value v;
    switch (n->op) {
    case Node::Op::Constant:
      if (!n->param.empty() && !program_.fixedParams.count(n->param))
        v = merge::ParamOp::create(b_, l, b_.getF32Type(), n->param, paramIndex(n->param));
      else
        v = arith::ConstantOp::create(b_, l, b_.getF32FloatAttr(static_cast<float>(n->value)));
      break;
    case Node::Op::Input:
      v = merge::InputOp::create(b_, l, tensorType(), n->model, TypeAttr());
      break;
    case Node::Op::Layer:
      v = merge::LayerOp::create(b_, l, b_.getF32Type());
      break;
    case Node::Op::NumLayers:
      v = merge::NumLayersOp::create(b_, l, b_.getF32Type());
      break;
    case Node::Op::Ramp:
      v = merge::RampOp::create(b_, l, b_.getF32Type(), ops);
      break;
    case Node::Op::ReduceSum:
    case Node::Op::ReduceMax:
      if (n->operands[0]->kind == Kind::Matrix) {
        v = merge::MatrixReduceOp::create(
            b_, l, b_.getF32Type(),
            n->op == Node::Op::ReduceSum ? merge::ReductionKind::Sum : merge::ReductionKind::Max,
            ops[0]);
        break;
      }
      v = merge::ReduceOp::create(
          b_, l, b_.getF32Type(),
          n->op == Node::Op::ReduceSum ? merge::ReductionKind::Sum : merge::ReductionKind::Max,
          ops[0], n->modelScope);
      break;
    case Node::Op::RowSum:
    case Node::Op::RowMax:
      v = merge::RowReduceOp::create(
          b_, l, tensorType(),
          n->op == Node::Op::RowSum ? merge::ReductionKind::Sum : merge::ReductionKind::Max,
          ops[0]);
      break;
    case Node::Op::Cols:
      v = merge::ColsOp::create(b_, l, b_.getF32Type());
      break;
    case Node::Op::BundleRank:
      v = merge::BundleRankOp::create(b_, l, b_.getF32Type());
      break;
    case Node::Op::Numel:
      v = merge::NumelOp::create(b_, l, b_.getF32Type());
      break;
    case Node::Op::TopK:
      v = merge::TopKMaskOp::create(b_, l, tensorType(), ops[0], b_.getF64FloatAttr(n->value),
                                    b_.getF64FloatAttr(n->value2), b_.getBoolAttr(n->flag),
                                    n->modelScope ? b_.getUnitAttr() : nullptr);
      break;
    case Node::Op::Quantile:
      v = merge::QuantileOp::create(b_, l, b_.getF32Type(), ops[0], b_.getF64FloatAttr(n->value));
      break;
    case Node::Op::RowRank:
      v = merge::RowRankOp::create(b_, l, tensorType(), ops[0]);
      break;
    case Node::Op::Bernoulli: {
      Value hash = merge::NameHashOp::create(b_, l, b_.getI64Type());
      v = merge::BernoulliOp::create(b_, l, tensorType(), ops[0], hash,
                                     b_.getI64IntegerAttr(static_cast<int64_t>(n->value)),
                                     b_.getI64IntegerAttr(static_cast<int64_t>(n->value2)));
      break;
    }
    case Node::Op::String:
      llvm_unreachable("Sema rejects strings used as values");
    case Node::Op::Emit:
      llvm_unreachable("an Emit is a root of its own (Rule::emits), never an operand");
    case Node::Op::Weiszfeld:
      groups_[n] = emitWeiszfeld(n, l, ops);
      v = groups_[n].front();
      break;
    case Node::Op::Karcher:
      groups_[n] = emitKarcher(n, l, ops);
      v = groups_[n].front();
      break;
    case Node::Op::Multislerp:
      groups_[n] = emitMultislerp(n, l, ops);
      v = groups_[n].front();
      break;
    case Node::Op::Coefficient:
      emit(n->operands[0]);
      v = arith::TruncFOp::create(b_, l, b_.getF32Type(),
                                  groups_[n->operands[0]][static_cast<size_t>(n->value)]);
      break;
    case Node::Op::Splat:
      v = merge::SplatOp::create(b_, l, tensorType(), ops[0]);
      break;
    case Node::Op::MatMul:
      v = merge::MatMulOp::create(b_, l, matrixType(), ops[0], ops[1]);
      break;
    case Node::Op::Transpose:
      v = merge::TransposeOp::create(b_, l, matrixType(), ops[0]);
      break;
    case Node::Op::Diag:
      v = merge::DiagOp::create(b_, l, matrixType(), ops[0]);
      break;
    case Node::Op::Orth:
      v = merge::OrthOp::create(b_, l, matrixType(), ops[0]);
      break;
    case Node::Op::CumSum:
      v = merge::CumSumOp::create(b_, l, matrixType(), ops[0]);
      break;
    case Node::Op::Highpass:
    case Node::Op::Lowpass:
      v = n->op == Node::Op::Highpass
              ? Value(merge::HighpassOp::create(b_, l, matrixType(), ops[0], ops[1]))
              : Value(merge::LowpassOp::create(b_, l, matrixType(), ops[0], ops[1]));
      // The filter of a tensor is that tensor's shape: Sema made it a tensor.
      if (n->kind == Kind::Tensor)
        v = merge::ToTensorOp::create(b_, l, tensorType(), v);
      break;
    case Node::Op::HCat:
      v = merge::HCatOp::create(b_, l, matrixType(), ops);
      break;
    case Node::Op::VCat:
      v = merge::VCatOp::create(b_, l, matrixType(), ops);
      break;
    case Node::Op::TakeRows:
      v = merge::TakeRowsOp::create(b_, l, matrixType(), ops[0], ops[1]);
      break;
    case Node::Op::TakeCols:
      v = merge::TakeColsOp::create(b_, l, matrixType(), ops[0], ops[1]);
      break;
    case Node::Op::LowRank:
      v = merge::LowRankOp::create(b_, l, matrixType(), ops[0], ops[1]);
      break;
    case Node::Op::RankOf:
      v = merge::RankOfOp::create(b_, l, b_.getF32Type(), ops[0]);
      break;
    case Node::Op::Svd: {
      Type m = matrixType();
      auto svd = merge::SvdOp::create(b_, l, TypeRange{m, m, m}, ops[0],
                                      n->flag ? ops[1] : Value());
      groups_[n] = SmallVector<Value>(svd.getResults());
      v = svd.getU();
      break;
    }
    case Node::Op::Rsvd: {
      Type m = matrixType();
      Value hash = merge::NameHashOp::create(b_, l, b_.getI64Type());
      auto rsvd = merge::RsvdOp::create(
          b_, l, TypeRange{m, m, m}, ops[0], ops[1], hash,
          b_.getI64IntegerAttr(static_cast<int64_t>(n->value)),
          b_.getI64IntegerAttr(static_cast<int64_t>(n->value2)),
          b_.getI64IntegerAttr(static_cast<int64_t>(n->value3)));
      groups_[n] = SmallVector<Value>(rsvd.getResults());
      v = rsvd.getU();
      break;
    }
    case Node::Op::SvdPart:
      v = groups_[n->operands[0]][static_cast<size_t>(n->value)];
      break;
    default:
      v = n->kind == Kind::Matrix ? emitMatrixMap(n, l, ops) : emitElementwise(n, l, ops);
      break;
    }
    return values_[n] = v;
  }

  /// f64 arithmetic on the coefficients c of the combinations y = sum_i c_i x_i that the
  /// iterative methods (weiszfeld, karcher_coefficients) work on: every dot product between
  /// such combinations comes from the Gram matrix G_ij = dot(x_i, x_j).
  struct Gram {
    OpBuilder &b;
    Location l;
    std::vector<std::vector<Value>> g;

    size_t size() const { return g.size(); }
    Value constant(double v) {
      return arith::ConstantOp::create(b, l, b.getF64FloatAttr(v)).getResult();
    }
    Value add(Value x, Value y) { return arith::AddFOp::create(b, l, x, y).getResult(); }
    Value sub(Value x, Value y) { return arith::SubFOp::create(b, l, x, y).getResult(); }
    Value mul(Value x, Value y) { return arith::MulFOp::create(b, l, x, y).getResult(); }
    Value div(Value x, Value y) { return arith::DivFOp::create(b, l, x, y).getResult(); }
    /// (G d)_i: the dot product of x_i and sum_j d_j x_j.
    Value row(size_t i, ArrayRef<Value> d) {
      Value acc = constant(0);
      for (size_t j = 0; j < size(); ++j)
        acc = arith::AddFOp::create(b, l, acc, arith::MulFOp::create(b, l, g[i][j], d[j]));
      return acc;
    }
    /// c'Gd: the dot product of sum_i c_i x_i and sum_j d_j x_j.
    Value dot(ArrayRef<Value> c, ArrayRef<Value> d) {
      Value acc = constant(0);
      for (size_t i = 0; i < size(); ++i)
        for (size_t j = 0; j < size(); ++j)
          acc = arith::AddFOp::create(
              b, l, acc,
              arith::MulFOp::create(b, l, c[i], arith::MulFOp::create(b, l, g[i][j], d[j])));
      return acc;
    }
    /// sqrt(max(v, 0)): a squared norm from the Gram matrix can round below zero.
    Value sqrtPos(Value v) {
      Value positive = arith::MaximumFOp::create(b, l, v, constant(0));
      return math::SqrtOp::create(b, l, positive).getResult();
    }
    Value norm(ArrayRef<Value> c) { return sqrtPos(dot(c, c)); }
  };

  /// The Gram matrix of m tensors from its upper triangle (row by row, the first operands of a
  /// Weiszfeld or Karcher node), widened to f64: LowerKernels reads the reductions' f64 totals.
  Gram readGram(Location l, ValueRange ops, size_t m) {
    Gram g{b_, l, std::vector<std::vector<Value>>(m, std::vector<Value>(m))};
    size_t k = 0;
    for (size_t i = 0; i < m; ++i)
      for (size_t j = i; j < m; ++j)
        g.g[i][j] = g.g[j][i] = arith::ExtFOp::create(b_, l, b_.getF64Type(), ops[k++]);
    return g;
  }

  /// The operands of a Weiszfeld or Multislerp node: the Gram matrix of m tensors (as
  /// readGram), then their m weights, widened to f64.
  std::pair<Gram, SmallVector<Value>> readWeightedGram(Location l, ValueRange ops) {
    size_t m = 0;
    while (m * (m + 1) / 2 + m < ops.size())
      ++m;
    Gram g = readGram(l, ops, m);
    SmallVector<Value> w;
    for (size_t i = 0; i < m; ++i)
      w.push_back(arith::ExtFOp::create(b_, l, b_.getF64Type(), ops[m * (m + 1) / 2 + i]));
    return {std::move(g), std::move(w)};
  }

  /// Up to maxIter rounds of `round` on the coefficients, in an scf.for. `round` returns the next
  /// coefficients and whether to stop after them; once stopped, the coefficients stay (the
  /// `done` carry). Returns the final coefficients.
  SmallVector<Value>
  iterate(Location l, ArrayRef<Value> init, int64_t maxIter,
          function_ref<std::pair<SmallVector<Value>, Value>(ArrayRef<Value>)> round) {
    size_t m = init.size();
    SmallVector<Value> carriedInit(init.begin(), init.end());
    carriedInit.push_back(arith::ConstantOp::create(b_, l, b_.getBoolAttr(false)));
    Value lb = arith::ConstantIndexOp::create(b_, l, 0);
    Value ub = arith::ConstantIndexOp::create(b_, l, maxIter);
    Value step = arith::ConstantIndexOp::create(b_, l, 1);
    auto loop = scf::ForOp::create(b_, l, lb, ub, step, carriedInit);
    OpBuilder::InsertionGuard guard(b_);
    b_.setInsertionPointToStart(loop.getBody());
    auto carried = loop.getRegionIterArgs();
    SmallVector<Value> coef(carried.begin(), carried.begin() + m);
    Value done = carried[m];
    auto [next, stop] = round(coef);
    SmallVector<Value> yielded;
    for (size_t i = 0; i < m; ++i)
      yielded.push_back(arith::SelectOp::create(b_, l, done, coef[i], next[i]));
    yielded.push_back(arith::OrIOp::create(b_, l, done, stop));
    scf::YieldOp::create(b_, l, yielded);
    return SmallVector<Value>(loop.getResults().begin(), loop.getResults().begin() + m);
  }

  /// Weiszfeld's iteration on coefficients c (y = sum c_i x_i) in f64:
  /// |x_i - y|^2 = G_ii - 2 (G c)_i + c'Gc. Up to max_iter rounds; once a step
  /// |y' - y| <= tol * max(|y|, 1e-12) the coefficients stay.
  SmallVector<Value> emitWeiszfeld(const Node *n, Location l, ValueRange ops) {
    auto [g, w] = readWeightedGram(l, ops);
    size_t m = g.size();
    auto c = [&](double v) { return g.constant(v); };
    SmallVector<Value> init;
    Value wsum = w[0];
    for (size_t i = 1; i < m; ++i)
      wsum = arith::AddFOp::create(b_, l, wsum, w[i]);
    for (size_t i = 0; i < m; ++i)
      init.push_back(arith::DivFOp::create(b_, l, w[i], wsum));
    return iterate(l, init, static_cast<int64_t>(n->value3), [&](ArrayRef<Value> coef) {
      Value q = g.dot(coef, coef);
      SmallVector<Value> beta;
      Value bsum = c(0);
      for (size_t i = 0; i < m; ++i) {
        Value twice = arith::MulFOp::create(b_, l, c(2), g.row(i, coef));
        Value d2 = arith::AddFOp::create(b_, l, arith::SubFOp::create(b_, l, g.g[i][i], twice), q);
        Value d = arith::MaximumFOp::create(b_, l, g.sqrtPos(d2), c(n->value));
        beta.push_back(arith::DivFOp::create(b_, l, w[i], d));
        bsum = arith::AddFOp::create(b_, l, bsum, beta.back());
      }
      SmallVector<Value> next, diff;
      for (size_t i = 0; i < m; ++i) {
        next.push_back(arith::DivFOp::create(b_, l, beta[i], bsum));
        diff.push_back(arith::SubFOp::create(b_, l, next[i], coef[i]));
      }
      Value moved = g.norm(diff);
      Value limit = arith::MulFOp::create(
          b_, l, c(n->value2), arith::MaximumFOp::create(b_, l, g.sqrtPos(q), c(1e-12)));
      Value converged = arith::CmpFOp::create(b_, l, arith::CmpFPredicate::OLE, moved, limit);
      return std::pair{next, converged};
    });
  }

  /// mergekit's karcher_merge_tensors with equal weights, on coefficients c (mean = sum c_i x_i)
  /// in f64. Norms n_i = sqrt(G_ii); the inputs with n_i > tol are valid, each weighing
  /// w = 1 / #valid. Start at the normalized mean of the valid units x_i / n_i (the first valid
  /// unit when that mean's norm is < tol). Each round: cos_i = (G c)_i / n_i clamped to
  /// [-1, 1], theta_i = acos(cos_i); the tangent T = sum w theta_i / sin(theta_i) (u_i - cos_i
  /// mean) over the valid inputs with theta_i >= tol; stop once |T| < tol, else
  /// mean = cos|T| mean + sin|T| T / |T|, divided by its norm when that is > tol. The result is
  /// (sum_i n_i / m) * mean, and zeros when no input is valid.
  SmallVector<Value> emitKarcher(const Node *n, Location l, ValueRange ops) {
    size_t m = 0;
    while (m * (m + 1) / 2 < ops.size())
      ++m;
    Gram g = readGram(l, ops, m);
    auto c = [&](double v) { return g.constant(v); };
    auto select = [&](Value cond, Value x, Value y) {
      return arith::SelectOp::create(b_, l, cond, x, y).getResult();
    };
    auto cmp = [&](arith::CmpFPredicate p, Value x, Value y) {
      return arith::CmpFOp::create(b_, l, p, x, y).getResult();
    };
    Value tol = c(n->value), zero = c(0), one = c(1);
    SmallVector<Value> norms, valid, inv;
    Value count = zero;
    for (size_t i = 0; i < m; ++i) {
      norms.push_back(g.sqrtPos(g.g[i][i]));
      valid.push_back(cmp(arith::CmpFPredicate::OGT, norms[i], tol));
      inv.push_back(select(valid[i], g.div(one, norms[i]), zero));
      count = g.add(count, select(valid[i], one, zero));
    }
    SmallVector<Value> w, start, fallback;
    Value yes = arith::ConstantOp::create(b_, l, b_.getBoolAttr(true));
    Value seen = arith::ConstantOp::create(b_, l, b_.getBoolAttr(false)); // a valid one before i
    for (size_t i = 0; i < m; ++i) {
      w.push_back(select(valid[i], g.div(one, count), zero));
      start.push_back(g.mul(w[i], inv[i]));
      Value first = arith::AndIOp::create(b_, l, valid[i], arith::XOrIOp::create(b_, l, seen, yes));
      fallback.push_back(select(first, inv[i], zero));
      seen = arith::OrIOp::create(b_, l, seen, valid[i]);
    }
    Value startNorm = g.norm(start);
    Value degenerate = cmp(arith::CmpFPredicate::OLT, startNorm, tol);
    SmallVector<Value> init;
    for (size_t i = 0; i < m; ++i)
      init.push_back(select(degenerate, fallback[i], g.div(start[i], startNorm)));
    SmallVector<Value> mean =
        iterate(l, init, static_cast<int64_t>(n->value3), [&](ArrayRef<Value> coef) {
          SmallVector<Value> tangent;
          Value pull = zero; // sum_i k_i cos_i: T's component along the mean
          for (size_t i = 0; i < m; ++i) {
            Value cosine = arith::MinimumFOp::create(
                b_, l, arith::MaximumFOp::create(b_, l, g.mul(g.row(i, coef), inv[i]), c(-1)), one);
            Value theta = math::AcosOp::create(b_, l, cosine);
            Value used = arith::AndIOp::create(b_, l, valid[i],
                                               cmp(arith::CmpFPredicate::OGE, theta, tol));
            Value k =
                select(used, g.div(g.mul(w[i], theta), math::SinOp::create(b_, l, theta)), zero);
            tangent.push_back(g.mul(k, inv[i]));
            pull = g.add(pull, g.mul(k, cosine));
          }
          for (size_t i = 0; i < m; ++i)
            tangent[i] = g.sub(tangent[i], g.mul(pull, coef[i]));
          Value tn = g.norm(tangent);
          Value converged = cmp(arith::CmpFPredicate::OLT, tn, tol);
          Value cosT = math::CosOp::create(b_, l, tn), sinT = math::SinOp::create(b_, l, tn);
          SmallVector<Value> next;
          for (size_t i = 0; i < m; ++i)
            next.push_back(g.add(g.mul(cosT, coef[i]), g.mul(sinT, g.div(tangent[i], tn))));
          Value un = g.norm(next);
          Value renormalize = cmp(arith::CmpFPredicate::OGT, un, tol);
          for (size_t i = 0; i < m; ++i)
            next[i] = select(converged, coef[i], select(renormalize, g.div(next[i], un), next[i]));
          return std::pair{next, converged};
        });
    Value scale = zero;
    for (size_t i = 0; i < m; ++i)
      scale = g.add(scale, g.mul(c(1.0 / static_cast<double>(m)), norms[i]));
    Value anyValid = cmp(arith::CmpFPredicate::OGT, count, zero);
    SmallVector<Value> result;
    for (size_t i = 0; i < m; ++i)
      result.push_back(select(anyValid, g.mul(scale, mean[i]), zero));
    return result;
  }

  /// mergekit's multislerp on coefficients (result = sum_i c_i x_i) in f64, weights w as given.
  /// Norms n_i = sqrt(G_ii); units u_i = x_i / (n_i + eps), so the weighted mean of the units is
  /// sum a_i x_i with a_i = w_i / (n_i + eps). When its norm |a| is below eps the result is the
  /// weighted sum (c = w). Else dir = a / |a|; d_i = u_i . dir = (G dir)_i / (n_i + eps); the
  /// weighted tangent sum w_i (u_i - d_i dir) has coefficients a - (sum w_i d_i) dir (zero in
  /// exact arithmetic; mergekit's f32 leaves rounding there); tn = |tangent| + eps; the result
  /// (dir cos tn + tangent sin(tn) / tn) * sum(w_i n_i).
  SmallVector<Value> emitMultislerp(const Node *n, Location l, ValueRange ops) {
    auto [g, w] = readWeightedGram(l, ops);
    size_t m = g.size();
    auto c = [&](double v) { return g.constant(v); };
    Value eps = c(n->value);
    SmallVector<Value> norms, shifted, a;
    for (size_t i = 0; i < m; ++i) {
      norms.push_back(g.sqrtPos(g.g[i][i]));
      shifted.push_back(g.add(norms[i], eps));
      a.push_back(g.div(w[i], shifted[i]));
    }
    Value meanNorm = g.norm(a);
    SmallVector<Value> dir;
    for (size_t i = 0; i < m; ++i)
      dir.push_back(g.div(a[i], meanNorm));
    Value pull = c(0); // sum_i w_i d_i
    for (size_t i = 0; i < m; ++i)
      pull = g.add(pull, g.mul(w[i], g.div(g.row(i, dir), shifted[i])));
    SmallVector<Value> tangent;
    for (size_t i = 0; i < m; ++i)
      tangent.push_back(g.sub(a[i], g.mul(pull, dir[i])));
    Value tn = g.add(g.norm(tangent), eps);
    Value scale = c(0);
    for (size_t i = 0; i < m; ++i)
      scale = g.add(scale, g.mul(w[i], norms[i]));
    Value along = g.mul(math::CosOp::create(b_, l, tn), scale);
    Value across = g.mul(g.div(math::SinOp::create(b_, l, tn), tn), scale);
    Value degenerate = arith::CmpFOp::create(b_, l, arith::CmpFPredicate::OLT, meanNorm, eps);
    SmallVector<Value> result;
    for (size_t i = 0; i < m; ++i)
      result.push_back(arith::SelectOp::create(
          b_, l, degenerate, w[i], g.add(g.mul(dir[i], along), g.mul(tangent[i], across))));
    return result;
  }

  /// An elementwise operation: on tensors its merge op, on scalars the same op's formula
  /// (`buildScalar`, ElementMath.cpp), so both round alike.
  template <typename OpT> Value elementwise(const Node *n, Location l, ValueRange ops) {
    if (n->kind != Kind::Tensor)
      return OpT::buildScalar(b_, l, ops);
    return OpT::create(b_, l, TypeRange{tensorType()}, ops, ArrayRef<NamedAttribute>{});
  }

  /// Elementwise arithmetic on matrices (tensors among them taken as matrices): a
  /// merge.matrix_map over them whose body is the op's scalar formula, scalars used from above.
  Value emitMatrixMap(const Node *n, Location l, ArrayRef<Value> ops) {
    SmallVector<Value> inputs;
    for (auto [operand, v] : llvm::zip(n->operands, ops))
      if (operand->kind != Kind::Scalar)
        inputs.push_back(v);
    auto map = merge::MatrixMapOp::create(b_, l, matrixType(), inputs);
    {
      OpBuilder::InsertionGuard guard(b_);
      Block *body = b_.createBlock(&map.getBody());
      SmallVector<Value> args;
      for (auto [operand, v] : llvm::zip(n->operands, ops))
        args.push_back(operand->kind != Kind::Scalar ? body->addArgument(b_.getF32Type(), l) : v);
      b_.setInsertionPointToStart(body);
      merge::YieldOp::create(b_, l, emitElementwise(n, l, args));
    }
    return map.getResult();
  }

  Value emitElementwise(const Node *n, Location l, ValueRange ops) {
    switch (n->op) {
    case Node::Op::Add: return elementwise<merge::AddOp>(n, l, ops);
    case Node::Op::Sub: return elementwise<merge::SubOp>(n, l, ops);
    case Node::Op::Mul: return elementwise<merge::MulOp>(n, l, ops);
    case Node::Op::Div: return elementwise<merge::DivOp>(n, l, ops);
    case Node::Op::Neg: return elementwise<merge::NegOp>(n, l, ops);
    case Node::Op::Sum: return elementwise<merge::SumOp>(n, l, ops);
    case Node::Op::Mean: return elementwise<merge::MeanOp>(n, l, ops);
    case Node::Op::Max: return elementwise<merge::MaxOp>(n, l, ops);
    case Node::Op::Min: return elementwise<merge::MinOp>(n, l, ops);
    case Node::Op::Median: return elementwise<merge::MedianOp>(n, l, ops);
    case Node::Op::Variance: return elementwise<merge::VarianceOp>(n, l, ops);
    case Node::Op::Abs: return elementwise<merge::AbsOp>(n, l, ops);
    case Node::Op::Sign: return elementwise<merge::SignOp>(n, l, ops);
    case Node::Op::Sqrt: return elementwise<merge::SqrtOp>(n, l, ops);
    case Node::Op::Exp: return elementwise<merge::ExpOp>(n, l, ops);
    case Node::Op::Log: return elementwise<merge::LogOp>(n, l, ops);
    case Node::Op::Sin: return elementwise<merge::SinOp>(n, l, ops);
    case Node::Op::Cos: return elementwise<merge::CosOp>(n, l, ops);
    case Node::Op::Acos: return elementwise<merge::AcosOp>(n, l, ops);
    case Node::Op::Floor: return elementwise<merge::FloorOp>(n, l, ops);
    case Node::Op::Select: return elementwise<merge::SelectOp>(n, l, ops);
    case Node::Op::Cmp: {
      merge::CmpPredicate p = cmpPredicate(n->predicate);
      if (n->kind != Kind::Tensor)
        return merge::CmpOp::buildScalar(b_, l, p, ops);
      return merge::CmpOp::create(b_, l, tensorType(), p, ops[0], ops[1]);
    }
    default: llvm_unreachable("not an elementwise op");
    }
  }

  MLIRContext &ctx_;
  const sema::Program &program_;
  OpBuilder b_;
  llvm::DenseMap<const Node *, Value> values_;
  llvm::DenseMap<const Node *, SmallVector<Value>> groups_; ///< multi-result nodes
  /// Each tensor node's merge.to_matrix and each matrix node's merge.to_tensor, made once.
  llvm::DenseMap<const Node *, Value> asMatrix_, asTensor_;
};

} // namespace

OwningOpRef<ModuleOp> mergec::generateMLIR(MLIRContext &ctx, const sema::Program &program) {
  return Generator(ctx, program).run();
}
