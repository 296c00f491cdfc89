//===- LowerKernels.cpp - fused rules to chunk loops over memrefs ---------===//
#include "mergec/Conversion/LowerMatrixPhase.h"
#include "mergec/Conversion/Passes.h"
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/IR/PhaseLayout.h"
#include "mergec/Dialect/Merge/Transforms/Passes.h"
#include "mergec/Runtime/KernelABI.h"
#include "mlir/IR/IRMapping.h"
#include <limits>

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

/// Whether a reduction adds (else it takes the maximum).
bool isSumKind(ReductionKind kind) {
  switch (kind) {
  case ReductionKind::Sum:
    return true;
  case ReductionKind::Max:
    return false;
  }
  llvm_unreachable("unknown reduction");
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

    // Every phase function takes every buffer of the rule, in program order (the model tensors,
    // then the buffers phases materialize), so the runtime passes the same descriptors to each.
    SmallVector<InputOp> inputs;
    SmallVector<Value> buffers;
    for (Operation &op : rule.getBody().front()) {
      if (auto in = dyn_cast<InputOp>(op)) {
        if (!in.getStorage())
          return in.emitError("kernel inputs must be merge.input ops with a storage dtype");
        inputs.push_back(in);
      } else if (auto phase = dyn_cast<PhaseOpInterface>(op)) {
        llvm::append_range(buffers, phase.getBufferResults());
      }
    }
    PhaseLayout layout = phaseLayout(rule);
    SmallVector<Operation *> phases = layout.phases;
    phases.push_back(kernel);
    for (size_t k = 0; k < phases.size(); ++k)
      if (failed(emitPhase(rule, phases, layout, k, inputs, buffers, storeAttr.getValue())))
        return failure();
    rule.erase();
    return success();
  }

  /// One function per phase: `rule_N_phaseK` for reductions (their chunk's partial results in
  /// `result[0..]`, one per reduction), selections and row phases (their keys, one f32 per
  /// element), `rule_N` for the final kernel (the output).
  LogicalResult emitPhase(func::FuncOp rule, ArrayRef<Operation *> phases,
                          const PhaseLayout &layout, size_t k,
                          ArrayRef<InputOp> inputs, ArrayRef<Value> buffers,
                          Type outStorage) {
    Operation *phase = phases[k];
    auto reduce = dyn_cast<ReduceKernelOp>(phase);
    auto matrix = dyn_cast<MatrixPhaseOp>(phase);
    bool final = isa<KernelOp>(phase);
    OpBuilder b(rule);
    Location loc = phase->getLoc();
    SmallVector<Type> argTypes;
    SmallVector<Attribute> models;
    for (InputOp in : inputs) {
      argTypes.push_back(MemRefType::get({ShapedType::kDynamic}, memrefElementType(*in.getStorage())));
      models.push_back(in.getModelAttr());
    }
    for (size_t r = 0; r < buffers.size(); ++r)
      argTypes.push_back(MemRefType::get({ShapedType::kDynamic}, b.getF32Type()));
    Type resultElement = reduce || matrix ? Type(b.getF64Type())
                         : final ? memrefElementType(outStorage)
                                 : Type(b.getF32Type());
    argTypes.push_back(MemRefType::get({ShapedType::kDynamic}, resultElement));
    argTypes.append({b.getIndexType(), b.getIndexType(), b.getF32Type(), b.getF32Type(),
                     MemRefType::get({ShapedType::kDynamic}, b.getF64Type())});
    std::string name = rule.getSymName().str();
    if (!final)
      name += "_phase" + std::to_string(k);
    auto lowered = func::FuncOp::create(b, rule.getLoc(), name, b.getFunctionType(argTypes, {}));
    lowered->setAttr(kInputsAttr, b.getArrayAttr(models));
    for (NamedAttribute attr : rule->getAttrs())
      if (attr.getName().getValue().starts_with("merge.") && attr.getName() != kInputsAttr)
        lowered->setAttr(attr.getName(), attr.getValue());
    // For the reader of the lowered module: what the phase computes (its kind and settings).
    if (final)
      lowered->setAttr("merge.phases", b.getI64IntegerAttr(static_cast<int64_t>(phases.size())));
    else
      for (NamedAttribute attr : phase->getAttrs())
        lowered->setAttr("merge." + attr.getName().str(), attr.getValue());

    Block *entry = lowered.addEntryBlock();
    size_t n = inputs.size() + buffers.size();
    Value result = entry->getArgument(n), begin = entry->getArgument(n + 1),
          end = entry->getArgument(n + 2), layer = entry->getArgument(n + 3),
          numLayers = entry->getArgument(n + 4), scalars = entry->getArgument(n + 5);

    // Scalars: what the rule computes before this phase, earlier phases' results read back from
    // `scalars`, computed once per call.
    b.setInsertionPointToStart(entry);
    IRMapping map;
    llvm::DenseMap<Value, Value> wideResults;
    auto slot = [&](Location l, int64_t index) {
      Value i = arith::ConstantIndexOp::create(b, l, index);
      return memref::LoadOp::create(b, l, scalars, ValueRange{i}).getResult();
    };
    for (Operation &op : rule.getBody().front()) {
      if (&op == phase)
        break;
      if (isa<InputOp>(op))
        continue;
      if (auto earlier = dyn_cast<PhaseOpInterface>(op)) {
        // Its scalar results, from their slots: f64 as the runtime keeps them, f32 ones rounded.
        // (A buffer it materializes is read per element, as an input.)
        for (unsigned r = 0; r < earlier.getNumScalarResults(); ++r) {
          Value result = op.getResult(r);
          Value wide = slot(op.getLoc(), layout.slotOf(&op, r));
          if (!result.getType().isF32()) {
            map.map(result, wide);
            continue;
          }
          map.map(result, arith::TruncFOp::create(b, op.getLoc(), b.getF32Type(), wide));
          wideResults[result] = wide;
        }
      } else if (auto ext = dyn_cast<arith::ExtFOp>(op);
                 ext && ext.getType().isF64() && wideResults.count(ext.getIn())) {
        // A reduction's result widened to f64 reads the f64 total the runtime kept, not its
        // f32 rounding (Gram matrices for iterative methods need the digits).
        map.map(ext.getResult(), wideResults[ext.getIn()]);
      } else if (auto l = dyn_cast<LayerOp>(op)) {
        map.map(l.getResult(), layer);
      } else if (auto nl = dyn_cast<NumLayersOp>(op)) {
        map.map(nl.getResult(), numLayers);
      } else if (auto h = dyn_cast<NameHashOp>(op)) {
        Value wide = slot(op.getLoc(), rt::abi::kNameHashSlot);
        map.map(h.getResult(), arith::FPToSIOp::create(b, op.getLoc(), b.getI64Type(), wide));
      } else if (auto k = dyn_cast<BundleRankOp>(op)) {
        Value wide = slot(op.getLoc(), rt::abi::kBundleRankSlot);
        map.map(k.getResult(), arith::TruncFOp::create(b, op.getLoc(), b.getF32Type(), wide));
      } else if (auto c = dyn_cast<ColsOp>(op)) {
        Value wide = slot(op.getLoc(), rt::abi::kColsSlot);
        map.map(c.getResult(), arith::TruncFOp::create(b, op.getLoc(), b.getF32Type(), wide));
      } else if (auto param = dyn_cast<ParamOp>(op)) {
        // Params follow the phases' slots (KernelABI.h); f64 there, rounded once as a constant
        // of the same value would be.
        Value wide = slot(op.getLoc(), layout.firstSlot.back() + param.getIndex());
        map.map(param.getResult(), arith::TruncFOp::create(b, op.getLoc(), b.getF32Type(), wide));
      } else if (auto ne = dyn_cast<NumelOp>(op)) {
        Value wide = slot(op.getLoc(), rt::abi::kNumelSlot);
        map.map(ne.getResult(), arith::TruncFOp::create(b, op.getLoc(), b.getF32Type(), wide));
      } else if (auto ramp = dyn_cast<RampOp>(op)) {
        SmallVector<Value> anchors;
        for (Value a : ramp.getAnchors())
          anchors.push_back(map.lookupOrDefault(a));
        map.map(ramp.getResult(), lowerRamp(b, op.getLoc(), anchors, layer, numLayers));
      } else if (op.getDialect() && isa<MergeDialect>(op.getDialect())) {
        return op.emitOpError("is left outside the fused kernels");
      } else {
        b.clone(op, map);
      }
    }

    // The loop: widen each input element, the kernel body, then store (final: rounded to the
    // output dtype; selections and row phases: the f32 key) or accumulate in f64 (reduction).
    auto asPhase = dyn_cast<PhaseOpInterface>(phase);
    OperandRange phaseInputs =
        asPhase ? asPhase.getPhaseInputs() : cast<KernelOp>(phase).getInputs();
    Region &bodyRegion = asPhase ? asPhase.getPhaseBody() : cast<KernelOp>(phase).getBody();
    Block &body = bodyRegion.front();
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    // A row phase's buffer of one value per row (sum, max) is read at row i / cols; the row
    // length from its slot, once per call.
    Value cols;
    for (Value operand : phaseInputs)
      if (auto row = operand.getDefiningOp<RowKernelOp>(); row && row.isPerRow() && !cols) {
        Value wide = slot(loc, rt::abi::kColsSlot);
        cols = arith::IndexCastOp::create(
            b, loc, b.getIndexType(), arith::FPToSIOp::create(b, loc, b.getI64Type(), wide));
      }
    auto loadElements = [&](OpBuilder &lb, Value i) {
      Value row; // i / cols, once per element for every per-row buffer
      for (auto [k2, operand] : llvm::enumerate(phaseInputs)) {
        Value raw, element;
        if (auto in = operand.getDefiningOp<InputOp>()) {
          size_t index = std::find(inputs.begin(), inputs.end(), in) - inputs.begin();
          raw = memref::LoadOp::create(lb, loc, entry->getArgument(index), ValueRange{i});
          element = widen(lb, loc, raw, *in.getStorage());
        } else {
          size_t index = inputs.size() + (llvm::find(buffers, operand) - buffers.begin());
          Value at = i;
          if (auto perRow = operand.getDefiningOp<RowKernelOp>(); perRow && perRow.isPerRow()) {
            if (!row)
              row = arith::DivUIOp::create(lb, loc, i, cols);
            at = row;
          }
          element = memref::LoadOp::create(lb, loc, entry->getArgument(index), ValueRange{at});
        }
        map.map(body.getArgument(k2), element);
      }
      for (Operation &op : body.without_terminator()) {
        if (auto idx = dyn_cast<ElementIndexOp>(op)) {
          map.map(idx.getResult(), arith::IndexCastOp::create(lb, loc, lb.getI64Type(), i));
          continue;
        }
        lb.clone(op, map);
      }
      SmallVector<Value> values;
      for (Value v : cast<YieldOp>(body.getTerminator()).getValues())
        values.push_back(map.lookupOrDefault(v));
      return values;
    };
    // The target-neutral loop nest: [begin, end) in chunks of kChunkElements, the chunks
    // independent (scf.parallel), each chunk's elements in order (scf.for). A reduction's
    // chunk c writes its partials at result[c * m + j], so how a target spreads the chunks
    // (a CPU thread pool calling one chunk at a time, one GPU block each) never changes which
    // elements a partial holds or in which order they were added; the runtime combines the
    // partials in chunk order.
    if (matrix) {
      // Not a loop nest: a host program run once per tensor (LowerMatrixPhase.cpp).
      lowered->setAttr(kHostAttr, b.getUnitAttr());
      MatrixPhaseArgs args{begin, end, scalars, result, {}, loadElements};
      for (Value buffer : matrix.getBufferResults())
        args.buffers.push_back(
            entry->getArgument(inputs.size() + (llvm::find(buffers, buffer) - buffers.begin())));
      return lowerMatrixPhase(b, lowered, matrix, map, args);
    }
    Value chunkSize = arith::ConstantIndexOp::create(b, loc, rt::abi::kChunkElements);
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value chunks = arith::CeilDivSIOp::create(b, loc, arith::SubIOp::create(b, loc, end, begin),
                                              chunkSize);
    auto overChunks = scf::ParallelOp::create(b, loc, ValueRange{zero}, ValueRange{chunks},
                                              ValueRange{one});
    b.setInsertionPoint(overChunks.getBody()->getTerminator());
    Value c = overChunks.getInductionVars()[0];
    Value chunkBegin =
        arith::AddIOp::create(b, loc, begin, arith::MulIOp::create(b, loc, c, chunkSize));
    Value chunkEnd = arith::MinSIOp::create(b, loc, end,
                                           arith::AddIOp::create(b, loc, chunkBegin, chunkSize));
    if (!reduce) {
      auto loop = scf::ForOp::create(b, loc, chunkBegin, chunkEnd, one);
      b.setInsertionPointToStart(loop.getBody());
      Value value = loadElements(b, loop.getInductionVar())[0];
      if (final)
        value = narrow(b, loc, value, outStorage);
      memref::StoreOp::create(b, loc, value, result, ValueRange{loop.getInductionVar()});
    } else {
      // One f64 accumulator per reduction, all in one loop: the inputs are read once.
      SmallVector<bool> isSum;
      SmallVector<Value> inits;
      for (ReductionKind kind : reduce.getKinds()) {
        isSum.push_back(isSumKind(kind));
        inits.push_back(arith::ConstantFloatOp::create(
            b, loc, b.getF64Type(),
            APFloat(isSum.back() ? 0.0 : -std::numeric_limits<double>::infinity())));
      }
      auto loop = scf::ForOp::create(b, loc, chunkBegin, chunkEnd, one, inits);
      b.setInsertionPointToStart(loop.getBody());
      SmallVector<Value> values = loadElements(b, loop.getInductionVar());
      SmallVector<Value> next;
      for (auto [j, value] : llvm::enumerate(values)) {
        Value wide = arith::ExtFOp::create(b, loc, b.getF64Type(), value);
        Value acc = loop.getRegionIterArgs()[j];
        next.push_back(isSum[j] ? Value(arith::AddFOp::create(b, loc, acc, wide))
                                : Value(arith::MaximumFOp::create(b, loc, acc, wide)));
      }
      scf::YieldOp::create(b, loc, next);
      b.setInsertionPointAfter(loop);
      Value m = arith::ConstantIndexOp::create(b, loc, static_cast<int64_t>(values.size()));
      Value first = arith::MulIOp::create(b, loc, c, m);
      for (unsigned j = 0; j < values.size(); ++j) {
        Value slot = arith::AddIOp::create(b, loc, first, arith::ConstantIndexOp::create(b, loc, j));
        memref::StoreOp::create(b, loc, loop.getResult(j), result, ValueRange{slot});
      }
    }
    b.setInsertionPointToEnd(entry);
    func::ReturnOp::create(b, loc);
    return success();
  }
};

} // namespace
