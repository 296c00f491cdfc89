//===- AST.h - the recipe syntax tree ---------------------------*- C++ -*-===//
// Plain data with source locations; no ANTLR types, so every later stage can include it.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mergec::ast {

/// 1-based line and column in a source file: the recipe (file 0) or a stdlib file
/// (DiagnosticEngine::addFile gives the index).
struct SourceLoc {
  int line = 0;
  int col = 0;
  int file = 0;
};

class Expr {
public:
  enum class Kind { Number, String, Name, Unary, Binary, List, Call, Let, Index };
  Expr(Kind kind, SourceLoc loc) : kind_(kind), loc_(loc) {}
  virtual ~Expr() = default;
  Kind kind() const { return kind_; }
  SourceLoc loc() const { return loc_; }

private:
  Kind kind_;
  SourceLoc loc_;
};
using ExprPtr = std::unique_ptr<Expr>;

class NumberExpr : public Expr {
public:
  NumberExpr(SourceLoc loc, double value) : Expr(Kind::Number, loc), value(value) {}
  static bool classof(const Expr *e) { return e->kind() == Kind::Number; }
  double value;
};

/// A string literal: an option's value, e.g. rescale = "l1". Strings only compare (== / !=).
class StringExpr : public Expr {
public:
  StringExpr(SourceLoc loc, std::string value) : Expr(Kind::String, loc), value(std::move(value)) {}
  static bool classof(const Expr *e) { return e->kind() == Kind::String; }
  std::string value;
};

/// A model, param, def parameter or context name (`layer`, `num_layers`).
class NameExpr : public Expr {
public:
  NameExpr(SourceLoc loc, std::string name) : Expr(Kind::Name, loc), name(std::move(name)) {}
  static bool classof(const Expr *e) { return e->kind() == Kind::Name; }
  std::string name;
};

class UnaryExpr : public Expr {
public:
  UnaryExpr(SourceLoc loc, char op, ExprPtr operand)
      : Expr(Kind::Unary, loc), op(op), operand(std::move(operand)) {}
  static bool classof(const Expr *e) { return e->kind() == Kind::Unary; }
  char op; ///< '-'
  ExprPtr operand;
};

/// The binary operators. kBinaryOps is the one list of their spellings (the grammar's tokens);
/// everything after the parser switches over the enum.
enum class BinaryOp { Add, Sub, Mul, Div, MatMul, Lt, Gt, Le, Ge, Eq, Ne };
inline constexpr std::pair<BinaryOp, std::string_view> kBinaryOps[] = {
    {BinaryOp::Add, "+"}, {BinaryOp::Sub, "-"}, {BinaryOp::Mul, "*"},  {BinaryOp::Div, "/"},
    {BinaryOp::MatMul, "@"}, {BinaryOp::Lt, "<"}, {BinaryOp::Gt, ">"}, {BinaryOp::Le, "<="},
    {BinaryOp::Ge, ">="}, {BinaryOp::Eq, "=="}, {BinaryOp::Ne, "!="}};
inline std::string spelling(BinaryOp op) {
  for (auto [o, text] : kBinaryOps)
    if (o == op)
      return std::string(text);
  return "?";
}
/// The operator a token spells; nullopt for any other text.
inline std::optional<BinaryOp> binaryOpOf(std::string_view text) {
  for (auto [o, t] : kBinaryOps)
    if (t == text)
      return o;
  return std::nullopt;
}
/// < > <= >= == !=: a 0 / 1 result.
inline bool isComparison(BinaryOp op) { return op >= BinaryOp::Lt; }

class BinaryExpr : public Expr {
public:
  BinaryExpr(SourceLoc loc, BinaryOp op, ExprPtr lhs, ExprPtr rhs)
      : Expr(Kind::Binary, loc), op(op), lhs(std::move(lhs)), rhs(std::move(rhs)) {}
  static bool classof(const Expr *e) { return e->kind() == Kind::Binary; }
  BinaryOp op;
  ExprPtr lhs, rhs;
};

class ListExpr : public Expr {
public:
  ListExpr(SourceLoc loc, std::vector<ExprPtr> elements)
      : Expr(Kind::List, loc), elements(std::move(elements)) {}
  static bool classof(const Expr *e) { return e->kind() == Kind::List; }
  std::vector<ExprPtr> elements;
};

