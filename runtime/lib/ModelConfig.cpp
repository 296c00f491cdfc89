//===- ModelConfig.cpp - what mergec reads from a model's config.json -----===//
#include "mergec/Runtime/ModelConfig.h"
#include "Support.h"
#include "mergec/Runtime/Error.h"

#include <limits>

namespace mergec::rt {

int layersFromConfig(std::string_view text, const std::string &path, const std::string &name,
                     int largest, bool used, std::vector<std::string> &warnings) {
  int fromNames = largest + 1;
  auto config = detail::parseLenientJson(text, path, "config");
  if (!config.is_object()) {
    if (used)
      warnings.push_back(path + " is not a JSON object; num_layers = " +
                         std::to_string(fromNames) + " from the tensor names of model '" + name +
                         "'");
    return fromNames;
  }
  for (const char *key : {"num_hidden_layers", "n_layer", "num_layers"}) {
    if (!config.contains(key) || config[key].is_null())
      continue;
    const nlohmann::json &value = config[key];
    // JSON integers only: 12.5, "12" or true are no layer count.
    if (!value.is_number_unsigned() || value.get<uint64_t>() == 0 ||
        value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int>::max()))
      throw RuntimeError(path + ": " + key + " is " + detail::jsonExcerpt(value) +
                         "; it must be a positive integer (model '" + name + "')");
    int layers = value.get<int>();
    if (used && largest >= 0 && layers != fromNames)
      warnings.push_back(path + " says " + key + " = " + std::to_string(layers) +
                         ", but the tensor names of model '" + name + "' have layers 0 to " +
                         std::to_string(largest) + " (" + std::to_string(fromNames) +
                         "); num_layers is " + std::to_string(layers) + ", from config.json");
    return layers;
  }
  return fromNames;
}

} // namespace mergec::rt
