//===- Number.cpp - the recipe language's numbers -------------------------===//
// One reading of a number for the recipe's literals and for `--set NAME=VALUE`, so the command
// line accepts exactly what a recipe does and gives the same double.
#include "mergec/Runtime/Number.h"

#include <cstdlib>
#include <string>

namespace {
bool isDigit(char c) { return c >= '0' && c <= '9'; }
} // namespace

std::optional<double> mergec::rt::parseNumber(std::string_view text) {
  // grammar/Merge.g4: NUMBER : DIGITS ('.' DIGITS?)? EXPONENT? | '.' DIGITS EXPONENT? ;
  // EXPONENT : [eE] [+-]? DIGITS ; a param's value may start with '-'.
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < text.size() && isDigit(text[i]))
      ++i;
    return i - start;
  };
  if (i < text.size() && text[i] == '-')
    ++i;
  size_t whole = digits(), fraction = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    fraction = digits();
  }
  if (whole == 0 && fraction == 0)
    return std::nullopt;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-'))
      ++i;
    if (digits() == 0)
      return std::nullopt;
  }
  if (i != text.size())
    return std::nullopt;
  // The text is now plain decimal (no hex, inf or nan, no spaces), which strtod reads the same
  // in every locale that mergec runs in (it never sets one). Too large gives inf, which the
  // callers report as out of range; too small rounds to a subnormal or 0, as IEEE rounding does.
  std::string copy(text);
  return std::strtod(copy.c_str(), nullptr);
}
