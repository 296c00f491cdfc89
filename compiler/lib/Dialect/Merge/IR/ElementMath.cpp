//===- ElementMath.cpp - one element of each merge op, in arith/math ------===//
// The per-element meaning of every elementwise merge op, written once: `buildScalar` is the
// op's formula on f32 values and `buildElement` (ElementwiseOpInterface) its computation
// inside a kernel body. merge-fuse-elementwise builds kernel bodies through the interface and
// MLIRGen calls `buildScalar` for scalar expressions, so a scalar and a tensor computation of
// the same formula round identically.
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;
using namespace mergec::merge;

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

/// The language's comparisons are ordered (false with a NaN), except `!=`, which holds.
arith::CmpFPredicate predicateOf(CmpPredicate p) {
  switch (p) {
  case CmpPredicate::LT:
    return arith::CmpFPredicate::OLT;
  case CmpPredicate::GT:
    return arith::CmpFPredicate::OGT;
  case CmpPredicate::LE:
    return arith::CmpFPredicate::OLE;
  case CmpPredicate::GE:
    return arith::CmpFPredicate::OGE;
  case CmpPredicate::EQ:
    return arith::CmpFPredicate::OEQ;
  case CmpPredicate::NE:
    return arith::CmpFPredicate::UNE;
  }
  llvm_unreachable("unknown comparison");
}

/// 1.0 where a Philox4x32-10 draw keyed by (seed, nameHash) is below `p` (f32), else 0.0.
/// `nameHash` and `index` are i64. One Philox block gives four words: stream s reads word
/// s mod 4 of the block at counter (index, s div 4), so the masks of list positions 0-3 come
/// from one evaluation. The rounds below depend only on (index, s div 4, seed, nameHash), so
/// the IR for streams of one block is identical and CSE leaves one evaluation per element
/// inside a fused kernel body.
Value buildBernoulli(OpBuilder &b, Location loc, Value p, Value nameHash, Value index,
                     uint64_t seed, uint64_t stream) {
  Type i32 = b.getI32Type(), i64 = b.getI64Type();
  auto c32 = [&](uint32_t v) {
    return arith::ConstantIntOp::create(b, loc, i32, static_cast<int32_t>(v));
  };
  auto c64 = [&](int64_t v) { return arith::ConstantIntOp::create(b, loc, i64, v); };
  // Counter (index low, index high, stream div 4, 0); key (seed, name hash).
  Value x[4] = {
      arith::TruncIOp::create(b, loc, i32, index),
      arith::TruncIOp::create(b, loc, i32, arith::ShRUIOp::create(b, loc, index, c64(32))),
      c32(static_cast<uint32_t>(stream / 4)), c32(0)};
  Value k0 = c32(static_cast<uint32_t>(seed));
  Value k1 = arith::TruncIOp::create(b, loc, i32, nameHash);
  // Ten rounds; the key bumps between rounds (Random123's philox4x32_R).
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 = arith::AddIOp::create(b, loc, k0, c32(0x9E3779B9u));
      k1 = arith::AddIOp::create(b, loc, k1, c32(0xBB67AE85u));
    }
    auto mulhilo = arith::MulUIExtendedOp::create(b, loc, c32(0xD2511F53u), x[0]);
    auto mulhilo2 = arith::MulUIExtendedOp::create(b, loc, c32(0xCD9E8D57u), x[2]);
    Value hi0 = mulhilo.getHigh(), lo0 = mulhilo.getLow();
    Value hi1 = mulhilo2.getHigh(), lo1 = mulhilo2.getLow();
    Value n0 = arith::XOrIOp::create(b, loc, arith::XOrIOp::create(b, loc, hi1, x[1]), k0);
    Value n2 = arith::XOrIOp::create(b, loc, arith::XOrIOp::create(b, loc, hi0, x[3]), k1);
    x[0] = n0;
    x[1] = lo1;
    x[2] = n2;
    x[3] = lo0;
  }
  // u = (word >> 8) * 2^-24: 24 random bits, exact in f32, in [0, 1).
  Value top = arith::ShRUIOp::create(b, loc, x[stream % 4], c32(8));
  Value u = arith::MulFOp::create(b, loc, arith::UIToFPOp::create(b, loc, b.getF32Type(), top),
                                  f32(b, loc, 1.0 / 16777216.0));
  Value keep = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, u, p);
  return arith::SelectOp::create(b, loc, keep, f32(b, loc, 1), f32(b, loc, 0));
}

