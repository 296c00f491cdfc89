//===- Inspect.cpp - mergec inspect: how fine-tunes' task vectors compare --===//
#include "Inspect.h"
#include "AheadOfTime.h"
#include "Driver.h"
#include "HeatMap.h"

#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/IR/PhaseLayout.h"
#include "mergec/JIT/KernelCache.h"
#include "mergec/JIT/KernelJIT.h"
#include "mergec/Runtime/AtomicFile.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Events.h"
#include "mergec/Runtime/Executor.h"
#include "mergec/Runtime/InputProtection.h"

#include "mlir/IR/Location.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

using namespace mergec;
using nlohmann::ordered_json;

namespace {

/// One scalar the generated recipe computes per tensor: a raw sum the report derives its
/// statistics from (cosine = dot / (norm · norm), ...). `a`, `b` index the fine-tunes.
struct Statistic {
  enum Kind {
    SumSquares, ///< Σ tv_a²
    Kept,       ///< Σ tv_a² over the elements topk_mask(tv_a, density) keeps
    Nonzero,    ///< #{tv_a ≠ 0}
    Dot,        ///< Σ tv_a · tv_b
    Agree,      ///< #{tv_a · tv_b > 0}: both non-zero, same sign
    Both,       ///< #{tv_a ≠ 0 and tv_b ≠ 0}
  } kind;
  size_t a = 0, b = 0;
};

/// The recipe whose reductions compute `stats`, one per line from `firstLine` in order (the
/// compiled rule's reductions are matched to them by line). The models are `base` and
/// `m1`..`mK`; their paths come as --model overrides, so no path is ever quoted in recipe text.
/// The reductions only feed `0 * ...` in the map phase, which an analysis run never runs.
std::string statisticsRecipe(size_t models, double density, std::vector<Statistic> &stats,
                             int &firstLine) {
  auto tv = [](size_t m) { return "tv(m" + std::to_string(m + 1) + ")"; };
  char densityText[32];
  std::snprintf(densityText, sizeof densityText, "%.17g", density);
  std::ostringstream text;
  text << "# mergec inspect: per tensor, the sums its statistics come from\n";
  text << "model base = \"base\"\n";
  for (size_t m = 0; m < models; ++m)
    text << "model m" << m + 1 << " = \"m" << m + 1 << "\"\n";
  text << "merge base + 0 * sum([\n";
  firstLine = static_cast<int>(models) + 4;
  std::vector<std::string> lines;
  for (size_t a = 0; a < models; ++a) {
    stats.push_back({Statistic::SumSquares, a, a});
    lines.push_back("dot(" + tv(a) + ", " + tv(a) + ")");
    stats.push_back({Statistic::Kept, a, a});
    lines.push_back("dot(topk_mask(" + tv(a) + ", " + densityText + ") * " + tv(a) + ", " +
                    tv(a) + ")");
    stats.push_back({Statistic::Nonzero, a, a});
    lines.push_back("count(" + tv(a) + " != 0)");
  }
  for (size_t a = 0; a < models; ++a)
    for (size_t b = a + 1; b < models; ++b) {
      stats.push_back({Statistic::Dot, a, b});
      lines.push_back("dot(" + tv(a) + ", " + tv(b) + ")");
      stats.push_back({Statistic::Agree, a, b});
      lines.push_back("count((" + tv(a) + " > 0) * (" + tv(b) + " > 0) + (" + tv(a) + " < 0) * (" +
                      tv(b) + " < 0))");
      stats.push_back({Statistic::Both, a, b});
      lines.push_back("count((" + tv(a) + " != 0) * (" + tv(b) + " != 0))");
    }
  for (size_t i = 0; i < lines.size(); ++i)
    text << "  " << lines[i] << (i + 1 < lines.size() ? ",\n" : "\n");
  text << "])\n";
  return text.str();
}

/// The recipe line an operation comes from (its location, or the first file location inside a
/// fused one), or 0.
int lineOf(mlir::Location loc) {
  int line = 0;
  loc->walk([&](mlir::Location l) {
    if (auto file = mlir::dyn_cast<mlir::FileLineColLoc>(l)) {
      line = static_cast<int>(file.getLine());
      return mlir::WalkResult::interrupt();
    }
    return mlir::WalkResult::advance();
  });
  return line;
}

/// The scalar slot (KernelABI.h) of each statistic in the fused rule: every reduction phase
/// yields one value per result, and the value's operation carries the line of the statistic it
/// computes. Throws when a statistic is missing or two share a line: the pipeline changed in a
/// way this mapping must follow.
std::vector<int64_t> statisticSlots(mlir::ModuleOp module, size_t count, int firstLine) {
  mlir::func::FuncOp rule;
  module.walk([&](mlir::func::FuncOp f) {
    if (!rule)
      rule = f;
  });
  if (!rule)
    throw rt::RuntimeError("internal: inspect's recipe compiled to no rule");
  merge::PhaseLayout layout = merge::phaseLayout(rule);
  std::vector<int64_t> slots(count, -1);
  for (mlir::Operation *phase : layout.phases) {
    auto reduce = mlir::dyn_cast<merge::ReduceKernelOp>(phase);
    if (!reduce)
      continue;
    mlir::Operation *yield = reduce.getBody().front().getTerminator();
    for (unsigned j = 0; j < yield->getNumOperands(); ++j) {
      mlir::Value v = yield->getOperand(j);
      int line = v.getDefiningOp() ? lineOf(v.getDefiningOp()->getLoc()) : 0;
      long s = line - firstLine;
      if (s < 0 || s >= static_cast<long>(count) || slots[s] >= 0)
        throw rt::RuntimeError("internal: inspect cannot tell which statistic reduction " +
                               std::to_string(j) + " of a phase computes (line " +
                               std::to_string(line) + ")");
      slots[s] = layout.slotOf(phase, j);
    }
  }
  for (size_t s = 0; s < count; ++s)
    if (slots[s] < 0)
      throw rt::RuntimeError("internal: inspect's statistic " + std::to_string(s) +
                             " has no reduction in the compiled rule");
  return slots;
}

/// What a layer-indexed tensor name is without its layer: the part after `layers.N.`
/// ("self_attn.q_proj.weight"); the whole name for the others.
std::string kindOf(const std::string &name, int layer) {
  if (layer < 0)
    return name;
  std::string marker = "layers." + std::to_string(layer) + ".";
  size_t pos = name.find(marker);
  return pos == std::string::npos ? name : name.substr(pos + marker.size());
}

/// Raw sums for one row (a tensor, or a kind over all layers), added up over its tensors.
struct Sums {
  std::vector<double> values; ///< parallel to the statistics
  uint64_t numel = 0;
  size_t tensors = 0;
};

/// A ratio, or JSON null where the denominator is 0 (a task vector that is all zeros).
ordered_json ratio(double num, double den) {
  if (den == 0 || !std::isfinite(num) || !std::isfinite(den))
    return nullptr;
  return num / den;
}

/// The statistics of one row from its sums.
void describeRow(ordered_json &row, const Sums &sums, const std::vector<Statistic> &stats,
                 size_t models) {
  std::vector<double> sumSq(models), kept(models), nonzero(models);
  std::map<std::pair<size_t, size_t>, std::array<double, 3>> pair;
  for (size_t s = 0; s < stats.size(); ++s) {
    double v = sums.values[s];
    const Statistic &st = stats[s];
    switch (st.kind) {
    case Statistic::SumSquares: sumSq[st.a] = v; break;
    case Statistic::Kept: kept[st.a] = v; break;
    case Statistic::Nonzero: nonzero[st.a] = v; break;
    case Statistic::Dot: pair[{st.a, st.b}][0] = v; break;
    case Statistic::Agree: pair[{st.a, st.b}][1] = v; break;
    case Statistic::Both: pair[{st.a, st.b}][2] = v; break;
    }
  }
  row["numel"] = sums.numel;
  ordered_json perModel = ordered_json::array();
  for (size_t m = 0; m < models; ++m)
    perModel.push_back({{"norm", std::sqrt(sumSq[m])},
                        {"nonzero", static_cast<uint64_t>(nonzero[m])},
                        {"topk_kept", ratio(kept[m], sumSq[m])}});
  row["models"] = std::move(perModel);
  ordered_json perPair = ordered_json::array();
  for (auto &[ab, v] : pair)
    perPair.push_back({{"cosine", ratio(v[0], std::sqrt(sumSq[ab.first]) * std::sqrt(sumSq[ab.second]))},
                       {"sign_agreement", ratio(v[1], v[2])},
                       {"dot", v[0]},
                       {"agree", static_cast<uint64_t>(v[1])},
                       {"both_nonzero", static_cast<uint64_t>(v[2])}});
  row["pairs"] = std::move(perPair);
}

} // namespace

