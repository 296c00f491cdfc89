//===- FuseElementwise.cpp - one merge.kernel per rule --------------------===//
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/Transforms/Passes.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/TypeSwitch.h"
#include "mlir/Analysis/TopologicalSortUtils.h"
#include "mlir/Dialect/Arith/IR/Arith.h"

namespace mergec::merge {
#define GEN_PASS_DEF_MERGEFUSEELEMENTWISE
#include "mergec/Dialect/Merge/Transforms/Passes.h.inc"
} // namespace mergec::merge

using namespace mlir;
using namespace mergec::merge;

namespace {

bool isTensor(Value v) { return isa<mergec::merge::TensorType>(v.getType()); }

/// Collects the tensors a kernel over the DAGs rooted at `roots` reads from memory, in program
/// order: model tensors (merge.input) and the buffers earlier phases materialized.
SmallVector<Value> collectInputs(ArrayRef<Value> roots) {
  SetVector<Operation *> seen;
  SmallVector<Value> work(roots.begin(), roots.end());
  SmallVector<Value> inputs;
  while (!work.empty()) {
    Value v = work.pop_back_val();
    Operation *def = v.getDefiningOp();
    if (!def)
      continue;
    // A matrix phase's buffers are results of one op: each is an input of its own.
    auto phase = dyn_cast<PhaseOpInterface>(def);
    if (isa<InputOp>(def) || (phase && llvm::is_contained(phase.getBufferResults(), v))) {
      if (!llvm::is_contained(inputs, v))
        inputs.push_back(v);
      continue;
    }
    if (!seen.insert(def))
      continue;
    for (Value operand : def->getOperands())
      if (isTensor(operand))
        work.push_back(operand);
  }
  llvm::sort(inputs, [](Value a, Value b) {
    Operation *x = a.getDefiningOp(), *y = b.getDefiningOp();
    if (x == y) // two buffers of one matrix phase: in result order
      return cast<OpResult>(a).getResultNumber() < cast<OpResult>(b).getResultNumber();
    return x->isBeforeInBlock(y);
  });
  return inputs;
}

/// Rebuilds the tensor DAG on one element inside the kernel body: each tensor op becomes the
/// arith ops on f32 it means per element (ElementwiseOpInterface); scalars (defined above the
/// kernel) are used as is.
class ElementBuilder {
public:
  ElementBuilder(OpBuilder &b, DenseMap<Value, Value> &map) : b_(b), map_(map) {}

  FailureOr<Value> get(Value tensor) {
    if (auto it = map_.find(tensor); it != map_.end())
      return it->second;
    Operation *def = tensor.getDefiningOp();
    Location loc = def->getLoc();
    SmallVector<Value> args;
    for (Value operand : def->getOperands()) {
      if (!isTensor(operand)) {
        args.push_back(operand);
        continue;
      }
      auto element = get(operand);
      if (failed(element))
        return failure();
      args.push_back(*element);
    }
    auto elementwise = dyn_cast<ElementwiseOpInterface>(def);
    if (!elementwise) {
      def->emitOpError("cannot be fused into an elementwise kernel");
      return failure();
    }
    return map_[tensor] =
               elementwise.buildElement(b_, args, [&] { return elementIndex(loc); });
  }

private:
  /// The flat index of the element, made once per body.
  Value elementIndex(Location loc) {
    if (!index_) {
      OpBuilder::InsertionGuard guard(b_);
      b_.setInsertionPointToStart(b_.getInsertionBlock());
      index_ = ElementIndexOp::create(b_, loc, b_.getI64Type());
    }
    return index_;
  }

