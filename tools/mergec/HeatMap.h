//===- HeatMap.h - mergec inspect --png: layers x pairs heat maps -*- C++ -*-===//
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace mergec {

/// The geometry docs/cli.md documents (and tests/e2e/check_inspect.py decodes): pixels.
namespace heatmap {
constexpr int kMargin = 8;     ///< around the image
constexpr int kCell = 12;      ///< a cell's side
constexpr int kPairGap = 6;    ///< between the column groups of two pairs
constexpr int kLegendGap = 4;  ///< between a panel's cells and its legend bar
constexpr int kLegend = 10;    ///< the legend bar's height
constexpr int kPanelGap = 16;  ///< between two panels
} // namespace heatmap

/// `report` (inspectModels' document) as a PNG: two panels, cosine similarity (scale -1..1) and
/// sign agreement (0..1), one above the other. In each, a row per layer (0 at the top) and a
/// column per pair and tensor kind (a group of the layer kinds per pair, in the report's pair
/// order; kinds in the order the base model has them); a diverging scale, blue at the low end,
/// white in the middle, red at the high end, grey where there is no value; under the cells a
/// legend bar running the scale from left to right.
std::string heatMapPng(const nlohmann::ordered_json &report);

} // namespace mergec
