//===- MergeDialect.h - the merge dialect -----------------------*- C++ -*-===//
#pragma once
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/STLFunctionalExtras.h"

#include "mergec/Dialect/Merge/IR/MergeDialect.h.inc"

#include "mergec/Dialect/Merge/IR/MergeEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "mergec/Dialect/Merge/IR/MergeAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "mergec/Dialect/Merge/IR/MergeTypes.h.inc"

#include "mergec/Dialect/Merge/IR/MergeInterfaces.h.inc"

#define GET_OP_CLASSES
#include "mergec/Dialect/Merge/IR/MergeOps.h.inc"
