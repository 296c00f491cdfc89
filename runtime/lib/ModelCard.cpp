//===- ModelCard.cpp - README.md for a merged model -----------------------===//
#include "mergec/Runtime/ModelCard.h"
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace mergec::rt {

namespace {

std::string absolute(const std::string &path) {
  return std::filesystem::absolute(path).lexically_normal().string();
}

/// A YAML scalar in double quotes (the front matter is YAML).
std::string quoted(const std::string &text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", v);
  // The shortest text that reads back as v, as a recipe would have it.
  for (int digits = 1; digits <= 17; ++digits) {
    char shorter[32];
    std::snprintf(shorter, sizeof shorter, "%.*g", digits, v);
    if (std::strtod(shorter, nullptr) == v)
      return shorter;
  }
  return text;
}

/// A fence longer than any run of backticks in `text`, so the recipe shows as written.
std::string fenceFor(const std::string &text) {
  size_t longest = 0, run = 0;
  for (char c : text) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  return std::string(std::max<size_t>(3, longest + 1), '`');
}

} // namespace

std::string modelCard(const MergePlan &plan, const RunOptions &options) {
  const auto &p = options.provenance;
  const ModelSpec &base = plan.models[plan.outputModel];
  // --emit-lora: an adapter's card, whose base_model is the one model it applies to (the
  // hub lists adapters by it); the other inputs are listed in the text below.
  bool adapter = options.emitLora.rank > 0;
  std::string card = "---\nbase_model:\n";
  card += "- " + quoted(absolute(base.path)) + "\n";
  for (size_t m = 0; m < plan.models.size() && !adapter; ++m)
    if (m != plan.outputModel)
      card += "- " + quoted(absolute(plan.models[m].path)) + "\n";
  card += adapter ? "library_name: peft\ntags:\n- mergec\n- merge\n- lora\n"
                  : "library_name: transformers\ntags:\n- mergec\n- merge\n";
  for (const std::string &method : p.methods)
    card += "- " + quoted(method) + "\n";
  card += "---\n\n";
  // No output path or time in it: the same recipe and inputs give the same card.
  if (adapter) {
    card += "# LoRA adapter of a merge\n\n";
    card += "This PEFT LoRA adapter was extracted by mergec " + p.version +
            " (`--emit-lora " + std::to_string(options.emitLora.rank) +
            "`) from the merge of the recipe below: for each targeted weight, the truncated SVD "
            "of the merged task vector (the merge computed in f32, minus `" + base.name +
            "`), split as B = U·√S, A = √S·Vᵀ with lora_alpha = r (scale 1); other tensors that "
            "changed are saved in full (modules_to_save). Load it on `" + base.name +
            "` with PEFT; `adapter_config.json` gives each module's rank.\n\n";
  } else {
    card += "# Merged model\n\n";
    card += "This model was merged with mergec " + p.version +
            ", a compiler for model-merging recipes: the recipe below was compiled into fused "
            "kernels and the checkpoints were streamed through them tensor by tensor.\n\n";
  }
  card += "## Merge details\n\n";
  if (p.methods.empty()) {
    card += "- Method: the recipe's own expressions (no method of mergec's standard library)\n";
  } else {
    card += "- Method" + std::string(p.methods.size() > 1 ? "s" : "") + ": ";
    for (size_t i = 0; i < p.methods.size(); ++i)
      card += (i ? ", " : "") + std::string("`") + p.methods[i] + "`";
    card += " (mergec's standard library)\n";
  }
  card += "- Base (the output's tensor names, shapes and dtype): `" + base.name + "` (" +
          absolute(base.path) + ")\n";
  card += "- Models:\n";
  for (const ModelSpec &m : plan.models)
    card += "  - `" + m.name + "`: " + absolute(m.path) +
            (m.kind == ModelSpec::Kind::Lora ? " (a LoRA adapter on `" + m.on + "`)" : "") + "\n";
  if (!p.params.empty()) {
    card += "- Params:";
    for (size_t i = 0; i < p.params.size(); ++i)
      card += (i ? ", " : " ") + std::string("`") + p.params[i].first + " = " +
              number(p.params[i].second) + "`";
    card += "\n";
  }
  card += "- Output dtype" + std::string(adapter ? " (the adapter's tensors)" : "") + ": " +
          std::string(options.dtype ? dtypeName(*options.dtype) : "the base's") + "\n";
  if (adapter && options.emitLora.svEpsilon > 0)
    card += "- Singular values kept: above " + number(options.emitLora.svEpsilon) +
            " (--sv-epsilon)\n";
  card += "\n";
  card += "## Recipe\n\n";
  if (!p.recipePath.empty())
    card += "`" + absolute(p.recipePath) + "`, sha256 " + p.recipeSha256 + ":\n\n";
  std::string fence = fenceFor(p.recipeText);
  card += fence + "\n" + p.recipeText;
  if (p.recipeText.empty() || p.recipeText.back() != '\n')
    card += "\n";
  card += fence + "\n\n";
  card += "`mergec-manifest.json` beside this file lists every input file with its size.\n";
  return card;
}

} // namespace mergec::rt
