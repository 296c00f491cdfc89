//===- Glob.cpp - tensor-name glob patterns -------------------------------===//
// A pattern compiles to a tiny NFA program that is run Pike-VM style: all live states advance
// together over the name, so matching is O(|pattern| x |name|) whatever the pattern
// (backtracking matchers go exponential on `a*a*a*a*b` or nested braces).
#include "mergec/Runtime/Glob.h"

#include <algorithm>
#include <bitset>
#include <cstdint>
#include <memory>
#include <vector>

namespace mergec::rt {

namespace {
enum class Op { Byte, Any, Class, Split, Jmp, Match };

struct Inst {
  Op op;
  unsigned char byte = 0; ///< Byte
  size_t cls = 0;         ///< Class: index into NfaProgram::classes
  size_t x = 0, y = 0;    ///< Split: both targets; Jmp: x
};

struct NfaProgram {
  std::vector<Inst> code;
  std::vector<std::bitset<256>> classes;
};

/// Braces nested deeper than this are refused rather than recursed into.
constexpr int kMaxBraceDepth = 64;

class Compiler {
public:
  explicit Compiler(std::string_view pattern) : p_(pattern) {}

  /// The program, or nullopt with error() set.
  std::optional<NfaProgram> compile() {
    parseSequence(0);
    if (!error_ && pos_ < p_.size()) // only a stray '}' stops the top-level sequence
      setError("unbalanced '}'");
    if (error_)
      return std::nullopt;
    emit({Op::Match});
    return std::move(prog_);
  }
  const std::optional<std::string> &error() const { return error_; }

private:
  size_t emit(Inst inst) {
    prog_.code.push_back(inst);
    return prog_.code.size() - 1;
  }
  void setError(std::string message) {
    if (!error_)
      error_ = std::move(message);
  }

  /// Parses up to the end of the pattern or, inside braces, an unescaped ',' or '}'.
  void parseSequence(int depth) {
    while (pos_ < p_.size() && !error_) {
      char c = p_[pos_];
      if (c == '}' || (c == ',' && depth > 0))
        return;
      ++pos_;
      switch (c) {
      case '*':
        emitStar();
        break;
      case '?':
        emit({Op::Any});
        break;
      case '[':
        parseClass();
        break;
      case '{':
        parseBraces(depth + 1);
        break;
      case '\\':
        if (pos_ == p_.size()) {
          setError("trailing '\\'");
          return;
        }
        emitByte(p_[pos_++]);
        break;
      default:
        emitByte(c);
      }
    }
  }

  void emitByte(char c) {
    Inst inst{Op::Byte};
    inst.byte = static_cast<unsigned char>(c);
    emit(inst);
  }

  /// L: split(L+1, L+3); L+1: any; L+2: jmp L. Runs of '*' collapse into one loop.
  void emitStar() {
    while (pos_ < p_.size() && p_[pos_] == '*')
      ++pos_;
    size_t loop = emit({Op::Split});
    emit({Op::Any});
    Inst back{Op::Jmp};
    back.x = loop;
    emit(back);
    prog_.code[loop].x = loop + 1;
    prog_.code[loop].y = prog_.code.size();
  }

  /// After '[': `[abc]`, `[a-z]`, `[!...]`/`[^...]`; a leading ']' is literal, `\x` escapes.
  void parseClass() {
    std::bitset<256> set;
    bool negate = false;
    if (pos_ < p_.size() && (p_[pos_] == '!' || p_[pos_] == '^')) {
      negate = true;
      ++pos_;
    }
    bool first = true;
    for (;;) {
      if (pos_ >= p_.size())
        return setError("unterminated '['");
      char c = p_[pos_++];
      if (c == ']' && !first)
        break;
      first = false;
      if (c == '\\') {
        if (pos_ >= p_.size())
          return setError("unterminated '['");
        c = p_[pos_++];
      }
      auto lo = static_cast<unsigned char>(c), hi = lo;
      if (pos_ + 1 < p_.size() && p_[pos_] == '-' && p_[pos_ + 1] != ']') {
        char end = p_[pos_ + 1];
        pos_ += 2;
        if (end == '\\') {
          if (pos_ >= p_.size())
            return setError("unterminated '['");
          end = p_[pos_++];
        }
        hi = static_cast<unsigned char>(end);
        if (hi < lo)
          return setError(std::string("invalid range '") + c + "-" + end + "' in '[...]'");
      }
      for (unsigned v = lo; v <= hi; ++v)
        set.set(v);
    }
    if (negate)
      set.flip();
    Inst inst{Op::Class};
    inst.cls = prog_.classes.size();
    prog_.classes.push_back(set);
    emit(inst);
  }

