//===- LowerMatrixPhase.cpp - a matrix phase's program to host code -------===//
// Matrices are flat f32 memrefs with their rows and columns as index values (row-major). Each
// step checks the shapes it needs and branches to an exit that reports them, frees what the
// program allocated and returns; BLAS/LAPACK work goes through the runtime's mergec_la_*
// functions (LinearAlgebra.h), called with raw pointers, their status checked the same way.
#include "mergec/Conversion/LowerMatrixPhase.h"
#include "mergec/Runtime/KernelABI.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "llvm/ADT/Hashing.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mergec;
using namespace mergec::merge;
using rt::abi::MatrixCheck;

namespace {

struct Mat {
  Value data; ///< memref<?xf32>, rows * cols elements
  Value rows, cols;
};

class MatrixLowering {
public:
  MatrixLowering(OpBuilder &b, func::FuncOp fn, MatrixPhaseOp phase, IRMapping &map,
                 const MatrixPhaseArgs &args)
      : b_(b), fn_(fn), phase_(phase), map_(map), args_(args), loc_(phase.getLoc()) {}

  LogicalResult run() {
    // The tensor as a matrix: its last dimension the columns.
    Value cols = toIndex(memref::LoadOp::create(b_, loc_, args_.scalars,
                                                ValueRange{index(rt::abi::kColsSlot)}));
    Value numel = arith::SubIOp::create(b_, loc_, args_.end, args_.begin);
    cols = arith::MaxSIOp::create(b_, loc_, cols, index(1));
    tensorCols_ = cols;
    tensorRows_ = arith::DivUIOp::create(b_, loc_, numel, cols);

    // The program's matrices, computed per element by the body.
    Block &program = phase_.getProgram().front();
    SmallVector<Value> starts;
    for (size_t k = 0; k < program.getNumArguments(); ++k)
      starts.push_back(alloc(numel));
    auto loop = scf::ForOp::create(b_, loc_, index(0), numel, index(1));
    {
      OpBuilder::InsertionGuard guard(b_);
      b_.setInsertionPointToStart(loop.getBody());
      Value i = loop.getInductionVar();
      Value at = arith::AddIOp::create(b_, loc_, args_.begin, i);
      SmallVector<Value> values = args_.elements(b_, at);
      for (auto [k, v] : llvm::enumerate(values))
        memref::StoreOp::create(b_, loc_, v, starts[k], ValueRange{i});
    }
    for (auto [k, arg] : llvm::enumerate(program.getArguments()))
      mats_[arg] = {starts[k], tensorRows_, tensorCols_};

    for (Operation &op : program.without_terminator())
      if (failed(lower(&op)))
        return failure();
    yield(cast<MatrixYieldOp>(program.getTerminator()));
    return success();
  }

private:
  Value index(int64_t v) { return arith::ConstantIndexOp::create(b_, loc_, v); }
  Value i64(Value idx) { return arith::IndexCastOp::create(b_, loc_, b_.getI64Type(), idx); }
  Value i32(int64_t v) { return arith::ConstantIntOp::create(b_, loc_, b_.getI32Type(), v); }
  Value f32(double v) {
    return arith::ConstantFloatOp::create(b_, loc_, b_.getF32Type(), APFloat(static_cast<float>(v)));
  }
  Value toIndex(Value f64) {
    Value i = arith::FPToSIOp::create(b_, loc_, b_.getI64Type(), f64);
    return arith::IndexCastOp::create(b_, loc_, b_.getIndexType(), i);
  }
  Value mul(Value a, Value c) { return arith::MulIOp::create(b_, loc_, a, c); }
  Value add(Value a, Value c) { return arith::AddIOp::create(b_, loc_, a, c); }
  Value eq(Value a, Value c) {
    return arith::CmpIOp::create(b_, loc_, arith::CmpIPredicate::eq, a, c);
  }
  Value both(Value a, Value c) { return arith::AndIOp::create(b_, loc_, a, c); }

