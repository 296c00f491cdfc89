//===- Parser.h - recipe text to AST ----------------------------*- C++ -*-===//
#pragma once
#include "mergec/AST/AST.h"
#include "mergec/Frontend/Diagnostics.h"
#include <memory>

namespace mergec {

/// Parses a recipe with the ANTLR grammar (grammar/Merge.g4) and builds the AST. Reports the
/// first syntax error through `diags` and returns null on failure.
std::unique_ptr<ast::Recipe> parseRecipe(DiagnosticEngine &diags);

} // namespace mergec
