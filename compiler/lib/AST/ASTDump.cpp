//===- ASTDump.cpp - indented AST printer for --emit=ast ------------------===//
#include "mergec/AST/AST.h"
#include "llvm/Support/Casting.h"
#include <sstream>

using namespace mergec::ast;
using llvm::dyn_cast;

namespace {

std::string at(SourceLoc loc) {
  return " @" + std::to_string(loc.line) + ":" + std::to_string(loc.col);
}

std::string number(double v) {
  std::ostringstream os;
  os.precision(9);
  os << v;
  return os.str();
}

class Dumper {
public:
  std::ostringstream os;

  void line(int depth, const std::string &text) { os << std::string(depth * 2, ' ') << text << "\n"; }

  void expr(const Expr *e, int depth) {
    if (auto *s = dyn_cast<StringExpr>(e))
      return line(depth, "String \"" + s->value + "\"" + at(e->loc()));
    if (auto *n = dyn_cast<NumberExpr>(e))
      return line(depth, "Number " + number(n->value) + at(e->loc()));
    if (auto *n = dyn_cast<NameExpr>(e))
      return line(depth, "Name " + n->name + at(e->loc()));
    if (auto *u = dyn_cast<UnaryExpr>(e)) {
      line(depth, std::string("Unary '") + u->op + "'" + at(e->loc()));
      return expr(u->operand.get(), depth + 1);
    }
    if (auto *b = dyn_cast<BinaryExpr>(e)) {
      line(depth, "Binary '" + spelling(b->op) + "'" + at(e->loc()));
      expr(b->lhs.get(), depth + 1);
      return expr(b->rhs.get(), depth + 1);
    }
    if (auto *l = dyn_cast<ListExpr>(e)) {
      line(depth, "List " + std::to_string(l->elements.size()) + at(e->loc()));
      for (auto &el : l->elements)
        expr(el.get(), depth + 1);
      return;
    }
    if (auto *l = dyn_cast<LetExpr>(e)) {
      std::string names;
      for (auto &[name, loc] : l->names)
        names += (names.empty() ? "" : ", ") + name;
      line(depth, "Let " + (l->tuple ? "(" + names + ")" : names) + at(e->loc()));
      expr(l->value.get(), depth + 1);
      line(depth + 1, "In");
      return expr(l->body.get(), depth + 2);
    }
    if (auto *i = dyn_cast<IndexExpr>(e)) {
      line(depth, "Index " + i->name + at(e->loc()));
      return expr(i->index.get(), depth + 1);
    }
    auto *c = dyn_cast<CallExpr>(e);
    line(depth, "Call " + c->callee + at(e->loc()));
    for (auto &a : c->args) {
      line(depth + 1, a.keyword.empty() ? "Arg" + at(a.loc) : "Arg " + a.keyword + "=" + at(a.loc));
      expr(a.value.get(), depth + 2);
    }
  }
};

} // namespace

std::string mergec::ast::dump(const Recipe &recipe) {
  Dumper d;
  d.line(0, "Recipe \"" + recipe.fileName + "\"");
  for (auto &m : recipe.models)
    d.line(1, "Model " + m.name + " \"" + m.path + "\"" + at(m.loc));
  for (auto &l : recipe.loras)
    d.line(1, "Lora " + l.name + " \"" + l.path + "\" on " + l.on + at(l.loc));
  for (auto &b : recipe.bundles)
    d.line(1, "Bundle " + b.name + " \"" + b.path + "\"" + at(b.loc));
  for (auto &p : recipe.params)
    d.line(1, "Param " + p.name + " = " + number(p.value) + at(p.loc));
  for (auto &def : recipe.defs) {
    std::string params;
    for (auto &p : def.params)
      params += (params.empty() ? "" : ", ") + p.name + (p.kind.empty() ? "" : ": " + p.kind) +
                (p.defaultValue ? " = ..." : "");
    d.line(1, "Def " + def.name + "(" + params + ")" + at(def.loc));
    for (auto &p : def.params)
      if (p.defaultValue) {
        d.line(2, "Default " + p.name + at(p.loc));
        d.expr(p.defaultValue.get(), 3);
      }
    d.line(2, "Body");
    d.expr(def.body.get(), 3);
  }
  for (auto &l : recipe.layers) {
    d.line(1, "Layers" + at(l.loc));
    for (auto &slice : l.slices) {
      std::string sources;
      for (auto &s : slice.sources)
        sources += (sources.empty() ? "" : ", ") + s.model + "[" + number(s.start) + ":" +
                   number(s.end) + "]";
      d.line(2, "Slice " + sources + at(slice.loc));
    }
  }
  for (auto &m : recipe.merges) {
    d.line(1, std::string(m.singleRule ? "Merge single-rule" : "Merge") + at(m.loc));
    for (auto &r : m.rules) {
      std::string pats;
      for (auto &p : r.patterns)
        pats += (pats.empty() ? "\"" : " | \"") + p.glob + "\"";
      d.line(2, "Rule " + (r.isDefault ? std::string("_") : pats) + at(r.loc));
      d.expr(r.body.get(), 3);
    }
  }
  return d.os.str();
}
