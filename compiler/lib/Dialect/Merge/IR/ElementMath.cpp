//===- ElementMath.cpp - one element of each merge op, in arith/math ------===//
#include "mergec/Dialect/Merge/IR/ElementMath.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;

namespace mergec::merge {

namespace {

Value f32(OpBuilder &b, Location loc, double v) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(static_cast<float>(v)));
}

/// Sums left to right, as the language defines (and as numpy's sum over a short axis does).
Value sum(OpBuilder &b, Location loc, ValueRange xs) {
  Value acc = xs[0];
  for (Value x : xs.drop_front())
    acc = arith::AddFOp::create(b, loc, acc, x);
  return acc;
}

/// Odd-even transposition sort: k rounds of compare-exchange, branch-free, so the kernel stays
/// one vectorizable loop. Fine for the handful of models a merge takes.
SmallVector<Value> sortNetwork(OpBuilder &b, Location loc, ValueRange xs) {
  SmallVector<Value> v(xs.begin(), xs.end());
  for (size_t round = 0; round < v.size(); ++round)
    for (size_t i = round % 2; i + 1 < v.size(); i += 2) {
      Value lo = arith::MinimumFOp::create(b, loc, v[i], v[i + 1]);
      Value hi = arith::MaximumFOp::create(b, loc, v[i], v[i + 1]);
      v[i] = lo;
      v[i + 1] = hi;
    }
  return v;
}

arith::CmpFPredicate predicateOf(StringRef p) {
  if (p == "lt") return arith::CmpFPredicate::OLT;
  if (p == "gt") return arith::CmpFPredicate::OGT;
  if (p == "le") return arith::CmpFPredicate::OLE;
  if (p == "ge") return arith::CmpFPredicate::OGE;
  if (p == "eq") return arith::CmpFPredicate::OEQ;
  return arith::CmpFPredicate::UNE;
}

} // namespace

Value buildElementOp(OpBuilder &b, Location loc, ElementOp op, ValueRange xs, StringRef predicate) {
  switch (op) {
  case ElementOp::Add:
    return arith::AddFOp::create(b, loc, xs[0], xs[1]);
  case ElementOp::Sub:
    return arith::SubFOp::create(b, loc, xs[0], xs[1]);
  case ElementOp::Mul:
    return arith::MulFOp::create(b, loc, xs[0], xs[1]);
  case ElementOp::Div:
    return arith::DivFOp::create(b, loc, xs[0], xs[1]);
  case ElementOp::Neg:
    return arith::NegFOp::create(b, loc, xs[0]);
  case ElementOp::Sum:
    return sum(b, loc, xs);
  case ElementOp::Mean:
    return arith::DivFOp::create(b, loc, sum(b, loc, xs), f32(b, loc, xs.size()));
  case ElementOp::Max: {
    Value acc = xs[0];
    for (Value x : xs.drop_front())
      acc = arith::MaximumFOp::create(b, loc, acc, x);
    return acc;
  }
  case ElementOp::Min: {
    Value acc = xs[0];
    for (Value x : xs.drop_front())
      acc = arith::MinimumFOp::create(b, loc, acc, x);
    return acc;
  }
  case ElementOp::Median: {
    SmallVector<Value> sorted = sortNetwork(b, loc, xs);
    size_t k = sorted.size();
    if (k % 2)
      return sorted[k / 2];
    Value pair = arith::AddFOp::create(b, loc, sorted[k / 2 - 1], sorted[k / 2]);
    return arith::MulFOp::create(b, loc, pair, f32(b, loc, 0.5));
  }
  case ElementOp::Abs:
    return math::AbsFOp::create(b, loc, xs[0]);
  case ElementOp::Sign: {
    Value zero = f32(b, loc, 0);
    Value positive = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, xs[0], zero);
    Value negative = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, xs[0], zero);
    Value minusOrSelf = arith::SelectOp::create(b, loc, negative, f32(b, loc, -1), xs[0]);
    return arith::SelectOp::create(b, loc, positive, f32(b, loc, 1), minusOrSelf);
  }
  case ElementOp::Sqrt:
    return math::SqrtOp::create(b, loc, xs[0]);
  case ElementOp::Exp:
    return math::ExpOp::create(b, loc, xs[0]);
  case ElementOp::Cmp: {
    Value holds = arith::CmpFOp::create(b, loc, predicateOf(predicate), xs[0], xs[1]);
    return arith::SelectOp::create(b, loc, holds, f32(b, loc, 1), f32(b, loc, 0));
  }
  case ElementOp::Select: {
    Value set = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, xs[0], f32(b, loc, 0));
    return arith::SelectOp::create(b, loc, set, xs[1], xs[2]);
  }
  }
  llvm_unreachable("unknown element op");
}

} // namespace mergec::merge
