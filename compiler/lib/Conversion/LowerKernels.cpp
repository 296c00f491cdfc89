//===- LowerKernels.cpp - fused rules to chunk loops over memrefs ---------===//
#include "mergec/Conversion/Passes.h"
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/Transforms/Passes.h"
#include "mlir/IR/IRMapping.h"

namespace mergec {
#define GEN_PASS_DEF_MERGELOWERKERNELS
#include "mergec/Conversion/Passes.h.inc"
} // namespace mergec

using namespace mlir;
using namespace mergec;
using namespace mergec::merge;

namespace {

/// bf16 travels as i16 bits: the widening and the rounding are integer code we control.
Type memrefElementType(Type storage) {
  if (storage.isBF16())
    return IntegerType::get(storage.getContext(), 16);
  return storage;
}

/// Widens a loaded element to f32.
Value widen(OpBuilder &b, Location loc, Value raw, Type storage) {
  if (storage.isF32())
    return raw;
  if (storage.isF16())
    return arith::ExtFOp::create(b, loc, b.getF32Type(), raw);
  // bf16: its bits are the top half of the f32 with the same value.
  Value wide = arith::ExtUIOp::create(b, loc, b.getI32Type(), raw);
  Value shifted = arith::ShLIOp::create(
      b, loc, wide, arith::ConstantIntOp::create(b, loc, b.getI32Type(), 16));
  return arith::BitcastOp::create(b, loc, b.getF32Type(), shifted);
}

/// Rounds an f32 to the storage type: round to nearest, ties to even.
Value narrow(OpBuilder &b, Location loc, Value value, Type storage) {
  if (storage.isF32())
    return value;
  if (storage.isF16())
    return arith::TruncFOp::create(b, loc, b.getF16Type(), value);
  // bf16: add 0x7FFF plus the lowest kept bit, then drop the low 16 bits. Carries roll into the
  // exponent (up to inf) exactly as IEEE rounding does. NaN keeps its sign and becomes quiet.
  Type i32 = b.getI32Type();
  auto c = [&](int64_t v) { return arith::ConstantIntOp::create(b, loc, i32, v); };
  Value bits = arith::BitcastOp::create(b, loc, i32, value);
  Value high = arith::ShRUIOp::create(b, loc, bits, c(16));
  Value lsb = arith::AndIOp::create(b, loc, high, c(1));
  Value bias = arith::AddIOp::create(b, loc, lsb, c(0x7FFF));
  Value rounded = arith::ShRUIOp::create(b, loc, arith::AddIOp::create(b, loc, bits, bias), c(16));
  Value quietNaN = arith::OrIOp::create(b, loc, high, c(0x40));
  Value isNaN = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, value, value);
  Value result = arith::SelectOp::create(b, loc, isNaN, quietNaN, rounded);
  return arith::TruncIOp::create(b, loc, b.getI16Type(), result);
}

/// ramp(v0..vk) at t = layer / (num_layers - 1), t = 0 outside the layers: with x = t * k,
/// segment j (x >= j) gives vj + (x - j) * (v(j+1) - vj); the last segment whose start x has
/// reached wins, so x = k lands on vk.
Value lowerRamp(OpBuilder &b, Location loc, ValueRange anchors, Value layer, Value numLayers) {
  auto f = [&](double v) { return arith::ConstantFloatOp::create(b, loc, b.getF32Type(), APFloat(static_cast<float>(v))); };
  if (anchors.size() == 1)
    return anchors[0];
  Value span = arith::MaximumFOp::create(b, loc, arith::SubFOp::create(b, loc, numLayers, f(1)), f(1));
  Value t = arith::DivFOp::create(b, loc, layer, span);
  Value inLayers = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGE, layer, f(0));
  t = arith::SelectOp::create(b, loc, inLayers, t, f(0));
  t = arith::MinimumFOp::create(b, loc, arith::MaximumFOp::create(b, loc, t, f(0)), f(1));
  size_t k = anchors.size() - 1;
  Value x = arith::MulFOp::create(b, loc, t, f(static_cast<double>(k)));
  Value result = anchors[0];
  for (size_t j = 0; j < k; ++j) {
    Value start = f(static_cast<double>(j));
    Value delta = arith::SubFOp::create(b, loc, anchors[j + 1], anchors[j]);
    Value along = arith::SubFOp::create(b, loc, x, start);
    Value value = arith::AddFOp::create(b, loc, anchors[j], arith::MulFOp::create(b, loc, along, delta));
    Value reached = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGE, x, start);
    result = arith::SelectOp::create(b, loc, reached, value, result);
  }
  return result;
}

