//===- Number.h - the recipe language's numbers -----------------*- C++ -*-===//
// In the runtime (plain C++) so that the compiler's parser, `mergec run --set` and merge
// executables' `--set` read numbers one way.
#pragma once
#include <optional>
#include <string_view>

namespace mergec::rt {

/// The value of a number written as grammar/Merge.g4's NUMBER token, optionally preceded by '-'
/// (a `param` value): the one reading of numbers for recipes and `--set`. nullopt when `text`
/// is anything else (hex, "inf", "nan", spaces, a '+' sign, trailing characters); +-inf when it
/// is too large for a double (callers report it as out of range); a number too small for a
/// double rounds to a subnormal or 0.
std::optional<double> parseNumber(std::string_view text);

} // namespace mergec::rt
