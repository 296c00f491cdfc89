//===- LoraAdapter.cpp - PEFT LoRA adapters: config, keys, deltas ---------===//
// The semantics follow PEFT (huggingface/peft): keys as save_pretrained writes them
// (utils/save_and_load.py: the adapter name removed, modules_to_save saved under the module's
// own name), the scale lora_alpha / r or lora_alpha / sqrt(r) (tuners/lora/layer.py
// update_layer), rank_pattern / alpha_pattern keys matched by get_pattern_key, and the delta
// transpose(B @ A, fan_in_fan_out) * scale (Linear.get_delta_weight; Embedding's is always
// transposed).
#include "mergec/Runtime/LoraAdapter.h"
#include "Support.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Journal.h"

#include "BlasLibrary.h" // cblas.h: the enums and the signature; loaded at run time

#include <cmath>
#include <cstring>
#include <optional>
#include <regex>
#include <sys/stat.h>

namespace mergec::rt {

namespace {

constexpr const char *kConfigName = "adapter_config.json";
constexpr const char *kWeightsName = "adapter_model.safetensors";
/// PEFT prefixes every key with the PeftModel's path to the wrapped model.
constexpr std::string_view kPrefix = "base_model.model.";

/// An adapter config is a few kilobytes; this only bounds a wrong file.
constexpr uint64_t kMaxConfigBytes = 16u << 20;

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

/// What one adapter key is: a factor of a module's low-rank update, or a full tensor.
struct KeyPart {
  enum class Kind { A, B, EmbeddingA, EmbeddingB, Full, Bias, Dora } kind;
  std::string module; ///< within the model: model.layers.0.self_attn.q_proj
};

/// Splits `key` (already without kPrefix). PEFT writes `lora_A.weight`; older versions and
/// hand-made files keep the adapter name (`lora_A.default.weight`).
KeyPart classify(const std::string &key) {
  struct Suffix {
    std::string_view text;
    KeyPart::Kind kind;
  };
  static const Suffix suffixes[] = {
      {".lora_A.weight", KeyPart::Kind::A},
      {".lora_A.default.weight", KeyPart::Kind::A},
      {".lora_B.weight", KeyPart::Kind::B},
      {".lora_B.default.weight", KeyPart::Kind::B},
      {".lora_embedding_A", KeyPart::Kind::EmbeddingA},
      {".lora_embedding_A.default", KeyPart::Kind::EmbeddingA},
      {".lora_embedding_B", KeyPart::Kind::EmbeddingB},
      {".lora_embedding_B.default", KeyPart::Kind::EmbeddingB},
      {".lora_B.bias", KeyPart::Kind::Bias},
      {".lora_B.default.bias", KeyPart::Kind::Bias},
      {".lora_magnitude_vector", KeyPart::Kind::Dora},
      {".lora_magnitude_vector.weight", KeyPart::Kind::Dora},
  };
  for (const Suffix &s : suffixes)
    if (endsWith(key, s.text))
      return {s.kind, key.substr(0, key.size() - s.text.size())};
  // A targeted layer saved in full (save_embedding_layers: a resized or targeted embedding) is
  // saved under the LoRA layer's wrapped `base_layer`: it is the model's own tensor.
  std::string full = key;
  if (size_t at = full.find(".base_layer."); at != std::string::npos)
    full.erase(at, std::string_view(".base_layer").size());
  return {KeyPart::Kind::Full, full};
}

std::string shapeText(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// A JSON number as a double, or nullopt for anything else (a string "8" included: PEFT's
/// config is typed).
std::optional<double> number(const nlohmann::json &j) {
  if (j.is_number())
    return j.get<double>();
  return std::nullopt;
}

struct Config {
  int64_t r = 8;
  double alpha = 8;
  bool rslora = false, fanInFanOut = false;
  std::vector<std::pair<std::string, int64_t>> rankPattern;
  std::vector<std::pair<std::string, double>> alphaPattern;
};

/// r (or a rank_pattern value): a positive integer.
int64_t rankValue(const nlohmann::json &j, const std::string &what, const std::string &path) {
  std::optional<double> v = number(j);
  if (!v || !std::isfinite(*v) || *v != std::floor(*v))
    throw RuntimeError(path + ": " + what + " must be a positive integer, got " +
                           detail::jsonExcerpt(j),
                       path, "");
  if (*v <= 0 || *v > 1e9)
    throw RuntimeError(path + ": " + what + " must be a positive integer, got " +
                           detail::jsonExcerpt(j) + " (a rank-0 adapter changes nothing)",
                       path, "");
  return static_cast<int64_t>(*v);
}

Config readConfig(const std::string &path, const std::string &text) {
  nlohmann::json j = detail::parseStrictJson(text, path, "adapter config");
  if (!j.is_object())
    throw RuntimeError(path + ": the adapter config is not a JSON object", path, "");
  Config c;
  if (auto t = j.find("peft_type"); t != j.end() && !t->is_null() && *t != "LORA")
    throw RuntimeError(path + ": peft_type is " + detail::jsonExcerpt(*t) +
                           "; only LoRA adapters (\"LORA\") can be merged",
                       path, "");
  if (auto d = j.find("use_dora"); d != j.end() && d->is_boolean() && d->get<bool>())
    throw RuntimeError(path + ": use_dora is true; DoRA adapters (a magnitude vector that "
                              "rescales each column) are not supported, only plain LoRA",
                       path, "");
  auto flag = [&](const char *key, bool &out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null())
      return;
    if (!it->is_boolean())
      throw RuntimeError(path + ": " + key + " must be true or false, got " +
                             detail::jsonExcerpt(*it),
                         path, "");
    out = it->get<bool>();
  };
  flag("use_rslora", c.rslora);
  flag("fan_in_fan_out", c.fanInFanOut);
  if (auto r = j.find("r"); r != j.end())
    c.r = rankValue(*r, "r", path);
  if (auto a = j.find("lora_alpha"); a != j.end()) {
    std::optional<double> v = number(*a);
    if (!v || !std::isfinite(*v))
      throw RuntimeError(path + ": lora_alpha must be a number, got " + detail::jsonExcerpt(*a),
                         path, "");
    c.alpha = *v;
  }
  auto pattern = [&](const char *key, auto add) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null())
      return;
    if (!it->is_object())
      throw RuntimeError(path + ": " + key + " must be an object (module pattern: value), got " +
                             detail::jsonExcerpt(*it),
                         path, "");
    for (auto &[k, v] : it->items())
      add(k, v);
  };
  pattern("rank_pattern", [&](const std::string &k, const nlohmann::json &v) {
    c.rankPattern.emplace_back(k, rankValue(v, "rank_pattern[\"" + k + "\"]", path));
  });
  pattern("alpha_pattern", [&](const std::string &k, const nlohmann::json &v) {
    std::optional<double> a = number(v);
    if (!a || !std::isfinite(*a))
      throw RuntimeError(path + ": alpha_pattern[\"" + k + "\"] must be a number, got " +
                             detail::jsonExcerpt(v),
                         path, "");
    c.alphaPattern.emplace_back(k, *a);
  });
  return c;
}

