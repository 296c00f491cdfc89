//===- MatrixPhase.h - errors a compiled matrix phase reports ---*- C++ -*-===//
// A matrix phase (KernelABI.h) is compiled code that cannot throw: when two shapes do not fit
// or a BLAS/LAPACK call fails it calls mergec_matrix_shape_error or mergec_matrix_call_failed,
// which keep a message for the calling thread, and returns. The phase runner clears the message
// before the phase and takes it after, so the merge stops with the tensor named.
#pragma once
#include "mergec/Runtime/Executor.h"
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mergec::rt {

/// Where a matrix phase's merge.emit_matrix results go (compress(...): BundleWriter.h), and the
/// rank the phase reads through merge.bundle_rank. Set on the thread that runs the tensor's
/// phases (matrix phases run on the calling thread) for as long as it runs them.
class MatrixSink {
public:
  virtual ~MatrixSink() = default;
  /// The value of merge.bundle_rank for the current tensor.
  virtual int64_t rank() const = 0;
  /// Takes one emitted matrix; returns a message (the phase then stops) when the name or the
  /// shape is not what the plan expects.
  virtual std::optional<std::string> take(std::string_view name, int64_t rows, int64_t cols,
                                          const float *data) = 0;
};
/// Sets the calling thread's sink (null: none; an emit is then an error).
void setMatrixSink(MatrixSink *sink);
MatrixSink *matrixSink();

/// Forgets a message the calling thread kept (before a matrix phase runs).
void clearMatrixError();
/// The message a matrix phase on this thread reported, if any (and forgets it).
std::optional<std::string> takeMatrixError();

/// What a rule's matrix phases allocate on a tensor of n elements whose last dimension is
/// `cols`, for --max-memory: each matrix the program makes at the tensor's size in f32 and the
/// workspace of one SVD of the tensor (LAPACK's own query).
uint64_t matrixPhaseBytes(const CompiledRule &rule, int64_t n, int64_t cols);

} // namespace mergec::rt
