//===- KernelABI.h - what compiled phases and the runtime agree on -*- C++ -*-===//
// The scalars array every phase function receives (f64): per-tensor context first, then the
// scalar results of the rule's phases back to back, in phase order (a reduction phase has one
// per reduction it computes, a selection four, a ranking none), then the values of the recipe's
// run-time params (merge.param, in the module's `merge.params` order; CompiledRule::params). Shared by the lowering (which
// loads from it) and the executor (which fills it); both lay it out with firstPhaseSlots.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace mergec::rt::abi {

constexpr int64_t kNameHashSlot = 0; ///< FNV-1a 32-bit hash of the tensor's name
constexpr int64_t kColsSlot = 1;     ///< the length of the last dimension (1 for a 0-d tensor)
constexpr int64_t kNumelSlot = 2;    ///< the number of elements
/// compress(...): the rank of the tensor's bundle factors (merge.bundle_rank; 0 elsewhere).
constexpr int64_t kBundleRankSlot = 3;
constexpr int64_t kFirstPhaseSlot = 4;

/// Every phase function is a loop nest over [begin, end) in chunks of kChunkElements: chunk c
/// (of this call) is [begin + c * kChunkElements, min(end, begin + (c + 1) * kChunkElements)),
/// its elements in order; a reduction phase writes chunk c's m partials at result[c * m + j].
/// The CPU calls a phase once per chunk (begin, end: that chunk; result: its partials), so c
/// is 0; a GPU launches it once over [0, n) with one block of kGpuBlock threads per chunk,
/// the block adding its elements in a fixed tree (no atomics: the same bits every run).
/// Either way the partials and their combination in chunk order are the same.
constexpr int64_t kGpuBlock = 256;
/// Elements per chunk (Device::kChunk): the unit of parallel work and of reduction partials.
constexpr int64_t kChunkElements = 1 << 16;

/// The first slot of each phase given how many scalars each produces; the last entry is the
/// size of the whole array.
inline std::vector<int64_t> firstPhaseSlots(const std::vector<int64_t> &scalarsPerPhase) {
  std::vector<int64_t> first{kFirstPhaseSlot};
  for (int64_t count : scalarsPerPhase)
    first.push_back(first.back() + count);
  return first;
}

/// FNV-1a, 32 bits, over the name's bytes: the tensor key of merge.bernoulli's generator.
constexpr uint32_t nameHash(std::string_view name) {
  uint32_t h = 2166136261u;
  for (char c : name) {
    h ^= static_cast<uint8_t>(c);
    h *= 16777619u;
  }
  return h;
}

/// What a matrix phase (merge.matrix_phase) checks before a step, for the error it reports
/// through mergec_matrix_shape_error: the two shapes did not fit.
enum class MatrixCheck : int32_t {
  MatMul = 0,      ///< lhs cols != rhs rows
  Elementwise = 1, ///< elementwise arithmetic on matrices of two shapes
  HCat = 2,        ///< hcat of matrices with different row counts
  VCat = 3,        ///< vcat of matrices with different column counts
  Result = 4,      ///< a matrix that becomes the tensor does not have its shape
};

} // namespace mergec::rt::abi

// ---------------------------------------------------------------------------------------------
// The C ABI of compiled kernels (what `mergec compile --emit=obj` exports, what the kernel cache
// stores and what merge executables link). Every phase of every rule, per dtype signature, is
//
//   void mergec_<function>__<tag>(void **args);
//
// <function> is `rule_N` (the map phase that writes the output) or `rule_N_phaseK`; <tag> names
// the signature, "BF16_BF16__BF16" for two BF16 inputs and a BF16 output (KernelSignature::tag).
// args[i] points at the i-th argument of the lowered function: for each input (the models'
// tensors in ruleInputs order, then the row buffers of the rule's row phases) and then the result,
// the five fields of a memref descriptor (allocated pointer, aligned pointer, int64 offset,
// size, stride); then int64 begin and end (the chunk of elements to process), float layer and
// num_layers; then the five fields of the f64 scalars array's descriptor (layout above). A
// reduction phase's result is its chunk's f64 partials; a select or row phase's result is its
// key buffer; the map phase's result is the output, in the output dtype. A matrix phase is
// called once per tensor over [0, numel) (on the host: it calls BLAS and LAPACK): its result is
// its f64 scalar results, and it writes its matrices into its buffers (inputs after the row
// buffers, as for row phases). It reports a shape that does not fit or a failed library call
// through the two functions below and returns early; the runtime then reads the message
// (MatrixPhase.h) and stops the merge naming the tensor.
extern "C" {
void mergec_matrix_shape_error(int32_t check, int64_t rows0, int64_t cols0, int64_t rows1,
                               int64_t cols1);
/// After a mergec_la_* call returned non-zero: keeps its mergec_la_error() message.
void mergec_matrix_call_failed(void);
/// merge.emit_matrix: the matrix `name` (nameLength bytes, not NUL-terminated) of rows x cols
/// f32 values (row-major; a scalar is 1 x 1), handed to the sink the runtime set for the tensor
/// (MatrixPhase.h). Returns 0, or 1 when the sink refused it (a name or shape it does not
/// expect): the message is then kept as by the two above and the phase returns.
int32_t mergec_matrix_emit(const char *name, int64_t nameLength, int64_t rows, int64_t cols,
                        const float *data);
}
//
// An object from --emit=obj also holds the kernels' table and the program's description:
extern "C" {
/// One packed entry point.
struct mergec_kernel_entry {
  const char *symbol;
  void (*fn)(void **args);
};
/// Every packed entry point of the object, `mergec_kernel_count` of them.
extern const struct mergec_kernel_entry mergec_kernel_table[];
extern const uint64_t mergec_kernel_count;
/// NUL-terminated JSON: mergec's version, the recipe (path, text, sha256), the models and their
/// default paths, the output model, the params' values, the rules (patterns, inputs, whether a
/// rule copies a model) and, per rule and signature, the rule description (RuleDescription.h).
extern const char mergec_program[];
}
