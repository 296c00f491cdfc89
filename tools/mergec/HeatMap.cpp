//===- HeatMap.cpp - mergec inspect --png: layers x pairs heat maps -------===//
#include "HeatMap.h"
#include "Png.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <vector>

namespace mergec {

namespace {

struct Rgb {
  uint8_t r, g, b;
};
constexpr Rgb kLow{33, 102, 172}, kMiddle{247, 247, 247}, kHigh{178, 24, 43};
constexpr Rgb kMissing{160, 160, 160}, kBackground{255, 255, 255}, kTick{0, 0, 0};

/// `v` on the scale lo..hi: white at the middle, blending linearly to blue at lo and red at hi
/// (each channel rounded to nearest); values outside are clamped.
Rgb scale(double v, double lo, double hi) {
  double t = std::clamp((v - (lo + hi) / 2) / ((hi - lo) / 2), -1.0, 1.0);
  const Rgb &end = t < 0 ? kLow : kHigh;
  double f = std::fabs(t);
  auto mix = [&](uint8_t from, uint8_t to) {
    return static_cast<uint8_t>(std::lround(from + f * (static_cast<double>(to) - from)));
  };
  return {mix(kMiddle.r, end.r), mix(kMiddle.g, end.g), mix(kMiddle.b, end.b)};
}

struct Panel {
  const char *statistic;
  double lo, hi;
};

} // namespace

std::string heatMapPng(const nlohmann::ordered_json &report) {
  using namespace heatmap;
  // Layers and the kinds of layer tensors, in the order the base has them.
  std::vector<std::string> kinds;
  std::map<std::string, size_t> kindIndex;
  int layers = 0;
  for (const auto &t : report["tensors"]) {
    if (t["layer"].is_null())
      continue;
    layers = std::max(layers, t["layer"].get<int>() + 1);
    std::string kind = t["kind"];
    if (kindIndex.emplace(kind, kinds.size()).second)
      kinds.push_back(kind);
  }
  int pairs = static_cast<int>(report["pairs"].size());
  int columns = static_cast<int>(kinds.size());
  const std::vector<Panel> panels = {{"cosine", -1, 1}, {"sign_agreement", 0, 1}};
  int cellsWidth = std::max(pairs * columns * kCell + std::max(pairs - 1, 0) * kPairGap, kCell);
  int panelHeight = layers * kCell + kLegendGap + kLegend;
  int width = 2 * kMargin + cellsWidth;
  int height = 2 * kMargin + static_cast<int>(panels.size()) * panelHeight +
               (static_cast<int>(panels.size()) - 1) * kPanelGap;
  RgbImage image(width, height, kBackground.r, kBackground.g, kBackground.b);
  for (size_t s = 0; s < panels.size(); ++s) {
    const Panel &panel = panels[s];
    int top = kMargin + static_cast<int>(s) * (panelHeight + kPanelGap);
    // Every cell grey first: a layer without that kind keeps it.
    for (int p = 0; p < pairs; ++p)
      image.fill(kMargin + p * (columns * kCell + kPairGap), top, columns * kCell, layers * kCell,
                 kMissing.r, kMissing.g, kMissing.b);
    for (const auto &t : report["tensors"]) {
      if (t["layer"].is_null())
        continue;
      int layer = t["layer"].get<int>();
      int column = static_cast<int>(kindIndex[t["kind"].get<std::string>()]);
      for (int p = 0; p < pairs; ++p) {
        const auto &value = t["pairs"][p][panel.statistic];
        if (value.is_null())
          continue;
        Rgb c = scale(value.get<double>(), panel.lo, panel.hi);
        image.fill(kMargin + p * (columns * kCell + kPairGap) + column * kCell,
                   top + layer * kCell, kCell, kCell, c.r, c.g, c.b);
      }
    }
    // The legend: the scale from lo (left) to hi (right) across the cells' width, with ticks
    // at both ends and the middle.
    int legendTop = top + layers * kCell + kLegendGap;
    for (int x = 0; x < cellsWidth; ++x) {
      double v = panel.lo + (panel.hi - panel.lo) * (cellsWidth == 1 ? 0.5 : x / double(cellsWidth - 1));
      Rgb c = scale(v, panel.lo, panel.hi);
      image.fill(kMargin + x, legendTop, 1, kLegend, c.r, c.g, c.b);
    }
    for (int x : {0, cellsWidth / 2, cellsWidth - 1})
      image.fill(kMargin + x, legendTop + kLegend - 3, 1, 3, kTick.r, kTick.g, kTick.b);
  }
  return encodePng(image);
}

} // namespace mergec