/// 1.0 where |x|'s rank lies in the band between two boundaries found by a select phase:
/// (bits, flat index) pairs in f64; `index` is the element's flat index (i64).
Value buildRankBand(OpBuilder &b, Location loc, Value x, Value hiBits, Value hiIndex,
                    Value loBits, Value loIndex, Value index) {
  Type i32 = b.getI32Type(), i64 = b.getI64Type();
  // |x| as its bits: for non-negative floats (NaN included) the integer order is the float order.
  Value key = arith::BitcastOp::create(b, loc, i32, x);
  Value magnitude = arith::ConstantIntOp::create(b, loc, i32, 0x7FFFFFFF);
  key = arith::AndIOp::create(b, loc, key, magnitude);
  auto below = [&](Value tBits, Value tIndex) {
    // The key compares in 32 bits (twice the lanes of 64): a boundary's bits are a magnitude
    // key (below 2^31) or 2^32 - 1 with index -1 (nothing below), which clamped to 2^31 - 1
    // no key exceeds, and an equal key there is not below either: no index is <= -1. (The
    // clamp and conversions depend on the phase's scalars only: hoisted out of the loop.)
    Value wide = arith::FPToSIOp::create(b, loc, i64, tBits);
    wide = arith::MinSIOp::create(b, loc, wide, arith::ConstantIntOp::create(b, loc, i64, 0x7FFFFFFF));
    Value t = arith::TruncIOp::create(b, loc, i32, wide);
    Value c = arith::FPToSIOp::create(b, loc, i64, tIndex);
    Value greater = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, key, t);
    Value equal = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, key, t);
    Value early = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle, index, c);
    return arith::OrIOp::create(b, loc, greater, arith::AndIOp::create(b, loc, equal, early));
  };
  Value inBand = arith::AndIOp::create(
      b, loc, below(loBits, loIndex),
      arith::XOrIOp::create(b, loc, below(hiBits, hiIndex),
                            arith::ConstantOp::create(b, loc, b.getBoolAttr(true))));
  return arith::SelectOp::create(b, loc, inBand, f32(b, loc, 1), f32(b, loc, 0));
}

} // namespace

//===----------------------------------------------------------------------===//
// Formulas on f32 values
//===----------------------------------------------------------------------===//

Value AddOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  return arith::AddFOp::create(b, loc, xs[0], xs[1]);
}

Value SubOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  return arith::SubFOp::create(b, loc, xs[0], xs[1]);
}

Value MulOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  return arith::MulFOp::create(b, loc, xs[0], xs[1]);
}

Value DivOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  return arith::DivFOp::create(b, loc, xs[0], xs[1]);
}

Value NegOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  return arith::NegFOp::create(b, loc, xs[0]);
}

Value SumOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) { return sum(b, loc, xs); }

Value MeanOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  return arith::DivFOp::create(b, loc, sum(b, loc, xs), f32(b, loc, xs.size()));
}

Value MaxOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  Value acc = xs[0];
  for (Value x : xs.drop_front())
    acc = arith::MaximumFOp::create(b, loc, acc, x);
  return acc;
}

Value MinOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  Value acc = xs[0];
  for (Value x : xs.drop_front())
    acc = arith::MinimumFOp::create(b, loc, acc, x);
  return acc;
}

