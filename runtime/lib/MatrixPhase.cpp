//===- MatrixPhase.cpp - errors a compiled matrix phase reports -----------===//
#include "mergec/Runtime/MatrixPhase.h"
#include "mergec/Runtime/KernelABI.h"
#include "mergec/Runtime/LinearAlgebra.h"
#include <algorithm>

namespace mergec::rt {
namespace {
thread_local std::optional<std::string> pending;
thread_local MatrixSink *sink = nullptr;

const char *checkName(int32_t check) {
  switch (static_cast<abi::MatrixCheck>(check)) {
  case abi::MatrixCheck::MatMul:
    return "a @ b needs a's columns to equal b's rows";
  case abi::MatrixCheck::Elementwise:
    return "elementwise arithmetic needs matrices of one shape";
  case abi::MatrixCheck::HCat:
    return "hcat needs matrices with the same number of rows";
  case abi::MatrixCheck::VCat:
    return "vcat needs matrices with the same number of columns";
  case abi::MatrixCheck::Result:
    return "the matrix the rule computes must have the tensor's shape (rows x last dimension)";
  }
  return "matrix shapes do not fit";
}
} // namespace

void clearMatrixError() { pending.reset(); }

void setMatrixSink(MatrixSink *s) { sink = s; }
MatrixSink *matrixSink() { return sink; }

uint64_t matrixPhaseBytes(const CompiledRule &rule, int64_t n, int64_t cols) {
  uint64_t most = 0;
  cols = std::max<int64_t>(cols, 1);
  int64_t rows = n / cols;
  for (const CompiledRule::Phase &p : rule.phases) {
    if (p.kind != CompiledRule::Kind::Matrix)
      continue;
    int64_t workspace = mergec_la_workspace_bytes(MERGEC_LA_SVD, rows, cols, std::min(rows, cols));
    if (p.spectral)
      workspace = std::max(workspace, mergec_la_workspace_bytes(MERGEC_LA_SPECTRAL, rows, cols, 0));
    uint64_t bytes = p.matrices * static_cast<uint64_t>(n) * sizeof(float) +
                     static_cast<uint64_t>(std::max<int64_t>(workspace, 0));
    most = std::max(most, bytes);
  }
  return most;
}

std::optional<std::string> takeMatrixError() {
  std::optional<std::string> message = std::move(pending);
  pending.reset();
  return message;
}

} // namespace mergec::rt

extern "C" void mergec_matrix_shape_error(int32_t check, int64_t rows0, int64_t cols0,
                                          int64_t rows1, int64_t cols1) {
  using mergec::rt::pending;
  pending = std::string(mergec::rt::checkName(check)) + ": got " + std::to_string(rows0) + "x" +
            std::to_string(cols0) + " and " + std::to_string(rows1) + "x" +
            std::to_string(cols1);
}

extern "C" void mergec_matrix_call_failed(void) {
  mergec::rt::pending = std::string(mergec_la_error());
}

extern "C" int32_t mergec_matrix_emit(const char *name, int64_t nameLength, int64_t rows,
                                      int64_t cols, const float *data) {
  using mergec::rt::pending;
  std::string_view what(name, static_cast<size_t>(nameLength));
  if (!mergec::rt::sink) {
    pending = "the rule emits matrix '" + std::string(what) +
              "' but this run takes no emitted matrices (only compress(...) writes them)";
    return 1;
  }
  if (auto error = mergec::rt::sink->take(what, rows, cols, data)) {
    pending = std::move(*error);
    return 1;
  }
  return 0;
}
