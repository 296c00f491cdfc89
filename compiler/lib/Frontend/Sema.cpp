//===- Sema.cpp - check a recipe and reduce its rules to primitive DAGs ---===//
// Evaluates each rule body symbolically: names resolve to nodes, calls to defs are inlined by
// evaluating their bodies with the arguments bound, and lists exist only during evaluation
// (sum/mean/len consume them), so the DAG handed to MLIRGen holds only scalars and tensors.
#include "mergec/Frontend/Sema.h"
#include "mergec/Frontend/Limits.h"
#include "mergec/Runtime/Glob.h"
#include "mergec/Runtime/Number.h"
#include "llvm/Support/Casting.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

using namespace mergec;
using namespace mergec::sema;
using ast::SourceLoc;
using llvm::dyn_cast;

const Model *Program::findModel(const std::string &name) const {
  for (auto &m : models)
    if (m.name == name)
      return &m;
  return nullptr;
}

namespace {

/// A value during evaluation: a node, or a list of values.
struct Value {
  const Node *node = nullptr;
  std::shared_ptr<std::vector<Value>> list;
  bool isList() const { return list != nullptr; }
};

const char *kindName(const Value &v) {
  if (v.isList())
    return "a list";
  switch (v.node->kind) {
  case Kind::Scalar:
    return "a scalar";
  case Kind::Tensor:
    return "a tensor";
  case Kind::Matrix:
    return "a matrix";
  }
  return "a value";
}

/// Whether a value holds a list inside a list (svd of a list gives [us, ss, vts]); only
/// `let (us, ss, vts) = ...` and functions that pass lists on take those.
bool nested(const Value &v) {
  if (!v.isList())
    return false;
  for (const Value &item : *v.list)
    if (item.isList())
      return true;
  return false;
}
const char *kNestedHint =
    "a list of lists (svd of a list gives [u's, s's, vt's]: name them with "
    "let (us, ss, vts) = svd(xs) in ...)";

/// A callee's parameter list, for binding positional and keyword arguments the same way for
/// defs and builtins.
struct Signature {
  std::string name;
  std::vector<std::string> params;
  std::vector<const ast::Expr *> defaults; ///< null when the parameter is required
  std::vector<bool> hasBuiltinDefault;     ///< builtins supply their own default value

  /// A builtin's signature: every parameter required except those named in `optional`.
  static Signature builtin(std::string name, std::vector<std::string> params,
                           const std::set<std::string> &optional = {}) {
    Signature sig{std::move(name), std::move(params)};
    sig.defaults.assign(sig.params.size(), nullptr);
    for (auto &p : sig.params)
      sig.hasBuiltinDefault.push_back(optional.count(p) > 0);
    return sig;
  }
};

/// Elementwise functions of one scalar-or-tensor argument.
const std::map<std::string, Node::Op> kUnary = {
    {"abs", Node::Op::Abs},   {"sign", Node::Op::Sign}, {"sqrt", Node::Op::Sqrt},
    {"exp", Node::Op::Exp},   {"log", Node::Op::Log},   {"sin", Node::Op::Sin},
    {"cos", Node::Op::Cos},   {"acos", Node::Op::Acos}, {"floor", Node::Op::Floor}};
/// Functions of one list, elementwise across it.
const std::map<std::string, Node::Op> kListReductions = {
    {"sum", Node::Op::Sum}, {"mean", Node::Op::Mean}, {"max", Node::Op::Max},
    {"min", Node::Op::Min}, {"median", Node::Op::Median}, {"variance", Node::Op::Variance}};
/// What a reduction or selection covers: its `scope` argument's values (names a recipe uses
/// as they are, like strings), the one list of their spellings.
enum class Scope { Tensor, Row, Model };
const std::map<std::string, Scope> kScopeNames = {
    {"tensor", Scope::Tensor}, {"row", Scope::Row}, {"model", Scope::Model}};
// `source` is reserved like `layer`: stdlib's passthrough() reads it from a def body, where a
// model of that name would otherwise shadow it.
/// The names every expression can use, and what each stands for: a node of the current
/// tensor's context, a constant, or the slice's source model (its tensor of the current name).
struct ContextName {
  enum class Is { Node, Constant, Source } is;
  Node::Op op = Node::Op::Constant; ///< Is::Node: a scalar node of this op, no operands
  double value = 0;                 ///< Is::Constant
};
const std::map<std::string, ContextName> kContextNames = {
    {"layer", {ContextName::Is::Node, Node::Op::Layer}},
    {"num_layers", {ContextName::Is::Node, Node::Op::NumLayers}},
    {"cols", {ContextName::Is::Node, Node::Op::Cols}},
    {"numel", {ContextName::Is::Node, Node::Op::Numel}},
    {"true", {ContextName::Is::Constant, Node::Op::Constant, 1}},
    {"false", {ContextName::Is::Constant, Node::Op::Constant, 0}},
    {"inf", {ContextName::Is::Constant, Node::Op::Constant,
             std::numeric_limits<double>::infinity()}},
    {"source", {ContextName::Is::Source}},
};

/// What a checked parameter accepts. A def declares one as `name: kind` (every numeric option
/// of the stdlib methods does), and the builtins check their settings with the same kinds, so
/// each range is stated once and every check is applied and worded the same way. Every range
/// is an interval of finite numbers: NaN and inf pass none.
enum class Check { Density, Fraction, Finite, NonNegative, Positive, Seed, Iterations, Flag };
struct ParamKind {
  Check check;
  const char *name;
  const char *rule; ///< what "must be" is followed by in the error
  double lo, hi;
  bool loOpen, hiOpen;
  bool integer;
  bool compileTime; ///< must be known while compiling (it shapes the program, e.g. a loop)