Value MedianOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  SmallVector<Value> sorted = sortNetwork(b, loc, xs);
  size_t k = sorted.size();
  if (k % 2)
    return sorted[k / 2];
  Value pair = arith::AddFOp::create(b, loc, sorted[k / 2 - 1], sorted[k / 2]);
  return arith::MulFOp::create(b, loc, pair, f32(b, loc, 0.5));
}

Value VarianceOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  // Welford in f64, in list order, as torch.var's CPU kernel: bit-identical to
  // torch.var(xs, dim=0, unbiased=False) on f32 inputs. Widening f32 to f64 is exact.
  Type f64 = b.getF64Type();
  auto c64 = [&](double v) { return arith::ConstantOp::create(b, loc, b.getF64FloatAttr(v)); };
  Value mean = c64(0), m2 = c64(0);
  for (auto [k, x] : llvm::enumerate(xs)) {
    Value wide = arith::ExtFOp::create(b, loc, f64, x);
    Value d = arith::SubFOp::create(b, loc, wide, mean);
    mean = arith::AddFOp::create(b, loc, mean,
                                 arith::DivFOp::create(b, loc, d, c64(double(k + 1))));
    Value d2 = arith::SubFOp::create(b, loc, wide, mean);
    m2 = arith::AddFOp::create(b, loc, m2, arith::MulFOp::create(b, loc, d, d2));
  }
  Value var = arith::DivFOp::create(b, loc, m2, c64(double(xs.size())));
  return arith::TruncFOp::create(b, loc, b.getF32Type(), var);
}

Value AbsOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  return math::AbsFOp::create(b, loc, xs[0]);
}

Value SignOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  Value zero = f32(b, loc, 0);
  Value positive = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, xs[0], zero);
  Value negative = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, xs[0], zero);
  Value minusOrSelf = arith::SelectOp::create(b, loc, negative, f32(b, loc, -1), xs[0]);
  return arith::SelectOp::create(b, loc, positive, f32(b, loc, 1), minusOrSelf);
}

// sqrt, exp, log, sin, cos, acos and floor are one math op each: their buildScalar is generated
// from MergeOps.td (Merge_MathUnaryOp).

Value CmpOp::buildScalar(OpBuilder &b, Location loc, CmpPredicate predicate, ValueRange xs) {
  Value holds = arith::CmpFOp::create(b, loc, predicateOf(predicate), xs[0], xs[1]);
  return arith::SelectOp::create(b, loc, holds, f32(b, loc, 1), f32(b, loc, 0));
}

Value SelectOp::buildScalar(OpBuilder &b, Location loc, ValueRange xs) {
  Value set = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, xs[0], f32(b, loc, 0));
  return arith::SelectOp::create(b, loc, set, xs[1], xs[2]);
}

//===----------------------------------------------------------------------===//
// Element computations that are not a formula on scalars alone
//===----------------------------------------------------------------------===//

/// The predicate is an attribute of the op, not an operand.
Value CmpOp::buildElement(OpBuilder &b, ValueRange xs, function_ref<Value()>) {
  return buildScalar(b, getLoc(), getPredicate(), xs);
}

/// Every element is the scalar.
Value SplatOp::buildElement(OpBuilder &, ValueRange xs, function_ref<Value()>) {
  return xs[0];
}

/// The draw depends on where the element is: the counter is its flat index.
Value BernoulliOp::buildElement(OpBuilder &b, ValueRange xs,
                                function_ref<Value()> elementIndex) {
  return buildBernoulli(b, getLoc(), xs[0], xs[1], elementIndex(), getSeed(), getStream());
}

/// Ties at a boundary are decided by the element's flat index.
Value RankBandOp::buildElement(OpBuilder &b, ValueRange xs, function_ref<Value()> elementIndex) {
  return buildRankBand(b, getLoc(), xs[0], xs[1], xs[2], xs[3], xs[4], elementIndex());
}
