//===- LayerStack.h - an output whose layers are slices of source layers -*- C++ -*-===//
// A recipe's `layers [a[0:24], b[20:40]]` (docs/language.md, "Layer stacking"): the output's
// layers numbered consecutively over slices of the models' layers (frankenmerges, depth
// up-scaling). The planner maps each output layer tensor to the source tensors it reads; this
// header holds what the planner, the config writer and the tools share about it.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mergec::rt {

/// One slice of the output's layers: sources of one length, the first of them the slice's
/// `source` (whose tensor list, shapes and dtypes the output layers take).
struct LayerSlice {
  struct Source {
    std::string model;
    int begin = 0, end = 0; ///< a half-open range of the model's layers
  };
  std::vector<Source> sources;
  int length() const { return sources.front().end - sources.front().begin; }
};

/// The rule input that stands for `source` in a recipe: the current output tensor read from the
/// slice's first source model (outside the layers: from the output model). Not an identifier,
/// so no model can be called so; the planner maps it per output tensor, which keeps the kernels
/// and the runtime free of the slices.
inline constexpr std::string_view kSourceInput = "@source";

/// Where output layer L comes from: the slice, and the layer of each of its sources.
struct LayerOrigin {
  size_t slice = 0;
  int offset = 0; ///< L minus the slice's first output layer
  /// The layer model `model` reads for this output layer: its own range's begin + offset when
  /// the slice names it, else the layer the slice's first source reads.
  int sourceLayer(const LayerSlice &s, const std::string &model) const;
};

/// Every output layer's origin, in output order (sum of the slices' lengths).
std::vector<LayerOrigin> layerOrigins(const std::vector<LayerSlice> &slices);

/// `a[0:24], (a[16:32], b[16:32])`: the slices as a recipe writes them (messages, manifest).
std::string describeLayers(const std::vector<LayerSlice> &slices);

/// The slices as a merge executable's program JSON holds them: one array per slice of
/// {"model", "begin", "end"}; layersFromJson reads that back (nlohmann's exceptions on a
/// malformed value: the JSON is mergec's own).
nlohmann::json layersToJson(const std::vector<LayerSlice> &slices);
std::vector<LayerSlice> layersFromJson(const nlohmann::json &slices);

/// `name` with the N of its `model.layers.N.` (the one layerIndex reads) replaced by `layer`;
/// nullopt when the name has no layer index.
std::optional<std::string> withLayerIndex(const std::string &name, int layer);

/// A source model's config.json, for the per-layer lists of a stacked output's config.
struct SourceConfig {
  std::string model, path, text;
};

/// The config.json of a stacked output, from the output model's (its text, read from `path`):
/// the layer count keys it has (`num_hidden_layers`, `n_layer`, `num_layers`) set to the output's
/// layer count, and the per-layer lists transformers' configs carry (kPerLayerConfigKeys, when
/// as long as the output model's layer count `outputModelLayers`) rebuilt with one entry per
/// output layer: output layer L takes the entry of its source layer (the slice's first source's)
/// from that model's own config in `sourceConfigs`, else (same architecture, no config of its
/// own) from the output model's list, with a warning; where neither has it, the key is removed
/// with a warning (transformers then derives its default). Other keys are kept as they are; a
/// list of exactly `outputModelLayers` items under another key is left alone with a warning
/// (it may be per-layer, and a config that does not load is better noticed than guessed).
/// A config that is not a JSON object is returned unchanged, with a warning (the weights are
/// merged by then; only the model's loading is at stake).
std::string stackedConfig(std::string_view text, const std::string &path, int outputModelLayers,
                          int outputLayers, const std::vector<LayerOrigin> &origins,
                          const std::vector<LayerSlice> &slices,
                          const std::vector<SourceConfig> &sourceConfigs,
                          std::vector<std::string> &warnings);

/// The top-level config.json keys whose value is a list with one item per layer (Qwen2/3,
/// Gemma 2/3, Cohere2, GPT-OSS `layer_types`; Llama 4 and SmolLM3 `no_rope_layers`; Gemma 3n
/// `activation_sparsity_pattern`; DeciLM / Nemotron-NAS `block_configs`).
extern const std::vector<std::string> kPerLayerConfigKeys;

} // namespace mergec::rt