  Value alloc(Value n) {
    auto type = MemRefType::get({ShapedType::kDynamic}, b_.getF32Type());
    Value m = memref::AllocOp::create(b_, loc_, type, ValueRange{n});
    allocated_.push_back(m);
    return m;
  }
  Mat allocMat(Value rows, Value cols) { return {alloc(mul(rows, cols)), rows, cols}; }

  /// A raw pointer to a buffer's first element, for the library calls.
  Value ptr(Value memref) {
    Value address = memref::ExtractAlignedPointerAsIndexOp::create(b_, loc_, memref);
    return LLVM::IntToPtrOp::create(b_, loc_, LLVM::LLVMPointerType::get(b_.getContext()),
                                    i64(address));
  }

  func::FuncOp declare(StringRef name, TypeRange params, TypeRange results) {
    auto module = fn_->getParentOfType<ModuleOp>();
    if (auto f = module.lookupSymbol<func::FuncOp>(name))
      return f;
    OpBuilder::InsertionGuard guard(b_);
    b_.setInsertionPointToStart(module.getBody());
    auto f = func::FuncOp::create(b_, loc_, name, b_.getFunctionType(params, results));
    f.setPrivate();
    return f;
  }

  Value call(StringRef name, ValueRange operands, TypeRange results) {
    func::FuncOp f = declare(name, operands.getTypes(), results);
    auto c = func::CallOp::create(b_, loc_, f, operands);
    return results.empty() ? Value() : c.getResult(0);
  }

  /// Continues where `ok` holds; elsewhere `report` runs, the program's buffers are freed and
  /// the function returns.
  void check(Value ok, llvm::function_ref<void()> report) {
    Region &body = fn_.getBody();
    Block *fail = new Block(), *next = new Block();
    body.push_back(fail);
    body.push_back(next);
    cf::CondBranchOp::create(b_, loc_, ok, next, fail);
    b_.setInsertionPointToStart(fail);
    report();
    for (Value m : allocated_)
      memref::DeallocOp::create(b_, loc_, m);
    func::ReturnOp::create(b_, loc_);
    b_.setInsertionPointToStart(next);
  }

  void checkShapes(Value ok, MatrixCheck what, const Mat &a, Value rows, Value cols) {
    check(ok, [&] {
      call("mergec_matrix_shape_error",
           {i32(static_cast<int32_t>(what)), i64(a.rows), i64(a.cols), i64(rows), i64(cols)}, {});
    });
  }

  /// A mergec_la_* call; a non-zero status ends the program with its message.
  void library(StringRef name, ValueRange operands) {
    Value status = call(name, operands, {b_.getI32Type()});
    Value ok = arith::CmpIOp::create(b_, loc_, arith::CmpIPredicate::eq, status, i32(0));
    check(ok, [&] { call("mergec_matrix_call_failed", {}, {}); });
  }

  /// floor(count) clamped to [1, most] (NaN gives 1), as an index.
  Value countOf(Value count, Value most) {
    Value f = math::FloorOp::create(b_, loc_, map_.lookupOrDefault(count));
    Value mostF = arith::SIToFPOp::create(b_, loc_, b_.getF32Type(), i64(most));
    Value clamped = arith::MinNumFOp::create(
        b_, loc_, arith::MaxNumFOp::create(b_, loc_, f, f32(1)), mostF);
    return toIndex(arith::ExtFOp::create(b_, loc_, b_.getF64Type(), clamped));
  }

  /// A name's bytes as a constant global (one per distinct name in the module).
  Value nameConstant(StringRef name) {
    auto module = fn_->getParentOfType<ModuleOp>();
    std::string symbol = "mergec_emit_name_" + llvm::utohexstr(llvm::hash_value(name));
    auto type = MemRefType::get({static_cast<int64_t>(name.size())}, b_.getI8Type());
    if (!module.lookupSymbol<memref::GlobalOp>(symbol)) {
      OpBuilder::InsertionGuard guard(b_);
      b_.setInsertionPointToStart(module.getBody());
      auto data = DenseElementsAttr::getFromRawBuffer(
          RankedTensorType::get(type.getShape(), b_.getI8Type()),
          ArrayRef<char>(name.data(), name.size()));
      auto global = memref::GlobalOp::create(b_, loc_, symbol, b_.getStringAttr("private"), type,
                                             data, /*constant=*/true, IntegerAttr());
      (void)global;
    }
    return memref::GetGlobalOp::create(b_, loc_, type, symbol);
  }

