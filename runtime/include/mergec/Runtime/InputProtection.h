//===- InputProtection.h - outputs never overlap what mergec reads -*- C++ -*-===//
// mergec replaces and removes whole directories (its output, --force) and writes files
// (compile -o). None of that may ever reach a user's models, adapters or recipe, whatever
// mix of symlinks, `..` and bind mounts names them.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace mergec::rt {

/// A path mergec reads and must never write over or remove: a model directory or file, an
/// adapter, the recipe, the standard library.
struct ProtectedInput {
  std::string what; ///< for messages: "model 'base'", "the recipe"
  std::string path;
};

/// Whether `inner` is `outer` or lies below it, comparing whole path components (both already
/// resolved: absolute, no `.`, `..` or links).
bool pathWithin(const std::filesystem::path &inner, const std::filesystem::path &outer);

/// Throws RuntimeError when `output` (after resolving symlinks and `..`) is, contains or lies
/// inside any input, naming the input and the relation.
void checkOutputAgainstInputs(const std::string &output, const std::vector<ProtectedInput> &inputs);

} // namespace mergec::rt