  /// After '{': alternatives a,b,c compile to split chains that jump to a common end.
  void parseBraces(int depth) {
    if (depth > kMaxBraceDepth)
      return setError("'{' nested too deeply");
    std::vector<size_t> jumpsToEnd;
    for (;;) {
      size_t split = emit({Op::Split});
      prog_.code[split].x = split + 1;
      parseSequence(depth);
      if (error_)
        return;
      if (pos_ >= p_.size())
        return setError("unbalanced '{'");
      jumpsToEnd.push_back(emit({Op::Jmp}));
      // The split's other branch tries the next alternative, or fails after the last.
      prog_.code[split].y = prog_.code.size();
      if (p_[pos_++] == '}')
        break;
    }
    // After the last alternative, the fall-through of its split must fail: a class that
    // matches nothing is a dead state.
    Inst dead{Op::Class};
    dead.cls = prog_.classes.size();
    prog_.classes.emplace_back();
    emit(dead);
    for (size_t j : jumpsToEnd)
      prog_.code[j].x = prog_.code.size();
  }

  std::string_view p_;
  size_t pos_ = 0;
  NfaProgram prog_;
  std::optional<std::string> error_;
};

/// Runs `prog` over `name`, keeping every live state at once. The state lists are reused from
/// call to call (planning runs every pattern on every tensor name): `mark` holds generations
/// that only ever grow, so nothing needs clearing.
bool run(const NfaProgram &prog, std::string_view name, uint64_t &steps) {
  const auto &code = prog.code;
  thread_local std::vector<size_t> current, next, stack, mark;
  thread_local size_t generation = 0;
  if (mark.size() < code.size())
    mark.resize(code.size(), 0);
  current.clear();

  auto addState = [&](std::vector<size_t> &list, size_t start) {
    stack.clear();
    stack.push_back(start);
    while (!stack.empty()) {
      size_t pc = stack.back();
      stack.pop_back();
      if (mark[pc] == generation)
        continue;
      mark[pc] = generation;
      const Inst &inst = code[pc];
      if (inst.op == Op::Jmp) {
        stack.push_back(inst.x);
      } else if (inst.op == Op::Split) {
        stack.push_back(inst.y);
        stack.push_back(inst.x);
      } else {
        list.push_back(pc);
      }
    }
  };

  ++generation;
  addState(current, 0);
  for (char ch : name) {
    auto c = static_cast<unsigned char>(ch);
    ++generation;
    next.clear();
    steps += current.size();
    for (size_t pc : current) {
      const Inst &inst = code[pc];
      bool ok = (inst.op == Op::Any) || (inst.op == Op::Byte && inst.byte == c) ||
                (inst.op == Op::Class && prog.classes[inst.cls].test(c));
      if (ok)
        addState(next, pc + 1);
    }
    if (next.empty())
      return false;
    std::swap(current, next);
  }
  for (size_t pc : current)
    if (code[pc].op == Op::Match)
      return true;
  return false;
}

/// The characters every name matching `pattern` starts with: up to its first wildcard, brace
/// or escape.
std::string_view literalPrefix(std::string_view pattern) {
  return pattern.substr(0, std::min(pattern.size(), pattern.find_first_of("*?[{\\")));
}
/// The longest run of literal characters after the first wildcard of a pattern of only `*`
/// and `?` wildcards (literalPrefix covers the text before it): every name the pattern
/// matches contains that run. Empty for patterns with classes, braces or escapes, whose
/// literal parts are not simply the text between wildcards.
std::string_view requiredLiteral(std::string_view pattern) {
  if (pattern.find_first_of("[{\\") != std::string_view::npos)
    return {};
  std::string_view best;
  size_t start = pattern.find_first_of("*?");
  if (start == std::string_view::npos)
    return {};
  ++start;
  while (start <= pattern.size()) {
    size_t end = std::min(pattern.size(), pattern.find_first_of("*?", start));
    if (end - start > best.size())
      best = pattern.substr(start, end - start);
    start = end + 1;
  }
  return best;
}
} // namespace

/// Hides the NFA's types from Glob.h.
struct CompiledGlob::Program {
  NfaProgram nfa;
};

CompiledGlob::CompiledGlob(std::string_view pattern)
    : prefix_(literalPrefix(pattern)), required_(requiredLiteral(pattern)) {
  literal_ = prefix_.size() == pattern.size();
  if (literal_)
    return;
  Compiler compiler(pattern);
  if (auto prog = compiler.compile())
    program_ = std::make_shared<const Program>(Program{std::move(*prog)});
}

bool CompiledGlob::match(std::string_view name) const {
  uint64_t steps = 0;
  return match(name, steps);
}

bool CompiledGlob::match(std::string_view name, uint64_t &steps) const {
  if (literal_)
    return name == prefix_;
  // Most patterns start with a literal ("model.layers."): most names fail on it, cheaply.
  if (!program_ || name.substr(0, prefix_.size()) != prefix_)
    return false; // a malformed pattern matches nothing; callers report it through globCheck
  // Then a literal part in the middle ("model.*.12.*": ".12."), before the NFA runs.
  if (!required_.empty() && name.find(required_) == std::string_view::npos)
    return false;
  return run(program_->nfa, name, steps);
}

bool globMatch(std::string_view pattern, std::string_view name) {
  return CompiledGlob(pattern).match(name);
}

std::optional<std::string> globCheck(std::string_view pattern) {
  Compiler compiler(pattern);
  if (compiler.compile())
    return std::nullopt;
  return compiler.error();
}

} // namespace mergec::rt
