//===- ASTBuilder.cpp - ANTLR parse tree to AST ---------------------------===//
// The only file that sees ANTLR types (antlr4-runtime.h also undefines EOF, so it stays here).
#include "mergec/Frontend/Parser.h"
#include "mergec/Frontend/Limits.h"
#include "mergec/Runtime/Number.h"

#include "MergeLexer.h"
#include "MergeParser.h"
#include "antlr4-runtime.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <cstdio>
#include <optional>
#include <set>

using namespace mergec;
using namespace mergec::ast;

namespace {

/// Thrown by FirstErrorListener to stop the parse at its first error.
struct StopParsing {};

/// Keeps the first syntax error only: ANTLR's later messages are usually fallout from it.
/// "missing X at 'y'" and errors at the end of the file are reported just after the last good
/// token, where the user has to type the fix. The parse stops there: ANTLR's recovery would
/// otherwise go on resynchronizing through the rest of the text, only to be ignored.
class FirstErrorListener : public antlr4::BaseErrorListener {
public:
  FirstErrorListener(DiagnosticEngine &diags, int file) : diags_(diags), file_(file) {}
  void syntaxError(antlr4::Recognizer *recognizer, antlr4::Token *offending, size_t line,
                   size_t column, const std::string &msg, std::exception_ptr) override {
    if (failed)
      return;
    failed = true;
    SourceLoc loc{static_cast<int>(line), static_cast<int>(column) + 1, file_};
    bool atEnd = offending && offending->getType() == antlr4::Token::EOF;
    bool missing = msg.rfind("missing ", 0) == 0;
    if ((atEnd || missing) && offending)
      if (auto after = afterPrevious(recognizer, offending, file_))
        loc = *after;
    std::string text = msg;
    if (missing) {
      std::string what = msg.substr(8, msg.find(" at '") - 8);
      text = atEnd ? "unexpected end of file, expected " + what
                   : "expected " + what + " before '" + offending->getText() + "'";
    } else if (atEnd) {
      text = "unexpected end of file" + expectation(msg);
    }
    diags_.error(loc, text);
    // Not an antlr4::RecognitionException, so no rule of the generated parser catches it.
    throw StopParsing{};
  }
  bool failed = false;

private:
  static std::string expectation(const std::string &msg) {
    auto pos = msg.find("expecting");
    return pos == std::string::npos ? "" : ", " + msg.substr(pos);
  }
  static std::optional<SourceLoc> afterPrevious(antlr4::Recognizer *recognizer,
                                                antlr4::Token *offending, int file) {
    auto *parser = dynamic_cast<antlr4::Parser *>(recognizer);
    if (!parser || offending->getTokenIndex() == 0 ||
        offending->getTokenIndex() == static_cast<size_t>(-1))
      return std::nullopt;
    antlr4::Token *prev = parser->getTokenStream()->get(offending->getTokenIndex() - 1);
    return SourceLoc{static_cast<int>(prev->getLine()),
                     static_cast<int>(prev->getCharPositionInLine() + prev->getText().size()) + 1,
                     file};
  }
  DiagnosticEngine &diags_;
  int file_;
};

SourceLoc locOf(antlr4::Token *token, int file) {
  return {static_cast<int>(token->getLine()), static_cast<int>(token->getCharPositionInLine()) + 1,
          file};
}

std::string unquote(const std::string &quoted) {
  std::string out;
  for (size_t i = 1; i + 1 < quoted.size(); ++i) {
    char c = quoted[i];
    if (c == '\\' && i + 2 < quoted.size()) {
      char n = quoted[++i];
      out += n == 'n' ? '\n' : n == 't' ? '\t' : n;
    } else {
      out += c;
    }
  }
  return out;
}

class Builder {
public:
  explicit Builder(int file) : file_(file) {}

