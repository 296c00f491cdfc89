//===- LoraAdapter.h - PEFT LoRA adapters as merge inputs -------*- C++ -*-===//
// A `lora NAME = "PATH" on MODEL` input: a PEFT adapter directory (adapter_config.json +
// adapter_model.safetensors) read as the task vector it adds to MODEL, tensor by tensor. The
// delta of a tensor is computed when the merge needs it (OpenBLAS sgemm, f32), never written
// anywhere: the runtime sees an f32 input like any other.
#pragma once
#include "mergec/Runtime/Safetensors.h"
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mergec::rt {

/// How the adapter changes one tensor of MODEL. Both parts may be present (an embedding that
/// is both saved in full and targeted): the delta is their sum.
struct LoraTarget {
  std::string tensor; ///< MODEL's tensor name, e.g. model.layers.0.self_attn.q_proj.weight
  /// Low rank: delta = scale * B @ A (out x in), or its transpose when `transposed`
  /// (fan_in_fan_out Conv1D weights, lora_embedding_A/B). A is r x in, B is out x r.
  const TensorInfo *a = nullptr, *b = nullptr;
  float scale = 0;
  bool transposed = false;
  /// modules_to_save (and saved embedding layers): the adapter's full tensor replaces MODEL's,
  /// so the delta is saved - model.
  const TensorInfo *saved = nullptr, *model = nullptr;

  int64_t rank() const { return a ? a->shape[0] : 0; }
};

class LoraAdapter {
public:
  /// Reads `dir`'s adapter_config.json and adapter_model.safetensors (headers only) and matches
  /// every adapter key to a tensor of `model` (the checkpoint of the model it is `on`, named
  /// `modelName`). Throws RuntimeError naming the adapter file and the tensor at fault when:
  /// a file is missing, the config is not JSON (its line and column) or not a PEFT LoRA config
  /// (peft_type, use_dora), r or lora_alpha is missing, not a number or r is not a positive
  /// integer, a key is not a LoRA key, names a module `model` lacks, A and B do not fit the
  /// tensor's shape (both shapes named) or the configured rank, or nothing of `model` is
  /// targeted.
  static std::unique_ptr<LoraAdapter> open(const std::string &name, const std::string &dir,
                                           const Checkpoint &model, const std::string &modelName);

  const std::string &name() const { return name_; }
  const std::string &directory() const { return dir_; }
  const std::string &configPath() const { return configPath_; }
  const SafetensorsFile &weights() const { return *weights_; }
  /// The tensor's target, or null: the adapter leaves it as it is (its delta is 0).
  const LoraTarget *find(const std::string &tensor) const;
  const std::map<std::string, LoraTarget> &targets() const { return targets_; }
  /// checksum64 of adapter_config.json's bytes as read (the journal's record of it).
  uint64_t configChecksum() const { return configChecksum_; }

  /// Writes `target`'s delta in f32 (MODEL's tensor's shape, row-major) to `out`; `scratch`
  /// holds A and B in f32 (grown as needed, reused between calls).
  static void computeDelta(const LoraTarget &target, float *out, std::vector<float> &scratch);
  /// The adapter bytes computeDelta reads for `target` (A, B, the saved tensor; MODEL's
  /// tensor too for a saved one).
  static uint64_t readBytes(const LoraTarget &target);
  /// Bytes of f32 scratch computeDelta needs for `target`.
  static uint64_t scratchBytes(const LoraTarget &target);
  /// The files `target` reads, each tensor once (for checks, prefetch and release).
  static std::vector<const TensorInfo *> readTensors(const LoraTarget &target);

private:
  LoraAdapter() = default;
  std::string name_, dir_, configPath_;
  uint64_t configChecksum_ = 0;
  std::unique_ptr<SafetensorsFile> weights_;
  std::map<std::string, LoraTarget> targets_;
};

/// PEFT's rank_pattern / alpha_pattern lookup (peft.utils.other.get_pattern_key): the first key
/// `k`, in the config's order, for which the regular expression `(.*\.)?(k)$` matches the
/// whole module name; nullopt when none does. `module` is the name within the model
/// (model.layers.0.self_attn.q_proj). Throws RuntimeError naming `file` on a key that is not a
/// valid regular expression.
std::optional<std::string> loraPatternKey(const std::vector<std::string> &keys,
                                          const std::string &module, const std::string &file);

} // namespace mergec::rt
