//===- Parser.h - recipe text to AST ----------------------------*- C++ -*-===//
#pragma once
#include "mergec/AST/AST.h"
#include "mergec/Frontend/Diagnostics.h"
#include <memory>
#include <string>

namespace mergec {

/// Parses source `file` of `diags` (0: the recipe) with the ANTLR grammar (grammar/Merge.g4) and
/// builds the AST, every location tagged with `file`. Reports the first syntax error through
/// `diags` and returns null on failure.
std::unique_ptr<ast::Recipe> parseRecipe(DiagnosticEngine &diags, int file = 0);

/// Whether `name` is one of the grammar's keywords (its literal tokens that read as names:
/// model, def, merge, let, ...), which no declaration can take.
bool isKeyword(const std::string &name);

} // namespace mergec
