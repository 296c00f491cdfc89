//===- Inspect.h - mergec inspect: how fine-tunes' task vectors compare -*- C++ -*-===//
// Per layer and tensor kind, for the task vectors tv = model - base of several fine-tunes of one
// base: each pair's cosine similarity and sign agreement, each tv's norm and the share of it a
// TIES top-k keeps. The statistics are the compiler's own: a generated recipe whose reductions
// compute them, compiled by the normal pipeline and streamed once over the models by an
// analysis run (rt::analyzeTensors) that reads the reductions' scalar slots.
#pragma once
#include "Options.h"

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mergec {

/// The statistics of cl.inspectModels (named `names`, parallel to them) against the base
/// cl.recipe, as the JSON document `mergec inspect --json` prints (docs/cli.md has its schema).
/// Throws rt::RuntimeError naming the model and tensor when the models differ in tensors or
/// shapes or cannot be read.
nlohmann::ordered_json inspectModels(const CommandLine &cl, const std::vector<std::string> &names);

/// Display names for model paths: each path's last component, or the whole path where two
/// last components are the same.
std::vector<std::string> modelNames(const std::vector<std::string> &paths);

/// The document as the table `mergec inspect` prints: a row per tensor (layer x kind), then a
/// row per kind over all layers.
std::string inspectTable(const nlohmann::ordered_json &report);

/// mergec inspect: the table (or --json's document) on stdout, --png's heat map.
int runInspect(const CommandLine &cl);

} // namespace mergec