  /// for r < rows, c < cols: body(r, c)
  void forEach2(Value rows, Value cols, llvm::function_ref<void(Value, Value)> body) {
    auto outer = scf::ForOp::create(b_, loc_, index(0), rows, index(1));
    OpBuilder::InsertionGuard guard(b_);
    b_.setInsertionPointToStart(outer.getBody());
    auto inner = scf::ForOp::create(b_, loc_, index(0), cols, index(1));
    b_.setInsertionPointToStart(inner.getBody());
    body(outer.getInductionVar(), inner.getInductionVar());
  }

  void forEach(Value n, llvm::function_ref<void(Value)> body) {
    auto loop = scf::ForOp::create(b_, loc_, index(0), n, index(1));
    OpBuilder::InsertionGuard guard(b_);
    b_.setInsertionPointToStart(loop.getBody());
    body(loop.getInductionVar());
  }

  Value load(Value m, Value i) { return memref::LoadOp::create(b_, loc_, m, ValueRange{i}); }
  void store(Value v, Value m, Value i) { memref::StoreOp::create(b_, loc_, v, m, ValueRange{i}); }

  /// dst[(r + r0) * dstCols + c + c0] = src[r * src.cols + c] for the whole of src.
  void copyBlock(const Mat &src, Value dst, Value dstCols, Value r0, Value c0) {
    forEach2(src.rows, src.cols, [&](Value r, Value c) {
      Value v = load(src.data, add(mul(r, src.cols), c));
      store(v, dst, add(mul(add(r, r0), dstCols), add(c, c0)));
    });
  }

