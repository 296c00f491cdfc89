//===- RuleDescription.cpp - a compiled rule as data ----------------------===//
#include "mergec/Runtime/RuleDescription.h"
#include "mergec/Runtime/Error.h"

#include <algorithm>

namespace mergec::rt {

using nlohmann::json;
using Kind = CompiledRule::Kind;
using Reduction = CompiledRule::Reduction;
using RowOp = CompiledRule::RowOp;

// One table per enum: the names in the JSON, both directions.
NLOHMANN_JSON_SERIALIZE_ENUM(Kind, {{Kind::Reduce, "reduce"},
                                    {Kind::TopK, "topk"},
                                    {Kind::Quantile, "quantile"},
                                    {Kind::Row, "row"},
                                    {Kind::Matrix, "matrix"},
                                    {Kind::Map, "map"}})
NLOHMANN_JSON_SERIALIZE_ENUM(Reduction, {{Reduction::Sum, "sum"}, {Reduction::Max, "max"}})
NLOHMANN_JSON_SERIALIZE_ENUM(RowOp, {{RowOp::Rank, "rank"}, {RowOp::Sum, "sum"}, {RowOp::Max, "max"}})

std::string KernelSignature::tag() const {
  std::string tag;
  for (size_t i = 0; i < inputs.size(); ++i)
    tag += std::string(i ? "_" : "") + dtypeName(inputs[i]);
  return tag + "__" + dtypeName(output);
}

std::string KernelSignature::text() const {
  std::string text;
  for (size_t i = 0; i < inputs.size(); ++i)
    text += std::string(i ? "," : "") + dtypeName(inputs[i]);
  return text + " -> " + dtypeName(output);
}

std::vector<double> bindParams(const std::vector<std::string> &names,
                               const std::vector<std::pair<std::string, double>> &values) {
  std::vector<double> bound;
  for (const std::string &name : names) {
    auto it = std::find_if(values.begin(), values.end(),
                           [&](const auto &v) { return v.first == name; });
    if (it == values.end())
      throw RuntimeError("internal: no value for param '" + name + "'");
    bound.push_back(it->second);
  }
  return bound;
}

json describeRule(const CompiledRule &rule) {
  json phases = json::array();
  for (const CompiledRule::Phase &p : rule.phases)
    phases.push_back({{"symbol", p.symbol},
                      {"kind", p.kind},
                      {"reductions", p.reductions},
                      {"row", p.row},
                      {"scalars", p.scalars},
                      {"buffers", p.buffers},
                      {"matrices", p.matrices},
                      {"spectral", p.spectral},
                      {"param", p.param},
                      {"skip", p.skip},
                      {"nonzero", p.nonzero},
                      {"first_slot", p.firstSlot},
                      {"model_scope", p.modelScope},
                      {"deps", p.deps}});
  return {{"phases", phases},
          {"scalar_slots", rule.scalarSlots},
          {"params", rule.params},
          {"first_param_slot", rule.firstParamSlot}};
}

CompiledRule ruleFromDescription(const json &j, const std::string &what) {
  try {
    CompiledRule rule;
    rule.scalarSlots = j.at("scalar_slots").get<int64_t>();
    rule.params = j.at("params").get<std::vector<std::string>>();
    rule.firstParamSlot = j.at("first_param_slot").get<int64_t>();
    if (rule.firstParamSlot + static_cast<int64_t>(rule.params.size()) > rule.scalarSlots)
      throw RuntimeError(what + ": params past the scalars array");
    for (const json &p : j.at("phases")) {
      CompiledRule::Phase phase;
      phase.symbol = p.at("symbol").get<std::string>();
      phase.kind = p.at("kind").get<Kind>();
      phase.reductions = p.at("reductions").get<std::vector<Reduction>>();
      phase.row = p.at("row").get<RowOp>();
      phase.scalars = p.at("scalars").get<size_t>();
      phase.buffers = p.at("buffers").get<size_t>();
      phase.matrices = p.at("matrices").get<size_t>();
      phase.spectral = p.at("spectral").get<bool>();
      phase.param = p.at("param").get<double>();
      phase.skip = p.at("skip").get<double>();
      phase.nonzero = p.at("nonzero").get<bool>();
      phase.firstSlot = p.at("first_slot").get<int64_t>();
      phase.modelScope = p.at("model_scope").get<bool>();
      phase.deps = p.at("deps").get<std::vector<size_t>>();
      for (size_t d : phase.deps)
        if (d >= rule.phases.size())
          throw RuntimeError(what + ": phase " + std::to_string(rule.phases.size()) +
                             " depends on a later phase");
      rule.phases.push_back(std::move(phase));
    }
    if (rule.phases.empty() || rule.phases.back().kind != Kind::Map)
      throw RuntimeError(what + ": a rule ends with its map phase");
    return rule;
  } catch (const json::exception &e) {
    throw RuntimeError(what + ": not a rule description: " + e.what());
  }
}

} // namespace mergec::rt
