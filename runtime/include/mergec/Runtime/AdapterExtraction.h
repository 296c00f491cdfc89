//===- AdapterExtraction.h - a merge's task vector as a PEFT LoRA adapter -*- C++ -*-===//
// `mergec run R -o OUT --emit-lora RANK`: instead of the merged model, OUT is a PEFT LoRA
// adapter on the output model whose B @ A is, per targeted tensor, the best rank-RANK
// approximation of the merged task vector (merged - the output model's tensor), as
// mergekit-extract-lora writes one (mergekit/scripts/extract_lora.py). The executor computes
// each merged tensor in f32 (never rounded to the output dtype: rounding noise is full rank)
// and hands it here; this file decides what the adapter holds and writes it.
#pragma once
#include "mergec/Runtime/DType.h"
#include "mergec/Runtime/Executor.h"
#include "mergec/Runtime/Glob.h"
#include "mergec/Runtime/Safetensors.h"
#include <nlohmann/json.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mergec::rt {

/// The last component of a module that is never a LoRA target unless --lora-targets names it:
/// embeddings (PEFT gives an nn.Embedding lora_embedding_A/B, not lora_A/lora_B) and the output
/// head, which mergekit-extract-lora also saves in full by default.
bool isDefaultLoraExclusion(const std::string &module);

/// Whether tensor `t` is written as a LoRA pair when it changes: a 2-D `<module>.weight` that
/// matches one of `targets` (empty: any such tensor but isDefaultLoraExclusion's).
bool isLoraTarget(const TensorInfo &t, const std::vector<CompiledGlob> &targets);

/// Collects the adapter tensor by tensor and writes it at the end. Its factors go to a spill
/// file in the output's temporary directory as they are made (memory stays one tensor's), and
/// finish() writes adapter_model.safetensors from it: the tensors' ranks, and so the adapter's
/// header, are known only once every SVD has run (--sv-epsilon).
class AdapterExtractor {
public:
  /// `tensors`: the output model's tensors, for the targets; `dir`: the temporary directory.
  AdapterExtractor(std::string dir, const RunOptions::EmitLora &options,
                   const std::vector<const TensorInfo *> &tensors);
  ~AdapterExtractor();
  AdapterExtractor(const AdapterExtractor &) = delete;
  AdapterExtractor &operator=(const AdapterExtractor &) = delete;

  /// The --lora-targets globs that match no tensor (for warnings).
  const std::vector<std::string> &unmatchedTargets() const { return unmatched_; }

  enum class Outcome { Unchanged, LowRank, BelowEpsilon, Saved, Skipped };
  /// Takes tensor `base`'s merge in f32 (`merged`, base's shape; overwritten) and adds to the
  /// adapter: nothing when merged == base everywhere (exactly, in f32); for a target, the
  /// factors of the truncated SVD of merged - base in `dtype` (B = U·√S, A = √S·Vt: mergekit's
  /// distribute_scale), none when --sv-epsilon drops every singular value; for any other tensor
  /// that changed, the merged tensor itself (modules_to_save). Throws RuntimeError naming the
  /// tensor when the SVD fails.
  Outcome add(const TensorInfo &base, float *merged, DType dtype);
  /// A tensor the executor cannot convert (not F32/F16/BF16): unchanged when its bytes equal
  /// base's, else skipped with a warning.
  Outcome addRaw(const TensorInfo &base, const void *merged);

  /// Writes adapter_model.safetensors and adapter_config.json (base_model_name_or_path =
  /// `baseModelPath`) into the directory. Throws RuntimeError when nothing targeted changed
  /// (PEFT refuses an adapter without a target module).
  void finish(const std::string &baseModelPath);

  /// For the manifest: rank, per-module ranks, saved modules, the counts.
  nlohmann::ordered_json summary() const;
  /// One line for the terminal: modules, ranks, what was saved or skipped.
  std::string summaryLine() const;
  uint64_t bytesWritten() const { return bytesWritten_; }
  size_t tensorsWritten() const { return entries_.size(); }
  const std::vector<std::string> &warnings() const { return warnings_; }

  /// What add() allocates for `t` besides the f32 merge: the SVD's LAPACK workspace and copies
  /// (mergec_la_workspace_bytes), U, S and Vt, and one conversion block.
  static uint64_t scratchBytes(const TensorInfo &t, int64_t rank);

private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t offset; ///< in the spill file
    std::string module; ///< the module it belongs to (saved tensors: dropped if also LoRA)
    bool saved;
  };
  void spill(const float *data, uint64_t count, DType dtype, const std::string &tensor);

  std::string dir_, spillPath_;
  int spillFd_ = -1;
  uint64_t spillBytes_ = 0, bytesWritten_ = 0;
  RunOptions::EmitLora options_;
  std::vector<CompiledGlob> globs_;
  std::vector<std::string> unmatched_;
  std::vector<Entry> entries_;
  /// Module -> rank, in the model's order (rank_pattern, target_modules).
  std::vector<std::pair<std::string, int64_t>> ranks_;
  std::vector<std::string> savedModules_, warnings_;
  size_t unchanged_ = 0, belowEpsilon_ = 0, skipped_ = 0;
};

} // namespace mergec::rt