  bool accepts(double v) const {
    return std::isfinite(v) && (loOpen ? v > lo : v >= lo) && (hiOpen ? v < hi : v <= hi) &&
           (!integer || std::floor(v) == v);
  }
};
constexpr double kInf = std::numeric_limits<double>::infinity();
const ParamKind kParamKinds[] = {
    {Check::Density, "density", "in (0, 1]", 0, 1, true, false, false, false},
    {Check::Fraction, "fraction", "in [0, 1]", 0, 1, false, false, false, false},
    {Check::Finite, "finite", "a finite number", -kInf, kInf, true, true, false, false},
    {Check::NonNegative, "nonnegative", "a finite number >= 0", 0, kInf, false, true, false, false},
    {Check::Positive, "positive", "a finite number > 0", 0, kInf, true, true, false, false},
    {Check::Seed, "seed", "an integer in [0, 2^32)", 0, 4294967296.0, false, true, true, true},
    {Check::Iterations, "iterations", "an integer in [0, 100000]", 0, 100000, false, false, true,
     true},
    {Check::Flag, "flag", "true or false", 0, 1, false, false, true, false},
};
const ParamKind &paramKind(Check check) {
  for (const ParamKind &k : kParamKinds)
    if (k.check == check)
      return k;
  return kParamKinds[0]; // unreachable: every Check has a row
}
const ParamKind *findParamKind(const std::string &name) {
  for (const ParamKind &k : kParamKinds)
    if (name == k.name)
      return &k;
  return nullptr;
}

/// A number as an error message shows it: the shortest text that reads back as the same
/// double ("-1", "0.1", "1e-05", "nan", "inf").
std::string formatNumber(double v) {
  if (std::isnan(v))
    return "nan"; // 0 / 0 is a negative NaN on x86; its sign means nothing
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

/// Folded values by node, and where to record the params a folded value read.
struct ConstantMemo {
  std::unordered_map<const Node *, std::optional<double>> values;
  std::set<std::string> *usedParams = nullptr;
};
std::optional<double> foldConstant(const Node *n, ConstantMemo &memo);
std::optional<double> constantValue(const Node *n, std::set<std::string> *usedParams);
std::optional<double> foldOp(const Node *n, const std::vector<double> &v);

/// The value of a scalar expression of numbers known while compiling, in f64; nullopt when
/// it depends on the tensor (a layer, a reduction, ...). Inlined defs share operands, so the
/// DAG is walked once per node (a tree walk would be exponential in the inlining depth); the
/// recursion is as deep as the DAG, at most kMaxInlinedDepth.
std::optional<double> constantValue(const Node *n, std::set<std::string> *usedParams) {
  ConstantMemo memo;
  memo.usedParams = usedParams;
  return foldConstant(n, memo);
}

std::optional<double> foldConstant(const Node *n, ConstantMemo &memo) {
  if (n->kind != Kind::Scalar)
    return std::nullopt;
  if (n->op == Node::Op::Constant) {
    if (!n->param.empty() && memo.usedParams)
      memo.usedParams->insert(n->param);
    return n->value;
  }
  // A memoized node's params were recorded when it was first folded (memo lives for one
  // constantValue call).
  if (auto it = memo.values.find(n); it != memo.values.end())
    return it->second;
  std::vector<double> v;
  for (const Node *o : n->operands) {
    auto c = foldConstant(o, memo);
    if (!c)
      return memo.values[n] = std::nullopt;
    v.push_back(*c);
  }
  return memo.values[n] = foldOp(n, v);
}

/// `n`'s operation on its operands' values `v`.
std::optional<double> foldOp(const Node *n, const std::vector<double> &v) {
  switch (n->op) {
  case Node::Op::Add: return v[0] + v[1];
  case Node::Op::Sub: return v[0] - v[1];
  case Node::Op::Mul: return v[0] * v[1];
  case Node::Op::Div: return v[0] / v[1];
  case Node::Op::Neg: return -v[0];
  case Node::Op::Abs: return std::fabs(v[0]);
  case Node::Op::Floor: return std::floor(v[0]);
  case Node::Op::Max: return *std::max_element(v.begin(), v.end());
  case Node::Op::Min: return *std::min_element(v.begin(), v.end());
  case Node::Op::Select: return v[0] != 0 ? v[1] : v[2];
  case Node::Op::Cmp: {
    bool r = false;
    switch (n->predicate) {
    case ast::BinaryOp::Lt: r = v[0] < v[1]; break;
    case ast::BinaryOp::Gt: r = v[0] > v[1]; break;
    case ast::BinaryOp::Le: r = v[0] <= v[1]; break;
    case ast::BinaryOp::Ge: r = v[0] >= v[1]; break;
    case ast::BinaryOp::Eq: r = v[0] == v[1]; break;
    case ast::BinaryOp::Ne: r = v[0] != v[1]; break;
    case ast::BinaryOp::Add:
    case ast::BinaryOp::Sub:
    case ast::BinaryOp::Mul:
    case ast::BinaryOp::Div:
    case ast::BinaryOp::MatMul: return std::nullopt; // not a comparison: never a Cmp's
    }
    return r ? 1.0 : 0.0;
  }
  default: return std::nullopt;
  }
}

std::string resolveModelPath(const std::string &recipeFile, const std::string &path);

class Evaluator {
public:
  Evaluator(const ast::Recipe &recipe, Program &program, DiagnosticEngine &diags)
      : recipe_(recipe), program_(program), diags_(diags) {}

  /// A built-in function: the member that checks and builds its calls, and its parameters
  /// (every one required but those in `optional`).
  struct Builtin {
    std::optional<Value> (Evaluator::*check)(const ast::CallExpr *);
    std::vector<std::string> params;
    std::set<std::string> optional = {};
    /// The node a selection, linear-algebra or elementwise builtin makes: what its handler
    /// (callSelection, callMatrix, callElementwise for where) dispatches on.
    std::optional<Node::Op> op = std::nullopt;
  };
  /// Every built-in function by name: the one list of their names and signatures (calls
  /// dispatch on it; isBuiltinName reserves the names).
  static const std::map<std::string, Builtin> &builtins();

  /// Library defs are visible unless the recipe declares the same name.
  void declareLibrary(const ast::Recipe &library) {
    for (auto &m : library.models)
      diags_.error(m.loc, "a library file may only define functions, not models");
    for (auto &l : library.loras)
      diags_.error(l.loc, "a library file may only define functions, not loras");
    for (auto &p : library.params)
      diags_.error(p.loc, "a library file may only define functions, not params");
    for (auto &m : library.merges)
      diags_.error(m.loc, "a library file may not have a 'merge'");
    for (auto &d : library.defs) {
      if (declared_.count(d.name) && !libraryDefs_.count(d.name))
        continue; // the recipe's own name wins
      if (claim(d.name, d.loc, "def") && checkDef(d)) {
        defs_[d.name] = &d;
        libraryDefs_.insert(d.name);
      }
    }
  }

  bool declare() {
    for (auto &m : recipe_.models)
      if (claim(m.name, m.loc, "model"))
        models_[m.name] = &m;
    for (auto &l : recipe_.loras) {
      if (!claim(l.name, l.loc, "lora"))
        continue;
      if (!models_.count(l.on)) {
        bool isLora = std::any_of(recipe_.loras.begin(), recipe_.loras.end(),
                                  [&](const ast::LoraDecl &o) { return o.name == l.on; });
        diags_.error(l.onLoc, isLora ? "lora '" + l.name + "' is on '" + l.on +
                                           "', which is a lora: an adapter applies to a model "
                                           "(declare it with `model`)"
                                     : "lora '" + l.name + "' is on '" + l.on +
                                           "', which is not a declared model");
        continue;
      }
      loras_[l.name] = &l;
    }
    for (auto &b : recipe_.bundles)
      if (claim(b.name, b.loc, "bundle"))
        bundles_[b.name] = &b;
    for (auto &p : recipe_.params) {
      if (!std::isfinite(p.value))
        diags_.error(p.valueLoc, "number out of range (larger than a double can hold)");
      else if (claim(p.name, p.loc, "param"))
        params_[p.name] = p.value;
    }
    for (auto &d : recipe_.defs)
      if (claim(d.name, d.loc, "def") && checkDef(d))
        defs_[d.name] = &d;
    return diags_.errorCount() == 0;
  }

  std::map<std::string, double> &params() { return params_; }

  std::optional<Value> eval(const ast::Expr *e) {
    // After a limit error every evaluation in progress unwinds without further messages.
    if (limitHit_)
      return std::nullopt;
    if (!work(1, e->loc()))
      return std::nullopt;
    if (evalDepth_ >= limits::kMaxInlinedDepth) {
      limitError(e->loc(), "expression nested too deeply once defs are inlined (limit " +
                               std::to_string(limits::kMaxInlinedDepth) + " levels)");
      return std::nullopt;
    }
    ++evalDepth_;
    auto value = evalExpr(e);
    --evalDepth_;
    return value;
  }

  std::optional<Value> evalExpr(const ast::Expr *e) {
    if (auto *n = dyn_cast<ast::NumberExpr>(e)) {
      if (!std::isfinite(n->value)) {
        diags_.error(e->loc(), "number out of range (larger than a double can hold)");
        return std::nullopt;
      }
      return Value{constant(n->value, e->loc())};
    }
    if (auto *n = dyn_cast<ast::NameExpr>(e))
      return name(n);
    if (auto *str = dyn_cast<ast::StringExpr>(e)) {
      Node n{Node::Op::String, Kind::Scalar};
      n.text = str->value;
      n.loc = e->loc();
      return Value{add(std::move(n))};
    }
    if (auto *u = dyn_cast<ast::UnaryExpr>(e)) {
      auto v = eval(u->operand.get());
      if (!v)
        return std::nullopt;
      if (nested(*v)) {
        diags_.error(e->loc(), std::string("'-' on ") + kNestedHint);
        return std::nullopt;
      }
      return mapList(*v, [&](const Value &x) {
        return Value{make(Node::Op::Neg, x.node->kind, {x.node}, e->loc())};
      });
    }
    if (auto *b = dyn_cast<ast::BinaryExpr>(e))
      return binary(b);
    if (auto *let = dyn_cast<ast::LetExpr>(e))
      return evalLet(let);
    if (auto *index = dyn_cast<ast::IndexExpr>(e))
      return bundleMember(index);
    if (auto *l = dyn_cast<ast::ListExpr>(e)) {
      if (!checkListLength(l->elements.size(), e->loc()))
        return std::nullopt;
      auto list = std::make_shared<std::vector<Value>>();
      for (auto &el : l->elements) {
        auto v = eval(el.get());
        if (!v)
          return std::nullopt;
        if (v->isList()) {
          diags_.error(el->loc(), "lists of lists are not supported");
          return std::nullopt;
        }
        list->push_back(*v);
      }
      return Value{nullptr, list};
    }
    return call(dyn_cast<ast::CallExpr>(e));
  }

  /// `zoo[i]`: member i of bundle zoo, an input like a model (named "zoo[i]"), which the
  /// runtime reconstructs tensor by tensor; i is an integer known while compiling (the planner
  /// checks it against the bundle's members).
  std::optional<Value> bundleMember(const ast::IndexExpr *e) {
    auto it = bundles_.find(e->name);
    if (it == bundles_.end()) {
      diags_.error(e->loc(), "'" + e->name + "' is not a bundle: only a bundle's members are "
                             "indexed (bundle zoo = \"PATH\", then zoo[0]); pick(list, i) "
                             "takes an item of a list");
      return std::nullopt;
    }
    auto index = eval(e->index.get());
    if (!index)
      return std::nullopt;
    auto i = index->isList() ? std::nullopt : constantValue(index->node, &program_.fixedParams);
    if (!i || !(*i >= 0 && *i < 1e6) || *i != std::floor(*i)) {
      diags_.error(e->index->loc(), "a bundle member's index must be an integer in [0, 1000000) "
                                    "known while compiling");
      return std::nullopt;
    }
    std::string name = e->name + "[" + std::to_string(static_cast<int64_t>(*i)) + "]";
    if (!program_.findModel(name)) {
      Model m{name, resolveModelPath(recipe_.fileName, it->second->path), e->loc()};
      m.bundleMember = static_cast<int64_t>(*i);
      program_.models.push_back(std::move(m));
    }
    return Value{input(name, e->loc())};
  }

  /// `merge compress(models, rank = K | rate = R, exclude = [globs], oversample = 8,
  /// iters = 2, seed = 0)`: the compressed bundle of the NeurIPS 2024 LLM-merging winner. For
  /// each tensor the runtime compresses, with W_i the members' tensors:
  ///   n_i = |W_i|_F, W_i' = W_i / n_i, avg = mean(W_i'), (u_i, s_i, vt_i) = rsvd(W_i' - avg, k)
  /// and the rule's result is avg, while scale.i = n_i, U.i = u_i @ diag(s_i) and V.i = vt_i
  /// are emitted (merge.emit_matrix), so W_i ~ n_i * (avg + U.i @ V.i). k is merge.bundle_rank:
  /// the runtime's one rank rule sets it per tensor from rank or rate.
  std::optional<Rule> compress(const ast::CallExpr *c, SourceLoc ruleLoc) {
    Signature sig = signatureOf("compress");
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    BundleOutput out;
    out.loc = c->loc();
    const Value &xs = *(*bound)[0];
    std::vector<const Node *> members;
    if (xs.isList())
      for (const Value &x : *xs.list) {
        const Model *declared =
            x.isList() || x.node->op != Node::Op::Input ? nullptr
                                                        : program_.findModel(x.node->model);
        if (!declared || declared->bundleMember >= 0) {
          diags_.error(argLoc(c, sig, 0), "compress expects a list of declared models (a lora, "
                                          "a bundle's member or an expression cannot be one)");
          return std::nullopt;
        }
        if (std::find(out.members.begin(), out.members.end(), x.node->model) !=
            out.members.end()) {
          diags_.error(argLoc(c, sig, 0),
                       "compress: model '" + x.node->model + "' is listed twice");
          return std::nullopt;
        }
        out.members.push_back(x.node->model);
        members.push_back(x.node);
      }
    if (members.empty()) {
      diags_.error(argLoc(c, sig, 0), "compress expects a non-empty list of models, got " +
                                          std::string(xs.isList() ? "an empty list" : kindName(xs)));
      return std::nullopt;
    }
    if ((*bound)[1].has_value() == (*bound)[2].has_value()) {
      diags_.error(c->loc(), "compress needs exactly one of rank = K (the factors' rank) and "
                             "rate = R (1 - R of each matrix's parameters kept)");
      return std::nullopt;
    }
    if ((*bound)[1]) {
      const Value &v = *(*bound)[1];
      auto k = v.isList() ? std::nullopt : constantValue(v.node, &program_.fixedParams);
      if (!k || !(*k >= 1 && *k <= 1e6) || *k != std::floor(*k)) {
        diags_.error(argLoc(c, sig, 1),
                     "compress: rank must be an integer in [1, 1000000] known while compiling");
        return std::nullopt;
      }
      out.rank = static_cast<int64_t>(*k);
    } else {
      const Value &v = *(*bound)[2];
      auto r = v.isList() ? std::nullopt : constantValue(v.node, &program_.fixedParams);
      if (!r || !(*r > 0 && *r < 1)) {
        diags_.error(argLoc(c, sig, 2), "compress: rate must be a number in (0, 1) known while "
                                        "compiling (0.95 keeps 5 % of each matrix)");
        return std::nullopt;
      }
      out.rate = *r;
    }
    if ((*bound)[3]) {
      const Value &v = *(*bound)[3];
      std::vector<Value> items = v.isList() ? *v.list : std::vector<Value>{v};
      for (const Value &item : items) {
        if (item.isList() || item.node->op != Node::Op::String) {
          diags_.error(argLoc(c, sig, 3), "compress: exclude must be a list of glob strings");
          return std::nullopt;
        }
        if (auto problem = rt::globCheck(item.node->text)) {
          diags_.error(argLoc(c, sig, 3),
                       "compress: bad exclude pattern \"" + item.node->text + "\": " + *problem);
          return std::nullopt;
        }
        out.exclude.push_back(item.node->text);
      }
    }
    auto settings = compileTimeSettings(c, sig, *bound, 4, {8, 2, 0},
                                        {Check::Iterations, Check::Iterations, Check::Seed});
    if (!settings)
      return std::nullopt;
    out.oversample = static_cast<int64_t>((*settings)[0]);
    out.iters = static_cast<int64_t>((*settings)[1]);
    out.seed = static_cast<int64_t>((*settings)[2]);

    SourceLoc at = c->loc();
    Rule rule;
    rule.loc = ruleLoc;
    std::vector<const Node *> norms, normalised;
    for (const Node *w : members) {
      const Node *n = elementwise(
          Node::Op::Sqrt,
          {reduction(Node::Op::ReduceSum, elementwise(Node::Op::Mul, {w, w}, at), false, at)}, at);
      norms.push_back(n);
      // A tensor of zeros has scale 0 and reconstructs as 0 whatever W' is: divide by a tiny
      // positive number instead of 0 so W' is 0, not NaN.
      const Node *divisor = elementwise(Node::Op::Max, {n, constant(1e-30, at)}, at);
      normalised.push_back(elementwise(Node::Op::Div, {w, divisor}, at));
    }
    const Node *avg = elementwise(Node::Op::Mean, normalised, at);
    const Node *k = make(Node::Op::BundleRank, Kind::Scalar, {}, at);
    auto emit = [&](std::string name, const Node *value) {
      Node e{Node::Op::Emit, value->kind};
      e.text = std::move(name);
      e.operands = {value};
      e.loc = at;
      rule.emits.push_back(add(std::move(e)));
    };
    for (size_t i = 0; i < members.size(); ++i) {
      const Node *residual = elementwise(Node::Op::Sub, {normalised[i], avg}, at);
      Node group{Node::Op::Rsvd, Kind::Matrix};
      group.operands = {residual, k};
      group.flag = true;
      group.value = static_cast<double>(out.oversample);
      group.value2 = static_cast<double>(out.iters);
      group.value3 = static_cast<double>(out.seed);
      group.loc = at;
      const Node *g = add(std::move(group));
      const Node *part[3];
      for (int f = 0; f < 3; ++f) {
        Node p{Node::Op::SvdPart, Kind::Matrix};
        p.operands = {g};
        p.value = f;
        p.loc = at;
        part[f] = add(std::move(p));
      }
      std::string index = std::to_string(i);
      emit("scale." + index, norms[i]);
      emit("U." + index, make(Node::Op::MatMul, Kind::Matrix,
                              {part[0], make(Node::Op::Diag, Kind::Matrix, {part[1]}, at)}, at));
      emit("V." + index, part[2]);
    }
    rule.result = avg;
    program_.bundle = std::move(out);
    return rule;
  }

  const Node *input(const std::string &model, SourceLoc loc) {
    auto it = inputs_.find(model);
    if (it != inputs_.end())
      return it->second;
    Node n{Node::Op::Input, Kind::Tensor};
    n.model = model;
    n.loc = loc;
    return inputs_[model] = add(std::move(n));
  }

private:
  bool claim(const std::string &name, SourceLoc loc, const char *what) {
    if (isBuiltinName(name)) {
      diags_.error(loc, std::string(what) + " '" + name + "' redefines a built-in name");
      return false;
    }
    auto [it, fresh] = declared_.emplace(name, loc);
    if (!fresh) {
      diags_.error(loc, "redefinition of '" + name + "'");
      diags_.note(it->second, "previous definition is here");
      return false;
    }
    return true;
  }

  bool checkDef(const ast::DefDecl &d) {
    if (d.params.size() > limits::kMaxArguments) {
      diags_.error(d.params[limits::kMaxArguments].loc,
                   "too many parameters in def '" + d.name + "' (" +
                       std::to_string(d.params.size()) + ", limit " +
                       std::to_string(limits::kMaxArguments) + ")");
      return false;
    }
    std::set<std::string> seen;
    bool sawDefault = false;
    for (auto &p : d.params) {
      if (isBuiltinName(p.name)) {
        diags_.error(p.loc, "parameter '" + p.name + "' of def '" + d.name +
                                "' redefines a built-in name");
        return false;
      }
      if (!seen.insert(p.name).second) {
        diags_.error(p.loc, "duplicate parameter '" + p.name + "' in def '" + d.name + "'");
        return false;
      }
      if (!p.kind.empty() && !findParamKind(p.kind)) {
        std::string known;
        for (const ParamKind &k : kParamKinds)
          known += std::string(known.empty() ? "" : ", ") + k.name;
        diags_.error(p.kindLoc, "unknown parameter kind '" + p.kind + "' (the kinds are " +
                                    known + ")");
        return false;
      }
      if (p.defaultValue)
        sawDefault = true;
      else if (sawDefault) {
        diags_.error(p.loc, "parameter '" + p.name +
                                "' without a default follows one with a default");
        return false;
      }
    }
    return true;
  }

  /// Takes ownership of a new node. Counts its depth and what it costs against the limits;
  /// past one, reports it (once) and evaluation unwinds from the next eval().
  const Node *add(Node n) {
    for (const Node *o : n.operands)
      n.depth = std::max(n.depth, o->depth + 1);
    // A param compared, or choosing between values, decides what is compiled (a where() on a
    // flag keeps only the side it picks): its value is built in, not read at run time.
    if (n.op == Node::Op::Cmp || n.op == Node::Op::Select)
      for (const Node *o : n.operands)
        (void)constantValue(o, &program_.fixedParams);
    operations_ += operationCost(n);
    if (n.depth > limits::kMaxInlinedDepth)
      limitError(n.loc, "expression nested too deeply once defs are inlined (limit " +
                            std::to_string(limits::kMaxInlinedDepth) + " levels)");
    else if (operations_ > limits::kMaxOperations)
      tooLarge(n.loc);
    return &program_.nodes.emplace_back(std::move(n));
  }

  /// About how many MLIR operations a node becomes, for kMaxOperations.
  static size_t operationCost(const Node &n) {
    size_t k = n.operands.size();
    switch (n.op) {
    case Node::Op::Median: // odd-even transposition sort: k rounds of k / 2 min/max pairs
      return std::max<size_t>(1, k * k);
    case Node::Op::Variance: // Welford: six operations per item
      return std::max<size_t>(1, 6 * k);
    case Node::Op::Weiszfeld: // the loop body: ~12 m^2 operations on a Gram matrix of m^2 / 2
    case Node::Op::Karcher:
    case Node::Op::Multislerp:
      return 24 * k;
    default:
      return std::max<size_t>(1, k);
    }
  }

  /// Counts evaluation steps (an expression evaluated, a list item copied) against
  /// kMaxEvaluationSteps: inlining can repeat work that builds no operation (a list only
  /// measured by len) as often as it repeats work that does.
  bool work(size_t steps, SourceLoc loc) {
    evaluationSteps_ += steps;
    if (evaluationSteps_ <= limits::kMaxEvaluationSteps)
      return true;
    limitError(loc, "too much to evaluate (limit " +
                        std::to_string(limits::kMaxEvaluationSteps) +
                        " steps for the recipe, counted with defs inlined and lists unrolled)");
    return false;
  }

  /// Whether `cost` more operations still fit, else the error; for builders that would create
  /// many nodes (a Gram matrix) before control returns to eval().
  bool affordable(size_t cost, SourceLoc loc) {
    if (operations_ + cost <= limits::kMaxOperations)
      return true;
    tooLarge(loc);
    return false;
  }

  void tooLarge(SourceLoc loc) {
    limitError(loc, "too many operations (limit " + std::to_string(limits::kMaxOperations) +
                        " for the recipe, counted with defs inlined and lists unrolled)");
  }

  /// A limit error: reported once, at the innermost call being inlined (where the user can see
  /// which call grows) or at `loc` outside defs, with one note at the outermost call instead of
  /// a note per level (an inlining chain can be thousands deep).
  void limitError(SourceLoc loc, const std::string &message) {
    if (limitHit_)
      return;
    limitHit_ = true;
    diags_.error(callSites_.empty() ? loc : callSites_.back().second, message);
    if (callSites_.size() > 1)
      diags_.note(callSites_.front().second, "in call to '" + callSites_.front().first + "'");
  }

  bool checkListLength(size_t length, SourceLoc loc) {
    if (length <= limits::kMaxListLength)
      return true;
    diags_.error(loc, "list too long (" + std::to_string(length) + " items, limit " +
                          std::to_string(limits::kMaxListLength) + ")");
    return false;
  }

  const Node *make(Node::Op op, Kind kind, std::vector<const Node *> operands, SourceLoc loc) {
    Node n{op, kind};
    n.operands = std::move(operands);
    n.loc = loc;
    return add(std::move(n));
  }

  /// ReduceSum or ReduceMax of x over the current tensor or (wholeModel) the rule's tensors.
  const Node *reduction(Node::Op op, const Node *x, bool wholeModel, SourceLoc loc) {
    Node n{op, Kind::Scalar};
    n.operands = {x};
    n.modelScope = wholeModel;
    n.loc = loc;
    return add(std::move(n));
  }

  const Node *constant(double value, SourceLoc loc) {
    Node n{Node::Op::Constant, Kind::Scalar};
    n.value = value;
    n.loc = loc;
    return add(std::move(n));
  }

  /// A scalar splatted where a tensor is expected; tensors and matrices as they are (MLIRGen
  /// turns a matrix into the tensor, checking its shape when the rule runs).
  const Node *asTensor(const Node *n) {
    return n->kind != Kind::Scalar ? n : make(Node::Op::Splat, Kind::Tensor, {n}, n->loc);
  }

  std::optional<Value> name(const ast::NameExpr *n) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(n->name);
      if (found != it->end())
        return found->second;
      break; // defs see only their own parameters and the globals
    }
    if (bundles_.count(n->name)) {
      diags_.error(n->loc(), "'" + n->name + "' is a bundle of models: write " + n->name +
                                 "[i] for its member i");
      return std::nullopt;
    }
    if (models_.count(n->name))
      return Value{input(n->name, n->loc())};
    if (auto it = loras_.find(n->name); it != loras_.end()) {
      // A lora alone is its model with the adapter applied: MODEL + tv(NAME).
      const Node *applied = make(Node::Op::Add, Kind::Tensor,
                                 {input(it->second->on, n->loc()), input(n->name, n->loc())},
                                 n->loc());
      loraViews_[applied] = n->name;
      return Value{applied};
    }
    if (auto it = params_.find(n->name); it != params_.end()) {
      Node p{Node::Op::Constant, Kind::Scalar};
      p.value = it->second;
      p.param = n->name;
      p.loc = n->loc();
      return Value{add(std::move(p))};
    }
    if (auto it = kContextNames.find(n->name); it != kContextNames.end()) {
      const ContextName &name = it->second;
      switch (name.is) {
      case ContextName::Is::Source:
        return Value{input(std::string(rt::kSourceInput), n->loc())};
      case ContextName::Is::Constant:
        return Value{constant(name.value, n->loc())};
      case ContextName::Is::Node:
        return Value{make(name.op, Kind::Scalar, {}, n->loc())};
      }
    }
    // The values of a `scope` argument, as strings: compared or passed on, never computed.
    if (kScopeNames.count(n->name)) {
      Node s{Node::Op::String, Kind::Scalar};
      s.text = n->name;
      s.loc = n->loc();
      return Value{add(std::move(s))};
    }
    if (defs_.count(n->name) || builtins().count(n->name)) {
      diags_.error(n->loc(), "'" + n->name + "' is a function; call it as " + n->name + "(...)");
      return std::nullopt;
    }
    diags_.error(n->loc(), "unknown name '" + n->name + "'");
    return std::nullopt;
  }