  ExprPtr expr(MergeParser::ExprContext *ctx) {
    if (auto *neg = dynamic_cast<MergeParser::NegExprContext *>(ctx))
      return std::make_unique<UnaryExpr>(at(neg), '-', expr(neg->expr()));
    if (auto *mul = dynamic_cast<MergeParser::MulExprContext *>(ctx))
      return binary(mul->op, mul->expr(0), mul->expr(1));
    if (auto *add = dynamic_cast<MergeParser::AddExprContext *>(ctx))
      return binary(add->op, add->expr(0), add->expr(1));
    if (auto *cmp = dynamic_cast<MergeParser::CmpExprContext *>(ctx))
      return binary(cmp->op, cmp->expr(0), cmp->expr(1));
    if (auto *let = dynamic_cast<MergeParser::LetExprContext *>(ctx)) {
      std::vector<std::pair<std::string, SourceLoc>> names;
      bool tuple = false;
      if (auto *one = dynamic_cast<MergeParser::LetNameContext *>(let->letNames())) {
        names.push_back({one->IDENT()->getText(), at(one->IDENT()->getSymbol())});
      } else {
        tuple = true;
        for (auto *id : dynamic_cast<MergeParser::LetTupleContext *>(let->letNames())->IDENT())
          names.push_back({id->getText(), at(id->getSymbol())});
      }
      return std::make_unique<LetExpr>(at(let), std::move(names), tuple, expr(let->value),
                                       expr(let->body));
    }
    return primary(dynamic_cast<MergeParser::PrimaryExprContext *>(ctx)->primary());
  }

  ExprPtr binary(antlr4::Token *op, MergeParser::ExprContext *lhs, MergeParser::ExprContext *rhs) {
    // The operator's location is where a user looks for a type error between its operands.
    // The grammar's operator tokens are kBinaryOps' spellings.
    std::optional<BinaryOp> kind = binaryOpOf(op->getText());
    if (!kind)
      throw std::logic_error("the grammar gave an unknown operator '" + op->getText() + "'");
    return std::make_unique<BinaryExpr>(at(op), *kind, expr(lhs), expr(rhs));
  }

  ExprPtr primary(MergeParser::PrimaryContext *ctx) {
    if (auto *num = dynamic_cast<MergeParser::NumberLitContext *>(ctx))
      return std::make_unique<NumberExpr>(at(num), number(num->NUMBER()));
    if (auto *str = dynamic_cast<MergeParser::StringLitContext *>(ctx))
      return std::make_unique<StringExpr>(at(str), unquote(str->STRING()->getText()));
    if (auto *name = dynamic_cast<MergeParser::NameRefContext *>(ctx))
      return std::make_unique<NameExpr>(at(name), name->IDENT()->getText());
    // `scope = model`: the keyword doubles as the name of the whole-model scope.
    if (auto *model = dynamic_cast<MergeParser::ModelScopeRefContext *>(ctx))
      return std::make_unique<NameExpr>(at(model), "model");
    if (auto *list = dynamic_cast<MergeParser::ListExprContext *>(ctx)) {
      std::vector<ExprPtr> elements;
      for (auto *e : list->expr())
        elements.push_back(expr(e));
      return std::make_unique<ListExpr>(at(list), std::move(elements));
    }
    if (auto *paren = dynamic_cast<MergeParser::ParenExprContext *>(ctx))
      return expr(paren->expr());
    if (auto *index = dynamic_cast<MergeParser::IndexExprContext *>(ctx))
      return std::make_unique<IndexExpr>(at(index), index->IDENT()->getText(),
                                         expr(index->expr()));
    auto *call = dynamic_cast<MergeParser::CallExprContext *>(ctx);
    std::vector<Argument> args;
    for (auto *arg : call->argument()) {
      Argument a;
      a.loc = at(arg);
      if (arg->IDENT())
        a.keyword = arg->IDENT()->getText();
      a.value = expr(arg->expr());
      args.push_back(std::move(a));
    }
    return std::make_unique<CallExpr>(at(call), call->IDENT()->getText(), std::move(args));
  }

