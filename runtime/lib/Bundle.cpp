//===- Bundle.cpp - the layout of a compressed multi-model bundle ---------===//
#include "mergec/Runtime/Bundle.h"
#include "mergec/Runtime/Error.h"
#include <algorithm>
#include <cmath>
#include <cstring>

namespace mergec::rt {

int64_t bundleRank(const RunOptions::Bundle &bundle, int64_t rows, int64_t cols) {
  int64_t most = std::max<int64_t>(std::min(rows, cols), 1);
  int64_t k = bundle.rank;
  if (k <= 0) {
    // k (rows + cols) <= (1 - rate) rows cols, in f64 (a 4096 x 14336 matrix's product is
    // exact there); a hair of slack so that an exact fit is not lost to rounding.
    double budget = (1.0 - bundle.rate) * static_cast<double>(rows) * static_cast<double>(cols);
    k = static_cast<int64_t>(std::floor(budget / static_cast<double>(rows + cols) + 1e-9));
  }
  return std::clamp<int64_t>(k, 1, most);
}

bool BundleLayout::compresses(const TensorInfo &t, const std::vector<CompiledGlob> &exclude) {
  if (t.shape.size() != 2 || !isComputeDType(t.dtype))
    return false;
  uint64_t steps = 0;
  return std::none_of(exclude.begin(), exclude.end(),
                      [&](const CompiledGlob &g) { return g.match(t.name, steps); });
}

BundleLayout::BundleLayout(const RunOptions::Bundle &bundle,
                           const std::vector<std::vector<const TensorInfo *>> &tensors,
                           std::optional<DType> outDType)
    : bundle_(bundle), members_(bundle.members.size()), outDType_(outDType) {
  std::vector<CompiledGlob> exclude;
  for (const std::string &glob : bundle.exclude)
    exclude.emplace_back(glob);
  for (const std::vector<const TensorInfo *> &each : tensors) {
    const TensorInfo &t = *each.front();
    Tensor entry{&t, each, compresses(t, exclude)};
    entry.firstSpec = specs_.size();
    if (entry.compressed) {
      entry.rows = t.shape[0];
      entry.cols = t.shape[1];
      entry.rank = bundleRank(bundle, entry.rows, entry.cols);
      DType dtype = factorDType(t);
      specs_.push_back({t.name + ".avg", dtype, {entry.rows, entry.cols}});
      specs_.push_back({t.name + ".scale", DType::F32, {static_cast<int64_t>(members_)}});
      for (size_t i = 0; i < members_; ++i) {
        specs_.push_back({t.name + ".U." + std::to_string(i), dtype, {entry.rows, entry.rank}});
        specs_.push_back({t.name + ".V." + std::to_string(i), dtype, {entry.rank, entry.cols}});
      }
    } else {
      for (size_t i = 0; i < members_; ++i)
        specs_.push_back(
            {t.name + ".model." + std::to_string(i), each[i]->dtype, each[i]->shape});
    }
    tensors_.push_back(std::move(entry));
  }
}

DType BundleLayout::factorDType(const TensorInfo &t) const {
  return outDType_ ? *outDType_ : t.dtype;
}

nlohmann::ordered_json
BundleLayout::describe(const std::vector<nlohmann::ordered_json> &members) const {
  nlohmann::ordered_json out;
  out["format"] = kBundleFormat;
  out["version"] = kBundleVersion;
  out["method"] = "normalised average + per-member randomised SVD residual (NeurIPS 2024 "
                  "LLM-merging competition winner)";
  out["members"] = members;
  nlohmann::ordered_json settings;
  if (bundle_.rank > 0)
    settings["rank"] = bundle_.rank;
  else
    settings["rate"] = bundle_.rate;
  settings["exclude"] = bundle_.exclude;
  settings["oversample"] = bundle_.oversample;
  settings["iters"] = bundle_.iters;
  settings["seed"] = bundle_.seed;
  out["settings"] = settings;
  nlohmann::ordered_json tensors = nlohmann::ordered_json::object();
  for (const Tensor &t : tensors_) {
    nlohmann::ordered_json e;
    e["kind"] = t.compressed ? "compressed" : "stored";
    e["shape"] = t.tensor->shape;
    e["dtype"] = dtypeName(t.tensor->dtype);
    if (t.compressed) {
      e["rank"] = t.rank;
      e["factor_dtype"] = dtypeName(factorDType(*t.tensor));
    }
    tensors[t.tensor->name] = e;
  }
  out["tensors"] = tensors;
  return out;
}

BundleSink::BundleSink(const BundleLayout &layout, const BundleLayout::Tensor &tensor)
    : layout_(layout), tensor_(tensor) {
  for (size_t i = 0; i < layout.members(); ++i) {
    std::string index = std::to_string(i);
    size_t u = tensor.firstSpec + 2 + 2 * i;
    expected_["scale." + index] = {tensor.firstSpec + 1, {1, 1}};
    expected_["U." + index] = {u, {tensor.rows, tensor.rank}};
    expected_["V." + index] = {u + 1, {tensor.rank, tensor.cols}};
  }
}

std::optional<std::string> BundleSink::take(std::string_view name, int64_t rows, int64_t cols,
                                            const float *data) {
  auto it = expected_.find(std::string(name));
  if (it == expected_.end())
    return "the bundle has no matrix '" + std::string(name) + "' for it";
  const auto &[spec, shape] = it->second;
  if (rows != shape[0] || cols != shape[1])
    return "the bundle's " + std::string(name) + " must be " + std::to_string(shape[0]) + "x" +
           std::to_string(shape[1]) + " (rank " + std::to_string(tensor_.rank) + "), the rule " +
           "computed " + std::to_string(rows) + "x" + std::to_string(cols);
  size_t count = static_cast<size_t>(rows * cols);
  if (name.starts_with("scale.")) {
    // The members' scales make one [N] tensor: member i's at i.
    std::vector<float> &scale = values_[spec];
    scale.resize(layout_.members(), 0.0f);
    scale[std::stoul(std::string(name.substr(6)))] = data[0];
    return std::nullopt;
  }
  values_[spec].assign(data, data + count);
  return std::nullopt;
}

void BundleSink::checkComplete() const {
  for (const auto &[name, expected] : expected_)
    if (!values_.count(expected.first))
      throw RuntimeError("tensor " + tensor_.tensor->name + ": the rule emitted no '" + name +
                             "' for the bundle",
                         "", tensor_.tensor->name);
}


void storeF32As(DType dtype, const float *values, size_t count, std::vector<uint8_t> &out) {
  size_t at = out.size();
  out.resize(at + count * dtypeSize(dtype));
  storeFromF32(dtype, values, count, out.data() + at);
}

} // namespace mergec::rt