  std::optional<Value> binary(const ast::BinaryExpr *b) {
    auto lhs = eval(b->lhs.get());
    if (!lhs)
      return std::nullopt;
    auto rhs = eval(b->rhs.get());
    if (!rhs)
      return std::nullopt;
    // Strings are options (rescale = "l1"): they compare while compiling and nothing else.
    bool lstr = !lhs->isList() && lhs->node->op == Node::Op::String;
    bool rstr = !rhs->isList() && rhs->node->op == Node::Op::String;
    if (lstr || rstr) {
      if (b->op != ast::BinaryOp::Eq && b->op != ast::BinaryOp::Ne) {
        diags_.error(b->loc(), "'" + ast::spelling(b->op) +
                                   "' on a string (strings can only be compared with == or !=)");
        return std::nullopt;
      }
      bool equal = lstr && rstr && lhs->node->text == rhs->node->text;
      return Value{constant((b->op == ast::BinaryOp::Eq) == equal ? 1 : 0, b->loc())};
    }
    // Arithmetic on lists is elementwise over the list; a scalar or tensor pairs with each item.
    if (nested(*lhs) || nested(*rhs)) {
      diags_.error(b->loc(), "'" + ast::spelling(b->op) + "' on " + kNestedHint);
      return std::nullopt;
    }
    if (lhs->isList() || rhs->isList()) {
      size_t n = lhs->isList() ? lhs->list->size() : rhs->list->size();
      if (lhs->isList() && rhs->isList() && lhs->list->size() != rhs->list->size()) {
        diags_.error(b->loc(), "'" + ast::spelling(b->op) + "' between lists of different lengths (" +
                                   std::to_string(lhs->list->size()) + " and " +
                                   std::to_string(rhs->list->size()) + ")");
        return std::nullopt;
      }
      auto out = std::make_shared<std::vector<Value>>();
      for (size_t i = 0; i < n; ++i) {
        const Node *l = lhs->isList() ? (*lhs->list)[i].node : lhs->node;
        const Node *r = rhs->isList() ? (*rhs->list)[i].node : rhs->node;
        const Node *item = binaryNode(b, l, r);
        if (!item)
          return std::nullopt;
        out->push_back(Value{item});
      }
      return Value{nullptr, out};
    }
    const Node *node = binaryNode(b, lhs->node, rhs->node);
    if (!node)
      return std::nullopt;
    return Value{node};
  }

  /// Applies `fn` to a value, or to each item of a list.
  template <typename Fn> std::optional<Value> mapList(const Value &v, Fn fn) {
    if (!v.isList())
      return fn(v);
    auto out = std::make_shared<std::vector<Value>>();
    for (auto &item : *v.list)
      out->push_back(fn(item));
    return Value{nullptr, out};
  }

  const Node *binaryNode(const ast::BinaryExpr *b, const Node *lhs, const Node *rhs) {
    switch (b->op) {
    case ast::BinaryOp::MatMul:
      for (const Node *side : {lhs, rhs})
        if (side->kind == Kind::Scalar) {
          diags_.error(b->loc(), "'@' multiplies matrices (or tensors as matrices), got a scalar");
          return nullptr;
        }
      return make(Node::Op::MatMul, Kind::Matrix, {lhs, rhs}, b->loc());
    case ast::BinaryOp::Add: return elementwise(Node::Op::Add, {lhs, rhs}, b->loc());
    case ast::BinaryOp::Sub: return elementwise(Node::Op::Sub, {lhs, rhs}, b->loc());
    case ast::BinaryOp::Mul: return elementwise(Node::Op::Mul, {lhs, rhs}, b->loc());
    case ast::BinaryOp::Div: return elementwise(Node::Op::Div, {lhs, rhs}, b->loc());
    case ast::BinaryOp::Lt:
    case ast::BinaryOp::Gt:
    case ast::BinaryOp::Le:
    case ast::BinaryOp::Ge:
    case ast::BinaryOp::Eq:
    case ast::BinaryOp::Ne: return elementwise(Node::Op::Cmp, {lhs, rhs}, b->loc(), b->op);
    }
    return nullptr;
  }

