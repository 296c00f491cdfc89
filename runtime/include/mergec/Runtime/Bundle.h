//===- Bundle.h - the layout of a compressed multi-model bundle -*- C++ -*-===//
// `merge compress([a, b, c], rank = 64)` writes N fine-tunes of one model as one bundle, the
// NeurIPS 2024 LLM-merging winner's compression: for every 2-D tensor X that is compressed,
//   X.avg (rows x cols)  the mean of W_i / |W_i|_F       X.scale ([N], f32)  |W_i|_F
//   X.U.i (rows x k)     u_i diag(s_i)                   X.V.i (k x cols)    vt_i
// with (u_i, s_i, vt_i) = rsvd(W_i / |W_i|_F - avg, k), so W_i ~ scale_i (avg + U.i @ V.i);
// every other tensor (1-D, more than 2-D, excluded, not F32/F16/BF16) is stored per member as
// X.model.i. This file decides that layout (the one rank rule included), takes the compiled
// rule's emitted matrices for a tensor, and writes bundle.json; the executor streams the
// tensors (Executor.cpp, writeBundle).
#pragma once
#include "mergec/Runtime/CheckpointWriter.h"
#include "mergec/Runtime/Executor.h"
#include "mergec/Runtime/Glob.h"
#include "mergec/Runtime/MatrixPhase.h"
#include "mergec/Runtime/Safetensors.h"
#include <nlohmann/json.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mergec::rt {

/// The file that describes a bundle, next to its safetensors.
inline constexpr const char *kBundleFileName = "bundle.json";
/// bundle.json's "format" and "version".
inline constexpr const char *kBundleFormat = "mergec-bundle";
inline constexpr int kBundleVersion = 1;

/// The rank of a rows x cols tensor's factors: `rank` when given, else the largest k with
/// k (rows + cols) <= (1 - rate) rows cols; at least 1, at most min(rows, cols).
int64_t bundleRank(const RunOptions::Bundle &bundle, int64_t rows, int64_t cols);

class BundleLayout {
public:
  struct Tensor {
    const TensorInfo *tensor;                 ///< the first member's (shape, dtype, name)
    std::vector<const TensorInfo *> members; ///< each member's tensor of that name
    bool compressed;
    int64_t rows = 0, cols = 0, rank = 0;
    size_t firstSpec; ///< its first output tensor in specs()
  };
  /// `tensors`: per source tensor in plan order, each member's tensor of that name (one shape,
  /// checked by the planner). `outDType`: --dtype, if given.
  BundleLayout(const RunOptions::Bundle &bundle,
               const std::vector<std::vector<const TensorInfo *>> &tensors,
               std::optional<DType> outDType);

  /// Whether `t` is compressed: 2-D, F32/F16/BF16, and no exclude glob matches its name.
  static bool compresses(const TensorInfo &t, const std::vector<CompiledGlob> &exclude);

  const std::vector<Tensor> &tensors() const { return tensors_; }
  const std::vector<OutputTensorSpec> &specs() const { return specs_; }
  size_t members() const { return members_; }
  /// The dtype avg, U and V are written in for tensor `t`.
  DType factorDType(const TensorInfo &t) const;

  /// bundle.json: format, version, the members (name, path, hash), the settings, and per
  /// source tensor its kind (compressed | stored), shape, dtype, rank and output tensors.
  nlohmann::ordered_json describe(const std::vector<nlohmann::ordered_json> &members) const;

private:
  RunOptions::Bundle bundle_;
  size_t members_;
  std::optional<DType> outDType_;
  std::vector<Tensor> tensors_;
  std::vector<OutputTensorSpec> specs_;
};

/// Takes one compressed tensor's emitted matrices (merge.emit_matrix: scale.i as 1 x 1, U.i,
/// V.i) and checks each against the layout's shape for it.
class BundleSink : public MatrixSink {
public:
  BundleSink(const BundleLayout &layout, const BundleLayout::Tensor &tensor);
  int64_t rank() const override { return tensor_.rank; }
  std::optional<std::string> take(std::string_view name, int64_t rows, int64_t cols,
                                  const float *data) override;
  /// Throws RuntimeError naming the tensor when something the layout expects was not emitted.
  void checkComplete() const;
  /// The values of output tensor `spec` (an index into the layout's specs()).
  const std::vector<float> &values(size_t spec) const { return values_.at(spec); }

private:
  const BundleLayout &layout_;
  const BundleLayout::Tensor &tensor_;
  std::map<std::string, std::pair<size_t, std::vector<int64_t>>> expected_; ///< name -> spec, shape
  std::map<size_t, std::vector<float>> values_;
};

/// f32 values in `dtype` (F32, F16, BF16; rounding to nearest even), appended to `out`.
void storeF32As(DType dtype, const float *values, size_t count, std::vector<uint8_t> &out);

} // namespace mergec::rt
