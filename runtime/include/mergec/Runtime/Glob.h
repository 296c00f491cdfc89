//===- Glob.h - tensor-name glob patterns -----------------------*- C++ -*-===//
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace mergec::rt {

/// Matches a glob against a whole tensor name: `*` any run of characters (dots included),
/// `?` one character, `[0-7]`/`[abc]`/`[!0-9]` a class, `{a,b,c}` alternatives (may nest and
/// contain other wildcards), `\x` a literal x. Linear-ish backtracking, no recursion blow-up on
/// `****` patterns.
bool globMatch(std::string_view pattern, std::string_view name);

/// Returns an error message ("unterminated '['", "unbalanced '{'", ...) for a malformed
/// pattern, or nullopt when it is well formed.
std::optional<std::string> globCheck(std::string_view pattern);

} // namespace mergec::rt