  /// An elementwise node: a matrix when an operand is (tensors taken as matrices, scalars used
  /// as they are), so that linear algebra stays in one matrix phase; else a tensor when an
  /// operand is (scalars splatted); else a scalar.
  const Node *elementwise(Node::Op op, std::vector<const Node *> operands, SourceLoc loc,
                          ast::BinaryOp predicate = ast::BinaryOp::Eq) {
    bool tensor = false, matrix = false;
    for (const Node *n : operands) {
      tensor = tensor || n->kind == Kind::Tensor;
      matrix = matrix || n->kind == Kind::Matrix;
    }
    if (tensor && !matrix)
      for (const Node *&n : operands)
        n = asTensor(n);
    Node n{op, matrix ? Kind::Matrix : tensor ? Kind::Tensor : Kind::Scalar};
    n.operands = std::move(operands);
    n.loc = loc;
    n.predicate = predicate;
    return add(std::move(n));
  }

  /// Binds a call's arguments to `sig`'s parameters. Missing arguments stay empty (the caller
  /// fills defaults); returns nullopt after reporting an error.
  std::optional<std::vector<std::optional<Value>>> bind(const ast::CallExpr *c,
                                                       const Signature &sig) {
    std::vector<std::optional<Value>> bound(sig.params.size());
    std::vector<bool> given(sig.params.size(), false);
    size_t positional = 0;
    bool sawKeyword = false;
    for (auto &arg : c->args) {
      size_t index;
      if (arg.keyword.empty()) {
        if (sawKeyword) {
          diags_.error(arg.loc, "positional argument follows a keyword argument");
          return std::nullopt;
        }
        index = positional++;
        if (index >= sig.params.size()) {
          diags_.error(arg.loc, "too many arguments to '" + sig.name + "' (expected at most " +
                                    std::to_string(sig.params.size()) + ", got " +
                                    std::to_string(c->args.size()) + ")");
          return std::nullopt;
        }
      } else {
        sawKeyword = true;
        auto it = std::find(sig.params.begin(), sig.params.end(), arg.keyword);
        if (it == sig.params.end()) {
          diags_.error(arg.loc, "'" + sig.name + "' has no parameter named '" + arg.keyword + "'");
          return std::nullopt;
        }
        index = it - sig.params.begin();
      }
      if (given[index]) {
        diags_.error(arg.loc, "argument '" + sig.params[index] + "' given twice");
        return std::nullopt;
      }
      given[index] = true;
      auto v = eval(arg.value.get());
      if (!v)
        return std::nullopt;
      bound[index] = *v;
    }
    for (size_t i = 0; i < sig.params.size(); ++i)
      if (!given[i] && !sig.defaults[i] && !sig.hasBuiltinDefault[i]) {
        diags_.error(c->loc(), "missing argument '" + sig.params[i] + "' in call to '" +
                                   sig.name + "'");
        return std::nullopt;
      }
    return bound;
  }

  std::optional<Value> call(const ast::CallExpr *c) {
    if (c->args.size() > limits::kMaxArguments) {
      diags_.error(c->args[limits::kMaxArguments].loc,
                   "too many arguments in call to '" + c->callee + "' (" +
                       std::to_string(c->args.size()) + ", limit " +
                       std::to_string(limits::kMaxArguments) + ")");
      return std::nullopt;
    }
    if (!scopes_.empty() && scopes_.back().count(c->callee)) {
      diags_.error(c->loc(), "'" + c->callee + "' is a parameter, not a function");
      return std::nullopt;
    }
    if (auto it = defs_.find(c->callee); it != defs_.end())
      return callDef(c, *it->second);
    if (auto it = builtins().find(c->callee); it != builtins().end())
      return (this->*it->second.check)(c);
    if (models_.count(c->callee) || params_.count(c->callee) || kContextNames.count(c->callee)) {
      diags_.error(c->loc(), "'" + c->callee + "' is not a function");
      return std::nullopt;
    }
    diags_.error(c->loc(), "unknown function '" + c->callee + "'");
    return std::nullopt;
  }

  /// The node built-in `name` makes (builtins(): the selection and linear-algebra ones).
  static Node::Op opOf(const std::string &name) { return *builtins().at(name).op; }

  /// The signature of built-in `name` (builtins()).
  static Signature signatureOf(const std::string &name) {
    const Builtin &b = builtins().at(name);
    return Signature::builtin(name, b.params, b.optional);
  }

  /// compress(...) anywhere but as the whole merge expression (which analyze() takes apart
  /// before any call is checked here).
  std::optional<Value> callCompressInside(const ast::CallExpr *c) {
    diags_.error(c->loc(), "compress(...) writes a bundle, not a tensor: it must be the whole "
                           "merge expression (merge compress([a, b], rank = 64))");
    return std::nullopt;
  }

  std::optional<Value> callDef(const ast::CallExpr *c, const ast::DefDecl &def) {
    if (std::find(callStack_.begin(), callStack_.end(), def.name) != callStack_.end()) {
      diags_.error(c->loc(), "recursive call to '" + def.name + "' (defs are inlined)");
      return std::nullopt;
    }
    Signature sig{def.name};
    for (auto &p : def.params) {
      sig.params.push_back(p.name);
      sig.defaults.push_back(p.defaultValue.get());
      sig.hasBuiltinDefault.push_back(false);
    }
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    std::map<std::string, Value> scope;
    callStack_.push_back(def.name);
    callSites_.push_back({def.name, c->loc()});
    for (size_t i = 0; i < sig.params.size(); ++i) {
      SourceLoc at = argLoc(c, sig, i);
      bool defaulted = !(*bound)[i];
      if (defaulted) {
        // Defaults are evaluated at each call, in the def's scope (earlier parameters visible).
        scopes_.push_back(scope);
        auto v = eval(sig.defaults[i]);
        scopes_.pop_back();
        if (!v) {
          callStack_.pop_back();
          callSites_.pop_back();
          if (!limitHit_)
            diags_.note(c->loc(), "in call to '" + def.name + "'");
          return std::nullopt;
        }
        (*bound)[i] = *v;
        at = sig.defaults[i]->loc();
      }
      // `name: kind`: checked here, where the caller wrote the argument, so a method's range
      // error names the user's call and the method, not a line inside the library.
      const ast::DefParam &param = def.params[i];
      if (!param.kind.empty() &&
          !checkArgument(def.name, param.name, at, *(*bound)[i], *findParamKind(param.kind))) {
        callStack_.pop_back();
        callSites_.pop_back();
        if (defaulted) // the error shows the default: say which call used it
          diags_.note(c->loc(), "in call to '" + def.name + "'");
        return std::nullopt;
      }
      scope[sig.params[i]] = *(*bound)[i];
    }
    scopes_.push_back(std::move(scope));
    auto result = eval(def.body.get());
    scopes_.pop_back();
    callStack_.pop_back();
    callSites_.pop_back();
    if (!result && !limitHit_)
      diags_.note(c->loc(), "in call to '" + def.name + "'");
    return result;
  }

  std::optional<Value> callTv(const ast::CallExpr *c) {
    Signature sig = signatureOf("tv");
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    const Value &m = *(*bound)[0];
    if (m.isList() || m.node->kind != Kind::Tensor) {
      diags_.error(c->args[0].loc, std::string("tv expects a tensor (a model), got ") + kindName(m));
      return std::nullopt;
    }
    // tv(lora): the adapter's delta itself, not (MODEL + delta) - base.
    if (auto view = loraViews_.find(m.node); view != loraViews_.end()) {
      if ((*bound)[1]) {
        SourceLoc at = c->loc();
        for (auto &arg : c->args)
          if (arg.keyword == "from")
            at = arg.loc;
        diags_.error(at, "tv(" + view->second + ", from = ...): '" + view->second +
                             "' is a lora, whose task vector is its adapter's delta on the model "
                             "it is on; write tv(" + view->second + ")");
        return std::nullopt;
      }
      return Value{input(view->second, c->loc())};
    }
    const Node *from;
    if ((*bound)[1]) {
      const Value &f = *(*bound)[1];
      if (f.isList() || f.node->kind != Kind::Tensor) {
        SourceLoc at = c->args.size() > 1 ? c->args[1].loc : c->loc();
        for (auto &arg : c->args)
          if (arg.keyword == "from")
            at = arg.loc;
        diags_.error(at, std::string("tv's 'from' must be a tensor, got ") + kindName(f));
        return std::nullopt;
      }
      from = f.node;
    } else {
      if (!models_.count("base")) {
        diags_.error(c->loc(), "tv(m) subtracts the model named 'base', and there is none "
                               "(declare `model base = ...` or write tv(m, from = x))");
        return std::nullopt;
      }
      from = input("base", c->loc());
    }
    return Value{make(Node::Op::Sub, Kind::Tensor, {m.node, from}, c->loc())};
  }

  /// The list argument of a call taking one (len, the list reductions); nullopt after an error.
  std::optional<Value> listArgument(const ast::CallExpr *c) {
    Signature sig = signatureOf(c->callee);
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    const Value &xs = *(*bound)[0];
    if (!xs.isList()) {
      diags_.error(c->args[0].loc, c->callee + " expects a list, got " + kindName(xs));
      return std::nullopt;
    }
    return xs;
  }

  /// len(xs): how many items, a constant.
  std::optional<Value> callLen(const ast::CallExpr *c) {
    auto xs = listArgument(c);
    if (!xs)
      return std::nullopt;
    return Value{constant(static_cast<double>(xs->list->size()), c->loc())};
  }

  std::optional<Value> callListReduction(const ast::CallExpr *c) {
    auto list = listArgument(c);
    if (!list)
      return std::nullopt;
    const Value &xs = *list;
    if (nested(xs)) {
      diags_.error(c->args[0].loc, c->callee + " of " + kNestedHint);
      return std::nullopt;
    }
    if (xs.list->empty()) {
      diags_.error(c->args[0].loc, c->callee + " of an empty list");
      return std::nullopt;
    }
    std::vector<const Node *> operands;
    for (auto &v : *xs.list)
      operands.push_back(v.node);
    return Value{elementwise(kListReductions.at(c->callee), std::move(operands), c->loc())};
  }

  /// abs/sign/sqrt/exp(x), clamp(x, lo, hi) and where(mask, a, b): on scalars or tensors.
  std::optional<Value> callElementwise(const ast::CallExpr *c) {
    Signature sig = signatureOf(c->callee);
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    std::vector<Value> values;
    for (auto &v : *bound)
      values.push_back(*v);
    return zip(c, sig, values, [&](std::vector<const Node *> args, size_t) -> const Node * {
      if (auto it = kUnary.find(c->callee); it != kUnary.end())
        return elementwise(it->second, args, c->loc());
      if (auto op = builtins().at(c->callee).op) // where(mask, a, b): Select
        return elementwise(*op, args, c->loc());
      // clamp(x, lo, hi) = min(max(x, lo), hi)
      const Node *low = elementwise(Node::Op::Max, {args[0], args[1]}, c->loc());
      return elementwise(Node::Op::Min, {low, args[2]}, c->loc());
    });
  }

  /// Applies `fn` to the arguments, or item by item when some are lists (all of one length;
  /// the others repeat). `fn` gets the item's position (0 without lists).
  template <typename Fn>
  std::optional<Value> zip(const ast::CallExpr *c, const Signature &sig,
                           const std::vector<Value> &values, Fn fn) {
    std::optional<size_t> length;
    for (size_t i = 0; i < values.size(); ++i) {
      if (nested(values[i])) {
        diags_.error(argLoc(c, sig, i), c->callee + "'s '" + sig.params[i] + "' is " + kNestedHint);
        return std::nullopt;
      }
      if (!values[i].isList())
        continue;
      size_t n = values[i].list->size();
      if (length && *length != n) {
        diags_.error(argLoc(c, sig, i), c->callee + "'s '" + sig.params[i] + "' is a list of " +
                                            std::to_string(n) + ", another argument a list of " +
                                            std::to_string(*length));
        return std::nullopt;
      }
      length = n;
    }
    auto item = [&](size_t k) -> std::optional<const Node *> {
      std::vector<const Node *> args;
      for (auto &v : values)
        args.push_back(v.isList() ? (*v.list)[k].node : v.node);
      const Node *r = fn(args, k);
      if (!r)
        return std::nullopt;
      return r;
    };
    if (!length) {
      auto r = item(0);
      if (!r)
        return std::nullopt;
      return Value{*r};
    }
    auto out = std::make_shared<std::vector<Value>>();
    for (size_t k = 0; k < *length; ++k) {
      auto r = item(k);
      if (!r)
        return std::nullopt;
      out->push_back(Value{*r});
    }
    return Value{nullptr, out};
  }

  /// Where argument `i` of a call is written (the call itself when it was defaulted).
  SourceLoc argLoc(const ast::CallExpr *c, const Signature &sig, size_t i) {
    size_t positional = 0;
    for (auto &arg : c->args) {
      if (arg.keyword.empty() ? positional++ == i : arg.keyword == sig.params[i])
        return arg.loc;
    }
    return c->loc();
  }

