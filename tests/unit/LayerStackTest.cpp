//===- LayerStackTest.cpp - layer slices: names, origins, config.json -----===//
#include "mergec/Runtime/LayerStack.h"
#include "mergec/Runtime/Executor.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace mergec::rt;

namespace {

// layers [a[0:2], (a[2:5], b[1:4]), b[3:6]]
std::vector<LayerSlice> exampleSlices() {
  return {{{{"a", 0, 2}}}, {{{"a", 2, 5}, {"b", 1, 4}}}, {{{"b", 3, 6}}}};
}

TEST(LayerStack, RenamesTheLayerIndexLayerIndexReads) {
  EXPECT_EQ(withLayerIndex("model.layers.7.mlp.up_proj.weight", 12),
            "model.layers.12.mlp.up_proj.weight");
  EXPECT_EQ(withLayerIndex("model.layers.12.self_attn.q_proj.weight", 3),
            "model.layers.3.self_attn.q_proj.weight");
  // The index layerIndex reads is the one renamed (a name may hold `layers.` elsewhere).
  std::string odd = "model.sublayers.1.x.layers.4.weight";
  EXPECT_EQ(layerIndex(odd), 4);
  EXPECT_EQ(withLayerIndex(odd, 9), "model.sublayers.1.x.layers.9.weight");
  EXPECT_EQ(withLayerIndex("model.embed_tokens.weight", 1), std::nullopt);
  EXPECT_EQ(withLayerIndex("model.layers.x.weight", 1), std::nullopt);
}

TEST(LayerStack, OriginsMapEveryModelOfASlice) {
  auto slices = exampleSlices();
  auto origins = layerOrigins(slices);
  ASSERT_EQ(origins.size(), 8u);
  // Output layer 3: slice 1, offset 1: a reads 3, b reads 2, a model not named reads a's 3.
  EXPECT_EQ(origins[3].slice, 1u);
  EXPECT_EQ(origins[3].offset, 1);
  EXPECT_EQ(origins[3].sourceLayer(slices[1], "a"), 3);
  EXPECT_EQ(origins[3].sourceLayer(slices[1], "b"), 2);
  EXPECT_EQ(origins[3].sourceLayer(slices[1], "base"), 3);
  // Output layer 6: slice 2, offset 1: b 4, and a (not named) reads b's 4.
  EXPECT_EQ(origins[6].sourceLayer(slices[2], "a"), 4);
  EXPECT_EQ(origins[7].sourceLayer(slices[2], "b"), 5);
  EXPECT_EQ(describeLayers(slices), "a[0:2], (a[2:5], b[1:4]), b[3:6]");
  EXPECT_EQ(layersFromJson(layersToJson(slices)).size(), 3u);
  EXPECT_EQ(describeLayers(layersFromJson(layersToJson(slices))), describeLayers(slices));
}

TEST(LayerStack, ConfigGetsTheCountAndSlicedLists) {
  // Output: a[0:2], then b[1:3]: a's config is the output model's.
  std::vector<LayerSlice> slices = {{{{"a", 0, 2}}}, {{{"b", 1, 3}}}};
  std::string a = R"({"num_hidden_layers": 3, "layer_types": ["x0", "x1", "x2"],
                      "no_rope_layers": [1, 0, 1], "mystery": [7, 8, 9], "hidden_size": 8})";
  std::string b = R"({"num_hidden_layers": 3, "layer_types": ["y0", "y1", "y2"]})";
  std::vector<std::string> warnings;
  std::string text = stackedConfig(a, "a/config.json", 3, 4, layerOrigins(slices), slices,
                                   {{"a", "a/config.json", a}, {"b", "b/config.json", b}},
                                   warnings);
  auto config = nlohmann::ordered_json::parse(text);
  EXPECT_EQ(config["num_hidden_layers"], 4);
  EXPECT_EQ(config["layer_types"], nlohmann::json({"x0", "x1", "y1", "y2"}));
  // b's config has no no_rope_layers: its layers take the output model's entries, with a warning.
  EXPECT_EQ(config["no_rope_layers"], nlohmann::json({1, 0, 0, 1}));
  EXPECT_EQ(config["mystery"], nlohmann::json({7, 8, 9}));
  EXPECT_EQ(config["hidden_size"], 8);
  // The keys keep their order.
  std::vector<std::string> keys;
  for (auto it = config.begin(); it != config.end(); ++it)
    keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"num_hidden_layers", "layer_types", "no_rope_layers",
                                            "mystery", "hidden_size"}));
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("'no_rope_layers' of the layers taken from model 'b'"),
            std::string::npos);
  EXPECT_NE(warnings[1].find("'mystery' is a list of 3 items"), std::string::npos);
}

TEST(LayerStack, ConfigListWithoutEntriesIsRemoved) {
  // Output layers past the output model's list, from a model without a config: no entry.
  std::vector<LayerSlice> slices = {{{{"b", 2, 5}}}};
  std::string a = R"({"n_layer": 3, "layer_types": ["x0", "x1", "x2"]})";
  std::vector<std::string> warnings;
  auto config = nlohmann::json::parse(
      stackedConfig(a, "a/config.json", 3, 3, layerOrigins(slices), slices, {}, warnings));
  EXPECT_EQ(config["n_layer"], 3);
  EXPECT_FALSE(config.contains("layer_types"));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("'layer_types' is removed"), std::string::npos);
  // Not an object: unchanged, with a warning.
  warnings.clear();
  EXPECT_EQ(stackedConfig("[1, 2]", "a/config.json", 3, 3, layerOrigins(slices), slices, {},
                          warnings),
            "[1, 2]");
  EXPECT_EQ(warnings.size(), 1u);
}

} // namespace