  LogicalResult lower(Operation *op) {
    return llvm::TypeSwitch<Operation *, LogicalResult>(op)
        .Case<MatMulOp>([&](MatMulOp m) {
          Mat a = mats_[m.getLhs()], c = mats_[m.getRhs()];
          checkShapes(eq(a.cols, c.rows), MatrixCheck::MatMul, a, c.rows, c.cols);
          Mat out = allocMat(a.rows, c.cols);
          library("mergec_la_gemm", {i32(0), i32(0), i64(a.rows), i64(c.cols), i64(a.cols),
                                     f32(1), ptr(a.data), ptr(c.data), ptr(out.data)});
          mats_[m.getResult()] = out;
          return success();
        })
        .Case<TransposeOp>([&](TransposeOp t) {
          Mat a = mats_[t.getOperand()];
          Mat out = allocMat(a.cols, a.rows);
          forEach2(a.rows, a.cols, [&](Value r, Value c) {
            store(load(a.data, add(mul(r, a.cols), c)), out.data, add(mul(c, a.rows), r));
          });
          mats_[t.getResult()] = out;
          return success();
        })
        .Case<CumSumOp>([&](CumSumOp c) {
          Mat a = mats_[c.getOperand()];
          Mat out = allocMat(a.rows, a.cols);
          forEach(a.rows, [&](Value r) {
            Value zero = arith::ConstantFloatOp::create(b_, loc_, b_.getF64Type(), APFloat(0.0));
            auto loop = scf::ForOp::create(b_, loc_, index(0), a.cols, index(1), ValueRange{zero});
            OpBuilder::InsertionGuard guard(b_);
            b_.setInsertionPointToStart(loop.getBody());
            Value at = add(mul(r, a.cols), loop.getInductionVar());
            Value x = arith::ExtFOp::create(b_, loc_, b_.getF64Type(), load(a.data, at));
            Value sum = arith::AddFOp::create(b_, loc_, loop.getRegionIterArgs()[0], x);
            store(arith::TruncFOp::create(b_, loc_, b_.getF32Type(), sum), out.data, at);
            scf::YieldOp::create(b_, loc_, sum);
          });
          mats_[c.getResult()] = out;
          return success();
        })
        .Case<HighpassOp, LowpassOp>([&](auto f) {
          Mat a = mats_[f.getOperand()];
          Mat out = allocMat(a.rows, a.cols);
          bool keepLow = isa<LowpassOp>(f.getOperation());
          library("mergec_la_spectral_filter",
                  {i64(a.rows), i64(a.cols), ptr(a.data), map_.lookupOrDefault(f.getRatio()),
                   i32(keepLow ? 1 : 0), ptr(out.data)});
          mats_[f.getResult()] = out;
          return success();
        })
        .Case<DiagOp>([&](DiagOp d) {
          Mat v = mats_[d.getOperand()];
          Value k = mul(v.rows, v.cols);
          Mat out = allocMat(k, k);
          forEach(mul(k, k), [&](Value i) { store(f32(0), out.data, i); });
          forEach(k, [&](Value i) { store(load(v.data, i), out.data, add(mul(i, k), i)); });
          mats_[d.getResult()] = out;
          return success();
        })
        .Case<HCatOp>([&](HCatOp h) {
          Mat first = mats_[h.getOperands()[0]];
          Value total = index(0);
          for (Value part : h.getOperands()) {
            Mat p = mats_[part];
            checkShapes(eq(p.rows, first.rows), MatrixCheck::HCat, first, p.rows, p.cols);
            total = add(total, p.cols);
          }
          Mat out = allocMat(first.rows, total);
          Value offset = index(0);
          for (Value part : h.getOperands()) {
            Mat p = mats_[part];
            copyBlock(p, out.data, total, index(0), offset);
            offset = add(offset, p.cols);
          }
          mats_[h.getResult()] = out;
          return success();
        })
        .Case<VCatOp>([&](VCatOp v) {
          Mat first = mats_[v.getOperands()[0]];
          Value total = index(0);
          for (Value part : v.getOperands()) {
            Mat p = mats_[part];
            checkShapes(eq(p.cols, first.cols), MatrixCheck::VCat, first, p.rows, p.cols);
            total = add(total, p.rows);
          }
          Mat out = allocMat(total, first.cols);
          Value offset = index(0);
          for (Value part : v.getOperands()) {
            Mat p = mats_[part];
            copyBlock(p, out.data, first.cols, offset, index(0));
            offset = add(offset, p.rows);
          }
          mats_[v.getResult()] = out;
          return success();
        })
        .Case<TakeRowsOp>([&](TakeRowsOp t) {
          Mat a = mats_[t.getOperand()];
          Value k = countOf(t.getCount(), a.rows);
          Mat out = allocMat(k, a.cols);
          forEach(mul(k, a.cols), [&](Value i) { store(load(a.data, i), out.data, i); });
          mats_[t.getResult()] = out;
          return success();
        })
        .Case<TakeColsOp>([&](TakeColsOp t) {
          Mat a = mats_[t.getOperand()];
          Value k = countOf(t.getCount(), a.cols);
          Mat out = allocMat(a.rows, k);
          forEach2(a.rows, k, [&](Value r, Value c) {
            store(load(a.data, add(mul(r, a.cols), c)), out.data, add(mul(r, k), c));
          });
          mats_[t.getResult()] = out;
          return success();
        })
        .Case<SvdOp>([&](SvdOp s) {
          Mat a = mats_[s.getOperand()];
          Value most = arith::MinUIOp::create(b_, loc_, a.rows, a.cols);
          Value k = s.getRank() ? countOf(s.getRank(), most) : most;
          Mat u = allocMat(a.rows, k), sv = allocMat(index(1), k), vt = allocMat(k, a.cols);
          library("mergec_la_svd", {i64(a.rows), i64(a.cols), ptr(a.data), i64(k), ptr(u.data),
                                    ptr(sv.data), ptr(vt.data)});
          mats_[s.getU()] = u;
          mats_[s.getS()] = sv;
          mats_[s.getVt()] = vt;
          return success();
        })
        .Case<RsvdOp>([&](RsvdOp s) {
          Mat a = mats_[s.getOperand()];
          Value most = arith::MinUIOp::create(b_, loc_, a.rows, a.cols);
          Value k = countOf(s.getRank(), most);
          Mat u = allocMat(a.rows, k), sv = allocMat(index(1), k), vt = allocMat(k, a.cols);
          Value stream = arith::TruncIOp::create(b_, loc_, b_.getI32Type(),
                                                 map_.lookupOrDefault(s.getNameHash()));
          Value seed = i32(static_cast<int32_t>(static_cast<uint32_t>(s.getSeed())));
          Value oversample = arith::ConstantIntOp::create(b_, loc_, b_.getI64Type(), s.getOversample());
          Value iters = arith::ConstantIntOp::create(b_, loc_, b_.getI64Type(), s.getIters());
          library("mergec_la_rsvd", {i64(a.rows), i64(a.cols), ptr(a.data), i64(k), oversample,
                                     iters, seed, stream, ptr(u.data), ptr(sv.data),
                                     ptr(vt.data)});
          mats_[s.getU()] = u;
          mats_[s.getS()] = sv;
          mats_[s.getVt()] = vt;
          return success();
        })
        .Case<OrthOp>([&](OrthOp o) {
          Mat a = mats_[o.getOperand()];
          Mat out = allocMat(a.rows, a.cols);
          library("mergec_la_orth", {i64(a.rows), i64(a.cols), ptr(a.data), ptr(out.data)});
          mats_[o.getResult()] = out;
          return success();
        })
        .Case<LowRankOp>([&](LowRankOp l) {
          Mat a = mats_[l.getOperand()];
          Value most = arith::MinUIOp::create(b_, loc_, a.rows, a.cols);
          Value k = countOf(l.getCount(), most);
          Mat out = allocMat(a.rows, a.cols);
          library("mergec_la_lowrank",
                  {i64(a.rows), i64(a.cols), ptr(a.data), i64(k), ptr(out.data)});
          mats_[l.getResult()] = out;
          return success();
        })
        .Case<RankOfOp>([&](RankOfOp r) {
          Mat a = mats_[r.getOperand()];
          Value most = arith::MinUIOp::create(b_, loc_, a.rows, a.cols);
          map_.map(r.getResult(), arith::SIToFPOp::create(b_, loc_, b_.getF32Type(), i64(most)));
          return success();
        })
        .Case<EmitMatrixOp>([&](EmitMatrixOp e) {
          // A scalar goes out as a 1 x 1 matrix (a one-element buffer of its own).
          Mat m;
          if (isa<MatrixType>(e.getValue().getType())) {
            m = mats_[e.getValue()];
          } else {
            m = allocMat(index(1), index(1));
            store(map_.lookupOrDefault(e.getValue()), m.data, index(0));
          }
          Value name = nameConstant(e.getName());
          // Non-zero: the sink refused it (a name or shape the plan does not expect) and kept
          // the message; the program stops here.
          Value status = call("mergec_matrix_emit",
                              {ptr(name), i64(index(static_cast<int64_t>(e.getName().size()))),
                               i64(m.rows), i64(m.cols), ptr(m.data)},
                              {b_.getI32Type()});
          check(arith::CmpIOp::create(b_, loc_, arith::CmpIPredicate::eq, status, i32(0)), [] {});
          return success();
        })
        .Case<MatrixMapOp>([&](MatrixMapOp m) { return lowerMap(m); })
        .Case<MatrixReduceOp>([&](MatrixReduceOp r) {
          Mat a = mats_[r.getOperand()];
          bool sum = r.getKind() == ReductionKind::Sum;
          Value init = arith::ConstantFloatOp::create(
              b_, loc_, b_.getF64Type(),
              APFloat(sum ? 0.0 : -std::numeric_limits<double>::infinity()));
          auto loop = scf::ForOp::create(b_, loc_, index(0), mul(a.rows, a.cols), index(1),
                                         ValueRange{init});
          {
            OpBuilder::InsertionGuard guard(b_);
            b_.setInsertionPointToStart(loop.getBody());
            Value x = arith::ExtFOp::create(b_, loc_, b_.getF64Type(),
                                            load(a.data, loop.getInductionVar()));
            Value acc = loop.getRegionIterArgs()[0];
            Value next = sum ? Value(arith::AddFOp::create(b_, loc_, acc, x))
                             : Value(arith::MaximumFOp::create(b_, loc_, acc, x));
            scf::YieldOp::create(b_, loc_, next);
          }
          map_.map(r.getResult(),
                   arith::TruncFOp::create(b_, loc_, b_.getF32Type(), loop.getResult(0)));
          return success();
        })
        .Default([&](Operation *other) -> LogicalResult {
          if (isa<MergeDialect>(other->getDialect()))
            return other->emitOpError("has no lowering in a matrix phase");
          b_.clone(*other, map_);
          return success();
        });
  }

