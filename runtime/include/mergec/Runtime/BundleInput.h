//===- BundleInput.h - a compressed bundle's member as an input -*- C++ -*-===//
// `bundle zoo = "PATH"` and `zoo[i]` (docs/language.md): member i of a bundle that
// `merge compress(...)` wrote (Bundle.h), read like a model. Its checkpoint is the bundle's
// files viewed as the member's tensors: a stored tensor X is X.model.i as it is (zero copy); a
// compressed one has the source's name, shape and dtype but no bytes, and is reconstructed in
// f32 when a rule reads it, scale_i (avg + U.i @ V.i) with one SGEMM, as LoRA deltas are.
#pragma once
#include "mergec/Runtime/Safetensors.h"
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mergec::rt {

/// A compressed tensor's factors in the bundle's files.
struct BundleFactors {
  std::string name;
  const TensorInfo *avg = nullptr, *scale = nullptr;
  std::vector<const TensorInfo *> u, v; ///< per member
  int64_t rows = 0, cols = 0, rank = 0;
};

class BundleMember {
public:
  /// Reads `path`/bundle.json and checks it against `bundle` (the bundle's checkpoint, opened
  /// from the same path): its format and version, that `member` is one of its members, and that
  /// every tensor it lists is in the files with the shape it says (avg rows x cols, scale [N],
  /// U.i rows x k, V.i k x cols, a stored X.model.i the source's shape). Then makes `bundle`
  /// the member's view (Checkpoint::setView). Throws RuntimeError naming bundle.json or the
  /// tensor on the first problem.
  static std::unique_ptr<BundleMember> open(const std::string &name, const std::string &path,
                                            int64_t member, Checkpoint &bundle);

  int64_t member() const { return member_; }
  size_t memberCount() const { return members_; }
  /// The factors of compressed tensor `name`, else null (a stored tensor, or none).
  const BundleFactors *factors(const std::string &name) const;
  /// The bundle's tensors a reconstruction reads (for prefetching, releasing, counting).
  static std::vector<const TensorInfo *> readTensors(const BundleFactors &f, int64_t member);
  /// scale (avg + U @ V) of member `member` in f32 into `out` (rows x cols), with `scratch`
  /// for the factors in f32.
  static void reconstruct(const BundleFactors &f, int64_t member, float *out,
                          std::vector<float> &scratch);
  /// What reconstruct() allocates besides its output: avg, U and V in f32.
  static uint64_t scratchBytes(const BundleFactors &f);

private:
  int64_t member_ = 0;
  size_t members_ = 0;
  std::deque<TensorInfo> view_; ///< the member's tensors, as the checkpoint shows them
  std::map<std::string, BundleFactors> factors_;
};

} // namespace mergec::rt