struct LowerKernelsPass : mergec::impl::MergeLowerKernelsBase<LowerKernelsPass> {
  void runOnOperation() override {
    SmallVector<func::FuncOp> rules;
    getOperation().walk([&](func::FuncOp f) {
      if (f.getFunctionType().getNumResults() == 1 &&
          isa<mergec::merge::TensorType>(f.getFunctionType().getResult(0)))
        rules.push_back(f);
    });
    for (func::FuncOp f : rules)
      if (failed(lower(f)))
        return signalPassFailure();
  }

  LogicalResult lower(func::FuncOp rule) {
    auto ret = cast<func::ReturnOp>(rule.getBody().front().getTerminator());
    auto kernel = ret.getOperand(0).getDefiningOp<KernelOp>();
    if (!kernel)
      return rule.emitError("rule is not fused into a merge.kernel (run merge-fuse-elementwise)");
    auto storeAttr = rule->getAttrOfType<TypeAttr>(kStoreAttr);
    if (!storeAttr)
      return rule.emitError("rule has no output dtype (run merge-specialize-dtypes)");
    Type outStorage = storeAttr.getValue();

    SmallVector<Type> inStorage;
    SmallVector<Attribute> models;
    for (Value in : kernel.getInputs()) {
      auto input = in.getDefiningOp<InputOp>();
      if (!input || !input.getStorage())
        return kernel.emitError("kernel inputs must be merge.input ops with a storage dtype");
      inStorage.push_back(*input.getStorage());
      models.push_back(input.getModelAttr());
    }

    OpBuilder b(rule);
    Location loc = rule.getLoc();
    SmallVector<Type> argTypes;
    for (Type s : inStorage)
      argTypes.push_back(MemRefType::get({ShapedType::kDynamic}, memrefElementType(s)));
    argTypes.push_back(MemRefType::get({ShapedType::kDynamic}, memrefElementType(outStorage)));
    argTypes.append({b.getIndexType(), b.getIndexType(), b.getF32Type(), b.getF32Type()});
    auto lowered = func::FuncOp::create(b, loc, rule.getSymName(), b.getFunctionType(argTypes, {}));
    lowered->setAttr(kInputsAttr, b.getArrayAttr(models));
    for (NamedAttribute attr : rule->getAttrs())
      if (attr.getName().getValue().starts_with("merge.") && attr.getName() != kInputsAttr)
        lowered->setAttr(attr.getName(), attr.getValue());
    Block *entry = lowered.addEntryBlock();
    size_t n = inStorage.size();
    Value out = entry->getArgument(n), begin = entry->getArgument(n + 1),
          end = entry->getArgument(n + 2), layer = entry->getArgument(n + 3),
          numLayers = entry->getArgument(n + 4);

    // Scalars: everything in the rule that is not a tensor op, computed once per call.
    b.setInsertionPointToStart(entry);
    IRMapping map;
    for (Operation &op : rule.getBody().front()) {
      if (isa<InputOp, KernelOp, func::ReturnOp>(op))
        continue;
      if (auto l = dyn_cast<LayerOp>(op)) {
        map.map(l.getResult(), layer);
      } else if (auto nl = dyn_cast<NumLayersOp>(op)) {
        map.map(nl.getResult(), numLayers);
      } else if (auto ramp = dyn_cast<RampOp>(op)) {
        SmallVector<Value> anchors;
        for (Value a : ramp.getAnchors())
          anchors.push_back(map.lookupOrDefault(a));
        map.map(ramp.getResult(), lowerRamp(b, op.getLoc(), anchors, layer, numLayers));
      } else if (op.getDialect() && isa<MergeDialect>(op.getDialect())) {
        return op.emitOpError("is left outside the fused kernel");
      } else {
        b.clone(op, map);
      }
    }

    // The loop: widen each input element, the kernel body, round and store.
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    auto loop = scf::ForOp::create(b, loc, begin, end, one);
    b.setInsertionPointToStart(loop.getBody());
    Value i = loop.getInductionVar();
    Block &body = kernel.getBody().front();
    for (size_t k = 0; k < n; ++k) {
      Value raw = memref::LoadOp::create(b, loc, entry->getArgument(k), ValueRange{i});
      map.map(body.getArgument(k), widen(b, loc, raw, inStorage[k]));
    }
    for (Operation &op : body.without_terminator())
      b.clone(op, map);
    Value result = map.lookupOrDefault(cast<YieldOp>(body.getTerminator()).getValue());
    memref::StoreOp::create(b, loc, narrow(b, loc, result, outStorage), out, ValueRange{i});
    b.setInsertionPointToEnd(entry);
    func::ReturnOp::create(b, loc);

    rule.erase();
    return success();
  }
};

} // namespace