  /// Checks a value bound to parameter `param` of `callee` against `kind`, a list item by item;
  /// reports at `loc`. A number known while compiling must be in the kind's range. A value
  /// computed while merging passes (the run counts NaN and inf in the outputs) unless the kind
  /// needs a number known while compiling, or `known` asks for one; a ramp is checked at its
  /// anchors, between which all of its values lie.
  bool checkArgument(const std::string &callee, const std::string &param, SourceLoc loc,
                     const Value &v, const ParamKind &kind, bool known = false) {
    std::string must = callee + ": " + param + " must be " + kind.rule;
    bool needKnown = known || kind.compileTime;
    if (nested(v)) {
      diags_.error(loc, must + ", got " + kNestedHint);
      return false;
    }
    if (v.isList()) {
      if (needKnown) {
        diags_.error(loc, must + " known while compiling, got a list");
        return false;
      }
      for (size_t i = 0; i < v.list->size(); ++i)
        if (!checkItem(must, loc, (*v.list)[i].node, kind, false,
                       " (list item " + std::to_string(i + 1) + ")"))
          return false;
      return true;
    }
    return checkItem(must, loc, v.node, kind, needKnown, "");
  }

  /// checkArgument for one value; `must` starts the message, `item` ends it (the list item).
  bool checkItem(const std::string &must, SourceLoc loc, const Node *n, const ParamKind &kind,
                 bool needKnown, const std::string &item) {
    if (n->op == Node::Op::String) {
      diags_.error(loc, must + ", got the string \"" + n->text + "\"" + item);
      return false;
    }
    if (auto v = constantValue(n, &program_.fixedParams)) {
      if (kind.accepts(*v))
        return true;
      diags_.error(loc, must + ", got " + formatNumber(*v) + item);
      return false;
    }
    if (needKnown) {
      const char *got = n->kind == Kind::Tensor ? "a tensor" : "a scalar computed per tensor";
      diags_.error(loc, must + " known while compiling (a number or a param), got " + got + item);
      return false;
    }
    if (n->op == Node::Op::Ramp && !kind.integer)
      for (const Node *anchor : n->operands)
        if (auto v = constantValue(anchor, &program_.fixedParams); v && !kind.accepts(*v)) {
          diags_.error(loc, must + ", got the ramp value " + formatNumber(*v) + item);
          return false;
        }
    return true;
  }

  /// A builtin's setting: a number known while compiling that `check` accepts, or an error.
  std::optional<double> setting(const ast::CallExpr *c, const Signature &sig, size_t i,
                                const Value &v, Check check) {
    if (!checkArgument(c->callee, sig.params[i], argLoc(c, sig, i), v, paramKind(check), true))
      return std::nullopt;
    return constantValue(v.node, &program_.fixedParams);
  }

  /// A `scope` argument: tensor (the default), model (every tensor the rule merges, as one
  /// flattened vector) or, where `rows` allows, row (each row of the last dimension).
  std::optional<Scope> scopeArg(const ast::CallExpr *c, const Signature &sig, size_t i,
                                const std::optional<Value> &v, bool rows = false) {
    if (!v)
      return Scope::Tensor;
    if (!v->isList() && v->node->op == Node::Op::String)
      if (auto it = kScopeNames.find(v->node->text);
          it != kScopeNames.end() && (rows || it->second != Scope::Row))
        return it->second;
    diags_.error(argLoc(c, sig, i), c->callee + "'s scope must be tensor" +
                                        std::string(rows ? ", row" : "") + " or model");
    return std::nullopt;
  }

  /// A `scope` argument that must be tensor or model: true for model.
  std::optional<bool> modelScope(const ast::CallExpr *c, const Signature &sig, size_t i,
                                 const std::optional<Value> &v) {
    auto scope = scopeArg(c, sig, i, v);
    if (!scope)
      return std::nullopt;
    return *scope == Scope::Model;
  }

  /// topk_mask(x, density, skip = 0, nonzero = false, scope = tensor), quantile(x, q), row_rank(x),
  /// bernoulli(p, seed = 0): item by item over lists; bernoulli's stream is the item position.
  std::optional<Value> callSelection(const ast::CallExpr *c) {
    const std::string &f = c->callee;
    Node::Op op = opOf(f);
    Signature sig = signatureOf(f);
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    std::optional<bool> wholeModel = false;
    if (op == Node::Op::TopK) {
      wholeModel = modelScope(c, sig, 4, (*bound)[4]);
      if (!wholeModel)
        return std::nullopt;
      bound->pop_back();
    }
    std::vector<Value> values;
    for (auto &v : *bound)
      values.push_back(v ? *v : Value{constant(0, c->loc())});
    // A node with its compile-time settings. zip stops at the first item that returns null.
    auto node = [&](Node::Op op, Kind kind, const Node *operand, double value, double value2 = 0,
                    bool flag = false, bool model = false) {
      Node n{op, kind};
      n.operands = {operand};
      n.value = value;
      n.value2 = value2;
      n.flag = flag;
      n.modelScope = model;
      n.loc = c->loc();
      return add(std::move(n));
    };
    return zip(c, sig, values, [&](std::vector<const Node *> args, size_t position) -> const Node * {
      if (op != Node::Op::Bernoulli && args[0]->kind != Kind::Tensor) {
        diags_.error(argLoc(c, sig, 0), f + " expects a tensor, got " + kindName(Value{args[0]}));
        return nullptr;
      }
      if (op == Node::Op::Bernoulli && args[0]->kind == Kind::Matrix) {
        diags_.error(argLoc(c, sig, 0), "bernoulli's p must be a scalar or a tensor, got a matrix");
        return nullptr;
      }
      if (op == Node::Op::RowRank)
        return make(Node::Op::RowRank, Kind::Tensor, {args[0]}, c->loc());
      if (op == Node::Op::Quantile) {
        auto q = setting(c, sig, 1, Value{args[1]}, Check::Fraction);
        if (!q)
          return nullptr;
        return node(Node::Op::Quantile, Kind::Scalar, args[0], *q);
      }
      if (op == Node::Op::TopK) {
        auto density = setting(c, sig, 1, Value{args[1]}, Check::Fraction);
        if (!density)
          return nullptr;
        auto skip = setting(c, sig, 2, Value{args[2]}, Check::Fraction);
        if (!skip)
          return nullptr;
        auto nonzero = setting(c, sig, 3, Value{args[3]}, Check::Flag);
        if (!nonzero)
          return nullptr;
        if (*nonzero != 0 && *skip != 0) {
          diags_.error(c->loc(), "topk_mask takes either skip or nonzero = true, not both");
          return nullptr;
        }
        return node(Node::Op::TopK, Kind::Tensor, args[0], *density, *skip, *nonzero != 0,
                    *wholeModel);
      }
      // p may be computed per element (della's rank probabilities); a p known while compiling
      // outside [0, 1] would silently act as 0 or 1.
      if (!checkArgument(f, sig.params[0], argLoc(c, sig, 0), Value{args[0]},
                         paramKind(Check::Fraction)))
        return nullptr;
      auto seed = setting(c, sig, 1, Value{args[1]}, Check::Seed);
      if (!seed)
        return nullptr;
      return node(Node::Op::Bernoulli, Kind::Tensor, asTensor(args[0]), *seed,
                  static_cast<double>(position));
    });
  }

  /// pairs_first(xs) / pairs_second(xs): for every pair i < j, in the order (0, 1), (0, 2), ...,
  /// (1, 2), ..., the list of xs[i] / of xs[j]. Pairwise statistics without loops.
  std::optional<Value> callPairsFirst(const ast::CallExpr *c) { return callPairs(c, false); }
  std::optional<Value> callPairsSecond(const ast::CallExpr *c) { return callPairs(c, true); }
  std::optional<Value> callPairs(const ast::CallExpr *c, bool second) {
    Signature sig = signatureOf(c->callee);
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    const Value &xs = *(*bound)[0];
    if (!xs.isList() || xs.list->size() < 2) {
      diags_.error(argLoc(c, sig, 0), c->callee + " expects a list of at least 2, got " +
                                          (xs.isList() ? "a list of " + std::to_string(xs.list->size())
                                                       : std::string(kindName(xs))));
      return std::nullopt;
    }
    size_t n = xs.list->size();
    if (!checkListLength(n * (n - 1) / 2, c->loc()) || !work(n * (n - 1) / 2, c->loc()))
      return std::nullopt;
    auto out = std::make_shared<std::vector<Value>>();
    for (size_t i = 0; i < xs.list->size(); ++i)
      for (size_t j = i + 1; j < xs.list->size(); ++j)
        out->push_back((*xs.list)[second ? j : i]);
    return Value{nullptr, out};
  }

  /// pick(xs, i): item i (from 0) of a list. There is no list indexing in the language; a
  /// builtin with i known while compiling (a literal, or a param that `--set` changes, which
  /// then recompiles) keeps lists a compile-time construct. free_merge picks the task whose
  /// expert it adds.
  std::optional<Value> callPick(const ast::CallExpr *c) {
    Signature sig = signatureOf(c->callee);
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    const Value &xs = *(*bound)[0];
    if (!xs.isList() || xs.list->empty()) {
      diags_.error(argLoc(c, sig, 0), "pick expects a non-empty list, got " +
                                          (xs.isList() ? std::string("an empty list")
                                                       : std::string(kindName(xs))));
      return std::nullopt;
    }
    const Value &index = *(*bound)[1];
    std::optional<double> i;
    if (!index.isList())
      i = constantValue(index.node, &program_.fixedParams);
    double n = static_cast<double>(xs.list->size());
    if (!i || !(*i >= 0 && *i < n) || *i != std::floor(*i)) {
      diags_.error(argLoc(c, sig, 1),
                   "pick: i must be an integer in [0, " + std::to_string(xs.list->size()) +
                       ") known while compiling" +
                       (i ? ", got " + formatNumber(*i) : std::string()));
      return std::nullopt;
    }
    return (*xs.list)[static_cast<size_t>(*i)];
  }

  /// weiszfeld(xs, weights = 1, eps = 1e-8, max_iter = 100, tol = 1e-6): the coefficients c_i
  /// of the weighted geometric median sum(c_i * xs[i]) by Weiszfeld's iteration. Every iterate
  /// is a combination of the xs, so the iteration runs on their Gram matrix (one fused pass of
  /// dot products, kept in f64) in a real loop over coefficients, not over the data.
  std::optional<Value> callWeiszfeld(const ast::CallExpr *c) {
    Signature sig = signatureOf("weiszfeld");
    // eps keeps 1 / distance finite; tol compares norms.
    auto made = weightedGram(c, sig, Node::Op::Weiszfeld, 5, {1e-8, 100, 1e-6},
                             {Check::Positive, Check::Iterations, Check::NonNegative});
    if (!made)
      return std::nullopt;
    made->group.value = made->settings[0];
    made->group.value3 = made->settings[1];
    made->group.value2 = made->settings[2];
    return coefficients(std::move(made->group), made->m);
  }


  /// The tensors of argument 0 (a list) and their scalar weights from argument 1 (one for all,
  /// or a list as long; 1 when not given); false after an error.
  bool pointsAndWeights(const ast::CallExpr *c, const Signature &sig,
                        const std::vector<std::optional<Value>> &bound,
                        std::vector<const Node *> &points, std::vector<const Node *> &weights) {
    const Value &xs = *bound[0];
    size_t m = xs.list->size();
    weights.assign(m, constant(1, c->loc()));
    if (bound[1]) {
      const Value &w = *bound[1];
      if (w.isList() && w.list->size() != m) {
        diags_.error(argLoc(c, sig, 1), "a list of " + std::to_string(w.list->size()) +
                                            " weights for " + std::to_string(m) + " tensors");
        return false;
      }
      for (size_t i = 0; i < m; ++i)
        weights[i] = w.isList() ? (*w.list)[i].node : w.node;
    }
    for (size_t i = 0; i < m; ++i) {
      if ((*xs.list)[i].isList() || (*xs.list)[i].node->kind != Kind::Tensor ||
          !weights[i] || weights[i]->kind != Kind::Scalar) {
        diags_.error(c->loc(), c->callee + " takes a list of tensors and scalar weights");
        return false;
      }
      points.push_back((*xs.list)[i].node);
    }
    return true;
  }

  /// multislerp_coefficients(xs, weights = 1, eps = 1e-8, scope = tensor): the coefficients c_i
  /// of mergekit's multislerp sum(c_i * xs[i]) (weights as given: the caller normalizes them).
  /// Every vector multislerp forms (units, their weighted mean, the tangent) is a combination of
  /// the xs, so its norms and dot products come from the Gram matrix: one fused pass of dot
  /// products in f64 instead of a pass per dependent norm.
  std::optional<Value> callMultislerp(const ast::CallExpr *c) {
    Signature sig = signatureOf("multislerp_coefficients");
    auto made = weightedGram(c, sig, Node::Op::Multislerp, 3, {1e-8}, {Check::NonNegative});
    if (!made)
      return std::nullopt;
    made->group.value = made->settings[0];
    return coefficients(std::move(made->group), made->m);
  }