std::vector<std::string> mergec::modelNames(const std::vector<std::string> &paths) {
  std::vector<std::string> names;
  std::map<std::string, int> seen;
  for (const std::string &p : paths) {
    std::filesystem::path path(p);
    std::string name = path.filename().string();
    if (name.empty()) // "models/a/"
      name = path.parent_path().filename().string();
    if (name.empty() || name == "." || name == "..")
      name = p;
    names.push_back(name);
    ++seen[name];
  }
  for (size_t i = 0; i < names.size(); ++i)
    if (seen[names[i]] > 1)
      names[i] = paths[i];
  return names;
}

ordered_json mergec::inspectModels(const CommandLine &cl, const std::vector<std::string> &names) {
  size_t models = cl.inspectModels.size();
  if (models == 0)
    throw rt::RuntimeError("inspect needs at least one fine-tune besides the base model");
  if (names.size() != models)
    throw rt::RuntimeError("internal: inspect got " + std::to_string(names.size()) +
                           " names for " + std::to_string(models) + " models");
  std::vector<Statistic> stats;
  int firstLine = 0;
  CommandLine generated = cl;
  generated.recipe = "<inspect>";
  generated.recipeText = statisticsRecipe(models, cl.inspectDensity, stats, firstLine);
  generated.overrides = {};
  generated.overrides.models.push_back({"base", cl.recipe});
  for (size_t m = 0; m < models; ++m)
    generated.overrides.models.push_back({"m" + std::to_string(m + 1), cl.inspectModels[m]});
  std::ostringstream diagnostics;
  generated.diagnostics = &diagnostics;
  Compilation c;
  if (compile(generated, c, Emit::Fused))
    throw rt::RuntimeError("internal: inspect's recipe did not compile:\n" + diagnostics.str());
  std::vector<int64_t> slots = statisticSlots(*c.module, stats.size(), firstLine);

  KernelJITOptions jitOptions;
  jitOptions.verbose = cl.run.verbose;
  jitOptions.version = MERGEC_VERSION;
  jitOptions.params = c.program->params;
  if (!cl.noCache)
    jitOptions.cacheDir = cl.cacheDir.empty() ? KernelCache::defaultDirectory() : cl.cacheDir;
  jitOptions.device = cl.run.device;
  jitOptions.gpuArch = cl.gpuArch;
  KernelJIT jit(*c.module, jitOptions);
  rt::RunOptions options = cl.run;
  options.dtype = rt::DType::F32; // no output is written; f32 keeps every input's dtype computable
  // The runtime's messages name the recipe's models (m1, m2, ...): name them as the user does.
  auto withUserNames = [&](const rt::RuntimeError &e) {
    std::string message = e.what();
    for (size_t m = models; m > 0; --m) {
      std::string internal = "'m" + std::to_string(m) + "'";
      for (size_t at; (at = message.find(internal)) != std::string::npos;)
        message.replace(at, internal.size(), "'" + names[m - 1] + "'");
    }
    return rt::RuntimeError(message, e.file(), e.tensor());
  };
  rt::MergePlan plan;
  try {
    plan = rt::planMerge(modelSpecs(*c.program), c.program->outputModel, ruleSpecs(*c.program),
                         jit, options);
  } catch (const rt::RuntimeError &e) {
    throw withUserNames(e);
  }
  // planMerge checks each fine-tune has every base tensor in its shape; a tensor only a
  // fine-tune has would be left out of the comparison silently.
  const rt::Checkpoint &base = *plan.checkpoints[0];
  for (size_t m = 1; m < plan.checkpoints.size(); ++m)
    for (const rt::TensorInfo *t : plan.checkpoints[m]->tensors())
      if (!base.find(t->name))
        throw rt::RuntimeError("model '" + names[m - 1] + "' (" + cl.inspectModels[m - 1] +
                                   ") has tensor '" + t->name + "', which the base model (" +
                                   cl.recipe + ") lacks: inspect compares models with the same "
                                   "tensors",
                               t->file ? t->file->path() : "", t->name);

  std::vector<Sums> perTensor(plan.items.size());
  try {
    rt::analyzeTensors(plan, jit, options, [&](size_t i, const std::vector<double> &scalars) {
      Sums &sums = perTensor[i];
      for (int64_t slot : slots)
        sums.values.push_back(scalars.at(static_cast<size_t>(slot)));
      sums.numel = static_cast<uint64_t>(plan.items[i].base->numel());
      sums.tensors = 1;
    });
  } catch (const rt::RuntimeError &e) {
    throw withUserNames(e);
  }

  ordered_json report = ordered_json::object();
  report["base"] = cl.recipe;
  ordered_json modelList = ordered_json::array();
  for (size_t m = 0; m < models; ++m)
    modelList.push_back({{"name", names[m]}, {"path", cl.inspectModels[m]}});
  report["models"] = std::move(modelList);
  ordered_json pairList = ordered_json::array();
  for (size_t a = 0; a < models; ++a)
    for (size_t b = a + 1; b < models; ++b)
      pairList.push_back({a, b});
  report["pairs"] = std::move(pairList);
  report["density"] = cl.inspectDensity;
  ordered_json tensors = ordered_json::array();
  std::vector<std::string> kindOrder;
  std::map<std::string, Sums> perKind;
  for (size_t i = 0; i < plan.items.size(); ++i) {
    const rt::MergePlan::Item &item = plan.items[i];
    if (item.copy || perTensor[i].tensors == 0)
      continue;
    std::string kind = kindOf(item.base->name, item.layer);
    ordered_json row = {{"name", item.base->name},
                        {"layer", item.layer >= 0 ? ordered_json(item.layer) : ordered_json()},
                        {"kind", kind}};
    describeRow(row, perTensor[i], stats, models);
    tensors.push_back(std::move(row));
    auto [it, inserted] = perKind.try_emplace(kind);
    if (inserted) {
      kindOrder.push_back(kind);
      it->second.values.assign(stats.size(), 0.0);
    }
    for (size_t s = 0; s < stats.size(); ++s)
      it->second.values[s] += perTensor[i].values[s];
    it->second.numel += perTensor[i].numel;
    it->second.tensors += 1;
  }
  report["tensors"] = std::move(tensors);
  ordered_json kinds = ordered_json::array();
  for (const std::string &kind : kindOrder) {
    ordered_json row = {{"kind", kind}, {"tensors", perKind[kind].tensors}};
    describeRow(row, perKind[kind], stats, models);
    kinds.push_back(std::move(row));
  }
  report["kinds"] = std::move(kinds);
  return report;
}

int mergec::runInspect(const CommandLine &cl) {
  std::vector<std::string> names = modelNames(cl.inspectModels);
  // Refused before the models are read, not after.
  std::vector<rt::ProtectedInput> inputs{{"the base model", cl.recipe}};
  for (size_t m = 0; m < cl.inspectModels.size(); ++m)
    inputs.push_back({"model '" + names[m] + "'", cl.inspectModels[m]});
  if (!cl.pngFile.empty())
    rt::checkOutputAgainstInputs(cl.pngFile, inputs);
  ordered_json report = inspectModels(cl, names);
  if (!cl.pngFile.empty())
    rt::writeFileAtomically(cl.pngFile, heatMapPng(report), inputs);
  if (cl.inspectJson)
    std::cout << report.dump(2) << "\n";
  else
    std::cout << inspectTable(report);
  return 0;
}
