//===- AdapterExtraction.cpp - a merge's task vector as a PEFT LoRA adapter ===//
#include "mergec/Runtime/AdapterExtraction.h"
#include "Support.h"
#include "mergec/Runtime/CheckpointWriter.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/LinearAlgebra.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <sys/mman.h>
#include <unistd.h>

namespace mergec::rt {

namespace {

const std::string kPrefix = "base_model.model.";

/// "model.layers.0.mlp.down_proj" for "...down_proj.weight" (or ".bias"); "" for a name with
/// neither suffix (a buffer: no module PEFT could save).
std::string moduleOf(const std::string &tensor) {
  for (const char *suffix : {".weight", ".bias"}) {
    size_t n = std::strlen(suffix);
    if (tensor.size() > n && tensor.compare(tensor.size() - n, n, suffix) == 0)
      return tensor.substr(0, tensor.size() - n);
  }
  return "";
}

} // namespace

bool isDefaultLoraExclusion(const std::string &module) {
  std::string last = module.substr(module.rfind('.') == std::string::npos ? 0 : module.rfind('.') + 1);
  return last.find("embed") != std::string::npos || last == "lm_head" || last == "wte" ||
         last == "wpe";
}

bool isLoraTarget(const TensorInfo &t, const std::vector<CompiledGlob> &targets) {
  std::string module = moduleOf(t.name);
  if (t.shape.size() != 2 || module.empty() || t.name.size() != module.size() + 7 /*.weight*/)
    return false;
  if (targets.empty())
    return !isDefaultLoraExclusion(module);
  return std::any_of(targets.begin(), targets.end(),
                     [&](const CompiledGlob &g) { return g.match(t.name); });
}

AdapterExtractor::AdapterExtractor(std::string dir, const RunOptions::EmitLora &options,
                                   const std::vector<const TensorInfo *> &tensors)
    : dir_(std::move(dir)), options_(options) {
  for (const std::string &glob : options_.targets)
    globs_.emplace_back(glob);
  for (size_t g = 0; g < globs_.size(); ++g)
    if (std::none_of(tensors.begin(), tensors.end(),
                     [&](const TensorInfo *t) { return globs_[g].match(t->name); }))
      unmatched_.push_back(options_.targets[g]);
  spillPath_ = detail::joinPath(dir_, "adapter.spill");
  spillFd_ = ::open(spillPath_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (spillFd_ < 0)
    detail::fail(spillPath_, "cannot create it: " + detail::errnoText(errno));
}

AdapterExtractor::~AdapterExtractor() {
  if (spillFd_ >= 0)
    ::close(spillFd_);
  ::unlink(spillPath_.c_str()); // the output directory's own cleanup would too: not an error
}

uint64_t AdapterExtractor::scratchBytes(const TensorInfo &t, int64_t rank) {
  if (t.shape.size() != 2)
    return 0;
  int64_t m = t.shape[0], n = t.shape[1], k = std::min({rank, m, n});
  if (k <= 0)
    return 0;
  int64_t lapack = mergec_la_workspace_bytes(MERGEC_LA_SVD, m, n, k);
  uint64_t factors = static_cast<uint64_t>(k) * static_cast<uint64_t>(m + n + 1) * sizeof(float);
  return (lapack > 0 ? static_cast<uint64_t>(lapack) : 0) + factors + (1u << 18);
}

void AdapterExtractor::spill(const float *data, uint64_t count, DType dtype,
                             const std::string &tensor) {
  // In blocks, so converting costs 256 KiB, not a tensor's worth.
  constexpr uint64_t kBlock = 1u << 16;
  std::vector<uint8_t> block(kBlock * 4);
  for (uint64_t begin = 0; begin < count; begin += kBlock) {
    uint64_t n = std::min(kBlock, count - begin);
    const float *in = data + begin;
    uint64_t bytes = n * dtypeSize(dtype);
    storeFromF32(dtype, in, n, block.data());
    detail::writeAll(spillFd_, block.data(), bytes, spillPath_, "tensor '" + tensor + "'");
    spillBytes_ += bytes;
  }
}

AdapterExtractor::Outcome AdapterExtractor::add(const TensorInfo &base, float *merged,
                                                DType dtype) {
  int64_t count = base.numel();
  bool changed = false;
  for (int64_t i = 0; i < count && !changed; ++i)
    changed = merged[i] - loadAsF32(base.dtype, base.data, i) != 0.0f; // NaN counts as a change
  if (!changed) {
    ++unchanged_;
    return Outcome::Unchanged;
  }
  std::string module = moduleOf(base.name);
  if (!isLoraTarget(base, globs_)) {
    if (module.empty()) {
      warnings_.push_back("tensor '" + base.name +
                          "' changed but is no module's weight or bias: PEFT cannot save it, "
                          "so the adapter leaves it out");
      ++skipped_;
      return Outcome::Skipped;
    }
    // Saved in full (modules_to_save), as mergekit-extract-lora does with what it does not
    // decompose: the adapter then reproduces the merge exactly there.
    entries_.push_back({kPrefix + base.name, dtype, base.shape, spillBytes_, module, true});
    spill(merged, static_cast<uint64_t>(count), dtype, base.name);
    if (std::find(savedModules_.begin(), savedModules_.end(), module) == savedModules_.end())
      savedModules_.push_back(module);
    return Outcome::Saved;
  }
  for (int64_t i = 0; i < count; ++i)
    merged[i] -= loadAsF32(base.dtype, base.data, i);
  int64_t m = base.shape[0], n = base.shape[1], k = std::min({options_.rank, m, n});
  std::vector<float> u(static_cast<size_t>(m * k)), s(static_cast<size_t>(k)),
      vt(static_cast<size_t>(k * n));
  if (mergec_la_svd(m, n, merged, k, u.data(), s.data(), vt.data()) != 0)
    throw RuntimeError("tensor '" + base.name + "': --emit-lora: " + mergec_la_error(), "",
                       base.name);
  // mergekit's --sv-epsilon: singular values above it are kept (an absolute threshold).
  int64_t r = k;
  if (options_.svEpsilon > 0)
    r = std::count_if(s.begin(), s.end(), [&](float v) { return v > options_.svEpsilon; });
  if (r == 0) {
    ++belowEpsilon_;
    return Outcome::BelowEpsilon;
  }
  // A = √S·Vt (r × in) in place in vt's first r rows; B = U·√S (out × r) compacted in place
  // (row i moves to i·r ≤ i·k, so no row is overwritten before it is read).
  for (int64_t j = 0; j < r; ++j) {
    float root = std::sqrt(s[j]);
    for (int64_t c = 0; c < n; ++c)
      vt[j * n + c] *= root;
    s[j] = root;
  }
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < r; ++j)
      u[i * r + j] = u[i * k + j] * s[j];
  entries_.push_back({kPrefix + module + ".lora_A.weight", dtype, {r, n}, spillBytes_, module,
                      false});
  spill(vt.data(), static_cast<uint64_t>(r * n), dtype, base.name);
  entries_.push_back({kPrefix + module + ".lora_B.weight", dtype, {m, r}, spillBytes_, module,
                      false});
  spill(u.data(), static_cast<uint64_t>(m * r), dtype, base.name);
  ranks_.emplace_back(module, r);
  return Outcome::LowRank;
}

AdapterExtractor::Outcome AdapterExtractor::addRaw(const TensorInfo &base, const void *merged) {
  if (merged == base.data || std::memcmp(merged, base.data, base.nbytes) == 0) {
    ++unchanged_;
    return Outcome::Unchanged;
  }
  warnings_.push_back("tensor '" + base.name + "' (" + dtypeName(base.dtype) +
                      ") changed but is not a float tensor: the adapter leaves it out");
  ++skipped_;
  return Outcome::Skipped;
}

void AdapterExtractor::finish(const std::string &baseModelPath) {
  // A module both decomposed and saved in full (a LoRA target whose bias changed too): PEFT
  // wraps a module one way or the other, so the full tensor is left out.
  std::set<std::string> lora;
  for (const auto &[module, rank] : ranks_)
    lora.insert(module);
  std::vector<Entry> kept;
  for (Entry &e : entries_) {
    if (e.saved && lora.count(e.module)) {
      warnings_.push_back("tensor '" + e.name.substr(kPrefix.size()) +
                          "' changed, but its module is a LoRA target, which PEFT cannot also "
                          "save in full: the adapter leaves it out");
      ++skipped_;
      savedModules_.erase(std::remove(savedModules_.begin(), savedModules_.end(), e.module),
                          savedModules_.end());
      continue;
    }
    kept.push_back(std::move(e));
  }
  entries_ = std::move(kept);
  if (ranks_.empty())
    throw RuntimeError(
        "--emit-lora: no targeted tensor differs from the output model" +
        std::string(belowEpsilon_ ? " by a singular value above --sv-epsilon" : "") +
        (savedModules_.empty() ? "" : " (only tensors saved in full do, and PEFT needs a target module)") +
        "; there is no adapter to write");

  std::vector<OutputTensorSpec> specs;
  uint64_t total = 0;
  for (const Entry &e : entries_) {
    specs.push_back({e.name, e.dtype, e.shape});
    total += specs.back().nbytes();
  }
  {
    void *map = spillBytes_ ? ::mmap(nullptr, spillBytes_, PROT_READ, MAP_SHARED, spillFd_, 0)
                            : nullptr;
    if (map == MAP_FAILED)
      detail::fail(spillPath_, "cannot map it: " + detail::errnoText(errno));
    std::shared_ptr<void> unmap(map, [this](void *p) {
      if (p)
        ::munmap(p, spillBytes_);
    });
    // One shard whatever the size: PEFT reads adapter_model.safetensors only.
    CheckpointWriter writer(dir_, specs, total + 1);
    for (size_t i = 0; i < entries_.size(); ++i)
      writer.write(i, static_cast<const uint8_t *>(map) + entries_[i].offset, specs[i].nbytes());
    writer.finish(/*index=*/false);
  }
  std::string weights = detail::joinPath(dir_, "adapter_model.safetensors");
  if (::rename(detail::joinPath(dir_, "model.safetensors").c_str(), weights.c_str()) != 0)
    detail::fail(weights, "cannot rename the adapter's tensors into place: " +
                              detail::errnoText(errno));
  ::close(spillFd_);
  spillFd_ = -1;
  ::unlink(spillPath_.c_str());

  // mergekit-extract-lora's config: r the largest rank, lora_alpha = r (scale 1), and the
  // modules of another rank in rank_pattern and alpha_pattern alike (scale 1 for them too).
  int64_t r = 0;
  for (const auto &[module, rank] : ranks_)
    r = std::max(r, rank);
  nlohmann::ordered_json pattern = nlohmann::ordered_json::object(),
                         targets = nlohmann::ordered_json::array();
  for (const auto &[module, rank] : ranks_) {
    targets.push_back(module);
    if (rank != r)
      pattern[module] = rank;
  }
  nlohmann::ordered_json config;
  config["peft_type"] = "LORA";
  config["base_model_name_or_path"] = baseModelPath;
  config["r"] = r;
  config["lora_alpha"] = r;
  config["rank_pattern"] = pattern;
  config["alpha_pattern"] = pattern;
  // Full module names: each names exactly one module (a last component such as q_proj would
  // also wrap modules the adapter leaves out or saves in full).
  config["target_modules"] = targets;
  config["modules_to_save"] =
      savedModules_.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(savedModules_);
  config["lora_dropout"] = 0.0;
  config["fan_in_fan_out"] = false;
  config["bias"] = "none";
  config["use_rslora"] = false;
  config["use_dora"] = false;
  config["init_lora_weights"] = true;
  config["inference_mode"] = true;
  std::string path = detail::joinPath(dir_, "adapter_config.json");
  std::ofstream out(path, std::ios::binary);
  std::string text = config.dump(2) + "\n";
  out << text;
  out.close();
  if (!out)
    detail::fail(path, "cannot write it");
  detail::syncPath(path);
  bytesWritten_ = total + text.size();
}

nlohmann::ordered_json AdapterExtractor::summary() const {
  nlohmann::ordered_json ranks = nlohmann::ordered_json::object();
  for (const auto &[module, rank] : ranks_)
    ranks[module] = rank;
  return {{"kind", "lora"},
          {"rank", options_.rank},
          {"sv_epsilon", options_.svEpsilon},
          {"lora_targets", options_.targets},
          {"module_ranks", ranks},
          {"modules_to_save", savedModules_},
          {"unchanged_tensors", unchanged_},
          {"below_sv_epsilon", belowEpsilon_},
          {"skipped_tensors", skipped_}};
}

std::string AdapterExtractor::summaryLine() const {
  int64_t lo = INT64_MAX, hi = 0;
  for (const auto &[module, rank] : ranks_) {
    lo = std::min(lo, rank);
    hi = std::max(hi, rank);
  }
  std::string line = std::to_string(ranks_.size()) + " module(s) as LoRA at rank " +
                     (lo == hi ? std::to_string(hi) : std::to_string(lo) + " to " + std::to_string(hi));
  line += ", " + std::to_string(savedModules_.size()) + " saved in full, " +
          std::to_string(unchanged_) + " tensor(s) unchanged";
  if (belowEpsilon_)
    line += ", " + std::to_string(belowEpsilon_) + " with no singular value above --sv-epsilon";
  if (skipped_)
    line += ", " + std::to_string(skipped_) + " left out";
  return line;
}

} // namespace mergec::rt