template <typename T>
std::vector<std::string> keysOf(const std::vector<std::pair<std::string, T>> &pattern) {
  std::vector<std::string> keys;
  for (auto &[k, v] : pattern)
    keys.push_back(k);
  return keys;
}

template <typename T>
T lookup(const std::vector<std::pair<std::string, T>> &pattern, const std::string &module,
         T fallback, const std::string &path) {
  std::optional<std::string> key = loraPatternKey(keysOf(pattern), module, path);
  if (!key)
    return fallback;
  for (auto &[k, v] : pattern)
    if (k == *key)
      return v;
  return fallback;
}

/// OpenBLAS's cblas_sgemm, loaded on first use (BlasLibrary.h): a merge executable without
/// LoRA inputs or matrices never loads it, one with them says what is missing before anything
/// is read.
using Sgemm = decltype(&cblas_sgemm);
Sgemm sgemm(const std::string &forFile) {
  const BlasLibrary &blas = blasLibrary();
  if (!blas.error.empty())
    throw RuntimeError(forFile + ": LoRA inputs need OpenBLAS: " + blas.error, forFile, "");
  return blas.cblas_sgemm;
}


void toF32(const TensorInfo &t, float *out) {
  int64_t n = t.numel();
  if (t.dtype == DType::F32) {
    std::memcpy(out, t.data, static_cast<size_t>(n) * 4);
    return;
  }
  for (int64_t i = 0; i < n; ++i)
    out[i] = loadAsF32(t.dtype, t.data, i);
}

} // namespace

std::optional<std::string> loraPatternKey(const std::vector<std::string> &keys,
                                          const std::string &module, const std::string &file) {
  for (const std::string &key : keys) {
    std::regex re;
    try {
      // Python's re.match(rf"(.*\.)?({key})$", module): anchored at the start, `$` at the end.
      re = std::regex("(.*\\.)?(" + key + ")", std::regex::ECMAScript);
    } catch (const std::regex_error &e) {
      throw RuntimeError(file + ": the pattern \"" + key + "\" is not a regular expression (" +
                             e.what() + ")",
                         file, "");
    }
    if (std::regex_match(module, re))
      return key;
  }
  return std::nullopt;
}

