//===- LayerStack.cpp - an output whose layers are slices of source layers ===//
#include "mergec/Runtime/LayerStack.h"
#include "Support.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Executor.h"

#include <algorithm>
#include <map>

namespace mergec::rt {

const std::vector<std::string> kPerLayerConfigKeys = {"layer_types", "no_rope_layers",
                                                      "activation_sparsity_pattern",
                                                      "block_configs"};

int LayerOrigin::sourceLayer(const LayerSlice &s, const std::string &model) const {
  for (const LayerSlice::Source &source : s.sources)
    if (source.model == model)
      return source.begin + offset;
  return s.sources.front().begin + offset;
}

std::vector<LayerOrigin> layerOrigins(const std::vector<LayerSlice> &slices) {
  std::vector<LayerOrigin> origins;
  for (size_t k = 0; k < slices.size(); ++k)
    for (int i = 0; i < slices[k].length(); ++i)
      origins.push_back({k, i});
  return origins;
}

std::string describeLayers(const std::vector<LayerSlice> &slices) {
  std::string text;
  for (const LayerSlice &slice : slices) {
    std::string sources;
    for (const LayerSlice::Source &s : slice.sources)
      sources += (sources.empty() ? "" : ", ") + s.model + "[" + std::to_string(s.begin) + ":" +
                 std::to_string(s.end) + "]";
    text += (text.empty() ? "" : ", ") +
            (slice.sources.size() > 1 ? "(" + sources + ")" : sources);
  }
  return text;
}

nlohmann::json layersToJson(const std::vector<LayerSlice> &slices) {
  nlohmann::json json = nlohmann::json::array();
  for (const LayerSlice &slice : slices) {
    nlohmann::json sources = nlohmann::json::array();
    for (const LayerSlice::Source &s : slice.sources)
      sources.push_back({{"model", s.model}, {"begin", s.begin}, {"end", s.end}});
    json.push_back(sources);
  }
  return json;
}

std::vector<LayerSlice> layersFromJson(const nlohmann::json &json) {
  std::vector<LayerSlice> slices;
  for (const nlohmann::json &sources : json) {
    LayerSlice slice;
    for (const nlohmann::json &s : sources)
      slice.sources.push_back(
          {s.at("model").get<std::string>(), s.at("begin").get<int>(), s.at("end").get<int>()});
    slices.push_back(std::move(slice));
  }
  return slices;
}

std::optional<std::string> withLayerIndex(const std::string &name, int layer) {
  auto digits = layerIndexDigits(name);
  if (!digits)
    return std::nullopt;
  return name.substr(0, digits->first) + std::to_string(layer) + name.substr(digits->second);
}

std::string stackedConfig(std::string_view text, const std::string &path, int outputModelLayers,
                          int outputLayers, const std::vector<LayerOrigin> &origins,
                          const std::vector<LayerSlice> &slices,
                          const std::vector<SourceConfig> &sourceConfigs,
                          std::vector<std::string> &warnings) {
  // The lenient parse checks the nesting depth first; the ordered parse keeps the keys in the
  // order the model's authors wrote them.
  if (!detail::parseLenientJson(text, path, "config").is_object()) {
    warnings.push_back(path + " is not a JSON object: copied unchanged, without the output's "
                       "layer count (" + std::to_string(outputLayers) + ")");
    return std::string(text);
  }
  auto config = nlohmann::ordered_json::parse(text);
  for (const char *key : {"num_hidden_layers", "n_layer", "num_layers"})
    if (config.contains(key) && !config[key].is_null())
      config[key] = outputLayers;

  std::map<std::string, nlohmann::ordered_json> sources;
  for (const SourceConfig &c : sourceConfigs) {
    auto parsed = detail::parseLenientJson(c.text, c.path, "config");
    if (parsed.is_object())
      sources[c.model] = nlohmann::ordered_json::parse(c.text);
  }
  std::vector<std::string> removed;
  for (auto it = config.begin(); it != config.end(); ++it) {
    const std::string &key = it.key();
    if (!it->is_array() || static_cast<int>(it->size()) != outputModelLayers)
      continue;
    bool known = std::find(kPerLayerConfigKeys.begin(), kPerLayerConfigKeys.end(), key) !=
                 kPerLayerConfigKeys.end();
    if (!known) {
      warnings.push_back(path + ": '" + key + "' is a list of " +
                         std::to_string(outputModelLayers) +
                         " items, one per layer perhaps; it is copied unchanged into the "
                         "output's config.json (mergec rebuilds only " +
                         [] {
                           std::string keys;
                           for (const std::string &k : kPerLayerConfigKeys)
                             keys += (keys.empty() ? "" : ", ") + k;
                           return keys;
                         }() +
                         " for the output's layers)");
      continue;
    }
    nlohmann::ordered_json rebuilt = nlohmann::ordered_json::array();
    std::vector<std::string> borrowed;
    bool complete = true;
    for (const LayerOrigin &o : origins) {
      const LayerSlice::Source &first = slices[o.slice].sources.front();
      int layer = first.begin + o.offset;
      auto own = sources.find(first.model);
      if (own != sources.end() && own->second.contains(key) && own->second[key].is_array() &&
          layer < static_cast<int>(own->second[key].size())) {
        rebuilt.push_back(own->second[key][layer]);
      } else if (layer < static_cast<int>(it->size())) {
        rebuilt.push_back((*it)[layer]);
        if (std::find(borrowed.begin(), borrowed.end(), first.model) == borrowed.end())
          borrowed.push_back(first.model);
      } else {
        complete = false;
        break;
      }
    }
    if (!complete) {
      warnings.push_back(path + ": '" + key + "' is removed from the output's config.json: "
                         "no config gives an entry for every output layer");
      removed.push_back(key);
      continue;
    }
    for (const std::string &model : borrowed)
      warnings.push_back("'" + key + "' of the layers taken from model '" + model +
                         "' comes from " + path + " (that model's config.json has no such list)");
    *it = std::move(rebuilt);
  }
  for (const std::string &key : removed)
    config.erase(key);
  return config.dump(2) + "\n";
}

} // namespace mergec::rt
