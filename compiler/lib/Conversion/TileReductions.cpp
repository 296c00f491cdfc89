//===- TileReductions.cpp - a chunk's reduction in the GPU block's order ---===//
// A reduction loop carries f64 accumulators that LLVM may not reassociate, so its vectorizer
// leaves the whole loop scalar, however heavy the element math, and each element waits on the
// previous add (~4 cycles). A chunk's reduction is defined instead as the GPU computes it
// (KernelsToGPU): lane l of `lanes` (the block's threads) accumulates elements l, l + lanes,
// ... in order from the loop's initial value, and the lanes combine by the block's tree. On the
// CPU that is a tile of values computed and added lane by lane (lanes are independent, so it
// vectorizes), then the tree: the same bits as the GPU, at the speed of the loads.
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

/// Above this many ops of element math a value added (f32 math), a tile's values are stored
/// in a buffer and added in a loop of their own (TileReductionsPass::tileLoop says why).
constexpr int64_t kMaxOpsPerValueInOneLoop = 12;

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
    if (lanes < 1 || (lanes & (lanes - 1)) != 0) {
      getOperation().emitError("merge-tile-reductions: lanes must be a power of two");
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

  /// partials[j, t] = init_j for every lane t
  /// for %t = lb to ub step lanes {
  ///   for %i = %t to min(%t + lanes, ub) { buf[j, %i - %t] = value_j(%i) }
  ///   for %k = 0 to min(...) - %t { partials[j, %k] = update_j(partials[j, %k], buf[j, %k]) }
  /// }
  /// for %s = lanes/2, ..., 1: for %l < %s { partials[j, %l] = update_j(partials[j, %l],
  ///                                                                    partials[j, %l + %s]) }
  /// result_j = partials[j, 0]
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
    // Computed and added in one loop, or computed into a tile buffer first. One loop saves
    // the buffer's store and load of every value, but the vectorizer gives it the f64 adds'
    // width: half as many lanes as the f32 math alone. So one loop where the math is light
    // or f64 anyway, the buffer where f32 math is heavy per value added. Measured (AOT
    // executables, 100M, user time or the phase's perf samples): 4-8 ops a value (the
    // cosines of model_stock, geomedian, karcher, multislerp and nuslerp, DELLA's L1 norms)
    // ran 10-30 % faster in one loop; 22 (sce's) and 43 (DELLA's kept L1 norms, Philox) ran
    // 13 % and 48 % slower.
    int64_t mathOps = -m; // the updates are not math of the values
    for (Operation &op : loop.getBody()->without_terminator())
      op.walk([&](Operation *inner) {
        mathOps += static_cast<int64_t>(inner->getNumRegions() == 0 &&
                                        !inner->hasTrait<OpTrait::IsTerminator>());
      });
    bool oneLoop = !narrow || mathOps <= kMaxOpsPerValueInOneLoop * m;
    Type element = narrow ? Type(b.getF32Type()) : Type(b.getF64Type());
    // Once per call, at the entry: an alloca inside the loops would grow the stack per chunk.
    Value buffer = oneLoop ? Value()
                           : memref::AllocaOp::create(b, loc, MemRefType::get({m, lanes}, element))
                                 .getResult();
    Value partials = memref::AllocaOp::create(b, loc, MemRefType::get({m, lanes}, b.getF64Type()));

    b.setInsertionPoint(loop);
    Value laneCount = arith::ConstantIndexOp::create(b, loc, lanes);
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    Value upper = loop.getUpperBound();
    auto rowOf = [&](size_t j) {
      return arith::ConstantIndexOp::create(b, loc, static_cast<int64_t>(j)).getResult();
    };
    // update_j(partials[j, at], value) stored back to partials[j, at], for every j.
    auto updateAll = [&](Value at, llvm::function_ref<Value(size_t)> valueOf) {
      for (auto [j, a] : llvm::enumerate(accumulations)) {
        Value row = rowOf(j);
        Value acc = memref::LoadOp::create(b, loc, partials, ValueRange{row, at});
        IRMapping map;
        map.map(loop.getRegionIterArgs()[j], acc);
        map.map(a.value, valueOf(j));
        memref::StoreOp::create(b, loc, b.clone(*a.update, map)->getResult(0), partials,
                                ValueRange{row, at});
      }
    };

    // Every lane starts where the loop's accumulators did (a GPU thread's loop does).
    auto start = scf::ForOp::create(b, loc, zero, laneCount, one);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(start.getBody());
      for (size_t j = 0; j < accumulations.size(); ++j)
        memref::StoreOp::create(b, loc, loop.getInitArgs()[j], partials,
                                ValueRange{rowOf(j), start.getInductionVar()});
    }

    auto tiles = scf::ForOp::create(b, loc, loop.getLowerBound(), upper, laneCount);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(tiles.getBody());
      Value first = tiles.getInductionVar();
      Value last =
          arith::MinSIOp::create(b, loc, upper, arith::AddIOp::create(b, loc, first, laneCount));

      // The element computation, every op but the updates; then element first + k updates
      // lane k, or what each update would add is stored for the loop below.
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
        if (oneLoop) {
          updateAll(offset, [&](size_t j) { return map.lookupOrDefault(accumulations[j].value); });
        } else {
          for (auto [j, a] : llvm::enumerate(accumulations)) {
            Value stored = narrow ? a.value.getDefiningOp<arith::ExtFOp>().getIn() : a.value;
            memref::StoreOp::create(b, loc, map.lookupOrDefault(stored), buffer,
                                    ValueRange{rowOf(j), offset});
          }
          // The widenings now happen where the values are added.
          for (Operation &op : llvm::make_early_inc_range(llvm::reverse(*compute.getBody())))
            if (isOpTriviallyDead(&op))
              op.erase();
        }
      }

      // Element first + k into lane k: no value carried from one k to the next, so this loop
      // vectorizes too.
      if (!oneLoop) {
        Value count = arith::SubIOp::create(b, loc, last, first);
        auto accumulate = scf::ForOp::create(b, loc, zero, count, one);
        OpBuilder::InsertionGuard inner(b);
        b.setInsertionPointToStart(accumulate.getBody());
        Value k = accumulate.getInductionVar();
        updateAll(k, [&](size_t j) -> Value {
          Value value = memref::LoadOp::create(b, loc, buffer, ValueRange{rowOf(j), k});
          if (narrow)
            value = arith::ExtFOp::create(b, loc, b.getF64Type(), value);
          return value;
        });
      }
    }

    // The lanes combined by the GPU block's tree: halving strides, lane l taking l + stride.
    for (int64_t stride = lanes / 2; stride >= 1; stride /= 2) {
      Value s = arith::ConstantIndexOp::create(b, loc, stride);
      auto level = scf::ForOp::create(b, loc, zero, s, one);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(level.getBody());
      Value l = level.getInductionVar();
      Value other = arith::AddIOp::create(b, loc, l, s);
      updateAll(l, [&](size_t j) -> Value {
        return memref::LoadOp::create(b, loc, partials, ValueRange{rowOf(j), other});
      });
    }
    SmallVector<Value> results;
    for (size_t j = 0; j < accumulations.size(); ++j)
      results.push_back(memref::LoadOp::create(b, loc, partials, ValueRange{rowOf(j), zero}));
    loop.replaceAllUsesWith(results);
    loop.erase();
  }
};

} // namespace