std::unique_ptr<LoraAdapter> LoraAdapter::open(const std::string &name, const std::string &dir,
                                               const Checkpoint &model,
                                               const std::string &modelName) {
  std::unique_ptr<LoraAdapter> adapter(new LoraAdapter);
  adapter->name_ = name;
  adapter->dir_ = dir;
  std::string configPath = detail::joinPath(dir, kConfigName);
  adapter->configPath_ = configPath;
  std::optional<std::string> text = detail::readSmallFileIfExists(configPath, kMaxConfigBytes);
  if (!text)
    throw RuntimeError(configPath + ": no such file (a PEFT LoRA adapter directory holds " +
                           kConfigName + " and " + kWeightsName + ")",
                       configPath, "");
  adapter->configChecksum_ = checksum64(text->data(), text->size());
  Config config = readConfig(configPath, *text);

  std::string weightsPath = detail::joinPath(dir, kWeightsName);
  struct stat st;
  if (::stat(weightsPath.c_str(), &st) != 0)
    throw RuntimeError(weightsPath + ": no such file (the adapter's weights; PEFT's "
                                     "save_pretrained writes them with safe_serialization)",
                       weightsPath, "");
  adapter->weights_ = SafetensorsFile::open(weightsPath);
  const SafetensorsFile &file = *adapter->weights_;

  auto fail = [&](const std::string &key, const std::string &message) {
    throw RuntimeError(weightsPath + ": tensor '" + key + "': " + message, weightsPath, key);
  };
  struct Factors {
    const TensorInfo *a = nullptr, *b = nullptr;
    bool embedding = false;
  };
  std::map<std::string, Factors> modules;
  for (const TensorInfo &t : file.tensors()) {
    if (t.name.compare(0, kPrefix.size(), kPrefix) != 0)
      fail(t.name, "not a PEFT adapter key (they start with \"base_model.model.\")");
    std::string key = t.name.substr(kPrefix.size());
    KeyPart part = classify(key);
    if (!isComputeDType(t.dtype))
      fail(t.name, std::string("stored as ") + dtypeName(t.dtype) +
                       "; only F32, F16 and BF16 adapters can be merged");
    switch (part.kind) {
    case KeyPart::Kind::Dora:
      fail(t.name, "a DoRA magnitude vector; DoRA adapters are not supported, only plain LoRA");
    case KeyPart::Kind::Bias:
      fail(t.name, "a LoRA bias (lora_bias = true) is not supported");
    case KeyPart::Kind::Full: {
      // modules_to_save: the module's own tensors, saved in full.
      const std::string &key = part.module;
      const TensorInfo *own = model.find(key);
      if (!own)
        fail(t.name, "a full tensor (modules_to_save) for '" + key + "', which model '" +
                         modelName + "' (" + model.path() + ") does not have");
      if (own->shape != t.shape)
        fail(t.name, "shape " + t.shapeString() + " does not fit the tensor '" + key +
                         "' of model '" + modelName + "', of shape " + own->shapeString());
      if (!isComputeDType(own->dtype))
        fail(t.name, "model '" + modelName + "' stores '" + key + "' as " +
                         dtypeName(own->dtype) + "; only F32, F16 and BF16 can be computed on");
      LoraTarget &target = adapter->targets_[key];
      target.tensor = key;
      target.saved = &t;
      target.model = own;
      break;
    }
    case KeyPart::Kind::A:
    case KeyPart::Kind::EmbeddingA:
    case KeyPart::Kind::B:
    case KeyPart::Kind::EmbeddingB: {
      bool isA = part.kind == KeyPart::Kind::A || part.kind == KeyPart::Kind::EmbeddingA;
      if (t.shape.size() != 2)
        fail(t.name, "shape " + t.shapeString() +
                         ": LoRA factors of linear and embedding layers are matrices "
                         "(convolution LoRA is not supported)");
      Factors &f = modules[part.module];
      (isA ? f.a : f.b) = &t;
      f.embedding = part.kind == KeyPart::Kind::EmbeddingA ||
                    part.kind == KeyPart::Kind::EmbeddingB;
      break;
    }
    }
  }

  for (auto &[module, f] : modules) {
    const TensorInfo *known = f.a ? f.a : f.b;
    if (!f.a || !f.b)
      fail(known->name, std::string("has no matching ") + (f.a ? "B" : "A") +
                            " factor in the adapter");
    std::string tensor = module + ".weight";
    const TensorInfo *own = model.find(tensor);
    if (!own)
      fail(f.a->name, "the adapter targets module '" + module + "', but model '" + modelName +
                          "' (" + model.path() + ") has no tensor '" + tensor + "'");
    if (!isComputeDType(own->dtype))
      fail(f.a->name, "model '" + modelName + "' stores '" + tensor + "' as " +
                          dtypeName(own->dtype) + "; only F32, F16 and BF16 can be computed on");
    int64_t r = lookup(config.rankPattern, module, config.r, configPath);
    double alpha = lookup(config.alphaPattern, module, config.alpha, configPath);
    // A is r x in and B is out x r: the delta B @ A is out x in, transposed for Conv1D weights
    // (fan_in_fan_out) and for embeddings (PEFT stores their A as r x num_embeddings).
    bool transposed = f.embedding || config.fanInFanOut;
    int64_t rows = f.b->shape[0], cols = f.a->shape[1];
    std::vector<int64_t> want = transposed ? std::vector<int64_t>{cols, rows}
                                           : std::vector<int64_t>{rows, cols};
    if (f.a->shape[0] != f.b->shape[1] || own->shape != want)
      fail(f.a->name, "A " + f.a->shapeString() + " and B " + f.b->shapeString() +
                          " do not fit the tensor '" + tensor + "' of model '" + modelName +
                          "', of shape " + own->shapeString() + " (B @ A" +
                          (transposed ? ", transposed," : "") + " is " + shapeText(want) + ")");
    if (f.a->shape[0] != r)
      fail(f.a->name, "rank " + std::to_string(f.a->shape[0]) + ", but " + configPath +
                          " gives module '" + module + "' r = " + std::to_string(r));
    LoraTarget &target = adapter->targets_[tensor];
    target.tensor = tensor;
    target.a = f.a;
    target.b = f.b;
    target.transposed = transposed;
    target.scale = static_cast<float>(config.rslora ? alpha / std::sqrt(static_cast<double>(r))
                                                    : alpha / static_cast<double>(r));
    if (!target.model)
      target.model = own;
  }
  if (!modules.empty())
    (void)sgemm(weightsPath); // a missing OpenBLAS is an error before anything is read
  if (adapter->targets_.empty())
    throw RuntimeError(weightsPath + ": the adapter targets no tensor of model '" + modelName +
                           "' (" + model.path() + "): it holds no LoRA factors or saved modules",
                       weightsPath, "");
  return adapter;
}

