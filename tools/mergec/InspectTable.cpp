//===- InspectTable.cpp - mergec inspect's table on stdout ----------------===//
#include "Inspect.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace mergec {

namespace {

/// A number as the table shows it, or "-" for null (a task vector that is all zeros).
std::string cell(const nlohmann::ordered_json &v, const char *format) {
  if (v.is_null())
    return "-";
  char text[32];
  std::snprintf(text, sizeof text, format, v.get<double>());
  return text;
}

/// The header and the rows, columns padded to their widest entry (the kind left-aligned, the
/// numbers right-aligned).
std::string layout(const std::vector<std::vector<std::string>> &rows) {
  std::vector<size_t> width;
  for (const auto &row : rows)
    for (size_t i = 0; i < row.size(); ++i) {
      width.resize(std::max(width.size(), row.size()));
      width[i] = std::max(width[i], row[i].size());
    }
  std::ostringstream out;
  for (const auto &row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      std::string pad(width[i] - row[i].size(), ' ');
      line += i == 1 ? row[i] + pad : pad + row[i];
      if (i + 1 < row.size())
        line += "  ";
    }
    while (!line.empty() && line.back() == ' ')
      line.pop_back();
    out << line << "\n";
  }
  return out.str();
}

} // namespace

std::string inspectTable(const nlohmann::ordered_json &report) {
  std::vector<std::string> names;
  for (const auto &m : report["models"])
    names.push_back(m["name"]);
  int percent = static_cast<int>(report["density"].get<double>() * 100 + 0.5);
  std::string keep = "top" + std::to_string(percent) + "%";
  std::vector<std::string> header{"layer", "kind"};
  for (const auto &p : report["pairs"]) {
    std::string pair = names[p[0].get<size_t>()] + "/" + names[p[1].get<size_t>()];
    header.push_back("cos " + pair);
    header.push_back("sign " + pair);
  }
  for (const std::string &n : names) {
    header.push_back("norm " + n);
    header.push_back(keep + " " + n);
  }
  auto row = [&](const std::string &layer, const nlohmann::ordered_json &r) {
    std::vector<std::string> cells{layer, r["kind"].get<std::string>()};
    for (const auto &p : r["pairs"]) {
      cells.push_back(cell(p["cosine"], "%+.4f"));
      cells.push_back(cell(p["sign_agreement"], "%.4f"));
    }
    for (const auto &m : r["models"]) {
      cells.push_back(cell(m["norm"], "%.4g"));
      cells.push_back(cell(m["topk_kept"], "%.4f"));
    }
    return cells;
  };
  std::ostringstream out;
  out << "base " << report["base"].get<std::string>() << "; task vectors (model - base) of";
  for (size_t i = 0; i < names.size(); ++i)
    out << (i ? ", " : " ") << names[i];
  out << "\n"
      << "cos: cosine similarity of two task vectors; sign: of the elements where both are "
         "non-zero, the share with the same sign;\n"
      << "norm: the task vector's L2 norm; " << keep
      << ": the share of its squared L2 norm in its largest " << percent
      << "% magnitudes (TIES top-k)\n\n";
  std::vector<std::vector<std::string>> rows{header};
  for (const auto &t : report["tensors"])
    rows.push_back(row(t["layer"].is_null() ? "-" : std::to_string(t["layer"].get<int>()), t));
  out << layout(rows);
  out << "\nper kind, over all layers (the sums of every layer's tensors of the kind):\n";
  std::vector<std::vector<std::string>> summary{header};
  summary[0][0] = "layers";
  for (const auto &k : report["kinds"])
    summary.push_back(row(std::to_string(k["tensors"].get<size_t>()), k));
  out << layout(summary);
  return out.str();
}

} // namespace mergec
