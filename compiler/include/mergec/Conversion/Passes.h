//===- Passes.h - lowering the merge dialect --------------------*- C++ -*-===//
#pragma once
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mergec {

#define GEN_PASS_DECL
#include "mergec/Conversion/Passes.h.inc"

/// The attribute on a lowered rule listing the model of each input memref, in order.
inline constexpr const char *kInputsAttr = "merge.inputs";
/// On a lowered phase function that is a host program run once per tensor (a matrix phase:
/// BLAS and LAPACK calls), not a loop nest a GPU could run.
inline constexpr const char *kHostAttr = "merge.host";
/// The gpu.module merge-convert-kernels-to-gpu puts every kernel in.
inline constexpr const char *kGpuModuleName = "mergec_kernels";

#define GEN_PASS_REGISTRATION
#include "mergec/Conversion/Passes.h.inc"

} // namespace mergec