const LoraTarget *LoraAdapter::find(const std::string &tensor) const {
  auto it = targets_.find(tensor);
  return it == targets_.end() ? nullptr : &it->second;
}

uint64_t LoraAdapter::readBytes(const LoraTarget &t) {
  uint64_t bytes = 0;
  for (const TensorInfo *r : readTensors(t))
    bytes += r->nbytes;
  return bytes;
}

uint64_t LoraAdapter::scratchBytes(const LoraTarget &t) {
  return t.a ? static_cast<uint64_t>(t.a->numel() + t.b->numel()) * sizeof(float) : 0;
}

std::vector<const TensorInfo *> LoraAdapter::readTensors(const LoraTarget &t) {
  std::vector<const TensorInfo *> read;
  if (t.a) {
    read.push_back(t.a);
    read.push_back(t.b);
  }
  if (t.saved) {
    read.push_back(t.saved);
    read.push_back(t.model);
  }
  return read;
}

void LoraAdapter::computeDelta(const LoraTarget &t, float *out, std::vector<float> &scratch) {
  int64_t n = t.model->numel();
  if (t.a) {
    int64_t r = t.a->shape[0], in = t.a->shape[1], outRows = t.b->shape[0];
    size_t need = static_cast<size_t>(t.a->numel() + t.b->numel());
    if (scratch.size() < need)
      scratch.resize(need);
    float *a = scratch.data(), *b = scratch.data() + t.a->numel();
    toF32(*t.a, a);
    toF32(*t.b, b);
    // One sgemm, the scale as its alpha: f32 products summed over the rank, as PEFT's
    // (B @ A) * scale in f32. The split over threads is by rows and columns, never over the
    // rank, so the result does not depend on the thread count.
    Sgemm gemm = sgemm(t.a->file->path());
    if (!t.transposed)
      gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(outRows),
                  static_cast<int>(in), static_cast<int>(r), t.scale, b, static_cast<int>(r), a,
                  static_cast<int>(in), 0.0f, out, static_cast<int>(in));
    else // (B @ A)^T = A^T @ B^T: in x out
      gemm(CblasRowMajor, CblasTrans, CblasTrans, static_cast<int>(in),
                  static_cast<int>(outRows), static_cast<int>(r), t.scale, a,
                  static_cast<int>(in), b, static_cast<int>(r), 0.0f, out,
                  static_cast<int>(outRows));
  } else {
    std::memset(out, 0, static_cast<size_t>(n) * sizeof(float));
  }
  if (t.saved)
    for (int64_t i = 0; i < n; ++i)
      out[i] += loadAsF32(t.saved->dtype, t.saved->data, i) - loadAsF32(t.model->dtype, t.model->data, i);
}

} // namespace mergec::rt