  /// What weiszfeld and multislerp_coefficients share: xs (argument 0, a non-empty list of
  /// tensors), their weights (argument 1), the scope (argument `scopeArg`), the settings known
  /// while compiling from argument 2 on, and the group node of `op` over the Gram matrix of the
  /// xs followed by the weights; nullopt after an error.
  struct WeightedGram {
    Node group;
    std::vector<double> settings;
    size_t m;
  };
  std::optional<WeightedGram> weightedGram(const ast::CallExpr *c, const Signature &sig,
                                           Node::Op op, size_t scopeArg,
                                           std::vector<double> defaults,
                                           const std::vector<Check> &checks) {
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    std::optional<bool> wholeModel = modelScope(c, sig, scopeArg, (*bound)[scopeArg]);
    if (!wholeModel)
      return std::nullopt;
    const Value &xs = *(*bound)[0];
    if (!xs.isList() || xs.list->empty()) {
      diags_.error(argLoc(c, sig, 0), c->callee + " expects a non-empty list of tensors");
      return std::nullopt;
    }
    std::vector<const Node *> points, weights;
    if (!pointsAndWeights(c, sig, *bound, points, weights))
      return std::nullopt;
    auto settings = compileTimeSettings(c, sig, *bound, 2, std::move(defaults), checks);
    if (!settings)
      return std::nullopt;
    if ((*bound)[1] && !checkArgument(c->callee, sig.params[1], argLoc(c, sig, 1), *(*bound)[1],
                                      paramKind(Check::Finite)))
      return std::nullopt;
    if (!affordableGram(points.size(), c->loc()))
      return std::nullopt;
    Node group = gramGroup(op, points, *wholeModel, c->loc());
    for (const Node *w : weights)
      group.operands.push_back(w);
    return WeightedGram{std::move(group), std::move(*settings), points.size()};
  }


  /// The numbers bound to sig's parameters first, first + 1, ..., each a setting of its kind
  /// (`checks`), or its default (`values`) when not given; nullopt after an error.
  std::optional<std::vector<double>> compileTimeSettings(
      const ast::CallExpr *c, const Signature &sig,
      const std::vector<std::optional<Value>> &bound, size_t first, std::vector<double> values,
      const std::vector<Check> &checks) {
    for (size_t k = 0; k < values.size(); ++k)
      if (bound[first + k]) {
        auto v = setting(c, sig, first + k, *bound[first + k], checks[k]);
        if (!v)
          return std::nullopt;
        values[k] = *v;
      }
    return values;
  }

  /// karcher_coefficients(xs, max_iter = 10, tol = 1e-5, scope = tensor): the coefficients c_i of the Karcher
  /// mean sum(c_i * xs[i]) as mergekit's karcher merge computes it, with equal weights: the
  /// Riemannian mean of the directions xs[i] / |xs[i]| on the unit sphere, scaled by the mean
  /// norm. Like weiszfeld, a loop over coefficients on the Gram matrix. One tensor is its own
  /// mean: [1], no loop.
  std::optional<Value> callKarcher(const ast::CallExpr *c) {
    Signature sig = signatureOf("karcher_coefficients");
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    std::optional<bool> wholeModel = modelScope(c, sig, 3, (*bound)[3]);
    if (!wholeModel)
      return std::nullopt;
    const Value &xs = *(*bound)[0];
    std::vector<const Node *> points;
    if (xs.isList())
      for (const Value &x : *xs.list)
        points.push_back(x.node);
    if (points.empty() || std::any_of(points.begin(), points.end(), [](const Node *x) {
          return !x || x->kind != Kind::Tensor;
        })) {
      diags_.error(argLoc(c, sig, 0), "karcher_coefficients expects a non-empty list of tensors");
      return std::nullopt;
    }
    // tol is both a norm and an angle threshold.
    auto found = compileTimeSettings(c, sig, *bound, 1, {10, 1e-5},
                                     {Check::Iterations, Check::NonNegative});
    if (!found)
      return std::nullopt;
    const std::vector<double> &settings = *found;
    if (points.size() == 1)
      return Value{nullptr, std::make_shared<std::vector<Value>>(1, Value{constant(1, c->loc())})};
    if (!affordableGram(points.size(), c->loc()))
      return std::nullopt;
    Node group = gramGroup(Node::Op::Karcher, points, *wholeModel, c->loc());
    group.value = settings[1];
    group.value3 = settings[0];
    return coefficients(std::move(group), points.size());
  }

  /// Whether the Gram matrix of m tensors (m (m + 1) / 2 products and sums) and the iteration
  /// on it (~12 m^2 operations) fit in kMaxOperations: checked before building them, since a
  /// list of thousands of tensors would otherwise build millions of nodes first.
  bool affordableGram(size_t m, SourceLoc loc) { return affordable(13 * m * m + 2 * m, loc); }

  /// The node of an iteration in coefficient space over xs (every iterate is sum c_i xs[i]):
  /// its first operands are the Gram matrix's upper triangle, dot(xs[i], xs[j]) for i <= j row
  /// by row, each a reduction (over the current tensor, or with wholeModel over every tensor the
  /// rule merges) whose f64 total the lowering reads.
  Node gramGroup(Node::Op op, const std::vector<const Node *> &xs, bool wholeModel,
                 SourceLoc loc) {
    Node group{op, Kind::Scalar};
    for (size_t i = 0; i < xs.size(); ++i)
      for (size_t j = i; j < xs.size(); ++j)
        group.operands.push_back(reduction(Node::Op::ReduceSum,
                                           elementwise(Node::Op::Mul, {xs[i], xs[j]}, loc),
                                           wholeModel, loc));
    group.loc = loc;
    return group;
  }

  /// The list of the m coefficients a coefficient-space iteration computes.
  Value coefficients(Node group, size_t m) {
    const Node *solved = add(std::move(group));
    auto out = std::make_shared<std::vector<Value>>();
    for (size_t i = 0; i < m; ++i) {
      Node coef{Node::Op::Coefficient, Kind::Scalar};
      coef.operands = {solved};
      coef.value = static_cast<double>(i);
      coef.loc = solved->loc;
      out->push_back(Value{add(std::move(coef))});
    }
    return Value{nullptr, out};
  }

  /// require(condition, "message", value): `value`, after checking while compiling that the
  /// condition (known while compiling) holds; else an error with the message. Lets library code
  /// reject options it does not support instead of ignoring them.
  std::optional<Value> callRequire(const ast::CallExpr *c) {
    Signature sig = signatureOf("require");
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    const Value &cond = *(*bound)[0], &message = *(*bound)[1];
    if (message.isList() || message.node->op != Node::Op::String) {
      diags_.error(argLoc(c, sig, 1), "require's message must be a string");
      return std::nullopt;
    }
    auto holds = cond.isList() ? std::nullopt : constantValue(cond.node, &program_.fixedParams);
    if (!holds) {
      diags_.error(argLoc(c, sig, 0), "require's condition must be known while compiling");
      return std::nullopt;
    }
    if (*holds == 0) {
      diags_.error(c->loc(), message.node->text);
      return std::nullopt;
    }
    return *(*bound)[2];
  }

  /// broadcast(w, xs): a list as long as xs: w repeated, or w itself when it is such a list.
  /// Lets library code take `weights = 1` or a list of weights alike.
  std::optional<Value> callBroadcast(const ast::CallExpr *c) {
    Signature sig = signatureOf("broadcast");
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    const Value &w = *(*bound)[0], &xs = *(*bound)[1];
    if (!xs.isList()) {
      diags_.error(c->args[1].loc, std::string("broadcast expects a list, got ") + kindName(xs));
      return std::nullopt;
    }
    if (w.isList()) {
      if (w.list->size() != xs.list->size()) {
        diags_.error(c->args[0].loc, "a list of " + std::to_string(w.list->size()) +
                                         " values for a list of " +
                                         std::to_string(xs.list->size()));
        return std::nullopt;
      }
      return w;
    }
    if (!work(xs.list->size(), c->loc()))
      return std::nullopt;
    return Value{nullptr, std::make_shared<std::vector<Value>>(xs.list->size(), w)};
  }

  /// A reduction of op over x at the call's scope: the whole current tensor (scope = model:
  /// every tensor the rule merges), to a scalar, or (scope = row) each row, to a tensor.
  using Reduce = std::function<const Node *(Node::Op op, const Node *x)>;
  /// What a reduction builtin computes from its tensor arguments, reducing with `reduce`.
  using ReductionOf =
      std::function<const Node *(const Reduce &reduce, const std::vector<const Node *> &x)>;

  /// total(x): the sum of the elements.
  std::optional<Value> callTotal(const ast::CallExpr *c) {
    return callReduction(c, 1, [](const Reduce &reduce, const std::vector<const Node *> &x) {
      return reduce(Node::Op::ReduceSum, x[0]);
    });
  }

  /// dot(x, y): the sum of the elementwise products.
  std::optional<Value> callDot(const ast::CallExpr *c) {
    return callReduction(c, 2, [&](const Reduce &reduce, const std::vector<const Node *> &x) {
      return reduce(Node::Op::ReduceSum, elementwise(Node::Op::Mul, x, c->loc()));
    });
  }

  /// count(mask): the non-zero elements.
  std::optional<Value> callCount(const ast::CallExpr *c) {
    return callReduction(c, 1, [&](const Reduce &reduce, const std::vector<const Node *> &x) {
      return reduce(Node::Op::ReduceSum,
                    elementwise(Node::Op::Cmp, {x[0], constant(0, c->loc())}, c->loc(), ast::BinaryOp::Ne));
    });
  }

  /// norm(x, p = 2) for p = 1, 2 or inf, known while compiling.
  std::optional<Value> callNorm(const ast::CallExpr *c) {
    double p = 2;
    auto normOf = [&](const Reduce &reduce, const std::vector<const Node *> &x) {
      const Node *magnitude = elementwise(Node::Op::Abs, {x[0]}, c->loc());
      if (std::isinf(p))
        return reduce(Node::Op::ReduceMax, magnitude);
      if (p == 1)
        return reduce(Node::Op::ReduceSum, magnitude);
      const Node *squares = elementwise(Node::Op::Mul, {x[0], x[0]}, c->loc());
      return elementwise(Node::Op::Sqrt, {reduce(Node::Op::ReduceSum, squares)}, c->loc());
    };
    auto checkP = [&](const Signature &sig, const std::optional<Value> &pv) {
      if (!pv)
        return true;
      std::optional<double> known =
          pv->isList() ? std::nullopt : constantValue(pv->node, &program_.fixedParams);
      if (!known || (*known != 1 && *known != 2 && !(std::isinf(*known) && *known > 0))) {
        diags_.error(argLoc(c, sig, 1), "norm's p must be 1, 2 or inf");
        return false;
      }
      p = *known;
      return true;
    };
    return callReduction(c, 1, normOf, checkP);
  }

  /// The reductions' common part: binds the call, checks its scope (the last parameter) and
  /// `check(sig, the second argument)` if given, and builds `build` of the first `arity`
  /// arguments, item by item over lists; a matrix is reduced over its own elements, inside
  /// its matrix phase (no scope).
  std::optional<Value>
  callReduction(const ast::CallExpr *c, size_t arity, const ReductionOf &build,
                const std::function<bool(const Signature &, const std::optional<Value> &)>
                    &check = nullptr) {
    Signature sig = signatureOf(c->callee);
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    std::optional<Scope> scope = scopeArg(c, sig, bound->size() - 1, bound->back(), true);
    if (!scope)
      return std::nullopt;
    if (check && !check(sig, (*bound)[1]))
      return std::nullopt;
    std::vector<Value> values;
    for (size_t i = 0; i < arity; ++i)
      values.push_back(*(*bound)[i]);
    return zip(c, sig, values, [&](std::vector<const Node *> tensors, size_t) -> const Node * {
      for (size_t i = 0; i < tensors.size(); ++i) {
        if (tensors[i]->kind == Kind::Scalar) {
          diags_.error(argLoc(c, sig, i), c->callee + " expects a tensor, got a scalar");
          return nullptr;
        }
        if (tensors[i]->kind == Kind::Matrix && *scope != Scope::Tensor) {
          diags_.error(argLoc(c, sig, bound->size() - 1),
                       c->callee + " of a matrix takes no scope (it covers the matrix)");
          return nullptr;
        }
      }
      Reduce reduce = [&](Node::Op op, const Node *x) {
        if (*scope == Scope::Row)
          return make(op == Node::Op::ReduceSum ? Node::Op::RowSum : Node::Op::RowMax,
                      Kind::Tensor, {x}, c->loc());
        return reduction(op, x, *scope == Scope::Model, c->loc());
      };
      return build(reduce, tensors);
    });
  }