  OpBuilder &b_;
  DenseMap<Value, Value> &map_;
  Value index_;
};

/// The row phase that reduces each row the way `kind` reduces a tensor.
RowKind rowKindOf(ReductionKind kind) {
  switch (kind) {
  case ReductionKind::Sum:
    return RowKind::Sum;
  case ReductionKind::Max:
    return RowKind::Max;
  }
  llvm_unreachable("unknown reduction");
}

/// Erases tensor ops left without users after fusion (inputs feed the kernel and stay).
void eraseDeadTensorOps(func::FuncOp func) {
  SmallVector<Operation *> ops;
  func.walk([&](Operation *op) {
    if (op->getDialect() && isa<MergeDialect>(op->getDialect()) &&
        !isa<KernelOp, PhaseOpInterface, YieldOp>(op) &&
        op->getParentOp() == func)
      ops.push_back(op);
  });
  for (Operation *op : llvm::reverse(ops))
    if (op->use_empty())
      op->erase();
}

/// Builds the body of a kernel over the DAGs of `roots`: one f32 block argument per input,
/// the DAGs on one element, merge.yield of each root's value.
LogicalResult buildBody(OpBuilder &b, Region &region, ArrayRef<Value> roots,
                        ArrayRef<Value> inputs) {
  Block *body = b.createBlock(&region);
  DenseMap<Value, Value> map;
  for (Value in : inputs)
    map[in] = body->addArgument(b.getF32Type(), in.getLoc());
  b.setInsertionPointToStart(body);
  ElementBuilder builder(b, map);
  SmallVector<Value> elements;
  for (Value root : roots) {
    auto element = builder.get(root);
    if (failed(element))
      return failure();
    elements.push_back(*element);
  }
  YieldOp::create(b, roots.front().getLoc(), elements);
  return success();
}

bool isMatrix(Value v) { return isa<MatrixType>(v.getType()); }

/// The ops of a rule's linear algebra: those with a matrix operand or result, and
/// merge.emit_matrix (of a scalar too: it hands its value out from the program).
bool isMatrixOp(Operation *op) {
  return isa<EmitMatrixOp>(op) ||
         llvm::any_of(op->getOperandTypes(), [](Type t) { return isa<MatrixType>(t); }) ||
         llvm::any_of(op->getResultTypes(), [](Type t) { return isa<MatrixType>(t); });
}

/// Gathers the rule's matrix ops into one merge.matrix_phase: the operands of merge.to_matrix
/// become its inputs (their DAGs are fused into its body later, like any phase's), the matrix
/// ops and the scalar arithmetic they need move into its program, and what the rest of the
/// rule uses (the tensors of merge.to_tensor, scalars) become its results. A rule has at most
/// one matrix phase: a matrix computed from a phase that itself needs one of the rule's
/// matrices would need two, which is reported.
LogicalResult formMatrixPhase(func::FuncOp func) {
  Block &block = func.getBody().front();
  SetVector<Operation *> program; // in program order
  for (Operation &op : block.without_terminator())
    if (isMatrixOp(&op))
      program.insert(&op);
  if (program.empty())
    return success();
  // Scalar arithmetic (not merge ops: those are phases or leaves) computed from the program's
  // scalars and needed by a matrix op runs inside the program too; what only the tensor side
  // needs stays outside and reads the phase's scalar result.
  SmallVector<Operation *> derived;
  for (Operation &op : block.without_terminator()) {
    if (program.contains(&op) || isa<MergeDialect>(op.getDialect()))
      continue;
    if (llvm::any_of(op.getOperands(), [&](Value v) {
          Operation *def = v.getDefiningOp();
          return def && (program.contains(def) || llvm::is_contained(derived, def));
        }))
      derived.push_back(&op);
  }
  SetVector<Operation *> needed;
  for (Operation *op : llvm::reverse(derived))
    if (llvm::any_of(op->getUsers(), [&](Operation *user) {
          // A use inside a matrix_map's body counts as the matrix_map's.
          Operation *top = block.findAncestorOpInBlock(*user);
          return program.contains(top) || needed.contains(top);
        }))
      needed.insert(op);
  SmallVector<Operation *> moved;
  for (Operation &op : block.without_terminator())
    if (program.contains(&op) || needed.contains(&op))
      moved.push_back(&op);
  auto inside = [&](Operation *op) { return llvm::is_contained(moved, op); };

  SmallVector<ToMatrixOp> starts;
  SmallVector<ToTensorOp> ends;
  SmallVector<Value> scalars;
  for (Operation *op : moved) {
    if (auto in = dyn_cast<ToMatrixOp>(op))
      starts.push_back(in);
    else if (auto out = dyn_cast<ToTensorOp>(op))
      ends.push_back(out);
    else
      for (Value r : op->getResults())
        if (!isMatrix(r) && llvm::any_of(r.getUsers(), [&](Operation *u) {
              return !inside(block.findAncestorOpInBlock(*u));
            }))
          scalars.push_back(r);
  }

  Location loc = moved.back()->getLoc();
  OpBuilder b(moved.back()->getNextNode());
  SmallVector<Type> types(scalars.size(), b.getF32Type());
  types.append(ends.size(), mergec::merge::TensorType::get(b.getContext()));
  SmallVector<Value> roots;
  for (ToMatrixOp in : starts)
    roots.push_back(in.getOperand());
  for (Value v : scalars)
    if (!v.getType().isF32())
      return v.getDefiningOp()->emitOpError("a matrix phase can only pass f32 scalars on");
  auto phase = MatrixPhaseOp::create(b, loc, types, roots);
  // The body, for now: each input as it is (fuseMatrixBody rebuilds it over the DAGs).
  Block *body = b.createBlock(&phase.getBody());
  SmallVector<Value> args;
  for (Value root : roots)
    args.push_back(body->addArgument(b.getF32Type(), root.getLoc()));
  YieldOp::create(b, loc, args);
  Block *code = b.createBlock(&phase.getProgram());
  for (ToMatrixOp in : starts)
    in.getResult().replaceAllUsesWith(code->addArgument(in.getType(), in.getLoc()));
  for (Operation *op : moved)
    if (!isa<ToMatrixOp, ToTensorOp>(op))
      op->moveBefore(code, code->end());
  SmallVector<Value> yields(scalars.begin(), scalars.end());
  for (ToTensorOp out : ends)
    yields.push_back(out.getOperand());
  b.setInsertionPointToEnd(code);
  MatrixYieldOp::create(b, loc, yields);
  for (auto [i, v] : llvm::enumerate(scalars))
    v.replaceUsesWithIf(phase.getResult(i), [&](OpOperand &use) {
      return !phase->isProperAncestor(use.getOwner());
    });
  for (auto [i, out] : llvm::enumerate(ends)) {
    out.getResult().replaceAllUsesWith(phase.getResult(scalars.size() + i));
    out.erase();
  }
  for (ToMatrixOp in : starts)
    in.erase();
  // The phase sits after the last matrix op; what reads its results may have come earlier.
  if (!sortTopologically(&block))
    return phase.emitOpError(
        "needs a matrix that depends on this phase's own results through another phase: a "
        "rule runs one matrix phase (compute the inner matrix in a rule of its own)");
  return success();
}


struct FuseElementwisePass : mergec::merge::impl::MergeFuseElementwiseBase<FuseElementwisePass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    // Reductions first, in program order: each becomes a phase of its own, and a later
    // reduction or the final kernel uses its scalar result.
    // Selections and ranks likewise become phases of their own.
    // Each fusion erases only the op it rewrites, so the ops collected up front stay valid.
    if (failed(formMatrixPhase(func)))
      return signalPassFailure();
    SmallVector<Operation *> ops;
    func.walk([&](Operation *op) { ops.push_back(op); });
    for (Operation *op : ops) {
      LogicalResult done =
          llvm::TypeSwitch<Operation *, LogicalResult>(op)
              .Case<ReduceOp>([&](auto r) { return fuseReduction(r); })
              .Case<TopKMaskOp>([&](auto t) { return fuseTopK(t); })
              .Case<QuantileOp>([&](auto q) { return fuseQuantile(q); })
              .Case<RowRankOp>([&](auto r) { return fuseRow(r, RowKind::Rank); })
              .Case<RowReduceOp>([&](auto r) { return fuseRow(r, rowKindOf(r.getKind())); })
              .Default([](Operation *) { return success(); });
      if (failed(done))
        return signalPassFailure();
    }
    SmallVector<MatrixPhaseOp> matrixPhases;
    func.walk([&](MatrixPhaseOp phase) { matrixPhases.push_back(phase); });
    for (MatrixPhaseOp phase : matrixPhases)
      if (failed(fuseMatrixBody(phase)))
        return signalPassFailure();
    func.walk([&](func::ReturnOp ret) {
      for (OpOperand &operand : ret->getOpOperands()) {
        Value root = operand.get();
        if (!isTensor(root) || root.getDefiningOp<KernelOp>())
          continue;
        if (failed(fuse(ret, operand)))
          return signalPassFailure();
      }
    });
    eraseDeadTensorOps(func);
  }

  /// A phase over the DAG `root`, built before `at`: `create(b, inputs)` makes the kernel op
  /// over the tensors the DAG reads; its body is the DAG on one element.
  template <typename KernelT, typename CreateFn>
  FailureOr<KernelT> buildPhase(Operation *at, Value root, CreateFn create) {
    SmallVector<Value> inputs = collectInputs(root);
    OpBuilder b(at);
    KernelT kernel = create(b, inputs);
    if (failed(buildBody(b, kernel.getBody(), root, inputs)))
      return failure();
    return kernel;
  }

  /// A matrix phase whose inputs are still the DAGs of its matrices: over the tensors they
  /// read instead, each DAG computed per element in the body.
  LogicalResult fuseMatrixBody(MatrixPhaseOp phase) {
    SmallVector<Value> roots(phase.getInputs());
    SmallVector<Value> inputs = collectInputs(roots);
    OpBuilder b(phase);
    auto fused = MatrixPhaseOp::create(b, phase.getLoc(), phase.getResultTypes(), inputs);
    if (failed(buildBody(b, fused.getBody(), roots, inputs)))
      return failure();
    fused.getProgram().takeBody(phase.getProgram());
    phase.replaceAllUsesWith(fused.getResults());
    phase.erase();
    return success();
  }

  /// merge.reduce kind(DAG) => merge.reduce_kernel [kind] ins(inputs) { DAG on one element }
  LogicalResult fuseReduction(ReduceOp op) {
    auto kernel = buildPhase<ReduceKernelOp>(op, op.getOperand(), [&](OpBuilder &b, ValueRange in) {
      return ReduceKernelOp::create(b, op.getLoc(), TypeRange{b.getF32Type()},
                                    ReductionKindArrayAttr::get(b.getContext(), op.getKind()),
                                    in);
    });
    if (failed(kernel))
      return failure();
    kernel->setModelScope(op.getModelScope());
    op.getResult().replaceAllUsesWith(kernel->getResult(0));
    op.erase();
    return success();
  }

  /// A selection phase over the DAG `root`: its four boundary scalars.
  FailureOr<SelectKernelOp> selectPhase(Operation *op, Value root, SelectKind kind, double param,
                                        double skip, bool nonzero, bool modelScope = false) {
    return buildPhase<SelectKernelOp>(op, root, [&](OpBuilder &b, ValueRange in) {
      Type f64 = b.getF64Type();
      auto kernel = SelectKernelOp::create(b, op->getLoc(), TypeRange{f64, f64, f64, f64},
                                           SelectKindAttr::get(b.getContext(), kind), in,
                                           b.getF64FloatAttr(param),
                                           b.getF64FloatAttr(skip), b.getBoolAttr(nonzero));
      kernel.setModelScope(modelScope);
      return kernel;
    });
  }

  /// merge.topk_mask x => merge.select_kernel <topk> { x } and merge.rank_band x, boundaries
  LogicalResult fuseTopK(TopKMaskOp op) {
    auto kernel = selectPhase(op, op.getOperand(), SelectKind::TopK,
                              op.getDensity().convertToDouble(),
                              op.getSkip().convertToDouble(), op.getNonzero(),
                              op.getModelScope());
    if (failed(kernel))
      return failure();
    OpBuilder b(op);
    auto band = RankBandOp::create(b, op.getLoc(), op.getType(), op.getOperand(), kernel->getR0(),
                                   kernel->getR1(), kernel->getR2(), kernel->getR3());
    op.getResult().replaceAllUsesWith(band.getResult());
    op.erase();
    return success();
  }

  /// merge.quantile x => merge.select_kernel <quantile> { x }, its first result in f32
  LogicalResult fuseQuantile(QuantileOp op) {
    auto kernel = selectPhase(op, op.getOperand(), SelectKind::Quantile,
                              op.getQ().convertToDouble(), 0, false);
    if (failed(kernel))
      return failure();
    OpBuilder b(op);
    Value value = arith::TruncFOp::create(b, op.getLoc(), b.getF32Type(), kernel->getR0());
    op.getResult().replaceAllUsesWith(value);
    op.erase();
    return success();
  }

  /// merge.row_rank x => merge.row_kernel <rank> { x }, merge.row_reduce <sum> x =>
  /// merge.row_kernel <sum> { x }: a buffer later kernels read like an input.
  LogicalResult fuseRow(Operation *op, RowKind kind) {
    Value x = op->getOperand(0);
    auto kernel = buildPhase<RowKernelOp>(op, x, [&](OpBuilder &b, ValueRange in) {
      return RowKernelOp::create(b, op->getLoc(), op->getResult(0).getType(),
                                 RowKindAttr::get(b.getContext(), kind), in);
    });
    if (failed(kernel))
      return failure();
    op->getResult(0).replaceAllUsesWith(kernel->getResult());
    op->erase();
    return success();
  }

  LogicalResult fuse(func::ReturnOp ret, OpOperand &operand) {
    Value root = operand.get();
    auto kernel = buildPhase<KernelOp>(ret, root, [&](OpBuilder &b, ValueRange in) {
      return KernelOp::create(b, root.getLoc(), mergec::merge::TensorType::get(&getContext()), in);
    });
    if (failed(kernel))
      return failure();
    operand.set(kernel->getResult());
    return success();
  }
};

} // namespace