/// `zoo[i]`: member i of a bundle (the only indexing there is; `pick` indexes lists).
class IndexExpr : public Expr {
public:
  IndexExpr(SourceLoc loc, std::string name, ExprPtr index)
      : Expr(Kind::Index, loc), name(std::move(name)), index(std::move(index)) {}
  static bool classof(const Expr *e) { return e->kind() == Kind::Index; }
  std::string name;
  ExprPtr index;
};

/// `let NAME = VALUE in BODY`, or `let (A, B, ...) = VALUE in BODY` taking a list's items
/// (svd's u, s, vt): BODY sees the names; nothing else does.
class LetExpr : public Expr {
public:
  LetExpr(SourceLoc loc, std::vector<std::pair<std::string, SourceLoc>> names, bool tuple,
          ExprPtr value, ExprPtr body)
      : Expr(Kind::Let, loc), names(std::move(names)), tuple(tuple), value(std::move(value)),
        body(std::move(body)) {}
  static bool classof(const Expr *e) { return e->kind() == Kind::Let; }
  std::vector<std::pair<std::string, SourceLoc>> names;
  bool tuple; ///< written with parentheses: VALUE must be a list of as many items
  ExprPtr value, body;
};

struct Argument {
  std::string keyword; ///< empty for a positional argument
  SourceLoc loc;
  ExprPtr value;
};

class CallExpr : public Expr {
public:
  CallExpr(SourceLoc loc, std::string callee, std::vector<Argument> args)
      : Expr(Kind::Call, loc), callee(std::move(callee)), args(std::move(args)) {}
  static bool classof(const Expr *e) { return e->kind() == Kind::Call; }
  std::string callee;
  std::vector<Argument> args;
};

struct ModelDecl {
  SourceLoc loc;
  std::string name;
  std::string path; ///< unescaped
  SourceLoc pathLoc;
};

/// `lora NAME = "PATH" on MODEL`: a PEFT LoRA adapter, the task vector it adds to MODEL.
struct LoraDecl {
  SourceLoc loc;
  std::string name;
  std::string path; ///< unescaped
  SourceLoc pathLoc;
  std::string on; ///< the model it applies to
  SourceLoc onLoc;
};

/// `bundle NAME = "PATH"`: a compressed bundle (compress(...)'s output); NAME[i] is member i.
struct BundleDecl {
  SourceLoc loc;
  std::string name;
  std::string path; ///< unescaped
  SourceLoc pathLoc;
};

struct ParamDecl {
  SourceLoc loc;
  std::string name;
  double value = 0;
  SourceLoc valueLoc;
};

struct DefParam {
  SourceLoc loc;
  std::string name;
  ExprPtr defaultValue; ///< null when required
  std::string kind;     ///< `name: kind`: what the argument must be; empty when undeclared
  SourceLoc kindLoc;
};

struct DefDecl {
  SourceLoc loc;
  std::string name;
  std::vector<DefParam> params;
  ExprPtr body;
};

struct Pattern {
  SourceLoc loc;
  std::string glob; ///< unescaped
};

struct Rule {
  SourceLoc loc;
  std::vector<Pattern> patterns; ///< empty for the default rule `_`
  bool isDefault = false;
  ExprPtr body;
};

/// One `merge` declaration (Sema requires exactly one per recipe).
struct MergeDecl {
  SourceLoc loc;
  bool singleRule = false;
  std::vector<Rule> rules;
};

/// `m[start:end]` in a `layers` declaration: model m's layers start..end-1 (Python's slice).
/// The bounds are kept as written (Sema checks they are integers with start < end).
struct LayerSource {
  SourceLoc loc;
  std::string model;
  SourceLoc modelLoc;
  double start = 0, end = 0;
  SourceLoc startLoc, endLoc;
};

/// One slice of the output's layers: one source, or a parenthesised tuple of sources of one
/// length whose layers the rules merge.
struct LayerSlice {
  SourceLoc loc;
  std::vector<LayerSource> sources;
};

/// `layers [SLICE, ...]`: the output's layers, numbered consecutively over the slices.
struct LayersDecl {
  SourceLoc loc;
  std::vector<LayerSlice> slices;
};

struct Recipe {
  std::string fileName;
  std::vector<ModelDecl> models;
  std::vector<LoraDecl> loras;
  std::vector<BundleDecl> bundles;
  std::vector<ParamDecl> params;
  std::vector<DefDecl> defs;
  std::vector<MergeDecl> merges;
  std::vector<LayersDecl> layers; ///< Sema allows at most one
};

/// Prints the tree in the indented form `mergec compile --emit=ast` shows.
std::string dump(const Recipe &recipe);

} // namespace mergec::ast