  /// let NAME = VALUE in BODY, let (A, B, ...) = LIST in BODY: BODY evaluated with the names
  /// bound (on top of the enclosing def's parameters); the names are visible nowhere else.
  std::optional<Value> evalLet(const ast::LetExpr *let) {
    auto value = eval(let->value.get());
    if (!value)
      return std::nullopt;
    std::map<std::string, Value> scope;
    if (!scopes_.empty())
      scope = scopes_.back();
    std::set<std::string> seen;
    for (auto &[name, loc] : let->names) {
      if (isBuiltinName(name)) {
        diags_.error(loc, "let '" + name + "' redefines a built-in name");
        return std::nullopt;
      }
      if (!seen.insert(name).second) {
        diags_.error(loc, "'" + name + "' is bound twice in one let");
        return std::nullopt;
      }
    }
    if (let->tuple) {
      size_t n = let->names.size();
      if (!value->isList() || value->list->size() != n) {
        diags_.error(let->value->loc(),
                     "let (" + std::to_string(n) + " names) takes a list of " + std::to_string(n) +
                         " items, got " +
                         (value->isList() ? "a list of " + std::to_string(value->list->size())
                                          : std::string(kindName(*value))));
        return std::nullopt;
      }
      for (size_t i = 0; i < n; ++i)
        scope[let->names[i].first] = (*value->list)[i];
    } else {
      scope[let->names[0].first] = *value;
    }
    scopes_.push_back(std::move(scope));
    auto result = eval(let->body.get());
    scopes_.pop_back();
    return result;
  }

  /// The linear algebra builtins: transpose(x), diag(v), orth(x), cumsum(x), rank_of(x), cols_of(x, k),
  /// rows_of(x, k), lowrank(x, rank), svd(x, rank = all), rsvd(x, rank, oversample = 8,
  /// iters = 2, seed = 0), hcat(xs), vcat(xs). x may be a tensor (the current tensor as a
  /// matrix) or a matrix, and a list goes item by item; svd and rsvd give the list [u, s, vt]
  /// (of a list: [the u's, the s's, the vt's], for let (us, ss, vts) = svd(tvs)).
  std::optional<Value> callMatrix(const ast::CallExpr *c) {
    const std::string &f = c->callee;
    Node::Op op = opOf(f);
    Signature sig = signatureOf(f);
    auto bound = bind(c, sig);
    if (!bound)
      return std::nullopt;
    auto isMatrix = [&](const Node *x, size_t i) {
      if (x->kind != Kind::Scalar)
        return true;
      diags_.error(argLoc(c, sig, i), f + " expects a matrix or a tensor, got a scalar");
      return false;
    };
    if (op == Node::Op::HCat || op == Node::Op::VCat) {
      const Value &xs = *(*bound)[0];
      if (!xs.isList() || xs.list->empty()) {
        diags_.error(argLoc(c, sig, 0), f + " expects a non-empty list of matrices, got " +
                                            (xs.isList() ? "an empty list" : kindName(xs)));
        return std::nullopt;
      }
      std::vector<const Node *> parts;
      for (const Value &x : *xs.list) {
        if (x.isList()) {
          diags_.error(argLoc(c, sig, 0), f + " expects a list of matrices, got a list of lists");
          return std::nullopt;
        }
        if (!isMatrix(x.node, 0))
          return std::nullopt;
        parts.push_back(x.node);
      }
      return Value{make(op, Kind::Matrix, std::move(parts), c->loc())};
    }
    // rsvd's settings shape the program (the sketch's width, the loop): known while compiling.
    std::vector<double> settings = {8, 2, 0};
    if (op == Node::Op::Rsvd) {
      auto found = compileTimeSettings(c, sig, *bound, 2, settings,
                                       {Check::Iterations, Check::Iterations, Check::Seed});
      if (!found)
        return std::nullopt;
      settings = *found;
    }
    bool spectral = op == Node::Op::Highpass || op == Node::Op::Lowpass;
    if (spectral) {
      // ratio: 0.9 by default (FR-Merging's); in (0, 1] where known while compiling, else the
      // runtime checks it for each tensor.
      if (!(*bound)[1])
        (*bound)[1] = Value{constant(0.9, c->loc())};
      else if (!checkArgument(f, sig.params[1], argLoc(c, sig, 1), *(*bound)[1],
                              paramKind(Check::Density)))
        return std::nullopt;
    }
    // The second operand: a count (k, rank) or the filter's ratio; svd's rank is optional.
    bool hasCount = op == Node::Op::TakeCols || op == Node::Op::TakeRows ||
                    op == Node::Op::LowRank || op == Node::Op::Rsvd ||
                    (op == Node::Op::Svd && (*bound)[1]) || spectral;
    std::vector<Value> values{*(*bound)[0]};
    if (hasCount)
      values.push_back(*(*bound)[1]);
    std::vector<Value> groups; // svd / rsvd: the group node of each item
    auto item = [&](std::vector<const Node *> args, size_t) -> const Node * {
      if (!isMatrix(args[0], 0))
        return nullptr;
      if (hasCount && args[1]->kind != Kind::Scalar) {
        diags_.error(argLoc(c, sig, 1), f + "'s " + sig.params[1] + " must be a scalar, got " +
                                            kindName(Value{args[1]}));
        return nullptr;
      }
      switch (op) {
      case Node::Op::Transpose:
      case Node::Op::Diag:
      case Node::Op::Orth:
      case Node::Op::CumSum:
        return make(op, Kind::Matrix, {args[0]}, c->loc());
      // A filter keeps its operand's shape: of a tensor it is a tensor, so tensor-only
      // operations (topk_mask in ties, ...) take it, after the matrix phase that computes it.
      case Node::Op::Highpass:
      case Node::Op::Lowpass:
        return make(op, args[0]->kind == Kind::Tensor ? Kind::Tensor : Kind::Matrix, args,
                    c->loc());
      case Node::Op::RankOf:
        return make(op, Kind::Scalar, {args[0]}, c->loc());
      case Node::Op::TakeCols:
      case Node::Op::TakeRows:
      case Node::Op::LowRank:
        return make(op, Kind::Matrix, args, c->loc());
      default:
        break;
      }
      Node group{op, Kind::Matrix}; // svd, rsvd: the group their factors' parts read
      group.operands = args;
      group.flag = hasCount;
      group.value = settings[0];
      group.value2 = settings[1];
      group.value3 = settings[2];
      group.loc = c->loc();
      return add(std::move(group));
    };
    auto result = zip(c, sig, values, item);
    if (!result || (op != Node::Op::Svd && op != Node::Op::Rsvd))
      return result;
    // The factors of each decomposition; of a list, one list per factor.
    auto parts = [&](const Node *group) {
      auto out = std::make_shared<std::vector<Value>>();
      for (int k = 0; k < 3; ++k) {
        Node part{Node::Op::SvdPart, Kind::Matrix};
        part.operands = {group};
        part.value = k;
        part.loc = c->loc();
        out->push_back(Value{add(std::move(part))});
      }
      return out;
    };
    if (!result->isList())
      return Value{nullptr, parts(result->node)};
    auto factors = std::make_shared<std::vector<Value>>();
    for (int k = 0; k < 3; ++k)
      factors->push_back(Value{nullptr, std::make_shared<std::vector<Value>>()});
    for (const Value &g : *result->list) {
      auto three = parts(g.node);
      for (int k = 0; k < 3; ++k)
        (*factors)[k].list->push_back((*three)[k]);
    }
    return Value{nullptr, factors};
  }

  std::optional<Value> callRamp(const ast::CallExpr *c) {
    if (c->args.empty()) {
      diags_.error(c->loc(), "ramp needs at least one value");
      return std::nullopt;
    }
    std::vector<const Node *> anchors;
    for (auto &arg : c->args) {
      if (!arg.keyword.empty()) {
        diags_.error(arg.loc, "ramp takes no keyword arguments");
        return std::nullopt;
      }
      auto v = eval(arg.value.get());
      if (!v)
        return std::nullopt;
      if (v->isList() || v->node->kind != Kind::Scalar) {
        diags_.error(arg.loc, std::string("ramp values must be scalars, got ") + kindName(*v));
        return std::nullopt;
      }
      if (!checkArgument("ramp", "each value", arg.loc, *v, paramKind(Check::Finite)))
        return std::nullopt;
      anchors.push_back(v->node);
    }
    return Value{make(Node::Op::Ramp, Kind::Scalar, std::move(anchors), c->loc())};
  }

  const ast::Recipe &recipe_;
  Program &program_;
  DiagnosticEngine &diags_;
  std::map<std::string, SourceLoc> declared_;
  std::map<std::string, const ast::ModelDecl *> models_;
  std::map<std::string, const ast::LoraDecl *> loras_;
  std::map<std::string, const ast::BundleDecl *> bundles_;
  /// The values `NAME` gives for a lora (MODEL + its delta), so tv() can take the delta back.
  std::map<const Node *, std::string> loraViews_;
  std::map<std::string, double> params_;
  std::map<std::string, const ast::DefDecl *> defs_;
  std::map<std::string, const Node *> inputs_;
  std::vector<std::map<std::string, Value>> scopes_;
  std::vector<std::string> callStack_;
  std::vector<std::pair<std::string, SourceLoc>> callSites_; ///< the defs being inlined
  size_t evalDepth_ = 0;
  size_t operations_ = 0; ///< operationCost of every node so far
  size_t evaluationSteps_ = 0;
  bool limitHit_ = false;
  std::set<std::string> libraryDefs_;
};

bool applyOverrides(const ast::Recipe &recipe, const Overrides &overrides,
                    std::map<std::string, double> &params, Program &program,
                    DiagnosticEngine &diags) {
  for (auto &[name, text] : overrides.params) {
    if (!params.count(name)) {
      diags.error({}, "--set " + name + "=" + text + ": the recipe has no param '" + name + "'");
      return false;
    }
    // The recipe's own number grammar and conversion: what `param NAME = TEXT` would accept.
    auto v = rt::parseNumber(text);
    if (!v) {
      diags.error({}, "--set " + name + "=" + text + ": '" + text +
                          "' is not a number (write it as in a recipe: 0.5, -2, 1e-3)");
      return false;
    }
    if (!std::isfinite(*v)) {
      diags.error({}, "--set " + name + "=" + text +
                          ": number out of range (larger than a double can hold)");
      return false;
    }
    params[name] = *v;
  }
  for (auto &[name, path] : overrides.models) {
    auto it = std::find_if(program.models.begin(), program.models.end(),
                           [&](const Model &m) { return m.name == name; });
    if (it == program.models.end()) {
      diags.error({}, "--model " + name + "=" + path + ": the recipe has no model '" + name + "'");
      return false;
    }
    it->path = path;
  }
  for (auto &p : recipe.params)
    if (auto it = params.find(p.name); it != params.end())
      program.params.emplace_back(p.name, it->second);
  return true;
}

/// A node of the DAG under `root` for which `match` holds, if any.
template <typename Match> const Node *findNode(const Node *root, Match match) {
  std::set<const Node *> seen;
  std::vector<const Node *> work{root};
  while (!work.empty()) {
    const Node *n = work.back();
    work.pop_back();
    if (!seen.insert(n).second)
      continue;
    if (match(n))
      return n;
    for (const Node *o : n->operands)
      work.push_back(o);
  }
  return nullptr;
}

/// Where an expression starts in the text (binary expressions are located at their operator).
SourceLoc startOf(const ast::Expr *e) {
  if (auto *b = dyn_cast<ast::BinaryExpr>(e))
    return startOf(b->lhs.get());
  return e->loc();
}

