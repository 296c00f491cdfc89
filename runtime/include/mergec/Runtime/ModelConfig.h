//===- ModelConfig.h - what mergec reads from a model's config.json -*- C++ -*-===//
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace mergec::rt {

/// The layer count `config.json` (its text, read from `path`) gives model `modelName`:
/// `num_hidden_layers`, else `n_layer`, else `num_layers`; without any, 1 + `largestIndex` (the
/// largest layer index among the tensor names, -1 for none). The config wins when both exist: it
/// is what the model's own code reads, and names can hold extra modules (multi-token-prediction
/// layers). When a rule reads num_layers (`used`), a disagreement, or a config that is not an
/// object, is a warning naming both. A value that is not a positive integer (null counts as
/// absent) and JSON that is malformed or nested too deeply are RuntimeErrors naming `path`.
int layersFromConfig(std::string_view text, const std::string &path, const std::string &modelName,
                     int largestIndex, bool used, std::vector<std::string> &warnings);

} // namespace mergec::rt