  void decl(MergeParser::DeclContext *ctx, Recipe &recipe) {
    if (auto *m = ctx->modelDecl()) {
      recipe.models.push_back({at(m), m->IDENT()->getText(), unquote(m->STRING()->getText()),
                               at(m->STRING()->getSymbol())});
    } else if (auto *l = ctx->loraDecl()) {
      recipe.loras.push_back({at(l), l->name->getText(), unquote(l->STRING()->getText()),
                              at(l->STRING()->getSymbol()), l->target->getText(),
                              at(l->target)});
    } else if (auto *p = ctx->paramDecl()) {
      double value = signedValue(p->signedNumber());
      recipe.params.push_back({at(p), p->IDENT()->getText(), value, at(p->signedNumber())});
    } else if (auto *d = ctx->defDecl()) {
      DefDecl def;
      def.loc = at(d);
      def.name = d->IDENT()->getText();
      for (auto *param : d->defParam()) {
        DefParam p{at(param), param->name->getText(),
                   param->expr() ? expr(param->expr()) : nullptr};
        if (param->kind) {
          p.kind = param->kind->getText();
          p.kindLoc = at(param->kind);
        }
        def.params.push_back(std::move(p));
      }
      def.body = expr(d->expr());
      recipe.defs.push_back(std::move(def));
    } else if (auto *b = ctx->bundleDecl()) {
      recipe.bundles.push_back({at(b), b->IDENT()->getText(), unquote(b->STRING()->getText()),
                                at(b->STRING()->getSymbol())});
    } else if (auto *l = ctx->layersDecl()) {
      recipe.layers.push_back(layers(l));
    } else {
      recipe.merges.push_back(merge(ctx->mergeDecl()));
    }
  }

  LayersDecl layers(MergeParser::LayersDeclContext *ctx) {
    LayersDecl decl{at(ctx), {}};
    for (auto *sliceCtx : ctx->layerSlice()) {
      LayerSlice slice{at(sliceCtx), {}};
      for (auto *src : sliceCtx->layerSource())
        slice.sources.push_back({at(src), src->IDENT()->getText(), at(src->IDENT()->getSymbol()),
                                 signedValue(src->start), signedValue(src->end), at(src->start),
                                 at(src->end)});
      decl.slices.push_back(std::move(slice));
    }
    return decl;
  }

  static double signedValue(MergeParser::SignedNumberContext *ctx) {
    double value = number(ctx->NUMBER());
    return ctx->getStart()->getText() == "-" ? -value : value;
  }

  /// A NUMBER token's value (the lexer only makes tokens parseNumber accepts).
  static double number(antlr4::tree::TerminalNode *token) {
    return rt::parseNumber(token->getText()).value_or(0);
  }

  SourceLoc at(antlr4::Token *token) const { return locOf(token, file_); }
  SourceLoc at(antlr4::ParserRuleContext *ctx) const { return locOf(ctx->getStart(), file_); }

