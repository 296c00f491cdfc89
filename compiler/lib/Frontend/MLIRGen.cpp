//===- MLIRGen.cpp - Sema's rule DAGs to the merge dialect ----------------===//
#include "mergec/Frontend/MLIRGen.h"
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"

using namespace mlir;
using namespace mergec;
using sema::Kind;
using sema::Node;

std::string mergec::ruleFunctionName(size_t index) { return "rule_" + std::to_string(index); }

namespace {

class Generator {
public:
  Generator(MLIRContext &ctx, const sema::Program &program)
      : ctx_(ctx), program_(program), b_(&ctx) {}

  OwningOpRef<ModuleOp> run() {
    OwningOpRef<ModuleOp> module = ModuleOp::create(loc({1, 1}));
    b_.setInsertionPointToEnd(module->getBody());
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
      Value result = emit(rule.result);
      func::ReturnOp::create(b_, loc(rule.loc), result);
    }
    return module;
  }

private:
  Type tensorType() { return merge::TensorType::get(&ctx_); }

  Location loc(ast::SourceLoc l) {
    return FileLineColLoc::get(&ctx_, program_.recipeFile, l.line, l.col);
  }

  Value emit(const Node *n) {
    if (auto it = values_.find(n); it != values_.end())
      return it->second;
    SmallVector<Value> ops;
    for (const Node *operand : n->operands)
      ops.push_back(emit(operand));
    Location l = loc(n->loc);
    bool tensor = n->kind == Kind::Tensor;
    Value v;
    switch (n->op) {
    case Node::Op::Constant:
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
    case Node::Op::Splat:
      v = merge::SplatOp::create(b_, l, tensorType(), ops[0]);
      break;
    case Node::Op::Add:
      v = tensor ? Value(merge::AddOp::create(b_, l, tensorType(), ops[0], ops[1]))
                 : Value(arith::AddFOp::create(b_, l, ops[0], ops[1]));
      break;
    case Node::Op::Sub:
      v = tensor ? Value(merge::SubOp::create(b_, l, tensorType(), ops[0], ops[1]))
                 : Value(arith::SubFOp::create(b_, l, ops[0], ops[1]));
      break;
    case Node::Op::Mul:
      v = tensor ? Value(merge::MulOp::create(b_, l, tensorType(), ops[0], ops[1]))
                 : Value(arith::MulFOp::create(b_, l, ops[0], ops[1]));
      break;
    case Node::Op::Div:
      v = tensor ? Value(merge::DivOp::create(b_, l, tensorType(), ops[0], ops[1]))
                 : Value(arith::DivFOp::create(b_, l, ops[0], ops[1]));
      break;
    case Node::Op::Neg:
      v = tensor ? Value(merge::NegOp::create(b_, l, tensorType(), ops[0]))
                 : Value(arith::NegFOp::create(b_, l, ops[0]));
      break;
    case Node::Op::Sum:
    case Node::Op::Mean:
      v = n->op == Node::Op::Sum ? emitSum(l, ops, tensor) : emitMean(l, ops, tensor);
      break;
    }
    return values_[n] = v;
  }

  Value emitSum(Location l, ValueRange ops, bool tensor) {
    if (tensor)
      return merge::SumOp::create(b_, l, tensorType(), ops);
    Value acc = ops[0];
    for (size_t i = 1; i < ops.size(); ++i)
      acc = arith::AddFOp::create(b_, l, acc, ops[i]);
    return acc;
  }

  Value emitMean(Location l, ValueRange ops, bool tensor) {
    if (tensor)
      return merge::MeanOp::create(b_, l, tensorType(), ops);
    Value count = arith::ConstantOp::create(b_, l, b_.getF32FloatAttr(static_cast<float>(ops.size())));
    return arith::DivFOp::create(b_, l, emitSum(l, ops, false), count);
  }

  MLIRContext &ctx_;
  const sema::Program &program_;
  OpBuilder b_;
  llvm::DenseMap<const Node *, Value> values_;
};

} // namespace

OwningOpRef<ModuleOp> mergec::generateMLIR(MLIRContext &ctx, const sema::Program &program) {
  return Generator(ctx, program).run();
}