  /// Elementwise over matrices of one shape: the body per element, scalars from above.
  LogicalResult lowerMap(MatrixMapOp m) {
    Mat first = mats_[m.getInputs()[0]];
    for (Value in : m.getInputs().drop_front()) {
      Mat other = mats_[in];
      checkShapes(both(eq(other.rows, first.rows), eq(other.cols, first.cols)),
                  MatrixCheck::Elementwise, first, other.rows, other.cols);
    }
    Mat out = allocMat(first.rows, first.cols);
    Block &body = m.getBody().front();
    forEach(mul(first.rows, first.cols), [&](Value i) {
      for (auto [arg, in] : llvm::zip(body.getArguments(), m.getInputs()))
        map_.map(arg, load(mats_[in].data, i));
      for (Operation &op : body.without_terminator())
        b_.clone(op, map_);
      store(map_.lookupOrDefault(cast<YieldOp>(body.getTerminator()).getValues()[0]), out.data,
            i);
    });
    mats_[m.getResult()] = out;
    return success();
  }

  /// Scalars into the result array (f64), matrices into the phase's buffers once they have the
  /// tensor's shape (a 1-D tensor of n also takes an n x 1 matrix); then free everything.
  void yield(MatrixYieldOp y) {
    unsigned scalars = phase_.getNumScalars();
    for (auto [j, v] : llvm::enumerate(y.getValues())) {
      if (j < scalars) {
        Value wide = arith::ExtFOp::create(b_, loc_, b_.getF64Type(), map_.lookupOrDefault(v));
        store(wide, args_.result, index(static_cast<int64_t>(j)));
        continue;
      }
      Mat m = mats_[v];
      Value same = both(eq(m.rows, tensorRows_), eq(m.cols, tensorCols_));
      Value column = both(both(eq(tensorRows_, index(1)), eq(m.cols, index(1))),
                          eq(m.rows, tensorCols_));
      checkShapes(arith::OrIOp::create(b_, loc_, same, column), MatrixCheck::Result, m,
                  tensorRows_, tensorCols_);
      Value buffer = args_.buffers[j - scalars];
      forEach(mul(m.rows, m.cols), [&](Value i) { store(load(m.data, i), buffer, i); });
    }
    for (Value m : allocated_)
      memref::DeallocOp::create(b_, loc_, m);
    func::ReturnOp::create(b_, loc_);
  }

  OpBuilder &b_;
  func::FuncOp fn_;
  MatrixPhaseOp phase_;
  IRMapping &map_;
  const MatrixPhaseArgs &args_;
  Location loc_;
  Value tensorRows_, tensorCols_;
  llvm::DenseMap<Value, Mat> mats_;
  SmallVector<Value> allocated_;
};

} // namespace

LogicalResult mergec::lowerMatrixPhase(OpBuilder &b, func::FuncOp fn, MatrixPhaseOp phase,
                                       IRMapping &map, const MatrixPhaseArgs &args) {
  return MatrixLowering(b, fn, phase, map, args).run();
}
