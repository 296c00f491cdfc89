//===- MergekitConfig.h - mergekit YAML configurations as recipes -*- C++ -*-===//
// `mergec import config.yml` and `mergec run|compile config.yml`: a mergekit configuration
// (merge_method, base_model, models with parameters, top-level parameters, gradients,
// filter/value lists, dtype, out_dtype, ...) is translated to recipe TEXT, which then goes
// through the ordinary parser and Sema: every check of the language applies, and what
// `mergec import` prints is exactly what `mergec run config.yml` runs. docs/cli.md,
// "mergekit configs", has the mapping and what is not supported yet.
#pragma once
#include "mergec/Frontend/Diagnostics.h"
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mergec::import {

/// True for a path `mergec run|compile|import` reads as a mergekit configuration (.yml, .yaml).
bool isMergekitConfigPath(const std::string &path);

struct ImportOptions {
  /// --model REF=PATH: a mergekit model reference (a Hugging Face name such as org/name, or a
  /// path as the YAML writes it) and the local directory it stands for (relative to the
  /// working directory).
  std::vector<std::pair<std::string, std::string>> models;
  /// The standard library's def names: a model named like one would shadow the method the
  /// recipe calls, so the translation renames it (as it does keywords and built-in names).
  std::set<std::string> libraryNames;
};

struct ImportResult {
  std::string recipe;              ///< the recipe's text
  std::optional<std::string> dtype; ///< the output dtype (f32, bf16, f16) out_dtype/dtype ask for
};

/// Translates the configuration at `path` (its text already read into `diags` as file
/// `file`). Errors are reported through `diags` at the YAML's line and column; returns nullopt
/// after one.
std::optional<ImportResult> importMergekitConfig(const std::string &path, int file,
                                                 const ImportOptions &options,
                                                 DiagnosticEngine &diags);

} // namespace mergec::import