  MergeDecl merge(MergeParser::MergeDeclContext *ctx) {
    MergeDecl m;
    m.loc = at(ctx);
    if (auto *single = dynamic_cast<MergeParser::SingleRuleContext *>(ctx)) {
      m.singleRule = true;
      Rule r;
      r.loc = at(single->expr());
      r.isDefault = true;
      r.body = expr(single->expr());
      m.rules.push_back(std::move(r));
      return m;
    }
    for (auto *rc : dynamic_cast<MergeParser::RuleBlockContext *>(ctx)->mergeRule()) {
      Rule r;
      r.loc = at(rc);
      if (auto *pats = rc->patterns()) {
        for (auto *s : pats->STRING())
          r.patterns.push_back({at(s->getSymbol()), unquote(s->getText())});
      } else {
        r.isDefault = true;
      }
      r.body = expr(rc->expr());
      m.rules.push_back(std::move(r));
    }
    return m;
  }

private:
  int file_;
};

/// Reports characters the grammar has no token for before the parser turns them into a
/// confusing "extraneous input" message.
bool checkTokens(antlr4::CommonTokenStream &tokens, DiagnosticEngine &diags, int file) {
  tokens.fill();
  for (auto *token : tokens.getTokens()) {
    if (token->getType() != MergeLexer::UNKNOWN)
      continue;
    std::string text = token->getText();
    diags.error(locOf(token, file), text == "\"" ? "unterminated string"
                                           : "unexpected character '" + text + "'");
    return false;
  }
  return true;
}

/// Bounds what the parser and the AST builder will recurse over, from the tokens alone, before
/// ANTLR sees them: the nesting of parentheses, brackets and unary minus (ANTLR's parser
/// recurses into each), and the length of an operator chain (parsed in a loop, but each
/// operator nests the tree one level deeper and costs ~1 KB of parse tree).
bool checkShape(antlr4::CommonTokenStream &tokens, DiagnosticEngine &diags, int file) {
  const std::vector<antlr4::Token *> &all = tokens.getTokens();
  // Open '(' and '[', and each '-' whose operand has not ended yet: `- - (a)` is three deep.
  std::vector<char> open;
  // Binary operators in the current expression, per open bracket (and the top level).
  std::vector<size_t> chain{0};
  bool afterOperand = false;
  for (size_t i = 0; i < all.size(); ++i) {
    antlr4::Token *token = all[i];
    size_t type = token->getType();
    if (type == antlr4::Token::EOF)
      break;
    std::string text = token->getText();
    bool endsOperand = false;
    if (text == "(" || text == "[" || (text == "-" && !afterOperand)) {
      open.push_back(text[0]);
      if (open.back() != '-')
        chain.push_back(0);
      if (open.size() > limits::kMaxNesting) {
        diags.error(locOf(token, file), "expression nested too deeply (limit " +
                                            std::to_string(limits::kMaxNesting) +
                                            " levels of parentheses, brackets and unary '-')");
        return false;
      }
    } else if (text == ")" || text == "]") {
      while (!open.empty() && open.back() == '-')
        open.pop_back();
      if (!open.empty()) { // an unbalanced one is the parser's to report
        open.pop_back();
        chain.pop_back();
      }
      endsOperand = true;
    } else if (text == "-" || text == "+" || text == "*" || text == "/" || text == "@" || text == "<" ||
               text == ">" || text == "<=" || text == ">=" || text == "==" || text == "!=") {
      if (++chain.back() > limits::kMaxOperatorChain) {
        diags.error(locOf(token, file),
                    "operator chain too long (limit " +
                        std::to_string(limits::kMaxOperatorChain) +
                        " binary operators in one expression; write a long sum as sum([...]))");
        return false;
      }
    } else if (type == MergeLexer::IDENT || type == MergeLexer::NUMBER ||
               type == MergeLexer::STRING || text == "model") {
      // A call's operand ends at its ')'.
      endsOperand = i + 1 >= all.size() || all[i + 1]->getText() != "(";
    } else {
      chain.back() = 0; // ',', '=', '=>', '{', a keyword: another expression starts
    }
    if (endsOperand)
      while (!open.empty() && open.back() == '-')
        open.pop_back();
    afterOperand = endsOperand;
  }
  return true;
}

/// An operator, call or list: a node of the AST with operands below it (parentheses are not;
/// they are bounded by kMaxNesting alone).
bool isExpressionLevel(antlr4::tree::ParseTree *node) {
  return dynamic_cast<MergeParser::NegExprContext *>(node) ||
         dynamic_cast<MergeParser::MulExprContext *>(node) ||
         dynamic_cast<MergeParser::AddExprContext *>(node) ||
         dynamic_cast<MergeParser::CmpExprContext *>(node) ||
         dynamic_cast<MergeParser::LetExprContext *>(node) ||
         dynamic_cast<MergeParser::CallExprContext *>(node) ||
         dynamic_cast<MergeParser::ListExprContext *>(node);
}

/// Reports an expression whose syntax tree would be deeper than the AST builder and Sema may
/// recurse: calls, lists and operator chains can each stay under their own limit and still nest
/// inside each other. Walks the parse tree with an explicit stack.
bool checkDepth(antlr4::tree::ParseTree *root, DiagnosticEngine &diags, int file) {
  std::vector<std::pair<antlr4::tree::ParseTree *, size_t>> work{{root, 0}};
  while (!work.empty()) {
    auto [node, depth] = work.back();
    work.pop_back();
    if (isExpressionLevel(node) && ++depth > limits::kMaxExpressionDepth) {
      diags.error(locOf(static_cast<antlr4::ParserRuleContext *>(node)->getStart(), file),
                  "expression nested too deeply (limit " +
                      std::to_string(limits::kMaxExpressionDepth) +
                      " levels of operators, calls and lists)");
      return false;
    }
    for (auto it = node->children.rbegin(); it != node->children.rend(); ++it)
      work.push_back({*it, depth});
  }
  return true;
}

/// Finds the first byte that is not part of well-formed UTF-8 (ANTLR's decoder throws on it).
std::optional<SourceLoc> firstInvalidUtf8(const std::string &text, int file, unsigned char &bad) {
  int line = 1, col = 1;
  for (size_t i = 0; i < text.size();) {
    unsigned char c = text[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len != 0 && i + len <= text.size();
    for (size_t k = 1; ok && k < len; ++k)
      ok = (static_cast<unsigned char>(text[i + k]) >> 6) == 0x2;
    if (ok && len > 1) {
      // Reject overlong forms, surrogates and code points past U+10FFFF.
      uint32_t cp = c & (0x7F >> len);
      for (size_t k = 1; k < len; ++k)
        cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
      static const uint32_t minimum[] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= minimum[len] && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    }
    if (!ok) {
      bad = c;
      return SourceLoc{line, col, file};
    }
    if (c == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
    i += len;
  }
  return std::nullopt;
}

} // namespace

std::unique_ptr<Recipe> mergec::parseRecipe(DiagnosticEngine &diags, int file) {
  unsigned char bad = 0;
  if (auto loc = firstInvalidUtf8(diags.source(file), file, bad)) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", bad);
    diags.error(*loc, std::string("invalid UTF-8 (byte ") + hex + "); recipes are UTF-8 text");
    return nullptr;
  }
  antlr4::ANTLRInputStream input(diags.source(file));
  MergeLexer lexer(&input);
  FirstErrorListener listener(diags, file);
  lexer.removeErrorListeners();
  lexer.addErrorListener(&listener);
  antlr4::CommonTokenStream tokens(&lexer);
  MergeParser parser(&tokens);
  parser.removeErrorListeners();
  parser.addErrorListener(&listener);
  MergeParser::RecipeContext *tree = nullptr;
  try {
    if (!checkTokens(tokens, diags, file) || !checkShape(tokens, diags, file))
      return nullptr;
    tree = parser.recipe();
  } catch (const StopParsing &) {
    return nullptr;
  }
  if (listener.failed || !checkDepth(tree, diags, file))
    return nullptr;
  auto recipe = std::make_unique<Recipe>();
  recipe->fileName = diags.fileName(file);
  // `on` is matched as a name by the grammar (so it stays usable as one elsewhere).
  for (auto *d : tree->decl())
    if (auto *l = d->loraDecl(); l && l->onWord->getText() != "on") {
      diags.error(locOf(l->onWord, file), "expected 'on' after the adapter's path (lora NAME = "
                                          "\"PATH\" on MODEL), got '" +
                                              l->onWord->getText() + "'");
      return nullptr;
    }
  Builder builder(file);
  for (auto *d : tree->decl())
    builder.decl(d, *recipe);
  return recipe;
}

bool mergec::isKeyword(const std::string &name) {
  // The lexer's vocabulary: every literal token of grammar/Merge.g4, quoted ('model', '=>').
  static const std::set<std::string> keywords = [] {
    std::set<std::string> words;
    antlr4::ANTLRInputStream empty(std::string{});
    MergeLexer lexer(&empty);
    const antlr4::dfa::Vocabulary &vocabulary = lexer.getVocabulary();
    for (size_t t = 0; t <= vocabulary.getMaxTokenType(); ++t) {
      std::string literal = vocabulary.getLiteralName(t);
      if (literal.size() < 3 || literal.front() != '\'' || literal.back() != '\'')
        continue;
      std::string word = literal.substr(1, literal.size() - 2);
      if (std::all_of(word.begin(), word.end(),
                      [](unsigned char c) { return std::isalpha(c) || c == '_'; }) &&
          word != "_")
        words.insert(word);
    }
    return words;
  }();
  return keywords.count(name) > 0;
}
