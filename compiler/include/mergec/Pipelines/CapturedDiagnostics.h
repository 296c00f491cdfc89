//===- CapturedDiagnostics.h - MLIR diagnostics as text for errors -*- C++ -*-===//
#pragma once
#include "mlir/IR/Diagnostics.h"
#include <string>

namespace mergec {

/// Collects the MLIR diagnostics emitted while it lives, so a failed pipeline's RuntimeError can
/// say what went wrong.
struct CapturedDiagnostics {
  explicit CapturedDiagnostics(mlir::MLIRContext *ctx)
      : handler(ctx, [this](mlir::Diagnostic &d) {
          text += d.str() + "\n";
          return mlir::success();
        }) {}
  std::string text;
  mlir::ScopedDiagnosticHandler handler;
};

} // namespace mergec
