//===- SplitRowLoops.cpp - element loops that read per-row values, by rows -===//
// A row phase's sum or maximum is one value per row (merge.row_kernel's isPerRow), which a
// later phase reads at row i / cols (merge-lower-kernels). On the GPU that division is one of
// many threads' instructions; on the CPU a 64-bit division per element costs more than the
// element's whole computation and keeps the loop scalar. Here an element loop whose body
// divides its induction variable by a value fixed for the loop becomes a loop over the rows
// it touches around a loop over each row's part of the range, the quotient replaced by the
// row; loads at the row from memrefs the function never stores to move out of the inner loop.
// The elements are visited in the same order, so every value and its rounding are the same.
#include "mergec/Conversion/Passes.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"

namespace mergec {
#define GEN_PASS_DEF_MERGESPLITROWLOOPS
#include "mergec/Conversion/Passes.h.inc"
} // namespace mergec

using namespace mlir;

namespace {

/// The division of `loop`'s induction variable by a divisor defined outside the loop, if
/// the body has exactly one (merge-lower-kernels emits one per element and CSE keeps one).
arith::DivUIOp rowDivision(scf::ForOp loop) {
  arith::DivUIOp found;
  int count = 0;
  for (Operation *user : loop.getInductionVar().getUsers()) {
    auto div = dyn_cast<arith::DivUIOp>(user);
    if (!div || div.getLhs() != loop.getInductionVar() || div->getBlock() != loop.getBody() ||
        loop.getRegion().isAncestor(div.getRhs().getParentRegion()))
      continue;
    found = div;
    ++count;
  }
  return count == 1 ? found : arith::DivUIOp();
}

struct SplitRowLoopsPass : mergec::impl::MergeSplitRowLoopsBase<SplitRowLoopsPass> {
  void runOnOperation() override {
    SmallVector<std::pair<scf::ForOp, arith::DivUIOp>> loops;
    getOperation().walk([&](scf::ForOp loop) {
      if (loop.getNumResults() != 0 || getConstantIntValue(loop.getStep()) != 1)
        return;
      if (auto div = rowDivision(loop))
        loops.push_back({loop, div});
    });
    for (auto [loop, div] : loops)
      split(loop, div);
  }

  /// for %i = lb to ub { ... %q = divui %i, %c ... }
  ///   => for %r = lb / c to ceil(ub / c) {
  ///        <loads at %r of never-stored memrefs>
  ///        for %i = max(lb, %r * c) to min(ub, %r * c + c) { ... %r in place of %q ... }
  ///      }
  void split(scf::ForOp loop, arith::DivUIOp div) {
    Location loc = loop.getLoc();
    OpBuilder b(loop);
    Value cols = div.getRhs(), lb = loop.getLowerBound(), ub = loop.getUpperBound();
    Value firstRow = arith::DivUIOp::create(b, loc, lb, cols);
    Value endRow = arith::CeilDivUIOp::create(b, loc, ub, cols);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    auto rows = scf::ForOp::create(b, loc, firstRow, endRow, one);
    b.setInsertionPointToStart(rows.getBody());
    Value row = rows.getInductionVar();
    Value rowBegin = arith::MulIOp::create(b, loc, row, cols);
    Value begin = arith::MaxUIOp::create(b, loc, lb, rowBegin);
    Value end = arith::MinUIOp::create(b, loc, ub, arith::AddIOp::create(b, loc, rowBegin, cols));
    auto inner = scf::ForOp::create(b, loc, begin, end, one);
    // The old body moves into the inner loop, its induction variable the inner one's.
    Block *body = loop.getBody();
    inner.getBody()->getOperations().splice(inner.getBody()->begin(), body->getOperations(),
                                            body->begin(), std::prev(body->end()));
    loop.getInductionVar().replaceAllUsesWith(inner.getInductionVar());
    div.getResult().replaceAllUsesWith(row);
    div->erase();
    // A load at the row from a memref the function only reads is the same for the whole row.
    auto func = rows->getParentOfType<FunctionOpInterface>();
    SmallVector<memref::LoadOp> hoist;
    for (Operation &op : inner.getBody()->without_terminator())
      if (auto load = dyn_cast<memref::LoadOp>(op);
          load && load.getIndices().size() == 1 && load.getIndices()[0] == row &&
          !storedTo(func, load.getMemRef()))
        hoist.push_back(load);
    for (memref::LoadOp load : hoist)
      load->moveBefore(inner);
    loop.erase();
  }

  static bool storedTo(FunctionOpInterface func, Value memref) {
    bool stored = false;
    func.walk([&](memref::StoreOp store) { stored = stored || store.getMemRef() == memref; });
    return stored;
  }
};

} // namespace