/// The `layers` declaration: each source a declared model (not a lora) with an integer range
/// begin < end, the sources of a slice of one length and each named once. Reports every problem.
bool checkLayers(const ast::Recipe &recipe, Program &program, DiagnosticEngine &diags) {
  if (recipe.layers.empty())
    return true;
  if (recipe.layers.size() > 1) {
    diags.error(recipe.layers[1].loc, "only one 'layers' declaration is allowed");
    diags.note(recipe.layers[0].loc, "the first one is here");
    return false;
  }
  // Past 8 digits a layer index is no longer one layerIndex reads from a tensor name.
  constexpr double kMaxLayer = 1e8;
  unsigned errors = diags.errorCount();
  auto bound = [&](double value, SourceLoc loc, const char *what) -> std::optional<int> {
    if (value != std::floor(value) || value < 0 || value >= kMaxLayer) {
      diags.error(loc, std::string("a layer range's ") + what +
                           " must be an integer in [0, 100000000), got " +
                           formatNumber(value));
      return std::nullopt;
    }
    return static_cast<int>(value);
  };
  for (const ast::LayerSlice &slice : recipe.layers[0].slices) {
    rt::LayerSlice checked;
    for (const ast::LayerSource &source : slice.sources) {
      const Model *model = program.findModel(source.model);
      if (!model) {
        diags.error(source.modelLoc, "unknown model '" + source.model + "' in 'layers'");
        continue;
      }
      if (model->lora) {
        diags.error(source.modelLoc, "'" + source.model + "' is a lora; a layer slice takes a "
                                     "model's layers (the rules can apply the adapter: `" +
                                     source.model + "` or `tv(" + source.model + ")`)");
        continue;
      }
      auto begin = bound(source.start, source.startLoc, "start");
      auto end = bound(source.end, source.endLoc, "end");
      if (!begin || !end)
        continue;
      if (*begin >= *end) {
        diags.error(source.loc, "the layer range " + source.model + "[" + std::to_string(*begin) +
                                    ":" + std::to_string(*end) +
                                    "] is empty (the start must be below the end)");
        continue;
      }
      for (const rt::LayerSlice::Source &other : checked.sources)
        if (other.model == source.model) {
          diags.error(source.modelLoc, "model '" + source.model +
                                           "' is named twice in one slice (each source of a "
                                           "slice reads its own model's layers)");
          break;
        }
      if (!checked.sources.empty() && *end - *begin != checked.length()) {
        const auto &first = checked.sources.front();
        diags.error(source.loc, "the sources of a slice must be of one length: " + source.model +
                                    "[" + std::to_string(*begin) + ":" + std::to_string(*end) +
                                    "] has " + std::to_string(*end - *begin) + " layers, " +
                                    first.model + "[" + std::to_string(first.begin) + ":" +
                                    std::to_string(first.end) + "] " +
                                    std::to_string(checked.length()));
        continue;
      }
      checked.sources.push_back({source.model, *begin, *end});
    }
    if (!checked.sources.empty())
      program.layers.push_back(std::move(checked));
  }
  return diags.errorCount() == errors;
}

std::string resolveModelPath(const std::string &recipeFile, const std::string &path) {
  std::filesystem::path p(path);
  if (p.is_absolute())
    return path;
  return (std::filesystem::path(recipeFile).parent_path() / p).lexically_normal().string();
}

const std::map<std::string, Evaluator::Builtin> &Evaluator::builtins() {
  using E = Evaluator;
  static const std::map<std::string, Builtin> table = [] {
    std::map<std::string, Builtin> t = {
        {"tv", {&E::callTv, {"m", "from"}, {"from"}}},
        {"len", {&E::callLen, {"xs"}}},
        {"clamp", {&E::callElementwise, {"x", "lo", "hi"}}},
        {"where", {&E::callElementwise, {"mask", "a", "b"}, {}, Node::Op::Select}},
        {"broadcast", {&E::callBroadcast, {"w", "xs"}}},
        {"pairs_first", {&E::callPairsFirst, {"xs"}}},
        {"pairs_second", {&E::callPairsSecond, {"xs"}}},
        {"pick", {&E::callPick, {"xs", "i"}}},
        // Checked where it is the whole merge expression (analyze()); an error anywhere else.
        {"compress",
         {&E::callCompressInside,
          {"models", "rank", "rate", "exclude", "oversample", "iters", "seed"},
          {"rank", "rate", "exclude", "oversample", "iters", "seed"}}},
        {"weiszfeld",
         {&E::callWeiszfeld,
          {"xs", "weights", "eps", "max_iter", "tol", "scope"},
          {"weights", "eps", "max_iter", "tol", "scope"}}},
        {"karcher_coefficients",
         {&E::callKarcher, {"xs", "max_iter", "tol", "scope"}, {"max_iter", "tol", "scope"}}},
        {"multislerp_coefficients",
         {&E::callMultislerp, {"xs", "weights", "eps", "scope"}, {"weights", "eps", "scope"}}},
        {"require", {&E::callRequire, {"condition", "message", "value"}}},
        {"total", {&E::callTotal, {"x", "scope"}, {"scope"}}},
        {"dot", {&E::callDot, {"x", "y", "scope"}, {"scope"}}},
        {"norm", {&E::callNorm, {"x", "p", "scope"}, {"p", "scope"}}},
        {"count", {&E::callCount, {"mask", "scope"}, {"scope"}}},
        {"ramp", {&E::callRamp, {}}},
        {"topk_mask",
         {&E::callSelection, {"x", "density", "skip", "nonzero", "scope"},
          {"skip", "nonzero", "scope"}, Node::Op::TopK}},
        {"quantile", {&E::callSelection, {"x", "q"}, {}, Node::Op::Quantile}},
        {"row_rank", {&E::callSelection, {"x"}, {}, Node::Op::RowRank}},
        {"bernoulli", {&E::callSelection, {"p", "seed"}, {"seed"}, Node::Op::Bernoulli}},
        // Linear algebra (callMatrix).
        {"transpose", {&E::callMatrix, {"x"}, {}, Node::Op::Transpose}},
        {"diag", {&E::callMatrix, {"x"}, {}, Node::Op::Diag}},
        {"orth", {&E::callMatrix, {"x"}, {}, Node::Op::Orth}},
        {"cumsum", {&E::callMatrix, {"x"}, {}, Node::Op::CumSum}},
        {"rank_of", {&E::callMatrix, {"x"}, {}, Node::Op::RankOf}},
        {"cols_of", {&E::callMatrix, {"x", "k"}, {}, Node::Op::TakeCols}},
        {"rows_of", {&E::callMatrix, {"x", "k"}, {}, Node::Op::TakeRows}},
        {"lowrank", {&E::callMatrix, {"x", "rank"}, {}, Node::Op::LowRank}},
        {"svd", {&E::callMatrix, {"x", "rank"}, {"rank"}, Node::Op::Svd}},
        {"rsvd",
         {&E::callMatrix, {"x", "rank", "oversample", "iters", "seed"},
          {"oversample", "iters", "seed"}, Node::Op::Rsvd}},
        {"hcat", {&E::callMatrix, {"xs"}, {}, Node::Op::HCat}},
        {"vcat", {&E::callMatrix, {"xs"}, {}, Node::Op::VCat}},
        {"highpass", {&E::callMatrix, {"x", "ratio"}, {"ratio"}, Node::Op::Highpass}},
        {"lowpass", {&E::callMatrix, {"x", "ratio"}, {"ratio"}, Node::Op::Lowpass}},
    };
    // The families whose ops have a table of their own: list reductions of one list,
    // elementwise functions of one argument.
    for (const auto &entry : kListReductions)
      t.emplace(entry.first, Builtin{&E::callListReduction, {"xs"}});
    for (const auto &entry : kUnary)
      t.emplace(entry.first, Builtin{&E::callElementwise, {"x"}});
    return t;
  }();
  return table;
}

} // namespace

bool mergec::sema::isBuiltinName(const std::string &name) {
  return Evaluator::builtins().count(name) > 0 || kContextNames.count(name) > 0;
}

std::unique_ptr<Program> mergec::sema::analyze(const ast::Recipe &recipe,
                                               const Overrides &overrides,
                                               DiagnosticEngine &diags,
                                               const std::vector<const ast::Recipe *> &libraries) {
  auto program = std::make_unique<Program>();
  program->recipeFile = recipe.fileName;
  for (int f = 0; f < diags.fileCount(); ++f)
    program->sourceFiles.push_back(diags.fileName(f));
  for (auto &m : recipe.models)
    program->models.push_back({m.name, resolveModelPath(recipe.fileName, m.path), m.loc});
  for (auto &l : recipe.loras)
    program->models.push_back(
        {l.name, resolveModelPath(recipe.fileName, l.path), l.loc, /*lora=*/true, l.on});

  Evaluator evaluator(recipe, *program, diags);
  if (!evaluator.declare())
    return nullptr;
  for (const ast::Recipe *library : libraries)
    evaluator.declareLibrary(*library);
  if (diags.errorCount())
    return nullptr;
  if (!applyOverrides(recipe, overrides, evaluator.params(), *program, diags))
    return nullptr;

  if (recipe.models.empty() && recipe.bundles.empty()) {
    diags.error({}, "the recipe declares no model");
    return nullptr;
  }
  const Model *base = program->findModel("base");
  // Without a model, the output takes the tensors of the first bundle member the rules read
  // (set once they are checked, below).
  if (!recipe.models.empty())
    program->outputModel = base && !base->lora ? "base" : recipe.models.front().name;
  if (!checkLayers(recipe, *program, diags))
    return nullptr;

  if (recipe.merges.empty()) {
    diags.error({}, "the recipe has no 'merge' declaration");
    return nullptr;
  }
  if (recipe.merges.size() > 1) {
    diags.error(recipe.merges[1].loc, "only one 'merge' declaration is allowed");
    diags.note(recipe.merges[0].loc, "the first one is here");
    return nullptr;
  }
  const ast::MergeDecl &merge = recipe.merges.front();
  if (merge.rules.empty()) {
    diags.error(merge.loc, "the merge block has no rules");
    return nullptr;
  }
  if (merge.rules.size() > limits::kMaxRules) {
    diags.error(merge.rules[limits::kMaxRules].loc,
                "too many rules in the merge block (" + std::to_string(merge.rules.size()) +
                    ", limit " + std::to_string(limits::kMaxRules) + ")");
    return nullptr;
  }
  size_t patterns = 0;
  for (auto &rule : merge.rules)
    for (auto &pattern : rule.patterns)
      if (++patterns == limits::kMaxPatterns + 1) {
        diags.error(pattern.loc, "too many patterns in the merge block (limit " +
                                     std::to_string(limits::kMaxPatterns) + ")");
        return nullptr;
      }
  // merge compress(...): the whole merge expression (a recipe's own def of that name aside).
  if (merge.singleRule && merge.rules.size() == 1)
    if (auto *call = llvm::dyn_cast<ast::CallExpr>(merge.rules[0].body.get());
        call && call->callee == "compress") {
      if (!recipe.layers.empty()) {
        diags.error(call->loc(), "compress(...) keeps the members' layers: it cannot be "
                                 "combined with a layers declaration");
        return nullptr;
      }
      auto rule = evaluator.compress(call, merge.rules[0].loc);
      if (!rule || diags.errorCount())
        return nullptr;
      program->rules.push_back(std::move(*rule));
      // The bundle's tensors are its first member's (names, order, shapes).
      program->outputModel = program->bundle->members.front();
      return program;
    }
  bool sawDefault = false;
  for (auto &rule : merge.rules) {
    // A rule after `_` never runs, but it is still checked: it is code the user means to keep.
    bool unreachable = sawDefault;
    if (unreachable)
      diags.warning(rule.loc, "this rule is never used: an earlier '_' rule matches every tensor");
    sawDefault = sawDefault || rule.isDefault;
    for (auto &pattern : rule.patterns)
      if (auto problem = rt::globCheck(pattern.glob))
        diags.error(pattern.loc, "bad pattern \"" + pattern.glob + "\": " + *problem);
    auto value = evaluator.eval(rule.body.get());
    if (!value)
      continue;
    if (value->isList() || value->node->kind == Kind::Scalar) {
      diags.error(startOf(rule.body.get()), std::string("a rule must produce a tensor, this is ") +
                                                 kindName(*value));
      continue;
    }
    // A string literal the rule would compute with.
    if (const Node *str = findNode(value->node,
                                   [](const Node *n) { return n->op == Node::Op::String; })) {
      diags.error(str->loc, "the string \"" + str->text +
                                "\" is used as a number (strings can only be compared with == or !=)");
      continue;
    }
    if (!unreachable)
      program->rules.push_back(
          {rule.loc, rule.patterns, value->node, findNode(value->node, [](const Node *n) {
             return n->op == Node::Op::NumLayers || n->op == Node::Op::Ramp;
           }) != nullptr});
  }
  if (diags.errorCount())
    return nullptr;
  if (program->outputModel.empty()) {
    auto member = std::find_if(program->models.begin(), program->models.end(),
                               [](const Model &m) { return m.bundleMember >= 0; });
    if (member == program->models.end()) {
      diags.error(merge.loc, "the merge reads no model: a recipe without `model` declarations "
                             "must read a bundle's member (zoo[0])");
      return nullptr;
    }
    program->outputModel = member->name;
  }
  return program;
}
