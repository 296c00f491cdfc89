//===- TileReductions.cpp - reductions' element math apart from their sums -===//
// A reduction loop carries f64 accumulators that LLVM may not reassociate, so its vectorizer
// leaves the whole loop scalar, however heavy the element math (DARE's Philox rounds ran ~10x
// slower in the L1 rescale's reduction than in the vectorized output loop). Computing a tile
// of values first and adding them afterwards, in the same order, keeps every partial's bits
// and lets the first loop vectorize.
#include "mergec/Conversion/Passes.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace mergec {
#define GEN_PASS_DEF_MERGETILEREDUCTIONS
#include "mergec/Conversion/Passes.h.inc"
} // namespace mergec

using namespace mlir;

namespace {

/// What a reduction loop adds: for accumulator j, the op that updates it (addf or maximumf
/// of the accumulator and a value the iteration computes without the accumulators).
struct Accumulation {
  Operation *update;
  Value value;
};

/// The accumulations of `loop` in result order, or none if it is not a plain ordered
/// reduction: unit step, each iter_arg used once by its update, each update used only by the
/// yield at its own position, and no other op reading an accumulator.
std::optional<SmallVector<Accumulation>> accumulationsOf(scf::ForOp loop) {
  if (loop.getNumResults() == 0 || getConstantIntValue(loop.getStep()) != 1)
    return std::nullopt;
  auto yield = cast<scf::YieldOp>(loop.getBody()->getTerminator());
  SmallVector<Accumulation> result;
  for (auto [j, acc] : llvm::enumerate(loop.getRegionIterArgs())) {
    Operation *update = yield.getOperand(j).getDefiningOp();
    if (!update || !isa<arith::AddFOp, arith::MaximumFOp>(update) ||
        update->getBlock() != loop.getBody() || !acc.hasOneUse() ||
        acc.getUses().begin()->getOwner() != update || !update->getResult(0).hasOneUse())
      return std::nullopt;
    Value value = update->getOperand(0) == acc ? update->getOperand(1) : update->getOperand(0);
    if (value == acc || !value.getType().isF64())
      return std::nullopt;
    result.push_back({update, value});
  }
  return result;
}

struct TileReductionsPass : mergec::impl::MergeTileReductionsBase<TileReductionsPass> {
  using MergeTileReductionsBase::MergeTileReductionsBase;

  void runOnOperation() override {
    if (tile < 1) {
      getOperation().emitError("merge-tile-reductions: tile must be at least 1");
      return signalPassFailure();
    }
    // Only loops directly inside the chunk loop of a phase (merge-lower-kernels' nest): a
    // scalar loop of a method's own (an iteration count) is not a chunk's elements.
    SmallVector<scf::ForOp> loops;
    getOperation().walk([&](scf::ForOp loop) {
      if (isa_and_nonnull<scf::ParallelOp>(loop->getParentOp()))
        loops.push_back(loop);
    });
    for (scf::ForOp loop : loops)
      if (auto accumulations = accumulationsOf(loop))
        tileLoop(loop, *accumulations);
  }

  /// for %t = lb to ub step tile iter_args(acc) {
  ///   for %i = %t to min(%t + tile, ub) { buf[j, %i - %t] = value_j(%i) }
  ///   for %k = 0 to min(...) - %t iter_args(acc) { update_j(acc_j, buf[j, %k]) }
  /// }
  void tileLoop(scf::ForOp loop, ArrayRef<Accumulation> accumulations) {
    Location loc = loop.getLoc();
    auto func = loop->getParentOfType<func::FuncOp>();
    OpBuilder b(func.getBody());
    int64_t m = static_cast<int64_t>(accumulations.size());
    // Values widened from f32 (every reduction merge-lower-kernels makes) are kept as f32 and
    // widened when added: half the buffer traffic, the same f64 values.
    bool narrow = llvm::all_of(accumulations, [](const Accumulation &a) {
      auto ext = a.value.getDefiningOp<arith::ExtFOp>();
      return ext && ext.getIn().getType().isF32();
    });
    Type element = narrow ? Type(b.getF32Type()) : Type(b.getF64Type());
    // Once per call, at the entry: an alloca inside the loops would grow the stack per chunk.
    Value buffer = memref::AllocaOp::create(b, loc, MemRefType::get({m, tile}, element));

    b.setInsertionPoint(loop);
    Value tileSize = arith::ConstantIndexOp::create(b, loc, tile);
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    Value upper = loop.getUpperBound();
    auto tiles = scf::ForOp::create(b, loc, loop.getLowerBound(), upper, tileSize,
                                    loop.getInitArgs());
    b.setInsertionPointToStart(tiles.getBody());
    Value first = tiles.getInductionVar();
    Value last = arith::MinSIOp::create(b, loc, upper, arith::AddIOp::create(b, loc, first, tileSize));

    // The element computation, every op but the updates, storing what each update would add.
    auto compute = scf::ForOp::create(b, loc, first, last, one);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(compute.getBody());
      IRMapping map;
      map.map(loop.getInductionVar(), compute.getInductionVar());
      for (Operation &op : loop.getBody()->without_terminator())
        if (!llvm::any_of(accumulations, [&](const Accumulation &a) { return a.update == &op; }))
          b.clone(op, map);
      Value offset = arith::SubIOp::create(b, loc, compute.getInductionVar(), first);
      for (auto [j, a] : llvm::enumerate(accumulations)) {
        Value row = arith::ConstantIndexOp::create(b, loc, static_cast<int64_t>(j));
        Value stored = narrow ? a.value.getDefiningOp<arith::ExtFOp>().getIn() : a.value;
        memref::StoreOp::create(b, loc, map.lookupOrDefault(stored), buffer,
                                ValueRange{row, offset});
      }
      // The widenings now happen where the values are added.
      for (Operation &op : llvm::make_early_inc_range(llvm::reverse(*compute.getBody())))
        if (isOpTriviallyDead(&op))
          op.erase();
    }

    // The same values into the same accumulators in element order: the partials' bits.
    Value count = arith::SubIOp::create(b, loc, last, first);
    auto accumulate = scf::ForOp::create(b, loc, zero, count, one, tiles.getRegionIterArgs());
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(accumulate.getBody());
      SmallVector<Value> next;
      for (auto [j, a] : llvm::enumerate(accumulations)) {
        Value row = arith::ConstantIndexOp::create(b, loc, static_cast<int64_t>(j));
        Value value = memref::LoadOp::create(b, loc, buffer,
                                             ValueRange{row, accumulate.getInductionVar()});
        if (narrow)
          value = arith::ExtFOp::create(b, loc, b.getF64Type(), value);
        IRMapping map;
        map.map(loop.getRegionIterArgs()[j], accumulate.getRegionIterArgs()[j]);
        map.map(a.value, value);
        next.push_back(b.clone(*a.update, map)->getResult(0));
      }
      scf::YieldOp::create(b, loc, next);
    }
    scf::YieldOp::create(b, loc, accumulate.getResults());
    loop.replaceAllUsesWith(tiles.getResults());
    loop.erase();
  }
};

} // namespace
